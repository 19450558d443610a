//! A serial port opened directly (`/dev/ttyUSB0` at 115200 baud), 8N1, no flow control.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_serial::{SerialPortBuilderExt, SerialStream};

use super::Transport;
use crate::error::ConnectionError;

/// An open serial port.
#[derive(Debug)]
pub struct SerialTransport {
    port: Option<SerialStream>,
    description: String,
}

impl SerialTransport {
    /// Opens `path` at `baud_rate` (8 data bits, no parity, 1 stop bit, no flow control).
    /// Must be called within a tokio runtime.
    pub fn open(path: &str, baud_rate: u32) -> Result<Self, ConnectionError> {
        let description = format!("serial {path} at {baud_rate} baud");
        let port = tokio_serial::new(path, baud_rate)
            .data_bits(tokio_serial::DataBits::Eight)
            .parity(tokio_serial::Parity::None)
            .stop_bits(tokio_serial::StopBits::One)
            .flow_control(tokio_serial::FlowControl::None)
            .open_native_async()
            .map_err(|e| ConnectionError::io(format!("Cannot open {description}"), e.into()))?;
        Ok(SerialTransport {
            port: Some(port),
            description,
        })
    }

    fn port(&mut self) -> io::Result<Pin<&mut SerialStream>> {
        self.port
            .as_mut()
            .map(Pin::new)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "serial port closed"))
    }
}

impl AsyncRead for SerialTransport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut().port.as_mut() {
            Some(port) => Pin::new(port).poll_read(cx, buf),
            // Closed: end of file.
            None => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for SerialTransport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().port()?.poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().port()?.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().port()?.poll_shutdown(cx)
    }
}

impl Transport for SerialTransport {
    fn describe(&self) -> &str {
        &self.description
    }

    /// Closes the port (nothing runs behind a serial port).
    fn kill(&mut self) {
        self.port = None;
    }
}
