#!/usr/bin/env python3
"""Interop check of a server's message archive with slixmpp's own MAM plugins.

XEP-0313 (Message Archive Management, urn:xmpp:mam:2) through slixmpp's xep_0313 plugin (with
xep_0059 RSM, xep_0297 forwarding, xep_0203 delay, xep_0359 stanza ids) and XEP-0441 archive
preferences through xep_0441. Accounts <prefix>a, <prefix>b and <prefix>c (new, registered in
band as in slixmpp_chat.py) log in; then:

  1. chat: a and b exchange 60 chat messages (30 each way, alternating, each waited for; a few
     carry distinct words); every message a receives must carry
     <stanza-id xmlns='urn:xmpp:sid:0' by='a's bare JID'>;
  2. a second batch, in its own time window (whole seconds apart from the first): c and a
     exchange 10 messages (5 each way);
  3. a's archive, all of it, through the plugin's RSM iterator (pages of 10, forward): exactly
     the 70 messages, in the order sent, each a <result> with an id, a <forwarded> with an
     XEP-0203 <delay> (stamp within the run) and the original message (from, to, type chat,
     body); the archive id of each message a received equals the stanza-id it carried live;
     ids are unique;
  4. paging by hand (max 10): forward from the start with `after`, checking that every page
     but the last has 10 items and <fin> without complete='true', the last has
     complete='true'; then backward from the end (empty <before/>, then `before` = the first id
     of the page), the first page ending with the newest message, the last one (the oldest
     items) with complete='true'; the pages backward are the pages forward in reverse;
     `after` and `before` an id in the middle give the 10 items after / before it, and the
     RSM <first>/<last> name the first and last item of each page, <count> (if sent) is 70;
  5. filters: with=b's bare JID (through the plugin's retrieve()) gives exactly the 60 a-b
     messages, with=c the 10 a-c ones; start/end around the second batch give exactly its 10
     messages, start alone the same, end alone the first 60; start in the future gives none
     (complete), as does with=b within the second batch's window;
  6. XEP-0441 preferences: get_preferences (default must be 'always' here: the test servers
     archive everything); set default 'never' with c in 'always'; get them back; then a sends
     one message to b (must NOT be archived in a's archive) and one to c (must be, c is in
     'always'); then set default 'always' again and check a message to b is archived again.

Exit code 0 and 'OK: ...' on success; otherwise one 'FAIL: reason' line on stderr (see
slixmpp_chat.py). Options as slixmpp_chat.py (--host, --port, --domain, --mode, --prefix,
--cafile); the scenario's time limit is 120 s by default.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ left in the source tree
sys.path.insert(0, str(Path(__file__).resolve().parent))
import slixmpp_chat as chat  # noqa: E402  (exits 3 with a FAIL line if slixmpp is missing)
from slixmpp_chat import Failure, guarded, say  # noqa: E402

from slixmpp import JID  # noqa: E402
from slixmpp.exceptions import IqError, IqTimeout  # noqa: E402
from slixmpp.xmlstream.handler import Callback  # noqa: E402
from slixmpp.xmlstream.matcher import MatchXPath  # noqa: E402

MAM = "urn:xmpp:mam:2"
SID = "urn:xmpp:sid:0"
IQ_TIMEOUT = 20
PAGE = 10
WORDS = ["pineapple", "zeppelin", "marmalade"]


class MamClient(chat.Client):
    """A test account with the archive plugins; collects MAM results per query id."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for p in ("xep_0059", "xep_0297", "xep_0203", "xep_0359", "xep_0313", "xep_0441"):
            self.register_plugin(p)
        self.results: dict[str, list] = {}
        # slixmpp's 'message' event is only for messages with a top-level <body>.
        self.register_handler(Callback("MAM results",
                                       MatchXPath(f"{{jabber:client}}message/{{{MAM}}}result"),
                                       self._on_mam_result))

    def _on_mam_result(self, msg) -> None:
        self.results.setdefault(msg["mam_result"]["queryid"], []).append(msg)


def utc(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc)


