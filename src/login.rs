//! The unauthenticated part of a client stream, over TLS: stream header, features, SASL, and
//! in-band registration; then the stream restart and the post-authentication features.
//!
//! This is a plain async function, not an actor: until SASL succeeds the only party is the
//! client, and running the exchange in one task makes the stream-restart race impossible by
//! construction (the same code that sends `<success/>` resets the parser before reading on).
//! Unauthenticated connections also cost no actor, mailbox or router entry. The Connection
//! actor starts with an authenticated, restarted stream.

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::config::{AuthConfig, Config, LimitsConfig};
use crate::credentials::verify_bcrypt;
use crate::limits::{Limiter, PeerAddr};
use crate::sasl::{self, ChannelBinding, Failure, Mechanism, ScramPending};
use crate::services::disco::ServerInfo;
use crate::services::register;
use crate::shared::{blocking, ConnId, Shared};
use crate::store::{now_secs, Accounts, Store};
use crate::tls::{check_header, next_bounded, parse_error_condition};
use crate::xml::{Element, ReaderLimits, StreamEvent, XmlReader};
use crate::xmpp::{error_reply, iq_result, ns, random_id, stream_header, StanzaError, StreamError};

/// Failed SASL attempts allowed on one connection before it is closed.
const MAX_AUTH_FAILURES: u32 = 5;

/// The read side of an authenticated client stream.
pub type ClientReader = XmlReader<crate::transport::ByteReader>;
/// The write side of an authenticated client stream.
pub type ClientWriter = crate::transport::ByteWriter;

/// An authenticated, restarted stream, ready for resource binding.
pub struct LoggedIn {
    pub reader: ClientReader,
    pub writer: ClientWriter,
    /// Normalised localpart.
    pub user: String,
    /// The host the client connected to.
    pub host: String,
    /// The mechanism used (for the log).
    pub mechanism: Mechanism,
    /// The per-session abuse limits apply (not an exempt loopback client).
    pub limited: bool,
}

/// How a connection ended before authentication.
#[derive(Debug)]
pub enum LoginEnd {
    /// The client closed the stream or the transport failed.
    Closed,
    /// A stream error was sent.
    StreamError(StreamError),
}

/// Limits before authentication (small stanzas, shallow nesting).
pub fn preauth_limits(limits: &LimitsConfig) -> ReaderLimits {
    ReaderLimits {
        max_stanza: limits.max_stanza_bytes_before_auth,
        max_depth: 8,
    }
}

/// Limits after authentication.
pub fn session_limits(limits: &LimitsConfig) -> ReaderLimits {
    ReaderLimits {
        max_stanza: limits.max_stanza_bytes,
        ..ReaderLimits::default()
    }
}

async fn send<W: AsyncWrite + Unpin>(w: &mut W, s: &str) -> Result<(), LoginEnd> {
    w.write_all(s.as_bytes())
        .await
        .map_err(|_| LoginEnd::Closed)
}

/// Send a stream error (and our header first if the stream is not open yet) and close.
pub async fn stream_error<W: AsyncWrite + Unpin>(
    w: &mut W,
    header_sent: bool,
    host: &str,
    err: StreamError,
) -> LoginEnd {
    let mut out = String::new();
    if !header_sent {
        out.push_str(&stream_header(host, None, &random_id(12)));
    }
    out.push_str(&err.to_xml(None));
    let _ = w.write_all(out.as_bytes()).await;
    let _ = w.shutdown().await;
    LoginEnd::StreamError(err)
}

/// The client's first element after authentication (bind, or a XEP-0198 `<resume/>`), read
/// before `deadline` or the server's `shutdown`; failures are answered with the stream error
/// they call for.
pub async fn first_element(
    shutdown: &mut Shutdown,
    login: &mut LoggedIn,
    deadline: Instant,
) -> Result<Element, LoginEnd> {
    let host = login.host.clone();
    match next_event(
        shutdown,
        &mut login.reader,
        &mut login.writer,
        true,
        &host,
        deadline,
    )
    .await?
    {
        StreamEvent::Element(el) => Ok(el),
        _ => Err(stream_error(&mut login.writer, true, &host, StreamError::NotWellFormed).await),
    }
}

/// The server's shutdown signal (`true` once it is going down).
pub type Shutdown = tokio::sync::watch::Receiver<bool>;

