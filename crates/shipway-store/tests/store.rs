//! The store suite: every test runs against SQLite and, when `SHIPWAY_TEST_POSTGRES_URL` is set,
//! against PostgreSQL (each in a fresh database).

mod testutil;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use shipway_model::{Key, Selector};
use shipway_store::seal::{Sealer, SecretKey};
use shipway_store::{
    ApplyOutcome, DeleteOutcome, EventQuery, ListPage, ListQuery, NewLogLine, Scope, SettingKind,
    Store, StoreError, StoreOptions, WatchEvent, WatchEventType, WatchStream,
};

use testutil::{PATIENCE, TestDb, configmap, deployment, deployment_key, obj, rv};

suite! {
    store: [
        create_get_and_list_with_filters,
        create_ignores_server_fields_and_defaults_namespace,
        create_twice_is_already_exists,
        invalid_objects_are_rejected_and_nothing_is_stored,
        update_with_stale_resource_version_conflicts_and_retry_succeeds,
        update_without_changes_writes_nothing,
        generation_bumps_on_desired_state_changes_only,
        update_status_takes_only_status,
        apply_reports_created_configured_unchanged,
        apply_dry_run_writes_nothing,
        delete_without_finalizers_removes_with_a_new_resource_version,
        delete_with_finalizers_waits_until_they_are_removed,
        audit_log_records_every_write,
        list_resource_version_is_a_snapshot_to_watch_from,
        watch_filters_by_kind_namespace_and_selector,
        watch_sees_every_change_once_in_order_across_reconnects,
        concurrent_writers_never_share_a_resource_version,
        a_failing_write_among_concurrent_writers_fails_alone,
        metrics_count_operations,
        secret_values_are_not_replayed_from_the_change_log,
        events_that_are_not_writes_take_no_resource_version,
        pages_of_a_list_add_up_to_the_unpaged_list,
        a_write_between_pages_neither_duplicates_nor_loses_an_object,
        a_garbled_continue_token_is_refused_in_kubernetes_words,
        custom_kinds_take_the_scope_of_their_crd,
        run_logs_are_kept_in_order_per_owner_and_followed_by_seq,
    ],
    db: [
        watch_from_before_compaction_is_expired,
        writes_compact_the_change_log_automatically,
        reopen_keeps_everything,
        every_acknowledged_concurrent_write_survives_reopen,
        watch_sees_writes_of_another_store_on_the_same_database,
        a_continue_token_older_than_the_history_has_expired,
        run_logs_survive_a_reopen,
        secret_values_are_sealed_at_rest_and_open_with_the_key_only,
        secrets_written_without_a_key_are_sealed_when_the_key_arrives,
        pipeline_secrets_and_variables_resolve_by_scope_and_seal_at_rest,
    ],
}

/// Reads events until `n` have arrived (or fails after `PATIENCE`).
async fn take(stream: &mut WatchStream, n: usize) -> Vec<WatchEvent> {
    let mut out = Vec::new();
    while out.len() < n {
        let next = tokio::time::timeout(PATIENCE, stream.next()).await;
        let event = next
            .expect("watch event in time")
            .expect("stream open")
            .expect("no error");
        out.push(event);
    }
    out
}

/// Asserts nothing more arrives for a short while.
async fn assert_quiet(stream: &mut WatchStream) {
    let next = tokio::time::timeout(Duration::from_millis(300), stream.next()).await;
    assert!(next.is_err(), "unexpected watch item: {next:?}");
}

fn summary(events: &[WatchEvent]) -> Vec<(WatchEventType, String, u64)> {
    events
        .iter()
        .map(|e| (e.kind, e.object.metadata.name.clone(), e.resource_version()))
        .collect()
}

async fn create_get_and_list_with_filters(store: Store) {
    let a = store
        .create(deployment("prod", "web", 2, &[("tier", "front")]), "alice")
        .await
        .unwrap();
    store
        .create(deployment("prod", "api", 1, &[("tier", "back")]), "alice")
        .await
        .unwrap();
    store
        .create(deployment("dev", "web", 1, &[("tier", "front")]), "alice")
        .await
        .unwrap();
    store
        .create(configmap("prod", "settings", "x"), "alice")
        .await
        .unwrap();
    let ns = obj(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod"}}));
    store.create(ns, "alice").await.unwrap();

    let got = store
        .get(&deployment_key("prod", "web"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, a);
    assert_eq!(got.spec(), Some(&json!({"replicas": 2})));
    assert!(
        store
            .get(&deployment_key("prod", "nope"))
            .await
            .unwrap()
            .is_none()
    );

    let all = store.list(&ListQuery::default()).await.unwrap();
    let keys: Vec<String> = all.items.iter().map(|o| o.key().to_string()).collect();
    assert_eq!(
        keys,
        [
            "ConfigMap/prod/settings",
            "Namespace/prod",
            "Deployment.apps/dev/web",
            "Deployment.apps/prod/api",
            "Deployment.apps/prod/web"
        ],
        "sorted by (group, kind, namespace, name)"
    );
    assert_eq!(all.resource_version, 5);
    assert_eq!(
        all.resource_version,
        store.current_resource_version().await.unwrap()
    );

    let names = |list: shipway_store::ObjectList| -> Vec<String> {
        list.items.iter().map(|o| o.key().to_string()).collect()
    };
    let deployments = ListQuery::kind("apps", "Deployment");
    assert_eq!(store.list(&deployments).await.unwrap().items.len(), 3);
    assert_eq!(
        names(
            store
                .list(&deployments.clone().in_namespace("prod"))
                .await
                .unwrap()
        ),
        ["Deployment.apps/prod/api", "Deployment.apps/prod/web"]
    );
    let front = deployments
        .clone()
        .with_selector(Selector::parse("tier=front").unwrap());
    assert_eq!(
        names(store.list(&front).await.unwrap()),
        ["Deployment.apps/dev/web", "Deployment.apps/prod/web"]
    );
    let not_front =
        ListQuery::default().with_selector(Selector::parse("tier,tier!=front").unwrap());
    assert_eq!(
        names(store.list(&not_front).await.unwrap()),
        ["Deployment.apps/prod/api"]
    );
    let cluster_scoped = ListQuery::default().in_namespace("");
    assert_eq!(
        names(store.list(&cluster_scoped).await.unwrap()),
        ["Namespace/prod"]
    );
}

async fn create_ignores_server_fields_and_defaults_namespace(store: Store) {
    let sent = obj(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "uid": "client-uid",
            "resourceVersion": "999",
            "generation": 7,
            "creationTimestamp": "2000-01-01T00:00:00Z",
            "deletionTimestamp": "2000-01-01T00:00:00Z",
        },
        "spec": {"replicas": 1},
    }));
    let created = store.create(sent, "alice").await.unwrap();
    let m = &created.metadata;
    assert_eq!(m.namespace.as_deref(), Some("default"));
    assert_ne!(m.uid.as_deref(), Some("client-uid"));
    assert_eq!(m.uid.as_deref().map(str::len), Some(36), "a UUID");
    assert_eq!(m.resource_version.as_deref(), Some("1"));
    assert_eq!(m.generation, 1);
    assert_eq!(m.deletion_timestamp, None);
    let ts = m.creation_timestamp.as_deref().unwrap();
    assert_ne!(ts, "2000-01-01T00:00:00Z");
    assert!(
        ts.len() == 20 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
        "{ts}"
    );

    // An empty namespace on a get means `default` too.
    assert!(
        store
            .get(&deployment_key("", "web"))
            .await
            .unwrap()
            .is_some()
    );

    // Cluster-scoped kinds lose a namespace the client sent.
    let ns = obj(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a", "namespace": "x"}}),
    );
    let ns = store.create(ns, "alice").await.unwrap();
    assert_eq!(ns.metadata.namespace, None);
    assert_eq!(ns.key(), Key::new("", "Namespace", "", "team-a"));
}

/// A custom kind is keyed by its CustomResourceDefinition's scope, as Kubernetes keys it: a
/// cluster-scoped one loses the namespace a client sent and is found under any, a namespaced
/// one is defaulted to `default`.
async fn custom_kinds_take_the_scope_of_their_crd(store: Store) {
    let crd = |kind: &str, plural: &str, scope: &str| {
        obj(
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("{plural}.example.com")},
            "spec": {"group": "example.com", "scope": scope,
                "names": {"kind": kind, "plural": plural},
                "versions": [{"name": "v1", "served": true, "storage": true}]}}),
        )
    };
    store
        .create(crd("Fleet", "fleets", "Cluster"), "alice")
        .await
        .unwrap();
    store
        .create(crd("Widget", "widgets", "Namespaced"), "alice")
        .await
        .unwrap();
    let fleet = store
        .create(
            obj(json!({"apiVersion": "example.com/v1", "kind": "Fleet",
                "metadata": {"name": "all", "namespace": "x"}})),
            "alice",
        )
        .await
        .unwrap();
    assert_eq!(fleet.metadata.namespace, None);
    let cluster_key = Key::new("example.com", "Fleet", "", "all");
    assert_eq!(fleet.key(), cluster_key);
    for namespace in ["", "default", "x"] {
        let key = Key::new("example.com", "Fleet", namespace, "all");
        assert!(store.get(&key).await.unwrap().is_some(), "{key:?}");
    }
    let widget = store
        .create(
            obj(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})),
            "alice",
        )
        .await
        .unwrap();
    assert_eq!(widget.metadata.namespace.as_deref(), Some("default"));
    // Writes by key follow the scope too.
    store
        .record_event(
            &Key::new("example.com", "Fleet", "default", "all"),
            "bob",
            "Checked",
            "ok",
        )
        .await
        .unwrap();
    let events = store
        .events(&EventQuery {
            name: Some("all".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.action == "Checked" && e.key.namespace.is_empty()),
        "{events:?}"
    );
    store
        .delete(&Key::new("example.com", "Fleet", "default", "all"), "alice")
        .await
        .unwrap();
    assert!(store.get(&cluster_key).await.unwrap().is_none());
}

