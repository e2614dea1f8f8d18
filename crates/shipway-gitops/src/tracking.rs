//! Argo CD's annotation tracking: `argocd.argoproj.io/tracking-id: APP:GROUP/KIND:NS/NAME`. Only
//! an object carrying the id of this app *for itself* counts as the app's, so a copied
//! annotation (the id names another object) never makes an object prunable.

use shipway_model::{Key, Object};

pub const TRACKING_ANNOTATION: &str = "argocd.argoproj.io/tracking-id";

/// The tracking id `app` writes on `obj`: `guestbook:apps/Deployment:default/web`; a
/// cluster-scoped object has an empty namespace (`app:/Namespace:/prod`), as Argo writes it.
pub fn tracking_id(app: &str, obj: &Object) -> String {
    key_id(app, &obj.key())
}

fn key_id(app: &str, key: &Key) -> String {
    format!(
        "{app}:{}/{}:{}/{}",
        key.group, key.kind, key.namespace, key.name
    )
}

/// Whether `obj` carries `app`'s tracking id for itself.
pub fn is_tracked_by(app: &str, obj: &Object) -> bool {
    obj.metadata
        .annotations
        .get(TRACKING_ANNOTATION)
        .is_some_and(|id| *id == tracking_id(app, obj))
}

/// `obj` with `app`'s tracking id set, as a sync applies it.
pub fn with_tracking_id(app: &str, mut obj: Object) -> Object {
    let id = tracking_id(app, &obj);
    obj.metadata
        .annotations
        .insert(TRACKING_ANNOTATION.to_string(), id);
    obj
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(api: &str, kind: &str, ns: Option<&str>, name: &str) -> Object {
        serde_json::from_value(serde_json::json!({
            "apiVersion": api, "kind": kind,
            "metadata": {"name": name, "namespace": ns},
        }))
        .unwrap()
    }

    #[test]
    fn ids_are_argos_and_a_copied_id_does_not_track() {
        let d = obj("apps/v1", "Deployment", Some("default"), "web");
        assert_eq!(
            tracking_id("guestbook", &d),
            "guestbook:apps/Deployment:default/web"
        );
        let ns = obj("v1", "Namespace", None, "prod");
        assert_eq!(tracking_id("a", &ns), "a:/Namespace:/prod");
        let tracked = with_tracking_id("guestbook", d.clone());
        assert!(is_tracked_by("guestbook", &tracked));
        assert!(!is_tracked_by("other", &tracked));
        assert!(!is_tracked_by("guestbook", &d));
        // The annotation copied onto another object names the first one: not tracked.
        let mut copy = obj("apps/v1", "Deployment", Some("default"), "web-copy");
        copy.metadata.annotations = tracked.metadata.annotations.clone();
        assert!(!is_tracked_by("guestbook", &copy));
    }
}
