//! Large-roster login (--roster-login N).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::cli::*;
use crate::client::*;
use crate::cpu::*;
use crate::link::*;
use crate::shared::*;
use crate::stats::*;
use crate::xml::*;
use crate::Res;

pub(crate) fn has_to(sub: &str) -> bool {
    sub == "to" || sub == "both"
}

pub(crate) fn has_from(sub: &str) -> bool {
    sub == "from" || sub == "both"
}

/// (bare JID lower-cased, subscription, ask='subscribe') of each `<item/>` in a roster element.
pub(crate) fn roster_items(e: &str) -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(p) = e[from..].find("<item") {
        let at = from + p;
        from = at + 5;
        if !matches!(
            e.as_bytes().get(from),
            Some(b' ' | b'\t' | b'\r' | b'\n' | b'/' | b'>')
        ) {
            continue;
        }
        let tag = &e[at..];
        if let Some(j) = attr(tag, "jid") {
            out.push((
                bare(j).to_ascii_lowercase(),
                attr(tag, "subscription").unwrap_or("none").to_owned(),
                attr(tag, "ask") == Some("subscribe"),
            ));
        }
    }
    out
}

pub(crate) fn contact_name(a: &Args, i: usize) -> String {
    format!("{}-c{i}", a.user_prefix)
}

pub(crate) fn roster_get(id: &str) -> String {
    format!("<iq type='get' id='{id}'><query xmlns='jabber:iq:roster'/></iq>")
}

pub(crate) fn sub_presence(kind: &str, to: &str) -> String {
    format!("<presence type='{kind}' to='{}'/>", xml_escape(to))
}

/// Names and state shared by the set-up and the measurement.
pub(crate) struct RosterBench {
    pub(crate) sh: Arc<Shared>,
    pub(crate) n: usize,
    pub(crate) online: usize,
    /// The owner's user name and bare JID.
    pub(crate) owner: String,
    pub(crate) owner_bare: String,
    /// Bare JIDs of the contacts.
    pub(crate) contacts: Vec<String>,
    /// Contact bare JID (lower case) -> index.
    pub(crate) index: HashMap<String, usize>,
    pub(crate) evs_tx: mpsc::UnboundedSender<Ev>,
    pub(crate) evs: mpsc::UnboundedReceiver<Ev>,
}

/// One measured login of the owner.
#[derive(Default, Clone)]
pub(crate) struct RosterRun {
    pub(crate) roster_items: usize,
    pub(crate) login_ms: f64,
    pub(crate) roster_ms: f64,
    pub(crate) presence_at_ms: f64,
    /// From the TCP connect until the owner had every online contact's presence.
    pub(crate) in_ms: Option<f64>,
    /// Until every online contact had the owner's presence.
    pub(crate) saw_ms: Option<f64>,
    pub(crate) presences_in: usize,
    pub(crate) contacts_saw: usize,
    pub(crate) presence_stanzas: usize,
    pub(crate) unexpected: usize,
    pub(crate) server_cpu_ms: Option<f64>,
    pub(crate) server_cpu_pct: Option<f64>,
    pub(crate) gen_cpu_pct: Option<f64>,
    /// Busy CPU of the whole machine (100 = all CPUs) in the second before the login.
    pub(crate) busy_before_pct: Option<f64>,
    pub(crate) errors: u64,
}

/// Seconds without a roster push after which the handshakes under way are asked for again.
const RETRY_S: u64 = 5;

/// The subscription handshakes of the set-up between the owner (the last link, id `n`) and
/// each contact i (link i).
struct Handshakes {
    n: usize,
    /// Subscription state as seen by the owner (of contact i) and by contact i (of the owner):
    /// (subscription, ask='subscribe').
    owner_view: Vec<(String, bool)>,
    contact_view: Vec<(String, bool)>,
    have_roster: Vec<bool>,
    rosters: usize,
    asked_back: Vec<bool>,
    /// Handshakes run --setup-window at a time (a burst of hundreds may be more than a server
    /// queues for one session); `active[i]`: contact i's handshake is under way.
    window: usize,
    todo: std::collections::VecDeque<usize>,
    active: Vec<bool>,
    in_flight: usize,
    /// All rosters are in: the handshakes have started.
    kicked: bool,
    next_retry: Instant,
    retries: usize,
}

