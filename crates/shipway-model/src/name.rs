//! Object name rules (DNS-1123), as the Kubernetes API server checks them. (Stub: being written.)

/// Checks `name` as a DNS-1123 subdomain; the error says what is wrong and what is expected.
pub fn validate_object_name(name: &str) -> Result<(), String> {
    let _ = name;
    unimplemented!()
}

/// Checks a namespace name (a DNS-1123 label).
pub fn validate_namespace(name: &str) -> Result<(), String> {
    let _ = name;
    unimplemented!()
}
