//! The record of a run while it happens: the executor's events become the WorkflowRun's status
//! (jobs, steps, times) and its log lines in the store. The executor's observer only queues
//! (it must not block); one writer task per run drains the queue, appending lines first and
//! then the status, so a status that says a step finished never precedes that step's lines.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shipway_controller::Clock;
use shipway_model::types::workflow_run::{
    COMPLETED, IN_PROGRESS, JobStatus, Promotion, PublishedImage, QUEUED, StepStatus, WAITING,
    WorkflowRunStatus,
};
use shipway_model::{Key, Object};
use shipway_pipeline::exec::{
    Masker, PlatformRecord, RunEvent, RunObserver, Status, Stream, log_text,
};
use shipway_store::{NewLogLine, Store, StoreError};
use tokio::sync::mpsc;

use crate::ACTOR;

/// How long a line may wait in memory before it is written: a reader following the log sees it
/// this late at most, and a crash loses at most this much of what steps printed.
const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// Lines written in one transaction at most.
const MAX_BATCH: usize = 2_000;

/// The executor's side: queues events for the writer.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::UnboundedSender<RunEvent>,
    masker: Arc<Mutex<Masker>>,
}

impl Recorder {
    /// Masks `secrets` in every line stored from now on: a gate adds an environment's secrets
    /// before it admits the job that sees them, so no line of that job precedes the mask.
    pub fn mask<'a>(&self, secrets: impl IntoIterator<Item = &'a String>) {
        add_masks(&self.masker, secrets);
    }
}

impl RunObserver for Recorder {
    fn event(&self, e: &RunEvent) {
        // The writer ends only after the run; a send after that has nothing left to record.
        let _ = self.tx.send(e.clone());
    }
}

/// The writer's side: owns the status being built and writes it with the lines.
pub struct Writer {
    store: Store,
    clock: Clock,
    run: Object,
    pub status: WorkflowRunStatus,
    rx: mpsc::UnboundedReceiver<RunEvent>,
    lines: Vec<NewLogLine>,
    started: HashMap<String, usize>,
    status_dirty: bool,
    /// The run's secrets, masked again in every line stored: the executor masks what steps
    /// print, this also covers its own runner lines, whatever they quote. Shared with the
    /// [`Recorder`], which adds environments' secrets.
    masker: Arc<Mutex<Masker>>,
}

/// A recorder and its writer for `run`, starting from `status`.
pub fn recorder(
    store: Store,
    clock: Clock,
    run: Object,
    status: WorkflowRunStatus,
) -> (Recorder, Writer) {
    let (tx, rx) = mpsc::unbounded_channel();
    let masker = Arc::new(Mutex::new(Masker::default()));
    (
        Recorder {
            tx,
            masker: masker.clone(),
        },
        Writer {
            store,
            clock,
            run,
            status,
            rx,
            lines: Vec::new(),
            started: HashMap::new(),
            status_dirty: false,
            masker,
        },
    )
}

fn add_masks<'a>(masker: &Mutex<Masker>, secrets: impl IntoIterator<Item = &'a String>) {
    let mut masker = masker.lock().unwrap_or_else(|e| e.into_inner());
    for s in secrets {
        masker.add(s);
    }
}

/// A line of the runner itself, outside any job and step (why a run ended, where an attempt
/// begins).
pub fn runner_line(text: impl Into<String>) -> NewLogLine {
    NewLogLine {
        job: String::new(),
        step: None,
        stream: "runner".into(),
        text: text.into(),
    }
}

fn stream_name(s: Stream) -> &'static str {
    match s {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
        Stream::Runner => "runner",
    }
}

fn conclusion(s: Status) -> String {
    s.as_str().to_string()
}

impl Writer {
    pub fn key(&self) -> Key {
        self.run.key()
    }

