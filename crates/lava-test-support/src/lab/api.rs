//! The lab server's REST API as tests and benchmarks use it: submit a job, follow its state,
//! read its log and its test cases, cancel it (`/api/v0.2/` with the lab's API token, and
//! the plain log at `/scheduler/job/<id>/log_file/plain`).

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{LabError, LabInfo, Result};

/// How often [`Api::wait`] asks for a job's state.
const POLL: Duration = Duration::from_millis(500);

/// A client of the lab's API.
pub struct Api {
    http: reqwest::Client,
    info: LabInfo,
}

fn server(detail: String) -> LabError {
    LabError::Server(detail)
}

impl Api {
    /// A client for `info`'s server, every request bounded by 30 s.
    pub fn new(info: &LabInfo) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|err| server(format!("HTTP client: {err}")))?;
        Ok(Api {
            http,
            info: info.clone(),
        })
    }

    async fn get(&self, path: &str) -> Result<reqwest::Response> {
        self.http
            .get(format!("{}{path}", self.info.url))
            .header("Authorization", format!("Token {}", self.info.api_token))
            .send()
            .await
            .map_err(|err| server(format!("GET {path}: {err}")))
    }

    async fn get_json(&self, path: &str) -> Result<Value> {
        let response = self.get(path).await?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|err| server(format!("GET {path}: {err}")))?;
        if !status.is_success() {
            return Err(server(format!("GET {path}: {status}: {text}")));
        }
        serde_json::from_str(&text).map_err(|err| server(format!("GET {path}: {err}: {text}")))
    }

    /// Submits `definition` (a job's YAML) through `/api/v0.2/jobs/`; the job id.
    pub async fn submit(&self, definition: &str) -> Result<u64> {
        let body = serde_json::json!({ "definition": definition }).to_string();
        let response = self
            .http
            .post(format!("{}api/v0.2/jobs/", self.info.url))
            .header("Authorization", format!("Token {}", self.info.api_token))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|err| server(format!("submitting a job: {err}")))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status.as_u16() != 201 {
            return Err(server(format!("submission refused ({status}): {text}")));
        }
        let reply: Value = serde_json::from_str(&text)
            .map_err(|err| server(format!("submission reply: {err}: {text}")))?;
        reply["job_ids"][0]
            .as_u64()
            .ok_or_else(|| server(format!("submission reply without job_ids: {text}")))
    }

    /// The job as `/api/v0.2/jobs/<id>/` describes it (`state`, `health`, ...).
    pub async fn job(&self, id: u64) -> Result<Value> {
        self.get_json(&format!("api/v0.2/jobs/{id}/")).await
    }

    /// Polls job `id` until `done` holds for it; an error naming `what` and the job's last
    /// state and health after `timeout`.
    pub async fn wait(
        &self,
        id: u64,
        what: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let job = self.job(id).await?;
            if done(&job) {
                return Ok(job);
            }
            if Instant::now() > deadline {
                return Err(server(format!(
                    "job {id} not {what} after {}s: state {}, health {}",
                    timeout.as_secs(),
                    job["state"],
                    job["health"]
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until job `id` is Finished (any health).
    pub async fn wait_finished(&self, id: u64, timeout: Duration) -> Result<Value> {
        self.wait(id, "finished", timeout, |job| job["state"] == "Finished")
            .await
    }

    /// The job's log as the server keeps it: empty until its first line arrived (the
    /// server answers 404 until then).
    pub async fn log(&self, id: u64) -> Result<String> {
        let path = format!("scheduler/job/{id}/log_file/plain");
        let response = self.get(&path).await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(String::new());
        }
        if !response.status().is_success() {
            return Err(server(format!("GET {path}: {}", response.status())));
        }
        response
            .text()
            .await
            .map_err(|err| server(format!("GET {path}: {err}")))
    }

    /// The job's test cases from the results API, as (suite, case, result).
    pub async fn tests(&self, id: u64) -> Result<Vec<(String, String, String)>> {
        let suites = self
            .get_json(&format!("api/v0.2/jobs/{id}/suites/?limit=500"))
            .await?;
        let suite_names: Vec<(u64, String)> = suites["results"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|suite| Some((suite["id"].as_u64()?, suite["name"].as_str()?.to_string())))
            .collect();
        let mut cases = Vec::new();
        let mut path = format!("api/v0.2/jobs/{id}/tests/?limit=500");
        loop {
            let page = self.get_json(&path).await?;
            for case in page["results"].as_array().into_iter().flatten() {
                let suite = case["suite"].as_u64();
                let suite = suite_names
                    .iter()
                    .find(|(id, _)| Some(*id) == suite)
                    .map(|(_, name)| name.clone())
                    .unwrap_or_default();
                cases.push((
                    suite,
                    case["name"].as_str().unwrap_or_default().to_string(),
                    case["result"].as_str().unwrap_or_default().to_string(),
                ));
            }
            match page["next"].as_str() {
                Some(next) => path = next.trim_start_matches(&self.info.url).to_string(),
                None => return Ok(cases),
            }
        }
    }

    /// Ends every job not finished yet, left over by an interrupted run (it would hold a
    /// device, or be started by the next worker and outlive its test): `lava-server manage
    /// jobs fail`, which finishes it as Incomplete and frees its device at once. A REST
    /// cancel would leave it Canceling until a worker reports it, and LAVA's worker does not
    /// report a job it never ran. How many.
    pub async fn fail_unfinished(&self) -> Result<usize> {
        let mut ids = Vec::new();
        for state in [
            "Submitted",
            "Scheduling",
            "Scheduled",
            "Running",
            "Canceling",
        ] {
            let page = self
                .get_json(&format!("api/v0.2/jobs/?state={state}&limit=1000"))
                .await?;
            ids.extend(
                page["results"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|job| job["id"].as_u64()),
            );
        }
        for id in &ids {
            super::manage(&["jobs", "fail", &id.to_string()])?;
        }
        Ok(ids.len())
    }

    /// Cancels job `id` (`/api/v0.2/jobs/<id>/cancel/`).
    pub async fn cancel(&self, id: u64) -> Result<()> {
        let reply = self
            .get_json(&format!("api/v0.2/jobs/{id}/cancel/"))
            .await?;
        if reply["message"] != "Job cancel signal sent." {
            return Err(server(format!("cancel of job {id}: {reply}")));
        }
        Ok(())
    }
}
