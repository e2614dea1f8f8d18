//! The HTTP/1 data path byte for byte: raw TCP clients and raw TCP upstreams written here, so the
//! framing on both sides of the proxy is exactly what each test says, and every byte the proxy
//! writes is checked. The proxy runs one worker, so its upstream pool is one pool.

mod testutil;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use shipway_proxy::ProxyConfig;
use testutil::{TestProxy, backend, dead_addr, route};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Every wait ends by this: a hang fails its test instead of stalling the run.
const LIMIT: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(LIMIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("no progress within {LIMIT:?}: {what}"),
    }
}

/// One HTTP message as it crossed the wire: the head through its blank line, and the body's raw
/// bytes (chunk framing and trailers included).
#[derive(Debug)]
struct Message {
    head: String,
    body: Vec<u8>,
}

impl Message {
    fn start_line(&self) -> &str {
        self.head.split("\r\n").next().unwrap_or("")
    }

    /// The request target.
    fn target(&self) -> &str {
        self.start_line().split(' ').nth(1).unwrap_or("")
    }

    fn method(&self) -> &str {
        self.start_line().split(' ').next().unwrap_or("")
    }

    fn header(&self, name: &str) -> Option<&str> {
        header(&self.head, name)
    }

    /// Head and body as one string, for byte-exact comparisons.
    fn text(&self) -> String {
        format!("{}{}", self.head, String::from_utf8_lossy(&self.body))
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Where a complete chunked body ends in `b`, or `None` while it is incomplete.
fn chunked_end(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    loop {
        let line = find(&b[i..], b"\r\n")? + i;
        let size = std::str::from_utf8(&b[i..line]).expect("chunk size line");
        let size = size.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16).expect("chunk size");
        i = line + 2;
        if size == 0 {
            // Trailer fields up to an empty line.
            loop {
                let end = find(&b[i..], b"\r\n")? + i;
                let last = end == i;
                i = end + 2;
                if last {
                    return Some(i);
                }
            }
        }
        i += size + 2;
        if i > b.len() {
            return None;
        }
    }
}

/// One end of a TCP connection with what was read from it and not yet taken.
struct Peer {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Peer {
    fn new(s: TcpStream) -> Peer {
        Peer { s, buf: Vec::new() }
    }

    async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        within("write", self.s.write_all(bytes.as_ref()))
            .await
            .expect("write");
    }

    /// Reads more; false at the end of the stream (a reset counts as one).
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 64 * 1024];
        match within("read", self.s.read(&mut chunk)).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next head, or `None` when the stream ends before one starts.
    async fn head(&mut self) -> Option<String> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..i + 4).collect();
                return Some(String::from_utf8(head).expect("head is text"));
            }
            if !self.fill().await {
                assert!(
                    self.buf.is_empty(),
                    "stream ended inside a head: {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
                return None;
            }
        }
    }

    async fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(
                self.fill().await,
                "stream ended {} bytes into a {n}-byte body",
                self.buf.len()
            );
        }
        self.buf.drain(..n).collect()
    }

    /// The body after `head`. Without Content-Length or chunked, a response runs to the close
    /// (unless its kind has no body) and a request has none.
    async fn body(&mut self, head: &str, request: bool, bodyless: bool) -> Vec<u8> {
        if bodyless {
            return Vec::new();
        }
        if header(head, "transfer-encoding").is_some_and(|te| te.ends_with("chunked")) {
            loop {
                if let Some(end) = chunked_end(&self.buf) {
                    return self.buf.drain(..end).collect();
                }
                assert!(self.fill().await, "stream ended inside a chunked body");
            }
        }
        if let Some(n) = header(head, "content-length") {
            return self.take(n.parse().expect("Content-Length")).await;
        }
        if request {
            return Vec::new();
        }
        while self.fill().await {}
        std::mem::take(&mut self.buf)
    }

    async fn request(&mut self) -> Option<Message> {
        let head = self.head().await?;
        let body = self.body(&head, true, false).await;
        Some(Message { head, body })
    }

    /// The next response (an interim 1xx one too); `to_head` when it answers a HEAD request.
    async fn response(&mut self, to_head: bool) -> Message {
        let head = self
            .head()
            .await
            .expect("a response, not the end of the stream");
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        let bodyless = to_head || (100..200).contains(&status) || status == 204 || status == 304;
        let body = self.body(&head, false, bodyless).await;
        Message { head, body }
    }

    /// The peer closed, and sent nothing more before it did.
    async fn closed(&mut self) {
        while self.fill().await {}
        assert!(
            self.buf.is_empty(),
            "bytes before the close: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
    }
}

