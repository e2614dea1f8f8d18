//! The local image store: directories imported as content-addressed OCI images (an OCI image
//! layout on disk), and unpacked root directories for pods to run in.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(
        "image {0:?} not found in the local image store; import it with `shipway image import {0} DIR --entrypoint CMD`"
    )]
    NotFound(String),
    #[error(
        "{0:?} is not a valid image reference: expected NAME, NAME:TAG or NAME@sha256:DIGEST (lowercase letters, digits, '.', '_', '-', '/')"
    )]
    BadReference(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the image store at {path} is damaged: {message}")]
    Corrupt { path: PathBuf, message: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What running an image needs: its root directory and its default process.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedImage {
    pub reference: String,
    /// `sha256:...` of the manifest: the image's identity.
    pub digest: String,
    pub root: PathBuf,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ImageInfo {
    pub reference: String,
    pub digest: String,
    pub size: u64,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Index {
    schema_version: u32,
    manifests: Vec<Value>,
}

/// An OCI image layout under `<data>/images`.
#[derive(Clone, Debug)]
pub struct ImageStore {
    root: PathBuf,
}

/// `NAME` means `NAME:latest`, as Docker does.
pub fn normalize_reference(reference: &str) -> Result<String, ImageError> {
    let bad = || ImageError::BadReference(reference.to_string());
    let (name, tag) = match reference.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, t),
        _ => (reference, "latest"),
    };
    let name_ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c))
        && !name.starts_with(['.', '-', '/'])
        && !name.split('/').any(|part| part.is_empty() || part == "..");
    let tag_ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if name_ok && tag_ok {
        Ok(format!("{name}:{tag}"))
    } else {
        Err(bad())
    }
}

impl ImageStore {
    pub fn new(data_dir: &Path) -> ImageStore {
        ImageStore {
            root: data_dir.join("images"),
        }
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        self.root
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    }

    fn write_blob(&self, bytes: &[u8]) -> Result<(String, u64), ImageError> {
        let hex = hex::encode(Sha256::digest(bytes));
        let path = self.blob_path(&hex);
        if !path.exists() {
            write_atomic(&path, bytes)?;
        }
        Ok((format!("sha256:{hex}"), bytes.len() as u64))
    }

