//! The `/api/v1` routes: reads (get, list, watch, events) from the store, writes (apply,
//! delete) and logs through the runtime, and token management.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use shipway_model::{Key, Kinds, Object, Selector, load};
use shipway_runtime::{ApplyOptions, LogOptions, RuntimeErrorKind};
use shipway_store::{DeleteOutcome, EventQuery, ListQuery};

use crate::auth::{Role, TokenRequest};
use crate::error::ApiError;
use crate::{AppState, Caller};

/// A resource as a user names it: a built-in kind resolved like kubectl does (`deploy`,
/// `services`), or a kind a CustomResourceDefinition defines (`widgets`, `Widget.example.com`).
#[derive(Debug, Clone)]
pub struct Resource {
    /// None: an unknown kind named without a group, matched in any group.
    pub group: Option<String>,
    pub kind: String,
    pub namespaced: bool,
}

impl Resource {
    /// Resolves what a user typed the way kubectl does: a built-in kind by name, plural or short
    /// name, else a kind defined by a stored CustomResourceDefinition; anything else is a type
    /// the server does not have (404, with the nearest known name).
    pub async fn resolve(store: &shipway_store::Store, name: &str) -> Result<Resource, ApiError> {
        if let Some(k) = Kinds::resolve(name) {
            return Ok(Resource {
                group: Some(k.group.to_string()),
                kind: k.kind.to_string(),
                namespaced: k.namespaced,
            });
        }
        let lower = name.to_ascii_lowercase();
        let (word, group) = match lower.split_once('.') {
            Some((w, g)) => (w, Some(g)),
            None => (lower.as_str(), None),
        };
        let custom = shipway_runtime::admission::custom_kinds(store).await?;
        let found = custom.iter().find(|k| {
            let names_match = k.kind.eq_ignore_ascii_case(word)
                || k.plural == word
                || k.singular == word
                || k.short_names.iter().any(|s| s == word);
            names_match && group.is_none_or(|g| g == k.group)
        });
        if let Some(k) = found {
            return Ok(Resource {
                group: Some(k.group.clone()),
                kind: k.kind.clone(),
                namespaced: k.namespaced,
            });
        }
        let names = Kinds::all()
            .iter()
            .flat_map(|k| std::iter::once(k.plural).chain(k.short_names.iter().copied()))
            .chain(custom.iter().map(|k| k.plural.as_str()));
        let hint = match shipway_model::crd::suggest(word, names) {
            Some(near) => format!(" (did you mean {near:?}?)"),
            None => String::new(),
        };
        Err(ApiError::NotFound(format!(
            "the server doesn't have a resource type {name:?}{hint}; types are built in or defined by a CustomResourceDefinition (`shipway get crd`)"
        )))
    }

