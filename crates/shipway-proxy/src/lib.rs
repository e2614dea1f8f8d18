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

mod conn;
pub mod discovery;
mod h1;
mod h2;
pub mod metrics;
pub mod policy;
pub mod server;
pub mod table;

/// Which proxy worker thread this is, so per-request counters and metrics can be kept per worker
/// instead of on one cache line that every core writes. Threads that are not workers are 0.
pub(crate) mod worker {
    use std::cell::Cell;

    thread_local! {
        static INDEX: Cell<usize> = const { Cell::new(0) };
    }

    pub(crate) fn set(index: usize) {
        INDEX.with(|c| c.set(index));
    }

    pub(crate) fn index() -> usize {
        INDEX.with(Cell::get)
    }

    /// Slots of per-worker state; workers beyond this share slots.
    pub(crate) const SLOTS: usize = 8;

    /// A counter with one cache line per worker slot.
    #[derive(Default)]
    pub(crate) struct Counter([Padded; SLOTS]);

    #[derive(Default)]
    #[repr(align(64))]
    struct Padded(std::sync::atomic::AtomicUsize);

    impl Counter {
        /// This worker's next value.
        pub(crate) fn next(&self) -> usize {
            self.0[index() % SLOTS]
                .0
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        }
    }
}

pub use metrics::{ProxyMetrics, WindowStats};
pub use server::{Listeners, Proxy, ProxyConfig};
pub use table::RoutingTable;
