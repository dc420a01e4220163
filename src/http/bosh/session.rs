//! One BOSH session: the request bookkeeping of XEP-0124 between the HTTP requests and the
//! two pipes of the session's [`Transport`](crate::transport::Transport).
//!
//! - Requests are processed in `rid` order: one ahead of a gap waits in `early` until the gap
//!   fills; a repeated `rid` gets the response cached for it (or takes over the waiting place
//!   of the first copy); a `rid` outside the window ends the session with `item-not-found`.
//! - Each processed request's payload goes to the session's input pipe through `feed`, in
//!   order; the request then waits in `held` for output, at most `hold` of them (a newer one
//!   releases the oldest with an empty body), each at most `wait` seconds.
//! - `pump` reads the session's output through the framing [`Splitter`]: a stream header
//!   only gives the creation response its `authid` and `from`, elements are queued and answer
//!   the oldest held request, the end of the stream answers with `type='terminate'`.
//! - Without a held request for `inactivity` seconds (or the client's `pause`), the session
//!   ends: both pipes are dropped, and the session sees the end of its transport as a TCP
//!   session sees a lost connection (stream management keeps it resumable).
//!
//! Sessions live in one in-memory map per server, keyed by their random `sid`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;

use super::wire::{self, Condition, Kind, Request};
use crate::http::AddressSlot;
use crate::transport::framing::{self, Splitter, Unit};

/// Longest `pause` a client may ask for, in seconds (advertised as `maxpause`).
pub const MAX_PAUSE_SECS: u64 = 120;
/// Output queued for the client before the session's output is no longer read (the session
/// then meets the back-pressure of a slow TCP client).
const MAX_QUEUED_BYTES: usize = 512 * 1024;
/// How often the inactivity and abandoned requests are checked.
const TICK: Duration = Duration::from_secs(1);

/// The session's input not yet read by the session, in bytes: requests with a payload wait
/// while it is over the limit (the back-pressure a TCP client meets).
#[derive(Default)]
pub struct Backlog {
    bytes: AtomicUsize,
    drained: Notify,
}

/// What a session was created with.
pub struct Params {
    pub sid: String,
    /// Which server's map the session is in.
    pub server: usize,
    pub host: String,
    pub lang: Option<String>,
    pub rid: u64,
    pub hold: usize,
    pub wait: Duration,
    pub inactivity: Duration,
    /// The attributes of the creation response known at once (`sid`, `wait`, ...).
    pub creation_attrs: String,
    /// Input backlog over which requests with a payload wait.
    pub max_backlog: usize,
}

/// The answer to a request: at once, or once the session has something (or `wait` passed).
pub enum Reply {
    Now(String),
    Wait {
        rid: u64,
        token: u64,
        wait: Duration,
        rx: oneshot::Receiver<String>,
    },
}

/// A request waiting for its response.
struct Waiter {
    rid: u64,
    /// Tells copies of a repeated request apart.
    token: u64,
    /// `None` once its HTTP request has been answered some other way.
    tx: Option<oneshot::Sender<String>>,
}

impl Waiter {
    fn abandoned(&self) -> bool {
        self.tx.as_ref().is_none_or(|tx| tx.is_closed())
    }
}

struct Inner {
    host: String,
    lang: Option<String>,
    hold: usize,
    /// The window: `hold + 1`.
    requests: u64,
    wait: Duration,
    inactivity: Duration,
    /// The client's `pause`, until its next request.
    paused: Option<Duration>,
    next_rid: u64,
    highest_answered: u64,
    next_token: u64,
    early: BTreeMap<u64, (Request, Waiter)>,
    held: VecDeque<Waiter>,
    /// The last `requests` responses, for repeated requests.
    cache: VecDeque<(u64, String)>,
    /// The creation request, until answered, and its response's attributes.
    creation: Option<u64>,
    creation_attrs: String,
    queue: Vec<String>,
    queued_bytes: usize,
    stream_error: bool,
    /// The session's stream is over: how the next response terminates.
    ended: Option<Option<Condition>>,
    /// Removed from the map; nothing more happens.
    closed: bool,
    idle_since: Option<Instant>,
    /// To the session's input pipe (`None`: closed).
    input: Option<mpsc::UnboundedSender<Vec<u8>>>,
}