impl Handshakes {
    fn new(n: usize, window: usize) -> Handshakes {
        Handshakes {
            n,
            owner_view: vec![("none".into(), false); n],
            contact_view: vec![("none".into(), false); n],
            have_roster: vec![false; n + 1],
            rosters: 0,
            asked_back: vec![false; n],
            window,
            todo: std::collections::VecDeque::new(),
            active: vec![false; n],
            in_flight: 0,
            kicked: false,
            next_retry: Instant::now() + Duration::from_secs(RETRY_S),
            retries: 0,
        }
    }

    fn is_both(&self, i: usize) -> bool {
        self.owner_view[i].0 == "both" && self.contact_view[i].0 == "both"
    }

    /// Contacts subscribed both ways.
    fn done(&self) -> usize {
        (0..self.n).filter(|&i| self.is_both(i)).count()
    }

    /// All rosters are in: queues the handshakes still to do.
    fn kick(&mut self) {
        self.kicked = true;
        self.todo = (0..self.n).filter(|&i| !self.is_both(i)).collect();
        eprintln!(
            "setup: {} of {} contacts already subscribed both ways; {} handshakes to do, {} at \
             a time",
            self.n - self.todo.len(),
            self.n,
            self.todo.len(),
            self.window
        );
    }

    /// Each side asks where it lacks 'to' and approves where it lacks 'from' (a 'subscribed'
    /// completes a stored pending request; without one it is ignored or a pre-approval).
    fn ask_again(&self, rb: &RosterBench, links: &[Link], i: usize) {
        let (ov, cv) = (&self.owner_view[i].0, &self.contact_view[i].0);
        let owner = &links[self.n];
        if !has_to(ov) {
            owner.send(sub_presence("subscribe", &rb.contacts[i]));
        }
        if !has_from(ov) {
            owner.send(sub_presence("subscribed", &rb.contacts[i]));
        }
        if !has_to(cv) {
            links[i].send(sub_presence("subscribe", &rb.owner_bare));
        }
        if !has_from(cv) {
            links[i].send(sub_presence("subscribed", &rb.owner_bare));
        }
    }

    /// Starts handshakes while there is room in the window; true when all are done.
    fn start_more(&mut self, rb: &RosterBench, links: &[Link]) -> bool {
        // Finished handshakes make room for new ones.
        while self.in_flight < self.window {
            let Some(i) = self.todo.pop_front() else {
                break;
            };
            self.active[i] = true;
            self.in_flight += 1;
            let (ov, cv) = (&self.owner_view[i], &self.contact_view[i]);
            if ov.0 == "none" && !ov.1 && cv.0 == "none" && !cv.1 {
                // The usual way: the owner asks; the contact approves and asks back (on
                // receipt, `on_subscribe`); the owner approves.
                links[self.n].send(sub_presence("subscribe", &rb.contacts[i]));
            } else {
                // Half done by an earlier run.
                self.asked_back[i] = has_to(&cv.0);
                self.ask_again(rb, links, i);
            }
        }
        self.in_flight == 0 && self.todo.is_empty()
    }

    /// No roster push for a while: a stanza got lost (a server may drop one under load, and
    /// RFC 6121 does not deliver a repeated subscribe that is already pending). Asks again for
    /// the handshakes under way. (Not on a timer: a busy server would only get more work.)
    fn retry(&mut self, rb: &RosterBench, links: &[Link], now: Instant) {
        self.next_retry = now + Duration::from_secs(RETRY_S);
        let mut again = 0;
        for i in (0..self.n).filter(|&i| self.active[i]) {
            self.ask_again(rb, links, i);
            again += 1;
        }
        self.retries += again;
        eprintln!("setup: no progress for {RETRY_S} s, asked again for {again} contacts");
    }

