//! lava-server's side of the conversation, as LAVA's worker speaks it: requests under
//! `<url>/scheduler/internal/v1/`, form-encoded POST bodies, JSON replies, the
//! `LAVA-Token` header and a `lava-worker <version>` user agent. Every request is bounded
//! by the HTTP timeout.

use std::time::Duration;

use serde::Deserialize;

use crate::config::WorkerConfig;
use crate::error::{ServerError, WorkerError};

/// One job as a ping lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct JobTicket {
    /// The job id.
    pub id: u64,
    /// The job token (fetches the definition, reports the state, uploads the log).
    pub token: String,
}

/// A ping's answer: jobs to start, to cancel, and running on the server's books.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct PingReply {
    /// Jobs in state Scheduled.
    #[serde(default)]
    pub start: Vec<JobTicket>,
    /// Jobs in state Canceling.
    #[serde(default)]
    pub cancel: Vec<JobTicket>,
    /// Jobs in state Running.
    #[serde(default)]
    pub running: Vec<JobTicket>,
}

/// What `GET jobs/<id>/` returns: every value is YAML text or `""`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct JobFiles {
    /// The job definition.
    pub definition: String,
    /// The rendered device configuration.
    pub device: String,
    /// The worker's dispatcher configuration.
    pub dispatcher: String,
    /// The worker's environment configuration (purge/removes/overrides).
    pub env: String,
    /// The environment of the device under test.
    #[serde(rename = "env-dut")]
    pub env_dut: String,
}

/// The final report of a job (`POST jobs/<id>/ state=FINISHED`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// `pass` or `fail`.
    pub result: String,
    /// LAVA's error type (`Infrastructure`, `Job`, `Canceled`, ... or empty).
    pub error_type: String,
    /// The dispatcher's standard error.
    pub errors: String,
    /// The pipeline description YAML, or empty.
    pub description: String,
}

/// The HTTP client of one worker.
#[derive(Debug, Clone)]
pub struct ServerClient {
    http: reqwest::Client,
    api: String,
    name: String,
    version: String,
}

impl ServerClient {
    /// A client for `config`'s server, user agent and timeout.
    pub fn new(config: &WorkerConfig) -> Result<Self, WorkerError> {
        let http = reqwest::Client::builder()
            .user_agent(config.user_agent())
            .timeout(config.http_timeout)
            .connect_timeout(config.http_timeout.min(Duration::from_secs(30)))
            .build()
            .map_err(|e| WorkerError::Client(e.to_string()))?;
        Ok(ServerClient {
            http,
            api: format!("{}/scheduler/internal/v1", config.url),
            name: config.name.clone(),
            version: config.reported_version.clone(),
        })
    }

    /// `GET workers/<name>/?version=<version>` with the worker token.
    pub async fn ping(&self, token: &str) -> Result<PingReply, ServerError> {
        let url = format!("{}/workers/{}/", self.api, self.name);
        let request = self
            .http
            .get(&url)
            .query(&[("version", self.version.as_str())])
            .header("LAVA-Token", token);
        let text = send(request, &url).await?;
        parse(&url, &text)
    }

    /// `POST workers/` (no token): auto-registration, anonymous or with credentials.
    /// Returns the worker token.
    pub async fn register(&self, credentials: Option<(&str, &str)>) -> Result<String, ServerError> {
        #[derive(Deserialize)]
        struct Registered {
            token: String,
        }
        let url = format!("{}/workers/", self.api);
        let mut form = vec![("name", self.name.as_str())];
        if let Some((username, password)) = credentials {
            form.push(("username", username));
            form.push(("password", password));
        }
        let text = send(self.http.post(&url).form(&form), &url).await?;
        parse::<Registered>(&url, &text).map(|r| r.token)
    }

    /// `GET jobs/<id>/` with the job token.
    pub async fn job_files(&self, job: &JobTicket) -> Result<JobFiles, ServerError> {
        let url = self.job_url(job.id);
        let text = send(self.http.get(&url).header("LAVA-Token", &job.token), &url).await?;
        parse(&url, &text)
    }

    /// `POST jobs/<id>/ state=RUNNING`.
    pub async fn report_running(&self, id: u64, token: &str) -> Result<(), ServerError> {
        let url = self.job_url(id);
        let request = self
            .http
            .post(&url)
            .header("LAVA-Token", token)
            .form(&[("state", "RUNNING")]);
        send(request, &url).await.map(drop)
    }

    /// `POST jobs/<id>/ state=FINISHED` with the result, error type, errors and
    /// description.
    pub async fn report_finished(
        &self,
        id: u64,
        token: &str,
        finished: &Finished,
    ) -> Result<(), ServerError> {
        let url = self.job_url(id);
        let request = self.http.post(&url).header("LAVA-Token", token).form(&[
            ("state", "FINISHED"),
            ("result", finished.result.as_str()),
            ("error_type", finished.error_type.as_str()),
            ("errors", finished.errors.as_str()),
            ("description", finished.description.as_str()),
        ]);
        send(request, &url).await.map(drop)
    }

    fn job_url(&self, id: u64) -> String {
        format!("{}/jobs/{id}/", self.api)
    }
}

/// Send and return the body of a 200 reply.
async fn send(request: reqwest::RequestBuilder, url: &str) -> Result<String, ServerError> {
    let unreachable = |e: reqwest::Error| ServerError::Unreachable {
        url: url.to_string(),
        message: e.to_string(),
    };
    let response = request.send().await.map_err(unreachable)?;
    let status = response.status().as_u16();
    let text = response.text().await.map_err(unreachable)?;
    if status == 200 {
        return Ok(text);
    }
    #[derive(Deserialize)]
    struct LavaError {
        error: String,
    }
    let error = match serde_json::from_str::<LavaError>(&text) {
        Ok(body) => body.error,
        Err(_) => text.chars().take(200).collect(),
    };
    Err(ServerError::Status {
        url: url.to_string(),
        status,
        error,
    })
}

fn parse<T: serde::de::DeserializeOwned>(url: &str, text: &str) -> Result<T, ServerError> {
    serde_json::from_str(text).map_err(|e| ServerError::Reply {
        url: url.to_string(),
        message: e.to_string(),
    })
}
