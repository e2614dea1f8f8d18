//! HTTP/1.1 message handling for the proxy's own data path (RFC 9112): how a request or response
//! is framed, the heads the proxy writes (hop-by-hop headers gone, forwarding headers added), and
//! a chunked-body scanner. Pure functions over bytes, so the rules are tested without sockets.
//!
//! The data path parses heads with `httparse` and copies bodies through unchanged; it never
//! builds a header map. Anything ambiguous about framing (both Content-Length and
//! Transfer-Encoding, differing lengths, a malformed chunk) is refused rather than guessed, since
//! a proxy and its upstream that disagree on where a message ends can be made to smuggle requests.

use std::io::Write as _;

/// Most header fields a head may have; more is answered 431.
pub const MAX_HEADERS: usize = 100;

/// Where a message's body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// Until the sender closes (responses only).
    Close,
}

/// Why a head cannot be forwarded; requests get the status, responses a 502.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused {
    pub status: u16,
    pub why: &'static str,
}

fn refused(status: u16, why: &'static str) -> Refused {
    Refused { status, why }
}

/// Hop-by-hop headers (RFC 9110 §7.6.1): meaningful for one connection only, never forwarded.
fn hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// Headers that `Connection` may not remove: dropping them would change where a message ends or
/// whom it is for, between the proxy and the upstream.
fn protected(name: &str) -> bool {
    ["content-length", "transfer-encoding", "host"]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
}

/// Comma-separated tokens of every `name` header, trimmed.
fn tokens<'a>(
    headers: &'a [httparse::Header<'a>],
    name: &'a str,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .flat_map(|h| h.value.split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

fn has_token(headers: &[httparse::Header<'_>], name: &str, token: &str) -> bool {
    tokens(headers, name).any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
}

/// Whether header `name` is listed in this message's `Connection` header (and so hop-by-hop).
fn named_by_connection(headers: &[httparse::Header<'_>], name: &str) -> bool {
    !protected(name) && has_token(headers, "connection", name)
}

/// Most heads have no `Connection` header naming others: one pass tells, so the per-header
/// check is skipped.
fn has_connection(headers: &[httparse::Header<'_>]) -> bool {
    headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("connection"))
}

/// Body framing from Transfer-Encoding and Content-Length (RFC 9112 §6.3), without the
/// message-kind rules (HEAD, 204, 304) that only responses have.
///
/// A request (`close_otherwise` false) is framed one way only, as nginx requires, because its
/// head goes upstream as received: one Content-Length field of digits, or one Transfer-Encoding
/// field that is exactly `chunked`. `Content-Length: 5, 5`, two such fields, or
/// `Transfer-Encoding: identity, chunked` may be read differently by the upstream, which would
/// then take the rest of the body, or the next client's request, for a message of its own.
fn body_framing(
    headers: &[httparse::Header<'_>],
    close_otherwise: bool,
) -> Result<Framing, Refused> {
    let named = |name: &'static str| {
        headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
    };
    let has_te = named("transfer-encoding").next().is_some();
    if !close_otherwise {
        if named("content-length").nth(1).is_some() {
            return Err(refused(400, "more than one Content-Length header"));
        }
        if named("transfer-encoding").nth(1).is_some() {
            return Err(refused(400, "more than one Transfer-Encoding header"));
        }
        if named("content-length").any(|h| h.value.contains(&b',')) {
            return Err(refused(400, "invalid Content-Length"));
        }
        if named("transfer-encoding")
            .any(|h| !h.value.trim_ascii().eq_ignore_ascii_case(b"chunked"))
        {
            return Err(refused(501, "Transfer-Encoding other than chunked"));
        }
    }
    let mut length: Option<u64> = None;
    for h in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
    {
        for v in h.value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
            let n = std::str::from_utf8(v)
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| refused(400, "invalid Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(refused(400, "conflicting Content-Length values"));
            }
            length = Some(n);
        }
    }
    if has_te {
        if length.is_some() {
            return Err(refused(400, "both Transfer-Encoding and Content-Length"));
        }
        return match tokens(headers, "transfer-encoding").last() {
            Some(t) if t.eq_ignore_ascii_case(b"chunked") => Ok(Framing::Chunked),
            _ if close_otherwise => Ok(Framing::Close),
            _ => Err(refused(400, "Transfer-Encoding does not end in chunked")),
        };
    }
    Ok(match length {
        Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
        None if close_otherwise => Framing::Close,
        None => Framing::Empty,
    })
}

/// What the connection loop needs to know about a request, besides its head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestInfo {
    pub framing: Framing,
    /// The client wants the connection kept open after the response.
    pub keep_alive: bool,
    /// HTTP/1.0 client: no chunked responses, keep-alive only when asked for.
    pub http10: bool,
    /// Asks to switch protocols (WebSocket): spliced after a 101.
    pub upgrade: bool,
    pub head: bool,
    /// GET, HEAD, OPTIONS, TRACE, PUT, DELETE: safe to send twice when a connection broke.
    pub idempotent: bool,
}