    /// Handles an element (not an error) that link `id` received.
    fn on_element(&mut self, rb: &RosterBench, links: &[Link], id: usize, el: &str) {
        match elem_name(el) {
            "iq" if el.contains("jabber:iq:roster") => self.on_roster(rb, id, el),
            // An empty roster result has no query element.
            "iq" if attr(el, "type") == Some("result")
                && attr(el, "id") == Some("rs0")
                && !self.have_roster[id] =>
            {
                self.have_roster[id] = true;
                self.rosters += 1;
            }
            "presence" if attr(el, "type") == Some("subscribe") => {
                let from = attr(el, "from").map(|f| bare(f).to_ascii_lowercase());
                if let Some(from) = from {
                    self.on_subscribe(rb, links, id, &from);
                }
            }
            _ => {}
        }
    }

    /// A roster result or push: updates the views, ends the handshakes that are done.
    fn on_roster(&mut self, rb: &RosterBench, id: usize, el: &str) {
        let ty = attr(el, "type");
        let is_result = ty == Some("result") && attr(el, "id") == Some("rs0");
        if !(is_result || ty == Some("set")) {
            return;
        }
        self.next_retry = Instant::now() + Duration::from_secs(RETRY_S);
        for (jid, sub, ask) in roster_items(el) {
            let i = if id == self.n {
                let Some(&i) = rb.index.get(&jid) else {
                    continue;
                };
                self.owner_view[i] = (sub, ask);
                i
            } else if jid == rb.owner_bare {
                self.contact_view[id] = (sub, ask);
                id
            } else {
                continue;
            };
            if self.active[i] && self.is_both(i) {
                self.active[i] = false;
                self.in_flight -= 1;
            }
        }
        if is_result && !self.have_roster[id] {
            self.have_roster[id] = true;
            self.rosters += 1;
        }
    }

    /// A subscription request `from` to link `id`: approved (and asked back by a contact).
    fn on_subscribe(&mut self, rb: &RosterBench, links: &[Link], id: usize, from: &str) {
        if id == self.n {
            if rb.index.contains_key(from) {
                links[id].send(sub_presence("subscribed", from));
            }
        } else if from == rb.owner_bare {
            links[id].send(sub_presence("subscribed", &rb.owner_bare));
            if !has_to(&self.contact_view[id].0) && !self.asked_back[id] {
                self.asked_back[id] = true;
                links[id].send(sub_presence("subscribe", &rb.owner_bare));
            }
        }
    }
}

impl RosterBench {
    pub(crate) fn who(&self, id: usize) -> String {
        if id < self.n {
            self.contacts[id].clone()
        } else {
            self.owner.clone()
        }
    }

    /// Logs the contacts and the owner (last) in, each run by a pump task.
    async fn setup_logins(&mut self, register_first: bool) -> Res<Vec<Link>> {
        let n = self.n;
        let mut users: Vec<String> = (0..n).map(|i| contact_name(&self.sh.args, i)).collect();
        users.push(self.owner.clone());
        eprintln!(
            "setup: logging in {} users{}",
            users.len(),
            if register_first {
                " (registering them first)"
            } else {
                ""
            }
        );
        let mut links = Vec::with_capacity(n + 1);
        let mut first_err = None;
        for (id, r) in login_all(&self.sh, &users, register_first)
            .await
            .into_iter()
            .enumerate()
        {
            match r {
                Ok((x, jid)) => links.push(Some(Link::spawn(x, jid, id, &self.evs_tx))),
                Err(e) => {
                    first_err.get_or_insert(e.to_string());
                    links.push(None);
                }
            }
        }
        if let Some(e) = first_err {
            return Err(format!("setup: some logins failed, first: {e}").into());
        }
        Ok(links.into_iter().flatten().collect())
    }