async fn create_twice_is_already_exists(store: Store) {
    store
        .create(deployment("prod", "web", 1, &[]), "alice")
        .await
        .unwrap();
    let err = store
        .create(deployment("prod", "web", 2, &[]), "alice")
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::AlreadyExists(deployment_key("prod", "web"))
    );
    assert!(
        err.to_string()
            .starts_with("Deployment.apps/prod/web already exists"),
        "{err}"
    );
    assert!(!err.is_retryable());
    assert_eq!(
        store.current_resource_version().await.unwrap(),
        1,
        "nothing written"
    );
}

async fn invalid_objects_are_rejected_and_nothing_is_stored(store: Store) {
    for (namespace, name) in [
        ("prod", "a/b"),
        ("prod", ".."),
        ("prod", "UPPER"),
        ("prod", ""),
        ("Bad_NS", "web"),
    ] {
        let o = deployment(namespace, name, 1, &[]);
        for result in [
            store.create(o.clone(), "alice").await.map(|_| ()),
            store.apply(o.clone(), "alice").await.map(|_| ()),
            store.apply_dry_run(o.clone()).await.map(|_| ()),
            store.update(o.clone(), "alice").await.map(|_| ()),
        ] {
            match result {
                Err(StoreError::Invalid { message, .. }) => {
                    assert!(message.contains("metadata."), "{message}")
                }
                other => panic!("{namespace}/{name}: expected Invalid, got {other:?}"),
            }
        }
    }
    let mut bad_label = deployment("prod", "web", 1, &[]);
    bad_label
        .metadata
        .labels
        .insert("bad key!".into(), "v".into());
    bad_label.metadata.finalizers.push("not a finalizer".into());
    let err = store.create(bad_label, "alice").await.unwrap_err();
    let StoreError::Invalid { message, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(
        message.contains("metadata.labels") && message.contains("metadata.finalizers"),
        "every problem at once: {message}"
    );

    assert_eq!(store.list(&ListQuery::default()).await.unwrap().items, []);
    assert_eq!(store.current_resource_version().await.unwrap(), 0);
    assert_eq!(store.events(&EventQuery::default()).await.unwrap(), []);
    let mut watch = store.watch(ListQuery::default(), 0);
    assert_quiet(&mut watch).await;
}

async fn update_with_stale_resource_version_conflicts_and_retry_succeeds(store: Store) {
    let v1 = store
        .create(deployment("prod", "web", 1, &[]), "alice")
        .await
        .unwrap();
    let mut v2 = v1.clone();
    v2.body.insert("spec".into(), json!({"replicas": 2}));
    let v2 = store.update(v2, "alice").await.unwrap();
    assert_eq!(rv(&v2), 2);

    // Bob still holds v1.
    let mut stale = v1.clone();
    stale.body.insert("spec".into(), json!({"replicas": 5}));
    let err = store.update(stale.clone(), "bob").await.unwrap_err();
    assert_eq!(
        err,
        StoreError::Conflict {
            key: deployment_key("prod", "web"),
            expected: 1,
            actual: 2
        }
    );
    assert_eq!(
        err.to_string(),
        "Deployment.apps/prod/web was modified (resourceVersion 2, you sent 1): get it again and retry"
    );
    assert!(!err.is_retryable());
    let err = store.update_status(stale.clone(), "bob").await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    let err = store.apply(stale.clone(), "bob").await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");

    // Get again, retry: it works.
    let mut fresh = store.get(&v1.key()).await.unwrap().unwrap();
    fresh.body.insert("spec".into(), json!({"replicas": 5}));
    let v3 = store.update(fresh, "bob").await.unwrap();
    assert_eq!((rv(&v3), v3.metadata.generation), (3, 3));

    // No resourceVersion: unconditional.
    let mut blind = deployment("prod", "web", 6, &[]);
    blind.metadata.resource_version = None;
    assert_eq!(rv(&store.update(blind, "carol").await.unwrap()), 4);

    let err = store
        .update(deployment("prod", "ghost", 1, &[]), "carol")
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::NotFound(deployment_key("prod", "ghost")));
}

async fn update_without_changes_writes_nothing(store: Store) {
    let v1 = store
        .create(deployment("prod", "web", 1, &[]), "alice")
        .await
        .unwrap();
    let same = store.update(v1.clone(), "alice").await.unwrap();
    assert_eq!(same, v1);
    assert_eq!(store.current_resource_version().await.unwrap(), 1);
    assert_eq!(store.events(&EventQuery::default()).await.unwrap().len(), 1);
}

async fn generation_bumps_on_desired_state_changes_only(store: Store) {
    let v1 = store
        .create(deployment("prod", "web", 1, &[]), "alice")
        .await
        .unwrap();
    assert_eq!(v1.metadata.generation, 1);

    let mut labels = v1.clone();
    labels.metadata.labels.insert("team".into(), "a".into());
    labels
        .metadata
        .annotations
        .insert("note".into(), "hi".into());
    let v2 = store.update(labels, "alice").await.unwrap();
    assert_eq!(
        (rv(&v2), v2.metadata.generation),
        (2, 1),
        "metadata is not desired state"
    );

    let mut status = v2.clone();
    status
        .body
        .insert("status".into(), json!({"readyReplicas": 1}));
    let v3 = store.update_status(status, "controller").await.unwrap();
    assert_eq!(
        (rv(&v3), v3.metadata.generation),
        (3, 1),
        "status is not desired state"
    );

    let mut spec = v3.clone();
    spec.body.insert("spec".into(), json!({"replicas": 3}));
    let v4 = store.update(spec, "alice").await.unwrap();
    assert_eq!((rv(&v4), v4.metadata.generation), (4, 2));
    assert_eq!(
        v4.status(),
        Some(&json!({"readyReplicas": 1})),
        "status kept"
    );

    // Other body fields (a ConfigMap's data) are desired state too.
    let cm = store
        .create(configmap("prod", "c", "1"), "alice")
        .await
        .unwrap();
    let mut cm2 = cm.clone();
    cm2.body.insert("data".into(), json!({"value": "2"}));
    assert_eq!(
        store
            .update(cm2, "alice")
            .await
            .unwrap()
            .metadata
            .generation,
        2
    );
}

async fn update_status_takes_only_status(store: Store) {
    let v1 = store
        .create(deployment("prod", "web", 1, &[]), "alice")
        .await
        .unwrap();
    let mut sent = v1.clone();
    sent.body.insert("spec".into(), json!({"replicas": 9}));
    sent.metadata.labels.insert("sneaky".into(), "yes".into());
    sent.body.insert("status".into(), json!({"phase": "Ready"}));
    let v2 = store.update_status(sent, "controller").await.unwrap();
    assert_eq!(v2.spec(), Some(&json!({"replicas": 1})));
    assert!(!v2.metadata.labels.contains_key("sneaky"));
    assert_eq!(v2.status(), Some(&json!({"phase": "Ready"})));
    assert_eq!(v2.metadata.generation, 1);

    // The same status again: no write.
    let v3 = store.update_status(v2.clone(), "controller").await.unwrap();
    assert_eq!(rv(&v3), rv(&v2));

    // An update (not of status) cannot change or clear it.
    let mut cleared = v2.clone();
    cleared.body.remove("status");
    cleared.body.insert("spec".into(), json!({"replicas": 2}));
    let v4 = store.update(cleared, "alice").await.unwrap();
    assert_eq!(v4.status(), Some(&json!({"phase": "Ready"})));
    let events = store.events(&EventQuery::default()).await.unwrap();
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["create", "update-status", "update"]);
}

