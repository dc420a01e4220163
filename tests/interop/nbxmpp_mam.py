#!/usr/bin/python3
"""Interop check of a server's message archive with nbxmpp, Gajim's XMPP library.

Run by Debian's /usr/bin/python3 with Debian's python3-nbxmpp (4.2.2 in Debian 12; GLib/Gio
networking through python3-gi). nbxmpp is what Gajim uses for everything, MAM included: its
`MAM` module builds the queries (`make_query`: a form with start/end/with, RSM max/after) and
its dispatcher unwraps every <result/> into the forwarded message with `properties.mam`
(archive id, query id, XEP-0203 timestamp) and parses `properties.stanza_ids` (XEP-0359).

Steps (accounts <prefix>a, <prefix>b, <prefix>c, new):
  1. each registers in band the way Gajim does (nbxmpp's REGISTER mode: TLS, then the
     Register module's request_register_form / submit_register_form), then logs in (STARTTLS,
     SASL chosen by nbxmpp) and sends presence;
  2. a and b exchange 40 chat messages (20 each way, each waited for), then c and a 6
     (3 each way) in their own time window (whole seconds apart); every message a receives
     must carry <stanza-id by='a's bare JID'>;
  3. a queries its archive with the MAM module, pages of 10 forward (`after` = the RSM last
     of the previous page) until <fin complete='true'>: exactly the 46 messages in order,
     each unwrapped by nbxmpp with a MAM id, the query's id, a timestamp within the run, the
     original from/to/body; the archive id of each message a received equals its live
     stanza-id; only the last page is complete, RSM first/last name the page's ends;
  4. filters: with=b gives the 40 a-b messages, with=c the 6 a-c ones; start/end around the
     second batch give exactly its 6; a start in the future gives nothing, complete;
  5. preferences (XEP-0441 through the MAM module): request_preferences gives default
     'always'; set_preferences('never', always=[c]) and read back; a message a->b is then
     not archived, a->c is; default 'always' again.

Exit code 0 and a last line 'OK: ...' on success; otherwise one 'FAIL: reason' line on stderr
and exit 1 (2 on the overall timeout, 3 if nbxmpp is missing). The certificate is not
verified (self-signed test servers). nbxmpp 4.2.2 cannot build its own `with` query field
(see _work_around_jid_single): the script patches that one call and says so.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import secrets
import sys
import time

sys.dont_write_bytecode = True

try:
    import gi
    gi.require_version("Gio", "2.0")
    gi.require_version("GLib", "2.0")
    from gi.repository import GLib  # noqa: E402
    import nbxmpp
    from nbxmpp.client import Client
    from nbxmpp.const import ConnectionProtocol, ConnectionType, Mode
    from nbxmpp.protocol import JID, Message
    from nbxmpp.structs import StanzaHandler
except (ImportError, ValueError) as exc:  # pragma: no cover - environment problem
    print(f"FAIL: cannot import nbxmpp ({exc}); apt-get install python3-nbxmpp", file=sys.stderr)
    sys.exit(3)


def _work_around_jid_single() -> bool:
    """nbxmpp 4.2.2 (Debian 12) cannot build the `with` field of its own MAM query form:
    create_field('jid-single', value=...) raises TypeError (JidSingleField is a
    ListSingleField whose `options` setter iterates the default None), and make_query's task
    then ends silently, with neither a result nor an error. Give the field an empty option
    list, as the form module's own parser would; returns True if the fix was needed."""
    import nbxmpp.modules.mam as nbmam
    try:
        nbmam.create_field(typ="jid-single", var="with", value="x@example.org")
        return False
    except TypeError:
        pass
    orig = nbmam.create_field

    def create_field(typ, **attrs):
        if typ == "jid-single":
            attrs.setdefault("options", [])
        return orig(typ, **attrs)

    nbmam.create_field = create_field
    return True


T0 = time.monotonic()
DEADLINE = [0.0]
STEP = ["start"]


def say(msg: str) -> None:
    print(f"[{time.monotonic() - T0:6.2f}s] {msg}", flush=True)


class Failure(Exception):
    pass


class Timeout(Exception):
    pass