/// Read the next event before `deadline`; parse failures become stream errors, a missed
/// deadline `connection-timeout`, a `shutdown` `system-shutdown`, closed streams `Closed`.
async fn next_event<W: AsyncWrite + Unpin>(
    shutdown: &mut Shutdown,
    reader: &mut ClientReader,
    w: &mut W,
    header_sent: bool,
    host: &str,
    deadline: Instant,
) -> Result<StreamEvent, LoginEnd> {
    let ev = match next_bounded(reader, deadline, shutdown).await {
        Ok(ev) => ev,
        Err(cond) => return Err(stream_error(w, header_sent, host, cond).await),
    };
    match ev {
        Ok(StreamEvent::End) => {
            let _ = w.write_all(b"</stream:stream>").await;
            let _ = w.shutdown().await;
            Err(LoginEnd::Closed)
        }
        Ok(ev) => Ok(ev),
        Err(e) => match parse_error_condition(&e) {
            Some(c) => Err(stream_error(w, header_sent, host, c).await),
            None => Err(LoginEnd::Closed),
        },
    }
}

/// Read a stream header and answer with ours; returns the host.
async fn open_stream<W: AsyncWrite + Unpin>(
    config: &Config,
    shutdown: &mut Shutdown,
    reader: &mut ClientReader,
    w: &mut W,
    expect_host: Option<&str>,
    deadline: Instant,
) -> Result<(String, String), LoginEnd> {
    let default = expect_host.unwrap_or(config.default_host()).to_owned();
    let header = match next_event(shutdown, reader, w, false, &default, deadline).await? {
        StreamEvent::Header(h) => h,
        _ => return Err(stream_error(w, false, &default, StreamError::NotWellFormed).await),
    };
    let host = match check_header(&header, config.hosts.keys()) {
        Ok(h) if expect_host.is_none_or(|e| e == h) => h,
        Ok(_) => return Err(stream_error(w, false, &default, StreamError::HostUnknown).await),
        Err(e) => return Err(stream_error(w, false, &default, e).await),
    };
    let id = random_id(12);
    send(w, &stream_header(&host, None, &id)).await?;
    Ok((host, id))
}

fn mechanisms_feature(cb: &ChannelBinding) -> String {
    let mut s = format!("<mechanisms xmlns='{}'>", ns::SASL);
    for m in Mechanism::ALL {
        if m.is_plus() && !cb.any() {
            continue;
        }
        s.push_str("<mechanism>");
        s.push_str(m.name());
        s.push_str("</mechanism>");
    }
    s.push_str("</mechanisms>");
    if cb.any() {
        // XEP-0440: which channel-binding types the -PLUS mechanisms accept here.
        s.push_str(&format!("<sasl-channel-binding xmlns='{}'>", ns::SASL_CB));
        for t in cb.types() {
            s.push_str(&format!("<channel-binding type='{t}'/>"));
        }
        s.push_str("</sasl-channel-binding>");
    }
    s
}

fn limits_feature(max_bytes: usize) -> String {
    format!(
        "<limits xmlns='{}'><max-bytes>{max_bytes}</max-bytes></limits>",
        ns::STREAM_LIMITS
    )
}

/// One SASL exchange in progress.
enum Sasl {
    Idle,
    /// PLAIN without initial response: waiting for the `<response/>`.
    PlainWaiting,
    Scram(Box<ScramPending>),
}