    /// Sets up the subscriptions through the protocol (only those that are not `both` yet),
    /// then closes every session except those of the online contacts, which are returned.
    pub(crate) async fn setup(&mut self, register_first: bool) -> Res<Vec<Link>> {
        let n = self.n;
        let t0 = Instant::now();
        let mut links = self.setup_logins(register_first).await?;
        if self.sh.args.register_only {
            return Ok(links);
        }
        eprintln!(
            "setup: {} sessions in {:.1} s; getting the rosters",
            links.len(),
            t0.elapsed().as_secs_f64()
        );
        for l in &links {
            l.send(roster_get("rs0"));
        }
        let mut hs = Handshakes::new(n, self.sh.args.setup_window.max(1));
        self.handshakes(&mut hs, &links, t0).await?;
        if hs.retries > 0 {
            eprintln!(
                "setup: note: {} handshakes had to be asked for again (lost stanzas)",
                hs.retries
            );
        }
        eprintln!(
            "setup: all {n} contacts subscribed both ways after {:.1} s",
            t0.elapsed().as_secs_f64()
        );
        // Only the online contacts stay; wait until the others' sessions are gone.
        let online_links: Vec<Link> = links.drain(..self.online).collect();
        let owner_jid = links.last().map(|l| l.jid.clone()).unwrap_or_default();
        for l in &mut links {
            l.close();
        }
        for l in links {
            let _ = l.task.await;
        }
        self.wait_unavailable(&owner_jid).await;
        eprintln!(
            "setup: done in {:.1} s; {} contacts online",
            t0.elapsed().as_secs_f64(),
            self.online
        );
        Ok(online_links)
    }

    /// Runs the handshakes until every contact and the owner are subscribed both ways (an error
    /// after --login-timeout or if a connection is lost).
    async fn handshakes(&mut self, hs: &mut Handshakes, links: &[Link], t0: Instant) -> Res<()> {
        let n = self.n;
        let limit = Instant::now() + Duration::from_secs(self.sh.args.login_timeout);
        let mut last_print = Instant::now();
        loop {
            if hs.rosters == n + 1 && !hs.kicked {
                hs.kick();
            }
            if hs.kicked && hs.start_more(self, links) {
                return Ok(());
            }
            let now = Instant::now();
            if now > limit {
                return Err(format!(
                    "setup: subscriptions not settled after {} s ({} of {n} both ways, \
                     {} of {} rosters)",
                    self.sh.args.login_timeout,
                    hs.done(),
                    hs.rosters,
                    n + 1
                )
                .into());
            }
            if hs.kicked && now > hs.next_retry {
                hs.retry(self, links, now);
            }
            if last_print.elapsed() > Duration::from_secs(5) {
                last_print = Instant::now();
                eprintln!(
                    "  ... {} of {n} subscribed both ways, {} of {} rosters",
                    hs.done(),
                    hs.rosters,
                    n + 1
                );
            }
            let ev = match tokio::time::timeout(Duration::from_millis(500), self.evs.recv()).await {
                Ok(Some(ev)) => ev,
                Ok(None) => return Err("event channel closed".into()),
                Err(_) => continue,
            };
            let (id, el) = match ev {
                Ev::El { id, el, .. } => (id, el),
                Ev::Down { id, why } => {
                    return Err(
                        format!("setup: {} lost its connection: {why}", self.who(id)).into(),
                    )
                }
            };
            if self.sh.args.trace {
                eprintln!(
                    "trace {:.3} {} <- {el}",
                    t0.elapsed().as_secs_f64(),
                    self.who(id)
                );
            }
            if !note_error(&self.sh, &self.who(id), &el) {
                hs.on_element(self, links, id, &el);
            }
        }
    }