async fn apply_reports_created_configured_unchanged(store: Store) {
    let (v1, outcome) = store
        .apply(deployment("prod", "web", 1, &[]), "alice")
        .await
        .unwrap();
    assert_eq!(
        (outcome, rv(&v1), v1.metadata.generation),
        (ApplyOutcome::Created, 1, 1)
    );

    let (same, outcome) = store
        .apply(deployment("prod", "web", 1, &[]), "alice")
        .await
        .unwrap();
    assert_eq!(outcome, ApplyOutcome::Unchanged);
    assert_eq!(same, v1);
    assert_eq!(
        store.current_resource_version().await.unwrap(),
        1,
        "no new resourceVersion"
    );

    let mut status = v1.clone();
    status
        .body
        .insert("status".into(), json!({"readyReplicas": 1}));
    store.update_status(status, "controller").await.unwrap();

    // Applying the file again leaves the status alone and is still unchanged.
    let (v2, outcome) = store
        .apply(deployment("prod", "web", 1, &[]), "alice")
        .await
        .unwrap();
    assert_eq!((outcome, rv(&v2)), (ApplyOutcome::Unchanged, 2));
    assert_eq!(v2.status(), Some(&json!({"readyReplicas": 1})));

    let (v3, outcome) = store
        .apply(deployment("prod", "web", 4, &[("tier", "front")]), "alice")
        .await
        .unwrap();
    assert_eq!(outcome, ApplyOutcome::Configured);
    assert_eq!((rv(&v3), v3.metadata.generation), (3, 2));
    assert_eq!(v3.metadata.uid, v1.metadata.uid);
    assert_eq!(
        v3.metadata.creation_timestamp,
        v1.metadata.creation_timestamp
    );
    assert_eq!(v3.status(), Some(&json!({"readyReplicas": 1})));
    assert_eq!(
        v3.metadata.labels.get("tier").map(String::as_str),
        Some("front")
    );

    // A label-only change is Configured without a generation bump.
    let (v4, outcome) = store
        .apply(deployment("prod", "web", 4, &[]), "alice")
        .await
        .unwrap();
    assert_eq!(
        (outcome, v4.metadata.generation),
        (ApplyOutcome::Configured, 2)
    );
    assert_eq!(ApplyOutcome::Configured.to_string(), "configured");
}

async fn apply_dry_run_writes_nothing(store: Store) {
    let (o, outcome) = store
        .apply_dry_run(deployment("prod", "web", 1, &[]))
        .await
        .unwrap();
    assert_eq!(outcome, ApplyOutcome::Created);
    assert_eq!(o.metadata.namespace.as_deref(), Some("prod"));
    assert_eq!(o.metadata.resource_version, None);
    assert!(
        store
            .get(&deployment_key("prod", "web"))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.current_resource_version().await.unwrap(), 0);

    let v1 = store
        .create(deployment("prod", "web", 1, &[]), "alice")
        .await
        .unwrap();
    let (o, outcome) = store
        .apply_dry_run(deployment("prod", "web", 3, &[]))
        .await
        .unwrap();
    assert_eq!(
        (outcome, o.metadata.generation),
        (ApplyOutcome::Configured, 2)
    );
    assert_eq!(store.get(&v1.key()).await.unwrap().unwrap(), v1);
    let (o, outcome) = store
        .apply_dry_run(deployment("prod", "web", 1, &[]))
        .await
        .unwrap();
    assert_eq!((outcome, o), (ApplyOutcome::Unchanged, v1));

    assert_eq!(store.current_resource_version().await.unwrap(), 1);
    assert_eq!(store.events(&EventQuery::default()).await.unwrap().len(), 1);
    // The next real write takes rv 2: the dry runs' rolled-back rvs are not lost.
    let (v2, _) = store
        .apply(deployment("prod", "web", 3, &[]), "alice")
        .await
        .unwrap();
    assert_eq!(rv(&v2), 2);
}

async fn delete_without_finalizers_removes_with_a_new_resource_version(store: Store) {
    let mut watch = store.watch(ListQuery::default(), 0);
    let v1 = store
        .create(deployment("prod", "web", 1, &[]), "alice")
        .await
        .unwrap();
    let DeleteOutcome::Deleted(gone) = store.delete(&v1.key(), "alice").await.unwrap() else {
        panic!("no finalizers: deleted at once")
    };
    assert_eq!(rv(&gone), 2);
    assert_eq!(gone.metadata.uid, v1.metadata.uid);
    assert!(store.get(&v1.key()).await.unwrap().is_none());
    let err = store.delete(&v1.key(), "alice").await.unwrap_err();
    assert_eq!(err, StoreError::NotFound(v1.key()));
    assert_eq!(err.to_string(), "Deployment.apps/prod/web not found");

    let events = take(&mut watch, 2).await;
    assert_eq!(
        summary(&events),
        [
            (WatchEventType::Added, "web".into(), 1),
            (WatchEventType::Deleted, "web".into(), 2)
        ]
    );
    assert_eq!(
        serde_json::to_value(&events[1]).unwrap()["type"],
        json!("DELETED"),
        "Kubernetes' watch event shape"
    );

    // Recreating gives a new uid.
    let again = store
        .create(deployment("prod", "web", 1, &[]), "alice")
        .await
        .unwrap();
    assert_ne!(again.metadata.uid, v1.metadata.uid);
}

async fn delete_with_finalizers_waits_until_they_are_removed(store: Store) {
    let mut o = deployment("prod", "web", 1, &[]);
    o.metadata.finalizers = vec!["shipway.dev/a".into(), "shipway.dev/b".into()];
    let v1 = store.create(o, "alice").await.unwrap();
    let mut watch = store.watch(ListQuery::default(), rv(&v1));

    let DeleteOutcome::Terminating(v2) = store.delete(&v1.key(), "alice").await.unwrap() else {
        panic!("finalizers: terminating")
    };
    assert!(v2.metadata.deletion_timestamp.is_some());
    assert_eq!((rv(&v2), v2.metadata.generation), (2, 2));

    // Deleting again changes nothing.
    let again = store.delete(&v1.key(), "bob").await.unwrap();
    assert_eq!(again, DeleteOutcome::Terminating(v2.clone()));
    assert_eq!(store.current_resource_version().await.unwrap(), 2);

    // No new finalizers while terminating.
    let mut add = v2.clone();
    add.metadata.finalizers.push("shipway.dev/c".into());
    let err = store.update(add, "alice").await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Invalid { message, .. } if message.contains("shipway.dev/c")),
        "{err:?}"
    );

    let mut drop_a = v2.clone();
    drop_a.metadata.finalizers = vec!["shipway.dev/b".into()];
    let v3 = store.update(drop_a, "controller-a").await.unwrap();
    assert_eq!(
        v3.metadata.deletion_timestamp,
        v2.metadata.deletion_timestamp
    );
    assert!(store.get(&v1.key()).await.unwrap().is_some());

    let mut drop_b = v3.clone();
    drop_b.metadata.finalizers.clear();
    let v4 = store.update(drop_b, "controller-b").await.unwrap();
    assert_eq!(rv(&v4), 4);
    assert!(
        store.get(&v1.key()).await.unwrap().is_none(),
        "gone with its last finalizer"
    );

    let events = take(&mut watch, 3).await;
    assert_eq!(
        summary(&events),
        [
            (WatchEventType::Modified, "web".into(), 2),
            (WatchEventType::Modified, "web".into(), 3),
            (WatchEventType::Deleted, "web".into(), 4),
        ]
    );
    let audit = store
        .events(&EventQuery::for_key(&v1.key(), 0))
        .await
        .unwrap();
    let actions: Vec<(&str, &str)> = audit
        .iter()
        .map(|e| (e.action.as_str(), e.message.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("create", "created"),
            (
                "delete",
                "deletion requested; waiting for finalizers [shipway.dev/a, shipway.dev/b]"
            ),
            ("update", "finalizers changed"),
            ("finalize", "last finalizer removed; deleted"),
        ]
    );
}