def stanza_ids(msg) -> list[tuple[str, str]]:
    return [(e.get("by", ""), e.get("id", "")) for e in msg.xml.findall(f"{{{SID}}}stanza-id")]


class Item:
    """One archived message as a <result> shows it."""

    def __init__(self, owner: MamClient, msg):
        res = msg["mam_result"]
        self.id = res["id"]
        fwd = res["forwarded"]
        inner = fwd["stanza"]
        self.body = inner["body"]
        self.frm = inner["from"]
        self.to = inner["to"]
        self.type = inner["type"]
        stamp = fwd["delay"]["stamp"]
        self.stamp = stamp
        if not self.id:
            raise Failure(f"{owner.label}: archive result without an id: {msg}")
        if fwd.xml.find("{urn:xmpp:delay}delay") is None or stamp is None:
            raise Failure(f"{owner.label}: archive result {self.id} has no XEP-0203 delay: {msg}")
        if not self.body:
            raise Failure(f"{owner.label}: archive result {self.id} has no forwarded body: {msg}")
        if msg["from"] and msg["from"].bare != owner.boundjid.bare:
            raise Failure(f"{owner.label}: archive result from {msg['from']}, not from the own "
                          f"bare JID {owner.boundjid.bare}")


async def query(c: MamClient, *, with_=None, start=None, end=None, max_=PAGE, after=None,
                before=None):
    """One MAM query built on the plugin's stanzas (iq['mam'], its RSM <set>); `before=True`
    sends an empty <before/> (the last page). Returns (items, fin attrs, rsm dict)."""
    iq = c.make_iq_set()
    qid = iq["id"]
    iq["mam"]["queryid"] = qid
    if start is not None:
        iq["mam"]["start"] = start
    if end is not None:
        iq["mam"]["end"] = end
    if with_ is not None:
        iq["mam"]["with"] = JID(with_)
    iq["mam"]["rsm"]["max"] = str(max_)
    if after is not None:
        iq["mam"]["rsm"]["after"] = after
    if before is not None:
        iq["mam"]["rsm"]["before"] = before
    c.results[qid] = []
    try:
        r = await iq.send(timeout=IQ_TIMEOUT)
    except IqError as e:
        raise Failure(f"{c.label}: MAM query refused: {chat._iq_error(e.iq)} (query {iq})")
    except IqTimeout:
        raise Failure(f"{c.label}: no answer to a MAM query in {IQ_TIMEOUT} s")
    await asyncio.sleep(0)  # results arrive before the answer; let their handlers run
    msgs = c.results.pop(qid, [])
    fin = r.xml.find(f"{{{MAM}}}fin")
    if fin is None:
        raise Failure(f"{c.label}: MAM answer without <fin/>: {r}")
    rsm = r["mam_fin"]["rsm"]
    info = {"first": rsm["first"] or None, "last": rsm["last"] or None,
            "count": rsm["count"] or None,
            "complete": fin.get("complete") in ("true", "1")}
    return [Item(c, m) for m in msgs], info


def bodies(items) -> list[str]:
    return [i.body for i in items]


def expect(cond: bool, what: str) -> None:
    if not cond:
        raise Failure(what)


async def chat_and_check(sender: MamClient, receiver: MamClient, body: str, live: dict) -> None:
    sender.send_message(mto=receiver.boundjid.bare, mbody=body, mtype="chat")
    while True:
        msg = await asyncio.wait_for(receiver.inbox.get(), IQ_TIMEOUT)
        if msg["from"].user:
            break
    expect(msg["body"] == body, f"{receiver.label} got {msg['body']!r}, expected {body!r}")
    ids = stanza_ids(msg)
    own = [i for by, i in ids if by == receiver.boundjid.bare]
    expect(len(own) == 1 and own[0],
           f"{receiver.label}: live message {body!r} should carry one <stanza-id "
           f"xmlns='{SID}' by='{receiver.boundjid.bare}'>, has {ids}")
    live[body] = own[0]


async def pause_to_next_second() -> float:
    """Sleep past the next whole second (plus a margin); return that whole second."""
    now = time.time()
    nxt = int(now) + 1
    await asyncio.sleep(nxt - now + 0.3)
    return float(nxt)


