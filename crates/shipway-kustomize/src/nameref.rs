//! Name references: after prefixes, suffixes and hashes renamed resources, the fields that
//! referred to them by their old names (a Deployment's `configMapRef`, a RoleBinding's
//! `roleRef`, ...) are updated to the new names.

use serde_json::Value;

use crate::config::{Create, NameBackRef, split_path, walk};
use crate::resource::{Gvk, ResId, Resource};

/// Updates every reference in `resources` according to `backrefs`.
pub fn fix(resources: &mut [Resource], backrefs: &[NameBackRef]) -> Result<(), String> {
    let org_ids: Vec<ResId> = resources.iter().map(Resource::org_id).collect();
    // Filters per referrer, in the order kustomize builds them.
    let mut filters: Vec<Vec<(Gvk, String)>> = vec![Vec::new(); resources.len()];
    for br in backrefs {
        for spec in &br.referrers {
            for (i, id) in org_ids.iter().enumerate() {
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
        let candidates = could_be_referenced_by(resources, i)?;
        for (target, path) in &filters[i] {
            let mut obj = resources[i].obj.clone();
            let mut referrals: Vec<usize> = Vec::new();
            let segments = split_path(path);
            let ctx = Ctx {
                all: resources,
                referrer: i,
                candidates: &candidates,
                target,
                path,
            };
            walk(&mut obj, &segments, false, Create::Nothing, &mut |node| {
                ctx.set(node, &mut referrals)
            })
            .map_err(|e| {
                format!(
                    "updating name reference in '{path}' field of '{}': {e}",
                    resources[i].cur_id().id_string()
                )
            })?;
            resources[i].obj = obj;
            let by = resources[i].cur_id().id_string();
            for r in referrals {
                resources[r].ref_by.push(by.clone());
            }
        }
    }
    Ok(())
}

/// Resources in the same namespace as the referrer, cluster-scoped ones, and for a RoleBinding
/// the namespaces of its ServiceAccount subjects.
fn could_be_referenced_by(all: &[Resource], i: usize) -> Result<Vec<usize>, String> {
    let referrer = all[i].cur_id();
    if referrer.gvk.is_cluster_scoped() {
        return Ok((0..all.len()).collect());
    }
    let mut binding_namespaces: Vec<String> = Vec::new();
    if all[i].kind() == "RoleBinding"
        && let Some(Value::Array(subjects)) = all[i].obj.get("subjects")
    {
        for s in subjects {
            if s.get("kind").and_then(Value::as_str) == Some("ServiceAccount")
                && let Some(ns) = s.get("namespace")
            {
                match ns.as_str() {
                    Some(n) => binding_namespaces.push(n.to_string()),
                    None => {
                        return Err(format!(
                            "Invalid Input: namespace is blank for resource \"{}\"",
                            referrer.id_string()
                        ));
                    }
                }
            }
        }
    }
    Ok((0..all.len())
        .filter(|&j| {
            let id = all[j].cur_id();
            id.gvk.is_cluster_scoped()
                || id.ns_equals(&referrer)
                || binding_namespaces.iter().any(|n| n == all[j].namespace())
        })
        .collect())
}

struct Ctx<'a> {
    all: &'a [Resource],
    referrer: usize,
    candidates: &'a [usize],
    target: &'a Gvk,
    path: &'a str,
}

impl Ctx<'_> {
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

    fn set_scalar(&self, node: &mut Value, referrals: &mut Vec<usize>) -> Result<(), String> {
        let old = crate::resource::scalar_string(node);
        let Some(r) = self.select(&old, self.candidates.to_vec(), false)? else {
            return Ok(());
        };
        referrals.push(r);
        let name = self.all[r].name();
        if name != old {
            *node = Value::String(name.to_string());
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
        let candidates: Vec<usize> = match m.get("namespace") {
            None => self.candidates.to_vec(),
            Some(ns) => {
                let ns = crate::resource::scalar_string(ns);
                let by_org: Vec<usize> = self
                    .candidates
                    .iter()
                    .copied()
                    .filter(|&j| {
                        let id = self.all[j].org_id();
                        !id.gvk.is_cluster_scoped() && id.effective_namespace() == ns
                    })
                    .collect();
                if !by_org.is_empty() {
                    by_org
                } else {
                    self.candidates
                        .iter()
                        .copied()
                        .filter(|&j| {
                            let id = self.all[j].cur_id();
                            !id.gvk.is_cluster_scoped() && id.effective_namespace() == ns
                        })
                        .collect()
                }
            }
        };
        let Some(r) = self.select(&old, candidates, true)? else {
            return Ok(());
        };
        referrals.push(r);
        let name = self.all[r].name().to_string();
        let ns = self.all[r].namespace().to_string();
        if name == old && ns.is_empty() {
            return Ok(());
        }
        m.insert("name".into(), Value::String(name));
        if !ns.is_empty() {
            m.insert("namespace".into(), Value::String(ns));
        }
        Ok(())
    }

    fn select(&self, old: &str, mut c: Vec<usize>, with_ns: bool) -> Result<Option<usize>, String> {
        let all = self.all;
        c.retain(|&j| all[j].prev_ids().iter().any(|id| id.name == old));
        c.retain(|&j| {
            all[j]
                .prev_ids()
                .iter()
                .any(|id| id.gvk.is_selected(self.target))
        });
        if self.path.ends_with("roleRef/name")
            && let Some(role_ref) = all[self.referrer].obj.get("roleRef")
            && let (Some(group), Some(kind)) = (
                role_ref.get("apiGroup").and_then(Value::as_str),
                role_ref.get("kind").and_then(Value::as_str),
            )
        {
            let gvk = Gvk {
                group: group.to_string(),
                version: String::new(),
                kind: kind.to_string(),
            };
            c.retain(|&j| all[j].prev_ids().iter().any(|id| id.gvk.is_selected(&gvk)));
        }
        let referrer_id = all[self.referrer].cur_id();
        if !referrer_id.gvk.is_cluster_scoped() {
            c.retain(|&j| {
                let id = all[j].cur_id();
                id.gvk.is_cluster_scoped()
                    || all[j].kind() == "ServiceAccount"
                    || referrer_id.ns_equals(&id)
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
                let first = &all[c[0]];
                let identical = c.iter().all(|&j| {
                    all[j].name() == first.name()
                        && (!with_ns || all[j].namespace() == first.namespace())
                });
                if identical {
                    Ok(Some(c[0]))
                } else {
                    let ids: Vec<String> = c.iter().map(|&j| all[j].cur_id().id_string()).collect();
                    Err(format!(
                        "found multiple possible referrals: {}",
                        ids.join(", ")
                    ))
                }
            }
        }
    }
}
