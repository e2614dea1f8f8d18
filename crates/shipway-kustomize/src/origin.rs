//! `buildMetadata`: where each resource came from (`config.kubernetes.io/origin`) and which
//! transformers touched it (`alpha.config.kubernetes.io/transformations`).

/// A resource's or a plugin's origin, in kustomize's field order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    pub path: String,
    pub configured_in: String,
    /// apiVersion, kind, name, namespace of the configuring plugin.
    pub configured_by: Option<[String; 4]>,
}

impl Origin {
    /// The origin of a file read under this one.
    pub fn append(&self, path: &str) -> Origin {
        Origin {
            path: go_join(&self.path, path),
            ..self.clone()
        }
    }

    /// The origin of a built-in plugin configured in the kustomization file `file`.
    pub fn builtin(&self, file: &str, kind: &str) -> Origin {
        Origin {
            path: String::new(),
            configured_in: go_join(&self.path, file),
            configured_by: Some(["builtin".into(), kind.into(), String::new(), String::new()]),
        }
    }

    fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.path.is_empty() {
            out.push(format!("path: {}", self.path));
        }
        if !self.configured_in.is_empty() {
            out.push(format!("configuredIn: {}", self.configured_in));
        }
        if let Some(by) = &self.configured_by {
            out.push("configuredBy:".into());
            for (k, v) in ["apiVersion", "kind", "name", "namespace"].iter().zip(by) {
                if !v.is_empty() {
                    out.push(format!("  {k}: {v}"));
                }
            }
        }
        out
    }

    /// The annotation text (YAML, as kyaml marshals it).
    pub fn to_yaml(&self) -> String {
        let mut s = String::new();
        for l in self.lines() {
            s.push_str(&l);
            s.push('\n');
        }
        s
    }
}

/// A list of origins as kyaml marshals it.
pub fn list_to_yaml(list: &[Origin]) -> String {
    let mut s = String::new();
    for o in list {
        for (i, l) in o.lines().into_iter().enumerate() {
            s.push_str(if i == 0 { "- " } else { "  " });
            s.push_str(&l);
            s.push('\n');
        }
    }
    s
}

/// Go's `filepath.Join`: joined and cleaned lexically, `..` kept where nothing is left to pop.
pub fn go_join(a: &str, b: &str) -> String {
    let joined = match (a.is_empty(), b.is_empty()) {
        (true, true) => return String::new(),
        (true, false) => b.to_string(),
        (false, true) => a.to_string(),
        (false, false) => format!("{a}/{b}"),
    };
    let rooted = joined.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for p in joined.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let body = parts.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".into(),
        (false, false) => body,
    }
}
