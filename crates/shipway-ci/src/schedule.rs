//! `on: schedule`: cron lines (UTC, [`shipway_pipeline::cron`]) of the workflows on the latest
//! commit of each hosted repository's default branch, fired at their minute by the controller
//! [`Clock`] (so paused-time tests see a fire at the exact minute and not before). Each fire
//! makes one `WorkflowRun` (event `schedule`, `github.event.schedule` the cron line, the
//! branch tip as commit, its committer as actor, as GitHub names the actor). The table is
//! read again whenever a push lands; a fire missed while the server was down (or asleep) is
//! not replayed, as GitHub replays none.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use shipway_controller::Clock;
use shipway_git::Repo;
use shipway_git::hosted::Hosted;
use shipway_model::Object;
use shipway_model::types::repository::{self, RepositorySpec};
use shipway_model::types::workflow_run::WorkflowRunSpec;
use shipway_pipeline::cron::Cron;
use shipway_pipeline::load::load_from;
use shipway_store::{ListQuery, Store};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::trigger::{commit_facts, next_run_number, run_object, workflow_files};
use crate::{ACTOR, CiError};

/// The annotation a scheduled run carries: the minute it fired for (RFC 3339, UTC).
pub const SCHEDULED_FOR: &str = "shipway.dev/scheduled-for";

/// How late a fire may still happen: past this the minute counts as missed.
const LATE: Duration = Duration::from_secs(60);

/// One cron line of one workflow at a repository's default-branch tip.
#[derive(Clone, Debug)]
pub struct Entry {
    pub namespace: String,
    pub repository: String,
    pub workflow: String,
    pub cron: Cron,
    pub git_ref: String,
    pub sha: String,
}

/// A repository's schedules, read at `sha` (read again only when the tip moves).
struct Read {
    sha: String,
    entries: Vec<Entry>,
}

/// Fires the schedules of every hosted repository until `shutdown`.
pub async fn run(store: Store, hosted: Arc<Hosted>, clock: Clock, shutdown: CancellationToken) {
    let mut pushes = hosted.pushes();
    let mut known: HashMap<String, Read> = HashMap::new();
    // The first minute not yet considered: never one before the start (no replay).
    let mut cursor = ceil_minute(clock.now());
    loop {
        let entries = match refresh(&store, &hosted, &mut known).await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "reading workflow schedules");
                Vec::new()
            }
        };
        let next = entries
            .iter()
            .filter_map(|e| next_fire(&e.cron, cursor))
            .min();
        let wait = match next {
            Some(at) => (at - clock.now()).try_into().unwrap_or(Duration::ZERO),
            // Nothing scheduled: a push may add something.
            None => Duration::from_secs(24 * 3600),
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            // Any push may move a default branch (or create a repository): read again.
            r = pushes.recv() => {
                if matches!(r, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                    return;
                }
                continue;
            }
            () = clock.sleep(wait) => {}
        }
        let Some(at) = next else { continue };
        let now = clock.now();
        if now < at {
            continue;
        }
        cursor = at + time::Duration::MINUTE;
        if (now - at) > LATE {
            tracing::info!(minute = %format_minute(at), "schedule missed (the server was not running); not replayed");
            cursor = ceil_minute(now);
            continue;
        }
        // The table as it is at the fire: a push just before counts.
        let entries = refresh(&store, &hosted, &mut known)
            .await
            .unwrap_or(entries);
        for e in entries.iter().filter(|e| fires_at(&e.cron, at)) {
            if let Err(err) = fire(&store, &hosted, e, at).await {
                tracing::warn!(repository = %e.repository, workflow = %e.workflow, cron = %e.cron.line(), error = %err, "scheduled run");
            }
        }
    }
}

