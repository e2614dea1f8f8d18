//! The store's semantics, written once over [`Tx`]: validation, resourceVersion, generation,
//! finalizers, the change log and the audit log.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};
use shipway_model::name::{
    validate_annotation_key, validate_finalizer, validate_label_key, validate_label_value,
    validate_name_for_kind, validate_namespace,
};
use shipway_model::{Key, Kinds, Object};

use crate::StoreError;
use crate::backend::{ChangeRow, NewAudit, Result, RowFilter, Tx};
use crate::seal::Sealer;
use crate::types::{
    ApplyOutcome, DeleteOutcome, ListPage, ListQuery, ObjectList, WatchEvent, WatchEventType,
};

/// The wall-clock time of one operation, in the two formats the store writes.
#[derive(Clone, Debug)]
pub(crate) struct Now {
    /// For object timestamps: RFC 3339 UTC, seconds (`2026-11-22T00:12:31Z`), as Kubernetes.
    pub seconds: String,
    /// For audit events: RFC 3339 UTC with milliseconds.
    pub millis: String,
}

impl Now {
    pub(crate) fn current() -> Now {
        use time::macros::format_description;
        let t = time::OffsetDateTime::now_utc();
        let fmt = |f: &[time::format_description::BorrowedFormatItem<'_>]| {
            t.format(f).expect("a UTC time always formats")
        };
        Now {
            seconds: fmt(format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
            )),
            millis: fmt(format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            )),
        }
    }
}

/// Who writes, and when: what every write records besides the object.
pub(crate) struct Ctx<'a> {
    pub actor: &'a str,
    pub now: &'a Now,
    /// Seals Secret values at rest; `None` keeps them as written (a store opened without a key).
    pub sealer: Option<&'a Sealer>,
}

/// Checks names, labels, annotations and finalizers, and settles the namespace (defaulted to
/// `default` for namespaced kinds, cleared for cluster-scoped ones); returns the key the object is
/// stored under. Every problem is reported at once.
fn normalize(tx: &mut dyn Tx, obj: &mut Object) -> Result<Key> {
    let mut problems: Vec<String> = Vec::new();
    if obj.api_version.is_empty() {
        problems.push("apiVersion is required".into());
    }
    if obj.kind.is_empty() {
        problems.push("kind is required".into());
    }
    if namespaced(tx, obj.group(), &obj.kind)? {
        let ns = match obj.metadata.namespace.take() {
            Some(ns) if !ns.is_empty() => ns,
            _ => "default".to_string(),
        };
        if let Err(m) = validate_namespace(&ns) {
            problems.push(format!("metadata.namespace: {m}"));
        }
        obj.metadata.namespace = Some(ns);
    } else {
        obj.metadata.namespace = None;
    }
    if is_secret(&obj.key()) && obj.body.contains_key(SEALED_FIELD) {
        // The store's own field: a value planted there would make the Secret unreadable.
        problems.push(format!(
            "{SEALED_FIELD}: is reserved for the store's encryption"
        ));
    }
    let meta = &obj.metadata;
    let checks = std::iter::once((
        "metadata.name",
        validate_name_for_kind(obj.group(), &obj.kind, &meta.name),
    ))
    .chain(meta.labels.iter().flat_map(|(k, v)| {
        [
            ("metadata.labels", validate_label_key(k)),
            ("metadata.labels", validate_label_value(v)),
        ]
    }))
    .chain(
        meta.annotations
            .keys()
            .map(|k| ("metadata.annotations", validate_annotation_key(k))),
    )
    .chain(
        meta.finalizers
            .iter()
            .map(|f| ("metadata.finalizers", validate_finalizer(f))),
    );
    for (field, check) in checks {
        if let Err(m) = check {
            problems.push(format!("{field}: {m}"));
        }
    }
    if problems.is_empty() {
        Ok(obj.key())
    } else {
        Err(StoreError::Invalid {
            key: obj.key(),
            message: problems.join("; "),
        })
    }
}

