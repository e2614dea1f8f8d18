//! Name rules for objects, namespaces, labels and annotations, as the Kubernetes API server checks them.
//!
//! Every function returns `Err(message)` with a message that quotes the input, says what is wrong and
//! what is allowed, ready to be prefixed with a position by the caller.

/// Longest DNS-1123 subdomain: most object names.
pub const MAX_NAME_LEN: usize = 253;
/// Longest DNS-1123 or DNS-1035 label: namespaces, Services, label names and values.
pub const MAX_LABEL_LEN: usize = 63;

const SUBDOMAIN_RULE: &str = "must consist of lower case alphanumeric characters, '-' or '.', and must \
     start and end with an alphanumeric character (e.g. 'example.com')";
const DNS1123_LABEL_RULE: &str = "must consist of lower case alphanumeric characters or '-', and must \
     start and end with an alphanumeric character (e.g. 'my-name', or '123-abc')";
const DNS1035_LABEL_RULE: &str = "must consist of lower case alphanumeric characters or '-', start with \
     an alphabetic character, and end with an alphanumeric character (e.g. 'my-name', or 'abc-123')";
const QUALIFIED_NAME_RULE: &str = "must be a name of alphanumeric characters, '-', '_' or '.' that starts \
     and ends with an alphanumeric character, with an optional DNS subdomain prefix and '/' (e.g. \
     'app', 'my.name' or 'example.com/my-name')";
const CONFIG_KEY_RULE: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or \
     '.' (e.g. 'key.name', or 'KEY_NAME', or 'key-name')";
const LABEL_VALUE_RULE: &str = "must be empty or consist of alphanumeric characters, '-', '_' or '.', \
     and must start and end with an alphanumeric character (e.g. 'MyValue', or 'my_value', or '12345')";

/// Checks `name` as a DNS-1123 subdomain, the rule for most object names.
pub fn validate_object_name(name: &str) -> Result<(), String> {
    check_subdomain(name, "name")
}

/// Checks a namespace name (a DNS-1123 label: like a subdomain, but no dots and at most 63 characters).
pub fn validate_namespace(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!(
            "a namespace name must not be empty; it {DNS1123_LABEL_RULE}"
        ));
    }
    if name.len() > MAX_LABEL_LEN {
        return Err(too_long(name, "namespace name", MAX_LABEL_LEN));
    }
    if !is_dns1123_label(name) {
        return Err(format!(
            "{} is not a valid namespace name: {DNS1123_LABEL_RULE}",
            show(name)
        ));
    }
    Ok(())
}

/// Checks a DNS-1035 label, the rule for Service names (they become DNS names, which may not start
/// with a digit).
pub fn validate_dns1035_label(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("a name must not be empty; it {DNS1035_LABEL_RULE}"));
    }
    if name.len() > MAX_LABEL_LEN {
        return Err(too_long(name, "name", MAX_LABEL_LEN));
    }
    if !is_dns1123_label(name) || !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(format!(
            "{} is not a valid name: {DNS1035_LABEL_RULE}",
            show(name)
        ));
    }
    Ok(())
}

/// Checks a name that only has to be usable as one URL path segment, the rule for RBAC kinds (so
/// that `system:controller:foo` is a valid ClusterRole name).
pub fn validate_path_segment_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a name must not be empty".to_string());
    }
    if name == "." || name == ".." {
        return Err(format!(
            "{} is not a valid name: may not be '.' or '..'",
            show(name)
        ));
    }
    if let Some(c) = name.chars().find(|c| matches!(c, '/' | '%')) {
        return Err(format!(
            "{} is not a valid name: may not contain '{c}'",
            show(name)
        ));
    }
    Ok(())
}

/// Checks `name` with the rule the Kubernetes API server uses for this kind: a DNS-1035 label for
/// Services, a DNS-1123 label for Namespaces and Repositories, a path segment for RBAC kinds, and a DNS-1123
/// subdomain for everything else (custom resources included).
pub fn validate_name_for_kind(group: &str, kind: &str, name: &str) -> Result<(), String> {
    match (group, kind) {
        ("", "Namespace") => validate_namespace(name),
        ("", "Service") => validate_dns1035_label(name),
        // A Repository's name is a path segment of its URL (`/git/NAME.git`) and a directory.
        ("shipway.dev", "Repository") => validate_dns1123_label(name),
        (
            "rbac.authorization.k8s.io",
            "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding",
        ) => validate_path_segment_name(name),
        _ => validate_object_name(name),
    }
}

/// Checks a label key: an optional DNS-1123 subdomain prefix and `/`, then a name of at most 63
/// characters.
pub fn validate_label_key(key: &str) -> Result<(), String> {
    check_qualified_name(key, "label key")
}