    /// Waits (up to 10 s) until every online contact got `jid`'s unavailable presence.
    pub(crate) async fn wait_unavailable(&mut self, jid: &str) {
        let mut seen = vec![false; self.online];
        let mut count = 0;
        let limit = tokio::time::Instant::now() + Duration::from_secs(10);
        while count < self.online {
            let ev = match tokio::time::timeout_at(limit, self.evs.recv()).await {
                Ok(Some(ev)) => ev,
                _ => break,
            };
            let Ev::El { id, el, .. } = ev else { continue };
            if note_error(&self.sh, &self.who(id), &el) {
                continue;
            }
            if id < self.online
                && elem_name(&el) == "presence"
                && attr(&el, "type") == Some("unavailable")
                && attr(&el, "from").is_some_and(|f| f.eq_ignore_ascii_case(jid))
                && !seen[id]
            {
                seen[id] = true;
                count += 1;
            }
        }
        if count < self.online {
            eprintln!(
                "  note: only {count} of {} online contacts saw {jid} go offline within 10 s",
                self.online
            );
        }
    }

    /// One measured login of the owner (resource `res`), then its logout.
    pub(crate) async fn measure(&mut self, run: usize, online: &[Link]) -> Res<RosterRun> {
        let sh = self.sh.clone();
        let a = &sh.args;
        let pids = &a.server_pid;
        let mut r = RosterRun::default();
        self.before_run(&mut r).await;
        let errors0 = sh.stats.errors.load(Ordering::Relaxed);
        let cpu0 = server_cpu_ns(pids);
        let self0 = cpu_ns("self");
        let t0 = Instant::now();
        let resource = format!("{}{run}", a.resource);
        let (x, jid) = login_as(&sh, &self.owner, &resource, false, false).await?;
        let mut w = LoginWatch {
            owner_id: self.n + 1 + run,
            owner_jid: jid.to_ascii_lowercase(),
            rid: format!("rl{run}"),
            t0,
            got_roster: false,
            presence_at: None,
            seen_in: vec![false; self.online],
            seen_by: vec![false; self.online],
            last_in: None,
            last_by: None,
            online_full: online
                .iter()
                .enumerate()
                .map(|(i, l)| (l.jid.to_ascii_lowercase(), i))
                .collect(),
        };
        r.login_ms = w.ms(Instant::now());
        let mut owner = Link::spawn(x, jid.clone(), w.owner_id, &self.evs_tx);
        owner.send(roster_get(&w.rid));
        if let Some((cpu1, self1, t1)) = self.watch_login(run, &mut w, &owner, &mut r).await? {
            let wall = t1.saturating_duration_since(t0).as_secs_f64();
            let s = |a: Option<u64>, b: Option<u64>| ns_diff_ms(a, b).map(|ms| ms / 1000.0);
            let (cpu_s, own_s) = (s(cpu0, cpu1), s(self0, self1));
            r.server_cpu_ms = cpu_s.map(|c| c * 1000.0);
            r.server_cpu_pct = cpu_s.map(|c| c / wall * 100.0);
            r.gen_cpu_pct = own_s.map(|c| c / wall * 100.0);
        }
        if r.presences_in == self.online {
            r.in_ms = w.last_in.map(|t| w.ms(t)).or(Some(r.presence_at_ms));
        }
        if r.contacts_saw == self.online {
            r.saw_ms = w.last_by.map(|t| w.ms(t)).or(Some(r.presence_at_ms));
        }
        // Log out, and wait until the contacts know.
        owner.close();
        let _ = owner.task.await;
        self.wait_unavailable(&jid).await;
        r.errors = sh.stats.errors.load(Ordering::Relaxed) - errors0;
        Ok(r)
    }

    /// How busy the machine is just before (the run itself is too short for tick counts);
    /// anything left over from before (late presences) is not part of the run.
    async fn before_run(&mut self, r: &mut RosterRun) {
        let m0 = machine_ticks();
        tokio::time::sleep(Duration::from_secs(1)).await;
        r.busy_before_pct = busy_pct_since(m0);
        while let Ok(ev) = self.evs.try_recv() {
            if let Ev::El { id, el, .. } = ev {
                note_error(&self.sh, &self.who(id), &el);
            }
        }
    }

