//! Project automation: `cargo xtask test` provisions what the tests need and runs them;
//! `cargo xtask bench` runs the benchmarks; `cargo xtask deps` checks that every declared
//! dependency is used.

mod deps;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

const USAGE: &str = "usage: cargo xtask <command>

commands:
  test [--require-postgres] [--require-corpus] [--require-kubectl] [--require-prometheus]
       [-- CARGO TEST ARGS]
        Run every test. The PostgreSQL store tests use $SHIPWAY_TEST_POSTGRES_URL, or a throwaway
        server this command starts from the installed PostgreSQL (apt-get install postgresql);
        without either they report SKIPPED, or fail with --require-postgres (CI). The conformance
        corpora come from $SHIPWAY_CORPUS, or shared/corpus beside the checkout; without them
        those tests report SKIPPED, or fail with --require-corpus (CI). The differential
        kustomize tests need `kubectl kustomize`: SKIPPED without it, or failed with
        --require-kubectl (CI). The analysis provider test against a real Prometheus needs
        `prometheus` on the PATH (apt-get install prometheus): SKIPPED without it, or failed with
        --require-prometheus (CI).
  bench [--require-postgres]
        Run every benchmark (cargo bench), each beside its anchor where there is one: store
        throughput (also with 1, 16 and 64 concurrent writers) and watch latency on SQLite and
        PostgreSQL, idle RSS, the local runtime, kustomize vs kubectl, pipeline steps vs bash,
        the proxy vs nginx (needs nginx and wrk).
  deps
        Check that every dependency a manifest declares is named in its package's Rust files,
        and every workspace dependency is declared by a member (CI runs it).";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("deps") => deps::check(&root()).map(|problems| {
            for p in &problems {
                eprintln!("xtask deps: {p}");
            }
            if problems.is_empty() {
                eprintln!("xtask deps: every declared dependency is used");
            }
            problems.is_empty()
        }),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

struct Flags {
    require_postgres: bool,
    require_corpus: bool,
    require_kubectl: bool,
    require_prometheus: bool,
    /// What follows `--`, for cargo.
    rest: Vec<String>,
}

fn parse(args: &[String]) -> Result<Flags> {
    let mut flags = Flags {
        require_postgres: false,
        require_corpus: false,
        require_kubectl: false,
        require_prometheus: false,
        rest: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--require-postgres" => flags.require_postgres = true,
            "--require-corpus" => flags.require_corpus = true,
            "--require-kubectl" => flags.require_kubectl = true,
            "--require-prometheus" => flags.require_prometheus = true,
            "--" => flags.rest.extend(it.by_ref().cloned()),
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    Ok(flags)
}

/// The shared test corpora (kustomize cases, workflow files, act's runner cases): read-only data beside the project.
fn corpus(require: bool) -> Result<Option<PathBuf>> {
    let candidates = [
        std::env::var_os("SHIPWAY_CORPUS").map(PathBuf::from),
        Some(root().join("../shared/corpus")),
    ];
    for dir in candidates.into_iter().flatten() {
        if ["kustomize", "workflows", "act"]
            .iter()
            .all(|c| dir.join(c).is_dir())
        {
            let dir = dir.canonicalize().unwrap_or(dir);
            eprintln!("xtask: conformance corpora from {}", dir.display());
            return Ok(Some(dir));
        }
    }
    if require {
        bail!(
            "--require-corpus: no corpus found; set SHIPWAY_CORPUS to the folder holding kustomize/, workflows/ and act/"
        );
    }
    eprintln!(
        "xtask: no corpus found (set SHIPWAY_CORPUS): the conformance tests will report SKIPPED"
    );
    Ok(None)
}

fn test(args: &[String]) -> Result<bool> {
    let flags = parse(args)?;
    let corpus = corpus(flags.require_corpus)?;
    let pg = postgres(flags.require_postgres, Durability::Off)?;
    let mut cmd = cargo("test", &flags.rest, pg.as_ref(), corpus.as_deref());
    if flags.require_kubectl {
        let found = Command::new("kubectl")
            .args(["version", "--client"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            bail!("--require-kubectl: `kubectl` is not on the PATH (the kustomize oracle)");
        }
        cmd.env("SHIPWAY_REQUIRE_KUBECTL", "1");
    }
    if flags.require_prometheus {
        let found = Command::new("prometheus")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            bail!(
                "--require-prometheus: `prometheus` is not on the PATH (apt-get install prometheus)"
            );
        }
        cmd.env("SHIPWAY_REQUIRE_PROMETHEUS", "1");
    }
    let status = cmd.status().context("running cargo test")?;
    Ok(status.success())
}

fn bench(args: &[String]) -> Result<bool> {
    let flags = parse(args)?;
    let corpus = corpus(false)?;
    let pg = postgres(flags.require_postgres, Durability::Full)?;
    let status = cargo("bench", &flags.rest, pg.as_ref(), corpus.as_deref())
        .status()
        .context("running cargo bench")?;
    Ok(status.success())
}

/// `cargo <verb> --workspace`, told where PostgreSQL and the corpora are.
fn cargo(verb: &str, rest: &[String], pg: Option<&Postgres>, corpus: Option<&Path>) -> Command {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(root())
        .args([verb, "--workspace"])
        .args(rest);
    if let Some(pg) = pg {
        cmd.env("SHIPWAY_TEST_POSTGRES_URL", &pg.url);
    }
    if let Some(dir) = corpus {
        cmd.env("SHIPWAY_CORPUS", dir);
    }
    cmd
}

/// A PostgreSQL server for the tests: the one the environment names, or a throwaway one.
struct Postgres {
    url: String,
    /// Set when this process started the server and must stop it.
    owned: Option<OwnedServer>,
}

struct OwnedServer {
    bin: PathBuf,
    dir: PathBuf,
    as_postgres_user: bool,
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(s) = &self.owned {
            let _ = run_pg(
                &s.bin.join("pg_ctl"),
                s.as_postgres_user,
                &["-D", &s.dir.to_string_lossy(), "-m", "immediate", "stop"],
            );
            let _ = std::fs::remove_dir_all(&s.dir);
        }
    }
}