async fn audit_log_records_every_write(store: Store) {
    let v1 = store
        .create(deployment("prod", "web", 1, &[]), "alice")
        .await
        .unwrap();
    store
        .create(configmap("prod", "c", "1"), "bob")
        .await
        .unwrap();
    let mut v2 = v1.clone();
    v2.body.insert("spec".into(), json!({"replicas": 2}));
    v2.metadata.labels.insert("x".into(), "y".into());
    store.update(v2, "carol").await.unwrap();
    store.delete(&v1.key(), "dave").await.unwrap();

    let all = store.events(&EventQuery::default()).await.unwrap();
    let rows: Vec<(i64, &str, &str, String, u64, &str)> = all
        .iter()
        .map(|e| {
            (
                e.id,
                e.actor.as_str(),
                e.action.as_str(),
                e.key.to_string(),
                e.resource_version,
                e.message.as_str(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (
                1,
                "alice",
                "create",
                "Deployment.apps/prod/web".into(),
                1,
                "created"
            ),
            (2, "bob", "create", "ConfigMap/prod/c".into(), 2, "created"),
            (
                3,
                "carol",
                "update",
                "Deployment.apps/prod/web".into(),
                3,
                "spec, labels changed"
            ),
            (
                4,
                "dave",
                "delete",
                "Deployment.apps/prod/web".into(),
                4,
                "deleted"
            ),
        ]
    );
    let t = &all[0].time;
    assert!(
        t.len() == 24 && t.ends_with('Z'),
        "RFC 3339 UTC with milliseconds: {t}"
    );

    let newest_two = store
        .events(&EventQuery {
            limit: 2,
            ..EventQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        newest_two.iter().map(|e| e.id).collect::<Vec<_>>(),
        [3, 4],
        "newest last"
    );
    let cms = EventQuery {
        kind: Some("ConfigMap".into()),
        ..EventQuery::default()
    };
    assert_eq!(store.events(&cms).await.unwrap().len(), 1);
    let json = serde_json::to_value(&all[0]).unwrap();
    assert_eq!(json["resourceVersion"], json!(1));
    assert_eq!(json["key"]["kind"], json!("Deployment"));
}

async fn list_resource_version_is_a_snapshot_to_watch_from(store: Store) {
    for i in 0..5 {
        store
            .create(configmap("prod", &format!("c{i}"), "x"), "alice")
            .await
            .unwrap();
    }
    let list = store.list(&ListQuery::kind("", "ConfigMap")).await.unwrap();
    assert_eq!((list.items.len(), list.resource_version), (5, 5));
    let mut watch = store.watch(ListQuery::kind("", "ConfigMap"), list.resource_version);
    assert_quiet(&mut watch).await;
    store
        .create(configmap("prod", "c5", "x"), "alice")
        .await
        .unwrap();
    let events = take(&mut watch, 1).await;
    assert_eq!(summary(&events), [(WatchEventType::Added, "c5".into(), 6)]);
}

async fn watch_filters_by_kind_namespace_and_selector(store: Store) {
    let selector = Selector::parse("tier=front").unwrap();
    let deployments = ListQuery::kind("apps", "Deployment");
    let mut by_kind = store.watch(deployments.clone(), 0);
    let mut by_ns = store.watch(ListQuery::default().in_namespace("dev"), 0);
    let mut by_label = store.watch(deployments.clone().with_selector(selector), 0);

    store
        .create(deployment("prod", "web", 1, &[("tier", "front")]), "a")
        .await
        .unwrap(); // 1
    store
        .create(deployment("dev", "api", 1, &[("tier", "back")]), "a")
        .await
        .unwrap(); // 2
    store.create(configmap("dev", "c", "x"), "a").await.unwrap(); // 3
    let web = store
        .get(&deployment_key("prod", "web"))
        .await
        .unwrap()
        .unwrap();
    let mut moved = web.clone();
    moved.metadata.labels.insert("tier".into(), "back".into());
    store.update(moved, "a").await.unwrap(); // 4: web stops matching tier=front
    let mut again = store
        .get(&deployment_key("prod", "web"))
        .await
        .unwrap()
        .unwrap();
    again.body.insert("spec".into(), json!({"replicas": 2}));
    store.update(again, "a").await.unwrap(); // 5: not matching before or after

    let rvs = |events: Vec<WatchEvent>| {
        events
            .iter()
            .map(WatchEvent::resource_version)
            .collect::<Vec<_>>()
    };
    assert_eq!(rvs(take(&mut by_kind, 4).await), [1, 2, 4, 5]);
    assert_eq!(rvs(take(&mut by_ns, 2).await), [2, 3]);
    let label_events = take(&mut by_label, 2).await;
    assert_eq!(rvs(label_events.clone()), [1, 4]);
    assert_eq!(
        label_events[1]
            .object
            .metadata
            .labels
            .get("tier")
            .map(String::as_str),
        Some("back"),
        "the event that ends the match shows the new labels"
    );
    assert_quiet(&mut by_label).await;
    assert_quiet(&mut by_kind).await;
}

/// 10,000 updates to 100 objects while a watcher drops its stream every 1,337 events (and on
/// idle timeouts) and resumes from the last resourceVersion it saw: it must see every
/// resourceVersion exactly once, in order.
async fn watch_sees_every_change_once_in_order_across_reconnects(store: Store) {
    const OBJECTS: usize = 100;
    const UPDATES: usize = 10_000;
    let done_at = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn({
        let store = store.clone();
        let done_at = done_at.clone();
        async move {
            for i in 0..OBJECTS {
                store
                    .create(configmap("load", &format!("cm-{i}"), "0"), "w")
                    .await
                    .unwrap();
            }
            for u in 0..UPDATES {
                let o = configmap("load", &format!("cm-{}", u % OBJECTS), &(u + 1).to_string());
                store.update(o, "w").await.unwrap();
            }
            done_at.store(
                store.current_resource_version().await.unwrap(),
                Ordering::SeqCst,
            );
        }
    });

    let mut seen: Vec<(u64, WatchEventType)> = Vec::new();
    let mut last = 0;
    let mut reconnects = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    'outer: loop {
        let mut stream = store.watch(ListQuery::default(), last);
        reconnects += 1;
        let mut this_connection = 0;
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "watch too slow: saw {}",
                seen.len()
            );
            let target = done_at.load(Ordering::SeqCst);
            if target != 0 && last >= target {
                break 'outer;
            }
            match tokio::time::timeout(Duration::from_millis(500), stream.next()).await {
                Ok(Some(Ok(event))) => {
                    last = event.resource_version();
                    seen.push((last, event.kind));
                    this_connection += 1;
                    if this_connection == 1_337 {
                        break;
                    }
                }
                Ok(other) => panic!("watch ended or failed: {other:?}"),
                // Idle: check whether the writer is done, then reconnect, to disconnect at odd
                // moments too.
                Err(_) => break,
            }
        }
    }
    writer.await.unwrap();
    let total = (OBJECTS + UPDATES) as u64;
    let rvs: Vec<u64> = seen.iter().map(|(rv, _)| *rv).collect();
    assert_eq!(rvs.len() as u64, total, "every change exactly once");
    assert_eq!(
        rvs,
        (1..=total).collect::<Vec<_>>(),
        "in order, none missing"
    );
    assert!(
        seen[..OBJECTS]
            .iter()
            .all(|(_, k)| *k == WatchEventType::Added)
    );
    assert!(
        seen[OBJECTS..]
            .iter()
            .all(|(_, k)| *k == WatchEventType::Modified)
    );
    assert!(
        reconnects >= 7,
        "the watcher reconnected {reconnects} times"
    );
}

async fn concurrent_writers_never_share_a_resource_version(store: Store) {
    const TASKS: usize = 8;
    const EACH: usize = 40;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut rvs = Vec::new();
            for i in 0..EACH {
                let (o, _) = store
                    .apply(configmap("c", &format!("t{t}-{i}"), "1"), "w")
                    .await
                    .unwrap();
                rvs.push(rv(&o));
                // Everyone also fights over one shared object, unconditionally.
                let shared = configmap("c", "shared", &format!("{t}-{i}"));
                let (o, _) = store.apply(shared, "w").await.unwrap();
                rvs.push(rv(&o));
            }
            rvs
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let unique: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(
        unique.len(),
        all.len(),
        "no resourceVersion handed out twice"
    );
    let n = store.current_resource_version().await.unwrap();
    // Every write is one rv; an apply of the shared object that found it unchanged wrote nothing.
    assert!(unique.iter().all(|rv| (1..=n).contains(rv)));
    let mut watch = store.watch(ListQuery::default(), 0);
    let rvs: Vec<u64> = take(&mut watch, n as usize)
        .await
        .iter()
        .map(WatchEvent::resource_version)
        .collect();
    assert_eq!(rvs, (1..=n).collect::<Vec<_>>());
    let list = store.list(&ListQuery::default()).await.unwrap();
    assert_eq!(list.items.len(), TASKS * EACH + 1);
}

/// Writers that overlap share a commit (group commit), each in its own savepoint: a stale
/// update or an invalid object fails alone, taking back its resourceVersion, change and audit
/// rows, and the writes beside it commit.
async fn a_failing_write_among_concurrent_writers_fails_alone(store: Store) {
    const TASKS: usize = 48;
    let target = store
        .create(configmap("c", "target", "0"), "w")
        .await
        .unwrap();
    let stale = rv(&target);
    let current = store
        .update(configmap("c", "target", "1"), "w")
        .await
        .unwrap();
    let start = Arc::new(tokio::sync::Barrier::new(TASKS));
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (store, start) = (store.clone(), start.clone());
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            match t % 3 {
                0 => {
                    let mut o = configmap("c", "target", &format!("stale-{t}"));
                    o.metadata.resource_version = Some(stale.to_string());
                    store.update(o, "w").await
                }
                1 => store.create(configmap("c", "Not_A_Name", "x"), "w").await,
                _ => {
                    store
                        .create(configmap("c", &format!("ok-{t}"), "1"), "w")
                        .await
                }
            }
        }));
    }
    let mut committed = Vec::new();
    for (t, task) in tasks.into_iter().enumerate() {
        match (t % 3, task.await.unwrap()) {
            (0, Err(StoreError::Conflict { .. })) | (1, Err(StoreError::Invalid { .. })) => {}
            (2, Ok(o)) => committed.push(rv(&o)),
            (kind, other) => panic!("writer {t} (kind {kind}): {other:?}"),
        }
    }
    let got = store.get(&current.key()).await.unwrap().unwrap();
    assert_eq!(got.body["data"]["value"], "1", "no stale update landed");
    assert_eq!(rv(&got), rv(&current));
    // The failed writes took no resourceVersion: the committed ones follow on without a gap.
    let first = rv(&current) + 1;
    let n = rv(&current) + committed.len() as u64;
    committed.sort();
    assert_eq!(committed, (first..=n).collect::<Vec<_>>());
    assert_eq!(store.current_resource_version().await.unwrap(), n);
    let rvs: Vec<u64> = take(&mut store.watch(ListQuery::default(), 0), n as usize)
        .await
        .iter()
        .map(WatchEvent::resource_version)
        .collect();
    assert_eq!(rvs, (1..=n).collect::<Vec<_>>());
    assert_quiet(&mut store.watch(ListQuery::default(), n)).await;
    let audit = store.events(&EventQuery::default()).await.unwrap();
    assert_eq!(
        audit.len() as u64,
        n,
        "one audit row per committed write only"
    );
}