def pump_until(pred, timeout: float, what: str):
    """Runs GLib's main context until pred() is true (its value is returned)."""
    STEP[0] = what
    ctx = GLib.MainContext.default()
    end = min(time.monotonic() + timeout, DEADLINE[0])
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            if time.monotonic() > DEADLINE[0]:
                raise Timeout(what)
            raise Failure(f"timed out ({timeout:g} s): {what}")
        if not ctx.iteration(False):
            time.sleep(0.002)


def wait_task(task, what: str, timeout: float = 20):
    """Waits for an nbxmpp task; returns its result or raises Failure with its error. (The
    result is taken in the done callback: the task forgets it when it is finalized after its
    callbacks; and the callback is held strongly, nbxmpp keeps only a weak reference by
    default.)"""
    box = {}

    def done(t):
        try:
            box["ok"] = t.finish()
        except Exception as e:  # nbxmpp's StanzaError etc.
            box["err"] = e

    if task.state.is_finished:  # failed (or done) before it sent anything
        done(task)
    else:
        task.add_done_callback(done, weak=False)
    pump_until(lambda: "ok" in box or "err" in box, timeout, what)
    if "err" in box:
        e = box["err"]
        raise Failure(f"{what}: {type(e).__name__}: {e}")
    return box["ok"]


def expect(cond, what: str) -> None:
    if not cond:
        raise Failure(what)


class Account:
    def __init__(self, label: str, args):
        self.label = label
        self.args = args
        self.user = f"{args.prefix}{label}"
        self.password = secrets.token_urlsafe(18)
        self.bare = f"{self.user}@{args.domain}"
        self.inbox: list = []      # (stanza, properties) of live chat messages
        self.mam: dict[str, list] = {}  # query id -> [(properties)]
        self.client = None
        self.events: list[str] = []

    def _new_client(self, mode) -> Client:
        c = Client(log_context=self.label)
        c.set_domain(self.args.domain)
        c.set_username(self.user)
        c.set_password(self.password)
        c.set_resource(f"nbxmpp-{self.label}")
        c.set_mode(mode)
        c.set_custom_host(f"{self.args.host}:{self.args.port}", ConnectionProtocol.TCP,
                          ConnectionType.START_TLS)
        c.set_ignore_tls_errors(True)  # the test servers' certificates are self-signed
        for sig in ("connected", "connection-failed", "disconnected", "login-successful"):
            c.subscribe(sig, self._on_signal)
        return c

    def _on_signal(self, client, signal_name, *args, **kwargs):
        self.events.append(signal_name)

    def register(self) -> None:
        c = self._new_client(Mode.REGISTER)
        c.connect()
        pump_until(lambda: "connected" in self.events or "connection-failed" in self.events
                   or "disconnected" in self.events, 20, f"{self.label}: connect to register")
        expect("connected" in self.events,
               f"{self.label}: REGISTER mode did not connect: {self.events} {c.get_error()}")
        reg = c.get_module("Register")
        data = wait_task(reg.request_register_form(), f"{self.label}: registration form")
        form = data.fields_form or data.form
        expect(form is not None, f"{self.label}: no registration form")
        fields = {f.var for f in form.iter_fields()}
        expect({"username", "password"} <= fields, f"{self.label}: form fields {fields}")
        form["username"].value = self.user
        form["password"].value = self.password
        wait_task(reg.submit_register_form(form), f"{self.label}: register {self.bare}")
        self.events.clear()
        c.disconnect()
        pump_until(lambda: "disconnected" in self.events, 10, f"{self.label}: disconnect")
        c.destroy()
        say(f"{self.label}: registered {self.bare} in band (nbxmpp REGISTER mode)")

    def login(self) -> None:
        self.events.clear()
        c = self._new_client(Mode.CLIENT)
        c.set_sm_disabled(True)
        c.register_handler(StanzaHandler(name="message", callback=self._on_message, priority=50))
        self.client = c
        c.connect()
        pump_until(lambda: "connected" in self.events or "connection-failed" in self.events
                   or "disconnected" in self.events, 20, f"{self.label}: log in")
        expect("connected" in self.events,
               f"{self.label}: login failed: {self.events} {c.get_error()}")
        self.jid = c.get_bound_jid()
        say(f"{self.label}: logged in as {self.jid} ({getattr(c.tls_version, 'value_nick', '?')}, "
            f"{c.ciphersuite})")
        c.send_stanza(nbxmpp.Presence())

    def _on_message(self, _client, stanza, properties):
        if properties.is_mam_message:
            self.mam.setdefault(properties.mam.query_id, []).append(properties)
        elif properties.body and properties.type.is_chat:
            self.inbox.append(properties)

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.disconnect()
                pump_until(lambda: "disconnected" in self.events, 5, f"{self.label}: close")
            except Exception:
                pass


