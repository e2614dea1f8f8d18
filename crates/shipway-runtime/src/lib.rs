//! Shipway's local runtime: Kubernetes workloads as supervised local processes, no cluster needed.
//!
//! Newcomers: start with [`controller::Controller`] (the level-triggered runner every controller
//! uses), then [`deployment`] → [`replicaset`] → [`kubelet`] (Deployments make ReplicaSets, which
//! make Pods, which the kubelet runs as processes). [`images`] is the local OCI image store.
//! [`job`] runs Jobs, [`service`] publishes each Service's endpoints, [`gc`] deletes orphans.
//! [`LocalRuntime::start`] wires them into `shipway up`.
//!
//! *Architecture Invariant*: controllers talk to each other only through objects in the store.

pub mod controller;
pub mod deployment;
pub mod gc;
pub mod images;
pub mod job;
pub mod kubelet;
pub mod process;
pub mod replicaset;
pub mod service;
pub mod workload;

use shipway_store::Store;
use tokio_util::sync::CancellationToken;

pub use kubelet::KubeletConfig;

/// The controllers of the local runtime, running until the token is cancelled.
pub struct LocalRuntime {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl LocalRuntime {
    pub fn start(store: Store, config: KubeletConfig, shutdown: CancellationToken) -> LocalRuntime {
        let tasks = vec![
            tokio::spawn(
                controller::Controller::new(
                    store.clone(),
                    deployment::DeploymentController {
                        store: store.clone(),
                    },
                )
                .run(shutdown.clone()),
            ),
            tokio::spawn(
                controller::Controller::new(
                    store.clone(),
                    replicaset::ReplicaSetController {
                        store: store.clone(),
                    },
                )
                .run(shutdown.clone()),
            ),
            tokio::spawn(
                controller::Controller::new(
                    store.clone(),
                    job::JobController {
                        store: store.clone(),
                        backoff_base: config.backoff_base,
                    },
                )
                .run(shutdown.clone()),
            ),
            tokio::spawn(
                controller::Controller::new(
                    store.clone(),
                    service::EndpointsController {
                        store: store.clone(),
                    },
                )
                .run(shutdown.clone()),
            ),
            tokio::spawn(gc::run(store.clone(), shutdown.clone())),
            tokio::spawn(
                controller::Controller::new(store.clone(), kubelet::Kubelet::new(store, config))
                    .run(shutdown),
            ),
        ];
        LocalRuntime { tasks }
    }

    /// Waits for every controller to stop.
    pub async fn join(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
