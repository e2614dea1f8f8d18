//! Shipway's built-in L7 proxy: a listener per Service port, round robin over ready endpoints,
//! weighted backends, header and cookie routes, mirroring, connect retries, and per-backend
//! request metrics the rollout analysis queries in process.
//!
//! Newcomers: start with [`table`] (what a routing table is and the pure routing decisions), then
//! [`server::Proxy`] (the data path, fed tables through a `tokio::sync::watch` channel) and
//! [`discovery`] (builds tables from Services, Endpoints, Pods and [`policy::TrafficPolicy`]
//! objects in the store). [`metrics::ProxyMetrics`] is the in-process query API.
//!
//! *Architecture Invariant*: the data path knows no store and no controller; it only serves the
//! newest table. Each request routes on the table it started with, so a policy change is atomic.

pub mod discovery;
pub mod metrics;
pub mod policy;
pub mod server;
pub mod table;

pub use metrics::{ProxyMetrics, WindowStats};
pub use server::{Proxy, ProxyConfig};
pub use table::RoutingTable;