/// Drive a client transport from its first header to an authenticated, restarted stream;
/// everything must be done by `deadline` (`limits.handshake_timeout_secs`).
pub async fn run(
    shared: &Shared,
    conn: ConnId,
    transport: crate::transport::Transport,
    deadline: Instant,
    peer: Option<PeerAddr>,
) -> Result<LoggedIn, LoginEnd> {
    let crate::transport::Transport {
        reader: rd,
        writer: mut w,
        channel_binding: cb,
    } = transport;
    let (config, l) = (&shared.config, &shared.config.limits);
    let mut shutdown = shared.shutdown_signal();
    let mut reader = XmlReader::new(rd, preauth_limits(l));
    // `peer` is None for clients exempt from the abuse limits.
    if peer.is_some() {
        reader.set_rate(l.max_bytes_per_second, l.max_stanza_bytes as u64);
    }
    let (host, _id) =
        open_stream(config, &mut shutdown, &mut reader, &mut w, None, deadline).await?;

    let features = preauth_features(&cb, shared.registration_open(), l);
    send(&mut w, &features).await?;

    let mut state = Sasl::Idle;
    let mut failures = 0u32;
    let (user, mechanism) = loop {
        let ev = next_event(&mut shutdown, &mut reader, &mut w, true, &host, deadline).await?;
        let el = match ev {
            StreamEvent::Element(el) => el,
            _ => return Err(stream_error(&mut w, true, &host, StreamError::NotWellFormed).await),
        };
        if el.ns == ns::SASL {
            let mut attempted = None;
            let (store, auth) = (&shared.store, &shared.config.auth);
            match sasl_step(store, auth, &host, &cb, &el, &mut state, &mut attempted).await {
                Step::Challenge(data) => {
                    send(
                        &mut w,
                        &format!(
                            "<challenge xmlns='{}'>{}</challenge>",
                            ns::SASL,
                            sasl::encode_payload(&data)
                        ),
                    )
                    .await?;
                }
                Step::Success(user, mech, data) => {
                    sasl_success(&shared.limiter, l, &mut reader, &mut w, &user, data).await?;
                    break (user, mech);
                }
                Step::Failure(f) => {
                    if f == Failure::NotAuthorized {
                        delay_after_wrong_password(&shared.limiter, l, peer, attempted).await;
                    }
                    // A refused channel binding is the client trying its next mechanism
                    // (Debian's poezio needs four of them before PLAIN, doc/sasl-clients.md):
                    // not counted here either; the handshake deadline bounds it.
                    if f != Failure::ChannelBinding {
                        failures += 1;
                    }
                    log::debug!("{conn}: SASL failure {} ({failures})", f.as_str());
                    send(&mut w, &f.to_element().to_xml(ns::CLIENT)).await?;
                    if failures >= MAX_AUTH_FAILURES {
                        return Err(stream_error(
                            &mut w,
                            true,
                            &host,
                            StreamError::PolicyViolation,
                        )
                        .await);
                    }
                }
            }
        } else {
            not_sasl(shared, conn, &host, &el, peer, &mut w).await?;
        }
    };

    record_last_login(&shared.store.accounts, &host, &user);

    open_stream(
        config,
        &mut shutdown,
        &mut reader,
        &mut w,
        Some(&host),
        deadline,
    )
    .await?;
    send(&mut w, &session_features(&shared.server_info, l)).await?;
    Ok(LoggedIn {
        limited: peer.is_some(),
        reader,
        writer: w,
        user,
        host,
        mechanism,
    })
}

/// Authentication of `user` succeeded: reset the parser for the restarted stream, with the
/// session limits, and send `<success/>` (with the server's final SASL `data`, if any).
async fn sasl_success(
    limiter: &Limiter,
    limits: &LimitsConfig,
    reader: &mut ClientReader,
    w: &mut ClientWriter,
    user: &str,
    data: Option<String>,
) -> Result<(), LoginEnd> {
    limiter.login_succeeded(user);
    let payload = match data {
        Some(d) => sasl::encode_payload(d.as_bytes()),
        None => String::new(),
    };
    // Reset the parser before the client can see <success/>: its new stream
    // header must land in a fresh parser.
    reader.reset();
    reader.set_limits(session_limits(limits));
    send(
        w,
        &format!("<success xmlns='{}'>{payload}</success>", ns::SASL),
    )
    .await
}

/// An element other than SASL before authentication: an in-band registration IQ is
/// answered; anything else ends the stream with a stream error.
async fn not_sasl(
    shared: &Shared,
    conn: ConnId,
    host: &str,
    el: &Element,
    peer: Option<PeerAddr>,
    w: &mut ClientWriter,
) -> Result<(), LoginEnd> {
    if el.is("iq", ns::CLIENT) {
        match preauth_iq(shared, conn, host, el, peer).await {
            Some(r) => send(w, &r.to_xml(ns::CLIENT)).await,
            None => Err(stream_error(w, true, host, StreamError::NotAuthorized).await),
        }
    } else if el.ns == ns::CLIENT && matches!(el.name.as_str(), "message" | "presence") {
        Err(stream_error(w, true, host, StreamError::NotAuthorized).await)
    } else if el.is("starttls", ns::TLS) {
        // TLS is already up; a second STARTTLS is a protocol violation.
        Err(stream_error(w, true, host, StreamError::PolicyViolation).await)
    } else {
        Err(stream_error(w, true, host, StreamError::UnsupportedStanzaType).await)
    }
}

