//! The kinds Shipway knows: group, plural, short names and scope, as `kubectl api-resources` shows them.

/// What Shipway knows about one kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KindInfo {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub short_names: &'static [&'static str],
    pub namespaced: bool,
}

impl KindInfo {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

macro_rules! kind {
    ($group:expr, $version:expr, $kind:expr, $plural:expr, [$($short:expr),*], $namespaced:expr) => {
        KindInfo {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            short_names: &[$($short),*],
            namespaced: $namespaced,
        }
    };
}

/// The built-in table. Kinds not listed here are accepted and treated as namespaced, the way most
/// custom resources are; their name is matched case-insensitively by kind, plural or `kind.group`.
#[rustfmt::skip] // One kind per line reads as the table it is.
const BUILTIN: &[KindInfo] = &[
    kind!("", "v1", "ConfigMap", "configmaps", ["cm"], true),
    kind!("", "v1", "Endpoints", "endpoints", ["ep"], true),
    kind!("", "v1", "Event", "events", ["ev"], true),
    kind!("", "v1", "LimitRange", "limitranges", ["limits"], true),
    kind!("", "v1", "Namespace", "namespaces", ["ns"], false),
    kind!("", "v1", "Node", "nodes", ["no"], false),
    kind!("", "v1", "PersistentVolume", "persistentvolumes", ["pv"], false),
    kind!("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", ["pvc"], true),
    kind!("", "v1", "Pod", "pods", ["po"], true),
    kind!("", "v1", "PodTemplate", "podtemplates", [], true),
    kind!("", "v1", "ReplicationController", "replicationcontrollers", ["rc"], true),
    kind!("", "v1", "ResourceQuota", "resourcequotas", ["quota"], true),
    kind!("", "v1", "Secret", "secrets", [], true),
    kind!("", "v1", "Service", "services", ["svc"], true),
    kind!("", "v1", "ServiceAccount", "serviceaccounts", ["sa"], true),
    kind!("apps", "v1", "ControllerRevision", "controllerrevisions", [], true),
    kind!("apps", "v1", "DaemonSet", "daemonsets", ["ds"], true),
    kind!("apps", "v1", "Deployment", "deployments", ["deploy"], true),
    kind!("apps", "v1", "ReplicaSet", "replicasets", ["rs"], true),
    kind!("apps", "v1", "StatefulSet", "statefulsets", ["sts"], true),
    kind!("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", ["hpa"], true),
    kind!("batch", "v1", "CronJob", "cronjobs", ["cj"], true),
    kind!("batch", "v1", "Job", "jobs", [], true),
    kind!("networking.k8s.io", "v1", "Ingress", "ingresses", ["ing"], true),
    kind!("networking.k8s.io", "v1", "IngressClass", "ingressclasses", [], false),
    kind!("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", ["netpol"], true),
    kind!("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", ["pdb"], true),
    kind!("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", [], false),
    kind!("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", [], false),
    kind!("rbac.authorization.k8s.io", "v1", "Role", "roles", [], true),
    kind!("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", [], true),
    kind!("storage.k8s.io", "v1", "StorageClass", "storageclasses", ["sc"], false),
    kind!("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", ["crd", "crds"], false),
    kind!("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration", "mutatingwebhookconfigurations", [], false),
    kind!("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration", "validatingwebhookconfigurations", [], false),
    kind!("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", ["pc"], false),
    kind!("argoproj.io", "v1alpha1", "Application", "applications", ["app", "apps"], true),
    kind!("argoproj.io", "v1alpha1", "ApplicationSet", "applicationsets", ["appset", "appsets"], true),
    kind!("argoproj.io", "v1alpha1", "AppProject", "appprojects", ["appproj", "appprojs"], true),
    kind!("argoproj.io", "v1alpha1", "Rollout", "rollouts", ["ro"], true),
    kind!("argoproj.io", "v1alpha1", "AnalysisTemplate", "analysistemplates", [], true),
    kind!("argoproj.io", "v1alpha1", "ClusterAnalysisTemplate", "clusteranalysistemplates", [], false),
    kind!("argoproj.io", "v1alpha1", "AnalysisRun", "analysisruns", ["ar"], true),
    kind!("argoproj.io", "v1alpha1", "Experiment", "experiments", ["exp"], true),
    kind!("shipway.dev", "v1alpha1", "TrafficPolicy", "trafficpolicies", ["tp"], true),
    kind!("shipway.dev", "v1alpha1", "Repository", "repositories", ["repo", "repos"], true),
    kind!("shipway.dev", "v1alpha1", "WorkflowRun", "workflowruns", ["run", "runs", "wfr"], true),
    kind!("shipway.dev", "v1alpha1", "Environment", "environments", ["env", "envs"], true),
];

/// Lookup over the built-in kinds table.
#[derive(Clone, Copy, Debug, Default)]
pub struct Kinds;

impl Kinds {
    pub fn all() -> &'static [KindInfo] {
        BUILTIN
    }

    /// The kind with this exact group and kind name.
    pub fn get(group: &str, kind: &str) -> Option<&'static KindInfo> {
        BUILTIN.iter().find(|k| k.group == group && k.kind == kind)
    }

    /// Whether objects of this kind live in a namespace. Unknown kinds are namespaced.
    pub fn is_namespaced(group: &str, kind: &str) -> bool {
        Kinds::get(group, kind).is_none_or(|k| k.namespaced)
    }

    /// Resolves what a user typed (`deploy`, `deployments`, `Deployment`, `deployments.apps`,
    /// `rollout.argoproj.io`) the way kubectl does, case-insensitively.
    pub fn resolve(name: &str) -> Option<&'static KindInfo> {
        let lower = name.to_ascii_lowercase();
        let (word, group) = match lower.split_once('.') {
            Some((w, g)) => (w.to_string(), Some(g.to_string())),
            None => (lower.clone(), None),
        };
        BUILTIN.iter().find(|k| {
            let names_match = k.kind.eq_ignore_ascii_case(&word)
                || k.plural == word
                || k.short_names.contains(&word.as_str());
            names_match && group.as_deref().is_none_or(|g| g == k.group)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_like_kubectl() {
        for (typed, kind) in [
            ("deploy", "Deployment"),
            ("deployments", "Deployment"),
            ("Deployment", "Deployment"),
            ("deployments.apps", "Deployment"),
            ("svc", "Service"),
            ("cm", "ConfigMap"),
            ("rollout.argoproj.io", "Rollout"),
            ("NS", "Namespace"),
        ] {
            assert_eq!(Kinds::resolve(typed).map(|k| k.kind), Some(kind), "{typed}");
        }
        assert!(Kinds::resolve("deployments.batch").is_none());
        assert!(!Kinds::is_namespaced("", "Namespace"));
        assert!(Kinds::is_namespaced("example.com", "Widget"));
    }

    #[test]
    fn table_has_no_ambiguous_names() {
        let mut seen = std::collections::HashSet::new();
        for k in Kinds::all() {
            for n in k.short_names.iter().chain([&k.plural]) {
                assert!(seen.insert((*n, k.group)), "{n} listed twice");
            }
        }
    }
}