/// The same namespace rule for a key given by a caller.
pub(crate) fn normalize_key(tx: &mut dyn Tx, key: &Key) -> Result<Key> {
    let mut key = key.clone();
    if !namespaced(tx, &key.group, &key.kind)? {
        key.namespace.clear();
    } else if key.namespace.is_empty() {
        key.namespace = "default".to_string();
    }
    Ok(key)
}

/// Whether objects of a kind live in a namespace: the built-in table says for the kinds it
/// knows; a custom kind has the scope of the stored CustomResourceDefinition that defines it, as
/// the Kubernetes API server keys custom resources (read in the same transaction, so a CRD and
/// its first object can be written back to back). A kind nothing defines counts as namespaced.
fn namespaced(tx: &mut dyn Tx, group: &str, kind: &str) -> Result<bool> {
    if group.is_empty() || Kinds::get(group, kind).is_some() {
        return Ok(Kinds::is_namespaced(group, kind));
    }
    let crds = tx.list(RowFilter {
        group: Some(CRD_GROUP),
        kind: Some(CRD_KIND),
        namespace: None,
    })?;
    for data in crds {
        if let Ok(custom) = shipway_model::crd::custom_kind(&decode_raw(&data)?)
            && custom.group == group
            && custom.kind == kind
        {
            return Ok(custom.namespaced);
        }
    }
    Ok(true)
}

const CRD_GROUP: &str = "apiextensions.k8s.io";
const CRD_KIND: &str = "CustomResourceDefinition";

/// The object stored as `data`, as written: a sealed Secret stays sealed.
fn decode_raw(data: &str) -> Result<Object> {
    serde_json::from_str(data).map_err(|e| {
        StoreError::backend(
            format!("stored object is not valid JSON ({e}): the database is damaged"),
            false,
        )
    })
}

/// The object stored as `data`, a sealed Secret's values opened.
pub(crate) fn decode(data: &str, sealer: Option<&Sealer>) -> Result<Object> {
    let mut obj = decode_raw(data)?;
    if let Some(sealed) = obj.body.remove(SEALED_FIELD) {
        let key = obj.key();
        let sealer = sealer.ok_or_else(|| {
            StoreError::backend(
                format!(
                    "{key} is encrypted at rest and this store was opened without the secret key"
                ),
                false,
            )
        })?;
        let envelope = sealed.as_str().unwrap_or_default();
        let plain = sealer
            .open(&seal_context(&key), envelope)
            .map_err(|e| StoreError::backend(e.to_string(), false))?;
        let values: Map<String, Value> = serde_json::from_slice(&plain).map_err(|e| {
            StoreError::backend(
                format!(
                    "{key}: sealed values are not a JSON object ({e}): the database is damaged"
                ),
                false,
            )
        })?;
        obj.body.extend(values);
    }
    Ok(obj)
}

/// The JSON stored for `obj`: a Secret's `data` and `stringData` sealed into one field when the
/// store has a key.
fn encode(obj: &Object, sealer: Option<&Sealer>) -> String {
    let plain = || serde_json::to_string(obj).expect("an Object always serializes to JSON");
    let Some(sealer) = sealer else {
        return plain();
    };
    let key = obj.key();
    if !is_secret(&key)
        || !SECRET_VALUE_FIELDS
            .iter()
            .any(|f| obj.body.contains_key(*f))
    {
        return plain();
    }
    let mut sealed = obj.clone();
    let mut values = Map::new();
    for field in SECRET_VALUE_FIELDS {
        if let Some(v) = sealed.body.remove(field) {
            values.insert(field.to_string(), v);
        }
    }
    let text = serde_json::to_vec(&values).expect("JSON values always serialize");
    sealed.body.insert(
        SEALED_FIELD.to_string(),
        Value::String(sealer.seal(&seal_context(&key), &text)),
    );
    serde_json::to_string(&sealed).expect("an Object always serializes to JSON")
}

