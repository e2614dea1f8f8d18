//! Environment protection rules: the gate a job with `environment:` passes before it starts.
//! The `Environment` object of the run's namespace decides (none: no protection, as on GitHub):
//! the branches and tags allowed to deploy, the reviews the run's `spec.reviews` holds for this
//! attempt (N distinct approvals from eligible reviewers, never the run's own actor unless the
//! environment allows self-review; one rejection fails the job), and the wait timer, counted
//! from when the job first asked. The gate re-reads the run whenever the scheduler sees it
//! change (a review was added) and when the wait timer ends, and tells the job's status what it
//! still waits for. An admitted job gets the environment's secrets and variables, which the
//! recorder masks before the job can print them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use shipway_controller::Clock;
use shipway_model::Key;
use shipway_model::types::EnvironmentSpec;
use shipway_model::types::environment;
use shipway_model::types::workflow_run::{APPROVED, REJECTED, Review, WorkflowRunSpec};
use shipway_pipeline::exec::{Gate, GateDecision, Grant, RunEvent, RunObserver};
use shipway_pipeline::trigger::glob_matches;
use shipway_store::Store;
use tokio::sync::Notify;

use crate::record::Recorder;
use crate::scheduler::{secrets_for, vars_for};

/// How long the gate waits before reading again after the store failed it.
const RETRY: Duration = Duration::from_secs(1);

/// The gate of one run attempt.
pub struct EnvironmentGate {
    pub store: Store,
    pub clock: Clock,
    pub run: Key,
    /// The hosted repository the run is of: environment secrets and variables are read for it.
    pub repository: String,
    /// The identity that caused the run.
    pub actor: String,
    pub git_ref: String,
    pub attempt: u64,
    /// Notified when the run object changes.
    pub wake: Arc<Notify>,
    pub recorder: Recorder,
}

/// What the rules say now.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    Admit,
    Reject(String),
    /// Not yet: why, and when to look again without a change (the wait timer's end).
    Wait(String, Option<Duration>),
}

/// Whether `ref` may deploy under the branch policy: a branch needs a branch pattern, a tag a
/// tag pattern; another ref never may. The refusal is GitHub's sentence.
pub fn branch_allowed(
    spec: &EnvironmentSpec,
    git_ref: &str,
    environment: &str,
) -> Result<(), String> {
    let Some(policy) = &spec.deployment_branch_policy else {
        return Ok(());
    };
    let (what, name, patterns) = if let Some(b) = git_ref.strip_prefix("refs/heads/") {
        ("Branch", b, &policy.branches)
    } else if let Some(t) = git_ref.strip_prefix("refs/tags/") {
        ("Tag", t, &policy.tags)
    } else {
        ("Ref", git_ref, &Vec::new())
    };
    if patterns.iter().any(|p| glob_matches(p, name)) {
        Ok(())
    } else {
        Err(format!(
            "{what} \"{name}\" is not allowed to deploy to {environment} due to environment protection rules."
        ))
    }
}

/// The rules of `spec` for a job of attempt `attempt` of a run by `actor` at `git_ref`, with
/// `reviews`, asked `waited` ago.
pub fn verdict(
    spec: &EnvironmentSpec,
    environment: &str,
    actor: &str,
    git_ref: &str,
    attempt: u64,
    reviews: &[Review],
    waited: Duration,
) -> Verdict {
    if let Err(why) = branch_allowed(spec, git_ref, environment) {
        return Verdict::Reject(why);
    }
    let counts = |r: &&Review| {
        r.environment == environment
            && r.attempt == attempt
            && (spec.allow_self_review || r.user != actor)
            && spec.is_reviewer(&r.user, &r.role)
    };
    let mine: Vec<&Review> = reviews.iter().filter(counts).collect();
    if let Some(r) = mine.iter().find(|r| r.state == REJECTED) {
        let comment = r
            .comment
            .as_deref()
            .map(|c| format!(": {c}"))
            .unwrap_or_default();
        return Verdict::Reject(format!("Rejected by {}{comment}", r.user));
    }
    let mut approvers: Vec<&str> = mine
        .iter()
        .filter(|r| r.state == APPROVED)
        .map(|r| r.user.as_str())
        .collect();
    approvers.sort_unstable();
    approvers.dedup();
    let needed = spec.approvals_needed() as usize;
    let mut waiting = Vec::new();
    if approvers.len() < needed {
        let so_far = if approvers.is_empty() {
            "none yet".to_string()
        } else {
            format!("{} so far: {}", approvers.len(), approvers.join(", "))
        };
        let plural = if needed == 1 { "" } else { "s" };
        let self_note = if spec.allow_self_review {
            ""
        } else {
            "; the run's own actor cannot approve"
        };
        waiting.push(format!(
            "Waiting for review: {environment} needs {needed} approval{plural} from {} ({so_far}{self_note})",
            spec.reviewers()
        ));
    }
    let timer = spec.wait().unwrap_or_default();
    let left = timer.saturating_sub(waited);
    if !left.is_zero() {
        waiting.push(format!(
            "Waiting for the wait timer of {environment}: {}s left of {}s",
            left.as_secs(),
            timer.as_secs()
        ));
    }
    if waiting.is_empty() {
        Verdict::Admit
    } else {
        Verdict::Wait(waiting.join("; "), (!left.is_zero()).then_some(left))
    }
}

