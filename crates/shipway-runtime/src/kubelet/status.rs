//! The pod's status as kubelet reports it, written to the store when the worker's state changes,
//! and the events it records.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use shipway_store::StoreError;

use super::ACTOR;
use super::worker::{ContainerState, PodWorker};
use crate::workload::now_rfc3339;

impl PodWorker {
    pub(super) async fn write_status_loop(self: Arc<Self>) {
        loop {
            self.changed.notified().await;
            // Coalesce bursts of changes into one write.
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.write_status().await;
        }
    }

    pub(super) fn status(&self) -> Value {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let image_of = |i: usize, field: &str| self.spec()[field][i]["image"].clone();
        let statuses = |map: &BTreeMap<usize, (String, ContainerState)>,
                        field: &str|
         -> Vec<Value> {
            map.iter()
                .map(|(i, (name, st))| {
                    let mut v = json!({
                        "name": name, "ready": st.ready, "started": st.started && st.state.get("running").is_some(),
                        "restartCount": st.restart_count, "image": image_of(*i, field), "state": st.state,
                    });
                    if !st.last_state.is_null() {
                        v["lastState"] = st.last_state.clone();
                    }
                    v
                })
                .collect()
        };
        let containers = statuses(&s.containers, "containers");
        let all_ready = !s.containers.is_empty() && s.containers.values().all(|(_, c)| c.ready);
        let any_running = s.containers.values().any(|(_, c)| {
            c.state.get("running").is_some()
                || c.last_state.get("terminated").is_some() && c.state.get("waiting").is_some()
        });
        let phase = match s.finished {
            Some(p) => p,
            None if s.initialized && any_running => "Running",
            None => "Pending",
        };
        let cond =
            |t: &str, ok: bool| json!({"type": t, "status": if ok { "True" } else { "False" }});
        let mut status = json!({
            "phase": phase,
            "podIP": "127.0.0.1",
            "hostIP": "127.0.0.1",
            "startTime": s.start_time,
            "conditions": [cond("PodScheduled", true), cond("Initialized", s.initialized), cond("ContainersReady", all_ready), cond("Ready", all_ready)],
            "containerStatuses": containers,
            "portMappings": s.port_mappings,
        });
        if !s.init.is_empty() {
            status["initContainerStatuses"] = json!(statuses(&s.init, "initContainers"));
        }
        if let Some((reason, message)) = &s.pending_reason {
            status["reason"] = json!(reason);
            status["message"] = json!(message);
        }
        status
    }

    /// Writes the current status, keeping condition transition times when nothing changed.
    pub(super) async fn write_status(&self) {
        let mut status = self.status();
        for _ in 0..10 {
            let current = match self.store.get(&self.key).await {
                Ok(Some(o)) => o,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(pod = %self.key, error = %e, "cannot read pod for status");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            if current.metadata.uid != self.pod.metadata.uid {
                return;
            }
            let old_conditions = current
                .status()
                .and_then(|s| s.get("conditions"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let now = now_rfc3339();
            if let Some(conds) = status["conditions"].as_array_mut() {
                for c in conds {
                    let prev = old_conditions.iter().find(|o| o["type"] == c["type"]);
                    c["lastTransitionTime"] = match prev {
                        Some(p) if p["status"] == c["status"] => p["lastTransitionTime"].clone(),
                        _ => json!(now),
                    };
                }
            }
            if current.status() == Some(&status) {
                return;
            }
            let mut updated = current;
            updated.body.insert("status".into(), status.clone());
            match self.store.update_status(updated, ACTOR).await {
                Ok(_) | Err(StoreError::NotFound(_)) => return,
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => {
                    tracing::warn!(pod = %self.key, error = %e, "cannot write pod status");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

impl PodWorker {
    /// Records an event about the pod, as kubelet's event recorder does (`Started`, `Unhealthy`,
    /// `Killing`, ...). An event that cannot be written is logged: it must not stop the pod.
    pub(super) async fn record(&self, reason: &str, message: &str) {
        if let Err(e) = self
            .store
            .record_event(&self.key, ACTOR, reason, message)
            .await
        {
            tracing::warn!(pod = %self.key, reason, error = %e, "cannot record event");
        }
    }
}
