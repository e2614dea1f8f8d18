//! The foundation's numbers: store apply throughput and watch latency on SQLite and PostgreSQL,
//! through the store API and through HTTP, and the RSS of an idle `shipway up`, then after an
//! unauthenticated flood (unique long methods, half-open connections) that must not grow it.
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

/// A `shipway up` child and the address it listens on.
fn start_up(data: &std::path::Path) -> Option<(std::process::Child, String)> {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_shipway"))
        .args(["up", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    let mut stderr = std::io::BufReader::new(child.stderr.take()?);
    let mut line = String::new();
    let addr = loop {
        line.clear();
        if stderr.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.trim().to_string();
        }
    };
    // Drained so the server never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    Some((child, addr))
}

fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

const FLOOD_REQUESTS: usize = 2_000;
const FLOOD_METHOD_BYTES: usize = 380_000;
const HALF_OPEN: usize = 2_000;

/// Sends `FLOOD_REQUESTS` requests, each with a unique method of `FLOOD_METHOD_BYTES`, no token.
async fn method_flood(addr: &str) -> usize {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let addr = addr.to_string();
        tasks.spawn(async move {
            let mut answered = 0;
            for i in (worker..FLOOD_REQUESTS).step_by(8) {
                let mut method = format!("M{i}-").into_bytes();
                method.resize(FLOOD_METHOD_BYTES, b'X');
                let mut request = method;
                request.extend_from_slice(
                    format!(" /api/v1/x{i} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                );
                let Ok(mut conn) = tokio::net::TcpStream::connect(&addr).await else {
                    continue;
                };
                let mut answer = Vec::new();
                let exchange = async {
                    conn.write_all(&request).await?;
                    conn.read_to_end(&mut answer).await
                };
                if tokio::time::timeout(Duration::from_secs(10), exchange)
                    .await
                    .is_ok_and(|r| r.is_ok())
                    && answer.starts_with(b"HTTP/1.1 ")
                {
                    answered += 1;
                }
            }
            answered
        });
    }
    tasks.join_all().await.into_iter().sum()
}

/// Opens `HALF_OPEN` connections that send half a request head, and holds them.
async fn half_open(addr: &str) -> Vec<tokio::net::TcpStream> {
    use tokio::io::AsyncWriteExt;
    let mut held = Vec::new();
    for _ in 0..HALF_OPEN {
        let connect = tokio::net::TcpStream::connect(addr);
        // Beyond the server's limit connections wait in its accept queue; once that is full the
        // kernel stops answering SYNs, and those attempts are not counted.
        let Ok(Ok(mut conn)) = tokio::time::timeout(Duration::from_millis(200), connect).await
        else {
            continue;
        };
        if conn
            .write_all(b"GET /api/v1/version HTTP/1.1\r\nHost: ")
            .await
            .is_ok()
        {
            held.push(conn);
        }
    }
    held
}

/// RSS of `shipway up` idle, after an unauthenticated flood of unique long methods, while
/// half-open connections are held, and after they are gone.
async fn flood_rss() {
    let mib =
        |kib: Option<u64>| kib.map_or("?".to_string(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
    // The half-open connections need descriptors of their own.
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let _ = rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    );
    let Ok(dir) = tempfile::tempdir() else { return };
    let Some((mut child, addr)) = start_up(dir.path()) else {
        println!("flood RSS: could not start `shipway up`");
        return;
    };
    let pid = child.id();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = rss_kib(pid);
    let started = Instant::now();
    let answered = method_flood(&addr).await;
    let after_methods = rss_kib(pid);
    let method_secs = started.elapsed().as_secs_f64();
    let held = half_open(&addr).await;
    let holding = rss_kib(pid);
    let open = held.len();
    drop(held);
    // Closed by the clients now; the server notices at once.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib(pid);
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "`shipway up` RSS under an unauthenticated flood: idle {}; after {FLOOD_REQUESTS} requests with unique {} KB methods ({answered} answered, {method_secs:.1} s) {}; holding {open} of {HALF_OPEN} half-open connections {}; after they closed {}",
        mib(idle),
        FLOOD_METHOD_BYTES / 1000,
        mib(after_methods),
        mib(holding),
        mib(after),
    );
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
    runtime.block_on(flood_rss());
}
