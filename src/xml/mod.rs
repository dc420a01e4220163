//! XML for XMPP streams: the element tree ([`Element`]), its serialisation, and the
//! incremental stream reader ([`XmlReader`]) that enforces RFC 6120's restricted XML.
//!
//! This layer knows nothing of actors, storage or TLS: it reads any `AsyncRead`.

pub mod element;
pub mod reader;

pub use element::{escape, Element, Node};
pub use reader::{parse_element, ParseError, ReaderLimits, StreamEvent, StreamHeader, XmlReader};