    fn namespace(&self, requested: Option<&str>) -> String {
        match (self.namespaced, requested) {
            (false, _) => String::new(),
            (true, Some(ns)) if !ns.is_empty() => ns.to_string(),
            (true, _) => "default".to_string(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectParams {
    namespace: Option<String>,
    label_selector: Option<String>,
    resource_version: Option<String>,
    dry_run: Option<bool>,
    name: Option<String>,
    /// Events: how many of the newest. Lists: the page size (Kubernetes' `limit`).
    limit: Option<usize>,
    /// Patches: `status` to patch the status instead of the desired state.
    subresource: Option<String>,
    /// Lists: the previous page's `metadata.continue`.
    #[serde(rename = "continue")]
    continue_token: Option<String>,
}

impl ObjectParams {
    fn selector(&self) -> Result<Option<Selector>, ApiError> {
        match self.label_selector.as_deref() {
            None | Some("") => Ok(None),
            Some(s) => Selector::parse(s)
                .map(Some)
                .map_err(|e| ApiError::BadRequest(e.to_string())),
        }
    }

    fn list_query(&self, resource: Option<&Resource>) -> Result<ListQuery, ApiError> {
        let namespace = match resource {
            Some(r) if !r.namespaced => None,
            _ => self.namespace.clone().filter(|ns| !ns.is_empty()),
        };
        Ok(ListQuery {
            group: resource.and_then(|r| r.group.clone()),
            kind: resource.map(|r| r.kind.clone()),
            namespace,
            selector: self.selector()?,
            ..ListQuery::default()
        })
    }
}

#[derive(Serialize)]
struct ApplyResponse {
    object: Object,
    outcome: &'static str,
    #[serde(rename = "dryRun")]
    dry_run: bool,
}

pub async fn apply(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(params): Query<ObjectParams>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::BadRequest(format!(
            "the object is larger than the {} MiB limit; split it, or keep large data outside the object",
            load::MAX_DOCUMENT_BYTES / (1024 * 1024)
        )),
        _ => ApiError::BadRequest(format!("cannot read the request body: {e}")),
    })?;
    let text = std::str::from_utf8(&body)
        .map_err(|e| ApiError::BadRequest(format!("the request body is not UTF-8: {e}")))?;
    let mut object = load::load_json_object("request body", text).map_err(ApiError::invalid)?;
    if object.kind == shipway_model::types::workflow_run::KIND {
        let mut key = object.key();
        if key.namespace.is_empty() {
            key.namespace = "default".into();
        }
        let current = state.store.get(&key).await?;
        crate::review::guard(current.as_ref(), &mut object)?;
    }
    let dry_run = params.dry_run.unwrap_or(false);
    let options = ApplyOptions {
        actor: caller.actor(),
        dry_run,
    };
    let (object, outcome) = state.runtime.apply(object, options).await?;
    let outcome = outcome.as_str();
    let code = if outcome == "created" && !dry_run {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        code,
        Json(ApplyResponse {
            object,
            outcome,
            dry_run,
        }),
    )
        .into_response())
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    _caller: Caller,
    Path(resource): Path<String>,
    Query(params): Query<ObjectParams>,
) -> Result<Json<Value>, ApiError> {
    let resource = Resource::resolve(&state.store, &resource).await?;
    let query = ListQuery {
        limit: params.limit.unwrap_or(0),
        continue_token: params.continue_token.clone().filter(|t| !t.is_empty()),
        ..params.list_query(Some(&resource))?
    };
    let page = state.store.list_page(&query).await?;
    let mut metadata = json!({"resourceVersion": page.list.resource_version.to_string()});
    if let Some(token) = page.continue_token {
        metadata["continue"] = json!(token);
    }
    if let Some(n) = page.remaining_item_count {
        metadata["remainingItemCount"] = json!(n);
    }
    Ok(Json(json!({
        "apiVersion": "v1",
        "kind": "List",
        "metadata": metadata,
        "items": page.list.items,
    })))
}

/// Finds one object; an unknown kind named without a group is looked up in every group.
async fn find(
    state: &AppState,
    resource: &Resource,
    namespace: &str,
    name: &str,
) -> Result<Object, ApiError> {
    let not_found = |key: String| {
        ApiError::NotFound(format!(
            "{key} not found; `shipway get {}{}` lists what exists",
            resource.kind.to_ascii_lowercase(),
            if namespace.is_empty() {
                String::new()
            } else {
                format!(" -n {namespace}")
            }
        ))
    };
    match &resource.group {
        Some(group) => {
            let key = Key::new(group, &resource.kind, namespace, name);
            state
                .store
                .get(&key)
                .await?
                .ok_or_else(|| not_found(key.to_string()))
        }
        None => {
            let query = ListQuery {
                group: None,
                kind: Some(resource.kind.clone()),
                namespace: Some(namespace.to_string()).filter(|n| !n.is_empty()),
                ..ListQuery::default()
            };
            let mut found: Vec<Object> = state
                .store
                .list(&query)
                .await?
                .items
                .into_iter()
                .filter(|o| o.metadata.name == name)
                .collect();
            match found.len() {
                0 => Err(not_found(
                    Key::new("", &resource.kind, namespace, name).to_string(),
                )),
                1 => Ok(found.remove(0)),
                _ => Err(ApiError::BadRequest(format!(
                    "{} {name:?} exists in several API groups ({}); name it as Kind.group",
                    resource.kind,
                    found
                        .iter()
                        .map(|o| o.group().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))),
            }
        }
    }
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    _caller: Caller,
    Path((resource, name)): Path<(String, String)>,
    Query(params): Query<ObjectParams>,
) -> Result<Json<Object>, ApiError> {
    let resource = Resource::resolve(&state.store, &resource).await?;
    let namespace = resource.namespace(params.namespace.as_deref());
    Ok(Json(find(&state, &resource, &namespace, &name).await?))
}

pub async fn delete(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((resource, name)): Path<(String, String)>,
    Query(params): Query<ObjectParams>,
) -> Result<Json<Value>, ApiError> {
    let resource = Resource::resolve(&state.store, &resource).await?;
    let namespace = resource.namespace(params.namespace.as_deref());
    let key = find(&state, &resource, &namespace, &name).await?.key();
    let (object, outcome) = match state.runtime.delete(&key, &caller.actor()).await? {
        Some(DeleteOutcome::Deleted(o)) => (o, "deleted"),
        Some(DeleteOutcome::Terminating(o)) => (o, "terminating"),
        None => return Err(ApiError::NotFound(format!("{key} not found"))),
    };
    Ok(Json(json!({"object": object, "outcome": outcome})))
}

/// How many times a patch reads again after a concurrent write before it gives up.
const PATCH_ATTEMPTS: usize = 8;

/// A JSON merge patch (RFC 7386, `kubectl patch --type merge`) of an object's desired state, or
/// with `?subresource=status` of its status — the kinds whose status also carries a user's
/// intent (`kubectl argo rollouts abort` patches a Rollout's `status.abort`). The patch is
/// applied to the object as it is now and written with that resourceVersion, again on a
/// conflict, so a controller's concurrent write is never overwritten. The desired state goes
/// through admission like an apply.
pub async fn patch(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((resource, name)): Path<(String, String)>,
    Query(params): Query<ObjectParams>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Object>, ApiError> {
    let body =
        body.map_err(|e| ApiError::BadRequest(format!("cannot read the request body: {e}")))?;
    let patch: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "the patch is not JSON ({e}); send a JSON merge patch such as {{\"spec\": {{\"paused\": true}}}}"
        ))
    })?;
    let Value::Object(fields) = &patch else {
        return Err(ApiError::BadRequest(
            "a merge patch is a JSON object naming the fields to change".into(),
        ));
    };
    let status = match params.subresource.as_deref() {
        None | Some("") => false,
        Some("status") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "unknown subresource {other:?}; the one subresource is \"status\""
            )));
        }
    };
    if status {
        if params.dry_run == Some(true) {
            return Err(ApiError::BadRequest(
                "a status patch has no dry run: leave out dryRun or ?subresource=status".into(),
            ));
        }
        if let Some(k) = fields.keys().find(|k| *k != "status") {
            return Err(ApiError::BadRequest(format!(
                "a status patch changes only `status`, not `{k}`: patch that without ?subresource=status"
            )));
        }
    } else {
        if fields.contains_key("status") {
            return Err(ApiError::BadRequest(
                "`status` is patched with ?subresource=status".into(),
            ));
        }
        for k in ["apiVersion", "kind"] {
            if fields.contains_key(k) {
                return Err(ApiError::BadRequest(format!("a patch cannot change `{k}`")));
            }
        }
        let meta = &patch["metadata"];
        for k in ["name", "namespace", "uid", "resourceVersion"] {
            if meta.get(k).is_some() {
                return Err(ApiError::BadRequest(format!(
                    "a patch cannot change `metadata.{k}`"
                )));
            }
        }
    }
    let resource = Resource::resolve(&state.store, &resource).await?;
    let namespace = resource.namespace(params.namespace.as_deref());
    let actor = caller.actor();
    let mut conflict = None;
    for _ in 0..PATCH_ATTEMPTS {
        let current = find(&state, &resource, &namespace, &name).await?;
        let mut doc =
            serde_json::to_value(&current).map_err(|e| ApiError::Internal(e.to_string()))?;
        shipway_model::merge_patch(&mut doc, &patch);
        let mut patched: Object = serde_json::from_value(doc)
            .map_err(|e| ApiError::BadRequest(format!("the patched object is not valid: {e}")))?;
        if !status {
            crate::review::guard(Some(&current), &mut patched)?;
        }
        let written = if status {
            state.runtime.update_status(patched, &actor).await
        } else {
            let options = ApplyOptions {
                actor: actor.clone(),
                dry_run: params.dry_run.unwrap_or(false),
            };
            state.runtime.apply(patched, options).await.map(|(o, _)| o)
        };
        match written {
            Err(e) if e.kind == RuntimeErrorKind::Conflict => conflict = Some(e),
            other => return Ok(Json(other?)),
        }
    }
    // Written by someone else at every attempt: the caller may try again.
    Err(conflict
        .expect("the loop ran and each attempt conflicted")
        .into())
}