/// Tests do not survive power loss, so they skip fsync; benchmarks measure what users get.
#[derive(Clone, Copy, PartialEq)]
enum Durability {
    Off,
    Full,
}

fn postgres(require: bool, durability: Durability) -> Result<Option<Postgres>> {
    if let Some(url) = std::env::var("SHIPWAY_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
    {
        eprintln!("xtask: PostgreSQL tests use $SHIPWAY_TEST_POSTGRES_URL");
        return Ok(Some(Postgres { url, owned: None }));
    }
    match start_throwaway_postgres(durability) {
        Ok(pg) => Ok(Some(pg)),
        Err(e) if require => {
            Err(e.context("--require-postgres: cannot provide a PostgreSQL server"))
        }
        Err(e) => {
            eprintln!("xtask: {e:#}\nxtask: PostgreSQL store tests will report SKIPPED");
            Ok(None)
        }
    }
}

/// The newest installed server binaries, as Debian lays them out.
fn postgres_bin() -> Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed (apt-get install postgresql)")?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .context("no initdb under /usr/lib/postgresql/*/bin")
}

fn start_throwaway_postgres(durability: Durability) -> Result<Postgres> {
    let bin = postgres_bin()?;
    // PostgreSQL refuses to run as root; as root, run it as the `postgres` user the package made.
    let as_postgres_user = is_root();
    let port = free_port()?;
    let dir = std::env::temp_dir().join(format!("shipway-xtask-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    if as_postgres_user {
        let ok = Command::new("chown")
            .args(["postgres:postgres", &dir.to_string_lossy()])
            .status()?
            .success();
        if !ok {
            bail!("cannot chown {} to postgres", dir.display());
        }
    }
    let data = dir.join("data");
    let d = data.to_string_lossy().to_string();
    run_pg(
        &bin.join("initdb"),
        as_postgres_user,
        &[
            "-D",
            &d,
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        ],
    )?;
    let fsync = if durability == Durability::Off {
        "off"
    } else {
        "on"
    };
    let opts = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync={fsync} -c max_connections=200",
        dir.display()
    );
    let log = dir.join("server.log");
    let pg = Postgres {
        url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        owned: Some(OwnedServer {
            bin: bin.clone(),
            dir: data.clone(),
            as_postgres_user,
        }),
    };
    run_pg(
        &bin.join("pg_ctl"),
        as_postgres_user,
        &[
            "-D",
            &d,
            "-o",
            &opts,
            "-l",
            &log.to_string_lossy(),
            "-w",
            "start",
        ],
    )?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("PostgreSQL did not start; see {}", log.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("xtask: started a throwaway PostgreSQL at {}", pg.url);
    Ok(pg)
}

fn run_pg(program: &Path, as_postgres_user: bool, args: &[&str]) -> Result<()> {
    let mut cmd = if as_postgres_user {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    let out = cmd
        .args(args)
        .current_dir(std::env::temp_dir())
        .output()
        .with_context(|| format!("running {}", program.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}{}",
            program.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