async fn metrics_count_operations(store: Store) {
    store.create(configmap("p", "c", "1"), "a").await.unwrap();
    store
        .create(configmap("p", "c", "1"), "a")
        .await
        .unwrap_err();
    store
        .get(&Key::new("", "ConfigMap", "p", "c"))
        .await
        .unwrap();
    let text = store.metrics_text();
    let backend = store.backend_name();
    for line in [
        format!(
            "shipway_store_operations_total{{backend=\"{backend}\",op=\"create\",result=\"ok\"}} 1"
        ),
        format!(
            "shipway_store_operations_total{{backend=\"{backend}\",op=\"create\",result=\"already_exists\"}} 1"
        ),
        format!(
            "shipway_store_operations_total{{backend=\"{backend}\",op=\"get\",result=\"ok\"}} 1"
        ),
        format!(
            "shipway_store_operation_duration_seconds_count{{backend=\"{backend}\",op=\"create\"}} 2"
        ),
        "# TYPE shipway_store_operation_duration_seconds histogram".to_string(),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}

fn log_line(job: &str, step: Option<u32>, text: &str) -> NewLogLine {
    NewLogLine {
        job: job.into(),
        step,
        stream: "stdout".into(),
        text: text.into(),
    }
}

fn run_key(name: &str) -> Key {
    Key::new("shipway.dev", "WorkflowRun", "default", name)
}

async fn run_logs_are_kept_in_order_per_owner_and_followed_by_seq(store: Store) {
    let (a, b) = (run_key("a"), run_key("b"));
    let mut updates = store.log_updates();
    let rv_before = store.current_resource_version().await.unwrap();
    let first = store
        .append_logs(
            &a,
            vec![
                log_line("build", None, "queued"),
                log_line("build", Some(1), "hello"),
            ],
        )
        .await
        .unwrap();
    store
        .append_logs(&b, vec![log_line("test", Some(1), "other run")])
        .await
        .unwrap();
    let last = store
        .append_logs(&a, vec![log_line("build", Some(2), "€ unicode ✓")])
        .await
        .unwrap();
    assert!(last > first, "seq grows: {first} then {last}");
    assert!(updates.has_changed().unwrap(), "followers are woken");
    assert_eq!(*updates.borrow_and_update(), last);
    // Lines are not objects: no resourceVersion was taken.
    assert_eq!(store.current_resource_version().await.unwrap(), rv_before);

    let all = store.logs(&a, 0, 0).await.unwrap();
    let texts: Vec<(&str, Option<u32>, &str)> = all
        .iter()
        .map(|l| (l.job.as_str(), l.step, l.text.as_str()))
        .collect();
    assert_eq!(
        texts,
        [
            ("build", None, "queued"),
            ("build", Some(1), "hello"),
            ("build", Some(2), "€ unicode ✓")
        ]
    );
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(all[2].seq, last);
    assert!(all[0].time.ends_with('Z'), "{}", all[0].time);
    // A follower reads from the last seq it saw; a limit pages.
    let after = store.logs(&a, all[0].seq, 1).await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].text, "hello");
    assert!(store.logs(&a, last, 0).await.unwrap().is_empty());
    // Deleting one run's log leaves the other's.
    assert_eq!(store.delete_logs(&a).await.unwrap(), 3);
    assert!(store.logs(&a, 0, 0).await.unwrap().is_empty());
    assert_eq!(store.logs(&b, 0, 0).await.unwrap().len(), 1);
}

async fn run_logs_survive_a_reopen(db: &TestDb) {
    let key = run_key("kept");
    {
        let store = db.open().await;
        store
            .append_logs(&key, vec![log_line("build", Some(1), "written")])
            .await
            .unwrap();
    }
    let store = db.open().await;
    let lines = store.logs(&key, 0, 0).await.unwrap();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].text, "written");
}

async fn watch_from_before_compaction_is_expired(db: &TestDb) {
    let options = StoreOptions {
        retained_changes: 1_000,
        ..StoreOptions::default()
    };
    let store = db.open_with(options).await;
    for i in 0..30 {
        store
            .create(configmap("p", &format!("c{i}"), "1"), "a")
            .await
            .unwrap();
    }
    // Complete history: since=0 replays it.
    assert_eq!(
        take(&mut store.watch(ListQuery::default(), 0), 30)
            .await
            .len(),
        30
    );
    drop(store);

    let store = db
        .open_with(StoreOptions {
            retained_changes: 10,
            ..StoreOptions::default()
        })
        .await;
    assert_eq!(store.compact().await.unwrap(), 20);
    let mut expired = store.watch(ListQuery::default(), 0);
    let first = tokio::time::timeout(PATIENCE, expired.next())
        .await
        .unwrap();
    let Some(Err(err)) = first else {
        panic!("expected Expired, got {first:?}")
    };
    assert_eq!(
        err,
        StoreError::Expired {
            requested: 0,
            oldest: 21
        }
    );
    assert!(err.to_string().contains("list again"), "{err}");
    assert!(
        tokio::time::timeout(PATIENCE, expired.next())
            .await
            .unwrap()
            .is_none(),
        "ends"
    );

    // From the last compacted rv on, nothing is missing.
    let resumed = take(&mut store.watch(ListQuery::default(), 20), 10).await;
    assert_eq!(resumed.first().map(WatchEvent::resource_version), Some(21));
    let mut too_old = store.watch(ListQuery::default(), 19);
    assert!(matches!(
        too_old.next().await,
        Some(Err(StoreError::Expired {
            requested: 19,
            oldest: 21
        }))
    ));
}

async fn writes_compact_the_change_log_automatically(db: &TestDb) {
    let store = db
        .open_with(StoreOptions {
            retained_changes: 20,
            ..StoreOptions::default()
        })
        .await;
    for i in 0..100 {
        store
            .create(configmap("p", &format!("c{i}"), "1"), "a")
            .await
            .unwrap();
    }
    let mut watch = store.watch(ListQuery::default(), 0);
    let first = tokio::time::timeout(PATIENCE, watch.next()).await.unwrap();
    let Some(Err(StoreError::Expired { oldest, .. })) = first else {
        panic!("{first:?}")
    };
    // Compaction runs every retained/10 writes, so at most that many extra rows remain.
    assert!((79..=81).contains(&oldest), "oldest retained {oldest}");
    assert_eq!(
        store.list(&ListQuery::default()).await.unwrap().items.len(),
        100,
        "objects stay"
    );
}

