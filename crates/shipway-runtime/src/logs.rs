//! Containers' output as `kubectl logs` reads it, from the files the kubelet writes.

use std::path::PathBuf;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use shipway_model::{Key, Object};
use shipway_store::Store;

use crate::kubelet::Kubelet;
use crate::{LogOptions, LogStream, RuntimeError};

/// How often a followed log is read for new output: the kubelet appends to a plain file.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// How many polls between two reads of the pod, which tell whether the instance has ended.
const POLLS_PER_STATUS_CHECK: u32 = 5;

/// A container's output, as `kubectl logs`: the current instance or the previous one, the last
/// `tail` lines, and with `follow` new output as it is written, until the container restarts or
/// the pod goes away. The first item is what the file holds now.
pub(crate) async fn logs(
    store: &Store,
    data_dir: &std::path::Path,
    key: &Key,
    opts: LogOptions,
) -> Result<LogStream, RuntimeError> {
    let pod_name = &key.name;
    let pod = store.get(key).await?.ok_or_else(|| {
        RuntimeError::not_found(format!(
            "{key} not found; `shipway get pods -n {}` lists what exists",
            key.namespace
        ))
    })?;
    let spec = pod.spec().cloned().unwrap_or(Value::Null);
    let names = |field: &str| -> Vec<String> {
        spec[field]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(String::from))
            .collect()
    };
    let (containers, inits) = (names("containers"), names("initContainers"));
    let container = match opts.container {
        Some(c) if containers.contains(&c) || inits.contains(&c) => c,
        Some(c) => {
            return Err(RuntimeError::bad_request(format!(
                "container {c:?} is not valid for pod {pod_name}: choose one of [{}]",
                containers
                    .iter()
                    .chain(&inits)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" ")
            )));
        }
        None if containers.len() == 1 => containers[0].clone(),
        None => {
            return Err(RuntimeError::bad_request(format!(
                "a container name must be specified for pod {pod_name}: choose one of [{}]",
                containers.join(" ")
            )));
        }
    };
    let restarts = container_status(&pod, &container)
        .and_then(|c| c["restartCount"].as_i64())
        .unwrap_or(0);
    let instance = if opts.previous {
        if restarts == 0 {
            return Err(RuntimeError::bad_request(format!(
                "previous terminated container {container:?} in pod {pod_name:?} not found"
            )));
        }
        restarts - 1
    } else {
        restarts
    };
    let path = Kubelet::log_path(data_dir, &pod, &container, instance);
    let text = tokio::fs::read(&path).await.unwrap_or_default();
    let start = match opts.tail {
        Some(n) => tail_start(&text, n),
        None => 0,
    };
    let initial = text[start..].to_vec();
    let first = futures_util::stream::once(async move { Ok(initial) });
    if !opts.follow || opts.previous {
        return Ok(first.boxed());
    }
    let follow = Follow {
        path,
        store: store.clone(),
        key: key.clone(),
        uid: pod.metadata.uid.clone(),
        container,
        instance,
    };
    let offset = text.len() as u64;
    // State: (bytes sent so far, polls since the last status check, whether the instance ended).
    let more =
        futures_util::stream::unfold((offset, 0u32, false), move |(offset, ticks, ended)| {
            let follow = follow.clone();
            async move {
                let len = tokio::fs::metadata(&follow.path)
                    .await
                    .map(|m| m.len())
                    .unwrap_or(offset);
                if len > offset {
                    use tokio::io::{AsyncReadExt, AsyncSeekExt};
                    let mut f = tokio::fs::File::open(&follow.path).await.ok()?;
                    f.seek(std::io::SeekFrom::Start(offset)).await.ok()?;
                    let mut buf = Vec::new();
                    f.take(len - offset).read_to_end(&mut buf).await.ok()?;
                    return Some((Ok(buf), (len, 0, ended)));
                }
                if ended {
                    // The last read after the end was seen found nothing more: done.
                    return None;
                }
                // Now and then: the pod gone or replaced, or this container instance ended
                // (restarted or terminated for good), ends the stream after one more read, as
                // `kubectl logs -f`.
                if ticks % POLLS_PER_STATUS_CHECK == POLLS_PER_STATUS_CHECK - 1 {
                    let over = match follow.store.get(&follow.key).await {
                        Ok(Some(p)) => {
                            p.metadata.uid != follow.uid
                                || instance_ended(&p, &follow.container, follow.instance)
                        }
                        _ => true,
                    };
                    if over {
                        return Some((Ok(Vec::new()), (offset, 0, true)));
                    }
                }
                tokio::time::sleep(FOLLOW_POLL).await;
                Some((Ok(Vec::new()), (offset, ticks + 1, false)))
            }
        });
    Ok(first
        .chain(more)
        .filter(|chunk| std::future::ready(chunk.as_ref().map_or(true, |b| !b.is_empty())))
        .boxed())
}

/// What a followed log needs to read on and to see its instance end.
#[derive(Clone)]
struct Follow {
    path: PathBuf,
    store: Store,
    key: Key,
    uid: Option<String>,
    container: String,
    instance: i64,
}

/// The status of a container (or init container) of `pod`, by name.
fn container_status<'a>(pod: &'a Object, container: &str) -> Option<&'a Value> {
    let status = pod.status()?;
    ["containerStatuses", "initContainerStatuses"]
        .iter()
        .filter_map(|f| status[*f].as_array())
        .flatten()
        .find(|c| c["name"] == container)
}

/// Whether instance `instance` of `container` has stopped writing: it was restarted, or it
/// terminated and will not run again.
fn instance_ended(pod: &Object, container: &str, instance: i64) -> bool {
    match container_status(pod, container) {
        Some(c) => {
            c["restartCount"].as_i64().unwrap_or(0) != instance
                || c["state"].get("terminated").is_some()
        }
        None => false,
    }
}

/// Where the last `n` lines of `text` start.
fn tail_start(text: &[u8], n: usize) -> usize {
    if n == 0 {
        return text.len();
    }
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    body.iter()
        .enumerate()
        .rev()
        .filter(|(_, b)| **b == b'\n')
        .nth(n - 1)
        .map_or(0, |(i, _)| i + 1)
}
