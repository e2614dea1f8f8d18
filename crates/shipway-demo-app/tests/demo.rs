//! The demo app as a real process.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(env: &[(&str, &str)]) -> (Child, String) {
    start_with(env, Stdio::null())
}

fn start_with(env: &[(&str, &str)], stderr: Stdio) -> (Child, String) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_shipway-demo-app"))
        .env("PORT", port.to_string())
        .envs(env.iter().copied())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "demo app did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, format!("http://127.0.0.1:{port}"))
}

#[test]
fn answers_with_its_version_and_fails_on_demand() {
    let (mut child, url) = start(&[("VERSION", "v2"), ("ERROR_RATE", "0")]);
    let http = reqwest::blocking::Client::new();
    let body = http.get(&url).send().unwrap().text().unwrap();
    assert!(body.contains("\"version\":\"v2\""), "{body}");
    assert_eq!(
        http.get(format!("{url}/healthz")).send().unwrap().status(),
        200
    );
    assert_eq!(
        http.get(format!("{url}/?error_rate=1"))
            .send()
            .unwrap()
            .status(),
        500
    );
    let ok = (0..200)
        .filter(|_| {
            http.get(format!("{url}/?error_rate=0.5"))
                .send()
                .unwrap()
                .status()
                == 200
        })
        .count();
    assert!(
        (60..=140).contains(&ok),
        "about half should succeed, got {ok}/200"
    );
    let start = Instant::now();
    http.get(format!("{url}/?latency_ms=200")).send().unwrap();
    assert!(start.elapsed() >= Duration::from_millis(200));
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn sigterm_finishes_in_flight_requests_then_exits_cleanly() {
    let (mut child, url) = start_with(
        &[("LATENCY_MS", "700"), ("LOG_REQUESTS", "true")],
        Stdio::piped(),
    );
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let request =
        std::thread::spawn(move || reqwest::blocking::get(&url).map(|r| r.status().as_u16()));
    // SIGTERM once the app says the request is in its handler, not after a guessed delay.
    let mut lines = stderr.lines().map_while(Result::ok);
    assert!(
        lines.any(|l| l.ends_with("request to / started")),
        "the app never saw the request"
    );
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert_eq!(
        request.join().unwrap().unwrap(),
        200,
        "the in-flight request completed"
    );
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_bad_setting_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_shipway-demo-app"))
        .env("PORT", "not-a-port")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("PORT=\"not-a-port\" is not a valid value")
    );
}
