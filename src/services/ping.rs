//! XEP-0199: XMPP Ping. The server answers `<ping xmlns='urn:xmpp:ping'/>` with an empty
//! result (routed in [`super::server_iq`]); pings to full JIDs are routed to the client.
