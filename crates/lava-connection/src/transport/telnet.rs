//! Telnet over TCP (RFC 854), e.g. straight to a ser2net port.
//!
//! Only what a console needs: the data stream is cleaned of every telnet command, and
//! option negotiation is answered so the server is never left waiting. The server may
//! echo (ECHO) and suppress go-ahead (SUPPRESS-GO-AHEAD), and we suppress go-ahead on our
//! side too; every other option is refused (DONT / WONT). Subnegotiations are skipped,
//! `IAC IAC` becomes one 0xFF data byte and `CR NUL` becomes `CR`. On the way out, 0xFF
//! data bytes are doubled.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::Transport;
use crate::error::ConnectionError;

const IAC: u8 = 255;
const DONT: u8 = 254;
const DO: u8 = 253;
const WONT: u8 = 252;
const WILL: u8 = 251;
const SB: u8 = 250;
const SE: u8 = 240;
const OPT_ECHO: u8 = 1;
const OPT_SGA: u8 = 3;

/// Where the parser is within the telnet command syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Data,
    /// After a CR in data: a following NUL is dropped.
    CarriageReturn,
    Iac,
    /// After IAC WILL/WONT/DO/DONT, waiting for the option byte.
    Negotiate(u8),
    Subnegotiation,
    SubnegotiationIac,
}

/// The stateful telnet filter, independent of any socket.
#[derive(Debug, Clone)]
pub struct TelnetParser {
    state: State,
    /// Options the server has agreed to perform (after its WILL and our DO).
    remote: [bool; 256],
    /// Options we perform (after its DO and our WILL).
    local: [bool; 256],
}

impl Default for TelnetParser {
    fn default() -> Self {
        TelnetParser {
            state: State::Data,
            remote: [false; 256],
            local: [false; 256],
        }
    }
}

impl TelnetParser {
    /// A parser at the start of a stream, no option enabled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Filters received bytes: the clean data goes to `data`, the replies the protocol
    /// requires go to `reply`.
    pub fn receive(&mut self, input: &[u8], data: &mut Vec<u8>, reply: &mut Vec<u8>) {
        for &byte in input {
            self.state = match (self.state, byte) {
                (State::Data | State::CarriageReturn, IAC) => State::Iac,
                (State::CarriageReturn, 0) => State::Data,
                (State::Data | State::CarriageReturn, b'\r') => {
                    data.push(byte);
                    State::CarriageReturn
                }
                (State::Data | State::CarriageReturn, _) => {
                    data.push(byte);
                    State::Data
                }
                (State::Iac, IAC) => {
                    data.push(IAC);
                    State::Data
                }
                (State::Iac, WILL | WONT | DO | DONT) => State::Negotiate(byte),
                (State::Iac, SB) => State::Subnegotiation,
                // NOP, GA, DM, BRK, AYT... carry no data.
                (State::Iac, _) => State::Data,
                (State::Negotiate(verb), option) => {
                    self.negotiate(verb, option, reply);
                    State::Data
                }
                (State::Subnegotiation, IAC) => State::SubnegotiationIac,
                (State::Subnegotiation, _) => State::Subnegotiation,
                (State::SubnegotiationIac, SE) => State::Data,
                (State::SubnegotiationIac, _) => State::Subnegotiation,
            };
        }
    }

    /// Answers one negotiation, only when it changes an option's state (RFC 854's rule
    /// against acknowledgement loops).
    fn negotiate(&mut self, verb: u8, option: u8, reply: &mut Vec<u8>) {
        let index = option as usize;
        match verb {
            WILL => {
                let accept = matches!(option, OPT_ECHO | OPT_SGA);
                if accept && !self.remote[index] {
                    self.remote[index] = true;
                    reply.extend_from_slice(&[IAC, DO, option]);
                } else if !accept {
                    reply.extend_from_slice(&[IAC, DONT, option]);
                }
            }
            WONT if self.remote[index] => {
                self.remote[index] = false;
                reply.extend_from_slice(&[IAC, DONT, option]);
            }
            DO => {
                let accept = option == OPT_SGA;
                if accept && !self.local[index] {
                    self.local[index] = true;
                    reply.extend_from_slice(&[IAC, WILL, option]);
                } else if !accept {
                    reply.extend_from_slice(&[IAC, WONT, option]);
                }
            }
            DONT if self.local[index] => {
                self.local[index] = false;
                reply.extend_from_slice(&[IAC, WONT, option]);
            }
            _ => {}
        }
    }
}

/// A telnet connection.
#[derive(Debug)]
pub struct TelnetTransport {
    stream: Option<TcpStream>,
    parser: TelnetParser,
    /// Negotiation replies not yet written.
    replies: Vec<u8>,
    /// Clean data not yet handed to the reader.
    pending: Vec<u8>,
    pending_at: usize,
    /// Escaped output being written: (bytes, how many written, caller bytes it stands for).
    outgoing: Option<(Vec<u8>, usize, usize)>,
    raw: Vec<u8>,
    description: String,
}

