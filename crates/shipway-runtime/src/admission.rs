//! Admission against what the store knows: `shipway_model::admit` with the kinds of the
//! CustomResourceDefinitions applied so far. The API handler and [`crate::StoreRuntime`] both
//! write through it, so every writer is refused the same way.

use shipway_model::crd::{CustomKind, custom_kind};
use shipway_model::{Invalid, Kinds, Object};
use shipway_store::{ListQuery, Store, StoreError};

/// The kinds defined by the stored CustomResourceDefinitions (a CRD that no longer passes the
/// checks defines nothing).
pub async fn custom_kinds(store: &Store) -> Result<Vec<CustomKind>, StoreError> {
    let crds = store
        .list(&ListQuery::kind(
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
        ))
        .await?;
    Ok(crds
        .items
        .iter()
        .filter_map(|c| custom_kind(c).ok())
        .collect())
}

/// Admits `obj`; the CRDs are read only for a kind that is not built in.
pub async fn admit(store: &Store, obj: Object) -> Result<Result<Object, Invalid>, StoreError> {
    let custom = if Kinds::get(obj.group(), &obj.kind).is_some() {
        Vec::new()
    } else {
        custom_kinds(store).await?
    };
    Ok(shipway_model::admit(obj, &custom))
}