/// A newline-delimited JSON stream of `{"type": ADDED|MODIFIED|DELETED|ERROR, "object": ...}`, as
/// Kubernetes' `?watch=true`. Without `resourceVersion` it starts with the current objects as ADDED;
/// with one, it sends every change after it. An ERROR with code 410 means the version is older than
/// the retained history: list again and watch from the list's resourceVersion.
pub async fn watch(
    State(state): State<Arc<AppState>>,
    _caller: Caller,
    resource: Option<Path<String>>,
    Query(params): Query<ObjectParams>,
) -> Result<Response, ApiError> {
    let resource = match resource {
        Some(Path(r)) if r != "all" => Some(Resource::resolve(&state.store, &r).await?),
        _ => None,
    };
    let query = params.list_query(resource.as_ref())?;
    let (initial, since) = match params.resource_version.as_deref() {
        Some(rv) if !rv.is_empty() => {
            let since = rv.parse::<u64>().map_err(|_| {
                ApiError::BadRequest(format!("resourceVersion {rv:?} is not a number"))
            })?;
            (Vec::new(), since)
        }
        _ => {
            let list = state.store.list(&query).await?;
            let added = list
                .items
                .into_iter()
                .map(|object| json!({"type": "ADDED", "object": object}))
                .collect();
            (added, list.resource_version)
        }
    };
    let initial = futures_util::stream::iter(initial);
    let changes = state.store.watch(query, since).map(|event| match event {
        Ok(event) => serde_json::to_value(&event).unwrap_or(Value::Null),
        Err(e) => json!({"type": "ERROR", "object": ApiError::from(e).to_status()}),
    });
    let lines = initial
        .chain(changes)
        .take_until(state.shutdown.clone().cancelled_owned())
        .map(|value| {
            let mut line = serde_json::to_vec(&value).unwrap_or_default();
            line.push(b'\n');
            Ok::<_, Infallible>(Bytes::from(line))
        });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(lines))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()))
}