    /// Follows the owner's login until the presences are exchanged both ways (then returns the
    /// server's and the generator's CPU ns and the time), --presence-timeout passes or a
    /// connection is lost.
    async fn watch_login(
        &mut self,
        run: usize,
        w: &mut LoginWatch,
        owner: &Link,
        r: &mut RosterRun,
    ) -> Res<Option<(Option<u64>, Option<u64>, Instant)>> {
        let sh = self.sh.clone();
        let a = &sh.args;
        let limit = tokio::time::Instant::now() + Duration::from_secs(a.presence_timeout);
        loop {
            if w.presence_at.is_some()
                && r.presences_in == self.online
                && r.contacts_saw == self.online
            {
                return Ok(Some((
                    server_cpu_ns(&a.server_pid),
                    cpu_ns("self"),
                    Instant::now(),
                )));
            }
            let ev = match tokio::time::timeout_at(limit, self.evs.recv()).await {
                Ok(Some(ev)) => ev,
                Ok(None) => return Err("event channel closed".into()),
                Err(_) => {
                    sh.stats.error(format!(
                        "run {run}: timeout after {} s: roster {}, {} of {} presences in, {} of {} contacts saw the owner",
                        a.presence_timeout,
                        if w.got_roster { "received" } else { "NOT received" },
                        r.presences_in,
                        self.online,
                        r.contacts_saw,
                        self.online
                    ));
                    return Ok(None);
                }
            };
            let (id, at, el) = match ev {
                Ev::El { id, at, el } => (id, at, el),
                Ev::Down { id, why } => {
                    sh.stats.error(format!(
                        "run {run}: {} lost its connection: {why}",
                        self.who(id)
                    ));
                    if id == w.owner_id || id < self.online {
                        return Ok(None);
                    }
                    continue;
                }
            };
            if note_error(&sh, &self.who(id), &el) {
                continue;
            }
            if id == w.owner_id {
                w.on_owner(r, owner, &el, at);
            } else if id < self.online {
                w.on_contact(r, id, &el, at);
            }
        }
    }
}

/// What one measured login of the owner has seen so far.
struct LoginWatch {
    owner_id: usize,
    /// The owner's full JID, lower case.
    owner_jid: String,
    /// Id of the roster get.
    rid: String,
    /// The TCP connect.
    t0: Instant,
    got_roster: bool,
    /// When the owner sent its initial presence.
    presence_at: Option<Instant>,
    /// By online contact: its presence reached the owner; the owner's reached it.
    seen_in: Vec<bool>,
    seen_by: Vec<bool>,
    last_in: Option<Instant>,
    last_by: Option<Instant>,
    /// Online contacts' full JIDs (lower case) -> index.
    online_full: HashMap<String, usize>,
}

