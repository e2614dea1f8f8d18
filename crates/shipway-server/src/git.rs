//! `/git/NAME.git/...`: hosted repositories served through git's own `git http-backend` (CGI),
//! behind Shipway's tokens. Viewers fetch; deployers and admins push. Bodies are streamed both
//! ways; after a push lands, `shipway_git::hosted::Hosted::pushed` wakes whoever watches.

use std::process::Stdio;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use crate::{ApiError, AppState, Caller, Role};

/// The most a client may send in one request (a push's pack).
pub const MAX_REQUEST_BYTES: u64 = 1 << 30;
/// The most CGI header bytes read from git http-backend before its body.
const MAX_CGI_HEAD: usize = 64 * 1024;

/// The services a request asks for: pushing needs a deployer.
fn is_push(rest: &str, query: &str) -> bool {
    rest == "git-receive-pack" || query.split('&').any(|kv| kv == "service=git-receive-pack")
}

pub(crate) async fn serve(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((repo, rest)): Path<(String, String)>,
    request: Request,
) -> Response {
    let Some(hosted) = state.hosted.clone() else {
        return ApiError::NotFound("no hosted repositories on this server".into()).into_response();
    };
    let Some(name) = repo.strip_suffix(".git") else {
        return ApiError::NotFound(format!("no hosted repository {repo:?}: expected NAME.git"))
            .into_response();
    };
    if let Err(e) = hosted.dir(name) {
        return ApiError::NotFound(e.to_string()).into_response();
    }
    match hosted.owner(name).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return ApiError::NotFound(format!("no hosted repository {name:?}")).into_response();
        }
        Err(e) => return ApiError::Internal(e.to_string()).into_response(),
    }
    let query = request.uri().query().unwrap_or("").to_string();
    let push = is_push(&rest, &query);
    if push && caller.role < Role::Deployer {
        return ApiError::Forbidden {
            caller: caller.name.clone(),
            verb: "push",
            resource: "repositories".into(),
            namespace: None,
            role: caller.role,
            needs: Role::Deployer,
        }
        .into_response();
    }
    match cgi(&state, hosted.root(), name, &rest, &query, &caller, request).await {
        Ok((response, child)) => {
            // The push has landed once the backend exits; tell the subscribers then.
            let name = name.to_string();
            let by = caller.name.clone();
            tokio::spawn(async move {
                let status = child.wait_with_output().await;
                match status {
                    Ok(out) if out.status.success() => {
                        if push
                            && rest == "git-receive-pack"
                            && let Err(e) = hosted.pushed(&name, &by).await
                        {
                            tracing::warn!(repository = %name, error = %e, "after a push");
                        }
                    }
                    Ok(out) => tracing::warn!(
                        repository = %name,
                        status = %out.status,
                        stderr = %String::from_utf8_lossy(&out.stderr).trim(),
                        "git http-backend failed"
                    ),
                    Err(e) => tracing::warn!(repository = %name, error = %e, "git http-backend"),
                }
            });
            response
        }
        Err(e) => ApiError::Internal(e).into_response(),
    }
}

/// Runs `git http-backend` for one request: the request body streamed to its standard input
/// (cut off past [`MAX_REQUEST_BYTES`]), its CGI head turned into the response's status and
/// headers and the rest streamed as the body. The child is returned to be waited for.
async fn cgi(
    state: &AppState,
    root: &std::path::Path,
    name: &str,
    rest: &str,
    query: &str,
    caller: &Caller,
    request: Request,
) -> Result<(Response, tokio::process::Child), String> {
    let headers = request.headers().clone();
    let method = request.method().as_str().to_string();
    let mut c = Command::new(&state.git_backend);
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", root)
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", format!("/{name}.git/{rest}"))
        .env("REQUEST_METHOD", &method)
        .env("QUERY_STRING", query)
        .env("REMOTE_USER", &caller.name)
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let text = |h: HeaderName| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    if let Some(v) = text(header::CONTENT_TYPE) {
        c.env("CONTENT_TYPE", v);
    }
    if let Some(v) = text(header::CONTENT_LENGTH) {
        c.env("CONTENT_LENGTH", v);
    }
    if let Some(v) = text(header::CONTENT_ENCODING) {
        c.env("HTTP_CONTENT_ENCODING", v);
    }
    // Protocol v2 is asked for in this header; its values are short `key=value:...` lists.
    if let Some(v) = headers.get("git-protocol").and_then(|v| v.to_str().ok())
        && v.len() < 256
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"=:._-".contains(&b))
    {
        c.env("GIT_PROTOCOL", v);
    }
    let mut child = c
        .spawn()
        .map_err(|e| format!("cannot start git http-backend: {e}"))?;
    let mut stdin = child.stdin.take().expect("stdin was piped");
    let body = request.into_body();
    tokio::spawn(async move {
        let mut stream = body.into_data_stream();
        let mut sent: u64 = 0;
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else { break };
            sent += chunk.len() as u64;
            // Past the limit the backend sees its input end early and fails the request.
            if sent > MAX_REQUEST_BYTES || stdin.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = stdin.shutdown().await;
    });
    let stdout = child.stdout.take().expect("stdout was piped");
    let mut reader = BufReader::new(stdout);
    let mut status = StatusCode::OK;
    let mut out_headers = HeaderMap::new();
    let mut head_bytes = 0;
    loop {
        let mut line = String::new();
        let n = reader
            .read_line(&mut line)
            .await
            .map_err(|e| format!("reading git http-backend's output: {e}"))?;
        head_bytes += n;
        if n == 0 || head_bytes > MAX_CGI_HEAD {
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut stderr).await;
            }
            return Err(format!(
                "git http-backend ended without a response: {}",
                stderr.trim()
            ));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("status") {
            if let Some(code) = v.split(' ').next().and_then(|c| c.parse::<u16>().ok())
                && let Ok(code) = StatusCode::from_u16(code)
            {
                status = code;
            }
        } else if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
            out_headers.append(k, v);
        }
    }
    let chunks = futures_util::stream::unfold(Some(reader), |reader| async move {
        let mut reader = reader?;
        let mut buf = vec![0u8; 64 * 1024];
        match reader.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(buf), Some(reader)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    let body = Body::from_stream(chunks);
    let mut response = (status, body).into_response();
    *response.headers_mut() = out_headers;
    Ok((response, child))
}
