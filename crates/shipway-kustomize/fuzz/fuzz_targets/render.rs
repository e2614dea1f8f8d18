//! The loader and the patchers on arbitrary input: the bytes are split on NUL into a
//! kustomization, a resource file and a patch file (strategic merge or JSON 6902); building must
//! return, never panic.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use shipway_kustomize::{MemFs, Options, build};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\0');
    let kustomization = parts.next().unwrap_or_default();
    let resource = parts.next().unwrap_or_default();
    let patch = parts.next().unwrap_or_default();
    let mut fs = MemFs::new();
    // The fuzzer's kustomization, and a fixed one that patches the fuzzer's resource with the
    // fuzzer's patch both ways, so the patchers see arbitrary documents even when the first
    // kustomization is garbage.
    fs.insert("/a/kustomization.yaml", kustomization);
    fs.insert("/a/r.yaml", resource);
    fs.insert("/a/p.yaml", patch);
    fs.insert(
        "/b/kustomization.yaml",
        "resources:\n- r.yaml\npatches:\n- path: p.yaml\n- path: p.yaml\n  target:\n    kind: .*\n",
    );
    fs.insert("/b/r.yaml", resource);
    fs.insert("/b/p.yaml", patch);
    let _ = build(&fs, Path::new("/a"), &Options::default());
    let _ = build(&fs, Path::new("/b"), &Options::default());
});