/// Group commit answers a writer only once its batch committed: whatever a writer was told
/// succeeded is there after reopening, at the resourceVersion it was told.
async fn every_acknowledged_concurrent_write_survives_reopen(db: &TestDb) {
    const TASKS: usize = 64;
    const EACH: usize = 8;
    let store = db.open().await;
    let start = Arc::new(tokio::sync::Barrier::new(TASKS));
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (store, start) = (store.clone(), start.clone());
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let mut acked = Vec::new();
            for i in 0..EACH {
                let name = format!("t{t}-{i}");
                let o = store.create(configmap("c", &name, "1"), "w").await.unwrap();
                acked.push((name, rv(&o)));
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for task in tasks {
        acked.extend(task.await.unwrap());
    }
    drop(store);

    let store = db.open().await;
    let list = store.list(&ListQuery::default()).await.unwrap();
    let stored: std::collections::BTreeMap<String, u64> = list
        .items
        .iter()
        .map(|o| (o.metadata.name.clone(), rv(o)))
        .collect();
    for (name, v) in &acked {
        assert_eq!(stored.get(name), Some(v), "{name} acknowledged at {v}");
    }
    let n = (TASKS * EACH) as u64;
    assert_eq!(store.current_resource_version().await.unwrap(), n);
    let unique: BTreeSet<u64> = acked.iter().map(|(_, v)| *v).collect();
    assert_eq!(
        unique,
        (1..=n).collect::<BTreeSet<_>>(),
        "one rv each, no gaps"
    );
    let rvs: Vec<u64> = take(&mut store.watch(ListQuery::default(), 0), n as usize)
        .await
        .iter()
        .map(WatchEvent::resource_version)
        .collect();
    assert_eq!(rvs, (1..=n).collect::<Vec<_>>());
}

async fn reopen_keeps_everything(db: &TestDb) {
    let store = db.open().await;
    let mut o = deployment("prod", "web", 1, &[]);
    o.metadata.finalizers = vec!["shipway.dev/x".into()];
    let v1 = store.create(o, "alice").await.unwrap();
    store
        .create(configmap("prod", "c", "1"), "alice")
        .await
        .unwrap();
    store.delete(&v1.key(), "alice").await.unwrap();
    let before = store.list(&ListQuery::default()).await.unwrap();
    drop(store);

    let store = db.open().await;
    let after = store.list(&ListQuery::default()).await.unwrap();
    assert_eq!(after, before);
    assert_eq!(store.events(&EventQuery::default()).await.unwrap().len(), 3);
    let history = take(&mut store.watch(ListQuery::default(), 0), 3).await;
    assert_eq!(history.last().map(WatchEvent::resource_version), Some(3));
    // The counter continues.
    let v = store
        .create(configmap("prod", "d", "1"), "alice")
        .await
        .unwrap();
    assert_eq!(rv(&v), 4);
}

async fn watch_sees_writes_of_another_store_on_the_same_database(db: &TestDb) {
    // Two stores stand in for two processes: the watcher's store gets no in-process signal for
    // the other's writes, only its poll.
    let options = StoreOptions {
        poll_interval: Duration::from_millis(200),
        ..StoreOptions::default()
    };
    let watcher = db.open_with(options.clone()).await;
    let writer = db.open_with(options).await;
    let mut watch = watcher.watch(ListQuery::default(), 0);
    for i in 0..5 {
        writer
            .create(configmap("p", &format!("c{i}"), "1"), "other")
            .await
            .unwrap();
    }
    let rvs: Vec<u64> = take(&mut watch, 5)
        .await
        .iter()
        .map(WatchEvent::resource_version)
        .collect();
    assert_eq!(rvs, [1, 2, 3, 4, 5]);
    // Interleaved writers through both stores still share one counter.
    let a = watcher.create(configmap("p", "x", "1"), "a").await.unwrap();
    let b = writer.create(configmap("p", "y", "1"), "b").await.unwrap();
    assert_eq!((rv(&a), rv(&b)), (6, 7));
}

const KILL9_ENV: &str = "SHIPWAY_STORE_KILL9_DB";

/// Not a test of its own: the child process of `sqlite_acknowledged_writes_survive_kill_9`
/// (started with `--ignored --exact`), which writes until killed, printing each acknowledged
/// resourceVersion.
#[tokio::test]
#[ignore = "the child process of sqlite_acknowledged_writes_survive_kill_9"]
async fn kill9_child_writer() {
    let path =
        std::env::var(KILL9_ENV).expect("started by sqlite_acknowledged_writes_survive_kill_9");
    let store = Store::open_sqlite(std::path::Path::new(&path))
        .await
        .unwrap();
    for i in 0.. {
        let o = store
            .create(configmap("p", &format!("c{i}"), "1"), "child")
            .await
            .unwrap();
        println!("ACK {}", rv(&o));
    }
}

/// SQLite only: PostgreSQL's durability is the server's. Power loss cannot be tested here; that
/// rests on `synchronous=FULL` (checked in `sqlite.rs`).
#[test]
fn sqlite_acknowledged_writes_survive_kill_9() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shipway.db");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "kill9_child_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(KILL9_ENV, &path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut acked = 0;
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        if let Some(rv) = line.unwrap().strip_prefix("ACK ") {
            acked = rv.parse::<u64>().unwrap();
            if acked == 200 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(acked, 200, "the child acknowledged writes");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = Store::open_sqlite(&path).await.unwrap();
        let current = store.current_resource_version().await.unwrap();
        assert!(current >= acked, "acknowledged {acked}, found {current}");
        let list = store.list(&ListQuery::default()).await.unwrap();
        assert_eq!(
            list.items.len() as u64,
            current,
            "every committed create is there"
        );
        let history = take(&mut store.watch(ListQuery::default(), 0), current as usize).await;
        assert_eq!(history.len() as u64, current);
    });
}

#[tokio::test]
async fn unreachable_postgres_is_a_retryable_backend_error() {
    let err = Store::open("postgres://shipway@127.0.0.1:1/shipway")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Backend {
                retryable: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("cannot connect to PostgreSQL"),
        "{err}"
    );
}

/// One server per PostgreSQL database: a second exclusive open is refused with a message naming
/// the database and what to do, shared opens are not, and the claim ends with the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_exclusive_open_of_a_postgres_database_is_refused_until_the_first_closes() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let exclusive = StoreOptions {
        exclusive: true,
        ..StoreOptions::default()
    };
    let first = db.open_with(exclusive.clone()).await;
    let shared = db.open().await;
    let Err(err) = Store::open_with(&db.url, exclusive.clone()).await else {
        panic!("a second exclusive open was allowed");
    };
    assert!(
        matches!(
            err,
            StoreError::Backend {
                retryable: false,
                ..
            }
        ),
        "{err:?}"
    );
    let name = db
        .url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap();
    let message = err.to_string();
    assert!(
        message.contains("another Shipway server is already using PostgreSQL database")
            && message.contains(&format!("{name:?}"))
            && message.contains("--database"),
        "{message}"
    );
    // The refused open left the first one working.
    first
        .create(configmap("p", "still-mine", "1"), "test")
        .await
        .unwrap();
    drop(first);
    // The session holding the lock closes on its own thread, and the server notices the closed
    // connection in its own time: wait for the evidence.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let second = loop {
        match Store::open_with(&db.url, exclusive.clone()).await {
            Ok(store) => break store,
            Err(e) if std::time::Instant::now() < deadline => {
                assert!(e.to_string().contains("already using"), "{e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the lock outlived the first store: {e}"),
        }
    };
    assert!(
        second
            .get(&Key::new("", "ConfigMap", "p", "still-mine"))
            .await
            .unwrap()
            .is_some()
    );
    drop((second, shared));
}

/// On PostgreSQL a commit by another process wakes watchers at once (LISTEN/NOTIFY), not at the
/// next poll: with the poll an hour away, the event still arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_watchers_wake_on_other_processes_commits() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let options = StoreOptions {
        poll_interval: Duration::from_secs(3600),
        ..StoreOptions::default()
    };
    let watcher = db.open_with(options.clone()).await;
    let writer = db.open_with(options).await;
    let mut watch = watcher.watch(ListQuery::default(), 0);
    // The watch has read the (empty) history and waits.
    assert_quiet(&mut watch).await;
    for i in 0..3 {
        writer
            .create(configmap("p", &format!("n{i}"), "1"), "other")
            .await
            .unwrap();
        let event = take(&mut watch, 1).await;
        assert_eq!(
            summary(&event),
            [(WatchEventType::Added, format!("n{i}"), i + 1)]
        );
    }
    // A rolled-back (dry-run) write notifies nobody and changes nothing.
    writer
        .apply_dry_run(configmap("p", "dry", "1"))
        .await
        .unwrap();
    assert_quiet(&mut watch).await;
}

/// Only the newest change row of a Secret carries its values: a watch from an old
/// resourceVersion still sees every change, but not values that were replaced or deleted.
async fn secret_values_are_not_replayed_from_the_change_log(store: Store) {
    let secret = |value: &str| {
        obj(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "namespace": "default"},
            "type": "Opaque", "data": {"password": value}
        }))
    };
    let key = Key::new("", "Secret", "default", "db");
    store.apply(secret("b2xkLXZhbHVl"), "a").await.unwrap();
    store.apply(secret("bmV3LXZhbHVl"), "a").await.unwrap();
    let values = |events: &[WatchEvent]| {
        events
            .iter()
            .map(|e| (e.kind, e.object.body.get("data").cloned()))
            .collect::<Vec<_>>()
    };
    let replayed = take(&mut store.watch(ListQuery::kind("", "Secret"), 0), 2).await;
    assert_eq!(
        values(&replayed),
        [
            (WatchEventType::Added, None),
            (
                WatchEventType::Modified,
                Some(json!({"password": "bmV3LXZhbHVl"}))
            ),
        ],
        "the replaced value is gone from history; the current one is served"
    );
    assert_eq!(replayed[0].object.body.get("type"), Some(&json!("Opaque")));

    store.delete(&key, "a").await.unwrap();
    let replayed = take(&mut store.watch(ListQuery::kind("", "Secret"), 0), 3).await;
    assert_eq!(
        values(&replayed),
        [
            (WatchEventType::Added, None),
            (WatchEventType::Modified, None),
            (WatchEventType::Deleted, None),
        ],
        "no value of a deleted Secret is replayed"
    );
    // Other kinds keep their history as it was.
    store
        .apply(configmap("default", "c", "one"), "a")
        .await
        .unwrap();
    store
        .apply(configmap("default", "c", "two"), "a")
        .await
        .unwrap();
    let cms = take(&mut store.watch(ListQuery::kind("", "ConfigMap"), 0), 2).await;
    assert_ne!(
        cms[0].object.body.get("data"),
        cms[1].object.body.get("data")
    );
    assert!(cms[0].object.body.get("data").is_some());
}