def send_chat(sender: Account, receiver: Account, body: str, live: dict) -> None:
    sender.client.send_stanza(Message(to=receiver.bare, body=body, typ="chat"))
    props = pump_until(lambda: next((p for p in receiver.inbox if p.body == body), None), 20,
                       f"{receiver.label}: waiting for {body!r}")
    own = [s.id for s in props.stanza_ids if s.by == receiver.bare]
    expect(len(own) == 1 and own[0], f"{receiver.label}: {body!r} came without one stanza-id "
                                     f"by {receiver.bare}: {props.stanza_ids}")
    live[body] = own[0]


def query(acc: Account, *, with_=None, start=None, end=None, after=None, max_=10):
    mam = acc.client.get_module("MAM")
    qid = secrets.token_hex(6)
    res = wait_task(mam.make_query(acc.bare, queryid=qid, start=start, end=end, with_=with_,
                                   after=after, max_=max_), f"{acc.label}: MAM query")
    expect(res is not None, f"{acc.label}: MAM query task ended without a result")
    items = acc.mam.pop(qid, [])
    return items, res


def next_second() -> float:
    now = time.time()
    nxt = int(now) + 1
    pump_until(lambda: time.time() > nxt + 0.3, 3, "waiting for the next second")
    return float(nxt)


def utc(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc)


