//! `replacements:`: copy a field of one resource into fields of others.

use serde_json::Value;

use crate::generate::Loader;
use crate::resource::Resource;

/// Applies one replacement (inline or `path:` to a file of them).
pub fn apply(res: &mut [Resource], rep: &Value, ldr: &dyn Loader) -> Result<(), String> {
    let _ = (res, ldr);
    let _ = rep;
    Err("replacements are not supported yet by Shipway's renderer; use patches or vars".into())
}