pub async fn events(
    State(state): State<Arc<AppState>>,
    _caller: Caller,
    resource: Option<Path<String>>,
    Query(params): Query<ObjectParams>,
) -> Result<Json<Value>, ApiError> {
    let resource = match resource {
        Some(Path(r)) => Some(Resource::resolve(&state.store, &r).await?),
        None => None,
    };
    let query = EventQuery {
        group: resource.as_ref().and_then(|r| r.group.clone()),
        kind: resource.as_ref().map(|r| r.kind.clone()),
        namespace: params.namespace.clone().filter(|n| !n.is_empty()),
        name: params.name.clone(),
        limit: params.limit.unwrap_or(500).min(10_000),
    };
    let events = state.store.events(&query).await?;
    Ok(Json(json!({"kind": "EventList", "items": events})))
}

#[derive(Debug, Default, Deserialize)]
pub struct LogParams {
    container: Option<String>,
    follow: Option<bool>,
    tail: Option<usize>,
    previous: Option<bool>,
}

/// A container's output, as `kubectl logs`, from the runtime: the current instance or the
/// previous one, the last `tail` lines, and with `follow` new output as it is written.
pub async fn logs(
    State(state): State<Arc<AppState>>,
    _caller: Caller,
    Path((namespace, pod_name)): Path<(String, String)>,
    Query(params): Query<LogParams>,
) -> Result<Response, ApiError> {
    let key = Key::new("", "Pod", &namespace, &pod_name);
    let follow = params.follow.unwrap_or(false);
    let options = LogOptions {
        container: params.container,
        follow,
        tail: params.tail,
        previous: params.previous.unwrap_or(false),
    };
    let mut stream = state.runtime.logs(&key, options).await?;
    if !follow {
        let mut text = Vec::new();
        while let Some(chunk) = stream.next().await {
            text.extend(chunk?);
        }
        return Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response());
    }
    // A read error ends the stream: the client has the output so far, as with a closed file.
    let body = stream
        .take_while(|chunk| std::future::ready(chunk.is_ok()))
        .filter_map(|chunk| {
            std::future::ready(chunk.ok().map(|b| Ok::<_, Infallible>(Bytes::from(b))))
        })
        .take_until(state.shutdown.clone().cancelled_owned());
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()))
}