def scenario(args) -> None:
    accounts = [Account(label, args) for label in ("a", "b", "c")]
    t_start = time.time() - 5
    try:
        for acc in accounts:
            acc.register()
            acc.login()
        a, b, c = accounts
        token = secrets.token_hex(3)
        live: dict[str, str] = {}
        sent: list[str] = []
        for i in range(40):
            if i % 2 == 0:
                body = f"a->b {i:02d} ({token})"
                send_chat(a, b, body, {})
            else:
                body = f"b->a {i:02d} ({token})"
                send_chat(b, a, body, live)
            sent.append(body)
        say(f"OK: 40 chat messages a<->b; the 20 a received carried a stanza-id by {a.bare}")
        win_start = next_second()
        batch2 = []
        for i in range(6):
            if i % 2 == 0:
                body = f"c->a {i:02d} ({token})"
                send_chat(c, a, body, live)
            else:
                body = f"a->c {i:02d} ({token})"
                send_chat(a, c, body, {})
            batch2.append(body)
            sent.append(body)
        win_end = next_second()
        pump_until(lambda: time.time() > win_end + 0.7, 3, "pause")

        # --- forward paging -------------------------------------------------------------
        pages = []
        after = None
        while True:
            items, res = query(a, after=after)
            pages.append(items)
            expect(len(pages) <= 8, "paging does not end")
            if items:
                expect(res.rsm.first == items[0].mam.id and res.rsm.last == items[-1].mam.id,
                       f"page {len(pages)}: RSM first/last {res.rsm.first}/{res.rsm.last} do "
                       f"not name its first/last item")
            if res.complete:
                break
            expect(len(items) == 10, f"page {len(pages)}: {len(items)} items, not complete")
            after = res.rsm.last
        got = [p for page in pages for p in page]
        expect([p.body for p in got] == sent,
               f"archive: {len(got)} messages {[p.body for p in got][:4]}..., expected the "
               f"{len(sent)} sent, in order")
        expect(len(pages) == 5, f"{len(pages)} pages for 46 messages of max 10")
        ids = [p.mam.id for p in got]
        expect(len(set(ids)) == len(ids), "archive ids not unique")
        want = {"a->b": (a, b), "b->a": (b, a), "a->c": (a, c), "c->a": (c, a)}
        for p in got:
            frm, to = want[p.body[:4]]
            expect(p.from_.bare == frm.bare and p.to.bare == to.bare,
                   f"{p.body!r}: from {p.from_} to {p.to}")
            expect(p.mam.archive is None or p.mam.archive.bare == a.bare,
                   f"{p.body!r}: result from {p.mam.archive}, not a's own archive")
            ts = p.mam.timestamp  # nbxmpp 4.2: seconds since the epoch (a datetime later)
            ts = ts.timestamp() if isinstance(ts, dt.datetime) else float(ts)
            expect(t_start <= ts <= time.time() + 5, f"{p.body!r}: timestamp {p.mam.timestamp}")
            if p.body in live:
                expect(p.mam.id == live[p.body], f"{p.body!r}: archive id {p.mam.id}, live "
                                                 f"stanza-id {live[p.body]}")
        say(f"OK: MAM paging forward (max 10, after): {len(pages)} pages, 46 messages in order, "
            f"complete only on the last; ids unique and equal to the live stanza-ids; "
            f"timestamps and from/to right")

        # --- filters --------------------------------------------------------------------
        items, res = query(a, with_=b.bare, max_=100)
        expect([p.body for p in items] == sent[:40] and res.complete,
               f"with={b.bare}: {len(items)} messages, expected the 40 a<->b ones")
        items, res = query(a, with_=c.bare, max_=100)
        expect([p.body for p in items] == batch2 and res.complete,
               f"with={c.bare}: {[p.body for p in items]}")
        items, res = query(a, start=utc(win_start), end=utc(win_end), max_=100)  # (whole s)
        expect([p.body for p in items] == batch2,
               f"start/end of the second batch: {[p.body for p in items]}, expected {batch2}")
        items, res = query(a, start=utc(time.time() + 3600), max_=100)
        expect(not items and res.complete, "start in the future: expected nothing, complete")
        say("OK: MAM filters: with=b (40), with=c (6), start/end (the second batch's 6), "
            "a future start (none)")

        # --- preferences ------------------------------------------------------------------
        mam = a.client.get_module("MAM")
        prefs = wait_task(mam.request_preferences(), "a: request_preferences")
        expect(prefs.default == "always", f"default preference {prefs.default!r}, expected "
                                          f"'always'")
        wait_task(mam.set_preferences("never", [c.bare], []), "a: set_preferences")
        prefs = wait_task(mam.request_preferences(), "a: request_preferences again")
        expect(prefs.default == "never" and [str(j) for j in prefs.always] == [c.bare],
               f"after set_preferences('never', always=[c]): {prefs}")
        b_never = f"a->b never ({token})"
        c_always = f"a->c always ({token})"
        send_chat(a, b, b_never, {})
        send_chat(a, c, c_always, {})
        wait_task(mam.set_preferences("always", [], []), "a: set_preferences back")
        items, res = query(a, start=utc(win_end), max_=100)
        bodies = [p.body for p in items]
        expect(b_never not in bodies and bodies == [c_always],
               f"after the 'never' preference the archive got {bodies}, expected only "
               f"{c_always!r}")
        say("OK: MAM preferences: default always; never with c in always: a->b not archived, "
            "a->c archived")
    finally:
        for acc in accounts:
            acc.close()


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--domain", required=True)
    p.add_argument("--prefix", required=True, help="accounts <prefix>a..c, must be new")
    p.add_argument("--timeout", type=float, default=90.0)
    p.add_argument("--debug", action="store_true", help="nbxmpp's debug log (raw XML)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.CRITICAL,
                        format="    nbxmpp %(levelname)s %(name)s: %(message)s",
                        stream=sys.stdout)
    say(f"nbxmpp {nbxmpp.__version__}, Python {sys.version.split()[0]}; target "
        f"{args.host}:{args.port} domain {args.domain}, STARTTLS, certificate not verified")
    if _work_around_jid_single():
        say("nbxmpp's MAM query form cannot hold a jid-single 'with' field in this version: "
            "patched (options=[])")
    DEADLINE[0] = time.monotonic() + args.timeout
    try:
        scenario(args)
    except Failure as f:
        print(f"FAIL: {f}", file=sys.stderr, flush=True)
        return 1
    except Timeout:
        print(f"FAIL: timed out after {args.timeout:g} s during step: {STEP[0]}",
              file=sys.stderr, flush=True)
        return 2
    except Exception as exc:
        print(f"FAIL: unexpected {type(exc).__name__}: {exc}".replace("\n", " "),
              file=sys.stderr, flush=True)
        return 1
    say("OK: archive (XEP-0313 query, RSM paging, filters, stanza ids, preferences) verified "
        "with nbxmpp")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