/// A controller's word about an object (kubectl's events) lands in the audit trail without
/// writing the object or taking a resourceVersion.
async fn events_that_are_not_writes_take_no_resource_version(store: Store) {
    store
        .create(configmap("default", "c", "1"), "a")
        .await
        .unwrap();
    let before = store.current_resource_version().await.unwrap();
    let key = Key::new("", "ConfigMap", "default", "c");
    store
        .record_event(
            &key,
            "controller:proxy",
            "AddressInUse",
            "127.0.0.1:80 is held by Service default/web",
        )
        .await
        .unwrap();
    assert_eq!(store.current_resource_version().await.unwrap(), before);
    let events = store
        .events(&EventQuery {
            name: Some("c".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let last = events.last().unwrap();
    assert_eq!(
        (
            last.actor.as_str(),
            last.action.as_str(),
            last.message.as_str(),
            last.resource_version
        ),
        (
            "controller:proxy",
            "AddressInUse",
            "127.0.0.1:80 is held by Service default/web",
            before
        )
    );
}

/// Every page of `query`, `limit` items at a time, with `between` run after each page but the last.
async fn all_pages(
    store: &Store,
    query: ListQuery,
    limit: usize,
    mut between: impl AsyncFnMut(usize),
) -> Vec<ListPage> {
    let mut pages = Vec::new();
    let mut query = ListQuery { limit, ..query };
    loop {
        let page = store.list_page(&query).await.unwrap();
        let next = page.continue_token.clone();
        pages.push(page);
        match next {
            Some(token) => {
                between(pages.len()).await;
                query.continue_token = Some(token);
            }
            None => return pages,
        }
    }
}

/// 1,200 ConfigMaps in three namespaces, and a Secret that a ConfigMap query must not page over.
async fn many_config_maps(store: &Store) -> Vec<String> {
    let mut names = Vec::new();
    for i in 0..1_200 {
        let ns = ["a", "b", "c"][i % 3];
        let name = format!("cm-{i:04}");
        store
            .create(configmap(ns, &name, "1"), "alice")
            .await
            .unwrap();
        names.push(format!("{ns}/{name}"));
    }
    store
        .create(
            obj(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "a"}})),
            "alice",
        )
        .await
        .unwrap();
    names.sort();
    names
}

fn ns_names(objects: &[shipway_model::Object]) -> Vec<String> {
    objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o.metadata.namespace.as_deref().unwrap_or_default(),
                o.metadata.name
            )
        })
        .collect()
}

async fn pages_of_a_list_add_up_to_the_unpaged_list(store: Store) {
    many_config_maps(&store).await;
    let query = ListQuery::kind("", "ConfigMap");
    let whole = store.list(&query).await.unwrap();
    assert_eq!(whole.items.len(), 1_200);
    let pages = all_pages(&store, query, 500, async |_| {}).await;
    let shape: Vec<_> = pages
        .iter()
        .map(|p| (p.list.items.len(), p.remaining_item_count))
        .collect();
    assert_eq!(shape, [(500, Some(700)), (500, Some(200)), (200, None)]);
    assert!(
        pages
            .iter()
            .all(|p| p.list.resource_version == whole.resource_version),
        "every page carries the first page's resourceVersion"
    );
    let paged: Vec<_> = pages.into_iter().flat_map(|p| p.list.items).collect();
    assert_eq!(paged, whole.items);
    // A limit at or above the count is one page with no token.
    let one = store
        .list_page(&ListQuery {
            limit: 1_200,
            ..ListQuery::kind("", "ConfigMap")
        })
        .await
        .unwrap();
    assert_eq!(
        (
            one.list.items.len(),
            one.continue_token,
            one.remaining_item_count
        ),
        (1_200, None, None)
    );
}

async fn a_write_between_pages_neither_duplicates_nor_loses_an_object(store: Store) {
    let before = many_config_maps(&store).await;
    let query = ListQuery::kind("", "ConfigMap");
    let pages = all_pages(&store, query, 500, async |page| {
        // Behind and ahead of the cursor (after page 1 it is at b/cm-0499 or so): updates, and
        // creations at both ends of the key order.
        for (ns, name) in [("a", "cm-0000"), ("c", "cm-1199")] {
            let (_, outcome) = store
                .apply(configmap(ns, name, &format!("page {page}")), "bob")
                .await
                .unwrap();
            assert_eq!(outcome, ApplyOutcome::Configured);
        }
        for ns in ["a", "c"] {
            store
                .create(configmap(ns, &format!("new-{page}"), "1"), "bob")
                .await
                .unwrap();
        }
    })
    .await;
    let got = ns_names(
        &pages
            .into_iter()
            .flat_map(|p| p.list.items)
            .collect::<Vec<_>>(),
    );
    let unique: BTreeSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), got.len(), "an object came twice: {got:?}");
    let missing: Vec<_> = before.iter().filter(|n| !unique.contains(n)).collect();
    assert!(missing.is_empty(), "lost {missing:?}");
}

async fn a_garbled_continue_token_is_refused_in_kubernetes_words(store: Store) {
    store
        .create(configmap("a", "one", "1"), "alice")
        .await
        .unwrap();
    for (token, why) in [
        ("!!!", "Invalid symbol 33, offset 0."),
        ("e30", "unrecognized encoded version (none)"),
        ("eyJ2Ijoic2hpcHdheS5kZXYvdjEifQ", "missing field `rv`"),
        (
            "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MX0",
            "unrecognized encoded version meta.k8s.io/v1",
        ),
    ] {
        let err = store
            .list_page(&ListQuery {
                continue_token: Some(token.into()),
                ..ListQuery::kind("", "ConfigMap")
            })
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("invalid continue token: continue key is not valid: {why}"),
            "{token}"
        );
    }
}

async fn a_continue_token_older_than_the_history_has_expired(db: &TestDb) {
    let store = db
        .open_with(StoreOptions {
            retained_changes: 10,
            ..StoreOptions::default()
        })
        .await;
    for i in 0..5 {
        store
            .create(configmap("p", &format!("c{i}"), "1"), "a")
            .await
            .unwrap();
    }
    let first = store
        .list_page(&ListQuery {
            limit: 2,
            ..ListQuery::kind("", "ConfigMap")
        })
        .await
        .unwrap();
    let next = ListQuery {
        limit: 2,
        continue_token: first.continue_token.clone(),
        ..ListQuery::kind("", "ConfigMap")
    };
    // Still within the history: the token works.
    assert_eq!(
        ns_names(&store.list(&next).await.unwrap().items),
        ["p/c2", "p/c3"]
    );
    for i in 0..20 {
        store
            .create(configmap("q", &format!("c{i}"), "1"), "a")
            .await
            .unwrap();
    }
    store.compact().await.unwrap();
    let err = store.list(&next).await.unwrap_err();
    assert_eq!(err, StoreError::ContinueExpired);
    assert!(
        err.to_string()
            .starts_with("The provided continue parameter is too old"),
        "{err}"
    );
}

fn sealed_options(key: &SecretKey) -> StoreOptions {
    StoreOptions {
        sealer: Some(Sealer::new(key)),
        ..StoreOptions::default()
    }
}

fn b64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Asserts that neither `plain` nor its base64 appears anywhere the database keeps data.
async fn assert_not_at_rest(db: &TestDb, plain: &str) {
    let dump = db.raw_dump().await;
    assert!(!dump.is_empty());
    assert!(!dump.contains(plain), "{plain:?} found at rest");
    assert!(
        !dump.contains(&b64(plain)),
        "base64 of {plain:?} found at rest"
    );
}