/// Checks an annotation key; the rule is the same as for label keys.
pub fn validate_annotation_key(key: &str) -> Result<(), String> {
    check_qualified_name(key, "annotation key")
}

/// Checks a finalizer name; the rule is the same as for label keys (`kubernetes.io/pvc-protection`).
pub fn validate_finalizer(name: &str) -> Result<(), String> {
    check_qualified_name(name, "finalizer name")
}

/// Checks a label value: empty, or at most 63 alphanumerics, `-`, `_` and `.`, starting and ending
/// with an alphanumeric.
pub fn validate_label_value(value: &str) -> Result<(), String> {
    if value.len() > MAX_LABEL_LEN {
        return Err(too_long(value, "label value", MAX_LABEL_LEN));
    }
    if !value.is_empty() && !is_qualified_part(value) {
        return Err(format!(
            "{} is not a valid label value: {LABEL_VALUE_RULE}",
            show(value)
        ));
    }
    Ok(())
}

/// Checks a DNS-1123 label, the rule for volume names (they become directory names). Returns only
/// the rule, as Kubernetes' `IsDNS1123Label` does; the caller quotes the value with its field path.
pub fn validate_dns1123_label(name: &str) -> Result<(), String> {
    if name.len() > MAX_LABEL_LEN {
        return Err(format!("must be no more than {MAX_LABEL_LEN} characters"));
    }
    if !is_dns1123_label(name) {
        return Err(format!("a lowercase RFC 1123 label {DNS1123_LABEL_RULE}"));
    }
    Ok(())
}

/// Checks a ConfigMap or Secret key, which becomes a file name in a volume: Kubernetes'
/// `IsConfigMapKey` (`[-._a-zA-Z0-9]+`, at most 253 characters, not `.`, `..` or `..`-prefixed).
/// Returns only the rule; the caller quotes the value with its field path.
pub fn validate_config_key(key: &str) -> Result<(), String> {
    if key.len() > MAX_NAME_LEN {
        return Err(format!("must be no more than {MAX_NAME_LEN} characters"));
    }
    if key.is_empty()
        || !key
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    {
        return Err(CONFIG_KEY_RULE.to_string());
    }
    match key {
        "." => Err("must not be '.'".to_string()),
        ".." => Err("must not be '..'".to_string()),
        _ if key.starts_with("..") => Err("must not start with '..'".to_string()),
        _ => Ok(()),
    }
}

fn check_subdomain(name: &str, what: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("a {what} must not be empty; it {SUBDOMAIN_RULE}"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(too_long(name, what, MAX_NAME_LEN));
    }
    if !name.split('.').all(is_dns1123_label) {
        return Err(format!(
            "{} is not a valid {what}: {SUBDOMAIN_RULE}",
            show(name)
        ));
    }
    Ok(())
}