/// The stream features before authentication: SASL mechanisms, in-band registration if
/// `registration_open`, and the pre-authentication stanza size limit.
fn preauth_features(cb: &ChannelBinding, registration_open: bool, limits: &LimitsConfig) -> String {
    let mut features = String::from("<stream:features>");
    features.push_str(&mechanisms_feature(cb));
    if registration_open {
        features.push_str(&format!("<register xmlns='{}'/>", ns::REGISTER_FEATURE));
    }
    features.push_str(&limits_feature(limits.max_stanza_bytes_before_auth));
    features.push_str("</stream:features>");
    features
}

/// Growing delays against password guessing (addresses in memory only): waits before a
/// `not-authorized` failure is sent, and counts the failure for `peer` and the account.
async fn delay_after_wrong_password(
    limiter: &Limiter,
    limits: &LimitsConfig,
    peer: Option<PeerAddr>,
    attempted: Option<String>,
) {
    let account = attempted.unwrap_or_default();
    let max = std::time::Duration::from_secs(limits.max_login_delay_secs);
    let delay = limiter.login_delay(peer, &account, max);
    limiter.login_failed(peer, &account);
    tokio::time::sleep(delay).await;
}

/// Store the time of `user`'s login, in the background (a failure is logged).
fn record_last_login(accounts: &Accounts, host: &str, user: &str) {
    let accounts = accounts.clone();
    let (h, u) = (host.to_owned(), user.to_owned());
    // Last login is one of the few things the privacy policy says is stored.
    tokio::task::spawn_blocking(move || {
        if let Err(e) = accounts.update(&h, &u, |r| r.last_login = now_secs()) {
            log::error!("cannot record last login: {e}");
        }
    });
}

/// The stream features after authentication: resource binding and what a session offers.
fn session_features(server_info: &ServerInfo, limits: &LimitsConfig) -> String {
    let mut features = String::from("<stream:features>");
    features.push_str(&format!("<bind xmlns='{}'/>", ns::BIND));
    features.push_str(&format!(
        "<session xmlns='{}'><optional/></session>",
        ns::SESSION
    ));
    // XEP-0237: roster versioning.
    features.push_str("<ver xmlns='urn:xmpp:features:rosterver'/>");
    // XEP-0352: client state indication.
    features.push_str("<csi xmlns='urn:xmpp:csi:0'/>");
    // XEP-0198: stream management (acks and resumption).
    features.push_str("<sm xmlns='urn:xmpp:sm:3'/>");
    // XEP-0115: the server's capabilities.
    features.push_str(&server_info.caps().to_xml(ns::CLIENT));
    features.push_str(&limits_feature(limits.max_stanza_bytes));
    features.push_str("</stream:features>");
    features
}

enum Step {
    Challenge(Vec<u8>),
    Success(String, Mechanism, Option<String>),
    Failure(Failure),
}

/// Check that an authorisation identity, if given, is the authenticated user's own JID.
fn authzid_ok(authzid: Option<&str>, user: &str, host: &str) -> bool {
    match authzid {
        None => true,
        Some(a) => match jid::BareJid::new(a) {
            Ok(j) => j.node().map(|n| n.as_str()) == Some(user) && j.domain().as_str() == host,
            Err(_) => false,
        },
    }
}

