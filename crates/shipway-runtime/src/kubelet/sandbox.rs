//! The sandbox: images resolved, loopback ports allocated, volumes written and each container's
//! root (its image's files linked, its volumes at their mount paths).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use shipway_controller::Change;
use shipway_model::Key;
use tokio::sync::{broadcast, watch};

use super::Kubelet;
use super::env::config_data;
use super::worker::{PodWorker, waiting};
use crate::confine;

impl PodWorker {
    /// Resolves images, allocates ports and builds the sandbox directory with volumes.
    pub(super) async fn prepare(
        &self,
        stop: &mut watch::Receiver<Option<Duration>>,
    ) -> Option<Sandbox> {
        let dir = Kubelet::pod_dir(&self.config.data_dir, &self.pod);
        let all: Vec<Value> = ["initContainers", "containers"]
            .iter()
            .flat_map(|f| {
                self.spec()
                    .get(*f)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            })
            .collect();
        // Container names become directory names (root, logs, pids); admission checks them, a Pod
        // stored before it did must not name a path.
        for c in &all {
            let cname = c["name"].as_str().unwrap_or_default();
            if let Err(e) = shipway_model::name::validate_dns1123_label(cname) {
                let msg = format!("container name {cname:?}: Invalid value: {e}");
                self.update(|s| {
                    s.pending_reason = Some(("CreateContainerConfigError".into(), msg.clone()));
                    for (_, st) in s.containers.values_mut().chain(s.init.values_mut()) {
                        st.state = waiting("CreateContainerConfigError", &msg);
                    }
                });
                return None;
            }
        }
        let mut images = HashMap::new();
        for c in &all {
            let image = c["image"].as_str().unwrap_or_default().to_string();
            let mut attempts = 0u32;
            loop {
                match self.images.resolve(&image) {
                    Ok(resolved) => {
                        images.insert(image.clone(), resolved);
                        break;
                    }
                    Err(e) => {
                        // Like kubelet: ErrImagePull after the first failed pull, ImagePullBackOff
                        // while it waits to look again (the image may be imported meanwhile).
                        attempts += 1;
                        let msg = e.to_string();
                        let (reason, message) = if attempts == 1 {
                            self.record(
                                "Failed",
                                &format!("Failed to pull image {image:?}: {msg}"),
                            )
                            .await;
                            self.record("Failed", "Error: ErrImagePull").await;
                            ("ErrImagePull", msg)
                        } else {
                            if attempts == 2 {
                                self.record("Failed", "Error: ImagePullBackOff").await;
                            }
                            if attempts == 2 || attempts.is_multiple_of(6) {
                                self.record(
                                    "BackOff",
                                    &format!("Back-off pulling image {image:?}"),
                                )
                                .await;
                            }
                            (
                                "ImagePullBackOff",
                                format!("Back-off pulling image {image:?}: {msg}"),
                            )
                        };
                        self.update(|s| {
                            s.pending_reason = Some((reason.into(), message.clone()));
                            for (_, st) in s.containers.values_mut().chain(s.init.values_mut()) {
                                st.state = waiting(reason, &message);
                            }
                        });
                        tokio::select! {
                            _ = tokio::time::sleep(image_backoff(attempts)) => {}
                            _ = async { stop.wait_for(Option::is_some).await.is_ok() } => return None,
                        }
                    }
                }
            }
        }
        self.update(|s| s.pending_reason = None);
        let mut mappings = Vec::new();
        let mut ports = HashMap::new();
        for c in &all {
            let cname = c["name"].as_str().unwrap_or_default();
            for p in c["ports"].as_array().into_iter().flatten() {
                let host = match std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                {
                    Ok(a) => a.port(),
                    Err(e) => {
                        self.update(|s| {
                            s.pending_reason = Some(("PortAllocationFailed".into(), e.to_string()))
                        });
                        return None;
                    }
                };
                let container_port = p["containerPort"].as_i64().unwrap_or(0);
                mappings.push(json!({
                    "container": cname, "name": p["name"], "containerPort": container_port,
                    "hostPort": host, "protocol": p["protocol"].as_str().unwrap_or("TCP"),
                }));
                ports.insert((cname.to_string(), container_port), host);
            }
        }
        self.update(|s| s.port_mappings = mappings.clone());
        let volumes = match self.prepare_volumes(&dir) {
            Ok(v) => v,
            Err(msg) => {
                self.update(|s| {
                    s.pending_reason = Some(("CreateContainerConfigError".into(), msg.clone()));
                    for (_, st) in s.containers.values_mut().chain(s.init.values_mut()) {
                        st.state = waiting("CreateContainerConfigError", &msg);
                    }
                });
                return None;
            }
        };
        Some(Sandbox {
            dir,
            images,
            port_mappings: mappings,
            volumes: volumes.paths,
            files: volumes.files,
        })
    }