    fn read_index(&self) -> Result<Index, ImageError> {
        let path = self.root.join("index.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ImageError::Corrupt {
                path,
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Index {
                schema_version: 2,
                manifests: vec![],
            }),
            Err(e) => Err(io(&path)(e)),
        }
    }

    fn write_index(&self, index: &Index) -> Result<(), ImageError> {
        write_atomic(
            &self.root.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )?;
        write_atomic(
            &self.root.join("index.json"),
            &serde_json::to_vec_pretty(index).unwrap_or_default(),
        )
    }

    /// Holds the store's lock while `f` runs, so a CLI import and a running server never interleave.
    fn locked<T>(&self, f: impl FnOnce() -> Result<T, ImageError>) -> Result<T, ImageError> {
        crate::private::create_dir_all(&self.root).map_err(io(&self.root))?;
        let path = self.root.join(".lock");
        let file = crate::private::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        file.lock().map_err(io(&path))?;
        f()
    }

    /// Imports `dir` as `reference`, replacing what that reference pointed at. Returns the digest.
    pub fn import(
        &self,
        reference: &str,
        dir: &Path,
        entrypoint: &[String],
        env: &[(String, String)],
    ) -> Result<String, ImageError> {
        let reference = normalize_reference(reference)?;
        if !dir.is_dir() {
            return Err(ImageError::Io {
                path: dir.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
            });
        }
        let layer = tar_dir(dir)?;
        self.locked(|| {
            let (layer_digest, layer_size) = self.write_blob(&layer)?;
            let config = json!({
                "architecture": std::env::consts::ARCH,
                "os": std::env::consts::OS,
                "config": {
                    "Entrypoint": entrypoint,
                    "Env": env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
                },
                "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
            });
            let (config_digest, config_size) =
                self.write_blob(&serde_json::to_vec(&config).unwrap_or_default())?;
            let manifest = json!({
                "schemaVersion": 2,
                "mediaType": MANIFEST_TYPE,
                "config": {"mediaType": CONFIG_TYPE, "digest": config_digest, "size": config_size},
                "layers": [{"mediaType": LAYER_TYPE, "digest": layer_digest, "size": layer_size}],
            });
            let (digest, size) =
                self.write_blob(&serde_json::to_vec(&manifest).unwrap_or_default())?;
            let mut index = self.read_index()?;
            index.schema_version = 2;
            index
                .manifests
                .retain(|m| m["annotations"][REF_NAME] != reference.as_str());
            index.manifests.push(json!({
                "mediaType": MANIFEST_TYPE, "digest": digest, "size": size,
                "annotations": {REF_NAME: reference},
            }));
            self.write_index(&index)?;
            Ok(digest)
        })
    }

    pub fn list(&self) -> Result<Vec<ImageInfo>, ImageError> {
        let index = self.read_index()?;
        let mut out: Vec<ImageInfo> = index
            .manifests
            .iter()
            .map(|m| {
                let digest = m["digest"].as_str().unwrap_or_default().to_string();
                let size = self.image_size(&digest).unwrap_or(0);
                ImageInfo {
                    reference: m["annotations"][REF_NAME]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    digest,
                    size,
                }
            })
            .collect();
        out.sort_by(|a, b| a.reference.cmp(&b.reference));
        Ok(out)
    }

    fn manifest(&self, digest: &str) -> Result<Value, ImageError> {
        let path = self.blob_path(digest);
        let bytes = fs::read(&path).map_err(io(&path))?;
        serde_json::from_slice(&bytes).map_err(|e| ImageError::Corrupt {
            path,
            message: e.to_string(),
        })
    }

    fn image_size(&self, digest: &str) -> Result<u64, ImageError> {
        let m = self.manifest(digest)?;
        Ok(m["layers"]
            .as_array()
            .map_or(0, |ls| ls.iter().filter_map(|l| l["size"].as_u64()).sum()))
    }

    /// Removes a reference, then every blob and unpacked root no reference needs any more.
    pub fn remove(&self, reference: &str) -> Result<(), ImageError> {
        let reference = normalize_reference(reference)?;
        self.locked(|| {
            let mut index = self.read_index()?;
            let before = index.manifests.len();
            index
                .manifests
                .retain(|m| m["annotations"][REF_NAME] != reference.as_str());
            if index.manifests.len() == before {
                return Err(ImageError::NotFound(reference.clone()));
            }
            self.write_index(&index)?;
            self.collect_garbage(&index)
        })
    }

    fn collect_garbage(&self, index: &Index) -> Result<(), ImageError> {
        let mut keep = std::collections::HashSet::new();
        for m in &index.manifests {
            let Some(digest) = m["digest"].as_str() else {
                continue;
            };
            keep.insert(digest.trim_start_matches("sha256:").to_string());
            if let Ok(manifest) = self.manifest(digest) {
                for d in std::iter::once(&manifest["config"])
                    .chain(manifest["layers"].as_array().into_iter().flatten())
                {
                    if let Some(d) = d["digest"].as_str() {
                        keep.insert(d.trim_start_matches("sha256:").to_string());
                    }
                }
            }
        }
        for dir in [self.root.join("blobs/sha256"), self.root.join("rootfs")] {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                if !keep.contains(&name) {
                    let path = entry.path();
                    let _ = if path.is_dir() {
                        fs::remove_dir_all(&path)
                    } else {
                        fs::remove_file(&path)
                    };
                }
            }
        }
        Ok(())
    }

    /// The image `reference` points at, unpacked (once per digest) and ready to run.
    /// `NAME@sha256:...` (or `NAME:TAG@sha256:...`, the digest winning as with Docker) is the
    /// image of that name whose manifest has that digest, whatever tag it has now: what a
    /// promotion by digest writes into a kustomization.
    pub fn resolve(&self, reference: &str) -> Result<ResolvedImage, ImageError> {
        let index = self.read_index()?;
        let (reference, entry) = match reference.split_once('@') {
            Some((base, digest)) => {
                let name = normalize_reference(base)?
                    .rsplit_once(':')
                    .map(|(n, _)| n.to_string())
                    .unwrap_or_default();
                let hex = digest.strip_prefix("sha256:").unwrap_or_default();
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(ImageError::BadReference(reference.to_string()));
                }
                let shown = format!("{name}@{digest}");
                let entry = index
                    .manifests
                    .iter()
                    .find(|m| {
                        m["digest"] == digest
                            && m["annotations"][REF_NAME]
                                .as_str()
                                .and_then(|r| r.rsplit_once(':'))
                                .is_some_and(|(n, _)| n == name)
                    })
                    .ok_or_else(|| ImageError::NotFound(shown.clone()))?;
                (shown, entry)
            }
            None => {
                let reference = normalize_reference(reference)?;
                let entry = index
                    .manifests
                    .iter()
                    .find(|m| m["annotations"][REF_NAME] == reference.as_str())
                    .ok_or_else(|| ImageError::NotFound(reference.clone()))?;
                (reference, entry)
            }
        };
        let digest = entry["digest"].as_str().unwrap_or_default().to_string();
        let manifest = self.manifest(&digest)?;
        let config_path = self.blob_path(manifest["config"]["digest"].as_str().unwrap_or_default());
        let config: Value = serde_json::from_slice(
            &fs::read(&config_path).map_err(io(&config_path))?,
        )
        .map_err(|e| ImageError::Corrupt {
            path: config_path.clone(),
            message: e.to_string(),
        })?;
        let root = self
            .root
            .join("rootfs")
            .join(digest.trim_start_matches("sha256:"));
        if !root.exists() {
            let tmp = self
                .root
                .join("rootfs")
                .join(format!(".tmp-{}", crate::workload::random_suffix(8)));
            crate::private::create_dir_all(&tmp).map_err(io(&tmp))?;
            for layer in manifest["layers"].as_array().into_iter().flatten() {
                let path = self.blob_path(layer["digest"].as_str().unwrap_or_default());
                let file = fs::File::open(&path).map_err(io(&path))?;
                let mut archive = tar::Archive::new(file);
                // Owner bits only: an executable stays one (0700), nothing is group or world
                // readable.
                archive.set_mask(0o077);
                archive.unpack(&tmp).map_err(io(&path))?;
            }
            // Another resolver may have won the race; its copy is identical.
            if fs::rename(&tmp, &root).is_err() {
                let _ = fs::remove_dir_all(&tmp);
            }
        }
        let strings = crate::workload::strings;
        let env = strings(&config["config"]["Env"])
            .into_iter()
            .filter_map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
        Ok(ResolvedImage {
            reference,
            digest,
            root,
            entrypoint: strings(&config["config"]["Entrypoint"]),
            cmd: strings(&config["config"]["Cmd"]),
            env,
        })
    }
}

