//! Side by side on loopback: Shipway's proxy vs nginx, both splitting 80/20 between the same two
//! demo-app upstreams, loaded by wrk. Prints requests/s, p50 and p99 and the ratios against the
//! budget (DESIGN.md §10: at least nginx's throughput, p99 within nginx's + 0.5 ms).
//!
//! Needs `nginx` and `wrk` on PATH (Debian: `apt-get install -y nginx wrk`); skips with a message
//! otherwise. `SHIPWAY_BENCH_SECS` (default 10) sets each run's length, `SHIPWAY_BENCH_ROUNDS`
//! (default 3) how many runs of each, alternating, whose medians are compared, and
//! `SHIPWAY_BENCH_CONNS` (default 64) wrk's connections.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shipway_proxy::table::{BackendSpec, RouteSpec, RoutingTable};
use shipway_proxy::{Proxy, ProxyConfig, ProxyMetrics};

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
}

fn on_path(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The demo app, built in release next to this benchmark when it is not there yet.
fn demo_app() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // target/release/deps/proxy-HASH → target/release
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot locate the target directory")?;
    let app = dir.join("shipway-demo-app");
    if !app.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--release", "-p", "shipway-demo-app"])
            .status()
            .map_err(|e| format!("cargo build: {e}"))?;
        if !status.success() || !app.exists() {
            return Err(format!("could not build {}", app.display()));
        }
    }
    Ok(app)
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// nginx is stopped with `-s stop`, which ends its workers too; killing the master alone would
/// leave them running.
struct Nginx {
    child: Child,
    args: Vec<String>,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("nginx")
            .args(&self.args)
            .args(["-s", "stop"])
            .status();
        let _ = self.child.wait();
    }
}

fn wait_listening(addr: SocketAddr) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(addr).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

struct Measured {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: String,
    /// Per request, of the proxy's processes: CPU time (µs), system calls and context switches;
    /// what throughput on a shared machine follows from, and steadier than it.
    cost: Option<Cost>,
}

#[derive(Clone, Copy)]
struct Cost {
    cpu_us: f64,
    /// Share of the CPU time spent in user space (the rest is the kernel's), from /proc.
    user_share: f64,
    syscalls: f64,
    switches: f64,
}

/// `perf stat` attached to the proxy's processes for the length of one wrk run; `None` without
/// perf or its tracepoints.
struct PerfStat {
    child: Child,
    pids: Vec<u32>,
    ticks: (u64, u64),
}

/// User and system CPU ticks of `pids` so far (/proc/PID/stat fields 14 and 15).
fn cpu_ticks(pids: &[u32]) -> (u64, u64) {
    let mut total = (0, 0);
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let fields: Vec<u64> = stat
            .rsplit_once(')')
            .map(|(_, rest)| {
                rest.split_whitespace()
                    .map(|f| f.parse().unwrap_or(0))
                    .collect()
            })
            .unwrap_or_default();
        if fields.len() > 12 {
            total.0 += fields[11];
            total.1 += fields[12];
        }
    }
    total
}

impl PerfStat {
    fn start(pids: &[u32]) -> Option<PerfStat> {
        let list = pids
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        Command::new("perf")
            .args([
                "stat",
                "-x,",
                "-e",
                "task-clock,raw_syscalls:sys_enter,context-switches",
                "-p",
                &list,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .ok()
            .map(|child| PerfStat {
                child,
                pids: pids.to_vec(),
                ticks: cpu_ticks(pids),
            })
    }

    /// Stops perf (SIGINT makes it print) and divides its counts by `requests`.
    fn finish(self, requests: f64) -> Option<Cost> {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let ticks = cpu_ticks(&self.pids);
        let (user, sys) = (ticks.0 - self.ticks.0, ticks.1 - self.ticks.1);
        let out = self.child.wait_with_output().ok()?;
        let text = String::from_utf8_lossy(&out.stderr);
        let count = |event: &str| {
            text.lines().find_map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (f.len() > 2 && f[2] == event)
                    .then(|| f[0].parse::<f64>().ok())
                    .flatten()
            })
        };
        if requests <= 0.0 {
            return None;
        }
        Some(Cost {
            // task-clock is in milliseconds.
            cpu_us: count("task-clock")? * 1000.0 / requests,
            user_share: user as f64 / (user + sys).max(1) as f64,
            syscalls: count("raw_syscalls:sys_enter")? / requests,
            switches: count("context-switches")? / requests,
        })
    }
}

/// The pids of `parent` and its children (nginx's workers).
fn process_tree(parent: u32) -> Vec<u32> {
    let mut pids = vec![parent];
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // The fields after the command name (which may hold spaces) start at the last ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(parent) {
                pids.push(pid);
            }
        }
    }
    pids
}

