//! Fuzzes the workflow loader and planner: no input may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shipway_pipeline::parse::{parse_action, parse_workflow};
use shipway_pipeline::plan::plan;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (w, _) = parse_workflow("fuzz.yml", text);
    if let Some(w) = w {
        let _ = plan(&w);
    }
    let _ = parse_action("action.yml", text);
});
