//! The `lava-xnbd` protocol object: the NBD port of an `nbd` deployment and the servers the
//! job started, ended at finalize (LAVA's `XnbdProtocol`).
//!
//! - [`XnbdProtocol::set_up`]: the job's `protocols: lava-xnbd:` block must give a `port`
//!   (`auto`, or a number).
//! - [`XnbdProtocol::call`]: `request: set_port` (from a deploy block's `protocols:` list,
//!   made before `nbd-deploy` runs) picks the port (`auto`: the dispatcher's choice,
//!   [`crate::runtime::nbd::choose_port`]) and remembers it; `nbd-deploy` then records it
//!   with the dispatcher's address as `nbd-deploy/nbd/{nbd_server_port,nbd_server_ip}`
//!   ([`XnbdProtocol::assigned_port`]). Like LAVA's, the call stores nothing under
//!   `lava-xnbd` itself.
//! - `xnbd-server-deploy` hands the server it started to [`XnbdProtocol::own`].
//! - [`XnbdProtocol::finalise`]: every owned server is ended and its files removed
//!   ([`crate::runtime::nbd::NbdServer::stop`]), whatever happened to the job.

use crate::runtime::nbd::{NbdServer, PortChoice, choose_port};
use lava_pipeline::value::scalar_string;
use lava_pipeline::{JobLogger, LavaError, LavaResult, Protocol};
use serde_yaml::{Mapping, Value};
use std::any::Any;
use std::sync::Mutex;

/// The protocol's name under `protocols:`.
pub const NAME: &str = "lava-xnbd";

/// What the job and its dispatcher say about the port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortRequest {
    /// `port: auto`: chosen by the dispatcher at `set_port`.
    Auto(PortChoice),
    /// `port: <number>`.
    Fixed(u16),
    /// No `port` in the block (an error at set-up, as LAVA's).
    Missing,
}

/// The job's `lava-xnbd` protocol.
#[derive(Debug)]
pub struct XnbdProtocol {
    request: PortRequest,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    ports: Vec<u16>,
    servers: Vec<NbdServer>,
}

impl XnbdProtocol {
    /// Whether a job's `protocols:` block has a `lava-xnbd` entry.
    pub fn accepts(protocols: &Mapping) -> bool {
        protocols.contains_key(NAME)
    }

    /// The protocol of a job's `protocols:` block and its dispatcher configuration.
    pub fn from_job(protocols: &Mapping, dispatcher: Option<&Value>) -> LavaResult<Self> {
        let port = protocols.get(NAME).and_then(|block| block.get("port"));
        let request = match port.and_then(scalar_string) {
            None => PortRequest::Missing,
            Some(text) if text == "auto" => {
                PortRequest::Auto(PortChoice::from_dispatcher(dispatcher)?)
            }
            Some(text) => PortRequest::Fixed(text.parse::<u16>().map_err(|_| {
                LavaError::job(format!(
                    "protocols.{NAME}.port: expected 'auto' or a TCP port, found {text:?}"
                ))
            })?),
        };
        Ok(XnbdProtocol {
            request,
            state: Mutex::new(State::default()),
        })
    }

    /// The port of the latest `set_port` call, if one was made.
    pub fn assigned_port(&self) -> Option<u16> {
        self.lock().ports.last().copied()
    }

    /// Takes ownership of a started server: [`Protocol::finalise`] ends it.
    pub fn own(&self, server: NbdServer) {
        self.lock().servers.push(server);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_port(&self, logger: &JobLogger) -> LavaResult<u16> {
        let port = match &self.request {
            PortRequest::Fixed(port) => *port,
            PortRequest::Auto(choice) => {
                logger.debug("Get a port from pool");
                choose_port(choice)
            }
            PortRequest::Missing => return Err(missing_port()),
        };
        self.lock().ports.push(port);
        logger.debug(format!("Set_port {port}"));
        Ok(port)
    }
}

fn missing_port() -> LavaError {
    LavaError::job(format!(
        "No port set in parameters for {NAME} protocol! E.g.: protocols: {{{NAME}: {{port: auto}}}}"
    ))
}

#[lava_pipeline::async_trait]
impl Protocol for XnbdProtocol {
    fn name(&self) -> &str {
        NAME
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    async fn set_up(&self, _logger: &JobLogger) -> LavaResult<()> {
        match self.request {
            PortRequest::Missing => Err(missing_port()),
            _ => Ok(()),
        }
    }

    async fn call(
        &self,
        call: &Mapping,
        logger: &JobLogger,
    ) -> LavaResult<Option<(String, Value)>> {
        logger.debug(format!("Checking protocol data for {NAME}"));
        let request = call
            .get("request")
            .ok_or_else(|| LavaError::job("Bad API call over protocol - missing request"))?;
        if request.as_str() != Some("set_port") {
            return Err(LavaError::job("Unrecognised API call in request."));
        }
        self.set_port(logger)?;
        Ok(None)
    }

    async fn finalise(&self, logger: &JobLogger) {
        logger.debug(format!("{NAME} cleanup"));
        let servers = std::mem::take(&mut self.lock().servers);
        for server in servers {
            server.stop(logger).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(text: &str) -> Mapping {
        serde_yaml::from_str(text).unwrap()
    }

    #[tokio::test]
    async fn set_port_from_the_dispatchers_range() {
        let dispatcher: Value =
            serde_yaml::from_str("{nbd_server_port_min: 22370, nbd_server_port_max: 22380}")
                .unwrap();
        let protocol =
            XnbdProtocol::from_job(&block("{lava-xnbd: {port: auto}}"), Some(&dispatcher)).unwrap();
        let logger = JobLogger::capturing();
        protocol.set_up(&logger).await.unwrap();
        assert_eq!(protocol.assigned_port(), None);
        let reply = protocol
            .call(&block("{action: nbd-deploy, request: set_port}"), &logger)
            .await
            .unwrap();
        assert_eq!(reply, None);
        let port = protocol.assigned_port().unwrap();
        assert!((22370..22380).contains(&port) || port == 10809, "{port}");
        let bad = protocol
            .call(&block("{action: nbd-deploy, request: other}"), &logger)
            .await
            .unwrap_err();
        assert_eq!(bad.message, "Unrecognised API call in request.");
        let missing = protocol
            .call(&block("{action: nbd-deploy}"), &logger)
            .await
            .unwrap_err();
        assert!(missing.message.contains("missing request"));
    }

    #[tokio::test]
    async fn fixed_and_missing_ports() {
        let logger = JobLogger::capturing();
        let fixed = XnbdProtocol::from_job(&block("{lava-xnbd: {port: 10900}}"), None).unwrap();
        fixed
            .call(&block("{request: set_port}"), &logger)
            .await
            .unwrap();
        assert_eq!(fixed.assigned_port(), Some(10900));
        let missing = XnbdProtocol::from_job(&block("{lava-xnbd: {}}"), None).unwrap();
        let err = missing.set_up(&logger).await.unwrap_err();
        assert!(err.message.starts_with("No port set"), "{err:?}");
        assert!(XnbdProtocol::from_job(&block("{lava-xnbd: {port: many}}"), None).is_err());
        assert!(XnbdProtocol::accepts(&block("{lava-xnbd: {port: auto}}")));
        assert!(!XnbdProtocol::accepts(&block("{lava-multinode: {}}")));
    }
}
