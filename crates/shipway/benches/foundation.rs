//! The foundation's numbers: store apply throughput and watch latency on SQLite and PostgreSQL,
//! through the store API and through HTTP, and the RSS of an idle `shipway up`.
//! PostgreSQL runs when `SHIPWAY_TEST_POSTGRES_URL` is set (`cargo xtask bench` sets it).

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use shipway_model::Object;
use shipway_store::{ListQuery, Store};

const OBJECTS: usize = 2_000;
const WATCH_SAMPLES: usize = 200;

fn config_map(i: usize, value: usize) -> Object {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": format!("bench-{i}"), "namespace": "bench", "labels": {"app": "bench"}},
        "data": {"value": value.to_string(), "payload": "x".repeat(512)},
    }))
    .expect("a valid object")
}

async fn apply_throughput(store: &Store, writers: usize) -> f64 {
    let start = Instant::now();
    let per = OBJECTS / writers;
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..per {
                    store
                        .apply(
                            config_map(w * per + i, start.elapsed().as_nanos() as usize),
                            "bench",
                        )
                        .await
                        .expect("apply");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("writer");
    }
    (per * writers) as f64 / start.elapsed().as_secs_f64()
}

/// Time from an apply being acknowledged to a watcher receiving it, p50 and p99.
async fn watch_latency(store: &Store) -> (Duration, Duration) {
    let since = store.current_resource_version().await.expect("rv");
    let mut watch = store.watch(ListQuery::default(), since);
    let mut samples = Vec::with_capacity(WATCH_SAMPLES);
    for i in 0..WATCH_SAMPLES {
        let start = Instant::now();
        store
            .apply(config_map(i, i + 1_000_000), "bench")
            .await
            .expect("apply");
        loop {
            let event = tokio::time::timeout(Duration::from_secs(10), watch.next())
                .await
                .expect("watch event in time");
            let event = event.expect("stream open").expect("event");
            if event.object.metadata.name == format!("bench-{i}") {
                break;
            }
        }
        samples.push(start.elapsed());
    }
    samples.sort();
    (
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
    )
}

async fn bench_store(name: &str, store: Store) {
    let one = apply_throughput(&store, 1).await;
    let four = apply_throughput(&store, 4).await;
    let (p50, p99) = watch_latency(&store).await;
    println!(
        "{name:<10} apply, 1 writer creating: {one:>6.0} objects/s   4 writers updating: {four:>6.0} objects/s   watch latency p50 {:>7.2} ms  p99 {:>7.2} ms",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
}

fn idle_rss_kib() -> Option<u64> {
    let dir = tempfile::tempdir().ok()?;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_shipway"))
        .args(["up", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    // Let it settle: idle means started and serving nothing.
    std::thread::sleep(Duration::from_secs(3));
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).ok();
    let _ = child.kill();
    let _ = child.wait();
    status?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let sqlite = Store::open_sqlite(&dir.path().join("bench.db"))
            .await
            .expect("sqlite");
        bench_store("sqlite", sqlite).await;
        match std::env::var("SHIPWAY_TEST_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => {
                let store = Store::open(&url).await.expect("postgres");
                bench_store("postgres", store).await;
            }
            _ => println!(
                "postgres   SKIPPED (set SHIPWAY_TEST_POSTGRES_URL, or run `cargo xtask bench`)"
            ),
        }
    });
    match idle_rss_kib() {
        Some(kib) => println!(
            "idle `shipway up` RSS: {:.1} MiB (budget 50 MiB: {})",
            kib as f64 / 1024.0,
            if kib <= 50 * 1024 { "met" } else { "MISSED" }
        ),
        None => println!("idle `shipway up` RSS: could not be measured"),
    }
}