/// wrk prints latencies as `1.23ms`, `456.78us` or `1.01s`.
fn millis(s: &str) -> Option<f64> {
    let s = s.trim();
    if let Some(v) = s.strip_suffix("us") {
        v.parse::<f64>().ok().map(|v| v / 1000.0)
    } else if let Some(v) = s.strip_suffix("ms") {
        v.parse().ok()
    } else if let Some(v) = s.strip_suffix('s') {
        v.parse::<f64>().ok().map(|v| v * 1000.0)
    } else {
        None
    }
}

fn wrk(url: &str, secs: u64, conns: u32, pids: &[u32]) -> Option<Measured> {
    let perf = if pids.is_empty() || !on_path("perf") {
        None
    } else {
        PerfStat::start(pids)
    };
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            "--latency",
            url,
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|r| r.trim().to_string()))
    };
    let errors = text
        .lines()
        .filter(|l| l.contains("Socket errors") || l.contains("Non-2xx"))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ");
    let rps: f64 = field("Requests/sec:")?.parse().ok()?;
    let requests = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    Some(Measured {
        rps,
        cost: perf.and_then(|p| p.finish(requests)),
        p50_ms: millis(&field("50%")?)?,
        p99_ms: millis(&field("99%")?)?,
        errors,
    })
}

fn nginx_conf(dir: &Path, listen: SocketAddr, stable: SocketAddr, canary: SocketAddr) -> String {
    let d = dir.display();
    format!(
        "worker_processes 2;
daemon off;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream web {{
        server {stable} weight=80;
        server {canary} weight=20;
        keepalive 128;
    }}
    server {{
        listen {listen};
        location / {{
            proxy_pass http://web;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
        }}
    }}
}}
"
    )
}

/// Each figure's median over the runs (the upper one of an even count).
fn median(runs: &[Measured]) -> Option<Measured> {
    if runs.is_empty() {
        return None;
    }
    let mid = |f: &dyn Fn(&Measured) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let costs: Vec<Cost> = runs.iter().filter_map(|r| r.cost).collect();
    let cost = (costs.len() == runs.len()).then(|| Cost {
        cpu_us: mid(&|r| r.cost.map_or(0.0, |c| c.cpu_us)),
        user_share: mid(&|r| r.cost.map_or(0.0, |c| c.user_share)),
        syscalls: mid(&|r| r.cost.map_or(0.0, |c| c.syscalls)),
        switches: mid(&|r| r.cost.map_or(0.0, |c| c.switches)),
    });
    Some(Measured {
        rps: mid(&|r| r.rps),
        p50_ms: mid(&|r| r.p50_ms),
        p99_ms: mid(&|r| r.p99_ms),
        errors: runs
            .iter()
            .map(|r| r.errors.as_str())
            .filter(|e| !e.is_empty())
            .collect::<Vec<_>>()
            .join("; "),
        cost,
    })
}