/// The parts of the proxy's own identity a forwarded request head carries.
pub struct Forwarding<'a> {
    /// The client's IP for X-Forwarded-For.
    pub client_ip: &'a str,
    /// Written as X-Request-Id when the client sent none.
    pub request_id: (u32, u64),
    /// Host to send when an HTTP/1.0 client sent none (HTTP/1.1 requires one).
    pub default_host: &'a str,
}

/// Checks a parsed request and writes the head to send upstream into `out` (cleared first):
/// origin-form target, HTTP/1.1, hop-by-hop headers dropped, forwarding headers and a request
/// id added, upgrade headers kept for an upgrade.
pub fn upstream_request(
    req: &httparse::Request<'_, '_>,
    fwd: &Forwarding<'_>,
    out: &mut Vec<u8>,
) -> Result<RequestInfo, Refused> {
    let method = req.method.unwrap_or("GET");
    let target = req.path.unwrap_or("/");
    let headers: &[httparse::Header<'_>] = req.headers;
    let http10 = req.version == Some(0);
    if method == "CONNECT" {
        return Err(refused(405, "CONNECT is not supported"));
    }
    let framing = body_framing(headers, false)?;
    if http10 && framing == Framing::Chunked {
        return Err(refused(400, "Transfer-Encoding in an HTTP/1.0 request"));
    }
    // Absolute form (`GET http://host/path`): the path goes upstream, the authority is the host.
    let (path, target_host) = match target.strip_prefix("http://") {
        Some(rest) => match rest.find('/') {
            Some(i) => (&rest[i..], Some(&rest[..i])),
            None => ("/", Some(rest)),
        },
        None if target.starts_with('/') || target == "*" => (target, None),
        None => return Err(refused(400, "request target is not a path")),
    };
    let host = target_host.map(str::as_bytes).or_else(|| {
        headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("host"))
            .map(|h| h.value)
    });
    if !http10 && host.is_none() {
        return Err(refused(400, "no Host header"));
    }
    // RFC 9112 §3.2: two Host fields could send the proxy and the upstream to different hosts.
    if headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"))
        .nth(1)
        .is_some()
    {
        return Err(refused(400, "more than one Host header"));
    }
    let upgrade = !http10
        && has_token(headers, "connection", "upgrade")
        && headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("upgrade"));
    let keep_alive = if http10 {
        has_token(headers, "connection", "keep-alive")
    } else {
        !has_token(headers, "connection", "close")
    };

    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut request_id = false;
    let mut forwarded_for: Vec<&[u8]> = Vec::new();
    let connection = has_connection(headers);
    for h in headers {
        let name = h.name;
        if hop_by_hop(name) || (connection && named_by_connection(headers, name)) {
            continue;
        }
        if name.eq_ignore_ascii_case("x-forwarded-for") {
            forwarded_for.push(h.value);
            continue;
        }
        if name.eq_ignore_ascii_case("x-forwarded-proto")
            || name.eq_ignore_ascii_case("x-forwarded-host")
            || (target_host.is_some() && name.eq_ignore_ascii_case("host"))
        {
            continue;
        }
        request_id |= name.eq_ignore_ascii_case("x-request-id");
        header(out, name.as_bytes(), h.value);
    }
    match host {
        Some(host) if target_host.is_some() => header(out, b"Host", host),
        None => header(out, b"Host", fwd.default_host.as_bytes()),
        Some(_) => {}
    }
    out.extend_from_slice(b"X-Forwarded-For: ");
    for v in forwarded_for {
        out.extend_from_slice(v);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(fwd.client_ip.as_bytes());
    out.extend_from_slice(b"\r\nX-Forwarded-Proto: http\r\n");
    if let Some(host) = host {
        header(out, b"X-Forwarded-Host", host);
    }
    if !request_id {
        out.extend_from_slice(b"X-Request-Id: ");
        hex(out, u64::from(fwd.request_id.0), 8);
        out.push(b'-');
        hex(out, fwd.request_id.1, 1);
        out.extend_from_slice(b"\r\n");
    }
    if upgrade {
        upgrade_fields(headers, out);
    }
    out.extend_from_slice(b"\r\n");
    Ok(RequestInfo {
        framing,
        keep_alive,
        http10,
        upgrade,
        head: method == "HEAD",
        idempotent: matches!(
            method,
            "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
        ),
    })
}