/// An upstream written in the test; connections are numbered in the order they were accepted.
struct Upstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl Upstream {
    /// Runs `serve` for every connection accepted.
    async fn start<F, Fut>(serve: F) -> Upstream
    where
        F: Fn(usize, Peer) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let n = count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(n, Peer::new(s)));
            }
        });
        Upstream { addr, accepted }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// What a scripted upstream does with a request.
struct Reply {
    /// Written one after another, `gap` apart.
    pieces: Vec<Vec<u8>>,
    gap: Duration,
    /// Close the connection after the reply.
    close: bool,
    /// Answer nothing; wait for the proxy to close.
    silent: bool,
}

impl Reply {
    fn bytes(b: impl AsRef<[u8]>) -> Reply {
        Reply {
            pieces: vec![b.as_ref().to_vec()],
            gap: Duration::ZERO,
            close: false,
            silent: false,
        }
    }

    /// Sent in pieces with pauses, so the proxy reads them in separate reads.
    fn trickled(pieces: &[&[u8]]) -> Reply {
        Reply {
            pieces: pieces.iter().map(|p| p.to_vec()).collect(),
            gap: Duration::from_millis(30),
            ..Reply::bytes("")
        }
    }

    fn then_close(self) -> Reply {
        Reply {
            close: true,
            ..self
        }
    }

    fn silence() -> Reply {
        Reply {
            silent: true,
            ..Reply::bytes("")
        }
    }
}

/// `200 OK` with `body` and its Content-Length.
fn ok(body: &str) -> Reply {
    Reply::bytes(format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ))
}

/// What a scripted upstream reports: each request with the connection it came on, and each
/// connection it closed itself.
struct Seen {
    requests: mpsc::UnboundedReceiver<(usize, Message)>,
    closed: mpsc::UnboundedReceiver<usize>,
}

impl Seen {
    /// The next request seen. Requests are reported before they are answered, so once the
    /// client has its response the request is here.
    fn request(&mut self) -> (usize, Message) {
        self.requests
            .try_recv()
            .expect("the upstream saw no (further) request")
    }

    fn none(&mut self) {
        if let Ok((conn, m)) = self.requests.try_recv() {
            panic!("the upstream saw an unexpected request on connection {conn}: {m:?}");
        }
    }

    /// Waits until the upstream has closed a connection of its own accord.
    async fn upstream_closed(&mut self) -> usize {
        within("the upstream closing", self.closed.recv())
            .await
            .expect("upstream gone")
    }
}

/// An upstream that reads requests on every connection and answers each as `answer` says.
async fn scripted(answer: impl Fn(&Message) -> Reply + Send + Sync + 'static) -> (Upstream, Seen) {
    let answer = Arc::new(answer);
    let (req_tx, requests) = mpsc::unbounded_channel();
    let (closed_tx, closed) = mpsc::unbounded_channel();
    let up = Upstream::start(move |conn, mut peer| {
        let (answer, req_tx, closed_tx) = (answer.clone(), req_tx.clone(), closed_tx.clone());
        async move {
            while let Some(request) = peer.request().await {
                let reply = answer(&request);
                let _ = req_tx.send((conn, request));
                if reply.silent {
                    peer.closed().await;
                    return;
                }
                for (i, piece) in reply.pieces.iter().enumerate() {
                    if i > 0 {
                        tokio::time::sleep(reply.gap).await;
                    }
                    peer.send(piece).await;
                }
                if reply.close {
                    drop(peer);
                    let _ = closed_tx.send(conn);
                    return;
                }
            }
        }
    })
    .await;
    (up, Seen { requests, closed })
}

fn config() -> ProxyConfig {
    ProxyConfig {
        workers: 1,
        ..ProxyConfig::default()
    }
}

async fn proxy_with(up: SocketAddr, config: ProxyConfig) -> TestProxy {
    TestProxy::start(
        route(dead_addr(), vec![backend("default", 100, &[up])]),
        config,
    )
    .await
}

async fn proxy(up: SocketAddr) -> TestProxy {
    proxy_with(up, config()).await
}

async fn client(p: &TestProxy) -> Peer {
    Peer::new(
        within("connect", TcpStream::connect(p.listen))
            .await
            .unwrap(),
    )
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: web\r\n\r\n")
}

fn post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: web\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// `200 OK` with `body` as the client receives it.
fn ok_text(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The proxy's own answer, exactly as `h1::own_response` writes it.
fn own(status: &str, body: &str, close: bool) -> String {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\nx-shipway-proxy-error: 1\r\ncontent-length: {}\r\n{}\r\n{body}",
        body.len(),
        if close { "connection: close\r\n" } else { "" }
    )
}

// Keep-alive.