/// One SASL element: the account's credentials come from `store`, the cost of new hashes
/// from `auth`.
async fn sasl_step(
    store: &Store,
    auth: &AuthConfig,
    host: &str,
    cb: &ChannelBinding,
    el: &Element,
    state: &mut Sasl,
    attempted: &mut Option<String>,
) -> Step {
    let accounts = &store.accounts;
    match (el.name.as_str(), std::mem::replace(state, Sasl::Idle)) {
        ("auth", Sasl::Idle) => {
            let Some(mech) = el.get_attr("mechanism").and_then(Mechanism::from_name) else {
                return Step::Failure(Failure::InvalidMechanism);
            };
            if mech.is_plus() && !cb.any() {
                return Step::Failure(Failure::InvalidMechanism);
            }
            let data = match sasl::decode_payload(&el.text_content()) {
                Ok(d) => d,
                Err(f) => return Step::Failure(f),
            };
            match mech {
                Mechanism::Plain if data.is_empty() => {
                    *state = Sasl::PlainWaiting;
                    Step::Challenge(Vec::new())
                }
                Mechanism::Plain => plain(accounts, auth.bcrypt_cost, host, &data, attempted).await,
                _ => {
                    let first = match sasl::parse_client_first(mech, &data, cb) {
                        Ok(f) => f,
                        Err(f) => return Step::Failure(f),
                    };
                    let hash = mech.scram_hash().expect("SCRAM mechanism");
                    let user = register::normalize_username(&first.username).ok();
                    let creds = match &user {
                        Some(u) => match accounts.get(host, u) {
                            Ok(r) => r.and_then(|r| r.scram(hash)),
                            Err(e) => {
                                log::error!("account lookup failed: {e}");
                                return Step::Failure(Failure::TemporaryAuthFailure);
                            }
                        },
                        None => None,
                    };
                    let real = creds.is_some();
                    let creds = creds.unwrap_or_else(|| {
                        let name = user.as_deref().unwrap_or(&first.username);
                        decoy_credentials(store, auth.scram_iterations, host, hash, name)
                    });
                    let (server_first, pending) = first.server_first(creds, real);
                    *state = Sasl::Scram(Box::new(pending));
                    Step::Challenge(server_first.into_bytes())
                }
            }
        }
        ("auth", _) => Step::Failure(Failure::MalformedRequest),
        ("response", Sasl::PlainWaiting) => match sasl::decode_payload(&el.text_content()) {
            Ok(d) => plain(accounts, auth.bcrypt_cost, host, &d, attempted).await,
            Err(f) => Step::Failure(f),
        },
        ("response", Sasl::Scram(pending)) => {
            let data = match sasl::decode_payload(&el.text_content()) {
                Ok(d) => d,
                Err(f) => return Step::Failure(f),
            };
            let username = pending.username().to_owned();
            *attempted = register::normalize_username(&username).ok();
            let authzid = pending.authzid().map(str::to_owned);
            let mech = pending.mechanism();
            match pending.finish(&data, cb) {
                Ok(server_final) => {
                    let Ok(user) = register::normalize_username(&username) else {
                        return Step::Failure(Failure::NotAuthorized);
                    };
                    if !authzid_ok(authzid.as_deref(), &user, host) {
                        return Step::Failure(Failure::InvalidAuthzid);
                    }
                    Step::Success(user, mech, Some(server_final))
                }
                Err(f) => Step::Failure(f),
            }
        }
        ("response", Sasl::Idle) => Step::Failure(Failure::MalformedRequest),
        ("abort", _) => Step::Failure(Failure::Aborted),
        _ => Step::Failure(Failure::MalformedRequest),
    }
}

/// SASL PLAIN: bcrypt verification on the blocking pool.
async fn plain(
    accounts: &Accounts,
    cost: u32,
    host: &str,
    data: &[u8],
    attempted: &mut Option<String>,
) -> Step {
    let msg = match sasl::parse_plain(data) {
        Ok(m) => m,
        Err(f) => return Step::Failure(f),
    };
    *attempted = register::normalize_username(&msg.authcid).ok();
    let (Ok(user), Some(password)) = (
        register::normalize_username(&msg.authcid),
        sasl::prep_password(&msg.password),
    ) else {
        return Step::Failure(Failure::NotAuthorized);
    };
    if !authzid_ok(msg.authzid.as_deref(), &user, host) {
        return Step::Failure(Failure::InvalidAuthzid);
    }
    let record = match accounts.get(host, &user) {
        Ok(r) => r,
        Err(e) => {
            log::error!("account lookup failed: {e}");
            return Step::Failure(Failure::TemporaryAuthFailure);
        }
    };
    let ok = blocking(move || match record {
        Some(r) => verify_bcrypt(&r, &password),
        None => {
            // Same work for unknown users, so timing does not reveal which accounts exist.
            let _ = bcrypt::verify(&password, dummy_bcrypt(cost));
            false
        }
    })
    .await;
    if ok {
        Step::Success(user, Mechanism::Plain, None)
    } else {
        Step::Failure(Failure::NotAuthorized)
    }
}

/// SCRAM credentials for a name without an account that look like a real account's: the
/// configured `iterations` and a salt derived from the server's local key and the `name`
/// (normalised if it can be), the same at every attempt (a real account always shows its one
/// salt; a fresh random salt each time would tell an attacker that the account does not
/// exist).
fn decoy_credentials(
    store: &Store,
    iterations: u32,
    host: &str,
    hash: sasl::ScramHash,
    name: &str,
) -> sasl::ScramCredentials {
    let name = format!("{hash:?}\0{host}\0{name}");
    let mut salt = store.keyed_hash("scram-decoy-salt", name.as_bytes());
    salt.truncate(16);
    sasl::ScramCredentials::decoy(hash, iterations, salt)
}