/// A BOSH session, shared by its HTTP requests and its `pump` task.
pub struct Session {
    sid: String,
    server: usize,
    inner: Mutex<Inner>,
    /// Wakes `pump`: the session closed, or the client took the queue.
    wake: Notify,
    backlog: Arc<Backlog>,
    max_backlog: usize,
    _address_slot: AddressSlot,
}

type Registry = Mutex<HashMap<String, Arc<Session>>>;

static SESSIONS: LazyLock<Registry> = LazyLock::new(Registry::default);

fn registry() -> MutexGuard<'static, HashMap<String, Arc<Session>>> {
    SESSIONS.lock().unwrap_or_else(|e| e.into_inner())
}

/// The session `sid` of `server`, if it is open.
pub fn find(server: usize, sid: &str) -> Option<Arc<Session>> {
    registry().get(sid).filter(|s| s.server == server).cloned()
}

/// Open sessions of `server`.
pub fn count(server: usize) -> usize {
    registry().values().filter(|s| s.server == server).count()
}

/// A client stream header for the session's host.
fn stream_header(host: &str, lang: Option<&str>) -> String {
    let mut h = format!(
        "<stream:stream xmlns='{}' xmlns:stream='{}'{} version='1.0'",
        crate::xmpp::ns::CLIENT,
        framing::NS_STREAM,
        wire::attr("to", host)
    );
    if let Some(l) = lang {
        h.push_str(&wire::attr("xml:lang", l));
    }
    h.push('>');
    h
}