fn report(name: &str, r: &Measured) {
    let cost = r.cost.map_or(String::new(), |c| {
        format!(
            "   per request: {:.1} µs CPU ({:.0}% user), {:.2} syscalls, {:.3} switches",
            c.cpu_us,
            c.user_share * 100.0,
            c.syscalls,
            c.switches
        )
    });
    println!(
        "{name:<16} {:>12.0} req/s   p50 {:>7.3} ms   p99 {:>7.3} ms{cost}   {}",
        r.rps, r.p50_ms, r.p99_ms, r.errors
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too but must stay quick.
    if !std::env::args().any(|a| a == "--bench") {
        println!("proxy benchmark: run with `cargo bench -p shipway-proxy`");
        return;
    }
    for tool in ["nginx", "wrk"] {
        if !on_path(tool) {
            println!(
                "proxy benchmark skipped: `{tool}` is not installed (apt-get install -y nginx wrk)"
            );
            return;
        }
    }
    let app = match demo_app() {
        Ok(a) => a,
        Err(e) => {
            println!("proxy benchmark skipped: {e}");
            return;
        }
    };
    let secs: u64 = std::env::var("SHIPWAY_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let rounds: u32 = std::env::var("SHIPWAY_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    let conns: u32 = std::env::var("SHIPWAY_BENCH_CONNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let (stable, canary) = (free_addr(), free_addr());
    let spawn_app = |addr: SocketAddr, version: &str| {
        Command::new(&app)
            .env("PORT", addr.port().to_string())
            .env("VERSION", version)
            .stderr(Stdio::null())
            .spawn()
            .map(Killed)
    };
    let (Ok(_s), Ok(_c)) = (spawn_app(stable, "stable"), spawn_app(canary, "canary")) else {
        println!("proxy benchmark skipped: cannot start {}", app.display());
        return;
    };
    if !wait_listening(stable) || !wait_listening(canary) {
        println!("proxy benchmark skipped: the demo app did not listen");
        return;
    }

    let dir = tempfile::tempdir().expect("a temporary directory");
    let nginx_addr = free_addr();
    std::fs::write(
        dir.path().join("nginx.conf"),
        nginx_conf(dir.path(), nginx_addr, stable, canary),
    )
    .expect("writing nginx.conf");
    let args = vec![
        "-c".to_string(),
        dir.path().join("nginx.conf").display().to_string(),
        "-p".to_string(),
        dir.path().display().to_string(),
    ];
    let nginx = Command::new("nginx")
        .args(&args)
        .stderr(Stdio::null())
        .spawn()
        .map(|child| Nginx { child, args });
    let Ok(nginx) = nginx else {
        println!("proxy benchmark skipped: cannot start nginx");
        return;
    };
    if !wait_listening(nginx_addr) {
        println!(
            "proxy benchmark skipped: nginx did not listen (see {}/error.log)",
            dir.path().display()
        );
        return;
    }

    // Shipway's proxy in this process: 2 workers (threads), as nginx has 2 worker processes.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let shipway_addr = free_addr();
    let spec = RouteSpec {
        namespace: "default".into(),
        service: "web".into(),
        port_name: "http".into(),
        listen: shipway_addr,
        backends: vec![
            BackendSpec {
                name: "stable".into(),
                weight: 80,
                endpoints: vec![stable],
            },
            BackendSpec {
                name: "canary".into(),
                weight: 20,
                endpoints: vec![canary],
            },
        ],
        rules: vec![],
        mirror: None,
        tcp: false,
        least_requests: false,
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let metrics = ProxyMetrics::new();
    let (_tx, rx) = tokio::sync::watch::channel(Arc::new(RoutingTable::build(&[spec])));
    // `start` spawns its joiner on the runtime it is called from.
    let _entered = rt.enter();
    let proxy = Proxy::start(
        rx,
        metrics.clone(),
        ProxyConfig {
            workers: 2,
            ..ProxyConfig::default()
        },
        stop.clone(),
    );
    if !wait_listening(shipway_addr) {
        println!("proxy benchmark skipped: Shipway's proxy did not listen");
        return;
    }

    println!(
        "proxy benchmark: wrk -t2 -c{conns} -d{secs}s, 2 upstreams weighted 80/20 (shipway-demo-app), loopback"
    );
    let direct = wrk(&format!("http://{stable}/"), secs.min(5), conns, &[]);
    // The workers exist once nginx listens.
    let pids = [process_tree(nginx.child.id()), vec![std::process::id()]];
    // Warm both up (pools, caches), then measure nginx and Shipway alternately, `rounds` times,
    // and compare medians: the machine is shared, so single runs are noisy, and alternating
    // spreads any drift in the machine's load over both.
    let _ = wrk(&format!("http://{nginx_addr}/"), 2, conns, &[]);
    let _ = wrk(&format!("http://{shipway_addr}/"), 2, conns, &[]);
    let mut runs: [Vec<Measured>; 2] = [Vec::new(), Vec::new()];
    for round in 1..=rounds {
        for (i, addr) in [nginx_addr, shipway_addr].into_iter().enumerate() {
            if let Some(r) = wrk(&format!("http://{addr}/"), secs, conns, &pids[i]) {
                report(&format!("  {} #{round}", ["nginx", "shipway"][i]), &r);
                runs[i].push(r);
            }
        }
    }
    if let Some(d) = &direct {
        report("upstream direct", d);
    }
    let (Some(n), Some(s)) = (median(&runs[0]), median(&runs[1])) else {
        println!("proxy benchmark failed: wrk gave no result");
        return;
    };
    report("nginx (median)", &n);
    report("shipway (median)", &s);
    let canary_share = {
        let c = metrics
            .query("default", "web", Some("canary"), Duration::from_secs(300))
            .requests as f64;
        let all = metrics
            .query("default", "web", None, Duration::from_secs(300))
            .requests as f64;
        if all > 0.0 { 100.0 * c / all } else { 0.0 }
    };
    println!(
        "ratios: throughput shipway/nginx {:.2}x (budget ≥ 1.00), p99 shipway - nginx {:+.3} ms (budget ≤ +0.500), canary share {canary_share:.1}%",
        s.rps / n.rps,
        s.p99_ms - n.p99_ms
    );
    stop.cancel();
    let _ = rt.block_on(proxy);
}