impl LoginWatch {
    /// Milliseconds since the TCP connect.
    fn ms(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.t0).as_secs_f64() * 1000.0
    }

    /// The owner got `el` at `at`: the roster result (then the owner sends its initial
    /// presence), or an available presence.
    fn on_owner(&mut self, r: &mut RosterRun, owner: &Link, el: &str, at: Instant) {
        let name = elem_name(el);
        if name == "iq"
            && attr(el, "id") == Some(self.rid.as_str())
            && attr(el, "type") == Some("result")
        {
            self.got_roster = true;
            r.roster_items = roster_items(el).len();
            r.roster_ms = self.ms(at);
            let now = Instant::now();
            owner.send("<presence/>".into());
            self.presence_at = Some(now);
            r.presence_at_ms = self.ms(now);
        } else if name == "presence" && attr(el, "type").is_none() {
            let from = attr(el, "from").unwrap_or("").to_ascii_lowercase();
            if from == self.owner_jid {
                return; // our own presence, reflected
            }
            r.presence_stanzas += 1;
            match self.online_full.get(&from) {
                Some(&i) if !self.seen_in[i] => {
                    self.seen_in[i] = true;
                    r.presences_in += 1;
                    self.last_in = Some(at);
                }
                Some(_) => {}
                None => {
                    r.unexpected += 1;
                    if r.unexpected <= 3 {
                        eprintln!("  unexpected available presence to the owner from {from}");
                    }
                }
            }
        }
    }

    /// Online contact `id` got `el` at `at`: the owner's available presence, the first time.
    fn on_contact(&mut self, r: &mut RosterRun, id: usize, el: &str, at: Instant) {
        if elem_name(el) == "presence"
            && attr(el, "type").is_none()
            && attr(el, "from").is_some_and(|f| f.eq_ignore_ascii_case(&self.owner_jid))
            && !self.seen_by[id]
        {
            self.seen_by[id] = true;
            r.contacts_saw += 1;
            self.last_by = Some(at);
        }
    }
}

/// Prints one measured login on stderr.
fn print_run(k: usize, r: &RosterRun, online: usize) {
    eprintln!(
        "run {k}: roster {} items; login {:.1} ms, roster {:.1} ms, presence sent at {:.1} ms; \
         all {} presences in at {} ms, all contacts saw the owner at {} ms; server CPU {} ms ({} %), \
         machine {} % busy before; {} presence stanzas, {} unexpected, {} errors",
        r.roster_items,
        r.login_ms,
        r.roster_ms,
        r.presence_at_ms,
        online,
        fmt_opt(r.in_ms, 1),
        fmt_opt(r.saw_ms, 1),
        fmt_opt(r.server_cpu_ms, 1),
        fmt_opt(r.server_cpu_pct, 0),
        fmt_opt(r.busy_before_pct, 0),
        r.presence_stanzas,
        r.unexpected,
        r.errors
    );
}

impl RosterBench {
    /// PREFIX-owner and the contacts PREFIX-c0..c{n-1} on --domain, `online` of them online.
    fn new(sh: &Arc<Shared>, n: usize, online: usize) -> RosterBench {
        let args = &sh.args;
        let contacts: Vec<String> = (0..n).map(|i| contact_name(args, i)).collect();
        let owner = format!("{}-owner", args.user_prefix);
        let domain = args.domain.to_ascii_lowercase();
        let (evs_tx, evs) = mpsc::unbounded_channel();
        RosterBench {
            sh: sh.clone(),
            n,
            online,
            owner_bare: format!("{}@{domain}", owner.to_ascii_lowercase()),
            owner,
            index: contacts
                .iter()
                .enumerate()
                .map(|(i, c)| (format!("{}@{domain}", c.to_ascii_lowercase()), i))
                .collect(),
            contacts: contacts.iter().map(|c| format!("{c}@{domain}")).collect(),
            evs_tx,
            evs,
        }
    }
}