    /// Masks `secrets` in every line written from now on.
    pub fn mask<'a>(&mut self, secrets: impl IntoIterator<Item = &'a String>) {
        add_masks(&self.masker, secrets);
    }

    fn job(&mut self, name: &str) -> &mut JobStatus {
        if let Some(i) = self.status.jobs.iter().position(|j| j.name == name) {
            return &mut self.status.jobs[i];
        }
        self.status.jobs.push(JobStatus {
            name: name.to_string(),
            status: QUEUED.into(),
            ..JobStatus::default()
        });
        self.status.jobs.last_mut().expect("just pushed")
    }

    fn apply(&mut self, e: &RunEvent) {
        let now = self.clock.timestamp();
        // The log holds what `shipway run` prints: step output, and the lifecycle lines.
        if let Some(job) = e.job()
            && let Some(text) = log_text(e, &mut self.started)
        {
            let (step, stream) = match e {
                RunEvent::Line { step, stream, .. } => {
                    (step.map(|s| s as u32), stream_name(*stream))
                }
                RunEvent::StepStarted { step, .. } | RunEvent::StepFinished { step, .. } => {
                    (Some(*step as u32), "runner")
                }
                _ => (None, "runner"),
            };
            self.lines.push(NewLogLine {
                job: job.to_string(),
                step,
                stream: stream.into(),
                text: self
                    .masker
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .mask(&text),
            });
        }
        match e {
            RunEvent::Line { .. } | RunEvent::RunFinished { .. } => return,
            RunEvent::Queued { job } => {
                self.job(job);
            }
            RunEvent::Waiting {
                job,
                environment,
                reason,
            } => {
                let j = self.job(job);
                j.status = WAITING.into();
                j.environment = Some(environment.clone());
                j.message = Some(reason.clone());
            }
            RunEvent::Admitted { job, environment } => {
                // Admitted, it waits for its slot like any other job.
                let j = self.job(job);
                j.status = QUEUED.into();
                j.environment = Some(environment.clone());
                j.message = None;
            }
            RunEvent::Rejected {
                job, environment, ..
            } => {
                // Recorded even when the gate answered at once, so the environment's history
                // shows the refused deployment.
                let j = self.job(job);
                j.environment = Some(environment.clone());
            }
            RunEvent::Platform { job, record } => match record {
                PlatformRecord::Image { name, tag, digest } => {
                    self.status.images.push(PublishedImage {
                        job: job.clone(),
                        name: name.clone(),
                        tag: tag.clone(),
                        digest: digest.clone(),
                    });
                }
                PlatformRecord::Promotion {
                    repo,
                    path,
                    branch,
                    commit,
                    image,
                } => {
                    self.status.promotions.push(Promotion {
                        job: job.clone(),
                        repository: repo.clone(),
                        path: path.clone(),
                        branch: branch.clone(),
                        commit: commit.clone(),
                        image: image.clone(),
                    });
                }
            },
            RunEvent::NoRunner { job, reason } => {
                let j = self.job(job);
                j.status = QUEUED.into();
                j.message = Some(reason.clone());
            }
            RunEvent::JobStarted { job, id, .. } => {
                let j = self.job(job);
                j.status = IN_PROGRESS.into();
                j.id = Some(id.clone());
                j.message = None;
                j.started_at = Some(now);
            }
            RunEvent::StepStarted { job, step, name } => {
                let j = self.job(job);
                j.steps.push(StepStatus {
                    number: *step as u32,
                    name: name.clone(),
                    status: IN_PROGRESS.into(),
                    started_at: Some(now),
                    ..StepStatus::default()
                });
            }
            RunEvent::StepFinished {
                job,
                step,
                conclusion: c,
                ..
            } => {
                let j = self.job(job);
                if let Some(s) = j.steps.iter_mut().find(|s| s.number == *step as u32) {
                    s.status = COMPLETED.into();
                    s.conclusion = Some(conclusion(*c));
                    s.completed_at = Some(now);
                }
            }
            RunEvent::JobFinished {
                job,
                id,
                result,
                outputs,
            } => {
                let j = self.job(job);
                j.status = COMPLETED.into();
                j.id = Some(id.clone());
                j.conclusion = Some(conclusion(*result));
                j.message = None;
                j.completed_at = Some(now);
                j.outputs = outputs
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
            }
        }
        self.status.status = Some(run_status(&self.status.jobs).into());
        self.status_dirty = true;
    }

    /// Writes the queued lines, then the status if it changed.
    pub async fn flush(&mut self) -> Result<(), StoreError> {
        let key = self.run.key();
        while !self.lines.is_empty() {
            let n = self.lines.len().min(MAX_BATCH);
            let batch: Vec<NewLogLine> = self.lines.drain(..n).collect();
            self.store.append_logs(&key, batch).await?;
        }
        if self.status_dirty {
            self.write_status().await?;
        }
        Ok(())
    }

    /// Writes the status now (unconditionally: the status is the scheduler's alone).
    pub async fn write_status(&mut self) -> Result<(), StoreError> {
        let mut obj = self.run.clone();
        obj.set_status(&self.status);
        obj.metadata.resource_version = None;
        self.run = self.store.update_status(obj, ACTOR).await?;
        self.status_dirty = false;
        Ok(())
    }

    /// Drains events until the executor is done (every [`Recorder`] dropped), writing at most
    /// [`FLUSH_EVERY`] after each event. A store error stops the recording and is returned;
    /// the caller decides what becomes of the run.
    pub async fn drain(&mut self) -> Result<(), StoreError> {
        loop {
            let Some(e) = self.rx.recv().await else {
                return self.flush().await;
            };
            self.apply(&e);
            // Take whatever else arrives within the window, then write it in one go.
            let deadline = tokio::time::Instant::now() + FLUSH_EVERY;
            loop {
                match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                    Ok(Some(e)) => {
                        self.apply(&e);
                        if self.lines.len() >= MAX_BATCH {
                            break;
                        }
                    }
                    Ok(None) => return self.flush().await,
                    Err(_) => break,
                }
            }
            self.flush().await?;
        }
    }
}

/// GitHub's run status once the run started: waiting while a job waits (for an approval) and
/// none runs, in progress otherwise.
fn run_status(jobs: &[JobStatus]) -> &'static str {
    let running = jobs.iter().any(|j| j.status == IN_PROGRESS);
    if !running && jobs.iter().any(|j| j.status == WAITING) {
        WAITING
    } else {
        IN_PROGRESS
    }
}
