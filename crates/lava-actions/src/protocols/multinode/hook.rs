//! The test shell's MultiNode markers answered through the protocol object
//! (multinode.md §7.3–§7.5).
//!
//! | marker | coordinator | line typed back |
//! |---|---|---|
//! | `<LAVA_SEND id k=v…>` | `lava_send` (message = map or `{}`) | none |
//! | `<LAVA_WAIT id>` | `lava_wait` | `<LAVA_WAIT_COMPLETE 7001:k=v …>` |
//! | `<LAVA_WAIT_ALL id [role]>` | `lava_wait_all` (`waitrole`) | `<LAVA_WAIT_ALL_COMPLETE …>` |
//! | `<LAVA_SYNC id>` | `lava_sync` | `<LAVA_SYNC_COMPLETE>` |
//!
//! A `nack` gives `<LAVA_…_COMPLETE nack>` and still a `pass` case; a
//! `nack` to a send is LAVA's TestError "Coordinator was unable to accept
//! LAVA_SEND". Every call uses the job-level `protocols.lava-multinode.timeout`
//! as poll timeout when there is one.
//!
//! On a timeout the case is `fail` and the hook keeps the error for the
//! runner ([`ShellHook::take_failure`]), which then stops watching this test
//! shell run as LAVA does. Unlike LAVA (which types nothing and leaves the
//! device blocked in its `read`) the hook also answers
//! `<LAVA_…_COMPLETE nack>` so the helper on the device returns; turn this
//! off with [`ShellHook::reply_on_timeout`].
//!
//! The runner types the returned line with the device's character delay,
//! then an empty line, as LAVA does.
//!
//! **Sync and async.** The real work is [`ShellHook::handle_async`]. The
//! `lava_shell::MultinodeHook` trait is synchronous, so its implementation
//! runs that future to completion on a private thread with its own
//! single-threaded tokio runtime, started on first use: it works from plain
//! threads and from inside any tokio runtime, but it blocks the calling
//! thread while the coordinator is polled (exactly LAVA's behaviour: the
//! console is not read meanwhile). An async runner should call
//! `handle_async` directly. Never call the synchronous `handle` on a
//! current-thread runtime that also serves an embedded coordinator: that
//! coordinator could not answer until the call timed out.

use std::sync::mpsc;
use std::thread;

use indexmap::IndexMap;
use lava_shell::signals::{MultinodeOutcome, MultinodeReply, multinode_reply_line};
use lava_shell::{MultinodeHook, MultinodeRequest};
use serde_json::Value as Json;

use super::protocol::{CallReply, MultinodeError, MultinodeProtocol};
use lava_multinode::wire::{Payload, SenderPayloads};

type Job = Box<dyn FnOnce(&tokio::runtime::Runtime) + Send>;

/// Answers test-shell MultiNode markers for one node.
pub struct ShellHook {
    protocol: MultinodeProtocol,
    reply_on_timeout: bool,
    failure: Option<MultinodeError>,
    bridge: Option<Bridge>,
}

impl std::fmt::Debug for ShellHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShellHook")
            .field("job_id", &self.protocol.job_id())
            .field("reply_on_timeout", &self.reply_on_timeout)
            .field("failure", &self.failure)
            .finish()
    }
}

impl ShellHook {
    /// A hook over `protocol` (already set up). Applies the job-level
    /// `timeout` of the protocol block as poll timeout, as LAVA's signal
    /// director does.
    pub fn new(protocol: MultinodeProtocol) -> Self {
        if let Some(timeout) = protocol.params().timeout {
            protocol.set_poll_timeout(timeout);
        }
        ShellHook {
            protocol,
            reply_on_timeout: true,
            failure: None,
            bridge: None,
        }
    }

    /// Whether to type a `nack` completion after a timeout (default yes;
    /// LAVA types nothing).
    pub fn reply_on_timeout(mut self, reply: bool) -> Self {
        self.reply_on_timeout = reply;
        self
    }

    /// The protocol object.
    pub fn protocol(&self) -> &MultinodeProtocol {
        &self.protocol
    }

    /// The error of the last call that went wrong, if any, taken: a
    /// [`MultinodeError::Timeout`] (stop watching this run, as LAVA does) or
    /// a TestError/JobError (fail the test action).
    pub fn take_failure(&mut self) -> Option<MultinodeError> {
        self.failure.take()
    }

    /// Handle one marker (see the module table). Returns the case result and
    /// the line to type, if any.
    pub async fn handle_async(&mut self, request: &MultinodeRequest) -> MultinodeOutcome {
        let (outcome, failure) = answer(&self.protocol, request, self.reply_on_timeout).await;
        if failure.is_some() {
            self.failure = failure;
        }
        outcome
    }
}