/// Where a sealed Secret keeps its values in the stored JSON (a name no Kubernetes field has).
const SEALED_FIELD: &str = "shipway.dev/sealed";
const SECRET_VALUE_FIELDS: [&str; 2] = ["data", "stringData"];

fn is_secret(key: &Key) -> bool {
    key.group.is_empty() && key.kind == "Secret"
}

/// The associated data of a Secret's envelope: its key, so a sealed value copied to another
/// Secret's row does not open.
fn seal_context(key: &Key) -> String {
    format!(
        "object/{}/{}/{}/{}",
        key.group, key.kind, key.namespace, key.name
    )
}

/// Seals the values of Secrets written before the store had a key (or by a store opened without
/// one), in the objects and in the change log; returns how many rows were rewritten.
pub(crate) fn seal_existing(tx: &mut dyn Tx, sealer: &Sealer) -> Result<u64> {
    let mut rewritten = 0;
    let secrets = tx.list(RowFilter {
        group: Some(""),
        kind: Some("Secret"),
        namespace: None,
    })?;
    for data in secrets {
        let obj = decode_raw(&data)?;
        let key = obj.key();
        if has_plain_values(&obj) {
            tx.put(&key, stored_rv(&obj), &encode(&obj, Some(sealer)))?;
            rewritten += 1;
        }
        for (rv, text) in tx.secret_changes(&key.namespace, &key.name)? {
            let old = decode_raw(&text)?;
            if has_plain_values(&old) {
                tx.rewrite_change(rv, &encode(&old, Some(sealer)))?;
                rewritten += 1;
            }
        }
    }
    Ok(rewritten)
}

fn has_plain_values(obj: &Object) -> bool {
    SECRET_VALUE_FIELDS
        .iter()
        .any(|f| obj.body.contains_key(*f))
}

fn stored_rv(obj: &Object) -> u64 {
    obj.resource_version().unwrap_or(0)
}

fn load(tx: &mut dyn Tx, key: &Key, sealer: Option<&Sealer>) -> Result<Option<Object>> {
    tx.get(key)?
        .as_deref()
        .map(|d| decode(d, sealer))
        .transpose()
}

/// Writes `obj` (or removes it, for DELETED) and appends its change and audit rows.
fn record(
    tx: &mut dyn Tx,
    kind: WatchEventType,
    obj: &Object,
    prev_labels: Option<&BTreeMap<String, String>>,
    action: &str,
    message: &str,
    ctx: &Ctx<'_>,
) -> Result<()> {
    let key = obj.key();
    let rv = stored_rv(obj);
    let data = encode(obj, ctx.sealer);
    match kind {
        WatchEventType::Deleted => tx.delete(&key)?,
        _ => tx.put(&key, rv, &data)?,
    }
    let secret = is_secret(&key);
    if secret {
        redact_secret_history(tx, &key)?;
    }
    tx.append_change(&ChangeRow {
        rv,
        event_type: kind.as_str().to_string(),
        key: key.clone(),
        object: if secret && kind == WatchEventType::Deleted {
            encode(&without_secret_values(obj), None)
        } else {
            data
        },
        prev_labels: prev_labels
            .map(|l| serde_json::to_string(l).expect("labels always serialize")),
    })?;
    tx.append_audit(&NewAudit {
        time: &ctx.now.millis,
        actor: ctx.actor,
        action,
        key: &key,
        rv,
        message,
    })
}

/// A Secret's values live in the current object only. Every older change row of it is rewritten
/// without `data` and `stringData`, and a DELETED row never carries them, so neither the log on
/// disk nor a watch from an old resourceVersion replays values that were replaced or deleted.
/// A watcher replaying history still sees every change, in order; the newest row has the values.
fn redact_secret_history(tx: &mut dyn Tx, key: &Key) -> Result<()> {
    for (rv, text) in tx.secret_changes(&key.namespace, &key.name)? {
        // Read as stored: a sealed row's values go without being opened.
        let old = decode_raw(&text)?;
        if has_plain_values(&old) || old.body.contains_key(SEALED_FIELD) {
            tx.rewrite_change(rv, &encode(&without_secret_values(&old), None))?;
        }
    }
    Ok(())
}