#[derive(Debug, Default, Deserialize)]
pub struct RunLogParams {
    /// Lines after this seq only (a follower that reconnects says where it was).
    after: Option<u64>,
    follow: Option<bool>,
}

/// How often a follower looks at the run again when no line arrives: it ends once the run has
/// completed (or was deleted) and every line was sent.
const RUN_LOG_RECHECK: std::time::Duration = std::time::Duration::from_millis(500);

/// A workflow run's log as NDJSON, one `{"seq", "time", "job", "step", "stream", "text"}` per
/// line, from the store; with `follow`, new lines as they are written until the run completes.
pub async fn run_logs(
    State(state): State<Arc<AppState>>,
    _caller: Caller,
    Path((namespace, name)): Path<(String, String)>,
    Query(params): Query<RunLogParams>,
) -> Result<Response, ApiError> {
    let key = Key::new(
        shipway_model::types::workflow_run::GROUP,
        shipway_model::types::workflow_run::KIND,
        &namespace,
        &name,
    );
    let Some(_) = state.store.get(&key).await? else {
        return Err(ApiError::NotFound(format!(
            "workflowruns.shipway.dev \"{name}\" not found in namespace {namespace:?}"
        )));
    };
    let after = params.after.unwrap_or(0);
    let ndjson = |lines: &[shipway_store::LogLine]| {
        let mut out = Vec::new();
        for l in lines {
            // A LogLine always serializes: strings and numbers only.
            if let Ok(mut v) = serde_json::to_vec(l) {
                out.append(&mut v);
                out.push(b'\n');
            }
        }
        Bytes::from(out)
    };
    if !params.follow.unwrap_or(false) {
        let lines = state.store.logs(&key, after, 0).await?;
        return Ok((
            [(header::CONTENT_TYPE, "application/x-ndjson")],
            ndjson(&lines),
        )
            .into_response());
    }
    let store = state.store.clone();
    let updates = store.log_updates();
    let body = futures_util::stream::unfold(
        (store, updates, key, after, false),
        move |(store, mut updates, key, mut after, mut done)| async move {
            loop {
                if done {
                    return None;
                }
                // Mark seen before reading, so a line appended after the read wakes the wait.
                updates.borrow_and_update();
                let lines = match store.logs(&key, after, 1000).await {
                    Ok(l) => l,
                    Err(_) => return None,
                };
                if let Some(last) = lines.last() {
                    after = last.seq;
                    return Some((
                        Ok::<_, Infallible>(ndjson(&lines)),
                        (store, updates, key, after, done),
                    ));
                }
                let finished = match store.get(&key).await {
                    Ok(Some(run)) => {
                        run.field("status.status").and_then(Value::as_str)
                            == Some(shipway_model::types::workflow_run::COMPLETED)
                    }
                    Ok(None) | Err(_) => true,
                };
                if finished {
                    // The recorder writes the last lines before the completed status: one
                    // more read takes any that landed between the two reads above.
                    done = true;
                    match store.logs(&key, after, 0).await {
                        Ok(lines) if !lines.is_empty() => {
                            after = lines.last().map_or(after, |l| l.seq);
                            return Some((Ok(ndjson(&lines)), (store, updates, key, after, done)));
                        }
                        _ => return None,
                    }
                }
                let _ = tokio::time::timeout(RUN_LOG_RECHECK, updates.changed()).await;
            }
        },
    )
    .take_until(state.shutdown.clone().cancelled_owned());
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()))
}