#[tokio::test]
async fn requests_on_one_client_connection_share_one_pooled_upstream_connection() {
    let (up, mut seen) = scripted(|m| ok(m.target())).await;
    let p = proxy(up.addr).await;
    let mut c = client(&p).await;
    for path in ["/a", "/b", "/c"] {
        c.send(get(path)).await;
        assert_eq!(c.response(false).await.text(), ok_text(path));
        let (conn, m) = seen.request();
        assert_eq!((conn, m.target()), (0, path));
    }
    // Another client connection takes the same upstream connection from the pool.
    let mut other = client(&p).await;
    other.send(get("/d")).await;
    assert_eq!(other.response(false).await.text(), ok_text("/d"));
    assert_eq!(seen.request().0, 0);
    assert_eq!(up.accepted(), 1);
}

#[tokio::test]
async fn a_response_body_slower_than_the_header_timeout_keeps_the_client_connection() {
    // The body ends 750 ms after its head; the next request head is due within 500 ms of the
    // response's end, not of its head.
    let (up, mut seen) = scripted(|m| match m.target() {
        "/slow" => Reply {
            gap: Duration::from_millis(250),
            ..Reply::trickled(&[
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n",
                b"a",
                b"b",
                b"c",
            ])
        },
        path => ok(path),
    })
    .await;
    let p = proxy_with(
        up.addr,
        ProxyConfig {
            header_read_timeout: Duration::from_millis(500),
            ..config()
        },
    )
    .await;
    let mut c = client(&p).await;
    c.send(get("/slow")).await;
    assert_eq!(c.response(false).await.text(), ok_text("abc"));
    c.send(get("/next")).await;
    assert_eq!(c.response(false).await.text(), ok_text("/next"));
    assert_eq!(seen.request().1.target(), "/slow");
    assert_eq!(seen.request().1.target(), "/next");
}

// Pipelining.

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let (up, mut seen) = scripted(|m| ok(m.target())).await;
    let p = proxy(up.addr).await;
    let mut c = client(&p).await;
    // One write: a POST whose body ends exactly where the next request starts, then two GETs.
    c.send(format!("{}{}{}", post("/a", "hello"), get("/b"), get("/c")))
        .await;
    for path in ["/a", "/b", "/c"] {
        assert_eq!(c.response(false).await.text(), ok_text(path));
    }
    let (conn, a) = seen.request();
    assert_eq!(
        (conn, a.method(), a.body.as_slice()),
        (0, "POST", &b"hello"[..])
    );
    for path in ["/b", "/c"] {
        let (conn, m) = seen.request();
        assert_eq!((conn, m.method(), m.target()), (0, "GET", path));
        assert!(m.body.is_empty());
    }
    assert_eq!(up.accepted(), 1);
}

// Request bodies.

