//! The blue-green strategy as one pure pass, as Argo's `rolloutBlueGreen`: the new revision
//! comes up behind the preview Service (`previewReplicaCount` of it), `prePromotionAnalysis`
//! judges it, a promotion (automatic, after `autoPromotionSeconds`, or the user's clearing of
//! the `BlueGreenPause`) switches the active Service's selector in one write, then
//! `postPromotionAnalysis` decides whether it becomes stable; the previous revision is scaled
//! down after `scaleDownDelaySeconds`. Abort keeps (or puts back) the active selector on the
//! stable revision.

use std::time::Duration;

use shipway_model::types::rollout::{BlueGreenStrategy, PauseCondition, RolloutAnalysisRunStatus};

use super::{
    Decision, INCONCLUSIVE, Input, StartRun, completed_phase, conditions, parse_time, phase,
    remove_condition, run_status, until,
};

pub const BLUE_GREEN_PAUSE: &str = "BlueGreenPause";

/// One pass of the blue-green strategy. `input.step_run` is the pre-promotion run the status
/// names, `input.background_run` the post-promotion one.
pub fn decide_blue_green(input: &Input, bg: &BlueGreenStrategy) -> Decision {
    let Input {
        name,
        generation,
        spec,
        status: old,
        hash,
        sets,
        now,
        ..
    } = *input;
    let now_ts = shipway_controller::clock::format_timestamp(now);
    let want = spec.replicas();
    let mut d = Decision::default();
    let mut st = old.clone();
    st.observed_generation = Some(generation.to_string());
    remove_condition(&mut st.conditions, "InvalidSpec");
    st.selector = spec.selector.as_ref().and_then(|s| {
        s.to_selector()
            .ok()
            .map(|sel| sel.to_string())
            .filter(|s| !s.is_empty())
    });
    st.canary_mut();
    st.current_step_index = None;
    st.current_step_hash = None;
    let max_revision = sets.iter().map(|s| s.revision).max().unwrap_or(0);
    let new_set = sets.iter().find(|s| s.hash == hash);
    let revision = match new_set {
        Some(s) if s.revision >= max_revision => s.revision,
        Some(s) => {
            d.set_revision = Some((s.name.clone(), max_revision + 1));
            max_revision + 1
        }
        None => max_revision + 1,
    };
    if old.current_pod_hash.as_deref() != Some(hash) {
        if old.current_pod_hash.is_some() {
            st.pause_conditions.clear();
            st.controller_pause = false;
            st.set_abort(false);
            st.aborted_at = None;
            st.promote_full = false;
            let bgs = st.blue_green.get_or_insert_with(Default::default);
            for r in [
                bgs.pre_promotion_analysis_run_status.take(),
                bgs.post_promotion_analysis_run_status.take(),
            ]
            .into_iter()
            .flatten()
            {
                if !completed_phase(&r.status) {
                    d.terminate_runs.push(r.name);
                }
            }
            remove_condition(&mut st.conditions, "Progressing");
        }
        st.current_pod_hash = Some(hash.to_string());
        if new_set.is_none() {
            d.event(
                "RolloutUpdated",
                format!("Rollout updated to revision {revision}"),
                false,
            );
        }
    }
    // Retry after an abort.
    if !st.aborted() && st.aborted_at.is_some() {
        st.aborted_at = None;
        let bgs = st.blue_green.get_or_insert_with(Default::default);
        bgs.pre_promotion_analysis_run_status = None;
        bgs.post_promotion_analysis_run_status = None;
        remove_condition(&mut st.conditions, "Progressing");
    }
    let mut bgs = st.blue_green.clone().unwrap_or_default();
    // First deploy: the first revision is active at once.
    if bgs.active_selector.is_none() {
        bgs.active_selector = Some(hash.to_string());
        st.stable_rs = Some(hash.to_string());
    }
    let active = bgs.active_selector.clone().unwrap_or_default();
    let stable = st.stable_rs.clone().unwrap_or_default();
    let new_available = new_set.map_or(0, |s| s.available);
    let new_replicas = new_set.map_or(0, |s| s.replicas);
    let mut abort_message = None;
    let mut new_target = want;
    let mut add_pause: Option<&str> = None;
    if active == hash {
        // Promoted: post-promotion analysis decides whether it becomes stable.
        if stable != hash && !st.aborted() {
            match &bg.post_promotion_analysis {
                None => st.stable_rs = Some(hash.to_string()),
                Some(_) => match (
                    &input.background_run,
                    &bgs.post_promotion_analysis_run_status,
                ) {
                    (_, None) => d.start_runs.push(StartRun::PostPromotion),
                    (None, Some(_)) => {}
                    (Some(run), Some(_)) => {
                        bgs.post_promotion_analysis_run_status = Some(run_status(run));
                        match run.phase.as_str() {
                            "Successful" => st.stable_rs = Some(hash.to_string()),
                            "Failed" | "Error" => abort_message = Some(run.message.clone()),
                            _ => {}
                        }
                    }
                },
            }
        }
    } else if !st.aborted() {
        let preview = bg.preview_replica_count.unwrap_or(want).clamp(0, want);
        let full = st.promote_full;
        new_target = if full {
            want
        } else {
            preview.max(new_replicas.min(want))
        };
        let mut promote = false;
        if new_set.is_some()
            && new_available >= new_target.min(new_replicas)
            && new_replicas >= new_target
        {
            let mut passed = true;
            if let Some(_pre) = bg.pre_promotion_analysis.as_ref().filter(|_| !full) {
                passed = false;
                match (&input.step_run, &bgs.pre_promotion_analysis_run_status) {
                    (_, None) => d.start_runs.push(StartRun::PrePromotion),
                    (None, Some(_)) => {}
                    (Some(run), Some(_)) => {
                        bgs.pre_promotion_analysis_run_status = Some(run_status(run));
                        match run.phase.as_str() {
                            "Successful" => passed = true,
                            "Failed" | "Error" => abort_message = Some(run.message.clone()),
                            "Inconclusive" => {
                                if st.controller_pause
                                    && !st.pause_conditions.iter().any(|c| c.reason == INCONCLUSIVE)
                                {
                                    passed = true;
                                } else if !st
                                    .pause_conditions
                                    .iter()
                                    .any(|c| c.reason == INCONCLUSIVE)
                                {
                                    add_pause = Some(INCONCLUSIVE);
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
            if passed {
                let cond = st
                    .pause_conditions
                    .iter()
                    .find(|c| c.reason == BLUE_GREEN_PAUSE);
                let auto = bg.auto_promotion_enabled != Some(false);
                if full || (st.controller_pause && cond.is_none() && !spec.is_paused()) {
                    promote = true;
                } else if spec.is_paused() {
                } else if !auto {
                    if cond.is_none() {
                        add_pause = Some(BLUE_GREEN_PAUSE);
                    }
                } else if let Some(secs) = bg.auto_promotion_seconds {
                    match cond
                        .and_then(|c| c.start_time.as_deref())
                        .and_then(parse_time)
                    {
                        Some(start) => {
                            let end = start + time::Duration::seconds(secs);
                            if now >= end {
                                promote = true;
                            } else {
                                d.requeue_in(until(now, end));
                            }
                        }
                        None => {
                            add_pause = Some(BLUE_GREEN_PAUSE);
                            d.requeue_in(Duration::from_secs(secs.max(0) as u64));
                        }
                    }
                } else {
                    promote = true;
                }
            }
        }
        if promote {
            // Full size first, then the switch.
            new_target = want;
            if new_replicas >= want && new_available >= want {
                bgs.active_selector = Some(hash.to_string());
                st.pause_conditions
                    .retain(|c| c.reason != BLUE_GREEN_PAUSE && c.reason != INCONCLUSIVE);
                st.controller_pause = !st.pause_conditions.is_empty();
                st.promote_full = false;
                if bg.post_promotion_analysis.is_none() {
                    st.stable_rs = Some(hash.to_string());
                }
                d.event(
                    "SwitchService",
                    format!(
                        "Switched selector for service '{}' from '{active}' to '{hash}'",
                        bg.active_service.as_deref().unwrap_or_default()
                    ),
                    false,
                );
                d.requeue_in(Duration::ZERO);
            }
        }
    }
    if let Some(m) = abort_message.clone() {
        st.set_abort(true);
        abort_message = Some(m);
    }
    if st.aborted() {
        if st.aborted_at.is_none() {
            st.aborted_at = Some(now_ts.clone());
        }
        st.pause_conditions.clear();
        st.controller_pause = false;
        // The active Service goes back to the stable revision.
        if !stable.is_empty() {
            bgs.active_selector = Some(stable.clone());
        }
        if stable != hash {
            let delay = bg
                .abort_scale_down_delay_seconds
                .unwrap_or(super::DEFAULT_ABORT_SCALE_DOWN_DELAY);
            let since = st.aborted_at.as_deref().and_then(parse_time).unwrap_or(now);
            let end = since + time::Duration::seconds(delay);
            if delay > 0 && now < end {
                new_target = new_replicas;
                d.requeue_in(until(now, end));
            } else {
                new_target = 0;
            }
        }
    }
    if let Some(reason) = add_pause {
        st.pause_conditions.push(PauseCondition {
            reason: reason.to_string(),
            start_time: Some(now_ts.clone()),
            ..Default::default()
        });
        st.controller_pause = true;
        d.event(
            "RolloutPaused",
            format!("Rollout is paused ({reason})"),
            false,
        );
    }
    bgs.preview_selector = Some(hash.to_string());
    let active_now = bgs.active_selector.clone().unwrap_or_default();

    // ReplicaSets: the new one, the active one (full), the rest down after the delay.
    match new_set {
        None => d.create = Some((revision, new_target)),
        Some(s) if s.replicas != new_target => d.scale.push((s.name.clone(), new_target)),
        Some(_) => {}
    }
    let delay = bg
        .scale_down_delay_seconds
        .unwrap_or(super::DEFAULT_SCALE_DOWN_DELAY);
    for s in sets {
        if s.hash == hash {
            continue;
        }
        if s.hash == active_now {
            if s.replicas != want {
                d.scale.push((s.name.clone(), want));
            }
            if s.scale_down_deadline.is_some() {
                d.deadlines.push((s.name.clone(), None));
            }
            continue;
        }
        if s.replicas == 0 {
            continue;
        }
        // The revision that was active a moment ago keeps its pods for the delay.
        let was_active = s.hash == active;
        if was_active && delay > 0 {
            match s.scale_down_deadline {
                None => {
                    d.deadlines
                        .push((s.name.clone(), Some(now + time::Duration::seconds(delay))));
                    d.requeue_in(Duration::from_secs(delay as u64));
                }
                Some(end) if now >= end => d.scale.push((s.name.clone(), 0)),
                Some(end) => d.requeue_in(until(now, end)),
            }
        } else if s.scale_down_deadline.is_some_and(|end| now < end) {
            d.requeue_in(until(now, s.scale_down_deadline.unwrap_or(now)));
        } else {
            d.scale.push((s.name.clone(), 0));
        }
    }
    let limit = spec.revision_history_limit.unwrap_or(10).max(0) as usize;
    let mut idle: Vec<_> = sets
        .iter()
        .filter(|s| {
            s.hash != hash && s.hash != active_now && s.replicas == 0 && s.status_replicas == 0
        })
        .collect();
    idle.sort_by_key(|s| s.revision);
    if idle.len() > limit {
        d.delete = idle[..idle.len() - limit]
            .iter()
            .map(|s| s.name.clone())
            .collect();
    }
    if let Some(svc) = &bg.active_service {
        d.services.push((svc.clone(), active_now.clone()));
    }
    if let Some(svc) = &bg.preview_service {
        d.services.push((svc.clone(), hash.to_string()));
    }

    let nonzero = |n: i64| (n != 0).then_some(n);
    let sum = |f: fn(&super::Set) -> i64| sets.iter().map(f).sum::<i64>();
    st.replicas = nonzero(sum(|s| s.status_replicas));
    st.hpa_replicas = st.replicas;
    st.updated_replicas = nonzero(new_set.map_or(0, |s| s.status_replicas));
    st.ready_replicas = nonzero(sum(|s| s.ready));
    st.available_replicas = nonzero(sum(|s| s.available));
    st.blue_green = Some(bgs);
    conditions(
        input,
        old,
        &mut st,
        &mut d,
        abort_message,
        revision,
        &now_ts,
    );
    let (p, m) = phase(spec, &st);
    st.phase = Some(p);
    st.message = Some(m);
    let _ = name;
    d.status = st;
    d
}

/// The run status `start` records in a blue-green status.
pub fn record_run(
    st: &mut shipway_model::types::rollout::RolloutStatus,
    start: &StartRun,
    recorded: RolloutAnalysisRunStatus,
) {
    let bgs = st.blue_green.get_or_insert_with(Default::default);
    match start {
        StartRun::PrePromotion => bgs.pre_promotion_analysis_run_status = Some(recorded),
        StartRun::PostPromotion => bgs.post_promotion_analysis_run_status = Some(recorded),
        _ => {}
    }
}