/// `GET /api/v1/tokens`: every token's name, user, role and expiry, never a secret.
pub async fn list_tokens(State(state): State<Arc<AppState>>, _caller: Caller) -> Json<Value> {
    let items = serde_json::to_value(state.tokens.list()).unwrap_or_default();
    Json(json!({"kind": "TokenList", "items": items}))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    name: Option<String>,
    user: Option<String>,
    role: Option<String>,
    /// A duration: `30m`, `12h`, `7d`.
    expires: Option<String>,
}

/// `POST /api/v1/tokens` `{"user", "name"?, "expires"?}` (or, as before users existed,
/// `{"name", "role"}`): issues a token and returns its secret, once.
pub async fn create_token(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Result<Json<NewToken>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(new) = body.map_err(|e| {
        ApiError::BadRequest(format!(
            "a token is {{\"user\": NAME, \"name\": NAME, \"expires\": \"7d\"}}: {}",
            e.body_text()
        ))
    })?;
    let label = new.name.clone().or(new.user.clone()).unwrap_or_default();
    let role = new
        .role
        .as_deref()
        .map(Role::parse)
        .transpose()
        .map_err(|why| invalid("tokens", &label, "role", &why))?;
    let expires_in = new
        .expires
        .as_deref()
        .map(crate::auth::parse_duration)
        .transpose()
        .map_err(|why| invalid("tokens", &label, "expires", &why))?;
    let (info, secret) = state.tokens.create(&TokenRequest {
        name: new.name,
        user: new.user,
        role,
        expires_in,
    })?;
    let expiry = match &info.expires {
        Some(at) => format!("expires {at}"),
        None => "no expiry".into(),
    };
    let message = format!("token {:?} issued ({}, {expiry})", info.name, info.role);
    audit(&state, &info.user, &caller, "TokenIssued", &message).await;
    let mut body = serde_json::to_value(&info).unwrap_or_default();
    body["token"] = json!(secret);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Users and tokens live outside the store; their changes go in its audit trail all the same,
/// under the user (`shipway events --all` shows them).
async fn audit(state: &AppState, user: &str, caller: &Caller, action: &str, message: &str) {
    let key = Key::new("shipway.dev", "User", "", user);
    if let Err(e) = state
        .store
        .record_event(&key, &caller.name, action, message)
        .await
    {
        tracing::warn!(error = %e, %action, %message, "audit event not recorded");
    }
    tracing::info!(by = %caller.name, %action, "{message}");
}

fn invalid(resource: &str, name: &str, field: &str, why: &str) -> ApiError {
    ApiError::Invalid {
        message: format!("{resource} {name:?} is invalid: {field}: {why}"),
        details: vec![format!("{field}: {why}")],
    }
}

/// `DELETE /api/v1/tokens/{name}`: revokes a token at once.
pub async fn delete_token(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let user = state.tokens.list().into_iter().find(|t| t.name == name);
    state.tokens.delete(&name)?;
    if let Some(t) = user {
        let message = format!("token {name:?} revoked");
        audit(&state, &t.user, &caller, "TokenRevoked", &message).await;
    }
    Ok(Json(json!({"name": name, "outcome": "deleted"})))
}

/// `GET /api/v1/users`: every user with its role and how many tokens it has.
pub async fn list_users(State(state): State<Arc<AppState>>, _caller: Caller) -> Json<Value> {
    let items: Vec<Value> = state
        .tokens
        .users()
        .into_iter()
        .map(|(name, role, tokens)| json!({"name": name, "role": role, "tokens": tokens}))
        .collect();
    Json(json!({"kind": "UserList", "items": items}))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    name: String,
    role: String,
}

/// `POST /api/v1/users` `{"name", "role"}`: adds an identity; tokens are issued for it apart.
pub async fn create_user(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Result<Json<NewUser>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(new) = body.map_err(|e| {
        ApiError::BadRequest(format!(
            "a user is {{\"name\": NAME, \"role\": \"viewer\"|\"deployer\"|\"admin\"}}: {}",
            e.body_text()
        ))
    })?;
    let role = Role::parse(&new.role).map_err(|why| invalid("users", &new.name, "role", &why))?;
    state.tokens.add_user(&new.name, role)?;
    let message = format!("user {:?} added with role {role}", new.name);
    audit(&state, &new.name, &caller, "UserAdded", &message).await;
    Ok((
        StatusCode::CREATED,
        Json(json!({"name": new.name, "role": role, "tokens": 0})),
    )
        .into_response())
}

/// `DELETE /api/v1/users/{name}`: removes a user and revokes its tokens at once.
pub async fn delete_user(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let revoked = state.tokens.delete_user(&name)?;
    let message = format!("user {name:?} deleted, {revoked} token(s) revoked");
    audit(&state, &name, &caller, "UserDeleted", &message).await;
    Ok(Json(
        json!({"name": name, "outcome": "deleted", "tokensRevoked": revoked}),
    ))
}

/// `GET /api/v1/version`: the server's version, and who the caller is (so a client can name
/// its user, e.g. as the author of a promotion commit).
pub async fn version(caller: Caller) -> Json<Value> {
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "user": caller.name,
        "role": caller.role.as_str(),
    }))
}