async fn secret_values_are_sealed_at_rest_and_open_with_the_key_only(db: &TestDb) {
    let key = SecretKey::generate();
    let store = db.open_with(sealed_options(&key)).await;
    let secret = |data: &str, string_data: &str| {
        obj(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "namespace": "default", "labels": {"app": "db"}},
            "type": "Opaque", "data": {"password": b64(data)}, "stringData": {"user": string_data}
        }))
    };
    let mut watch = store.watch(ListQuery::kind("", "Secret"), 0);
    store
        .create(secret("first-pw-3f9a", "first-user-77c1"), "alice")
        .await
        .unwrap();
    let (updated, outcome) = store
        .apply(secret("second-pw-b2e4", "second-user-5d0e"), "alice")
        .await
        .unwrap();
    assert_eq!(outcome, ApplyOutcome::Configured);
    // Every reader gets the values back: get, list, watch.
    let skey = Key::new("", "Secret", "default", "db");
    let got = store.get(&skey).await.unwrap().unwrap();
    assert_eq!(got, updated);
    assert_eq!(got.body["data"]["password"], json!(b64("second-pw-b2e4")));
    assert_eq!(got.body["stringData"]["user"], json!("second-user-5d0e"));
    assert!(!got.body.contains_key("shipway.dev/sealed"));
    let listed = store.list(&ListQuery::kind("", "Secret")).await.unwrap();
    assert_eq!(listed.items, vec![updated.clone()]);
    let events = take(&mut watch, 2).await;
    assert_eq!(events[1].object, updated);
    // Applying the same values again is unchanged: sealing with a new nonce is no change.
    let (_, again) = store
        .apply(secret("second-pw-b2e4", "second-user-5d0e"), "alice")
        .await
        .unwrap();
    assert_eq!(again, ApplyOutcome::Unchanged);
    for plain in [
        "first-pw-3f9a",
        "first-user-77c1",
        "second-pw-b2e4",
        "second-user-5d0e",
    ] {
        assert_not_at_rest(db, plain).await;
    }
    // The store's own field cannot be written by a client.
    let mut planted = secret("x", "y");
    planted.metadata.name = "planted".into();
    planted
        .body
        .insert("shipway.dev/sealed".into(), json!("sw1:AAAA"));
    let err = store.create(planted, "mallory").await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
    assert!(err.to_string().contains("reserved"), "{err}");

    drop((watch, store));

    // Without the key, or with another, the Secret does not open, and says why.
    let keyless = db.open().await;
    let err = keyless.get(&skey).await.unwrap_err();
    assert!(err.to_string().contains("without the secret key"), "{err}");
    drop(keyless);
    let other = db.open_with(sealed_options(&SecretKey::generate())).await;
    let err = other.get(&skey).await.unwrap_err();
    assert!(err.to_string().contains("another key"), "{err}");
    assert!(err.to_string().contains("default/db"), "{err}");
    drop(other);
    let again = db.open_with(sealed_options(&key)).await;
    assert_eq!(again.get(&skey).await.unwrap().unwrap(), updated);
    // A deleted Secret's replayed history carries no value, sealed or not.
    again.delete(&skey, "alice").await.unwrap();
    let replayed = take(&mut again.watch(ListQuery::kind("", "Secret"), 0), 3).await;
    assert!(replayed.iter().all(|e| !e.object.body.contains_key("data")));
}

async fn secrets_written_without_a_key_are_sealed_when_the_key_arrives(db: &TestDb) {
    let created = {
        let store = db.open().await;
        store
            .create(
                obj(json!({
                    "apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": "old", "namespace": "default"},
                    "data": {"token": b64("legacy-token-91ab")}
                })),
                "alice",
            )
            .await
            .unwrap()
    };
    assert!(db.raw_dump().await.contains(&b64("legacy-token-91ab")));
    let store = db.open_with(sealed_options(&SecretKey::generate())).await;
    let key = Key::new("", "Secret", "default", "old");
    assert_eq!(store.get(&key).await.unwrap().unwrap(), created);
    // SQLite keeps freed pages' old bytes until they are reused; only the live rows are checked
    // for it, on both backends, through a fresh open's reads of the rows.
    drop(store);
    if db.url.starts_with("postgres") {
        assert_not_at_rest(db, "legacy-token-91ab").await;
    } else {
        let path = db.url.strip_prefix("sqlite:").unwrap();
        let conn = rusqlite::Connection::open(path).unwrap();
        let rows: Vec<String> = conn
            .prepare("SELECT data FROM objects UNION ALL SELECT object FROM changes")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(rows.iter().any(|r| r.contains("sw1:")));
        assert!(!rows.iter().any(|r| r.contains(&b64("legacy-token-91ab"))));
    }
}

async fn pipeline_secrets_and_variables_resolve_by_scope_and_seal_at_rest(db: &TestDb) {
    let key = SecretKey::generate();
    let store = db.open_with(sealed_options(&key)).await;
    let global = Scope::default();
    let repo = Scope::new(Some("shop"), None);
    let env = Scope::new(None, Some("prod"));
    let both = Scope::new(Some("shop"), Some("prod"));
    let secret = SettingKind::Secret;
    for (scope, value) in [
        (&global, "global-pw-0a1b"),
        (&repo, "repo-pw-2c3d"),
        (&env, "env-pw-4e5f"),
        (&both, "both-pw-6a7b"),
    ] {
        store
            .set_setting(secret, scope, "db_password", value, "alice")
            .await
            .unwrap();
    }
    store
        .set_setting(secret, &global, "only_global", "only-global-8c9d", "alice")
        .await
        .unwrap();
    store
        .set_setting(SettingKind::Variable, &repo, "region", "eu-west", "bob")
        .await
        .unwrap();

    let resolved = |repo: Option<&'static str>, env: Option<&'static str>| {
        let store = store.clone();
        async move { store.settings_for(secret, repo, env).await.unwrap() }
    };
    let r = resolved(None, None).await;
    assert_eq!(r["DB_PASSWORD"], "global-pw-0a1b");
    assert_eq!(r["ONLY_GLOBAL"], "only-global-8c9d");
    assert_eq!(
        resolved(Some("shop"), None).await["DB_PASSWORD"],
        "repo-pw-2c3d"
    );
    assert_eq!(
        resolved(Some("other"), None).await["DB_PASSWORD"],
        "global-pw-0a1b"
    );
    assert_eq!(
        resolved(Some("other"), Some("prod")).await["DB_PASSWORD"],
        "env-pw-4e5f"
    );
    let most = resolved(Some("shop"), Some("prod")).await;
    assert_eq!(most["DB_PASSWORD"], "both-pw-6a7b");
    assert_eq!(most["ONLY_GLOBAL"], "only-global-8c9d");
    let vars = store
        .settings_for(SettingKind::Variable, Some("shop"), None)
        .await
        .unwrap();
    assert_eq!(vars["REGION"], "eu-west");
    assert!(
        store
            .settings_for(SettingKind::Variable, Some("other"), None)
            .await
            .unwrap()
            .is_empty()
    );

    // Lists name and date secrets, never their values; variables show theirs.
    let listed = store.list_settings(secret, None).await.unwrap();
    assert_eq!(listed.len(), 5);
    assert!(listed.iter().all(|s| s.value.is_none()));
    assert!(
        listed
            .iter()
            .all(|s| s.updated_by == "alice" && !s.updated_at.is_empty())
    );
    let in_repo = store.list_settings(secret, Some(&repo)).await.unwrap();
    assert_eq!(in_repo.len(), 1);
    assert_eq!(in_repo[0].name, "DB_PASSWORD");
    let vars = store
        .list_settings(SettingKind::Variable, None)
        .await
        .unwrap();
    assert_eq!(vars[0].value.as_deref(), Some("eu-west"));

    // Names are checked by GitHub's rules.
    let err = store
        .set_setting(secret, &global, "GITHUB_TOKEN", "x", "alice")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
    assert!(err.to_string().contains("reserved"), "{err}");

    // Every set and delete is audited with who, name and scope, never the value.
    store
        .delete_setting(secret, &both, "DB_Password", "alice")
        .await
        .unwrap();
    let err = store
        .delete_setting(secret, &both, "DB_PASSWORD", "alice")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(
        resolved(Some("shop"), Some("prod")).await["DB_PASSWORD"],
        "env-pw-4e5f"
    );
    let events = store
        .events(&EventQuery {
            kind: Some("PipelineSecret".into()),
            limit: 100,
            ..EventQuery::default()
        })
        .await
        .unwrap();
    let messages: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|e| (e.actor.as_str(), e.action.as_str(), e.message.as_str()))
        .collect();
    assert!(
        messages.contains(&(
            "alice",
            "set",
            "secret DB_PASSWORD created in repository shop, environment prod"
        )),
        "{messages:?}"
    );
    assert!(
        messages.contains(&(
            "alice",
            "delete",
            "secret DB_PASSWORD deleted from repository shop, environment prod"
        )),
        "{messages:?}"
    );
    for plain in [
        "global-pw-0a1b",
        "repo-pw-2c3d",
        "env-pw-4e5f",
        "both-pw-6a7b",
        "only-global-8c9d",
    ] {
        assert_not_at_rest(db, plain).await;
    }
    // A sealed value copied to another row does not open there.
    drop(store);
    let moved = "UPDATE pipeline_settings SET value = (SELECT value FROM pipeline_settings WHERE name = 'ONLY_GLOBAL') WHERE name = 'DB_PASSWORD' AND repo = 'shop'";
    if db.url.starts_with("postgres") {
        let url = db.url.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
            c.batch_execute(moved).unwrap();
        })
        .await
        .unwrap();
    } else {
        let path = db.url.strip_prefix("sqlite:").unwrap();
        rusqlite::Connection::open(path)
            .unwrap()
            .execute_batch(moved)
            .unwrap();
    }
    let store = db.open_with(sealed_options(&key)).await;
    let err = store
        .settings_for(secret, Some("shop"), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not authenticate"), "{err}");
    assert!(
        store
            .settings_for(secret, Some("other"), None)
            .await
            .is_ok()
    );
}
