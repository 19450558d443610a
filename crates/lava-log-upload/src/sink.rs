//! Where the records go: a [`Sink`] takes one batch and says how many records the server
//! took. [`HttpSink`] is lava-server's log endpoint.

use std::future::Future;
use std::time::Duration;

use crate::error::SendError;
use crate::source::Batch;

/// Something that accepts batches of log records.
pub trait Sink: Send {
    /// Send `batch`; `index` is how many records of the job the server already accepted.
    /// Returns the server's `line_count`: how many records of this batch it took.
    fn send(
        &mut self,
        batch: &Batch,
        index: u64,
    ) -> impl Future<Output = Result<u64, SendError>> + Send;
}

/// lava-server's `POST {url}/scheduler/internal/v1/jobs/{job_id}/logs/`.
pub struct HttpSink {
    client: reqwest::Client,
    endpoint: String,
    token: String,
}

/// Settings of the [`HttpSink`].
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// The server's base URL, as given to `lava-run --url` (a trailing `/` is allowed).
    pub url: String,
    /// The job token (`LAVA-Token` header); never logged or shown.
    pub token: String,
    /// The job id.
    pub job_id: String,
    /// `User-Agent` value (LAVA: `lava <version>`).
    pub user_agent: String,
    /// Bound of a whole request (connect, send, reply).
    pub request_timeout: Duration,
    /// Bound of the TCP (and TLS) connection set-up.
    pub connect_timeout: Duration,
}

impl HttpSettings {
    /// Settings for `url`, `token` and `job_id`, with our user agent and LAVA master's
    /// 120 s request timeout.
    pub fn new(url: &str, token: &str, job_id: &str) -> Self {
        HttpSettings {
            url: url.to_string(),
            token: token.to_string(),
            job_id: job_id.to_string(),
            user_agent: crate::USER_AGENT.to_string(),
            request_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(10),
        }
    }

    /// The log endpoint of the job.
    pub fn endpoint(&self) -> String {
        format!(
            "{}/scheduler/internal/v1/jobs/{}/logs/",
            self.url.trim_end_matches('/'),
            self.job_id
        )
    }
}

impl HttpSink {
    /// A sink posting to the job's log endpoint.
    pub fn new(settings: &HttpSettings) -> Result<Self, SendError> {
        let client = reqwest::Client::builder()
            .user_agent(settings.user_agent.clone())
            .timeout(settings.request_timeout)
            .connect_timeout(settings.connect_timeout)
            .build()
            .map_err(|e| SendError::Client(e.to_string()))?;
        Ok(HttpSink {
            client,
            endpoint: settings.endpoint(),
            token: settings.token.clone(),
        })
    }

    /// `text` with the token replaced by `[MASKED]`.
    fn mask(&self, text: String) -> String {
        crate::mask(text, &self.token)
    }
}

impl Sink for HttpSink {
    async fn send(&mut self, batch: &Batch, index: u64) -> Result<u64, SendError> {
        let index = index.to_string();
        let lines = batch.lines_field();
        let reply = self
            .client
            .post(&self.endpoint)
            .header("LAVA-Token", &self.token)
            .form(&[("lines", lines.as_str()), ("index", index.as_str())])
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    SendError::Timeout
                } else {
                    SendError::Transport(self.mask(format!("{e:#}")))
                }
            })?;
        let status = reply.status();
        let body = reply.text().await.map_err(|e| {
            if e.is_timeout() {
                SendError::Timeout
            } else {
                SendError::Transport(self.mask(format!("{e:#}")))
            }
        })?;
        if status != reqwest::StatusCode::OK {
            let mut body = self.mask(body);
            body.truncate(200);
            return Err(SendError::Status {
                code: status.as_u16(),
                body,
            });
        }
        line_count(&body).ok_or_else(|| {
            let mut body = self.mask(body);
            body.truncate(200);
            SendError::Reply(body)
        })
    }
}

/// The `line_count` of a reply body `{"line_count": N}`.
fn line_count(body: &str) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    match value.get("line_count")? {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_and_reply() {
        let settings = HttpSettings::new("http://lava.lab/", "t", "42");
        assert_eq!(
            settings.endpoint(),
            "http://lava.lab/scheduler/internal/v1/jobs/42/logs/"
        );
        assert_eq!(line_count("{\"line_count\": 7}"), Some(7));
        assert_eq!(line_count("{\"line_count\": \"7\"}"), Some(7));
        assert_eq!(line_count("{\"error\": \"x\"}"), None);
        assert_eq!(line_count("<html>"), None);
    }
}