/// The schedules of every hosted repository's default-branch tip, reading a repository's
/// workflow files only when its tip moved.
async fn refresh(
    store: &Store,
    hosted: &Arc<Hosted>,
    known: &mut HashMap<String, Read>,
) -> Result<Vec<Entry>, CiError> {
    let repos = store
        .list(&ListQuery::kind(repository::GROUP, repository::KIND))
        .await?;
    let mut all = Vec::new();
    let mut seen = Vec::new();
    for repo in repos.items {
        if !repo
            .spec_as::<RepositorySpec>()
            .is_ok_and(|s| s.is_hosted())
        {
            continue;
        }
        let name = repo.metadata.name.clone();
        // Of hosted Repositories of one name, the owner's is the one served.
        match hosted.owner(&name).await? {
            Some(owner) if owner.key() == repo.key() => {}
            _ => continue,
        }
        let namespace = repo
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let dir = hosted.dir(&name)?;
        let tip = tokio::task::spawn_blocking(move || Repo::open(&dir)?.resolve("HEAD"))
            .await
            .map_err(|e| CiError::Other(format!("reading {name}'s default branch: {e}")))?;
        // An empty repository (nothing pushed yet) has no schedules.
        let Ok(tip) = tip else { continue };
        seen.push(name.clone());
        if known.get(&name).is_some_and(|r| r.sha == tip.sha) {
            all.extend(known[&name].entries.iter().cloned());
            continue;
        }
        let entries = read_entries(hosted, &namespace, &name, &tip.name, &tip.sha).await?;
        all.extend(entries.iter().cloned());
        known.insert(
            name,
            Read {
                sha: tip.sha,
                entries,
            },
        );
    }
    known.retain(|name, _| seen.contains(name));
    Ok(all)
}

/// The cron lines of the workflows at `sha` that declare `on: schedule`. A workflow that does
/// not load is left out: its push already showed it failing.
async fn read_entries(
    hosted: &Hosted,
    namespace: &str,
    repository: &str,
    git_ref: &str,
    sha: &str,
) -> Result<Vec<Entry>, CiError> {
    let dir = hosted.dir(repository)?;
    let at = sha.to_string();
    let loaded = tokio::task::spawn_blocking(move || {
        let tree = Repo::open(&dir)?.tree(&at)?;
        Ok::<_, shipway_git::Error>(
            workflow_files(&tree)
                .into_iter()
                .map(|f| load_from(&tree, Path::new("/"), &f))
                .collect::<Vec<_>>(),
        )
    })
    .await
    .map_err(|e| CiError::Other(format!("reading {repository}'s workflows: {e}")))??;
    let mut entries = Vec::new();
    for bundle in loaded {
        let Some(w) = &bundle.workflow else { continue };
        let Some(event) = w.on.events.get("schedule") else {
            continue;
        };
        for line in &event.crons {
            match Cron::parse(line) {
                Ok(cron) => entries.push(Entry {
                    namespace: namespace.to_string(),
                    repository: repository.to_string(),
                    workflow: bundle.path.clone(),
                    cron,
                    git_ref: git_ref.to_string(),
                    sha: sha.to_string(),
                }),
                Err(why) => {
                    tracing::warn!(workflow = %bundle.path, %why, "schedule not fired");
                }
            }
        }
    }
    Ok(entries)
}

/// Makes the run of one fire.
async fn fire(
    store: &Store,
    hosted: &Hosted,
    e: &Entry,
    at: OffsetDateTime,
) -> Result<Object, CiError> {
    let dir = hosted.dir(&e.repository)?;
    let sha = e.sha.clone();
    let head = tokio::task::spawn_blocking(move || commit_facts(&dir, &sha))
        .await
        .map_err(|err| CiError::Other(format!("reading {}: {err}", e.sha)))?;
    // GitHub names the user who last changed the cron line; the tip's committer is the
    // nearest fact a commit holds.
    let actor = head["committer"]["name"]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or(ACTOR)
        .to_string();
    let stem = crate::trigger::workflow_stem(&e.workflow);
    let number = next_run_number(store, &e.namespace, &e.repository, &stem).await?;
    let spec = WorkflowRunSpec {
        repository: e.repository.clone(),
        workflow: e.workflow.clone(),
        event: "schedule".into(),
        git_ref: e.git_ref.clone(),
        head_sha: e.sha.clone(),
        actor,
        run_number: number,
        run_attempt: 1,
        ..WorkflowRunSpec::default()
    };
    let payload = json!({
        "schedule": e.cron.line(),
        "workflow": e.workflow,
        "repository": {
            "name": e.repository,
            "full_name": e.repository,
            "clone_url": hosted.clone_url(&e.repository),
        },
    });
    let mut obj = run_object(&e.namespace, &spec, payload);
    obj.metadata
        .annotations
        .insert(SCHEDULED_FOR.into(), format_minute(at));
    Ok(store.create(obj, ACTOR).await?)
}