pub(crate) async fn roster_login(args: Args, n: usize) -> Res<()> {
    if n == 0 {
        return Err("--roster-login needs at least 1 contact".into());
    }
    let online = args.roster_online.unwrap_or(n / 2);
    TRACE.store(args.trace, Ordering::Relaxed);
    if online > n {
        return Err("--roster-online is larger than --roster-login".into());
    }
    let (sh, _phase) = Shared::new(&args, 0)?;
    let mut rb = RosterBench::new(&sh, n, online);
    eprintln!(
        "roster-login: {} with {n} contacts ({online} online) at {}",
        rb.owner_bare,
        args.target()
    );
    let setup_start = Instant::now();
    let register_first = args.register || args.register_only;
    let mut online_links = rb.setup(register_first).await?;
    let setup_s = setup_start.elapsed().as_secs_f64();
    if args.register_only {
        let errors = sh.stats.errors.load(Ordering::Relaxed);
        return register_result(&args, n + 1, n + 1, setup_s, errors);
    }
    let setup_errors = sh.stats.errors.load(Ordering::Relaxed);
    let mut runs = Vec::new();
    for k in 0..args.repeat.max(1) {
        let r = rb.measure(k, &online_links).await?;
        print_run(k, &r, online);
        runs.push(r);
    }
    for l in &mut online_links {
        l.close();
    }
    for l in online_links {
        let _ = l.task.await;
    }
    let incomplete = runs
        .iter()
        .filter(|r| r.in_ms.is_none() || r.saw_ms.is_none())
        .count();
    let errors = sh.stats.errors.load(Ordering::Relaxed);
    println!(
        "RESULT server={} mode=roster-login contacts={n} online={online} {} \
         incomplete={incomplete} {} setup_s={setup_s:.1} setup_errors={setup_errors} \
         errors={errors}",
        args.label,
        median_fields(&runs),
        run_lists(&runs),
    );
    if errors > 0 || incomplete > 0 {
        return Err(format!("{errors} errors, {incomplete} incomplete runs").into());
    }
    Ok(())
}

/// The RESULT fields of the measured logins: medians, and the least (counts of what arrived)
/// or the most (counts of what should not have) over the runs.
fn median_fields(runs: &[RosterRun]) -> String {
    let med = |f: &dyn Fn(&RosterRun) -> Option<f64>| median(runs.iter().filter_map(f).collect());
    let after = |t: Option<f64>, r: &RosterRun| t.map(|t| t - r.presence_at_ms);
    let min_us = |f: &dyn Fn(&RosterRun) -> usize| runs.iter().map(f).min().unwrap_or(0);
    let max_us = |f: &dyn Fn(&RosterRun) -> usize| runs.iter().map(f).max().unwrap_or(0);
    let done = |r: &RosterRun| match (r.in_ms, r.saw_ms) {
        (Some(a), Some(b)) => Some(a.max(b)),
        _ => None,
    };
    format!(
        "runs={} roster_items={} \
         login_ms={} roster_ms={} presences_in_ms={} presences_in_after_presence_ms={} \
         contacts_saw_ms={} contacts_saw_after_presence_ms={} done_ms={} \
         server_cpu_ms={} server_cpu_pct={} gen_cpu_pct={} busy_before_pct={} \
         presences_in={} contacts_saw={} presence_stanzas={} unexpected={}",
        runs.len(),
        min_us(&|r| r.roster_items),
        fmt_opt(med(&|r| Some(r.login_ms)), 1),
        fmt_opt(med(&|r| Some(r.roster_ms)), 1),
        fmt_opt(med(&|r| r.in_ms), 1),
        fmt_opt(med(&|r| after(r.in_ms, r)), 1),
        fmt_opt(med(&|r| r.saw_ms), 1),
        fmt_opt(med(&|r| after(r.saw_ms, r)), 1),
        fmt_opt(med(&done), 1),
        fmt_opt(med(&|r| r.server_cpu_ms), 1),
        fmt_opt(med(&|r| r.server_cpu_pct), 0),
        fmt_opt(med(&|r| r.gen_cpu_pct), 0),
        fmt_opt(med(&|r| r.busy_before_pct), 0),
        min_us(&|r| r.presences_in),
        min_us(&|r| r.contacts_saw),
        max_us(&|r| r.presence_stanzas),
        max_us(&|r| r.unexpected),
    )
}

/// The per-run RESULT fields: when the presences were in, and when the contacts saw the owner.
fn run_lists(runs: &[RosterRun]) -> String {
    let list = |f: &dyn Fn(&RosterRun) -> Option<f64>| {
        runs.iter()
            .map(|r| fmt_opt(f(r), 1))
            .collect::<Vec<_>>()
            .join(",")
    };
    format!(
        "presences_in_ms_runs={} contacts_saw_ms_runs={}",
        list(&|r| r.in_ms),
        list(&|r| r.saw_ms)
    )
}