/// The body of a dispatch, as GitHub's: `{"ref": "main", "inputs": {"level": "debug"}}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchBody {
    #[serde(default, rename = "ref")]
    pub git_ref: Option<String>,
    #[serde(default)]
    pub inputs: std::collections::BTreeMap<String, Value>,
}

/// `POST /api/v1/repos/{repo}/workflows/{workflow}/dispatches`: runs a workflow that declares
/// `on: workflow_dispatch` (GitHub's `.../actions/workflows/{workflow}/dispatches`), at `ref`
/// (default: the default branch) with typed inputs, as the caller. Answers 201 with the run's
/// name; bad inputs are a 422 naming each input, what it expects and what it allows.
pub async fn dispatch(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((repo, workflow)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: DispatchBody = if body.iter().all(u8::is_ascii_whitespace) {
        DispatchBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::BadRequest(format!(
                "a dispatch is {{\"ref\": BRANCH-OR-TAG, \"inputs\": {{NAME: VALUE}}}}: {e}"
            ))
        })?
    };
    let Some(hosted) = &state.hosted else {
        return Err(ApiError::NotFound(format!(
            "repository {repo:?}: this server hosts no repositories"
        )));
    };
    let d = shipway_ci::dispatch::Dispatch {
        repository: repo,
        workflow,
        git_ref: body.git_ref.filter(|r| !r.is_empty()),
        inputs: body.inputs,
        actor: caller.name.clone(),
    };
    use shipway_ci::dispatch::DispatchError;
    let run = shipway_ci::dispatch::dispatch(&state.store, hosted, d)
        .await
        .map_err(|e| match e {
            DispatchError::NotFound(m) => ApiError::NotFound(m),
            DispatchError::Invalid { message, details } => ApiError::Invalid { message, details },
            DispatchError::Ci(shipway_ci::CiError::Store(e)) => ApiError::Store(e),
            DispatchError::Ci(e) => ApiError::Internal(e.to_string()),
        })?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "name": run.metadata.name,
            "namespace": run.metadata.namespace,
            "runNumber": run.field("spec.runNumber"),
        })),
    )
        .into_response())
}