impl EnvironmentGate {
    async fn read(&self, environment: &str, waited: Duration) -> Verdict {
        let namespace = self.run.namespace.clone();
        let env_key = Key::new(
            environment::GROUP,
            environment::KIND,
            &namespace,
            environment,
        );
        let env = match self.store.get(&env_key).await {
            Ok(None) => return Verdict::Admit,
            Ok(Some(obj)) => obj,
            Err(e) => {
                return Verdict::Wait(
                    format!("cannot read environment {environment}: {e}"),
                    Some(RETRY),
                );
            }
        };
        let spec: EnvironmentSpec = match env.spec_as() {
            Ok(s) => s,
            Err(e) => return Verdict::Reject(format!("environment {environment} is invalid: {e}")),
        };
        let reviews = match self.store.get(&self.run).await {
            Ok(Some(run)) => run
                .spec_as::<WorkflowRunSpec>()
                .map(|s| s.reviews)
                .unwrap_or_default(),
            Ok(None) => Vec::new(),
            Err(e) => {
                return Verdict::Wait(format!("cannot read the run's reviews: {e}"), Some(RETRY));
            }
        };
        verdict(
            &spec,
            environment,
            &self.actor,
            &self.git_ref,
            self.attempt,
            &reviews,
            waited,
        )
    }

    /// The environment's secrets and variables over the run's (global, then the repository's),
    /// its secrets registered with the recorder's masker first.
    async fn grant(&self, environment: &str) -> Result<Grant, shipway_store::StoreError> {
        let secrets = secrets_for(&self.store, &self.repository, Some(environment)).await?;
        let vars = vars_for(&self.store, &self.repository, Some(environment)).await?;
        self.recorder.mask(secrets.values());
        Ok(Grant { secrets, vars })
    }

    async fn decide(&self, job: &str, environment: &str) -> GateDecision {
        let asked = tokio::time::Instant::now();
        let mut first = true;
        let mut told = String::new();
        loop {
            // Registered before reading, so a review added while we read still wakes us.
            let changed = self.wake.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.read(environment, asked.elapsed()).await {
                Verdict::Admit => match self.grant(environment).await {
                    Ok(grant) => return GateDecision::Admit(grant),
                    // Fail closed: a job never runs without the secrets it was promised.
                    Err(e) => {
                        let reason = format!(
                            "cannot read the secrets and variables of environment {environment}: {e}"
                        );
                        self.recorder.event(&RunEvent::Waiting {
                            job: job.to_string(),
                            environment: environment.to_string(),
                            reason: reason.clone(),
                        });
                        told = reason;
                        self.clock.sleep(RETRY).await;
                        continue;
                    }
                },
                Verdict::Reject(reason) => return GateDecision::Reject { reason },
                Verdict::Wait(reason, again) => {
                    if first {
                        // Let the executor say the job waits before we say what for.
                        tokio::task::yield_now().await;
                        first = false;
                    }
                    if reason != told {
                        self.recorder.event(&RunEvent::Waiting {
                            job: job.to_string(),
                            environment: environment.to_string(),
                            reason: reason.clone(),
                        });
                        told = reason;
                    }
                    match again {
                        Some(d) => {
                            tokio::select! {
                                () = &mut changed => {}
                                () = self.clock.sleep(d) => {}
                            }
                        }
                        None => changed.await,
                    }
                }
            }
        }
    }
}