fn without_secret_values(obj: &Object) -> Object {
    let mut obj = obj.clone();
    for field in SECRET_VALUE_FIELDS.iter().chain([&SEALED_FIELD]) {
        obj.body.remove(*field);
    }
    obj
}

/// An audit event that is not a write (a controller saying what happened to an object), at the
/// current resourceVersion.
pub(crate) fn record_event(
    tx: &mut dyn Tx,
    key: &Key,
    action: &str,
    message: &str,
    ctx: &Ctx<'_>,
) -> Result<()> {
    let rv = tx.current_rv()?;
    let key = normalize_key(tx, key)?;
    tx.append_audit(&NewAudit {
        time: &ctx.now.millis,
        actor: ctx.actor,
        action,
        key: &key,
        rv,
        message,
    })
}

pub(crate) fn get(tx: &mut dyn Tx, key: &Key, sealer: Option<&Sealer>) -> Result<Option<Object>> {
    let key = normalize_key(tx, key)?;
    load(tx, &key, sealer)
}

pub(crate) fn create(tx: &mut dyn Tx, mut obj: Object, ctx: &Ctx<'_>) -> Result<Object> {
    let key = normalize(tx, &mut obj)?;
    create_normalized(tx, obj, key, ctx)
}

fn create_normalized(tx: &mut dyn Tx, mut obj: Object, key: Key, ctx: &Ctx<'_>) -> Result<Object> {
    if tx.get(&key)?.is_some() {
        return Err(StoreError::AlreadyExists(key));
    }
    // What the server owns is set here whatever the client sent.
    let meta = &mut obj.metadata;
    meta.uid = Some(uuid::Uuid::new_v4().to_string());
    meta.creation_timestamp = Some(ctx.now.seconds.clone());
    meta.deletion_timestamp = None;
    meta.generation = 1;
    meta.resource_version = Some(tx.next_rv()?.to_string());
    record(
        tx,
        WatchEventType::Added,
        &obj,
        None,
        "create",
        "created",
        ctx,
    )?;
    Ok(obj)
}

/// Optimistic concurrency: a resourceVersion sent by the client must be the stored one; none
/// (or empty) means "unconditional".
fn check_rv(sent: &Object, current: &Object) -> Result<()> {
    let Some(text) = sent
        .metadata
        .resource_version
        .as_deref()
        .filter(|s| !s.is_empty())
    else {
        return Ok(());
    };
    let key = current.key();
    let expected: u64 = text.parse().map_err(|_| StoreError::Invalid {
        key: key.clone(),
        message: format!(
            "metadata.resourceVersion {text:?} is not a number: send the value you read, or none"
        ),
    })?;
    let actual = stored_rv(current);
    if expected != actual {
        return Err(StoreError::Conflict {
            key,
            expected,
            actual,
        });
    }
    Ok(())
}

/// `body` with `status` replaced by `status` (or removed).
fn with_status(body: Map<String, Value>, status: Option<&Value>) -> Map<String, Value> {
    let mut out: Map<String, Value> = body.into_iter().filter(|(k, _)| k != "status").collect();
    if let Some(status) = status {
        out.insert("status".to_string(), status.clone());
    }
    out
}

/// The stored object with the desired state (body but status, labels, annotations, finalizers,
/// ownerReferences) taken from `incoming`; server-owned fields stay.
fn replace_desired(current: &Object, incoming: Object) -> Result<Object> {
    let mut new = current.clone();
    new.api_version = incoming.api_version;
    new.body = with_status(incoming.body, current.status());
    new.metadata.labels = incoming.metadata.labels;
    new.metadata.annotations = incoming.metadata.annotations;
    new.metadata.owner_references = incoming.metadata.owner_references;
    new.metadata.finalizers = incoming.metadata.finalizers;
    if current.metadata.deletion_timestamp.is_some() {
        // Kubernetes' rule: once deletion started, finalizers may only be removed, or the object
        // could be kept forever.
        let added: Vec<&String> = new
            .metadata
            .finalizers
            .iter()
            .filter(|f| !current.metadata.finalizers.contains(f))
            .collect();
        if !added.is_empty() {
            return Err(StoreError::Invalid {
                key: current.key(),
                message: format!(
                    "metadata.finalizers: cannot add {added:?} while the object is being deleted"
                ),
            });
        }
    }
    if !current.desired_state_eq(&new) {
        new.metadata.generation = current.metadata.generation + 1;
    }
    Ok(new)
}

