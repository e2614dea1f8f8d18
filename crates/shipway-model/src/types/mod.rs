//! Typed views of the kinds Shipway acts on (Pods, Deployments, ReplicaSets, Jobs, Services,
//! Endpoints, TrafficPolicies, Repositories, Argo CD's Applications and AppProjects, Argo Rollouts' analysis kinds and Rollouts, WorkflowRuns, Environments), so
//! controllers read `spec.replicas` as a field instead of a JSON
//! path. Every struct keeps the fields it does not name in `rest`, so an object read and written
//! back through a view loses nothing: a field Shipway does not know (or a newer Kubernetes adds)
//! round-trips unchanged.
//!
//! Start with [`Object::spec_as`] and [`Object::status_as`]; [`Object::set_status`] writes a typed
//! status back. Optional fields are `Option`s and lists are empty when absent, as Kubernetes
//! treats a missing list and an empty one alike.

pub mod analysis;
pub mod application;
pub mod apps;
pub mod batch;
pub mod condition;
pub mod core;
pub mod environment;
pub mod int_or_string;
pub mod pod;
pub mod repository;
pub mod rollout;
pub mod traffic;
pub mod workflow_run;

pub use analysis::{
    AnalysisRunSpec, AnalysisRunStatus, AnalysisTemplateSpec, Argument, FieldRef, Header,
    JobMetric, Measurement, MeasurementRetention, Metric, MetricProvider, MetricResult, MetricRule,
    PrometheusMetric, RunSummary, SecretKeyRef, ShipwayMetric, ValueFrom, WebMetric,
};
pub use application::{
    AppProjectSpec, ApplicationCondition, ApplicationDestination, ApplicationSource,
    ApplicationSpec, ApplicationStatus, DirectorySource, GroupKind, HealthStatus, IN_CLUSTER_NAME,
    IN_CLUSTER_SERVER, KustomizeReplica, KustomizeSource, Operation, OperationInitiator,
    OperationState, ResourceIgnoreDifferences, ResourceResult, ResourceStatus, RevisionHistory,
    SyncOperation, SyncOperationResource, SyncOperationResult, SyncPolicy, SyncPolicyAutomated,
    SyncStatus,
};
pub use apps::{
    DeploymentSpec, DeploymentStatus, DeploymentStrategy, LabelSelector, LabelSelectorRequirement,
    PodTemplateSpec, ReplicaSetSpec, ReplicaSetStatus, RollingUpdateDeployment, TemplateMeta,
};
pub use batch::{JobSpec, JobStatus};
pub use condition::Condition;
pub use core::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, ServicePort,
    ServiceSpec,
};
pub use environment::EnvironmentSpec;
pub use int_or_string::IntOrString;
pub use pod::{
    Container, ContainerPort, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, EnvVar, PORT_MAPPINGS, PodSpec, PodStatus, PortMapping,
    Probe, Volume, VolumeMount,
};
pub use repository::{RepositorySpec, RepositoryStatus};
pub use rollout::{RolloutSpec, RolloutStatus};
pub use traffic::TrafficPolicySpec;
pub use workflow_run::{WorkflowRunSpec, WorkflowRunStatus};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{Key, Object};

/// A part of an object that does not have the shape its typed view needs: `spec.replicas` is a
/// string, say. Admission refuses such objects, so controllers meet this only for objects stored
/// before a check existed.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {field}: {source}")]
pub struct ShapeError {
    pub key: Key,
    pub field: &'static str,
    #[source]
    pub source: serde_json::Error,
}

impl Object {
    /// `spec` as `T`; an absent spec is `T::default()`.
    pub fn spec_as<T: DeserializeOwned + Default>(&self) -> Result<T, ShapeError> {
        self.field_as("spec")
    }

    /// `status` as `T`; an absent status is `T::default()`.
    pub fn status_as<T: DeserializeOwned + Default>(&self) -> Result<T, ShapeError> {
        self.field_as("status")
    }

    /// The whole body (for kinds without a spec, such as Endpoints) as `T`.
    pub fn body_as<T: DeserializeOwned>(&self) -> Result<T, ShapeError> {
        serde_json::from_value(Value::Object(self.body.clone())).map_err(|source| ShapeError {
            key: self.key(),
            field: "body",
            source,
        })
    }

    fn field_as<T: DeserializeOwned + Default>(
        &self,
        field: &'static str,
    ) -> Result<T, ShapeError> {
        match self.body.get(field) {
            None | Some(Value::Null) => Ok(T::default()),
            Some(v) => T::deserialize(v).map_err(|source| ShapeError {
                key: self.key(),
                field,
                source,
            }),
        }
    }

    /// Replaces `status` with `status`.
    pub fn set_status<T: Serialize>(&mut self, status: &T) {
        self.body.insert("status".into(), to_value(status));
    }

    /// Replaces `spec` with `spec`.
    pub fn set_spec<T: Serialize>(&mut self, spec: &T) {
        self.body.insert("spec".into(), to_value(spec));
    }
}

/// A view as JSON. The views hold only strings, numbers, lists and string-keyed maps, so this
/// cannot fail.
pub fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("a typed view always serializes to JSON")
}
