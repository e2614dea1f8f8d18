//! Trigger matching: does an event (name, ref, changed files, activity type) start a workflow?
//! Filter patterns follow GitHub's cheat sheet: `*` stays within a path segment, `**` crosses
//! segments, `?` and `+` repeat the previous character, `[]` is a class, `!` negates, and the
//! last matching pattern wins.

use regex::Regex;

use crate::workflow::{Event, Triggers};

/// The facts about an event that filters look at.
#[derive(Clone, Debug, Default)]
pub struct EventFacts {
    pub name: String,
    /// `refs/heads/main`, `refs/tags/v1`; for pull requests the base branch's ref.
    pub git_ref: String,
    /// Changed files, when known; `None` means "unknown" and path filters pass.
    pub changed_files: Option<Vec<String>>,
    /// The activity type (`opened`, `synchronize`, ...), from the payload's `action`.
    pub action: Option<String>,
}

/// Why a workflow does or does not run for an event.
pub fn matches(triggers: &Triggers, facts: &EventFacts) -> Result<(), String> {
    let Some(event) = triggers.events.get(&facts.name) else {
        return Err(format!(
            "the workflow is not triggered by '{}' (it runs on: {})",
            facts.name,
            triggers
                .events
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    };
    if !event.types.is_empty() || facts.name.starts_with("pull_request") {
        let defaults = ["opened", "synchronize", "reopened"];
        let types: Vec<&str> = if event.types.is_empty() {
            defaults.to_vec()
        } else {
            event.types.iter().map(String::as_str).collect()
        };
        if let Some(action) = &facts.action
            && !types.contains(&action.as_str())
        {
            return Err(format!(
                "activity type '{action}' is not one of: {}",
                types.join(", ")
            ));
        }
    }
    match facts.name.as_str() {
        "push" => push_matches(event, facts),
        "pull_request" | "pull_request_target" => {
            let branch = short_ref(&facts.git_ref);
            ref_filters(branch, &event.branches, &event.branches_ignore, "branch")?;
            path_filters(event, facts)
        }
        _ => Ok(()),
    }
}

fn short_ref(r: &str) -> &str {
    r.strip_prefix("refs/heads/")
        .or_else(|| r.strip_prefix("refs/tags/"))
        .unwrap_or(r)
}

fn push_matches(event: &Event, facts: &EventFacts) -> Result<(), String> {
    let has_branch = event.branches.is_some() || event.branches_ignore.is_some();
    let has_tag = event.tags.is_some() || event.tags_ignore.is_some();
    if let Some(tag) = facts.git_ref.strip_prefix("refs/tags/") {
        if has_branch && !has_tag {
            return Err("only branch filters are set, and this is a tag push".to_string());
        }
        // Path filters are not evaluated for tag pushes.
        return ref_filters(tag, &event.tags, &event.tags_ignore, "tag");
    }
    let branch = short_ref(&facts.git_ref);
    if has_tag && !has_branch {
        return Err("only tag filters are set, and this is a branch push".to_string());
    }
    ref_filters(branch, &event.branches, &event.branches_ignore, "branch")?;
    path_filters(event, facts)
}

fn ref_filters(
    name: &str,
    include: &Option<Vec<String>>,
    ignore: &Option<Vec<String>>,
    what: &str,
) -> Result<(), String> {
    if let Some(patterns) = include
        && !filter_matches(patterns, name)
    {
        return Err(format!("{what} '{name}' does not match the {what} filters"));
    }
    if let Some(patterns) = ignore
        && filter_matches(patterns, name)
    {
        return Err(format!("{what} '{name}' matches the {what}-ignore filters"));
    }
    Ok(())
}

fn path_filters(event: &Event, facts: &EventFacts) -> Result<(), String> {
    let Some(files) = &facts.changed_files else {
        return Ok(());
    };
    if let Some(patterns) = &event.paths
        && !files.iter().any(|f| filter_matches(patterns, f))
    {
        return Err("no changed file matches the paths filters".to_string());
    }
    if let Some(patterns) = &event.paths_ignore
        && !files.is_empty()
        && files.iter().all(|f| filter_matches(patterns, f))
    {
        return Err("every changed file matches the paths-ignore filters".to_string());
    }
    Ok(())
}

/// Applies a list of patterns in order: a match sets the result, a `!` match clears it.
pub fn filter_matches(patterns: &[String], name: &str) -> bool {
    let mut matched = false;
    for p in patterns {
        let (negated, pattern) = match p.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, p.as_str()),
        };
        if glob_matches(pattern, name) {
            matched = !negated;
        }
    }
    matched
}

/// One GitHub filter pattern against a name.
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    to_regex(pattern).is_some_and(|re| re.is_match(name))
}

fn to_regex(pattern: &str) -> Option<Regex> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut re = String::from("^");
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' if chars.get(i + 1) == Some(&'*') => {
                if chars.get(i + 2) == Some(&'/') {
                    // `**/` also matches no directory at all.
                    re.push_str("(?:.*/)?");
                    i += 3;
                } else {
                    re.push_str(".*");
                    i += 2;
                }
                continue;
            }
            '*' => re.push_str("[^/]*"),
            '?' | '+' => re.push(c),
            '[' => {
                // Copy the class through to `]`.
                let end = chars[i..].iter().position(|&x| x == ']')?;
                let class: String = chars[i..=i + end].iter().collect();
                re.push_str(&class);
                i += end + 1;
                continue;
            }
            '\\' => {
                if let Some(next) = chars.get(i + 1) {
                    re.push_str(&regex::escape(&next.to_string()));
                    i += 2;
                    continue;
                }
                re.push_str("\\\\");
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
        i += 1;
    }
    re.push('$');
    Regex::new(&re).ok()
}

/// Checks a cron line as the schedule service will read it ([`crate::cron::Cron`]).
pub fn check_cron(cron: &str) -> Result<(), String> {
    crate::cron::Cron::parse(cron).map(|_| ())
}

/// Convenience for events named in `triggers`.
pub fn events(triggers: &Triggers) -> Vec<&str> {
    triggers.events.keys().map(String::as_str).collect()
}