impl Session {
    /// Register a new session; the stream header goes into `input` at once. Start `pump` and
    /// `feed` with the other ends of the pipes, then pass the creation request to
    /// [`Session::request`].
    pub fn open(
        p: Params,
        input: mpsc::UnboundedSender<Vec<u8>>,
        backlog: Arc<Backlog>,
        address_slot: AddressSlot,
    ) -> Arc<Session> {
        let header = stream_header(&p.host, p.lang.as_deref()).into_bytes();
        backlog.bytes.fetch_add(header.len(), Ordering::AcqRel);
        let _ = input.send(header);
        let inner = Inner {
            host: p.host,
            lang: p.lang,
            hold: p.hold,
            requests: p.hold as u64 + 1,
            wait: p.wait,
            inactivity: p.inactivity,
            paused: None,
            next_rid: p.rid,
            highest_answered: p.rid.saturating_sub(1),
            next_token: 0,
            early: BTreeMap::new(),
            held: VecDeque::new(),
            cache: VecDeque::new(),
            creation: Some(p.rid),
            creation_attrs: p.creation_attrs,
            queue: Vec::new(),
            queued_bytes: 0,
            stream_error: false,
            ended: None,
            closed: false,
            idle_since: Some(Instant::now()),
            input: Some(input),
        };
        let session = Arc::new(Session {
            sid: p.sid,
            server: p.server,
            inner: Mutex::new(inner),
            wake: Notify::new(),
            backlog,
            max_backlog: p.max_backlog,
            _address_slot: address_slot,
        });
        registry().insert(session.sid.clone(), session.clone());
        session
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait (at most `wait`) until the session has read enough of its input for `req`'s
    /// payload; `false` when it has not (the session then ends with `policy-violation`).
    /// Empty requests never wait: they are what takes the session's output.
    pub async fn admit(&self, req: &Request) -> bool {
        let size: usize = req.payload.iter().map(String::len).sum();
        if size == 0 {
            return true;
        }
        let deadline = Instant::now() + self.lock().wait;
        loop {
            let drained = self.backlog.drained.notified();
            let backlog = self.backlog.bytes.load(Ordering::Acquire);
            if backlog == 0 || backlog.saturating_add(size) <= self.max_backlog || self.is_closed()
            {
                return true;
            }
            if tokio::time::timeout_at(deadline, drained).await.is_err() {
                let mut inner = self.lock();
                self.fail(&mut inner, Condition::PolicyViolation);
                return false;
            }
        }
    }

    /// Take a request of this session (XEP-0124 §14: the rid window, repeats, gaps).
    pub fn request(&self, req: Request) -> Reply {
        let mut guard = self.lock();
        let inner = &mut *guard;
        if inner.closed {
            return Reply::Now(wire::terminate(Some(Condition::ItemNotFound), &[]));
        }
        let (rid, wait) = (req.rid, inner.wait);
        let (tx, rx) = oneshot::channel();
        inner.next_token += 1;
        let token = inner.next_token;
        let waiter = Waiter {
            rid,
            token,
            tx: Some(tx),
        };
        if rid < inner.next_rid {
            if let Some(w) = inner.held.iter_mut().find(|w| w.rid == rid) {
                // The client sent it again (its connection broke): this copy waits instead.
                *w = waiter;
            } else if let Some((_, cached)) = inner.cache.iter().find(|(r, _)| *r == rid) {
                return Reply::Now(cached.clone());
            } else {
                return Reply::Now(self.fail(inner, Condition::ItemNotFound));
            }
        } else if rid > inner.highest_answered.saturating_add(inner.requests) {
            return Reply::Now(self.fail(inner, Condition::ItemNotFound));
        } else {
            inner.early.insert(rid, (req, waiter));
            while let Some((req, waiter)) = inner.early.remove(&inner.next_rid) {
                inner.next_rid += 1;
                self.process(inner, req, waiter);
            }
            self.flush(inner);
        }
        Reply::Wait {
            rid,
            token,
            wait,
            rx,
        }
    }

    /// A request's turn has come: pass its payload on, and hold it.
    fn process(&self, inner: &mut Inner, req: Request, waiter: Waiter) {
        if inner.closed {
            return;
        }
        inner.paused = None;
        let mut bytes = Vec::new();
        if req.kind == Kind::Restart {
            bytes.extend_from_slice(stream_header(&inner.host, inner.lang.as_deref()).as_bytes());
        }
        for p in &req.payload {
            bytes.extend_from_slice(p.as_bytes());
        }
        if req.kind == Kind::Terminate {
            bytes.extend_from_slice(b"</stream:stream>");
        }
        if let Some(input) = &inner.input {
            if !bytes.is_empty() {
                self.backlog.bytes.fetch_add(bytes.len(), Ordering::AcqRel);
                let _ = input.send(bytes);
            }
        }
        match req.kind {
            Kind::Terminate => {
                log::debug!("bosh: the client ended a session");
                inner.input = None;
                Self::release_held(inner);
                Self::answer(inner, waiter, wire::terminate(None, &[]));
                self.close(inner);
            }
            Kind::Pause(secs) => {
                inner.paused = Some(Duration::from_secs(secs.min(MAX_PAUSE_SECS)));
                Self::release_held(inner);
                Self::answer(inner, waiter, wire::empty());
            }
            Kind::Normal | Kind::Restart => inner.held.push_back(waiter),
        }
    }

    /// Answer every held request with an empty body.
    fn release_held(inner: &mut Inner) {
        while let Some(w) = inner.held.pop_front() {
            Self::answer(inner, w, wire::empty());
        }
    }

    /// Send `body` as the response to `w` (and keep it for a repeat of its rid).
    fn answer(inner: &mut Inner, mut w: Waiter, body: String) {
        inner.highest_answered = inner.highest_answered.max(w.rid);
        inner.cache.push_back((w.rid, body.clone()));
        while inner.cache.len() > inner.requests as usize {
            inner.cache.pop_front();
        }
        if let Some(tx) = w.tx.take() {
            let _ = tx.send(body);
        }
    }

    /// The response to `w` with `payload`: the creation response carries the session's
    /// attributes.
    fn response(inner: &mut Inner, w: &Waiter, payload: &[String]) -> String {
        if inner.creation == Some(w.rid) {
            inner.creation = None;
            return wire::body(&inner.creation_attrs, payload);
        }
        wire::body("", payload)
    }

    /// Answer what can be answered: queued output to the oldest held request, the end of
    /// the stream to all of them, requests beyond `hold` with empty bodies.
    fn flush(&self, inner: &mut Inner) {
        if let Some(condition) = inner.ended {
            if let Some(first) = inner.held.pop_front() {
                let queue = std::mem::take(&mut inner.queue);
                Self::answer(inner, first, wire::terminate(condition, &queue));
                while let Some(w) = inner.held.pop_front() {
                    Self::answer(inner, w, wire::terminate(condition, &[]));
                }
                self.close(inner);
            }
            return;
        }
        if !inner.queue.is_empty() {
            if let Some(w) = inner.held.pop_front() {
                let queue = std::mem::take(&mut inner.queue);
                let body = Self::response(inner, &w, &queue);
                Self::answer(inner, w, body);
                if inner.queued_bytes >= MAX_QUEUED_BYTES {
                    self.wake.notify_one();
                }
                inner.queued_bytes = 0;
            }
        }
        // The creation request waits for the stream features whatever `hold` says.
        while inner.held.len() > inner.hold && inner.held.front().map(|w| w.rid) != inner.creation {
            if let Some(w) = inner.held.pop_front() {
                let body = Self::response(inner, &w, &[]);
                Self::answer(inner, w, body);
            }
        }
        Self::touch(inner);
    }

    /// Note when the session last had no held request.
    fn touch(inner: &mut Inner) {
        if inner.held.is_empty() && inner.early.is_empty() {
            inner.idle_since.get_or_insert_with(Instant::now);
        } else {
            inner.idle_since = None;
        }
    }

    /// End the session with a terminal binding error.
    fn fail(&self, inner: &mut Inner, condition: Condition) -> String {
        log::debug!("bosh: session ended: {}", condition.as_str());
        let body = wire::terminate(Some(condition), &[]);
        while let Some(w) = inner.held.pop_front() {
            Self::answer(inner, w, body.clone());
        }
        inner.input = None;
        self.close(inner);
        body
    }

    /// Remove the session from the map; its pipes close.
    fn close(&self, inner: &mut Inner) {
        if inner.closed {
            return;
        }
        inner.closed = true;
        inner.input = None;
        inner.queue.clear();
        // Requests still waiting (the server is stopping): the session is gone.
        let gone = wire::terminate(Some(Condition::RemoteConnectionFailed), &[]);
        while let Some(w) = inner.held.pop_front() {
            Self::answer(inner, w, gone.clone());
        }
        for (_, (_, w)) in std::mem::take(&mut inner.early) {
            Self::answer(inner, w, gone.clone());
        }
        registry().remove(&self.sid);
        self.wake.notify_one();
    }

    /// A waiting request's `wait` is over: answer it with an empty body, unless it was
    /// answered already (the response is then in its channel).
    pub fn expire(&self, rid: u64, token: u64) {
        let mut inner = self.lock();
        if let Some(i) = inner.held.iter().position(|w| w.token == token) {
            if let Some(w) = inner.held.remove(i) {
                let body = Self::response(&mut inner, &w, &[]);
                Self::answer(&mut inner, w, body);
            }
        } else if let Some((_, w)) = inner.early.get_mut(&rid).filter(|(_, w)| w.token == token) {
            // Still behind a gap: it gets its response when repeated.
            w.tx = None;
        }
        Self::touch(&mut inner);
    }

    /// Units of the session's output.
    fn output(&self, units: &mut Vec<Unit>) {
        let mut inner = self.lock();
        for unit in units.drain(..) {
            match unit {
                Unit::Header(h) if inner.creation.is_some() => {
                    for (k, v) in framing::header_attributes(&h) {
                        let key = match k.as_str() {
                            "id" => "authid",
                            "from" => "from",
                            _ => continue,
                        };
                        let a = wire::attr(key, &v);
                        inner.creation_attrs.push_str(&a);
                    }
                }
                Unit::Header(_) => {}
                Unit::Element(e) => {
                    inner.stream_error |= e.starts_with("<stream:error");
                    let e = framing::standalone_element(&e);
                    inner.queued_bytes += e.len();
                    inner.queue.push(e);
                }
                Unit::End => {
                    let error = inner.stream_error;
                    inner.ended = Some(error.then_some(Condition::RemoteStreamError));
                }
            }
        }
        if !inner.closed {
            self.flush(&mut inner);
        }
    }

    /// The session's output ended without `</stream:stream>`.
    fn output_failed(&self) {
        let mut inner = self.lock();
        if inner.ended.is_none() {
            inner.ended = Some(Some(if inner.stream_error {
                Condition::RemoteStreamError
            } else {
                Condition::RemoteConnectionFailed
            }));
        }
        if !inner.closed {
            self.flush(&mut inner);
        }
    }

    /// Whether more output may be queued.
    fn has_room(&self) -> bool {
        self.lock().queued_bytes < MAX_QUEUED_BYTES
    }

    /// Periodic check: abandoned requests (their HTTP connection is gone) are answered
    /// into the cache, an idle session ends. `false` once the session is closed.
    fn tick(&self) -> bool {
        let mut inner = self.lock();
        if inner.closed {
            return false;
        }
        while let Some(i) = inner.held.iter().position(Waiter::abandoned) {
            if let Some(w) = inner.held.remove(i) {
                let queue = std::mem::take(&mut inner.queue);
                inner.queued_bytes = 0;
                let body = Self::response(&mut inner, &w, &queue);
                Self::answer(&mut inner, w, body);
            }
        }
        Self::touch(&mut inner);
        let limit = inner.paused.unwrap_or(inner.inactivity);
        if inner.idle_since.is_some_and(|t| t.elapsed() >= limit) {
            log::debug!("bosh: session ended: inactivity");
            self.close(&mut inner);
            return false;
        }
        true
    }

    fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

/// Pass what the requests give to the session's input pipe, in order; close it when the
/// session drops its sender.
pub async fn feed(
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    mut to_session: DuplexStream,
    backlog: Arc<Backlog>,
) {
    while let Some(bytes) = rx.recv().await {
        if to_session.write_all(&bytes).await.is_err() {
            break;
        }
        backlog.bytes.fetch_sub(bytes.len(), Ordering::AcqRel);
        backlog.drained.notify_waiters();
    }
    let _ = to_session.shutdown().await;
}

/// Closes the session when `pump` ends, also when its task is dropped (the server stops).
struct CloseOnDrop(Arc<Session>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        let mut inner = self.0.lock();
        self.0.close(&mut inner);
    }
}

/// Read the session's output into `session` until the session closes; check inactivity.
pub async fn pump(session: Arc<Session>, mut from_session: DuplexStream) {
    let session = CloseOnDrop(session);
    let session = &session.0;
    let mut splitter = Splitter::new();
    let mut units = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut reading = true;
    let mut tick = tokio::time::interval(TICK);
    loop {
        let room = reading && session.has_room();
        tokio::select! {
            r = from_session.read(&mut buf), if room => match r {
                Ok(0) | Err(_) => {
                    reading = false;
                    session.output_failed();
                }
                Ok(n) => {
                    splitter.push(&buf[..n], &mut units);
                    reading = !units.contains(&Unit::End);
                    session.output(&mut units);
                }
            },
            _ = tick.tick() => {
                if !session.tick() {
                    break;
                }
            }
            () = session.wake.notified() => {
                if session.is_closed() {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::AddressCounts;
    use crate::limits::PeerAddr;

    const FEATURES: &str =
        "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>";

    /// A session (rid 10 created, hold `hold`) and what it writes to the session's input.
    fn open(hold: usize) -> (Arc<Session>, mpsc::UnboundedReceiver<Vec<u8>>) {
        let counts = AddressCounts::default();
        let slot = counts
            .take(PeerAddr::new([192, 0, 2, 1].into()), 0, false)
            .unwrap();
        let params = Params {
            sid: crate::xmpp::random_id(16),
            server: 0,
            host: "localhost".into(),
            lang: None,
            rid: 10,
            hold,
            wait: Duration::from_secs(60),
            inactivity: Duration::from_secs(60),
            creation_attrs: " sid='x'".into(),
            max_backlog: 1 << 20,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        (Session::open(params, tx, Arc::default(), slot), rx)
    }

    fn request(rid: u64, kind: Kind, payload: &[&str]) -> Request {
        Request {
            rid,
            sid: Some("x".into()),
            kind,
            payload: payload.iter().map(|p| p.to_string()).collect(),
            to: None,
            wait: None,
            hold: None,
            ver: None,
            lang: None,
        }
    }

    /// The response if there is one already.
    fn now(reply: &mut Reply) -> Option<String> {
        match reply {
            Reply::Now(body) => Some(body.clone()),
            Reply::Wait { rx, .. } => rx.try_recv().ok(),
        }
    }

    fn input(rx: &mut mpsc::UnboundedReceiver<Vec<u8>>) -> String {
        let mut s = String::new();
        while let Ok(b) = rx.try_recv() {
            s.push_str(&String::from_utf8(b).unwrap());
        }
        s
    }

    /// Create and answer the creation request with the features.
    fn created(hold: usize) -> (Arc<Session>, mpsc::UnboundedReceiver<Vec<u8>>) {
        let (s, mut rx) = open(hold);
        let mut creation = s.request(request(10, Kind::Normal, &[]));
        assert_eq!(now(&mut creation), None, "waits for the features");
        let header = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='abc' from='localhost' version='1.0'>";
        s.output(&mut vec![
            Unit::Header(header.into()),
            Unit::Element(FEATURES.into()),
        ]);
        let body = now(&mut creation).unwrap();
        assert!(
            body.contains(" sid='x' authid='abc' from='localhost'>"),
            "{body}"
        );
        assert!(body.contains("<stream:features xmlns:stream="), "{body}");
        assert!(input(&mut rx).starts_with("<stream:stream "));
        (s, rx)
    }

    #[test]
    fn gaps_fill_in_rid_order_and_repeats_get_the_cached_response() {
        let (s, mut rx) = created(1);
        let mut later = s.request(request(12, Kind::Normal, &["<b/>"]));
        assert_eq!(input(&mut rx), "", "12 waits for 11");
        let mut earlier = s.request(request(11, Kind::Normal, &["<a/>"]));
        assert_eq!(input(&mut rx), "<a/><b/>");
        // hold='1': 11 is released empty, 12 waits for output.
        assert_eq!(now(&mut earlier).unwrap(), wire::empty());
        assert_eq!(now(&mut later), None);
        s.output(&mut vec![Unit::Element("<iq id='1'/>".into())]);
        let answer = now(&mut later).unwrap();
        assert!(
            answer.contains("<iq xmlns='jabber:client' id='1'/>"),
            "{answer}"
        );
        // Repeats: the cached responses.
        assert_eq!(
            now(&mut s.request(request(12, Kind::Normal, &[]))),
            Some(answer)
        );
        assert_eq!(
            now(&mut s.request(request(11, Kind::Normal, &["<a/>"]))),
            Some(wire::empty())
        );
        assert_eq!(input(&mut rx), "", "a repeat is not passed on again");
        // Too old to be cached: the session ends.
        let gone = now(&mut s.request(request(9, Kind::Normal, &[]))).unwrap();
        assert!(gone.contains("item-not-found"), "{gone}");
        assert!(s.is_closed());
    }

    #[test]
    fn a_rid_beyond_the_window_ends_the_session() {
        let (s, _rx) = created(1);
        let mut held = s.request(request(11, Kind::Normal, &[]));
        let r = now(&mut s.request(request(14, Kind::Normal, &[]))).unwrap();
        assert_eq!(r, wire::terminate(Some(Condition::ItemNotFound), &[]));
        assert_eq!(now(&mut held), Some(r));
        assert!(find(0, &s.sid).is_none());
    }

    #[test]
    fn restart_pause_and_terminate() {
        let (s, mut rx) = created(1);
        let mut restart = s.request(request(11, Kind::Restart, &[]));
        assert!(input(&mut rx).starts_with("<stream:stream "));
        assert_eq!(now(&mut restart), None);
        let mut pause = s.request(request(12, Kind::Pause(1000), &[]));
        assert_eq!(now(&mut restart), Some(wire::empty()));
        assert_eq!(now(&mut pause), Some(wire::empty()));
        assert_eq!(s.lock().paused, Some(Duration::from_secs(MAX_PAUSE_SECS)));
        let mut end = s.request(request(
            13,
            Kind::Terminate,
            &["<presence type='unavailable'/>"],
        ));
        assert_eq!(
            input(&mut rx),
            "<presence type='unavailable'/></stream:stream>"
        );
        assert_eq!(now(&mut end), Some(wire::terminate(None, &[])));
        assert!(s.is_closed());
        assert!(rx.try_recv().is_err(), "the input is closed");
    }

    #[test]
    fn the_end_of_the_stream_terminates_with_the_stream_error() {
        let (s, _rx) = created(1);
        let error =
            "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>";
        s.output(&mut vec![Unit::Element(error.into()), Unit::End]);
        assert!(!s.is_closed(), "kept for the client's next request");
        let r = now(&mut s.request(request(11, Kind::Normal, &[]))).unwrap();
        assert!(
            r.contains("type='terminate' condition='remote-stream-error'"),
            "{r}"
        );
        assert!(r.contains("<stream:error xmlns:stream="), "{r}");
        assert!(s.is_closed());
    }

    #[test]
    fn hold_zero_answers_at_once() {
        let (s, _rx) = created(0);
        assert_eq!(
            now(&mut s.request(request(11, Kind::Normal, &[]))),
            Some(wire::empty())
        );
    }

    #[test]
    fn an_expired_request_is_answered_empty() {
        let (s, _rx) = created(1);
        let mut reply = s.request(request(11, Kind::Normal, &[]));
        let Reply::Wait { rid, token, .. } = reply else {
            panic!()
        };
        s.expire(rid, token);
        assert_eq!(now(&mut reply), Some(wire::empty()));
        assert!(s.lock().idle_since.is_some());
    }
}