impl MultinodeHook for ShellHook {
    fn handle(&mut self, request: &MultinodeRequest) -> MultinodeOutcome {
        let bridge = self.bridge.get_or_insert_with(Bridge::start);
        let protocol = self.protocol.clone();
        let request_owned = request.clone();
        let reply_on_timeout = self.reply_on_timeout;
        let (outcome, failure) = bridge.run(move |runtime| {
            runtime.block_on(answer(&protocol, &request_owned, reply_on_timeout))
        });
        if failure.is_some() {
            self.failure = failure;
        }
        outcome
    }
}

/// The answer to one marker and the error to keep, if any.
async fn answer(
    protocol: &MultinodeProtocol,
    request: &MultinodeRequest,
    reply_on_timeout: bool,
) -> (MultinodeOutcome, Option<MultinodeError>) {
    let done = |passed: bool, reply: Option<String>| MultinodeOutcome { passed, reply };
    let api = request.api().to_string();
    let result = match request {
        MultinodeRequest::Send { message_id, data } => {
            let payload = Payload::from(data.clone());
            match protocol.send(message_id, payload).await {
                Ok(reply) if reply.is_nack() => {
                    let error =
                        MultinodeError::Test("Coordinator was unable to accept LAVA_SEND".into());
                    return (done(false, None), Some(error));
                }
                Ok(_) => return (done(true, None), None),
                Err(error) => Err(error),
            }
        }
        MultinodeRequest::Wait { message_id } => protocol.wait(message_id).await,
        MultinodeRequest::WaitAll { message_id, role } => {
            protocol.wait_all(message_id, role.as_deref()).await
        }
        MultinodeRequest::Sync { message_id } => protocol.sync(message_id).await,
        MultinodeRequest::Invalid {
            api,
            params,
            reason,
        } => {
            let error = MultinodeError::Test(format!(
                "Invalid MultiNode call <LAVA_{api} {params}>: {reason}"
            ));
            return (done(false, None), Some(error));
        }
        // LAVA stops watching the run; there is no case and nothing to type.
        MultinodeRequest::Unknown { .. } => return (done(false, None), None),
    };
    match result {
        Ok(reply) => {
            let line = match reply {
                CallReply::Word("nack") => multinode_reply_line(&api, &MultinodeReply::Nack),
                CallReply::Senders(senders) if api != "SYNC" => {
                    multinode_reply_line(&api, &MultinodeReply::Data(flatten(&senders)))
                }
                _ => multinode_reply_line(&api, &MultinodeReply::Data(IndexMap::new())),
            };
            (done(true, Some(line)), None)
        }
        Err(error) => {
            let line = (error.is_timeout() && reply_on_timeout && api != "SEND")
                .then(|| multinode_reply_line(&api, &MultinodeReply::Nack));
            tracing::warn!("Sync error in multinode signal: {error} {api}");
            (done(false, line), Some(error))
        }
    }
}

/// Sender → payload as the console reply shows it: values as text
/// (strings bare, anything else in JSON form, `null` as `None` like Python).
fn flatten(senders: &SenderPayloads) -> IndexMap<String, IndexMap<String, String>> {
    senders
        .iter()
        .map(|(sender, payload)| {
            let data = match payload {
                Payload::Map(map) => map.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
                _ => IndexMap::new(),
            };
            (sender.clone(), data)
        })
        .collect()
}

fn text(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        Json::Null => "None".to_string(),
        Json::Bool(true) => "True".to_string(),
        Json::Bool(false) => "False".to_string(),
        other => other.to_string(),
    }
}

/// A thread owning a current-thread tokio runtime, running jobs one at a time.
struct Bridge {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Bridge {
    fn start() -> Bridge {
        let (sender, receiver) = mpsc::channel::<Job>();
        let thread = thread::Builder::new()
            .name("multinode-hook".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a tokio runtime for the MultiNode hook");
                while let Ok(job) = receiver.recv() {
                    job(&runtime);
                }
            })
            .expect("spawn the MultiNode hook thread");
        Bridge {
            jobs: Some(sender),
            thread: Some(thread),
        }
    }

    fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&tokio::runtime::Runtime) -> T + Send + 'static,
    ) -> T {
        let (sender, receiver) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |runtime| {
            let _ = sender.send(work(runtime));
        });
        self.jobs
            .as_ref()
            .expect("bridge running")
            .send(job)
            .expect("MultiNode hook thread alive");
        receiver.recv().expect("MultiNode hook thread answered")
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_values_read_like_pythons_str() {
        let mut payload = IndexMap::new();
        payload.insert("ip".to_string(), Json::String("10.0.0.1".into()));
        payload.insert("n".to_string(), Json::from(3));
        payload.insert("x".to_string(), Json::Null);
        let senders: SenderPayloads = IndexMap::from([
            ("7001".to_string(), Payload::Map(payload)),
            ("7002".to_string(), Payload::empty()),
        ]);
        let line = multinode_reply_line("WAIT", &MultinodeReply::Data(flatten(&senders)));
        assert_eq!(
            line,
            "<LAVA_WAIT_COMPLETE 7001:ip=10.0.0.1 7001:n=3 7001:x=None>"
        );
    }
}
