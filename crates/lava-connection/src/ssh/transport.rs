//! [`SshTransport`]: a shell on a pseudo-terminal over SSH, as a [`Transport`].
//!
//! Reads return what the remote terminal prints (its echo included, like a serial
//! console); end of file (`Ok(0)`) when the shell ended and the server closed the
//! channel. When the connection itself is lost (the server process killed, the network
//! gone) a read fails with `ConnectionAborted` naming `host:port` and the cause, so the
//! session reports an InfrastructureError that says which host went away. The
//! transport owns the connection: [`Transport::close`] sends end of file and a
//! disconnect, [`Transport::kill`] (and drop) releases everything at once, which ends
//! the protocol task.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use russh::client;
use russh::{Channel, ChannelMsg, ChannelReadHalf, Disconnect};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::client::{SessionEvents, SessionState};
use super::params::SshParams;
use crate::error::ConnectionError;
use crate::transport::{BoxFuture, Transport};

type Writer = Pin<Box<dyn AsyncWrite + Send>>;
type NextMessage = Pin<Box<dyn Future<Output = (ChannelReadHalf, Option<ChannelMsg>)> + Send>>;

/// The reading side: idle, waiting for the next channel message, or finished.
enum Reader {
    Idle(ChannelReadHalf),
    Waiting(NextMessage),
    Finished,
}

/// A shell on a device, reached over SSH.
pub struct SshTransport {
    reader: Reader,
    writer: Option<Writer>,
    handle: Option<client::Handle<SessionEvents>>,
    /// Data received and not yet read.
    pending: Vec<u8>,
    pending_at: usize,
    description: String,
    address: String,
    shared: Arc<SessionState>,
}

impl std::fmt::Debug for SshTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshTransport")
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

impl SshTransport {
    pub(super) fn new(
        channel: Channel<client::Msg>,
        handle: client::Handle<SessionEvents>,
        early_output: Vec<u8>,
        params: &SshParams,
        shared: Arc<SessionState>,
    ) -> Self {
        let (reader, writer) = channel.split();
        SshTransport {
            reader: Reader::Idle(reader),
            writer: Some(Box::pin(writer.make_writer())),
            handle: Some(handle),
            pending: early_output,
            pending_at: 0,
            description: format!("ssh {}", params.describe()),
            address: params.address(),
            shared,
        }
    }

    fn lost(&self) -> io::Error {
        let reason = self
            .shared
            .lost_reason()
            .unwrap_or_else(|| "the connection ended".into());
        io::Error::new(
            io::ErrorKind::ConnectionAborted,
            format!("ssh connection to {} lost: {reason}", self.address),
        )
    }
}

impl AsyncRead for SshTransport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.pending_at < this.pending.len() {
                let n = buf.remaining().min(this.pending.len() - this.pending_at);
                buf.put_slice(&this.pending[this.pending_at..this.pending_at + n]);
                this.pending_at += n;
                return Poll::Ready(Ok(()));
            }
            let mut next = match std::mem::replace(&mut this.reader, Reader::Finished) {
                Reader::Finished => return Poll::Ready(Ok(())),
                Reader::Waiting(next) => next,
                Reader::Idle(mut half) => Box::pin(async move {
                    let message = half.wait().await;
                    (half, message)
                }),
            };
            let (half, message) = match next.as_mut().poll(cx) {
                Poll::Pending => {
                    this.reader = Reader::Waiting(next);
                    return Poll::Pending;
                }
                Poll::Ready(done) => done,
            };
            match message {
                Some(ChannelMsg::Data { data }) | Some(ChannelMsg::ExtendedData { data, .. }) => {
                    this.reader = Reader::Idle(half);
                    this.pending = data.to_vec();
                    this.pending_at = 0;
                }
                // The shell ended: end of file.
                Some(ChannelMsg::Eof) | Some(ChannelMsg::Close) => {
                    return Poll::Ready(Ok(()));
                }
                Some(_) => this.reader = Reader::Idle(half),
                None => return Poll::Ready(Err(this.lost())),
            }
        }
    }
}

impl AsyncWrite for SshTransport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let Some(writer) = this.writer.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        match writer.as_mut().poll_write(cx, data) {
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::BrokenPipe => {
                Poll::Ready(Err(this.lost()))
            }
            other => other,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().writer.as_mut() {
            Some(writer) => writer.as_mut().poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    /// Sends end of file to the shell.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().writer.as_mut() {
            Some(writer) => writer.as_mut().poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl Transport for SshTransport {
    fn describe(&self) -> &str {
        &self.description
    }

    fn kill(&mut self) {
        // Without a handle, a channel or a writer, the protocol task has nobody to
        // serve: it closes the socket and ends.
        self.reader = Reader::Finished;
        self.writer = None;
        self.handle = None;
        self.pending.clear();
        self.pending_at = 0;
    }

    fn close(&mut self, grace: Duration) -> BoxFuture<'_, Result<(), ConnectionError>> {
        Box::pin(async move {
            let _ = tokio::time::timeout(grace, self.shutdown()).await;
            if let Some(handle) = &self.handle {
                let goodbye = handle.disconnect(Disconnect::ByApplication, "lava-rs is done", "en");
                let _ = tokio::time::timeout(grace, goodbye).await;
            }
            self.kill();
            Ok(())
        })
    }
}
