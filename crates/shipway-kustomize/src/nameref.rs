//! Name references: after prefixes, suffixes and hashes renamed resources, the fields that
//! referred to them by their old names (a Deployment's `configMapRef`, a RoleBinding's
//! `roleRef`, ...) are updated to the new names.

use std::collections::HashMap;

use serde_json::Value;

use crate::config::{Create, NameBackRef, split_path, walk};
use crate::resource::{Gvk, ResId, Resource};

/// What the walk needs to know about every resource, computed once.
struct Ids {
    cur: Vec<ResId>,
    prev: Vec<Vec<ResId>>,
    org: Vec<ResId>,
    /// Resources by each name they had before (kustomize only redirects renamed resources).
    by_prev_name: HashMap<String, Vec<usize>>,
}

/// Updates every reference in `resources` according to `backrefs`.
pub fn fix(resources: &mut [Resource], backrefs: &[NameBackRef]) -> Result<(), String> {
    let cur: Vec<ResId> = resources.iter().map(Resource::cur_id).collect();
    let prev: Vec<Vec<ResId>> = resources.iter().map(Resource::prev_ids).collect();
    let org: Vec<ResId> = (0..resources.len())
        .map(|i| prev[i].first().cloned().unwrap_or_else(|| cur[i].clone()))
        .collect();
    let mut by_prev_name: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, ids) in prev.iter().enumerate() {
        for id in ids {
            let list = by_prev_name.entry(id.name.clone()).or_default();
            if list.last() != Some(&i) {
                list.push(i);
            }
        }
    }
    let ids = Ids {
        cur,
        prev,
        org,
        by_prev_name,
    };
    // Filters per referrer, in the order kustomize builds them.
    let mut filters: Vec<Vec<(Gvk, String)>> = vec![Vec::new(); resources.len()];
    for br in backrefs {
        for spec in &br.referrers {
            for (i, id) in ids.org.iter().enumerate() {
                if id.gvk.is_selected(&spec.gvk) {
                    filters[i].push((br.gvk.clone(), spec.path.clone()));
                }
            }
        }
    }
    for i in 0..resources.len() {
        if filters[i].is_empty() {
            continue;
        }
        let binding_namespaces = binding_namespaces(&resources[i], &ids.cur[i])?;
        let role_ref = role_ref_gvk(&resources[i]);
        // The referrer's object is taken out while its fields are rewritten; everything the
        // selection reads about it was computed above.
        let mut obj = std::mem::take(&mut resources[i].obj);
        let mut referrals: Vec<usize> = Vec::new();
        let mut result = Ok(());
        for (target, path) in &filters[i] {
            let segments = split_path(path);
            let ctx = Ctx {
                all: resources,
                ids: &ids,
                referrer: i,
                binding_namespaces: &binding_namespaces,
                role_ref: role_ref.as_ref(),
                target,
                path,
            };
            result = walk(&mut obj, &segments, false, Create::Nothing, &mut |node| {
                ctx.set(node, &mut referrals)
            })
            .map_err(|e| {
                format!(
                    "updating name reference in '{path}' field of '{}': {e}",
                    ids.cur[i].id_string()
                )
            });
            if result.is_err() {
                break;
            }
        }
        resources[i].obj = obj;
        result?;
        let by = ids.cur[i].id_string();
        for r in referrals {
            resources[r].ref_by.push(by.clone());
        }
    }
    Ok(())
}

fn role_ref_gvk(r: &Resource) -> Option<Gvk> {
    let role_ref = r.obj.get("roleRef")?;
    Some(Gvk {
        group: role_ref.get("apiGroup")?.as_str()?.to_string(),
        version: String::new(),
        kind: role_ref.get("kind")?.as_str()?.to_string(),
    })
}

/// For a RoleBinding, the namespaces of its ServiceAccount subjects: resources there may be
/// referred to across namespaces.
fn binding_namespaces(r: &Resource, id: &ResId) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    if r.kind() == "RoleBinding"
        && let Some(Value::Array(subjects)) = r.obj.get("subjects")
    {
        for s in subjects {
            if s.get("kind").and_then(Value::as_str) == Some("ServiceAccount")
                && let Some(ns) = s.get("namespace")
            {
                match ns.as_str() {
                    Some(n) => out.push(n.to_string()),
                    None => {
                        return Err(format!(
                            "Invalid Input: namespace is blank for resource \"{}\"",
                            id.id_string()
                        ));
                    }
                }
            }
        }
    }
    Ok(out)
}

struct Ctx<'a> {
    all: &'a [Resource],
    ids: &'a Ids,
    referrer: usize,
    binding_namespaces: &'a [String],
    role_ref: Option<&'a Gvk>,
    target: &'a Gvk,
    path: &'a str,
}