/// Which parts differ between two versions of an object, for the audit message.
fn describe_change(old: &Object, new: &Object) -> String {
    let mut parts: Vec<String> = Vec::new();
    if old.api_version != new.api_version {
        parts.push("apiVersion".into());
    }
    let keys: BTreeSet<&String> = old.body.keys().chain(new.body.keys()).collect();
    for key in keys {
        if key != "status" && old.body.get(key) != new.body.get(key) {
            parts.push(key.clone());
        }
    }
    let (o, n) = (&old.metadata, &new.metadata);
    for (name, changed) in [
        ("labels", o.labels != n.labels),
        ("annotations", o.annotations != n.annotations),
        ("finalizers", o.finalizers != n.finalizers),
        ("ownerReferences", o.owner_references != n.owner_references),
        ("status", old.status() != new.status()),
    ] {
        if changed {
            parts.push(name.into());
        }
    }
    if parts.is_empty() {
        "updated".into()
    } else {
        format!("{} changed", parts.join(", "))
    }
}

/// Writes `new` over `current` with a new resourceVersion, unless nothing changed. An object being
/// deleted whose last finalizer went away is removed instead.
fn commit_replacement(
    tx: &mut dyn Tx,
    current: Object,
    mut new: Object,
    action: &str,
    ctx: &Ctx<'_>,
) -> Result<Object> {
    if new == current {
        return Ok(current);
    }
    new.metadata.resource_version = Some(tx.next_rv()?.to_string());
    let prev_labels = Some(&current.metadata.labels);
    if new.metadata.deletion_timestamp.is_some() && new.metadata.finalizers.is_empty() {
        let message = "last finalizer removed; deleted";
        record(
            tx,
            WatchEventType::Deleted,
            &new,
            prev_labels,
            "finalize",
            message,
            ctx,
        )?;
    } else {
        let message = describe_change(&current, &new);
        record(
            tx,
            WatchEventType::Modified,
            &new,
            prev_labels,
            action,
            &message,
            ctx,
        )?;
    }
    Ok(new)
}

fn existing(tx: &mut dyn Tx, key: Key, sealer: Option<&Sealer>) -> Result<Object> {
    match load(tx, &key, sealer)? {
        Some(obj) => Ok(obj),
        None => Err(StoreError::NotFound(key)),
    }
}

pub(crate) fn update(tx: &mut dyn Tx, mut obj: Object, ctx: &Ctx<'_>) -> Result<Object> {
    let key = normalize(tx, &mut obj)?;
    let current = existing(tx, key, ctx.sealer)?;
    check_rv(&obj, &current)?;
    let new = replace_desired(&current, obj)?;
    commit_replacement(tx, current, new, "update", ctx)
}

pub(crate) fn update_status(tx: &mut dyn Tx, mut obj: Object, ctx: &Ctx<'_>) -> Result<Object> {
    let key = normalize(tx, &mut obj)?;
    let current = existing(tx, key, ctx.sealer)?;
    check_rv(&obj, &current)?;
    let mut new = current.clone();
    new.body = with_status(new.body, obj.status());
    if new == current {
        return Ok(current);
    }
    new.metadata.resource_version = Some(tx.next_rv()?.to_string());
    let prev_labels = Some(&current.metadata.labels);
    let action = "update-status";
    record(
        tx,
        WatchEventType::Modified,
        &new,
        prev_labels,
        action,
        "status updated",
        ctx,
    )?;
    Ok(new)
}

