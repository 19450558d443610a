//! The MultiNode protocol as one of the pipeline's job protocols
//! ([`lava_pipeline::Protocol`]): what `lava-run` hands the executor for a job with a
//! `protocols: lava-multinode:` block.
//!
//! As in LAVA, the coordinator settings are read when the job starts
//! ([`lava_pipeline::Protocol::set_up`]), not when it is parsed: `lava-run --validate` of a
//! MultiNode job needs no coordinator configuration, and a missing file fails the run with
//! LAVA's InfrastructureError "Missing coordinator configuration".

use std::path::PathBuf;
use std::sync::OnceLock;

use lava_pipeline::{ErrorKind, JobLogger, LavaError, LavaResult};
use serde_yaml::{Mapping, Value};

use super::protocol::{ErrorClass, MultinodeError, MultinodeProtocol, ProtocolParams, collate};
use lava_multinode::client::ClientSettings;
use lava_multinode::split::PROTOCOL_NAME;

/// LAVA's fixed location of the coordinator configuration on a worker.
pub const DEFAULT_COORDINATOR_CONFIG: &str = "/etc/lava-coordinator/lava-coordinator.conf";

/// Where the coordinator settings come from.
#[derive(Debug, Clone)]
pub enum CoordinatorSettings {
    /// A `lava-coordinator.conf` file, read at set-up.
    File(PathBuf),
    /// Settings already known (an embedded coordinator).
    Given(ClientSettings),
}

/// The `lava-multinode` job protocol of one node job.
#[derive(Debug)]
pub struct MultinodeJobProtocol {
    params: ProtocolParams,
    job_id: String,
    hostname: String,
    settings: CoordinatorSettings,
    protocol: OnceLock<MultinodeProtocol>,
}

impl MultinodeJobProtocol {
    /// The protocol of job `job_id` running on worker `hostname`, from the job's
    /// `protocols.lava-multinode` block.
    pub fn new(
        params: ProtocolParams,
        job_id: &str,
        hostname: &str,
        settings: CoordinatorSettings,
    ) -> Self {
        MultinodeJobProtocol {
            params,
            job_id: job_id.to_string(),
            hostname: hostname.to_string(),
            settings,
            protocol: OnceLock::new(),
        }
    }

    /// The job's block, typed.
    pub fn params(&self) -> &ProtocolParams {
        &self.params
    }

    /// The protocol object, once set-up has read the settings.
    pub fn protocol(&self) -> Option<MultinodeProtocol> {
        self.protocol.get().cloned()
    }

    fn settings(&self) -> Result<ClientSettings, MultinodeError> {
        match &self.settings {
            CoordinatorSettings::File(path) => MultinodeProtocol::load_settings(path),
            CoordinatorSettings::Given(settings) => Ok(settings.clone()),
        }
    }

    fn set_up_protocol(&self) -> LavaResult<MultinodeProtocol> {
        if let Some(protocol) = self.protocol.get() {
            return Ok(protocol.clone());
        }
        let settings = self.settings()?;
        let protocol =
            MultinodeProtocol::new(self.params.clone(), &self.job_id, &self.hostname, settings);
        Ok(self.protocol.get_or_init(|| protocol).clone())
    }
}

#[lava_pipeline::async_trait]
impl lava_pipeline::Protocol for MultinodeJobProtocol {
    fn name(&self) -> &str {
        PROTOCOL_NAME
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    async fn set_up(&self, logger: &JobLogger) -> LavaResult<()> {
        let protocol = self.set_up_protocol()?;
        let settings = protocol.client().settings().clone();
        logger.debug(format!(
            "Initialising group {} (size {}) on the coordinator at {}:{}",
            self.params.target_group, self.params.group_size, settings.host, settings.port
        ));
        protocol.register().await?;
        match self.params.delayed_start_role() {
            Some(expect_role) => {
                logger.info(format!(
                    "{PROTOCOL_NAME} protocol initialised - start is delayed by up to {} seconds",
                    protocol.system_timeout().as_secs()
                ));
                logger.debug(format!(
                    "Delaying start for {} seconds, lava_wait_all for role {expect_role}",
                    protocol.system_timeout().as_secs()
                ));
                protocol.delayed_start().await?;
            }
            None => logger.debug(format!("{PROTOCOL_NAME} protocol initialised")),
        }
        Ok(())
    }

    async fn call(
        &self,
        call: &Mapping,
        logger: &JobLogger,
    ) -> LavaResult<Option<(String, Value)>> {
        let protocol = self
            .protocol
            .get()
            .cloned()
            .ok_or(MultinodeError::NotSetUp)?;
        let reply = protocol.call(call).await?;
        logger.debug(format!("{PROTOCOL_NAME} reply: {reply:?}"));
        let stored = collate(&reply, call)?;
        Ok(stored.map(|(key, value)| (key, Value::Mapping(value))))
    }

    async fn finalise(&self, logger: &JobLogger) {
        let Some(protocol) = self.protocol.get() else {
            return;
        };
        match protocol.finalise().await {
            Ok(()) => logger.debug(format!("{PROTOCOL_NAME} protocol finalised.")),
            Err(error) => logger.warning(format!("{PROTOCOL_NAME} clear_group failed: {error}")),
        }
    }
}

/// A MultiNode error as the dispatcher's error, classed as LAVA classes it.
impl From<MultinodeError> for LavaError {
    fn from(error: MultinodeError) -> Self {
        let kind = match error.class() {
            ErrorClass::Infrastructure => ErrorKind::Infrastructure,
            ErrorClass::Configuration => ErrorKind::Configuration,
            ErrorClass::Job => ErrorKind::Job,
            ErrorClass::Test => ErrorKind::Test,
            ErrorClass::MultinodeTimeout => ErrorKind::MultinodeTimeout,
        };
        LavaError::new(kind, error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn multinode_errors_keep_lavas_class() {
        let timeout = LavaError::from(MultinodeError::Timeout {
            operation: "lava-sync".into(),
            waited: Duration::from_secs(2),
        });
        assert_eq!(timeout.kind, ErrorKind::MultinodeTimeout);
        assert_eq!(
            timeout.message,
            "protocol lava-multinode timed out: lava-sync after 2s"
        );
        assert_eq!(
            LavaError::from(MultinodeError::NotSetUp).kind,
            ErrorKind::Infrastructure
        );
        assert_eq!(
            LavaError::from(MultinodeError::Test("no".into())).kind,
            ErrorKind::Test
        );
    }
}