fn check_qualified_name(key: &str, what: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return Err(format!(
                "{} is not a valid {what}: the prefix before '/' must not be empty; a {what} {QUALIFIED_NAME_RULE}",
                show(key)
            ));
        }
        if let Err(e) = check_subdomain(prefix, "prefix") {
            return Err(format!("{} is not a valid {what}: {e}", show(key)));
        }
    }
    if name.is_empty() {
        return Err(format!(
            "{} is not a valid {what}: the name part must not be empty; a {what} {QUALIFIED_NAME_RULE}",
            show(key)
        ));
    }
    if name.len() > MAX_LABEL_LEN {
        return Err(format!(
            "{} is not a valid {what}: the name part must be no more than {MAX_LABEL_LEN} characters (it has {})",
            show(key),
            name.len()
        ));
    }
    if !is_qualified_part(name) {
        return Err(format!(
            "{} is not a valid {what}: it {QUALIFIED_NAME_RULE}",
            show(key)
        ));
    }
    Ok(())
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    b.first().is_some_and(edge)
        && b.last().is_some_and(edge)
        && b.iter().all(|c| edge(c) || *c == b'-')
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`
fn is_qualified_part(s: &str) -> bool {
    let b = s.as_bytes();
    b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn too_long(s: &str, what: &str, max: usize) -> String {
    format!(
        "{} is not a valid {what}: must be no more than {max} characters (it has {})",
        show(s),
        s.len()
    )
}

/// The input, quoted with escapes, and shortened so a megabyte of garbage makes a readable error.
fn show(s: &str) -> String {
    const KEEP: usize = 64;
    match s.char_indices().nth(KEEP) {
        Some((cut, _)) => format!("{:?}...", &s[..cut]),
        None => format!("{s:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Check = fn(&str) -> Result<(), String>;

    fn check_table(f: Check, cases: &[(&str, Result<(), &str>)]) {
        for (input, want) in cases {
            let got = f(input);
            match (want, &got) {
                (Ok(()), Ok(())) => {}
                (Err(fragment), Err(msg)) if msg.contains(fragment) => {}
                _ => panic!("{input:?}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn object_names_are_dns1123_subdomains() {
        let long = "a".repeat(254);
        check_table(
            validate_object_name,
            &[
                ("web", Ok(())),
                ("web-1.example.com", Ok(())),
                ("0abc", Ok(())),
                (&long[..253], Ok(())),
                (
                    "a/b",
                    Err(
                        r#""a/b" is not a valid name: must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com')"#,
                    ),
                ),
                (
                    "a%2Fb",
                    Err(r#""a%2Fb" is not a valid name: must consist of lower case"#),
                ),
                (".", Err(r#""." is not a valid name"#)),
                ("..", Err(r#"".." is not a valid name"#)),
                (
                    "Web",
                    Err(r#""Web" is not a valid name: must consist of lower case"#),
                ),
                ("web-", Err("must start and end with an alphanumeric")),
                ("a..b", Err("is not a valid name")),
                ("a_b", Err("is not a valid name")),
                ("", Err("a name must not be empty; it must consist of")),
                (
                    &long,
                    Err("must be no more than 253 characters (it has 254)"),
                ),
            ],
        );
    }

    #[test]
    fn namespaces_are_dns1123_labels() {
        check_table(
            validate_namespace,
            &[
                ("prod", Ok(())),
                ("team-a1", Ok(())),
                (
                    "a.b",
                    Err(
                        r#""a.b" is not a valid namespace name: must consist of lower case alphanumeric characters or '-'"#,
                    ),
                ),
                ("-a", Err("is not a valid namespace name")),
                (
                    &"a".repeat(64),
                    Err("must be no more than 63 characters (it has 64)"),
                ),
                ("", Err("must not be empty")),
            ],
        );
    }

    #[test]
    fn names_depend_on_the_kind() {
        let rbac = "rbac.authorization.k8s.io";
        assert_eq!(
            validate_name_for_kind(rbac, "ClusterRole", "system:controller:x"),
            Ok(())
        );
        assert!(
            validate_name_for_kind(rbac, "ClusterRole", "a/b")
                .is_err_and(|e| e.contains("may not contain '/'"))
        );
        assert!(
            validate_name_for_kind(rbac, "Role", "..")
                .is_err_and(|e| e.contains("may not be '.' or '..'"))
        );
        assert!(
            validate_name_for_kind(rbac, "Role", "a%b")
                .is_err_and(|e| e.contains("may not contain '%'"))
        );
        assert!(
            validate_name_for_kind("", "Service", "1web")
                .is_err_and(|e| e.contains("start with an alphabetic"))
        );
        assert_eq!(validate_name_for_kind("", "Service", "web"), Ok(()));
        assert!(validate_name_for_kind("", "Namespace", "a.b").is_err());
        assert_eq!(validate_name_for_kind("apps", "Deployment", "a.b"), Ok(()));
        assert!(validate_name_for_kind("example.com", "Widget", "system:x").is_err());
    }

    #[test]
    fn label_keys_are_qualified_names() {
        let long = "a".repeat(64);
        let long_key = format!("example.com/{long}");
        check_table(
            validate_label_key,
            &[
                ("app", Ok(())),
                ("App_Name.v2", Ok(())),
                ("app.kubernetes.io/name", Ok(())),
                ("example.com/Tier", Ok(())),
                ("a/b/c", Err(r#""a/b/c" is not a valid label key"#)),
                ("/app", Err("the prefix before '/' must not be empty")),
                ("example.com/", Err("the name part must not be empty")),
                (
                    "Example.com/app",
                    Err(
                        r#""Example.com/app" is not a valid label key: "Example.com" is not a valid prefix"#,
                    ),
                ),
                (
                    "-app",
                    Err(r#""-app" is not a valid label key: it must be a name of alphanumeric"#),
                ),
                ("my app", Err("is not a valid label key")),
                (
                    &long_key,
                    Err("the name part must be no more than 63 characters (it has 64)"),
                ),
                ("", Err("the name part must not be empty")),
            ],
        );
    }

    #[test]
    fn label_values() {
        check_table(
            validate_label_value,
            &[
                ("", Ok(())),
                ("v1.2_3-x", Ok(())),
                ("Frontend", Ok(())),
                (
                    "a b",
                    Err(
                        r#""a b" is not a valid label value: must be empty or consist of alphanumeric"#,
                    ),
                ),
                ("-a", Err("is not a valid label value")),
                ("a/b", Err("is not a valid label value")),
                (
                    &"a".repeat(64),
                    Err("must be no more than 63 characters (it has 64)"),
                ),
            ],
        );
    }

    #[test]
    fn long_inputs_are_shortened_in_messages() {
        let e = validate_label_value(&"é".repeat(1000)).unwrap_err();
        assert!(e.len() < 300, "{e}");
    }
}
