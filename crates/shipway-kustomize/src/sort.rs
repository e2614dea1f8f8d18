//! Kustomize's "legacy" output order: kinds in a fixed priority (Namespace first, webhooks
//! last), then by GVK, namespace and name.

use crate::resource::{Gvk, Resource};

const ORDER_FIRST: [&str; 22] = [
    "Namespace",
    "ResourceQuota",
    "StorageClass",
    "CustomResourceDefinition",
    "ServiceAccount",
    "PodSecurityPolicy",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Endpoints",
    "Service",
    "LimitRange",
    "PriorityClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
];

const ORDER_LAST: [&str; 2] = [
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

fn gvk_sort_string(g: &Gvk) -> String {
    let or = |s: &str, d: &str| {
        if s.is_empty() {
            d.to_string()
        } else {
            s.to_string()
        }
    };
    format!(
        "{}_{}_{}",
        or(&g.group, "~G"),
        or(&g.version, "~V"),
        or(&g.kind, "~K")
    )
}

/// Sorts `res` in place; `first`/`last` override the default kind lists.
pub fn legacy(res: &mut Vec<Resource>, first: Option<&[String]>, last: Option<&[String]>) {
    let first: Vec<String> = first.map_or_else(
        || ORDER_FIRST.iter().map(|s| s.to_string()).collect(),
        <[String]>::to_vec,
    );
    let last: Vec<String> = last.map_or_else(
        || ORDER_LAST.iter().map(|s| s.to_string()).collect(),
        <[String]>::to_vec,
    );
    let rank = |kind: &str| -> i64 {
        if let Some(i) = first.iter().position(|k| k == kind) {
            return i as i64 - first.len() as i64;
        }
        if let Some(i) = last.iter().position(|k| k == kind) {
            return 1 + i as i64;
        }
        0
    };
    // Keys computed once: comparing needs the GVK, its sort string and the namespace|name key.
    let keys: Vec<(i64, Gvk, String, String)> = res
        .iter()
        .map(|r| {
            let id = r.cur_id();
            let ns = if id.namespace.is_empty() {
                "~X"
            } else {
                &id.namespace
            };
            let name = if id.name.is_empty() { "~N" } else { &id.name };
            let key = format!("{}|{}|{}", id.gvk.id_string(), ns, name);
            (
                rank(&id.gvk.kind),
                id.gvk.clone(),
                gvk_sort_string(&id.gvk),
                key,
            )
        })
        .collect();
    let mut order: Vec<usize> = (0..res.len()).collect();
    order.sort_by(|&a, &b| {
        let (ra, ga, sa, ka) = &keys[a];
        let (rb, gb, sb, kb) = &keys[b];
        if ga != gb {
            if ra != rb {
                return ra.cmp(rb);
            }
            // Kustomize puts a Namespace without group after one with a group (reversed).
            if ga.kind == "Namespace"
                && gb.kind == "Namespace"
                && (ga.group.is_empty() || gb.group.is_empty())
            {
                return sb.cmp(sa);
            }
            return sa.cmp(sb);
        }
        ka.cmp(kb)
    });
    let mut taken: Vec<Option<Resource>> = std::mem::take(res).into_iter().map(Some).collect();
    *res = order.into_iter().filter_map(|i| taken[i].take()).collect();
}