/// A bcrypt hash at `cost` of a random string, verified against for unknown users so that a
/// PLAIN attempt on a name without an account takes as long as one on a real account. Made
/// once per cost (on the blocking pool, where it is asked for).
fn dummy_bcrypt(cost: u32) -> &'static str {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static DUMMIES: OnceLock<Mutex<HashMap<u32, &'static str>>> = OnceLock::new();
    let mut map = DUMMIES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    map.entry(cost).or_insert_with(|| {
        let secret = random_id(24);
        let hash = bcrypt::hash(secret, cost).unwrap_or_else(|_| {
            // An out-of-range cost is refused by the config already; stay safe regardless.
            bcrypt::hash(random_id(24), bcrypt::DEFAULT_COST).expect("bcrypt at default cost")
        });
        Box::leak(hash.into_boxed_str())
    })
}

/// Log a refused registration: per connection at `info`; the cap on all addresses together
/// once when it is reached (it locks out every newcomer until the hour has passed), with what
/// the operator can do.
fn registration_refused(
    shared: &Shared,
    conn: ConnId,
    refused: crate::limits::RegistrationRefused,
) {
    use crate::limits::RegistrationRefused;
    log::info!("{conn}: registration refused: rate limit");
    if let RegistrationRefused::AllAddresses(wait) = refused {
        if shared.limiter.registration_cap_noticed() {
            log::warn!(
                "registration: limits.registrations_per_hour ({}) reached: every new account is refused for up to {} minutes (kleiber status shows it; raise the limit or close registration if this is an attack)",
                shared.config.limits.registrations_per_hour,
                wait.as_secs().div_ceil(60)
            );
        }
    }
}

/// IQs allowed before authentication: in-band registration only. `None` means the IQ is not
/// allowed (the stream is closed with `not-authorized`).
async fn preauth_iq(
    shared: &Shared,
    conn: ConnId,
    host: &str,
    iq: &Element,
    peer: Option<PeerAddr>,
) -> Option<Element> {
    let query = iq.get_child("query", ns::REGISTER)?;
    if iq.get_attr("id").is_none() {
        return error_reply(iq, &StanzaError::new(crate::xmpp::Condition::BadRequest));
    }
    let open = shared.registration_open();
    let result = match register::parse(iq.get_attr("type").unwrap_or(""), query) {
        Err(e) => Err(e),
        Ok(_) if !open => Err(StanzaError::new(crate::xmpp::Condition::NotAllowed)
            .with_text("registration is closed")),
        Ok(register::Request::Form) => Ok(Some(register::form(None))),
        Ok(register::Request::Set { username, password }) => {
            let limits = &shared.config.limits;
            match shared.limiter.allow_registration(
                peer,
                limits.registrations_per_address_per_hour,
                limits.registrations_per_hour,
            ) {
                Err(refused) => {
                    registration_refused(shared, conn, refused);
                    Err(StanzaError::new(crate::xmpp::Condition::PolicyViolation)
                        .with_text(refused.text()))
                }
                Ok(()) => {
                    shared.limiter.registration_cap_over();
                    let (store, auth) = (&shared.store, &shared.config.auth);
                    match register::create(store, auth, host, &username, &password).await {
                        Ok(user) => {
                            log::info!("{conn}: registered an account");
                            log::debug!("{conn}: registered {user}@{host}");
                            Ok(None)
                        }
                        Err(e) => {
                            log::info!("{conn}: registration refused: {}", e.condition);
                            Err(e)
                        }
                    }
                }
            }
        }
        Ok(register::Request::Remove) => {
            Err(StanzaError::new(crate::xmpp::Condition::NotAuthorized))
        }
    };
    match result {
        Ok(payload) => {
            let mut r = iq_result(iq, payload);
            r.remove_attr("from");
            r.remove_attr("to");
            Some(r)
        }
        Err(e) => register::error_reply(iq, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dummy_hash_has_the_configured_cost() {
        for cost in [4, 5] {
            let h = dummy_bcrypt(cost);
            assert!(h.starts_with(&format!("$2b${cost:02}$")), "{h}");
            assert_eq!(h, dummy_bcrypt(cost));
        }
    }
}
