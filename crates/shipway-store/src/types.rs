//! The plain data types of the public API: queries, results, watch and audit events.

use std::fmt;

use serde::{Deserialize, Serialize};
use shipway_model::{Key, Object, Selector};

/// What `Store::apply` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    Created,
    Configured,
    /// Nothing differed: no write, no new resourceVersion, no event.
    Unchanged,
}

impl ApplyOutcome {
    /// The word kubectl prints: `created`, `configured`, `unchanged`.
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyOutcome::Created => "created",
            ApplyOutcome::Configured => "configured",
            ApplyOutcome::Unchanged => "unchanged",
        }
    }
}

impl fmt::Display for ApplyOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `Store::delete` did.
#[derive(Clone, Debug, PartialEq)]
pub enum DeleteOutcome {
    /// Removed; the object carries the resourceVersion of its deletion.
    Deleted(Object),
    /// Finalizers remain: `deletionTimestamp` is set and the object stays until an update empties
    /// `finalizers`.
    Terminating(Object),
}

impl DeleteOutcome {
    pub fn object(&self) -> &Object {
        match self {
            DeleteOutcome::Deleted(o) | DeleteOutcome::Terminating(o) => o,
        }
    }
}

/// Which objects a list or watch is about. `None` means "any".
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    pub group: Option<String>,
    pub kind: Option<String>,
    /// `None`: all namespaces. `Some("")` selects cluster-scoped objects.
    pub namespace: Option<String>,
    pub selector: Option<Selector>,
    /// List only: at most this many items per page; 0 means all (Kubernetes' `limit`). Watch
    /// ignores it.
    pub limit: usize,
    /// List only: the `continue` token of the previous page ([`ListPage::continue_token`]).
    /// Watch ignores it.
    pub continue_token: Option<String>,
}

impl ListQuery {
    /// All objects of one kind in all namespaces.
    pub fn kind(group: &str, kind: &str) -> ListQuery {
        ListQuery {
            group: Some(group.to_string()),
            kind: Some(kind.to_string()),
            ..ListQuery::default()
        }
    }

    pub fn in_namespace(mut self, namespace: &str) -> ListQuery {
        self.namespace = Some(namespace.to_string());
        self
    }

    pub fn with_selector(mut self, selector: Selector) -> ListQuery {
        self.selector = Some(selector);
        self
    }

    /// Whether an object with this key and labels is selected.
    pub fn matches(&self, key: &Key, labels: &std::collections::BTreeMap<String, String>) -> bool {
        self.group.as_ref().is_none_or(|g| *g == key.group)
            && self.kind.as_ref().is_none_or(|k| *k == key.kind)
            && self.namespace.as_ref().is_none_or(|n| *n == key.namespace)
            && self.selector.as_ref().is_none_or(|s| s.matches(labels))
    }
}

/// One page of a list, as Kubernetes' `metadata.continue` and `metadata.remainingItemCount` say.
///
/// Pages follow key order, not a snapshot: each page is read when it is asked for and starts
/// after the last key of the page before. So an object that exists from the first page to the
/// last is returned exactly once, however the list is written to in between (a write cannot move
/// an object to another place in the order); an object created or deleted meanwhile appears if
/// its key is still ahead of the cursor. Each page carries the first page's resourceVersion (in
/// the token), as Kubernetes' pages do; unlike Kubernetes' etcd-backed lists, a later page shows
/// objects as they are when it is read, because the store keeps no old versions to read at.
#[derive(Clone, Debug, PartialEq)]
pub struct ListPage {
    /// The page's items; `list.resource_version` is the first page's.
    pub list: ObjectList,
    /// Where the next page starts; `None` on the last page.
    pub continue_token: Option<String>,
    /// How many matching items follow this page (when there is a next page).
    pub remaining_item_count: Option<u64>,
}

/// A list result.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectList {
    /// Sorted by (group, kind, namespace, name).
    pub items: Vec<Object>,
    /// The store's resourceVersion when the list was read (in the same snapshot): watch from here
    /// to miss nothing.
    pub resource_version: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum WatchEventType {
    Added,
    Modified,
    Deleted,
}

impl WatchEventType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            WatchEventType::Added => "ADDED",
            WatchEventType::Modified => "MODIFIED",
            WatchEventType::Deleted => "DELETED",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<WatchEventType> {
        match s {
            "ADDED" => Some(WatchEventType::Added),
            "MODIFIED" => Some(WatchEventType::Modified),
            "DELETED" => Some(WatchEventType::Deleted),
            _ => None,
        }
    }
}

/// One change, as Kubernetes' watch API sends it: `{"type":"ADDED","object":{...}}`. The object's
/// `metadata.resourceVersion` is the change's resourceVersion (for DELETED too).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WatchEvent {
    #[serde(rename = "type")]
    pub kind: WatchEventType,
    pub object: Object,
}

impl WatchEvent {
    pub fn resource_version(&self) -> u64 {
        self.object.resource_version().unwrap_or(0)
    }
}

/// One audited write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub id: i64,
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    pub actor: String,
    /// `create`, `update`, `update-status`, `delete` or `finalize` for writes; a reason such as
    /// `AddressInUse` for events recorded with `Store::record_event`.
    pub action: String,
    pub key: Key,
    pub resource_version: u64,
    pub message: String,
}

/// One line of a run's log, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    /// Orders every line of the store: a follower asks for lines after the last it saw.
    pub seq: u64,
    /// RFC 3339, UTC, milliseconds: when the store received the line.
    pub time: String,
    /// The job instance's display name.
    pub job: String,
    /// The step number within the job instance; `None` for the runner's own lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u32>,
    /// `stdout`, `stderr` or `runner`.
    pub stream: String,
    pub text: String,
}

/// A line to append to a run's log (the store assigns `seq` and `time`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewLogLine {
    pub job: String,
    pub step: Option<u32>,
    pub stream: String,
    pub text: String,
}

/// Which audit events to return: every filter that is set must match exactly.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventQuery {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// The newest `limit` events (returned oldest first, newest last); 0 means all.
    pub limit: usize,
}

impl EventQuery {
    /// Events about one object.
    pub fn for_key(key: &Key, limit: usize) -> EventQuery {
        EventQuery {
            group: Some(key.group.clone()),
            kind: Some(key.kind.clone()),
            namespace: Some(key.namespace.clone()),
            name: Some(key.name.clone()),
            limit,
        }
    }
}

/// How a store is opened.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// How many of the newest changes the watch history keeps (default 100,000). A watch from an
    /// older resourceVersion gets `Expired`.
    pub retained_changes: u64,
    /// How often a watch polls the database for writes by other processes (default 1 s); writes
    /// through this `Store` wake watchers at once, and so do other processes' on PostgreSQL
    /// (LISTEN/NOTIFY), where the poll only covers a lost listening connection.
    pub poll_interval: std::time::Duration,
    /// Claim the database for this process alone, for as long as the store is open: a second
    /// exclusive open of the same PostgreSQL database is refused (a session advisory lock).
    /// `shipway up` sets it, because its controllers and kubelet must run once per database;
    /// plain clients (tests, tools) share. SQLite ignores it: the server's data-directory lock
    /// already keeps a second server off the file.
    pub exclusive: bool,
    /// Seals Secret values (and pipeline secrets) at rest with the server's key. `None` keeps
    /// Kubernetes Secrets as written, for tools and tests without a key; `shipway up` always
    /// sets one.
    pub sealer: Option<crate::seal::Sealer>,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            retained_changes: 100_000,
            poll_interval: std::time::Duration::from_secs(1),
            exclusive: false,
            sealer: None,
        }
    }
}