    /// Writes every volume's directory; returns each volume's path and the files written.
    fn prepare_volumes(&self, dir: &Path) -> Result<Volumes, String> {
        let mut out = Volumes::default();
        for v in self.volumes() {
            let name = v["name"].as_str().unwrap_or_default().to_string();
            let files = self.volume_files(v)?;
            // 0600 for ConfigMaps too: containers run as this user, and others must not read
            // the data directory.
            let path = write_volume(&dir.join("volumes"), &name, &files, 0o600)?;
            out.paths.insert(name.clone(), path);
            out.files.insert(name, files);
        }
        Ok(out)
    }

    fn volumes(&self) -> impl Iterator<Item = &Value> {
        self.spec()
            .get("volumes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
    }

    /// The files of volume `v` (path in the volume, contents) from its ConfigMap or Secret as the
    /// shared cache holds it now; an emptyDir has none.
    fn volume_files(&self, v: &Value) -> Result<Vec<(String, Vec<u8>)>, String> {
        let name = v["name"].as_str().unwrap_or_default();
        let Some((kind, src)) = volume_source(v) else {
            return Ok(Vec::new());
        };
        let ns = self.pod.metadata.namespace.clone().unwrap_or_default();
        let obj_name = source_name(src);
        let optional = src["optional"].as_bool().unwrap_or(false);
        let data = match self.cache.get(&Key::new("", kind, &ns, obj_name)) {
            Some(o) => config_data(&o).map_err(|e| format!("volume {name}: {e}"))?,
            None if optional => BTreeMap::new(),
            None => return Err(format!("volume {name}: {kind} {ns}/{obj_name} not found")),
        };
        let items: Vec<(String, String)> = match src["items"].as_array() {
            Some(items) => items
                .iter()
                .filter_map(|i| {
                    Some((
                        i["key"].as_str()?.to_string(),
                        i["path"].as_str()?.to_string(),
                    ))
                })
                .collect(),
            None => data.keys().map(|k| (k.clone(), k.clone())).collect(),
        };
        let mut files = Vec::new();
        for (key, rel) in items {
            let Some(value) = data.get(&key) else {
                return Err(format!(
                    "volume {name}: {kind} {ns}/{obj_name} has no key {key:?}"
                ));
            };
            files.push((rel, value.clone()));
        }
        Ok(files)
    }

    /// Keeps ConfigMap and Secret volumes in step with their objects, as kubelet does (there
    /// within a sync period, here on the change): changed keys are rewritten, files of keys that
    /// went away removed. An object that cannot be read (deleted, a key gone that `items` names)
    /// leaves the files as they were and says why in a `FailedMount` event.
    pub(super) async fn refresh_volumes(self: Arc<Self>, sandbox: Arc<Sandbox>) {
        let projected: Vec<&Value> = self
            .volumes()
            .filter(|v| volume_source(v).is_some())
            .collect();
        if projected.is_empty() {
            return;
        }
        // Subscribed before the first look, so no change falls between.
        let mut changes = self.cache.subscribe();
        let ns = self.pod.metadata.namespace.clone().unwrap_or_default();
        let mut written = sandbox.files.clone();
        let mut failed: HashMap<String, String> = HashMap::new();
        let mut dirty: Vec<&Value> = projected.clone();
        loop {
            for v in dirty.drain(..) {
                let name = v["name"].as_str().unwrap_or_default().to_string();
                let result = self.volume_files(v).and_then(|files| {
                    if written.get(&name) == Some(&files) {
                        return Ok(());
                    }
                    let path = write_volume(&sandbox.dir.join("volumes"), &name, &files, 0o600)?;
                    for (rel, _) in written.get(&name).into_iter().flatten() {
                        // Only names directly in the volume: a nested path could pass through a
                        // link a container put there.
                        if !rel.contains('/') && !files.iter().any(|(r, _)| r == rel) {
                            let _ = std::fs::remove_file(path.join(rel));
                        }
                    }
                    written.insert(name.clone(), files);
                    Ok(())
                });
                match result {
                    Ok(()) => {
                        failed.remove(&name);
                    }
                    Err(e) if failed.get(&name) != Some(&e) => {
                        self.record(
                            "FailedMount",
                            &format!("MountVolume.SetUp failed for volume {name:?} : {e}"),
                        )
                        .await;
                        failed.insert(name, e);
                    }
                    Err(_) => {}
                }
            }
            let affects = |o: &shipway_model::Object| {
                let key = o.key();
                projected
                    .iter()
                    .copied()
                    .filter(|v| {
                        volume_source(v).is_some_and(|(kind, src)| {
                            key.group.is_empty()
                                && key.kind == kind
                                && key.namespace == ns
                                && key.name == source_name(src)
                        })
                    })
                    .collect::<Vec<_>>()
            };
            match changes.recv().await {
                Ok(Change::Applied(o) | Change::Deleted(o)) => dirty = affects(&o),
                Ok(Change::Resynced) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    dirty = projected.clone()
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// The directory a container runs in: the image's files (linked, not copied) with the pod's
    /// volumes at their `mountPath`s, relative to it. Without mount namespaces an absolute path
    /// cannot be redirected; apps that use paths relative to their working directory (or
    /// `$SHIPWAY_VOLUME_<NAME>`) see their volumes where the manifest says.
    pub(super) fn container_root(
        &self,
        c: &Value,
        sandbox: &Sandbox,
        image: &crate::images::ResolvedImage,
    ) -> Result<PathBuf, String> {
        let name = c["name"].as_str().unwrap_or_default();
        let root = Kubelet::container_root(&self.config.data_dir, &self.pod, name);
        let io = |e: std::io::Error| format!("preparing the root of container {name:?}: {e}");
        if root.exists() {
            std::fs::remove_dir_all(&root).map_err(io)?;
        }
        crate::private::create_dir_all(&root).map_err(io)?;
        link_children(&image.root, &root).map_err(io)?;
        mount_volumes(&root, &sandbox.volumes, &c["volumeMounts"])?;
        Ok(Kubelet::container_root(
            &self.config.data_dir,
            &self.pod,
            name,
        ))
    }
}

/// How long to wait before looking for a missing image again after `attempts` failures: 2 s
/// doubling to 10 s. Kubelet goes up to 5 min for a registry; a local import should be picked up
/// within seconds.
pub(super) fn image_backoff(attempts: u32) -> Duration {
    Duration::from_secs(2)
        .saturating_mul(2u32.saturating_pow(attempts.saturating_sub(1)))
        .min(Duration::from_secs(10))
}

/// Where a pod's containers run and what they were given.
pub(super) struct Sandbox {
    pub(super) dir: PathBuf,
    pub(super) images: HashMap<String, crate::images::ResolvedImage>,
    pub(super) port_mappings: Vec<Value>,
    pub(super) volumes: HashMap<String, PathBuf>,
    /// What was written into each volume (path in the volume, contents).
    pub(super) files: HashMap<String, Vec<(String, Vec<u8>)>>,
}

/// The volumes of a pod: each one's directory and the files written into it.
#[derive(Default)]
pub(super) struct Volumes {
    pub(super) paths: HashMap<String, PathBuf>,
    pub(super) files: HashMap<String, Vec<(String, Vec<u8>)>>,
}

/// The ConfigMap or Secret a volume projects, if it projects one.
fn volume_source(v: &Value) -> Option<(&'static str, &Value)> {
    match (v.get("configMap"), v.get("secret")) {
        (Some(cm), _) => Some(("ConfigMap", cm)),
        (_, Some(s)) => Some(("Secret", s)),
        _ => None,
    }
}

/// The object a volume source names (`name` for a ConfigMap, `secretName` for a Secret).
fn source_name(src: &Value) -> &str {
    src.get("name")
        .or_else(|| src.get("secretName"))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Makes the directory of volume `name` under `volumes` and writes its `files` (path in the
/// volume, contents) with `mode`. Every path goes through `confine`: nothing is created, written
/// or re-moded outside `volumes/<name>`, whatever the manifest or a container left there.
pub(super) fn write_volume<V: AsRef<[u8]>>(
    volumes: &Path,
    name: &str,
    files: &[(String, V)],
    mode: u32,
) -> Result<PathBuf, String> {
    // Admission checks this too; a Pod stored before it did must not name a path.
    if let Err(e) = shipway_model::name::validate_dns1123_label(name) {
        return Err(format!("volume {name:?}: Invalid value: {e}"));
    }
    let path = confine::create_dir(volumes, name).map_err(|e| format!("volume {name}: {e}"))?;
    for (rel, value) in files {
        confine::write_file(&path, rel, value.as_ref(), mode)
            .map_err(|e| format!("volume {name}: item path {e}"))?;
    }
    Ok(path)
}

/// Places a container's `volumeMounts` in its `root` as links to the volumes' directories (or to
/// a `subPath` inside one). The mount point is built from the mountPath's components below `root`;
/// the subPath is resolved inside its volume without following links.
pub(super) fn mount_volumes(
    root: &Path,
    volumes: &HashMap<String, PathBuf>,
    mounts: &Value,
) -> Result<(), String> {
    let io = |e: std::io::Error| format!("preparing the container's root: {e}");
    for (i, m) in mounts.as_array().into_iter().flatten().enumerate() {
        let volume = m["name"].as_str().unwrap_or_default();
        let Some(source) = volumes.get(volume) else {
            return Err(format!("volumeMounts[{i}]: no volume named {volume:?}"));
        };
        let source = match m["subPath"].as_str().filter(|p| !p.is_empty()) {
            Some(sub) => confine::existing_or_dir(source, sub)
                .map_err(|e| format!("volumeMounts[{i}].subPath {e}"))?,
            None => source.clone(),
        };
        let path = m["mountPath"].as_str().unwrap_or_default();
        let parts = match confine::components(path.trim_start_matches('/')) {
            Ok(parts) if !parts.is_empty() && !path.split('/').any(|p| p == "..") => parts,
            _ => {
                return Err(format!(
                    "volumeMounts[{i}].mountPath {path:?} must name a directory below the root"
                ));
            }
        };
        // Each parent is made a real directory (unfolding links into the image) before the next
        // is looked at, so the mount point is below `root` and nothing is written into the image.
        let mut dir = root.to_path_buf();
        for part in &parts[..parts.len() - 1] {
            dir = dir.join(part);
            unfold(&dir).map_err(io)?;
        }
        let at = dir.join(parts[parts.len() - 1]);
        match std::fs::symlink_metadata(&at) {
            Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&at).map_err(io)?,
            Ok(_) => std::fs::remove_file(&at).map_err(io)?,
            Err(_) => {}
        }
        std::os::unix::fs::symlink(&source, &at).map_err(io)?;
    }
    Ok(())
}

/// The directory a container starts in: its workingDir inside its root (an absolute workingDir is
/// relative to the root, as there are no mount namespaces).
pub(super) fn working_dir(root: &Path, dir: Option<&str>) -> Result<PathBuf, String> {
    match dir {
        Some(w) => confine::confined(root, w.trim_start_matches('/'))
            .map_err(|e| format!("workingDir {e}")),
        None => Ok(root.to_path_buf()),
    }
}

/// Links every entry of `from` into `to`.
pub(super) fn link_children(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        std::os::unix::fs::symlink(entry.path(), to.join(entry.file_name()))?;
    }
    Ok(())
}

/// Makes `dir` a real directory: a link to an image directory becomes a directory of links to its
/// children, so a mount can be placed inside without touching the shared image.
pub(super) fn unfold(dir: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.file_type().is_symlink() => {
            let target = std::fs::read_link(dir)?;
            std::fs::remove_file(dir)?;
            crate::private::create_dir(dir)?;
            if target.is_dir() {
                link_children(&target, dir)?;
            }
            Ok(())
        }
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(std::io::Error::other(format!(
            "{} is a file, not a directory",
            dir.display()
        ))),
        Err(_) => crate::private::create_dir(dir),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file under `dir` with its kind, mode and contents or link target, links not followed.
    fn snapshot(dir: &Path) -> Vec<(PathBuf, String)> {
        use std::os::unix::fs::PermissionsExt;
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                let meta = std::fs::symlink_metadata(&p).unwrap();
                let what = if meta.is_symlink() {
                    format!("link {:?}", std::fs::read_link(&p).unwrap())
                } else if meta.is_dir() {
                    stack.push(p.clone());
                    format!("dir {:o}", meta.permissions().mode())
                } else {
                    format!(
                        "file {:o} {:?}",
                        meta.permissions().mode(),
                        std::fs::read(&p).unwrap()
                    )
                };
                out.push((p, what));
            }
        }
        out.sort();
        out
    }

    fn rel_path() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop::collection::vec(
            prop::sample::select(vec!["..", ".", "", "/", "a", "b", "//", "link", "cfg", "x"]),
            0..6,
        )
        .prop_map(|parts| parts.join("/"))
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Volume names, item paths, subPaths, mountPaths and workingDirs made of `..`, `.`, `/` and
        /// names, with links to the outside placed in the tree: whatever the kubelet builds stays in
        /// the pod's directory, and nothing outside it (nor the image) changes.
        #[test]
        fn paths_from_manifests_never_leave_the_pod_directory(
            names in proptest::collection::vec(rel_path(), 1..4),
            items in proptest::collection::vec((rel_path(), "[a-z]{0,3}"), 0..5),
            links in proptest::collection::vec(rel_path(), 0..3),
            mounts in proptest::collection::vec((0usize..4, rel_path(), rel_path()), 0..4),
            work in proptest::option::of(rel_path()),
        ) {
            let tmp = tempfile::tempdir().unwrap();
            let pod = tmp.path().join("pod");
            let outside = tmp.path().join("outside");
            let image = tmp.path().join("image");
            for d in [&outside, &image.join("etc"), &pod.join("volumes/cfg")] {
                std::fs::create_dir_all(d).unwrap();
            }
            std::fs::write(outside.join("secret"), "keep").unwrap();
            std::fs::write(image.join("etc/conf"), "image").unwrap();
            // Links a container could have left in its volumes, to a directory and to a file outside.
            for (i, at) in links.iter().enumerate() {
                if let Ok(at) = confine::confined(&pod.join("volumes"), at)
                    && at != pod.join("volumes")
                    && let Some(parent) = at.parent()
                    && std::fs::create_dir_all(parent).is_ok()
                {
                    let target = if i % 2 == 0 { outside.clone() } else { outside.join("secret") };
                    let _ = std::os::unix::fs::symlink(target, &at);
                }
            }
            let _ = std::os::unix::fs::symlink(&outside, pod.join("volumes/cfg/link"));
            let before = (snapshot(&outside), snapshot(&image));

            let mut volumes = HashMap::new();
            for name in &names {
                let files: Vec<(String, String)> =
                    items.iter().map(|(p, v)| (p.clone(), v.clone())).collect();
                if let Ok(path) = write_volume(&pod.join("volumes"), name, &files, 0o600) {
                    proptest::prop_assert!(path.starts_with(pod.join("volumes")), "{path:?}");
                    proptest::prop_assert!(path != pod.join("volumes"), "{path:?}");
                    volumes.insert(name.clone(), path);
                }
            }
            let root = pod.join("containers/c/root");
            std::fs::create_dir_all(&root).unwrap();
            link_children(&image, &root).unwrap();
            let mounts: Vec<Value> = mounts
                .iter()
                .map(|(v, sub, at)| json!({"name": names.get(*v).cloned().unwrap_or_default(), "subPath": sub, "mountPath": at}))
                .collect();
            if mount_volumes(&root, &volumes, &json!(mounts)).is_ok() {
                // Every mount is a link to a directory of the pod's volumes.
                for (path, what) in snapshot(&root) {
                    if let Ok(target) = std::fs::read_link(&path)
                        && !target.starts_with(&image)
                    {
                        proptest::prop_assert!(target.starts_with(pod.join("volumes")), "{path:?} {what}");
                        proptest::prop_assert!(
                            !std::fs::symlink_metadata(&target).unwrap().is_symlink(),
                            "{path:?} {what}"
                        );
                    }
                }
            }
            if let Ok(cwd) = working_dir(&root, work.as_deref()) {
                proptest::prop_assert!(cwd.starts_with(&root), "{cwd:?}");
            }
            proptest::prop_assert_eq!((snapshot(&outside), snapshot(&image)), before);
        }
    }

    #[test]
    fn a_volume_named_like_a_path_writes_nothing_outside_the_pod() {
        let tmp = tempfile::tempdir().unwrap();
        let volumes = tmp.path().join("pod/volumes");
        let files = [("key".to_string(), "v".to_string())];
        let err = write_volume(&volumes, "../../x", &files, 0o644).unwrap_err();
        assert!(
            err.starts_with("volume \"../../x\": Invalid value: a lowercase RFC 1123 label"),
            "{err}"
        );
        let err =
            write_volume(&volumes, "v", &[("../../../x".to_string(), "v")], 0o644).unwrap_err();
        assert_eq!(
            err,
            "volume v: item path \"../../../x\" must not climb above its directory with '..'"
        );
        assert_eq!(
            std::fs::read_dir(tmp.path()).unwrap().count(),
            1,
            "only the pod directory"
        );
        let root = tmp.path().join("pod/containers/c/root");
        std::fs::create_dir_all(&root).unwrap();
        let err = working_dir(&root, Some("/app/../../..")).unwrap_err();
        assert_eq!(
            err,
            "workingDir \"app/../../..\" must not climb above its directory with '..'"
        );
        assert_eq!(
            working_dir(&root, Some("/srv/./www")).unwrap(),
            root.join("srv/www")
        );
    }
}
