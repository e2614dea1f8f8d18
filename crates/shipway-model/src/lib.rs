//! Shipway's object model: Kubernetes-shaped objects and everything that can be said about them
//! without doing IO.
//!
//! Newcomers: start with [`Object`] (the envelope every resource shares), then [`kinds`] (which kinds
//! Shipway knows, their short names and scope), then [`load`] (turning YAML/JSON text into objects
//! with `file:line:col` errors).
//!
//! *Architecture Invariant*: this crate does no IO. Callers read files; this crate parses text.

pub mod kinds;
pub mod load;
pub mod name;
pub mod object;
pub mod selector;

pub use kinds::{KindInfo, Kinds};
pub use load::{LoadError, Loaded, load_str};
pub use object::{Key, Object, ObjectMeta, OwnerReference};
pub use selector::{Selector, SelectorError};