/// 5 MiB that are not one byte repeated, so a lost or reordered piece shows.
fn big_body() -> Vec<u8> {
    (0..5 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

#[tokio::test]
async fn content_length_bodies_arrive_intact_whole_or_streamed() {
    let (up, mut seen) = scripted(|m| ok(&m.body.len().to_string())).await;
    let p = proxy(up.addr).await;
    let mut c = client(&p).await;

    // Whole with the head: sent in the same write as the head upstream.
    c.send(post("/small", "hello")).await;
    assert_eq!(c.response(false).await.text(), ok_text("5"));
    let (_, m) = seen.request();
    assert_eq!(m.header("content-length"), Some("5"));
    assert_eq!(m.body, b"hello");

    // 5 MiB in 1 MiB pieces with pauses: streamed while it arrives.
    let body = big_body();
    c.send(format!(
        "PUT /big HTTP/1.1\r\nHost: web\r\nContent-Length: {}\r\n\r\n",
        body.len()
    ))
    .await;
    for piece in body.chunks(1024 * 1024) {
        c.send(piece).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        c.response(false).await.text(),
        ok_text(&body.len().to_string())
    );
    let (_, m) = seen.request();
    assert_eq!(m.header("content-length"), Some("5242880"));
    assert!(m.body == body, "the 5 MiB body changed on the way");

    // Both bodies ended where they said: the connections carry on.
    c.send(get("/after")).await;
    assert_eq!(c.response(false).await.text(), ok_text("0"));
    assert_eq!(seen.request().1.target(), "/after");
    assert_eq!(up.accepted(), 1);
}

const CHUNKED: &[u8] = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n";

#[tokio::test]
async fn a_chunked_request_body_reaches_the_upstream_as_sent() {
    let (up, mut seen) = scripted(|m| ok(&m.body.len().to_string())).await;
    let p = proxy(up.addr).await;
    let mut c = client(&p).await;
    let head = "POST /c HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n";
    let len = CHUNKED.len().to_string();

    // Whole with the head.
    c.send([head.as_bytes(), CHUNKED].concat()).await;
    assert_eq!(c.response(false).await.text(), ok_text(&len));
    let (_, m) = seen.request();
    assert_eq!(m.header("transfer-encoding"), Some("chunked"));
    assert_eq!(m.header("content-length"), None);
    assert_eq!(m.body, CHUNKED);

    // Streamed, split inside a size line, a chunk's data, an extension and the last CRLF.
    c.send(head).await;
    for piece in [
        &CHUNKED[..1],
        &CHUNKED[1..6],
        &CHUNKED[6..14],
        &CHUNKED[14..22],
        &CHUNKED[22..44],
        &CHUNKED[44..45],
        &CHUNKED[45..],
    ] {
        tokio::time::sleep(Duration::from_millis(20)).await;
        c.send(piece).await;
    }
    assert_eq!(c.response(false).await.text(), ok_text(&len));
    assert_eq!(seen.request().1.body, CHUNKED);

    c.send(get("/after")).await;
    assert_eq!(c.response(false).await.text(), ok_text("0"));
    assert_eq!(up.accepted(), 1);
}

#[tokio::test]
async fn expect_100_continue_gets_the_upstreams_100_before_the_body_is_sent() {
    let (tx, mut got) = mpsc::unbounded_channel();
    let up = Upstream::start(move |_, mut peer| {
        let tx = tx.clone();
        async move {
            let head = peer.head().await.expect("a request");
            peer.send("HTTP/1.1 100 Continue\r\n\r\n").await;
            let body = peer.take(5).await;
            let _ = tx.send((head, body));
            peer.send("HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndone")
                .await;
            peer.closed().await;
        }
    })
    .await;
    let p = proxy(up.addr).await;
    let mut c = client(&p).await;
    c.send(
        "POST /upload HTTP/1.1\r\nHost: web\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    )
    .await;
    // The body goes only after the 100: an upstream that waits for it would otherwise hang.
    assert_eq!(
        c.response(false).await.text(),
        "HTTP/1.1 100 Continue\r\n\r\n"
    );
    c.send("hello").await;
    assert_eq!(
        c.response(false).await.text(),
        "HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndone"
    );
    let (head, body) = got.try_recv().expect("the upstream saw the request");
    assert_eq!(header(&head, "expect"), Some("100-continue"));
    assert_eq!(body, b"hello");
}

// Responses.

#[tokio::test]
async fn response_framings_reach_the_client_unchanged_and_end_where_they_end() {
    let (up, mut seen) = scripted(|m| match m.target() {
        "/length" => Reply::bytes("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
        // Split inside a chunk, its size line and the trailer section.
        "/chunked" => Reply::trickled(&[
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWi",
            b"ki\r\n5;x=y\r\npedia\r\n0",
            b"\r\nT: 1\r\n\r\n",
        ]),
        // A HEAD's Content-Length describes the GET's body: none follows.
        "/head" => Reply::bytes("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"),
        "/204" => Reply::bytes("HTTP/1.1 204 No Content\r\n\r\n"),
        // 304 may state the length of what it does not send.
        "/304" => {
            Reply::bytes("HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 10\r\n\r\n")
        }
        path => ok(path),
    })
    .await;
    let p = proxy(up.addr).await;
    let mut c = client(&p).await;
    let cases: [(&str, &str, &str); 6] = [
        (
            "GET",
            "/length",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        ),
        (
            "GET",
            "/chunked",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\nT: 1\r\n\r\n",
        ),
        (
            "HEAD",
            "/head",
            "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
        ),
        ("GET", "/204", "HTTP/1.1 204 No Content\r\n\r\n"),
        (
            "GET",
            "/304",
            "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 10\r\n\r\n",
        ),
        // Nothing of the earlier responses is left over on either connection.
        (
            "GET",
            "/last",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n/last",
        ),
    ];
    for (method, path, want) in cases {
        c.send(format!("{method} {path} HTTP/1.1\r\nHost: web\r\n\r\n"))
            .await;
        assert_eq!(c.response(method == "HEAD").await.text(), want, "{path}");
        let (conn, m) = seen.request();
        // Each response ended where its framing said, so the upstream connection was reused.
        assert_eq!((conn, m.method(), m.target()), (0, method, path));
    }
    assert_eq!(up.accepted(), 1);
}

#[tokio::test]
async fn a_close_delimited_response_is_relayed_whole_then_the_client_connection_closes() {
    let (up, _seen) = scripted(|_| {
        Reply::trickled(&[
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nabc",
            b"def",
        ])
        .then_close()
    })
    .await;
    let p = proxy(up.addr).await;
    let mut c = client(&p).await;
    c.send(get("/")).await;
    // Nothing but the close tells the client where the body ends: the proxy says so.
    assert_eq!(
        c.response(false).await.text(),
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nabcdef"
    );
    c.closed().await;
}

#[tokio::test]
async fn an_http10_client_gets_a_chunked_response_dechunked_and_closed() {
    let (up, mut seen) = scripted(|_| {
        Reply::trickled(&[
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWi",
            b"ki\r\n5\r\npedia\r\n0\r\n\r\n",
        ])
    })
    .await;
    let p = proxy(up.addr).await;
    let mut c = client(&p).await;
    c.send("GET /old HTTP/1.0\r\n\r\n").await;
    // HTTP/1.0 has no chunked coding: the data alone, ended by the close.
    assert_eq!(
        c.response(false).await.text(),
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nWikipedia"
    );
    c.closed().await;
    // Upstreams get HTTP/1.1, with the listener's address as the Host the client had not sent.
    let (_, m) = seen.request();
    assert_eq!(m.start_line(), "GET /old HTTP/1.1");
    assert_eq!(m.header("host"), Some(p.listen.to_string().as_str()));
    // The upstream connection ended cleanly at the body's end: it is reused.
    let mut c = client(&p).await;
    c.send(get("/next")).await;
    assert_eq!(
        c.response(false).await.body,
        b"4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n"
    );
    assert_eq!(up.accepted(), 1);
}

#[tokio::test]
async fn an_answer_before_the_whole_body_closes_the_client_connection_without_a_reset() {
    // Answers 413 after the head, reads none of the body, and closes.
    let up = Upstream::start(|_, mut peer| async move {
        peer.head().await;
        peer.send(
            "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await;
    })
    .await;
    let p = proxy(up.addr).await;
    let mut c = client(&p).await;
    let total = 1 << 20;
    c.send(format!(
        "POST /upload HTTP/1.1\r\nHost: web\r\nContent-Length: {total}\r\n\r\n"
    ))
    .await;
    c.send(vec![b'x'; 1000]).await;
    // The head says the connection ends, since the rest of the body will not be read.
    assert_eq!(
        c.response(false).await.text(),
        "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    // The client may still be sending: the proxy reads and drops the rest before it closes, so
    // no reset cuts the client off (a reset would fail these writes or the read).
    for _ in 0..16 {
        within("write", c.s.write_all(&vec![b'x'; (total - 1000) / 16]))
            .await
            .expect("the rest of the body is taken, not reset");
    }
    c.s.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let read = within("read to the close", c.s.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the connection was reset: {read:?}");
    assert!(rest.is_empty(), "{rest:?}");
}

// Refusals.

#[tokio::test]
async fn ambiguous_or_malformed_requests_are_refused_and_the_connection_closed() {
    let (up, mut seen) = scripted(|m| ok(m.target())).await;
    let p = proxy_with(
        up.addr,
        ProxyConfig {
            max_header_bytes: 1024,
            ..config()
        },
    )
    .await;
    let big = format!(
        "GET / HTTP/1.1\r\nHost: web\r\nX-Big: {}\r\n\r\n",
        "x".repeat(2000)
    );
    let cases: Vec<(String, &str, &str)> = vec![
        // A request smuggling attempt: the GET must not reach the upstream as a request.
        (
            "POST / HTTP/1.1\r\nHost: web\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: web\r\n\r\n".into(),
            "400 Bad Request",
            "both Transfer-Encoding and Content-Length",
        ),
        (
            "POST / HTTP/1.1\r\nHost: web\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!".into(),
            "400 Bad Request",
            "more than one Content-Length header",
        ),
        // Framings an upstream may read differently from the proxy, each with a request hidden
        // where one of them would see the next message (nginx refuses them all too).
        (
            "POST / HTTP/1.1\r\nHost: web\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhelloGET /smuggled HTTP/1.1\r\nHost: web\r\n\r\n".into(),
            "400 Bad Request",
            "more than one Content-Length header",
        ),
        (
            "POST / HTTP/1.1\r\nHost: web\r\nContent-Length: 5, 5\r\n\r\nhelloGET /smuggled HTTP/1.1\r\nHost: web\r\n\r\n".into(),
            "400 Bad Request",
            "invalid Content-Length",
        ),
        (
            "POST / HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: web\r\n\r\n".into(),
            "501 Not Implemented",
            "Transfer-Encoding other than chunked",
        ),
        (
            "POST / HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: web\r\n\r\n".into(),
            "501 Not Implemented",
            "Transfer-Encoding other than chunked",
        ),
        (
            "POST / HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(),
            "400 Bad Request",
            "more than one Transfer-Encoding header",
        ),
        (
            "POST / HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: web\r\n\r\n".into(),
            "400 Bad Request",
            "malformed chunked body",
        ),
        (
            big,
            "431 Request Header Fields Too Large",
            "request head larger than 1024 bytes",
        ),
        (
            "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n".into(),
            "400 Bad Request",
            "no Host header",
        ),
        (
            "GET /a b HTTP/1.1\r\nHost: web\r\n\r\n".into(),
            "400 Bad Request",
            "malformed request: invalid HTTP version",
        ),
        (
            "HELLO\r\n\r\n".into(),
            "400 Bad Request",
            "malformed request: invalid token",
        ),
    ];
    for (request, status, why) in cases {
        let mut c = client(&p).await;
        c.send(&request).await;
        let body = format!("shipway-proxy: service default/web: {why}\n");
        assert_eq!(
            c.response(false).await.text(),
            own(status, &body, true),
            "{request:?}"
        );
        c.closed().await;
    }
    seen.none();
    assert_eq!(up.accepted(), 0);
}

// Hop-by-hop headers.

/// `head` with the value of X-Request-Id replaced by `*`: it differs per run.
fn without_request_id(head: &str) -> String {
    head.split("\r\n")
        .map(|l| match l.split_once(':') {
            Some((n, _)) if n.eq_ignore_ascii_case("x-request-id") => format!("{n}: *"),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

#[tokio::test]
async fn hop_by_hop_headers_stop_at_the_proxy_both_ways() {
    let (up, mut seen) = scripted(|_| {
        Reply::bytes(
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=5\r\nConnection: X-Bar\r\nX-Bar: 1\r\nX-End: yes\r\n\r\nok",
        )
    })
    .await;
    let p = proxy(up.addr).await;
    let mut c = client(&p).await;
    c.send(
        "GET /h HTTP/1.1\r\nHost: web\r\nConnection: close, X-Foo\r\nX-Foo: secret\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\nUpgrade: h2c\r\nX-Kept: yes\r\n\r\n",
    )
    .await;
    // The client asked to close: the proxy says so and does.
    assert_eq!(
        c.response(false).await.text(),
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-End: yes\r\nConnection: close\r\n\r\nok"
    );
    c.closed().await;
    let (_, m) = seen.request();
    assert_eq!(
        without_request_id(&m.head),
        "GET /h HTTP/1.1\r\nHost: web\r\nX-Kept: yes\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: web\r\nX-Request-Id: *\r\n\r\n"
    );
}

#[tokio::test]
async fn an_upstreams_connection_close_ends_that_upstream_connection_not_the_clients() {
    // The upstream says close but keeps reading: only the header tells the proxy not to reuse it.
    let (up, mut seen) = scripted(|m| {
        Reply::bytes(format!(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
            m.target()
        ))
    })
    .await;
    let p = proxy(up.addr).await;
    let mut c = client(&p).await;
    for (i, path) in ["/1", "/2"].into_iter().enumerate() {
        c.send(get(path)).await;
        assert_eq!(c.response(false).await.text(), ok_text(path));
        let (conn, m) = seen.request();
        assert_eq!(
            (conn, m.target()),
            (i, path),
            "a new upstream connection each time"
        );
    }
    assert_eq!(up.accepted(), 2);
}

// Stale pooled connections.

/// An upstream that answers one request per connection and then closes it — with a FIN, or a
/// reset when `reset` — as an upstream closing idle keep-alive connections does.
async fn one_request_per_connection(reset: bool) -> (Upstream, Seen) {
    let (req_tx, requests) = mpsc::unbounded_channel();
    let (closed_tx, closed) = mpsc::unbounded_channel();
    let up = Upstream::start(move |conn, mut peer| {
        let (req_tx, closed_tx) = (req_tx.clone(), closed_tx.clone());
        async move {
            let Some(m) = peer.request().await else {
                return;
            };
            let answer = ok_text(m.target());
            let _ = req_tx.send((conn, m));
            // Keep-alive as far as the proxy can tell.
            peer.send(answer).await;
            if reset {
                peer.s.set_zero_linger().unwrap();
            }
            drop(peer);
            let _ = closed_tx.send(conn);
        }
    })
    .await;
    (up, Seen { requests, closed })
}

#[tokio::test]
async fn a_get_does_not_fail_on_a_pooled_connection_the_upstream_closed() {
    let (up, mut seen) = one_request_per_connection(false).await;
    let p = proxy(up.addr).await;
    let mut c = client(&p).await;
    c.send(get("/1")).await;
    assert_eq!(c.response(false).await.text(), ok_text("/1"));
    // The pooled connection is closed by the time the next request comes.
    assert_eq!(seen.upstream_closed().await, 0);
    c.send(get("/2")).await;
    assert_eq!(c.response(false).await.text(), ok_text("/2"));
    // Sent once, on a fresh connection.
    assert_eq!(seen.request().0, 0);
    let (conn, m) = seen.request();
    assert_eq!((conn, m.target()), (1, "/2"));
    seen.none();
}

/// The usual way a pooled connection goes stale is the upstream's idle timeout: a FIN, after
/// which writing still succeeds and only the read fails — too late for a POST, which is not sent
/// twice. A reset makes the write fail instead. Both show before anything is sent, so the POST
/// must go on a fresh connection and reach the upstream once.
#[tokio::test]
async fn a_post_does_not_fail_on_a_pooled_connection_the_upstream_closed() {
    for reset in [false, true] {
        let (up, mut seen) = one_request_per_connection(reset).await;
        let p = proxy(up.addr).await;
        let mut c = client(&p).await;
        c.send(get("/1")).await;
        assert_eq!(c.response(false).await.text(), ok_text("/1"));
        assert_eq!(seen.upstream_closed().await, 0);
        c.send(post("/2", "hello")).await;
        assert_eq!(
            c.response(false).await.text(),
            ok_text("/2"),
            "reset: {reset}"
        );
        assert_eq!(seen.request().0, 0);
        let (conn, m) = seen.request();
        assert_eq!(
            (conn, m.method(), m.body.as_slice()),
            (1, "POST", &b"hello"[..])
        );
        seen.none();
        assert_eq!(up.accepted(), 2);
    }
}

/// An upstream that answers the first request on each connection, then reads the second and
/// closes without answering it: the second request may have been acted on.
async fn drops_the_second_request() -> (Upstream, Seen) {
    let (req_tx, requests) = mpsc::unbounded_channel();
    let (_closed_tx, closed) = mpsc::unbounded_channel();
    let up = Upstream::start(move |conn, mut peer| {
        let req_tx = req_tx.clone();
        async move {
            let Some(m) = peer.request().await else {
                return;
            };
            let answer = ok_text(m.target());
            let _ = req_tx.send((conn, m));
            peer.send(answer).await;
            if let Some(m) = peer.request().await {
                let _ = req_tx.send((conn, m));
            }
        }
    })
    .await;
    (up, Seen { requests, closed })
}

/// The documented retry rule (`conn.rs`, `forward`): once a request went out on a connection
/// that then broke before a response, only an idempotent one is sent again.
#[tokio::test]
async fn a_request_lost_after_it_was_sent_is_retried_only_when_idempotent() {
    let (up, mut seen) = drops_the_second_request().await;
    let p = proxy(up.addr).await;
    let mut c = client(&p).await;

    c.send(get("/1")).await;
    assert_eq!(c.response(false).await.text(), ok_text("/1"));
    c.send(get("/2")).await;
    assert_eq!(c.response(false).await.text(), ok_text("/2"));
    let sent: Vec<_> = (0..3)
        .map(|_| seen.request())
        .map(|(n, m)| (n, m.target().to_string()))
        .collect();
    assert_eq!(
        sent,
        [
            (0, "/1".to_string()),
            (0, "/2".to_string()),
            (1, "/2".to_string())
        ],
        "the GET is sent again on a fresh connection"
    );

    // Connection 1 is pooled with one answer left; the POST is its second request.
    c.send(post("/3", "hello")).await;
    let why = format!(
        "upstream {} (backend default) failed: connection closed early",
        up.addr
    );
    assert_eq!(
        c.response(false).await.text(),
        own(
            "502 Bad Gateway",
            &format!("shipway-proxy: service default/web: {why}\n"),
            false
        )
    );
    let (conn, m) = seen.request();
    assert_eq!(
        (conn, m.method(), m.body.as_slice()),
        (1, "POST", &b"hello"[..])
    );
    seen.none();
    assert_eq!(up.accepted(), 2);

    // The client connection was kept: the body had been read whole.
    c.send(get("/4")).await;
    assert_eq!(c.response(false).await.text(), ok_text("/4"));
}

// Upstream failures.

#[tokio::test]
async fn an_upstream_that_does_not_answer_in_time_is_a_504_naming_the_service() {
    let (up, mut seen) = scripted(|m| match m.target() {
        "/slow" => Reply::silence(),
        path => ok(path),
    })
    .await;
    // The wait for the upstream outlasts the header timeout: the next request head is timed from
    // the 504, not from before it.
    let p = proxy_with(
        up.addr,
        ProxyConfig {
            upstream_timeout: Duration::from_secs(1),
            header_read_timeout: Duration::from_millis(500),
            ..config()
        },
    )
    .await;
    let mut c = client(&p).await;
    c.send(get("/slow")).await;
    let body = format!(
        "shipway-proxy: service default/web: upstream {} (backend default) sent no response within 1s\n",
        up.addr
    );
    assert_eq!(
        c.response(false).await.text(),
        own("504 Gateway Timeout", &body, false)
    );
    assert_eq!(seen.request().1.target(), "/slow");
    // Not retried: the upstream may still be working on it.
    seen.none();
    // The 504 kept the connection open, so it must serve the next request.
    c.send(get("/fast")).await;
    assert_eq!(c.response(false).await.text(), ok_text("/fast"));
}

#[tokio::test]
async fn an_upstream_that_closes_without_answering_is_a_502_that_says_so() {
    // Reads the request head, then closes.
    let up = Upstream::start(|_, mut peer| async move {
        let _ = peer.head().await;
    })
    .await;
    let p = proxy(up.addr).await;
    let body = format!(
        "shipway-proxy: service default/web: upstream {} (backend default) failed: connection closed early\n",
        up.addr
    );
    let mut c = client(&p).await;
    c.send(get("/")).await;
    assert_eq!(
        c.response(false).await.text(),
        own("502 Bad Gateway", &body, false)
    );
    // A GET is tried on as many connections as connect attempts allow.
    assert_eq!(up.accepted(), ProxyConfig::default().connect_attempts);
    c.send(post("/", "hello")).await;
    assert_eq!(
        c.response(false).await.text(),
        own("502 Bad Gateway", &body, false)
    );
    // A POST once.
    assert_eq!(up.accepted(), ProxyConfig::default().connect_attempts + 1);
}

// Mirroring.

#[tokio::test]
async fn a_mirrored_post_reaches_the_mirror_with_the_same_head_and_body() {
    let (main, mut main_seen) = scripted(|_| ok("main")).await;
    let (shadow, mut shadow_seen) = scripted(|_| ok("shadow")).await;
    let mut spec = route(
        dead_addr(),
        vec![
            backend("main", 100, &[main.addr]),
            backend("shadow", 0, &[shadow.addr]),
        ],
    );
    spec.mirror = Some((1, 100));
    let p = TestProxy::start(spec, config()).await;
    let mut c = client(&p).await;
    let requests = [
        post("/m", "payload"),
        format!(
            "POST /c HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n{}",
            String::from_utf8_lossy(CHUNKED)
        ),
    ];
    for request in requests {
        c.send(&request).await;
        assert_eq!(c.response(false).await.text(), ok_text("main"));
        let (_, sent) = main_seen.request();
        let (_, mirrored) = within("the mirror's copy", shadow_seen.requests.recv())
            .await
            .expect("a mirrored request");
        assert_eq!(mirrored.head, sent.head);
        assert_eq!(mirrored.body, sent.body);
        assert!(request.as_bytes().ends_with(&sent.body), "{request:?}");
    }
}

#[tokio::test]
async fn garbage_from_clients_never_takes_the_proxy_down() {
    let (up, _seen) = scripted(|m| ok(m.target())).await;
    let p = proxy_with(
        up.addr,
        ProxyConfig {
            header_read_timeout: Duration::from_millis(300),
            ..config()
        },
    )
    .await;
    // Deterministic noise: random bytes, and request-like text with random damage.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut clients = Vec::new();
    for i in 0..200 {
        let mut bytes: Vec<u8> = if i % 2 == 0 {
            (0..next() % 600).map(|_| next() as u8).collect()
        } else {
            post("/x", "hello").into_bytes()
        };
        for _ in 0..next() % 4 {
            if !bytes.is_empty() {
                let at = (next() as usize) % bytes.len();
                bytes[at] = next() as u8;
            }
        }
        let listen = p.listen;
        clients.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(listen).await.unwrap();
            let _ = s.write_all(&bytes).await;
            let mut answer = Vec::new();
            // The proxy answers, or closes once the header timeout has passed.
            let _ = within("an answer or a close", s.read_to_end(&mut answer)).await;
            answer
        }));
    }
    for c in clients {
        let answer = c.await.unwrap();
        assert!(
            answer.is_empty() || answer.starts_with(b"HTTP/1.1 "),
            "{:?}",
            String::from_utf8_lossy(&answer)
        );
    }
    // And it still serves.
    let mut c = client(&p).await;
    c.send(get("/after")).await;
    assert_eq!(c.response(false).await.text(), ok_text("/after"));
}
