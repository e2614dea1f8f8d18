//! Shipway's object model: Kubernetes-shaped objects and everything that can be said about them
//! without doing IO.
//!
//! Newcomers: start with [`Object`] (the envelope every resource shares), then [`kinds`] (which kinds
//! Shipway knows, their short names and scope), then [`load`] (turning YAML/JSON text into objects
//! with `file:line:col` errors), [`name`] (the naming rules), [`selector`] (label selectors) and
//! [`types`] (typed views of the kinds controllers act on).
//!
//! *Architecture Invariant*: this crate does no IO. Callers read files; this crate parses text.

pub mod admit;
pub mod columns;
pub mod crd;
pub mod exposition;
pub mod health;
pub mod kinds;
pub mod load;
pub mod name;
pub mod object;
pub mod patch;
pub mod selector;
pub mod types;
pub mod validate;

pub use admit::{Invalid, admit};
pub use kinds::{KindInfo, Kinds};
pub use load::{Document, LoadError, Loaded, load_json_object, load_str, parse_documents};
pub use object::{Actor, GroupKind, Key, Object, ObjectMeta, OwnerReference};
pub use patch::{merge_diff, merge_patch};
pub use selector::{Operator, Requirement, Selector, SelectorError};