/// `n` in lower-case hex, at least `width` digits: the formatter is slow for a per-request id.
fn hex(out: &mut Vec<u8>, n: u64, width: usize) {
    let digits = ((64 - n.leading_zeros() as usize).div_ceil(4)).max(width);
    for i in (0..digits).rev() {
        out.push(b"0123456789abcdef"[((n >> (4 * i)) & 0xf) as usize]);
    }
}

/// The fields an upgrade keeps across the proxy, though hop-by-hop: `Connection: upgrade` and
/// the message's `Upgrade` values.
fn upgrade_fields(headers: &[httparse::Header<'_>], out: &mut Vec<u8>) {
    out.extend_from_slice(b"Connection: upgrade\r\n");
    for h in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("upgrade"))
    {
        header(out, b"Upgrade", h.value);
    }
}

fn header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// What the connection loop needs to know about a response, besides its head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseInfo {
    pub status: u16,
    /// As received; `Chunked` is passed through unchanged to HTTP/1.1 clients.
    pub framing: Framing,
    /// The upstream connection may carry another request after this response.
    pub reusable: bool,
    /// The body is chunked but the client speaks HTTP/1.0: the proxy decodes it and closes.
    pub dechunk: bool,
    /// The client connection stays open after this response.
    pub keep_alive: bool,
}

