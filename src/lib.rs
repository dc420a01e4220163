//! kleiber: a small, privacy-minded XMPP (Jabber) server.
//!
//! One daemon with an embedded store (sled), TLS everywhere, actors per connection (actix).
//! It stores only what its operator's privacy policy lists and never an IP address.
//!
//! # Layout
//!
//! Layers go strictly downward: socket -> [`xml`] -> [`xmpp`] -> [`actors`] -> [`store`].
//!
//! - [`config`]: TOML -> typed configuration; a bad key fails with one line naming it.
//! - [`destinations`]: what each served domain is (account host or service).
//! - [`xml`]: element tree, serialiser, incremental restricted-XML stream reader.
//! - [`xmpp`]: namespaces, stream/stanza errors, JIDs, stanza helpers.
//! - [`sasl`]: SCRAM-SHA-1/256(-PLUS) and PLAIN.
//! - [`credentials`]: a password's stored verifiers (bcrypt, SCRAM with fresh salts).
//! - [`tls`]: OpenSSL acceptor, certificates, STARTTLS, channel binding.
//! - [`transport`]: what a client session runs over (TCP+TLS today; WebSocket, BOSH later).
//! - [`login`]: the unauthenticated part of a client stream (SASL, registration).
//! - [`services`]: server-side IQ handlers, one file per XEP.
//! - [`component`]: the XEP-0114 handshake of external components (gateways, bots).
//! - [`proxy65`]: the SOCKS5 relay of the file-transfer proxy (XEP-0065).
//! - [`store`]: sled trees, one module per tree.
//! - [`shared`]: state shared by all connections.
//! - [`actors`]: connection, router, spool, scheduler and the messages between them.
//! - [`server`]: running a whole server in a thread (the daemon and the tests use it).

// Functions longer than `too-many-lines-threshold` (clippy.toml) are split by concern.
#![warn(clippy::too_many_lines)]

pub mod component;
pub mod config;
pub mod credentials;
pub mod destinations;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod limits;
pub mod login;
pub mod muc;
pub mod proxy65;
pub mod roster;
pub mod s2s;
pub mod sasl;
pub mod server;
pub mod services;
pub mod shared;
pub mod store;
pub mod tls;
pub mod transport;
pub mod xml;
pub mod xmpp;

#[path = "../actors/mod.rs"]
pub mod actors;
