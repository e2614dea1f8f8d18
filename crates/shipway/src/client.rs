//! The HTTP client the CLI commands use to talk to `shipway up`.

use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use shipway_model::Object;
use shipway_server::Status;

/// A failure the CLI shows to the user; the exit code follows from the variant.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach Shipway at {server}: {message}\nIs `shipway up` running? Set --server or SHIPWAY_SERVER to point elsewhere."
    )]
    Unreachable { server: String, message: String },
    #[error("{}", format_status(.0))]
    Api(Status),
    #[error("unexpected response from {server}: {message}")]
    Protocol { server: String, message: String },
}

fn format_status(s: &Status) -> String {
    let mut out = format!("Error from server ({}): {}", s.reason, s.message);
    if s.details.len() > 1 {
        for d in &s.details {
            out.push_str("\n  ");
            out.push_str(d);
        }
    }
    if s.code == 401 {
        out.push_str(
            "\nPass --token or SHIPWAY_TOKEN, or --data pointing at the server's data directory.",
        );
    }
    out
}

/// Objects per page of a list request.
pub const CHUNK_SIZE: usize = 500;

pub struct Client {
    server: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    /// The server's base URL, as given.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The token requests carry.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub fn new(server: &str, token: Option<String>) -> Client {
        Client {
            server: server.trim_end_matches('/').to_string(),
            token,
            http: reqwest::Client::new(),
        }
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
    ) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.server))
            .query(query);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        req
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let response = req.send().await.map_err(|e| ClientError::Unreachable {
            server: self.server.clone(),
            message: root_cause(&e),
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let code = response.status();
        let text = response.text().await.unwrap_or_default();
        Err(match serde_json::from_str::<Status>(&text) {
            Ok(status) => ClientError::Api(status),
            Err(_) => ClientError::Api(Status {
                kind: "Status".into(),
                status: "Failure".into(),
                code: code.as_u16(),
                reason: code.canonical_reason().unwrap_or("Error").replace(' ', ""),
                message: if text.trim().is_empty() {
                    code.to_string()
                } else {
                    text.trim().to_string()
                },
                details: Vec::new(),
                retryable: code == StatusCode::SERVICE_UNAVAILABLE,
            }),
        })
    }

    async fn json(&self, req: reqwest::RequestBuilder) -> Result<Value, ClientError> {
        let response = self.send(req).await?;
        response.json().await.map_err(|e| ClientError::Protocol {
            server: self.server.clone(),
            message: e.to_string(),
        })
    }

    pub async fn apply(&self, object: &Object, dry_run: bool) -> Result<Value, ClientError> {
        let mut query = Vec::new();
        if dry_run {
            query.push(("dryRun", "true".to_string()));
        }
        self.json(
            self.request(Method::POST, "/api/v1/apply", &query)
                .json(object),
        )
        .await
    }

    /// Every object of a list, read in pages of [`CHUNK_SIZE`] (kubectl's `--chunk-size`
    /// default), so a large list is never one huge response.
    pub async fn list(
        &self,
        resource: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<Object>, ClientError> {
        let mut items = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut q = query.to_vec();
            q.push(("limit", CHUNK_SIZE.to_string()));
            if let Some(t) = &token {
                q.push(("continue", t.clone()));
            }
            let list = self
                .json(self.request(Method::GET, &format!("/api/v1/resources/{resource}"), &q))
                .await?;
            let page: Vec<Object> = serde_json::from_value(list["items"].clone()).map_err(|e| {
                ClientError::Protocol {
                    server: self.server.clone(),
                    message: format!("bad list: {e}"),
                }
            })?;
            items.extend(page);
            match list["metadata"]["continue"].as_str() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(items),
            }
        }
    }

    pub async fn get(
        &self,
        resource: &str,
        name: &str,
        query: &[(&str, String)],
    ) -> Result<Object, ClientError> {
        let value = self
            .json(self.request(
                Method::GET,
                &format!("/api/v1/resources/{resource}/{name}"),
                query,
            ))
            .await?;
        serde_json::from_value(value).map_err(|e| ClientError::Protocol {
            server: self.server.clone(),
            message: format!("bad object: {e}"),
        })
    }

    /// A JSON merge patch of `name`'s desired state, or with `status` of its status (the
    /// server applies it to the object as it is and retries on a concurrent write).
    pub async fn patch(
        &self,
        resource: &str,
        name: &str,
        query: &[(&str, String)],
        patch: &Value,
        status: bool,
    ) -> Result<Object, ClientError> {
        let mut q = query.to_vec();
        if status {
            q.push(("subresource", "status".to_string()));
        }
        let value = self
            .json(
                self.request(
                    Method::PATCH,
                    &format!("/api/v1/resources/{resource}/{name}"),
                    &q,
                )
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/merge-patch+json",
                )
                .body(patch.to_string()),
            )
            .await?;
        serde_json::from_value(value).map_err(|e| ClientError::Protocol {
            server: self.server.clone(),
            message: format!("bad object: {e}"),
        })
    }

    pub async fn delete(
        &self,
        resource: &str,
        name: &str,
        query: &[(&str, String)],
    ) -> Result<Value, ClientError> {
        self.json(self.request(
            Method::DELETE,
            &format!("/api/v1/resources/{resource}/{name}"),
            query,
        ))
        .await
    }

    pub async fn events(
        &self,
        resource: Option<&str>,
        query: &[(&str, String)],
    ) -> Result<Vec<Value>, ClientError> {
        let path = match resource {
            Some(r) => format!("/api/v1/events/{r}"),
            None => "/api/v1/events".to_string(),
        };
        let value = self.json(self.request(Method::GET, &path, query)).await?;
        Ok(value["items"].as_array().cloned().unwrap_or_default())
    }

    /// Every token's name, user, role and expiry (`GET /api/v1/tokens`; admin only).
    pub async fn tokens(&self) -> Result<Vec<Value>, ClientError> {
        self.items("/api/v1/tokens").await
    }

    /// Issues a token (`{"user", "name", "role", "expires"}`, each optional); the answer holds
    /// its secret, shown this once.
    pub async fn create_token(&self, request: &Value) -> Result<Value, ClientError> {
        self.json(
            self.request(Method::POST, "/api/v1/tokens", &[])
                .json(request),
        )
        .await
    }

    pub async fn delete_token(&self, name: &str) -> Result<Value, ClientError> {
        self.delete_named("/api/v1/tokens", name).await
    }

    /// Every user with its role (`GET /api/v1/users`; admin only).
    pub async fn users(&self) -> Result<Vec<Value>, ClientError> {
        self.items("/api/v1/users").await
    }

    pub async fn add_user(&self, name: &str, role: &str) -> Result<Value, ClientError> {
        self.json(
            self.request(Method::POST, "/api/v1/users", &[])
                .json(&serde_json::json!({"name": name, "role": role})),
        )
        .await
    }

    pub async fn delete_user(&self, name: &str) -> Result<Value, ClientError> {
        self.delete_named("/api/v1/users", name).await
    }

    async fn items(&self, path: &str) -> Result<Vec<Value>, ClientError> {
        let value = self.json(self.request(Method::GET, path, &[])).await?;
        Ok(value["items"].as_array().cloned().unwrap_or_default())
    }

    /// `DELETE {collection}/{name}`, the name one path segment whatever it holds: a name with
    /// `/` or `?` is then not found, rather than another route.
    async fn delete_named(&self, collection: &str, name: &str) -> Result<Value, ClientError> {
        let mut url =
            reqwest::Url::parse(&format!("{}{collection}", self.server)).map_err(|e| {
                ClientError::Unreachable {
                    server: self.server.clone(),
                    message: e.to_string(),
                }
            })?;
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.push(name);
        }
        let mut req = self.http.request(Method::DELETE, url);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        self.json(req).await
    }

    /// Runs `workflow` of hosted repository `repo` (`on: workflow_dispatch`) at `git_ref` with
    /// `inputs`; the answer names the run made.
    pub async fn dispatch(
        &self,
        repo: &str,
        workflow: &str,
        git_ref: Option<&str>,
        inputs: &serde_json::Map<String, Value>,
    ) -> Result<Value, ClientError> {
        // Each name is one path segment whatever it holds.
        let mut url =
            reqwest::Url::parse(&format!("{}/api/v1/repos", self.server)).map_err(|e| {
                ClientError::Unreachable {
                    server: self.server.clone(),
                    message: e.to_string(),
                }
            })?;
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.extend([repo, "workflows", workflow, "dispatches"]);
        }
        let mut body = serde_json::json!({"inputs": inputs});
        if let Some(r) = git_ref {
            body["ref"] = Value::String(r.to_string());
        }
        let mut req = self.http.request(Method::POST, url).json(&body);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        self.json(req).await
    }

    /// `/api/v1/secrets` or `/api/v1/variables`, with `name` as one path segment whatever it
    /// holds (a name with `/` or `?` is then refused, rather than another route).
    /// The error is the server URL's problem, made a `ClientError` by [`Client::url_error`].
    fn setting_url(&self, plural: &str, name: Option<&str>) -> Result<reqwest::Url, String> {
        let mut url = reqwest::Url::parse(&format!("{}/api/v1/{plural}", self.server));
        if let (Some(name), Ok(url)) = (name, url.as_mut())
            && let Ok(mut segments) = url.path_segments_mut()
        {
            segments.push(name);
        }
        url.map_err(|e| e.to_string())
    }

    fn url_error(&self, message: String) -> ClientError {
        ClientError::Unreachable {
            server: self.server.clone(),
            message,
        }
    }

    fn setting_request(
        &self,
        method: Method,
        url: reqwest::Url,
        scope: &[(&str, String)],
    ) -> reqwest::RequestBuilder {
        let mut req = self.http.request(method, url).query(scope);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        req
    }

    /// The secrets (`plural` = `secrets`: names and times only) or variables of the scopes that
    /// `scope` (`repo`, `env`) matches.
    pub async fn settings(
        &self,
        plural: &str,
        scope: &[(&str, String)],
    ) -> Result<Vec<Value>, ClientError> {
        let url = self
            .setting_url(plural, None)
            .map_err(|e| self.url_error(e))?;
        let value = self
            .json(self.setting_request(Method::GET, url, scope))
            .await?;
        Ok(value["items"].as_array().cloned().unwrap_or_default())
    }

    /// Sets a secret or variable; the value travels in the body, never the URL.
    pub async fn set_setting(
        &self,
        plural: &str,
        name: &str,
        scope: &[(&str, String)],
        value: &str,
    ) -> Result<Value, ClientError> {
        let url = self
            .setting_url(plural, Some(name))
            .map_err(|e| self.url_error(e))?;
        self.json(
            self.setting_request(Method::PUT, url, scope)
                .json(&serde_json::json!({ "value": value })),
        )
        .await
    }

    pub async fn delete_setting(
        &self,
        plural: &str,
        name: &str,
        scope: &[(&str, String)],
    ) -> Result<Value, ClientError> {
        let url = self
            .setting_url(plural, Some(name))
            .map_err(|e| self.url_error(e))?;
        self.json(self.setting_request(Method::DELETE, url, scope))
            .await
    }

    pub async fn version(&self) -> Result<String, ClientError> {
        let value = self
            .json(self.request(Method::GET, "/api/v1/version", &[]))
            .await?;
        Ok(value["version"].as_str().unwrap_or("unknown").to_string())
    }

    /// The token's user and role, as the server knows them.
    pub async fn whoami(&self) -> Result<(String, String), ClientError> {
        let value = self
            .json(self.request(Method::GET, "/api/v1/version", &[]))
            .await?;
        let field = |k: &str| value[k].as_str().unwrap_or_default().to_string();
        Ok((field("user"), field("role")))
    }

    /// Streams a container's log to `each` until the server ends it or `each` returns false.
    pub async fn logs(
        &self,
        namespace: &str,
        pod: &str,
        query: &[(&str, String)],
        mut each: impl FnMut(&[u8]) -> bool,
    ) -> Result<(), ClientError> {
        let response = self
            .send(self.request(
                Method::GET,
                &format!("/api/v1/logs/{namespace}/{pod}"),
                query,
            ))
            .await?;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| ClientError::Unreachable {
                server: self.server.clone(),
                message: root_cause(&e),
            })?;
            if !each(&chunk) {
                break;
            }
        }
        Ok(())
    }

    /// Approves or rejects (`state`) the jobs of a run waiting on `environment`, as this
    /// client's identity.
    pub async fn review(
        &self,
        namespace: &str,
        run: &str,
        body: &Value,
    ) -> Result<Value, ClientError> {
        let mut url =
            reqwest::Url::parse(&format!("{}/api/v1/runs", self.server)).map_err(|e| {
                ClientError::Unreachable {
                    server: self.server.clone(),
                    message: e.to_string(),
                }
            })?;
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.extend([namespace, run, "reviews"]);
        }
        let mut req = self.http.post(url).json(body);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        self.json(req).await
    }

    /// Calls `each` with every line of a workflow run's log (NDJSON objects) until the server
    /// ends the stream (with `follow`, when the run completed) or `each` returns false.
    pub async fn run_logs(
        &self,
        namespace: &str,
        run: &str,
        query: &[(&str, String)],
        each: impl FnMut(Value) -> bool,
    ) -> Result<(), ClientError> {
        let response = self
            .send(self.request(
                Method::GET,
                &format!("/api/v1/runs/{namespace}/{run}/logs"),
                query,
            ))
            .await?;
        self.ndjson(response, "log line", each).await
    }

    /// Calls `each` with every watch event until the stream ends or `each` returns false.
    pub async fn watch(
        &self,
        resource: &str,
        query: &[(&str, String)],
        each: impl FnMut(Value) -> bool,
    ) -> Result<(), ClientError> {
        let response = self
            .send(self.request(Method::GET, &format!("/api/v1/watch/{resource}"), query))
            .await?;
        self.ndjson(response, "watch event", each).await
    }

    /// Reads newline-delimited JSON values (`what` names them in errors) as they arrive.
    async fn ndjson(
        &self,
        response: reqwest::Response,
        what: &str,
        mut each: impl FnMut(Value) -> bool,
    ) -> Result<(), ClientError> {
        let mut body = response.bytes_stream();
        let mut buf = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| ClientError::Unreachable {
                server: self.server.clone(),
                message: root_cause(&e),
            })?;
            buf.extend_from_slice(&chunk);
            while let Some(end) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=end).collect();
                let value: Value =
                    serde_json::from_slice(&line).map_err(|e| ClientError::Protocol {
                        server: self.server.clone(),
                        message: format!("bad {what}: {e}"),
                    })?;
                if !each(value) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// reqwest's top-level message ("error sending request") hides the cause a user can act on.
fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--server https://...` is spoken over TLS (rustls): against a listener that is not TLS the
    /// request fails in the handshake, not because the scheme is unsupported.
    #[tokio::test]
    async fn https_servers_are_reached_over_tls() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            while let Ok((mut conn, _)) = listener.accept().await {
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\n\r\nnot tls").await;
            }
        });
        let client = Client::new(&format!("https://{addr}"), None);
        let err = client.version().await.expect_err("no TLS server there");
        let text = err.to_string();
        // rustls' words for a peer that answered in plain text.
        assert!(
            text.contains("received corrupt message of type InvalidContentType"),
            "{text}"
        );
    }
}