/// `t` rounded up to a whole minute (itself when it is one).
fn ceil_minute(t: OffsetDateTime) -> OffsetDateTime {
    let floor = t
        .replace_second(0)
        .and_then(|t| t.replace_nanosecond(0))
        .unwrap_or(t);
    if floor == t {
        t
    } else {
        floor + time::Duration::MINUTE
    }
}

fn format_minute(t: OffsetDateTime) -> String {
    shipway_controller::clock::format_timestamp(t)
}

/// Whether `cron` fires at minute `t` (UTC).
pub fn fires_at(cron: &Cron, t: OffsetDateTime) -> bool {
    let t = t.to_offset(time::UtcOffset::UTC);
    cron.matches(
        u32::from(t.minute()),
        u32::from(t.hour()),
        u32::from(t.day()),
        u32::from(u8::from(t.month())),
        u32::from(t.weekday().number_days_from_sunday()),
    )
}

/// The first minute at or after `from` (a whole minute, UTC) at which `cron` fires; `None`
/// when it fires on no day of the next five years (`0 0 30 2 *`).
pub fn next_fire(cron: &Cron, from: OffsetDateTime) -> Option<OffsetDateTime> {
    let from = ceil_minute(from.to_offset(time::UtcOffset::UTC));
    let end = from + time::Duration::days(5 * 366);
    let mut t = from;
    while t < end {
        let day_ok = cron.day_matches(
            u32::from(t.day()),
            u32::from(u8::from(t.month())),
            u32::from(t.weekday().number_days_from_sunday()),
        );
        if !day_ok {
            // The next midnight.
            t = t.replace_time(time::Time::MIDNIGHT) + time::Duration::DAY;
            continue;
        }
        if !cron.hour_matches(u32::from(t.hour())) {
            t = t.replace_time(time::Time::MIDNIGHT)
                + time::Duration::hours(i64::from(t.hour()) + 1);
            continue;
        }
        if fires_at(cron, t) {
            return Some(t);
        }
        t += time::Duration::MINUTE;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn next(line: &str, from: OffsetDateTime) -> Option<OffsetDateTime> {
        next_fire(&Cron::parse(line).unwrap(), from)
    }

    #[test]
    fn next_fire_is_the_first_matching_minute_at_or_after() {
        let from = datetime!(2026-01-05 10:07:30 UTC);
        assert_eq!(
            next("*/15 * * * *", from),
            Some(datetime!(2026-01-05 10:15 UTC))
        );
        assert_eq!(
            next("*/15 * * * *", datetime!(2026-01-05 10:15 UTC)),
            Some(datetime!(2026-01-05 10:15 UTC))
        );
        // 2026-01-05 is a Monday: the next Friday 09:00.
        assert_eq!(
            next("0 9 * * FRI", from),
            Some(datetime!(2026-01-09 09:00 UTC))
        );
        assert_eq!(
            next("30 23 31 12 *", from),
            Some(datetime!(2026-12-31 23:30 UTC))
        );
        // Leap day: 2028.
        assert_eq!(
            next("0 0 29 2 *", from),
            Some(datetime!(2028-02-29 00:00 UTC))
        );
        assert_eq!(next("0 0 30 2 *", from), None);
    }

    #[test]
    fn ceil_minute_keeps_whole_minutes() {
        assert_eq!(
            ceil_minute(datetime!(2026-01-05 10:07:00 UTC)),
            datetime!(2026-01-05 10:07 UTC)
        );
        assert_eq!(
            ceil_minute(datetime!(2026-01-05 10:07:00.001 UTC)),
            datetime!(2026-01-05 10:08 UTC)
        );
    }
}