impl TelnetTransport {
    /// Connects to `host:port`.
    pub async fn connect(host: &str, port: u16) -> Result<Self, ConnectionError> {
        let description = format!("telnet {host} {port}");
        let stream = TcpStream::connect((host, port))
            .await
            .map_err(|e| ConnectionError::io(format!("Cannot connect: {description}"), e))?;
        let _ = stream.set_nodelay(true);
        Ok(TelnetTransport {
            stream: Some(stream),
            parser: TelnetParser::new(),
            replies: Vec::new(),
            pending: Vec::new(),
            pending_at: 0,
            outgoing: None,
            raw: vec![0; 16 * 1024],
            description,
        })
    }

    fn stream(&mut self) -> io::Result<&mut TcpStream> {
        self.stream
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "telnet closed"))
    }

    /// Writes queued negotiation replies as far as the socket allows.
    fn poll_replies(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.replies.is_empty() {
            let stream = self.stream.as_mut().ok_or(io::ErrorKind::NotConnected)?;
            let n = ready!(Pin::new(stream).poll_write(cx, &self.replies))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.replies.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for TelnetTransport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            // Replies go out whenever possible; a full socket must not block reading.
            if let Poll::Ready(Err(e)) = this.poll_replies(cx) {
                return Poll::Ready(Err(e));
            }
            if this.pending_at < this.pending.len() {
                let n = buf.remaining().min(this.pending.len() - this.pending_at);
                buf.put_slice(&this.pending[this.pending_at..this.pending_at + n]);
                this.pending_at += n;
                return Poll::Ready(Ok(()));
            }
            let Some(stream) = this.stream.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            let mut raw = ReadBuf::new(&mut this.raw);
            ready!(Pin::new(stream).poll_read(cx, &mut raw))?;
            if raw.filled().is_empty() {
                return Poll::Ready(Ok(()));
            }
            this.pending.clear();
            this.pending_at = 0;
            let filled = raw.filled().len();
            this.parser
                .receive(&this.raw[..filled], &mut this.pending, &mut this.replies);
            // Only commands arrived: read again (the loop also sends the replies).
        }
    }
}

impl AsyncWrite for TelnetTransport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_replies(cx))?;
        if this.outgoing.is_none() {
            let mut escaped = Vec::with_capacity(data.len() + 2);
            for &byte in data {
                escaped.push(byte);
                if byte == IAC {
                    escaped.push(IAC);
                }
            }
            this.outgoing = Some((escaped, 0, data.len()));
        }
        loop {
            let stream = this.stream.as_mut().ok_or(io::ErrorKind::NotConnected)?;
            let (escaped, written, represents) = this.outgoing.as_mut().expect("set above");
            if *written == escaped.len() {
                let represents = *represents;
                this.outgoing = None;
                return Poll::Ready(Ok(represents));
            }
            let n = ready!(Pin::new(stream).poll_write(cx, &escaped[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_replies(cx))?;
        Pin::new(this.stream()?).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        Pin::new(this.stream()?).poll_shutdown(cx)
    }
}

impl Transport for TelnetTransport {
    fn describe(&self) -> &str {
        &self.description
    }

    fn kill(&mut self) {
        self.stream = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(parser: &mut TelnetParser, input: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let (mut data, mut reply) = (Vec::new(), Vec::new());
        parser.receive(input, &mut data, &mut reply);
        (data, reply)
    }

    #[test]
    fn commands_are_stripped_and_answered() {
        let mut parser = TelnetParser::new();
        let input = [
            b'a', IAC, WILL, OPT_ECHO, IAC, WILL, OPT_SGA, IAC, DO, 24, b'b', IAC, IAC, IAC, SB,
            24, 1, IAC, SE, b'\r', 0, b'c', IAC, 241, b'\r', b'\n',
        ];
        let (data, reply) = filter(&mut parser, &input);
        assert_eq!(data, [b'a', b'b', IAC, b'\r', b'c', b'\r', b'\n']);
        assert_eq!(reply, [IAC, DO, OPT_ECHO, IAC, DO, OPT_SGA, IAC, WONT, 24]);
        // Repeating an accepted option is not acknowledged again.
        let (_, reply) = filter(&mut parser, &[IAC, WILL, OPT_ECHO]);
        assert!(reply.is_empty());
    }

    #[test]
    fn commands_split_across_reads() {
        let mut parser = TelnetParser::new();
        let input = [b'x', IAC, DO, OPT_SGA, IAC, IAC, b'y'];
        let mut data = Vec::new();
        let mut reply = Vec::new();
        for byte in input {
            parser.receive(&[byte], &mut data, &mut reply);
        }
        assert_eq!(data, [b'x', IAC, b'y']);
        assert_eq!(reply, [IAC, WILL, OPT_SGA]);
    }
}
