//! Committed writes per second with 1, 16 and 64 concurrent writers on SQLite (and PostgreSQL
//! when `SHIPWAY_TEST_POSTGRES_URL` is set), and each write's latency p50/p99: what group commit
//! buys when writers overlap and what a lone writer pays. `SHIPWAY_BENCH_DIR` puts the SQLite file
//! elsewhere (a tmpfs shows the cost without fsync).
//!
//! `cargo bench -p shipway-store --bench writers`

use std::time::{Duration, Instant};

use shipway_model::Object;
use shipway_store::Store;

/// How long each writer count runs.
const RUN: Duration = Duration::from_secs(3);

/// Names unique per run, so a rerun on the same PostgreSQL database creates rather than conflicts.
fn config_map(run: u128, writer: usize, i: usize) -> Object {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": format!("r{run}-w{writer}-{i}"), "namespace": "bench"},
        "data": {"payload": "x".repeat(512)},
    }))
    .expect("a valid object")
}

/// Writes/s and per-write latency (p50, p99) with `writers` tasks creating objects for `RUN`.
async fn run(store: &Store, round: usize, writers: usize) -> (f64, Duration, Duration) {
    let start = Instant::now();
    let id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut i = 0;
                while start.elapsed() < RUN {
                    let began = Instant::now();
                    store
                        .create(config_map(id, round * 1000 + w, i), "bench")
                        .await
                        .expect("create");
                    latencies.push(began.elapsed());
                    i += 1;
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("writer"));
    }
    let rate = all.len() as f64 / start.elapsed().as_secs_f64();
    all.sort();
    (rate, all[all.len() / 2], all[all.len() * 99 / 100])
}

async fn bench(name: &str, store: Store) {
    for (round, writers) in [1, 16, 64].into_iter().enumerate() {
        let (rate, p50, p99) = run(&store, round, writers).await;
        println!(
            "{name:<10} {writers:>2} writers: {rate:>7.0} writes/s   latency p50 {:>7.2} ms  p99 {:>7.2} ms",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let dir = match std::env::var_os("SHIPWAY_BENCH_DIR") {
            Some(d) => tempfile::tempdir_in(d),
            None => tempfile::tempdir(),
        }
        .expect("temp dir");
        let sqlite = Store::open_sqlite(&dir.path().join("writers.db"))
            .await
            .expect("sqlite");
        bench("sqlite", sqlite).await;
        match std::env::var("SHIPWAY_TEST_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => {
                let store = Store::open(&url).await.expect("postgres");
                bench("postgres", store).await;
            }
            _ => println!("postgres   SKIPPED (set SHIPWAY_TEST_POSTGRES_URL)"),
        }
    });
}
