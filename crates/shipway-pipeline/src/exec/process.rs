//! A step's command as a process group: the shared supervisor's streamed processes.

pub use shipway_process::Exit;
pub use shipway_process::stream::run;