/// Checks a parsed final (non-1xx, or 101) response and writes the head to send to the client
/// into `out` (cleared first).
pub fn client_response(
    resp: &httparse::Response<'_, '_>,
    req: &RequestInfo,
    out: &mut Vec<u8>,
) -> Result<ResponseInfo, Refused> {
    let status = resp.code.unwrap_or(502);
    let headers: &[httparse::Header<'_>] = resp.headers;
    let switching = status == 101 && req.upgrade;
    let framing = if req.head || status == 204 || status == 304 || (100..200).contains(&status) {
        Framing::Empty
    } else {
        body_framing(headers, true)
            .map_err(|_| refused(502, "the upstream sent an invalid response"))?
    };
    let upstream_close = if resp.version == Some(0) {
        !has_token(headers, "connection", "keep-alive")
    } else {
        has_token(headers, "connection", "close")
    };
    let dechunk = req.http10 && framing == Framing::Chunked;
    // A body that ends with the upstream's close, or that is rewritten, ends the client
    // connection too: nothing else tells the client where it ends.
    let keep_alive = req.keep_alive && !switching && framing != Framing::Close && !dechunk;

    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    // Status codes are three digits (httparse checks).
    out.extend_from_slice(&[
        b'0' + (status / 100 % 10) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
        b' ',
    ]);
    out.extend_from_slice(resp.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let connection = has_connection(headers);
    for h in headers {
        let name = h.name;
        if hop_by_hop(name) || (connection && named_by_connection(headers, name)) {
            continue;
        }
        if dechunk && name.eq_ignore_ascii_case("transfer-encoding") {
            continue;
        }
        header(out, name.as_bytes(), h.value);
    }
    if switching {
        upgrade_fields(headers, out);
    } else if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if req.http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(ResponseInfo {
        status,
        framing,
        reusable: !upstream_close && !switching && framing != Framing::Close,
        dechunk,
        keep_alive,
    })
}

/// A response the proxy makes itself (errors): the body names the service and the reason.
pub fn own_response(out: &mut Vec<u8>, status: u16, reason: &str, body: &str, keep_alive: bool) {
    out.clear();
    let _ = write!(
        out,
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\nx-shipway-proxy-error: 1\r\ncontent-length: {}\r\n{}\r\n{body}",
        body.len(),
        if keep_alive {
            ""
        } else {
            "connection: close\r\n"
        },
    );
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Chunk {
    #[default]
    Size,
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    Trailer,
    TrailerLine,
    TrailerLf,
    EndLf,
    Done,
}

/// Finds where a chunked body ends, byte by byte across reads, strictly (CRLF line ends, at most
/// 16 hex digits), and hands out the data of the chunks when asked.
#[derive(Debug, Default)]
pub struct Chunked {
    state: Chunk,
    size: u64,
    digits: u8,
}

#[derive(Debug, PartialEq, Eq)]
pub struct BadChunk;

impl Chunked {
    pub fn done(&self) -> bool {
        self.state == Chunk::Done
    }

    /// Scans `input` up to the end of the body: returns how many bytes belong to it. `data` gets
    /// the chunks' payload slices.
    pub fn scan(&mut self, input: &[u8], mut data: impl FnMut(&[u8])) -> Result<usize, BadChunk> {
        let mut i = 0;
        while i < input.len() && self.state != Chunk::Done {
            let b = input[i];
            self.state = match self.state {
                Chunk::Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' if self.digits < 16 => {
                        let d = (b as char).to_digit(16).unwrap_or(0);
                        self.size = (self.size << 4) | u64::from(d);
                        self.digits += 1;
                        Chunk::Size
                    }
                    // No whitespace after the size (RFC 9112 §7.1 has none without an
                    // extension, and upstreams differ on it): the body is passed on as received.
                    b';' if self.digits > 0 => Chunk::Ext,
                    b'\r' if self.digits > 0 => Chunk::SizeLf,
                    _ => return Err(BadChunk),
                },
                Chunk::Ext => match b {
                    b'\r' => Chunk::SizeLf,
                    b'\n' => return Err(BadChunk),
                    _ => Chunk::Ext,
                },
                Chunk::SizeLf if b == b'\n' => {
                    self.digits = 0;
                    if self.size == 0 {
                        Chunk::Trailer
                    } else {
                        Chunk::Data
                    }
                }
                Chunk::Data => {
                    let n = (input.len() - i).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                    data(&input[i..i + n]);
                    self.size -= n as u64;
                    i += n;
                    if self.size == 0 {
                        self.state = Chunk::DataCr;
                    }
                    continue;
                }
                Chunk::DataCr if b == b'\r' => Chunk::DataLf,
                Chunk::DataLf if b == b'\n' => Chunk::Size,
                Chunk::Trailer => match b {
                    b'\r' => Chunk::EndLf,
                    b'\n' => return Err(BadChunk),
                    _ => Chunk::TrailerLine,
                },
                Chunk::TrailerLine => match b {
                    b'\r' => Chunk::TrailerLf,
                    b'\n' => return Err(BadChunk),
                    _ => Chunk::TrailerLine,
                },
                Chunk::TrailerLf if b == b'\n' => Chunk::Trailer,
                Chunk::EndLf if b == b'\n' => Chunk::Done,
                _ => return Err(BadChunk),
            };
            i += 1;
        }
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(raw: &str) -> Result<(RequestInfo, String), Refused> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        assert!(req.parse(raw.as_bytes()).unwrap().is_complete());
        let mut out = Vec::new();
        let fwd = Forwarding {
            client_ip: "127.0.0.9",
            request_id: (0xab, 0x10),
            default_host: "127.0.0.1:8080",
        };
        let info = upstream_request(&req, &fwd, &mut out)?;
        Ok((info, String::from_utf8(out).unwrap()))
    }

    #[test]
    fn a_request_head_loses_hop_by_hop_headers_and_gains_forwarding_ones() {
        let (info, head) = request(
            "GET /a?b=1 HTTP/1.1\r\nHost: web\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nX-Forwarded-For: 10.0.0.1\r\nAccept: */*\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            head,
            "GET /a?b=1 HTTP/1.1\r\nHost: web\r\nAccept: */*\r\nX-Forwarded-For: 10.0.0.1, 127.0.0.9\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: web\r\nX-Request-Id: 000000ab-10\r\n\r\n"
        );
        assert_eq!(info.framing, Framing::Empty);
        assert!(info.keep_alive && info.idempotent && !info.upgrade && !info.http10);
    }

    #[test]
    fn connection_cannot_strip_the_framing_headers() {
        let (info, head) = request(
            "POST / HTTP/1.1\r\nHost: h\r\nConnection: content-length, close\r\nContent-Length: 3\r\nX-Request-Id: r1\r\n\r\n",
        )
        .unwrap();
        assert!(head.contains("Content-Length: 3\r\n"), "{head}");
        assert!(head.contains("X-Request-Id: r1\r\n") && !head.contains("000000ab"));
        assert_eq!(info.framing, Framing::Length(3));
        assert!(!info.keep_alive && !info.idempotent);
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        let bad = [
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n",
        ];
        for raw in bad {
            assert!(request(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn a_request_is_framed_one_way_only_as_nginx_requires() {
        let refused_with = |raw: &str| request(raw).err().map(|r| (r.status, r.why));
        let cases = [
            ("Content-Length: 5, 5", 400, "invalid Content-Length"),
            (
                "Content-Length: 5\r\nContent-Length: 5",
                400,
                "more than one Content-Length header",
            ),
            (
                "Transfer-Encoding: identity, chunked",
                501,
                "Transfer-Encoding other than chunked",
            ),
            (
                "Transfer-Encoding: chunked, chunked",
                501,
                "Transfer-Encoding other than chunked",
            ),
            (
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
                400,
                "more than one Transfer-Encoding header",
            ),
            (
                "Transfer-Encoding: gzip",
                501,
                "Transfer-Encoding other than chunked",
            ),
        ];
        for (fields, status, why) in cases {
            let raw = format!("POST / HTTP/1.1\r\nHost: h\r\n{fields}\r\n\r\n");
            assert_eq!(refused_with(&raw), Some((status, why)), "{fields}");
        }
        let (info, head) =
            request("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n").unwrap();
        assert_eq!(info.framing, Framing::Chunked);
        assert!(head.contains("Transfer-Encoding: Chunked\r\n"), "{head}");
    }

    #[test]
    fn a_chunk_size_with_whitespace_after_it_is_refused() {
        for size_line in ["5 \r\n", "5\t\r\n", "5 ;a=b\r\n"] {
            let input = format!("{size_line}hello\r\n0\r\n\r\n");
            assert_eq!(
                Chunked::default().scan(input.as_bytes(), |_| {}),
                Err(BadChunk),
                "{size_line:?}"
            );
        }
        let ok = b"5;a=b\r\nhello\r\n0\r\n\r\n";
        assert_eq!(Chunked::default().scan(ok, |_| {}), Ok(ok.len()));
    }

    #[test]
    fn absolute_form_and_http10_and_upgrades() {
        let (info, head) = request("GET http://api:81/x HTTP/1.1\r\nHost: other\r\n\r\n").unwrap();
        assert!(
            head.starts_with("GET /x HTTP/1.1\r\nHost: api:81\r\n"),
            "{head}"
        );
        assert!(info.keep_alive);
        let (info, head) = request("GET / HTTP/1.0\r\n\r\n").unwrap();
        assert!(head.contains("Host: 127.0.0.1:8080\r\n"), "{head}");
        assert!(info.http10 && !info.keep_alive);
        let (info, head) = request(
            "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        )
        .unwrap();
        assert!(info.upgrade);
        assert!(
            head.ends_with("Connection: upgrade\r\nUpgrade: websocket\r\n\r\n"),
            "{head}"
        );
    }

    fn response(raw: &str, req: RequestInfo) -> Result<(ResponseInfo, String), Refused> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        assert!(resp.parse(raw.as_bytes()).unwrap().is_complete());
        let mut out = Vec::new();
        let info = client_response(&resp, &req, &mut out)?;
        Ok((info, String::from_utf8(out).unwrap()))
    }

    fn get() -> RequestInfo {
        RequestInfo {
            framing: Framing::Empty,
            keep_alive: true,
            http10: false,
            upgrade: false,
            head: false,
            idempotent: true,
        }
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        let (i, head) = response(
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n",
            get(),
        )
        .unwrap();
        assert_eq!(head, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n");
        assert_eq!(i.framing, Framing::Length(2));
        assert!(i.reusable && i.keep_alive);
        let (i, _) = response(
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
            RequestInfo {
                head: true,
                ..get()
            },
        )
        .unwrap();
        assert_eq!(i.framing, Framing::Empty);
        let (i, head) = response("HTTP/1.1 200 OK\r\n\r\n", get()).unwrap();
        assert_eq!(i.framing, Framing::Close);
        assert!(!i.reusable && !i.keep_alive);
        assert!(head.ends_with("Connection: close\r\n\r\n"));
        let (i, _) = response("HTTP/1.0 204 No Content\r\n\r\n", get()).unwrap();
        assert_eq!(i.framing, Framing::Empty);
        assert!(!i.reusable && i.keep_alive);
        let (i, head) = response(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            RequestInfo {
                http10: true,
                ..get()
            },
        )
        .unwrap();
        assert!(i.dechunk && !i.keep_alive);
        assert!(!head.contains("chunked"), "{head}");
        assert!(response("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", get()).is_err());
        let (i, head) = response(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            RequestInfo {
                upgrade: true,
                ..get()
            },
        )
        .unwrap();
        assert!(!i.reusable && !i.keep_alive);
        assert!(
            head.ends_with("Connection: upgrade\r\nUpgrade: websocket\r\n\r\n"),
            "{head}"
        );
    }

    #[test]
    fn chunked_bodies_end_where_they_end_in_any_split() {
        let body = b"5;x=y\r\nhello\r\n1\r\n!\r\n0\r\nTrailer: t\r\n\r\nNEXT";
        let end = body.len() - 4;
        for split in 0..body.len() {
            let mut c = Chunked::default();
            let mut data = Vec::new();
            let a = c
                .scan(&body[..split], |d| data.extend_from_slice(d))
                .unwrap();
            assert_eq!(a, split.min(end));
            let b = c.scan(&body[a..], |d| data.extend_from_slice(d)).unwrap();
            assert_eq!(a + b, end, "split {split}");
            assert!(c.done());
            assert_eq!(data, b"hello!");
        }
        for bad in [
            &b"x\r\n"[..],
            b"5\nhello",
            b"2\r\nabX",
            b"11111111111111111\r\n",
            b"\r\n",
        ] {
            assert_eq!(
                Chunked::default().scan(bad, |_| {}),
                Err(BadChunk),
                "{bad:?}"
            );
        }
    }

    mod prop {
        use proptest::prelude::*;

        use super::super::*;

        /// A chunked body: chunks of the given sizes (with an extension on some), a trailer
        /// field or not, then bytes of the next message.
        fn encode(chunks: &[(Vec<u8>, bool)], trailer: bool) -> (Vec<u8>, Vec<u8>) {
            let (mut wire, mut data) = (Vec::new(), Vec::new());
            for (chunk, ext) in chunks.iter().filter(|(c, _)| !c.is_empty()) {
                wire.extend_from_slice(format!("{:x}", chunk.len()).as_bytes());
                if *ext {
                    wire.extend_from_slice(b";name=value");
                }
                wire.extend_from_slice(b"\r\n");
                wire.extend_from_slice(chunk);
                wire.extend_from_slice(b"\r\n");
                data.extend_from_slice(chunk);
            }
            wire.extend_from_slice(b"0\r\n");
            if trailer {
                wire.extend_from_slice(b"Checksum: abc\r\n");
            }
            wire.extend_from_slice(b"\r\n");
            (wire, data)
        }

        proptest! {
            #[test]
            fn chunked_scanning_finds_the_end_and_the_data_at_any_split(
                chunks in prop::collection::vec((prop::collection::vec(any::<u8>(), 0..40), any::<bool>()), 0..6),
                trailer in any::<bool>(),
                splits in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
            ) {
                let (wire, data) = encode(&chunks, trailer);
                let mut input = wire.clone();
                input.extend_from_slice(b"GET / HTTP/1.1\r\n");
                let mut cuts: Vec<usize> = splits.iter().map(|i| i.index(input.len() + 1)).collect();
                cuts.push(input.len());
                cuts.sort_unstable();
                let (mut scanner, mut got, mut at) = (Chunked::default(), Vec::new(), 0);
                for cut in cuts {
                    if at < cut && !scanner.done() {
                        let piece = &input[at..cut];
                        let n = scanner.scan(piece, |d| got.extend_from_slice(d)).unwrap();
                        // It stops short of a piece's end only at the body's end.
                        prop_assert!(n == piece.len() || scanner.done());
                        at += n;
                    }
                }
                prop_assert!(scanner.done());
                prop_assert_eq!(at, wire.len());
                prop_assert_eq!(got, data);
            }

            /// A chunk-size line the scanner accepts is hex digits, then nothing or an extension
            /// after `;`: nothing a naive upstream could read as another size.
            #[test]
            fn accepted_chunk_size_lines_are_hex_then_an_extension(line in "[0-9a-fA-Fx ;\t=]{0,10}") {
                let input = format!("{line}\r\n");
                if Chunked::default().scan(input.as_bytes(), |_| {}).is_ok() {
                    let size = line.split(';').next().unwrap_or_default();
                    prop_assert!(!size.is_empty() && size.bytes().all(|b| b.is_ascii_hexdigit()), "{line:?}");
                }
            }

            #[test]
            fn arbitrary_bytes_never_panic_the_scanner(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
                let _ = Chunked::default().scan(&bytes, |_| {});
            }

            /// Heads made of the fields that decide framing and forwarding, in any mix: the
            /// rewriting never panics, and what it sends upstream is one complete, parseable head
            /// with no hop-by-hop field left and the same framing.
            #[test]
            fn rewritten_heads_parse_and_keep_their_framing(
                method in prop::sample::select(vec!["GET", "POST", "HEAD", "PUT", "OPTIONS", "CONNECT"]),
                target in prop::sample::select(vec!["/", "/a?b=c", "*", "http://h:1/x", "http://h", "x"]),
                version in 0u8..2,
                fields in prop::collection::vec(prop::sample::select(vec![
                    "Host: web", "Connection: close", "Connection: keep-alive, X-A", "Connection: upgrade",
                    "Connection: content-length", "Upgrade: websocket", "X-A: 1", "TE: trailers",
                    "Keep-Alive: 5", "Content-Length: 5", "Content-Length: 6", "Content-Length: x",
                    "Transfer-Encoding: chunked", "Transfer-Encoding: gzip", "X-Forwarded-For: 9.9.9.9",
                    "Content-Length: 5, 5", "Transfer-Encoding: identity, chunked",
                    "Transfer-Encoding: chunked, chunked",
                    "X-Forwarded-Host: other", "X-Request-Id: abc", "Trailer: X-B",
                ]), 0..8),
            ) {
                let mut raw = format!("{method} {target} HTTP/1.{version}\r\n");
                for f in &fields {
                    raw.push_str(f);
                    raw.push_str("\r\n");
                }
                raw.push_str("\r\n");
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut req = httparse::Request::new(&mut headers);
                prop_assert!(req.parse(raw.as_bytes()).unwrap().is_complete());
                let fwd = Forwarding { client_ip: "1.2.3.4", request_id: (1, 2), default_host: "h:1" };
                let mut out = Vec::new();
                let Ok(info) = upstream_request(&req, &fwd, &mut out) else {
                    return Ok(());
                };
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS + 8];
                let mut sent = httparse::Request::new(&mut headers);
                prop_assert_eq!(sent.parse(&out), Ok(httparse::Status::Complete(out.len())));
                let mut hop = vec!["connection", "keep-alive", "te", "trailer", "upgrade"];
                if fields.contains(&"Connection: keep-alive, X-A") {
                    hop.push("x-a");
                }
                for h in sent.headers.iter() {
                    let upgrade_field = info.upgrade && ["connection", "upgrade"].contains(&h.name.to_ascii_lowercase().as_str());
                    prop_assert!(upgrade_field || !hop.contains(&h.name.to_ascii_lowercase().as_str()), "{} went upstream", h.name);
                }
                prop_assert_eq!(body_framing(sent.headers, false), Ok(info.framing));
                // What went upstream is framed one way only: a naive reader (the first
                // Content-Length as a number, any Transfer-Encoding as chunked) agrees.
                let fields = |name: &str| sent.headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value).collect::<Vec<_>>();
                let (lengths, codings) = (fields("content-length"), fields("transfer-encoding"));
                prop_assert!(lengths.len() + codings.len() <= 1, "{lengths:?} {codings:?}");
                let naive = match (lengths.first(), codings.first()) {
                    (Some(l), _) => match std::str::from_utf8(l).ok().and_then(|l| l.parse::<u64>().ok()) {
                        Some(0) => Framing::Empty,
                        Some(n) => Framing::Length(n),
                        None => Framing::Close,
                    },
                    (None, Some(c)) if c.eq_ignore_ascii_case(b"chunked") => Framing::Chunked,
                    (None, Some(_)) => Framing::Close,
                    (None, None) => Framing::Empty,
                };
                prop_assert_eq!(naive, info.framing);
                prop_assert_eq!(sent.headers.iter().filter(|h| h.name.eq_ignore_ascii_case("host")).count(), 1);
            }
        }
    }
}