async def scenario(args, step: list[str]) -> None:
    loop = asyncio.get_running_loop()
    fatal: asyncio.Future = loop.create_future()
    fatal.add_done_callback(lambda f: f.exception())
    clients: list[MamClient] = []
    t_start = time.time() - 5
    try:
        for label in ("a", "b", "c"):
            jid = f"{args.prefix}{label}@{args.domain}/mam-{label}"
            c = MamClient(label, jid, secrets.token_urlsafe(18), args, fatal)
            clients.append(c)
            say(f"{label}: connecting to {args.host}:{args.port} ({args.mode}) as {jid}")
            c.connect(args.host, args.port)
            await guarded(c.ready, fatal, step, f"{label}: register + log in")
            c.send_presence()
            await guarded(chat.barrier(c), fatal, step, f"{label}: IQ after presence")
        a, b, c = clients
        token = secrets.token_hex(3)

        # --- 1. 60 messages a <-> b --------------------------------------------------------
        live: dict[str, str] = {}      # body -> stanza-id a saw live
        sent: list[str] = []           # bodies in the order sent (a's archive order)
        for i in range(60):
            word = f" {WORDS[i // 20]}" if i % 20 == 7 else ""
            if i % 2 == 0:
                body = f"a->b {i:02d}{word} ({token})"
                await guarded(chat_and_check(a, b, body, {}), fatal, step, f"a->b message {i}")
            else:
                body = f"b->a {i:02d}{word} ({token})"
                await guarded(chat_and_check(b, a, body, live), fatal, step, f"b->a message {i}")
            sent.append(body)
        say(f"OK: 60 chat messages a<->b; the 30 a received each carried a stanza-id by "
            f"{a.boundjid.bare}")

        # --- 2. 10 messages a <-> c in their own time window --------------------------------
        win_start = await pause_to_next_second()
        batch2 = []
        for i in range(10):
            if i % 2 == 0:
                body = f"c->a {i:02d} ({token})"
                await guarded(chat_and_check(c, a, body, live), fatal, step, f"c->a message {i}")
            else:
                body = f"a->c {i:02d} ({token})"
                await guarded(chat_and_check(a, c, body, {}), fatal, step, f"a->c message {i}")
            batch2.append(body)
            sent.append(body)
        win_end = await pause_to_next_second()
        await asyncio.sleep(0.7)  # the next message is at least a second after win_end - 1
        total = len(sent)

        # --- 3. the whole archive through the plugin's RSM iterator -------------------------
        step[0] = "a: whole archive via xep_0313 iterate()"
        items_all = []
        it = a.plugin["xep_0313"].iterate(rsm={"max": PAGE})
        async for msg in it:
            items_all.append(Item(a, msg))
            if len(items_all) > total + 50:
                break
        got = [i for i in items_all if token in i.body]
        expect(bodies(got) == sent,
               f"a's archive via iterate(): {len(got)} of this run's messages "
               f"(of {len(items_all)}), expected the {total} in order; got {bodies(got)[:5]}...")
        by_body = {i.body: i for i in got}
        ids = [i.id for i in got]
        expect(len(set(ids)) == len(ids), "archive ids are not unique")
        for body, sid in live.items():
            expect(by_body[body].id == sid,
                   f"a's archive id of {body!r} is {by_body[body].id}, but the live message "
                   f"carried stanza-id {sid}")
        now = time.time() + 5
        for i in got:
            ts = i.stamp.timestamp()
            expect(t_start <= ts <= now, f"delay stamp {i.stamp} of {i.body!r} not within the run")
            a_full, b_full, c_full = (x.boundjid.full for x in clients)
            want = {"a->b": (a_full, b.boundjid.bare), "b->a": (b_full, a.boundjid.bare),
                    "a->c": (a_full, c.boundjid.bare), "c->a": (c_full, a.boundjid.bare)}
            frm, to = want[i.body[:4]]
            expect(i.frm.full == frm and i.to.bare == JID(to).bare and i.type == "chat",
                   f"archived {i.body!r}: from={i.frm} to={i.to} type={i.type}, expected "
                   f"from={frm} to={to} type=chat")
        say(f"OK: whole archive via the plugin's iterator: {total} messages in order, with "
            f"forwarded message, delay and unique ids; archive ids = live stanza-ids "
            f"({len(live)} received messages)")
        expect(len(items_all) == total,
               f"a's archive has {len(items_all)} messages, expected {total} (a is new)")

        # --- 4. paging by hand ---------------------------------------------------------------
        step[0] = "a: paging forward"
        fwd_pages = []
        after = None
        while True:
            items, info = await query(a, after=after)
            fwd_pages.append(items)
            expect(len(fwd_pages) <= total // PAGE + 2, "forward paging does not end")
            if items:
                expect(info["first"] == items[0].id and info["last"] == items[-1].id,
                       f"forward page {len(fwd_pages)}: RSM first/last {info['first']}/"
                       f"{info['last']} do not name its first/last item "
                       f"{items[0].id}/{items[-1].id}")
            if info["count"] is not None:
                expect(int(info["count"]) == total, f"RSM count {info['count']}, expected {total}")
            if info["complete"]:
                break
            expect(len(items) == PAGE, f"forward page {len(fwd_pages)} has {len(items)} items "
                                       f"but <fin> is not complete")
            after = info["last"]
        flat = [i.body for p in fwd_pages for i in p]
        expect(flat == sent, f"forward pages give {len(flat)} messages, not the {total} in order")
        expect(len(fwd_pages[-1]) <= PAGE and len(fwd_pages) == -(-total // PAGE),
               f"{len(fwd_pages)} forward pages for {total} messages of max {PAGE}")
        say(f"OK: paging forward with after: {len(fwd_pages)} pages of max {PAGE}, only the last "
            f"with <fin complete='true'>, RSM first/last right")

        step[0] = "a: paging backward"
        back_pages = []
        before: object = True
        while True:
            items, info = await query(a, before=before)
            back_pages.append(items)
            expect(len(back_pages) <= total // PAGE + 2, "backward paging does not end")
            if items:
                expect(info["first"] == items[0].id and info["last"] == items[-1].id,
                       f"backward page {len(back_pages)}: RSM first/last do not name its "
                       f"first/last item")
            if info["complete"]:
                break
            expect(len(items) == PAGE, f"backward page {len(back_pages)} has {len(items)} items "
                                       f"but <fin> is not complete")
            before = info["first"]
        expect(back_pages[0] and back_pages[0][-1].body == sent[-1],
               "the page before an empty <before/> does not end with the newest message")
        flat_back = [i.body for p in reversed(back_pages) for i in p]
        expect(flat_back == sent, f"backward pages give {len(flat_back)} messages, not the "
                                  f"{total} in order")
        say(f"OK: paging backward from <before/>: {len(back_pages)} pages, the first ends with "
            f"the newest message, only the oldest page complete, items in order")

        mid = got[35]
        items, _ = await query(a, after=mid.id)
        expect(bodies(items) == sent[36:46], f"after={mid.id}: {bodies(items)}, expected "
                                             f"{sent[36:46]}")
        items, _ = await query(a, before=mid.id)
        expect(bodies(items) == sent[25:35], f"before={mid.id}: {bodies(items)}, expected "
                                              f"{sent[25:35]}")
        say("OK: after=<id> and before=<id> in the middle give the 10 items after / before it")

        # --- 5. filters ----------------------------------------------------------------------
        step[0] = "a: filters"
        r = await a.plugin["xep_0313"].retrieve(with_jid=b.boundjid.bare, rsm={"max": 100},
                                                timeout=IQ_TIMEOUT)
        with_b = [Item(a, m) for m in r["mam"]["results"]]
        expect(bodies(with_b) == sent[:60],
               f"with={b.boundjid.bare}: {len(with_b)} messages, expected the 60 a<->b ones")
        expect(r.xml.find(f"{{{MAM}}}fin").get("complete") in ("true", "1"),
               "with=b in one page of 100: <fin> not complete")
        items, info = await query(a, with_=c.boundjid.bare, max_=100)
        expect(bodies(items) == batch2 and info["complete"],
               f"with={c.boundjid.bare}: {bodies(items)}, expected the 10 a<->c ones, complete")
        say("OK: with=<bare JID> filters (60 with b through the plugin's retrieve(), 10 with c)")
        items, info = await query(a, start=utc(win_start), end=utc(win_end - 0.001), max_=100)
        expect(bodies(items) == batch2 and info["complete"],
               f"start={utc(win_start)} end={utc(win_end)}: {bodies(items)}, expected the 10 "
               f"messages of the second batch")
        items, info = await query(a, start=utc(win_start), max_=100)
        expect(bodies(items) == batch2, f"start only: {len(items)} messages, expected 10")
        items, info = await query(a, end=utc(win_start - 0.001), max_=100)
        expect(bodies(items) == sent[:60], f"end only: {len(items)} messages, expected 60")
        items, info = await query(a, start=utc(time.time() + 3600))
        expect(not items and info["complete"], "start in the future: expected no item, complete")
        items, info = await query(a, start=utc(win_start), with_=b.boundjid.bare)
        expect(not items and info["complete"], "with=b and the second batch's time: expected "
                                               "nothing")
        say("OK: start/end filters (10 in the second batch's window, 60 before it, none in "
            "the future; combined with with=)")

        # --- 6. XEP-0441 preferences -----------------------------------------------------------
        step[0] = "a: XEP-0441 preferences"
        prefs = a.plugin["xep_0441"]
        try:
            default, always, never = await prefs.get_preferences(timeout=IQ_TIMEOUT)
        except IqError as e:
            raise Failure(f"get_preferences refused: {chat._iq_error(e.iq)}")
        expect(default == "always", f"default archiving preference {default!r}, expected "
                                    f"'always' on this server")
        say(f"OK: get_preferences: default={default} always={list(always)} never={list(never)}")
        try:
            await prefs.set_preferences(default="never", always=[JID(c.boundjid.bare)],
                                        never=[], timeout=IQ_TIMEOUT)
        except IqError as e:
            raise Failure(f"set_preferences refused: {chat._iq_error(e.iq)}")
        default, always, never = await prefs.get_preferences(timeout=IQ_TIMEOUT)
        expect(default == "never" and [j.bare for j in always] == [c.boundjid.bare],
               f"after setting never/always=[c]: default={default} always={list(always)}")
        say("OK: set_preferences(default='never', always=[c]) and read back")
        body_never = f"a->b not archived ({token})"
        body_always = f"a->c archived (always list) ({token})"
        await guarded(chat_and_check(a, b, body_never, {}), fatal, step, "a->b under 'never'")
        await guarded(chat_and_check(a, c, body_always, {}), fatal, step, "a->c under 'never'")
        await prefs.set_preferences(default="always", always=[], never=[], timeout=IQ_TIMEOUT)
        default, _, _ = await prefs.get_preferences(timeout=IQ_TIMEOUT)
        expect(default == "always", f"default back to always: got {default!r}")
        body_again = f"a->b archived again ({token})"
        await guarded(chat_and_check(a, b, body_again, {}), fatal, step, "a->b under 'always'")
        items, info = await query(a, before=True, max_=5)
        tail = bodies(items)
        expect(body_never not in tail, f"a message to b under default 'never' was archived: "
                                       f"{tail}")
        expect(tail[-2:] == [body_always, body_again],
               f"archive ends with {tail[-3:]}, expected the message to c (always list) and "
               f"the one after the default went back to 'always'")
        say("OK: XEP-0441: under default 'never' a message to b was not archived, one to c "
            "(always list) was; archived again after default 'always'")
        step[0] = "disconnecting"
    finally:
        await chat.close_all(clients)


def main(argv: list[str]) -> int:
    if not any(a == "--timeout" or a.startswith("--timeout=") for a in argv):
        argv = [*argv, "--timeout", "120"]
    return chat.run(argv, __doc__, scenario,
                    "OK: archive (XEP-0313, RSM, stanza ids, XEP-0441 preferences) verified")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
