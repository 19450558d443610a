//! The worker's durable state: which jobs it owns, their processes and where each stands,
//! in `<worker-dir>/state.json` (LAVA keeps the same rows in an sqlite database,
//! `db.sqlite3`; one small file does here).
//!
//! The file is one JSON object, rewritten whole after every change through a temporary
//! file, `fsync` and `rename`, so a crash or power loss leaves the old or the new state,
//! never a mix:
//!
//! ```json
//! {"format": 1,
//!  "jobs": [{"id": 8124, "token": "...", "prefix": "", "pid": 4242, "start_ticks": 991,
//!            "status": "running", "since": 1764950000, "terms": 0,
//!            "canceled": false}],
//!  "reported": [{"id": 8120, "at": 1764949000}]}
//! ```
//!
//! `status` is LAVA's `running`, `canceling` or `finished` (finished: the process has
//! ended, the report to the server is pending); `since` is the wall-clock second of the
//! last status change (cancel escalation survives a restart); `pid` with `start_ticks`
//! (the process start time from `/proc/<pid>/stat`) identifies the lava-run process even
//! after the worker restarted; `terms` counts the SIGTERMs sent since the cancel, `canceled` says the server asked
//! for one.
//! `reported` remembers, for a day, the jobs whose end the server acknowledged: a
//! MultiNode connection sub-job stays in the server's `running` list while its host job
//! runs, and must not be started again.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::WorkerError;

/// The state file's format version.
const FORMAT: u32 = 1;
/// How long an acknowledged job id is remembered.
const REPORTED_MEMORY_SECS: u64 = 24 * 3600;

/// Where a job stands, LAVA's three statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// lava-run runs.
    Running,
    /// The server asked for a cancel; lava-run was signalled and runs its finalize.
    Canceling,
    /// lava-run has ended (or never started); the report to the server is pending.
    Finished,
}

/// One job the worker owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job id.
    pub id: u64,
    /// The job token.
    pub token: String,
    /// The dispatcher configuration's `prefix` (job directory `<prefix><id>`).
    pub prefix: String,
    /// lava-run's process id (also its process group), 0 when none was started.
    pub pid: i32,
    /// The process's start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub start_ticks: u64,
    /// Where the job stands.
    pub status: JobStatus,
    /// Wall-clock seconds (UNIX time) of the last status change.
    pub since: u64,
    /// SIGTERMs sent since the cancel.
    pub terms: u32,
    /// The server asked for a cancel (a job canceled before lava-run wrote its result is
    /// reported with error type `Canceled`).
    #[serde(default)]
    pub canceled: bool,
}

impl JobRecord {
    /// The job directory's name, `<prefix><id>`.
    pub fn dir_name(&self) -> String {
        format!("{}{}", self.prefix, self.id)
    }

    /// Change the status, stamping the time.
    pub fn set_status(&mut self, status: JobStatus) {
        self.status = status;
        self.since = now();
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Reported {
    id: u64,
    at: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Contents {
    format: u32,
    jobs: Vec<JobRecord>,
    #[serde(default)]
    reported: Vec<Reported>,
}

/// The state, loaded from and saved to its file.
#[derive(Debug)]
pub struct State {
    path: PathBuf,
    contents: Contents,
}

impl State {
    /// Load `<worker_dir>/state.json`, or an empty state when there is none.
    pub fn load(worker_dir: &Path) -> Result<Self, WorkerError> {
        let path = worker_dir.join("state.json");
        let contents = match std::fs::read(&path) {
            Ok(bytes) => {
                let contents: Contents =
                    serde_json::from_slice(&bytes).map_err(|e| WorkerError::State {
                        path: path.clone(),
                        message: e.to_string(),
                    })?;
                if contents.format != FORMAT {
                    return Err(WorkerError::State {
                        path,
                        message: format!(
                            "format {} (this worker reads format {FORMAT})",
                            contents.format
                        ),
                    });
                }
                contents
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Contents {
                format: FORMAT,
                ..Contents::default()
            },
            Err(e) => return Err(WorkerError::io(path, e)),
        };
        Ok(State { path, contents })
    }

    /// The jobs, in the order they were added.
    pub fn jobs(&self) -> &[JobRecord] {
        &self.contents.jobs
    }

    /// The job `id`, if owned.
    pub fn job(&self, id: u64) -> Option<&JobRecord> {
        self.contents.jobs.iter().find(|j| j.id == id)
    }

    /// The job `id` for a change (save afterwards).
    pub fn job_mut(&mut self, id: u64) -> Option<&mut JobRecord> {
        self.contents.jobs.iter_mut().find(|j| j.id == id)
    }

    /// Add (or replace) a job and save.
    pub fn insert(&mut self, record: JobRecord) -> Result<(), WorkerError> {
        self.contents.jobs.retain(|j| j.id != record.id);
        self.contents.jobs.push(record);
        self.save()
    }

    /// The server acknowledged the end of `id`: forget the job, remember the id; save.
    pub fn acknowledge(&mut self, id: u64) -> Result<(), WorkerError> {
        self.contents.jobs.retain(|j| j.id != id);
        let now = now();
        self.contents
            .reported
            .retain(|r| r.id != id && now.saturating_sub(r.at) < REPORTED_MEMORY_SECS);
        self.contents.reported.push(Reported { id, at: now });
        self.save()
    }

    /// Whether the server acknowledged the end of `id` in the last day.
    pub fn was_reported(&self, id: u64) -> bool {
        self.contents.reported.iter().any(|r| r.id == id)
    }

    /// Write the state atomically (temporary file, fsync, rename, fsync of the directory).
    pub fn save(&self) -> Result<(), WorkerError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let temporary = self.path.with_extension("json.new");
        let text = serde_json::to_vec_pretty(&self.contents).expect("the state serializes");
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(&text)?;
            file.sync_all()?;
            std::fs::rename(&temporary, &self.path)?;
            std::fs::File::open(dir)?.sync_all()
        };
        write().map_err(|e| WorkerError::io(&self.path, e))
    }
}

/// Wall-clock seconds since the UNIX epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u64) -> JobRecord {
        JobRecord {
            id,
            token: "t".into(),
            prefix: "p-".into(),
            pid: 42,
            start_ticks: 7,
            status: JobStatus::Running,
            since: now(),
            terms: 0,
            canceled: false,
        }
    }

    #[test]
    fn the_state_survives_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = State::load(dir.path()).unwrap();
        assert!(state.jobs().is_empty());
        state.insert(record(1)).unwrap();
        state.insert(record(2)).unwrap();
        state.job_mut(2).unwrap().set_status(JobStatus::Canceling);
        state.save().unwrap();
        state.acknowledge(1).unwrap();

        let again = State::load(dir.path()).unwrap();
        assert_eq!(again.jobs().len(), 1);
        assert_eq!(again.job(2).unwrap().status, JobStatus::Canceling);
        assert_eq!(again.job(2).unwrap().dir_name(), "p-2");
        assert!(again.was_reported(1));
        assert!(!again.was_reported(2));
        assert!(!dir.path().join("state.json.new").exists());
    }

    #[test]
    fn a_foreign_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("state.json"),
            "{\"format\": 9, \"jobs\": []}",
        )
        .unwrap();
        let err = State::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("state.json") && err.contains("format 9"),
            "{err}"
        );
        std::fs::write(dir.path().join("state.json"), "SQLite format 3").unwrap();
        assert!(State::load(dir.path()).is_err());
    }
}
