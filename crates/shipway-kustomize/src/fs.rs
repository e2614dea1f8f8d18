//! The filesystem every read goes through: `shipway-fs`, shared with workflow loading and
//! re-exported here so kustomize's callers name it as before.

pub use shipway_fs::{DiskFs, FileSystem, MemFs, normalize};