pub(crate) fn apply(
    tx: &mut dyn Tx,
    mut obj: Object,
    ctx: &Ctx<'_>,
) -> Result<(Object, ApplyOutcome)> {
    let key = normalize(tx, &mut obj)?;
    let Some(current) = load(tx, &key, ctx.sealer)? else {
        return Ok((create_normalized(tx, obj, key, ctx)?, ApplyOutcome::Created));
    };
    check_rv(&obj, &current)?;
    let new = replace_desired(&current, obj)?;
    if new == current {
        return Ok((current, ApplyOutcome::Unchanged));
    }
    Ok((
        commit_replacement(tx, current, new, "update", ctx)?,
        ApplyOutcome::Configured,
    ))
}

pub(crate) fn delete(tx: &mut dyn Tx, key: &Key, ctx: &Ctx<'_>) -> Result<DeleteOutcome> {
    let key = normalize_key(tx, key)?;
    let current = existing(tx, key, ctx.sealer)?;
    if current.metadata.deletion_timestamp.is_some() {
        return Ok(DeleteOutcome::Terminating(current));
    }
    let mut obj = current.clone();
    obj.metadata.resource_version = Some(tx.next_rv()?.to_string());
    let prev_labels = Some(&current.metadata.labels);
    if obj.metadata.finalizers.is_empty() {
        record(
            tx,
            WatchEventType::Deleted,
            &obj,
            prev_labels,
            "delete",
            "deleted",
            ctx,
        )?;
        return Ok(DeleteOutcome::Deleted(obj));
    }
    obj.metadata.deletion_timestamp = Some(ctx.now.seconds.clone());
    obj.metadata.generation += 1;
    let message = format!(
        "deletion requested; waiting for finalizers [{}]",
        obj.metadata.finalizers.join(", ")
    );
    record(
        tx,
        WatchEventType::Modified,
        &obj,
        prev_labels,
        "delete",
        &message,
        ctx,
    )?;
    Ok(DeleteOutcome::Terminating(obj))
}

fn row_filter(query: &ListQuery) -> RowFilter<'_> {
    RowFilter {
        group: query.group.as_deref(),
        kind: query.kind.as_deref(),
        namespace: query.namespace.as_deref(),
    }
}

pub(crate) fn list(
    tx: &mut dyn Tx,
    query: &ListQuery,
    sealer: Option<&Sealer>,
) -> Result<ListPage> {
    // Both reads run in one snapshot, so the rv is exactly the state the items show.
    let current = tx.current_rv()?;
    let (resource_version, after) = match &query.continue_token {
        None => (current, None),
        Some(token) => {
            let token = ContinueToken::decode(token)?;
            if token.rv > current {
                return Err(StoreError::InvalidContinue(format!(
                    "resourceVersion {} is newer than this store's ({current}): the token comes from another server",
                    token.rv
                )));
            }
            // As a watch from the list's version would: once the history after it is compacted,
            // Kubernetes calls the token too old, and clients start a new list.
            if token.rv < current {
                let oldest = tx.oldest_change()?.unwrap_or(current + 1);
                if token.rv + 1 < oldest {
                    return Err(StoreError::ContinueExpired);
                }
            }
            (token.rv, Some(token.start))
        }
    };
    let mut items = Vec::new();
    for data in tx.list(row_filter(query))? {
        let obj = decode(&data, sealer)?;
        if query.matches(&obj.key(), &obj.metadata.labels) {
            items.push(obj);
        }
    }
    // Sorted here, not in SQL: PostgreSQL's text order depends on the database's collation.
    items.sort_by_cached_key(|o| o.key());
    if let Some(after) = &after {
        let start = items.partition_point(|o| o.key() <= *after);
        items.drain(..start);
    }
    let (mut continue_token, mut remaining_item_count) = (None, None);
    if query.limit > 0 && items.len() > query.limit {
        let rest = items.split_off(query.limit);
        if let Some(last) = items.last() {
            continue_token = Some(
                ContinueToken {
                    rv: resource_version,
                    start: last.key(),
                }
                .encode(),
            );
            remaining_item_count = Some(rest.len() as u64);
        }
    }
    Ok(ListPage {
        list: ObjectList {
            items,
            resource_version,
        },
        continue_token,
        remaining_item_count,
    })
}