/// A deterministic tar of `dir`: sorted entries, zeroed owners and times, so equal trees give
/// equal digests.
fn tar_dir(dir: &Path) -> Result<Vec<u8>, ImageError> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.mode(tar::HeaderMode::Deterministic);
    builder.follow_symlinks(false);
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let abs = dir.join(&rel);
        let mut entries: Vec<_> = fs::read_dir(&abs)
            .map_err(io(&abs))?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        entries.sort();
        for name in entries.into_iter().rev() {
            let rel_child = rel.join(&name);
            let abs_child = dir.join(&rel_child);
            let meta = fs::symlink_metadata(&abs_child).map_err(io(&abs_child))?;
            if meta.is_dir() {
                builder
                    .append_dir(&rel_child, &abs_child)
                    .map_err(io(&abs_child))?;
                stack.push(rel_child);
            } else {
                builder
                    .append_path_with_name(&abs_child, &rel_child)
                    .map_err(io(&abs_child))?;
            }
        }
    }
    builder.into_inner().map_err(io(dir))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let parent = path.parent().unwrap_or(Path::new("."));
    crate::private::create_dir_all(parent).map_err(io(parent))?;
    let tmp = parent.join(format!(".tmp-{}", crate::workload::random_suffix(8)));
    let mut f = crate::private::options()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_resolve_list_remove() {
        let data = tempfile::tempdir().unwrap();
        let app = tempfile::tempdir().unwrap();
        fs::create_dir(app.path().join("bin")).unwrap();
        fs::write(app.path().join("bin/run.sh"), "#!/bin/sh\necho hi\n").unwrap();
        let store = ImageStore::new(data.path());
        let d1 = store
            .import(
                "web:v1",
                app.path(),
                &["./bin/run.sh".into()],
                &[("MODE".into(), "x".into())],
            )
            .unwrap();
        let d2 = store
            .import(
                "web:v1-again",
                app.path(),
                &["./bin/run.sh".into()],
                &[("MODE".into(), "x".into())],
            )
            .unwrap();
        assert_eq!(d1, d2, "same content, same digest");
        let img = store.resolve("web:v1").unwrap();
        assert_eq!(img.digest, d1);
        assert_eq!(
            fs::read_to_string(img.root.join("bin/run.sh")).unwrap(),
            "#!/bin/sh\necho hi\n"
        );
        assert_eq!(img.entrypoint, ["./bin/run.sh"]);
        assert_eq!(img.env, [("MODE".to_string(), "x".to_string())]);
        let refs: Vec<String> = store
            .list()
            .unwrap()
            .into_iter()
            .map(|i| i.reference)
            .collect();
        assert_eq!(refs, ["web:v1", "web:v1-again"]);
        store.remove("web:v1").unwrap();
        assert!(
            store.resolve("web:v1-again").is_ok(),
            "shared blobs survive"
        );
        store.remove("web:v1-again").unwrap();
        assert!(matches!(
            store.resolve("web:v1"),
            Err(ImageError::NotFound(_))
        ));
        assert_eq!(
            fs::read_dir(data.path().join("images/blobs/sha256"))
                .unwrap()
                .count(),
            0,
            "garbage collected"
        );
        assert!(matches!(
            normalize_reference("Bad:tag"),
            Err(ImageError::BadReference(_))
        ));
        assert_eq!(normalize_reference("web").unwrap(), "web:latest");
        // By digest: the image of that name with that manifest, whatever its tag.
        let d3 = store
            .import("api:v7", app.path(), &["./bin/run.sh".into()], &[])
            .unwrap();
        let by_digest = store.resolve(&format!("api@{d3}")).unwrap();
        assert_eq!(
            (by_digest.digest.as_str(), by_digest.reference),
            (d3.as_str(), format!("api@{d3}"))
        );
        assert_eq!(store.resolve(&format!("api:v1@{d3}")).unwrap().digest, d3);
        assert!(
            matches!(
                store.resolve(&format!("web@{d3}")),
                Err(ImageError::NotFound(_))
            ),
            "another name's digest is not this image"
        );
        assert!(matches!(
            store.resolve("api@sha256:beef"),
            Err(ImageError::BadReference(_))
        ));
        assert!(normalize_reference("../etc:x").is_err());
    }
}
