//! What a client session runs over, once the transport's own security is in place: a source
//! of the client's bytes (an XML stream), a sink for the server's, and the channel-binding
//! data SASL can use. Login (`login.rs`), the session (`actors/connection.rs`) and stream
//! management resumption only see a [`Transport`], never a socket.
//!
//! Today's implementation is TCP with TLS (RFC 6120, STARTTLS or direct TLS): [`Transport::tls`].
//! Further transports plug in as further constructors:
//!
//! - RFC 7395 WebSocket: a reader that turns each frame into stream text (`<open/>` becomes the
//!   stream header, `<close/>` the stream end, every other frame the element it carries) and a
//!   writer that sends each top-level element of what it is given as one frame (the header
//!   and `</stream:stream>` as `<open/>` and `<close/>`), over the HTTPS connection's TLS
//!   (whose channel binding it can pass on);
//! - XEP-0206 BOSH: the same over a pair of pipes fed by the HTTP requests of the session, so
//!   that the session outlives each request.
//!
//! The writer gets whatever the session's outbox (`actors/outbox.rs`) has batched: the TCP
//! transport writes it as one TLS record and one system call; a framed transport splits it.

pub mod framing;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::sasl::ChannelBinding;
use crate::tls::TlsStream;

/// The read side of a client transport: the client's XML stream as bytes.
pub type ByteReader = Box<dyn AsyncRead + Send + Unpin>;
/// The write side of a client transport: the server's XML stream as bytes.
pub type ByteWriter = Box<dyn AsyncWrite + Send + Unpin>;

/// A client transport, ready for the stream header.
pub struct Transport {
    pub reader: ByteReader,
    pub writer: ByteWriter,
    /// What `-PLUS` SASL mechanisms can bind to (nothing: they are not offered).
    pub channel_binding: ChannelBinding,
}

impl Transport {
    /// A TLS stream over TCP (after STARTTLS or a direct TLS handshake).
    pub fn tls(stream: TlsStream) -> Transport {
        let channel_binding = crate::tls::channel_binding(stream.ssl());
        let (reader, writer) = tokio::io::split(stream);
        Transport {
            reader: Box::new(reader),
            writer: Box::new(writer),
            channel_binding,
        }
    }
}
