//! Container processes: the shared supervisor (`shipway-process`), each in its own process
//! group, stopped with SIGTERM to the group, a grace period, then SIGKILL; output captured into
//! size-capped log files; groups a SIGKILLed previous run left behind stopped by their marker.

pub use shipway_process::{Exit, LOG_FILE_LIMIT, Process, Spec, stop_orphan};