impl Gate for EnvironmentGate {
    fn admit<'a>(
        &'a self,
        job: &'a str,
        environment: &'a str,
    ) -> Pin<Box<dyn Future<Output = GateDecision> + Send + 'a>> {
        Box::pin(self.decide(job, environment))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> EnvironmentSpec {
        serde_json::from_value(v).unwrap()
    }

    fn review(user: &str, role: &str, state: &str) -> Review {
        Review {
            environment: "production".into(),
            state: state.into(),
            user: user.into(),
            role: role.into(),
            attempt: 1,
            comment: None,
            submitted_at: "2026-12-03T00:00:00Z".into(),
        }
    }

    fn at(reviews: &[Review], s: &EnvironmentSpec) -> Verdict {
        verdict(
            s,
            "production",
            "alice",
            "refs/heads/main",
            1,
            reviews,
            Duration::ZERO,
        )
    }

    #[test]
    fn two_distinct_eligible_approvals_admit_and_the_actor_never_counts() {
        let s = spec(json!({"requiredReviewers": [{"role": "deployer"}], "requiredApprovals": 2}));
        let Verdict::Wait(reason, None) = at(&[], &s) else {
            panic!()
        };
        assert_eq!(
            reason,
            "Waiting for review: production needs 2 approvals from role deployer (none yet; the run's own actor cannot approve)"
        );
        let own = review("alice", "deployer", APPROVED);
        let bob = review("bob", "deployer", APPROVED);
        assert!(matches!(
            at(std::slice::from_ref(&own), &s),
            Verdict::Wait(..)
        ));
        let Verdict::Wait(reason, _) = at(&[own.clone(), bob.clone(), bob.clone()], &s) else {
            panic!()
        };
        assert!(reason.contains("(1 so far: bob;"), "{reason}");
        let viewer = review("val", "viewer", APPROVED);
        assert!(matches!(at(&[bob.clone(), viewer], &s), Verdict::Wait(..)));
        let carol = review("carol", "admin", APPROVED);
        assert_eq!(at(&[own, bob.clone(), carol.clone()], &s), Verdict::Admit);
        // Another attempt's or environment's approvals do not count.
        let mut again = carol.clone();
        again.attempt = 2;
        let Verdict::Wait(reason, _) = verdict(
            &s,
            "production",
            "alice",
            "refs/heads/main",
            2,
            &[bob.clone(), again],
            Duration::ZERO,
        ) else {
            panic!()
        };
        assert!(reason.contains("(1 so far: carol;"), "{reason}");
        let self_ok =
            spec(json!({"requiredReviewers": [{"user": "alice"}], "allowSelfReview": true}));
        assert_eq!(
            at(&[review("alice", "viewer", APPROVED)], &self_ok),
            Verdict::Admit
        );
    }

    #[test]
    fn one_rejection_fails_the_job_with_who_and_why() {
        let s = spec(json!({"requiredReviewers": [{"user": "bob"}]}));
        let mut no = review("bob", "deployer", REJECTED);
        no.comment = Some("not today".into());
        assert_eq!(
            at(&[no], &s),
            Verdict::Reject("Rejected by bob: not today".into())
        );
    }

    #[test]
    fn branch_policy_and_wait_timer() {
        let s = spec(
            json!({"deploymentBranchPolicy": {"branches": ["main", "release/*"], "tags": ["v*"]}, "waitTimer": 5}),
        );
        for (git_ref, ok) in [
            ("refs/heads/main", true),
            ("refs/heads/release/1.2", true),
            ("refs/heads/release/1/2", false),
            ("refs/heads/feature", false),
            ("refs/tags/v1.0", true),
            ("refs/tags/beta", false),
            ("refs/pull/1/head", false),
        ] {
            assert_eq!(
                branch_allowed(&s, git_ref, "production").is_ok(),
                ok,
                "{git_ref}"
            );
        }
        assert_eq!(
            branch_allowed(&s, "refs/heads/feature", "production").unwrap_err(),
            "Branch \"feature\" is not allowed to deploy to production due to environment protection rules."
        );
        let wait = |waited| verdict(&s, "production", "alice", "refs/heads/main", 1, &[], waited);
        assert_eq!(
            wait(Duration::from_secs(60)),
            Verdict::Wait(
                "Waiting for the wait timer of production: 240s left of 300s".into(),
                Some(Duration::from_secs(240))
            )
        );
        assert_eq!(wait(Duration::from_secs(300)), Verdict::Admit);
    }
}