/// What a `continue` token holds: the first page's resourceVersion and the last key returned.
/// Base64url of JSON, as Kubernetes encodes its own, so clients treat it as opaque.
#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: u64,
    start: Key,
}

impl ContinueToken {
    const VERSION: &'static str = "shipway.dev/v1";

    fn encode(&self) -> String {
        use base64::Engine as _;
        let json = serde_json::json!({"v": Self::VERSION, "rv": self.rv, "start": self.start});
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json.to_string())
    }

    /// Kubernetes' words for a token it cannot read: `continue key is not valid: ...`.
    fn decode(token: &str) -> Result<ContinueToken> {
        use base64::Engine as _;
        let invalid = |why: String| StoreError::InvalidContinue(why);
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|e| invalid(e.to_string()))?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        match value.get("v").and_then(Value::as_str) {
            Some(Self::VERSION) => {}
            other => {
                return Err(invalid(format!(
                    "unrecognized encoded version {}",
                    other.unwrap_or("(none)")
                )));
            }
        }
        serde_json::from_value(value).map_err(|e| invalid(e.to_string()))
    }
}

/// One read of the change log for a watch.
pub(crate) struct WatchBatch {
    pub events: Vec<WatchEvent>,
    /// Every change up to here has been looked at: the next read starts after it.
    pub next_since: u64,
    /// The read stopped at `limit`: read again at once.
    pub more: bool,
}

pub(crate) fn watch_batch(
    tx: &mut dyn Tx,
    query: &ListQuery,
    since: u64,
    limit: usize,
    sealer: Option<&Sealer>,
) -> Result<WatchBatch> {
    let current = tx.current_rv()?;
    if since < current {
        // History is contiguous (every rv is one change row), so anything before the oldest
        // retained row is gone: the caller must relist.
        let oldest = tx.oldest_change()?.unwrap_or(current + 1);
        if since + 1 < oldest {
            return Err(StoreError::Expired {
                requested: since,
                oldest,
            });
        }
    }
    let rows = tx.changes_since(since, row_filter(query), limit)?;
    let more = rows.len() >= limit;
    let next_since = match rows.last() {
        Some(last) if more => last.rv,
        // Rows filtered out by group/kind/namespace count as seen up to the snapshot's rv.
        _ => current.max(since),
    };
    let mut events = Vec::with_capacity(rows.len());
    for row in rows {
        let object = decode(&row.object, sealer)?;
        // A MODIFIED object that stopped matching the selector is still sent (its labels show
        // it no longer matches), so a filtered watcher can drop it from its cache.
        let was_selected = match (&query.selector, &row.prev_labels) {
            (Some(selector), Some(prev)) => serde_json::from_str(prev)
                .map(|labels: BTreeMap<String, String>| selector.matches(&labels))
                .unwrap_or(false),
            _ => false,
        };
        if !was_selected && !query.matches(&row.key, &object.metadata.labels) {
            continue;
        }
        let Some(kind) = WatchEventType::parse(&row.event_type) else {
            return Err(StoreError::backend(
                format!(
                    "unknown change type {:?} at resourceVersion {}",
                    row.event_type, row.rv
                ),
                false,
            ));
        };
        events.push(WatchEvent { kind, object });
    }
    Ok(WatchBatch {
        events,
        next_since,
        more,
    })
}

/// Drops change rows older than the newest `retain`; returns how many went.
pub(crate) fn compact(tx: &mut dyn Tx, retain: u64) -> Result<u64> {
    let current = tx.current_rv()?;
    let retain = retain.max(1);
    if current <= retain {
        return Ok(0);
    }
    tx.delete_changes_upto(current - retain)
}