impl Ctx<'_> {
    /// Whether the referrer could refer to resource `j` at all: same namespace, cluster-scoped
    /// (either side), or a RoleBinding's subject namespace.
    fn could_refer_to(&self, j: usize) -> bool {
        let referrer = &self.ids.cur[self.referrer];
        if referrer.gvk.is_cluster_scoped() {
            return true;
        }
        let id = &self.ids.cur[j];
        id.gvk.is_cluster_scoped()
            || id.ns_equals(referrer)
            || self.binding_namespaces.contains(&id.namespace)
    }

    fn set(&self, node: &mut Value, referrals: &mut Vec<usize>) -> Result<(), String> {
        match node {
            Value::Null => Ok(()),
            Value::Object(_) => self.set_mapping(node, referrals),
            Value::Array(items) => {
                for item in items {
                    match item {
                        Value::Null => {}
                        Value::Object(_) => self.set_mapping(item, referrals)?,
                        Value::Array(_) => {
                            return Err("expected either a string or a map of string".into());
                        }
                        _ => self.set_scalar(item, referrals)?,
                    }
                }
                Ok(())
            }
            _ => self.set_scalar(node, referrals),
        }
    }

    fn renamed(&self, old: &str) -> Vec<usize> {
        self.ids
            .by_prev_name
            .get(old)
            .map(|v| {
                v.iter()
                    .copied()
                    .filter(|&j| self.could_refer_to(j))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn set_scalar(&self, node: &mut Value, referrals: &mut Vec<usize>) -> Result<(), String> {
        let old = crate::resource::scalar_string(node);
        let Some(r) = self.select(self.renamed(&old), false)? else {
            return Ok(());
        };
        referrals.push(r);
        let name = &self.ids.cur[r].name;
        if *name != old {
            *node = Value::String(name.clone());
        }
        Ok(())
    }

    fn set_mapping(&self, node: &mut Value, referrals: &mut Vec<usize>) -> Result<(), String> {
        let Value::Object(m) = node else {
            return Err("expect a mapping node".into());
        };
        let Some(old) = m.get("name").map(crate::resource::scalar_string) else {
            return Err("path config error; no 'name' field in node".into());
        };
        let mut candidates = self.renamed(&old);
        if let Some(ns) = m.get("namespace") {
            let ns = crate::resource::scalar_string(ns);
            let in_ns = |id: &ResId| !id.gvk.is_cluster_scoped() && id.effective_namespace() == ns;
            // Kustomize groups all candidates by original namespace and falls back to the
            // current one only when no candidate started in `ns`.
            let any_org =
                (0..self.all.len()).any(|j| self.could_refer_to(j) && in_ns(&self.ids.org[j]));
            if any_org {
                candidates.retain(|&j| in_ns(&self.ids.org[j]));
            } else {
                candidates.retain(|&j| in_ns(&self.ids.cur[j]));
            }
        }
        let Some(r) = self.select(candidates, true)? else {
            return Ok(());
        };
        referrals.push(r);
        let name = self.ids.cur[r].name.clone();
        let ns = self.ids.cur[r].namespace.clone();
        if name == old && ns.is_empty() {
            return Ok(());
        }
        m.insert("name".into(), Value::String(name));
        if !ns.is_empty() {
            m.insert("namespace".into(), Value::String(ns));
        }
        Ok(())
    }

    /// Kustomize's `selectReferral`, on candidates already known to have had the old name.
    fn select(&self, mut c: Vec<usize>, with_ns: bool) -> Result<Option<usize>, String> {
        let all = self.all;
        let ids = self.ids;
        c.retain(|&j| ids.prev[j].iter().any(|id| id.gvk.is_selected(self.target)));
        if self.path.ends_with("roleRef/name")
            && let Some(gvk) = self.role_ref
        {
            c.retain(|&j| ids.prev[j].iter().any(|id| id.gvk.is_selected(gvk)));
        }
        let referrer_id = &ids.cur[self.referrer];
        if !referrer_id.gvk.is_cluster_scoped() {
            c.retain(|&j| {
                let id = &ids.cur[j];
                id.gvk.is_cluster_scoped()
                    || id.gvk.kind == "ServiceAccount"
                    || referrer_id.ns_equals(id)
            });
        }
        if c.len() == 1 {
            return Ok(Some(c[0]));
        }
        let referrer = &all[self.referrer];
        c.retain(|&j| all[j].prefixes_suffixes_equal(referrer, true));
        if c.len() > 1 {
            c.retain(|&j| all[j].prefixes_suffixes_equal(referrer, false));
        }
        match c.len() {
            0 => Ok(None),
            1 => Ok(Some(c[0])),
            _ => {
                let first = &ids.cur[c[0]];
                let identical = c.iter().all(|&j| {
                    ids.cur[j].name == first.name
                        && (!with_ns || ids.cur[j].namespace == first.namespace)
                });
                if identical {
                    Ok(Some(c[0]))
                } else {
                    let names: Vec<String> = c.iter().map(|&j| ids.cur[j].id_string()).collect();
                    Err(format!(
                        "found multiple possible referrals: {}",
                        names.join(", ")
                    ))
                }
            }
        }
    }
}
