#!/usr/bin/env python3
"""Multi-user chat (XEP-0045) interop check of an XMPP server with slixmpp's MUC plugins.

Four accounts <prefix>a..d (registered in band as slixmpp_chat.py does) and a second session
of a (a2) use slixmpp's xep_0045 (with xep_0004, xep_0030, xep_0203, xep_0249, xep_0308,
xep_0410, xep_0421, xep_0424). Steps, each asserted (see tests/interop/README.md):
  1. service discovery: the server's disco#items lists a conference service whose disco#info
     has the identity conference/text and the MUC feature (or --muc names it);
  2. instant room: a creates <prefix>instant (201, locked: b's entry refused with
     item-not-found), unlocks it with an empty submit form (XEP-0045 10.1.2); b enters with
     slixmpp's join_muc_wait and sees a as owner/moderator; both leave (110 on the self
     presence);
  3. reserved room: a creates <prefix>lounge (201), gets the muc#roomconfig form with
     get_room_config, fills it (name, description, persistent, public, subject changes by
     moderators only, semi-anonymous, invitations allowed) and sends it back with
     set_room_config; the room's disco#info (features, muc#roominfo form) and the service's
     disco#items (public room listed) show it;
  4. talking and history: a says three things, each reflected to a with its id, body and an
     occupant-id (XEP-0421); b enters asking for 2 stanzas of history, c for the history
     since an hour ago, and both get exactly those messages with XEP-0203 delays from the
     room, then the (empty) subject; b (participant) does not see a's real JID, a (moderator)
     sees b's and c's; occupant ids are stable per occupant and differ between occupants;
  5. b talks: everyone gets it, b's own copy (the reflection) with b's id; b corrects it
     (XEP-0308) and retracts it (XEP-0424): both pass through with their payloads;
  6. subject: a sets it (everyone gets it from a's occupant JID); c may not (forbidden);
  7. nick change: c becomes Carla with set_self_nick (303 with the new nick to everyone,
     then the new presence); b's change to a taken nick is refused with conflict;
  8. private messages through the room, both ways, with the muc#user <x/>;
  9. multiple sessions with one nick (XEP-0045 7.2.12): a2 (a's second resource) enters as
     the same nick: a2 gets its self presence (owner), nobody sees the nick leave, both
     sessions get the room's messages; a2 leaves and nobody sees the nick go;
 10. invitations: a mediated invitation from a to d (through the room, from a's JID, with the
     reason) that d declines (a gets the decline from d's JID); a direct invitation
     (XEP-0249) from b to d;
 11. d enters: as 'Bob' (taken: conflict), then as Dave with maxchars=0 (no history) and
     gets the subject from a's occupant JID;
 12. voice: the room is made moderated (a status message with 104 reaches the occupants);
     a revokes d's voice (visitor): d's message is refused (forbidden); d requests voice
     (XEP-0045 7.13): a gets the muc#request form and grants voice with set_role; d talks;
 13. kick: a kicks d with a reason (307 for everyone, 110 for d, actor and reason); d enters
     again;
 14. affiliations: a makes b admin and c member (presences show the new affiliation);
     get_affiliation_list returns each list;
 15. members-only: a reconfigures the room members-only: d (no affiliation) is removed with
     322 and refused with registration-required; a makes d member, d enters again;
     a revokes c's membership: c is removed with 321; a makes c member again and c enters;
 16. ban: a bans d (outcast, 301 for everyone, 110 for d); the outcast list holds d; d's
     entry is refused with forbidden; self-ping (XEP-0410, slixmpp's send_self_ping): c is
     still joined, d is not;
 17. non-anonymous: a sets whois=anyone (a status message with 172); c leaves and enters
     again: its self presence has 100 and it sees a's real JID;
 18. password: b creates <prefix>vault, password-protected (disco: muc_passwordprotected);
     c's entry without a password and with a wrong one is refused with not-authorized,
     with the password accepted; b's mediated invitation to d carries the password;
 19. destroy: a destroys the lounge with a reason and the vault as alternate venue: a, b
     and c each get an unavailable self presence with <destroy jid=vault> and the reason;
     the room's disco#info is then item-not-found (or gone, as Prosody's tombstones answer)
     and the service no longer lists it.

Exit code 0 on success; otherwise non-zero with one 'FAIL: reason' line on stderr
(1 = check failed, 2 = timeout, 3 = bad usage / slixmpp missing).
Passwords are never printed (except with --debug, which dumps the raw XML stream).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import secrets
import sys
import traceback
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ left in the source tree
sys.path.insert(0, str(Path(__file__).resolve().parent))
import slixmpp_chat as chat  # noqa: E402  (exits 3 with a FAIL line if slixmpp is missing)
from slixmpp_chat import Failure, say  # noqa: E402

import slixmpp  # noqa: E402
from slixmpp import JID  # noqa: E402
from slixmpp.exceptions import IqError, IqTimeout, PresenceError  # noqa: E402
from slixmpp.plugins.xep_0410 import PingStatus  # noqa: E402

MUC_SERVICE = ""  # --muc
STEP_TIMEOUT = 20.0  # seconds for any single expected stanza / answer (a hang guard)

NS_MUC = "http://jabber.org/protocol/muc"
NS_USER = f"{NS_MUC}#user"
NS_REQUEST = f"{NS_MUC}#request"
NS_ROOMINFO = f"{NS_MUC}#roominfo"
NS_OCCUPANT_ID = "urn:xmpp:occupant-id:0"
NS_DELAY = "urn:xmpp:delay"
NS_DATA = "jabber:x:data"
NS_REPLACE = "urn:xmpp:message-correct:0"
NS_RETRACT = "urn:xmpp:message-retract:1"
NS_SELF_PING = f"{NS_MUC}#self-ping-optimization"


# ---------------------------------------------------------------------- stanza helpers
def user_x(st):
    return st.xml.find(f"{{{NS_USER}}}x")


def codes(st) -> set[int]:
    x = user_x(st)
    if x is None:
        return set()
    return {int(s.get("code", "0")) for s in x.findall(f"{{{NS_USER}}}status")}


def item(st) -> dict[str, str]:
    """The muc#user <item/>'s attributes, plus 'reason' and 'actor' (nick or jid) if any."""
    x = user_x(st)
    it = x.find(f"{{{NS_USER}}}item") if x is not None else None
    if it is None:
        return {}
    d = dict(it.attrib)
    r = it.find(f"{{{NS_USER}}}reason")
    if r is not None:
        d["reason"] = r.text or ""
    a = it.find(f"{{{NS_USER}}}actor")
    if a is not None:
        d["actor"] = a.get("nick") or a.get("jid") or ""
    return d


def occupant_id(st) -> str | None:
    els = st.xml.findall(f"{{{NS_OCCUPANT_ID}}}occupant-id")
    if len(els) > 1:
        raise Failure(f"{len(els)} occupant-id elements in a stanza from {st['from']}")
    return els[0].get("id") if els else None


def body(st) -> str:
    return st["body"] if isinstance(st, slixmpp.Message) else ""


def error_condition(st) -> str:
    return st["error"]["condition"] if st["type"] == "error" else ""


def is_presence(st, frm: str, ptype: str | None = None) -> bool:
    if not isinstance(st, slixmpp.Presence) or st["from"].full != frm:
        return False
    if ptype is None:
        return st["type"] not in ("unavailable", "error")
    return st["type"] == ptype


def is_groupchat(st, frm: str, text: str | None = None) -> bool:
    return (isinstance(st, slixmpp.Message) and st["type"] == "groupchat"
            and st["from"].full == frm and (text is None or body(st) == text))


def first(v):
    """A form value as one string (slixmpp gives hidden and multi fields as lists)."""
    if isinstance(v, list):
        return v[0] if v else None
    return v


def subject_of(st) -> str:
    return st["subject"] or ""


def describe(st) -> str:
    s = str(st)
    return s if len(s) <= 400 else s[:400] + "..."


# ---------------------------------------------------------------------- the client
class MucClient(chat.Client):
    """A chat.Client (in-band registration, TLS, failure plumbing) with slixmpp's MUC plugins
    that records every message and presence it receives, in order."""

    def __init__(self, label: str, jid: str, password: str, args, fatal,
                 registered: bool = False):
        super().__init__(label, jid, password, args, fatal)
        self.registered = registered  # a second session of an account that exists already
        for p in ("xep_0045", "xep_0203", "xep_0249", "xep_0308", "xep_0359", "xep_0410",
                  "xep_0421", "xep_0424"):
            self.register_plugin(p)
        self.got: list = []
        self.changed = asyncio.Event()
        self.add_filter("in", self._record)

    @property
    def muc(self):
        return self.plugin["xep_0045"]

    def _record(self, stanza):
        if isinstance(stanza, (slixmpp.Message, slixmpp.Presence)):
            self.got.append(stanza)
            self.changed.set()
        return stanza

    def _on_message_error(self, msg) -> None:
        pass  # errors are expected in some steps; they are recorded and checked there

    def mark(self) -> int:
        return len(self.got)

    async def wait_for(self, cond, what: str, timeout: float = STEP_TIMEOUT):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self.fatal.done():
                self.fatal.result()
            v = cond()
            if v:
                return v
            left = deadline - loop.time()
            if left <= 0:
                raise Failure(f"{self.label}: {what} (nothing within {timeout:g} s)")
            self.changed.clear()
            waiter = asyncio.ensure_future(self.changed.wait())
            await asyncio.wait({waiter, self.fatal}, timeout=left,
                               return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()

    async def expect(self, pred, what: str, since: int = 0):
        """The first stanza received since `since` for which pred() holds."""
        def find():
            for st in self.got[since:]:
                if pred(st):
                    return st
            return None
        return await self.wait_for(find, f"expected {what}")

    def seen(self, pred, since: int = 0) -> list:
        return [st for st in self.got[since:] if pred(st)]

    async def iq(self, aw, what: str):
        """Await an IQ; an error or no answer fails the test."""
        try:
            return await aw
        except IqError as e:
            raise Failure(f"{self.label}: {what} refused: {chat._iq_error(e.iq)}")
        except IqTimeout:
            raise Failure(f"{self.label}: no answer to {what} in {STEP_TIMEOUT:g} s")

    async def iq_refused(self, aw, what: str, condition: str, *alternatives: str):
        try:
            await aw
        except IqError as e:
            got = e.iq["error"]["condition"]
            if got != condition and got not in alternatives:
                raise Failure(f"{self.label}: {what} refused with {chat._iq_error(e.iq)}, "
                              f"expected {condition}")
            say(f"{self.label}: {what}: refused with {got} ok")
            return
        except IqTimeout:
            raise Failure(f"{self.label}: no answer to {what} in {STEP_TIMEOUT:g} s")
        raise Failure(f"{self.label}: {what} succeeded, expected {condition}")

    def send_groupchat(self, room: str, text: str, mid: str | None = None):
        msg = self.make_message(mto=room, mbody=text, mtype="groupchat")
        msg["id"] = mid or secrets.token_hex(6)
        msg.send()
        return msg["id"]


# ---------------------------------------------------------------------- MUC steps
async def join(c: MucClient, room: str, nick: str, **kw):
    """Enter with slixmpp's join_muc_wait (occupants, self presence, history, subject)."""
    try:
        pres, subject, occupants, history = await asyncio.wait_for(
            c.muc.join_muc_wait(JID(room), nick, timeout=STEP_TIMEOUT, **kw),
            STEP_TIMEOUT + 1)
    except PresenceError as e:
        raise Failure(f"{c.label}: entering {room} as {nick} refused: "
                      f"{e.etype}/{e.condition} {e.text}".rstrip())
    except (asyncio.TimeoutError, TimeoutError):
        raise Failure(f"{c.label}: entering {room} as {nick}: slixmpp's join_muc_wait got no "
                      f"self presence and subject within {STEP_TIMEOUT:g} s")
    if 110 not in codes(pres):
        raise Failure(f"{c.label}: self presence without 110: {describe(pres)}")
    if pres["from"].full != f"{room}/{nick}":
        raise Failure(f"{c.label}: self presence from {pres['from']}, expected {room}/{nick}")
    say(f"{c.label}: entered {room} as {nick} ({item(pres).get('affiliation')}/"
        f"{item(pres).get('role')}, codes {sorted(codes(pres))}); {len(occupants)} occupant "
        f"presence(s), {len(history)} history message(s), subject {subject_of(subject)!r}")
    return pres, subject, occupants, history


async def join_refused(c: MucClient, room: str, nick: str, condition: str, **kw) -> None:
    """Entering must be refused with `condition`; slixmpp's join_muc_wait must see the
    error (the presence error carries the MUC <x/>, as in XEP-0045's examples)."""
    m = c.mark()
    try:
        await asyncio.wait_for(
            c.muc.join_muc_wait(JID(room), nick, timeout=STEP_TIMEOUT, **kw), STEP_TIMEOUT + 1)
    except PresenceError as e:
        if e.condition != condition:
            raise Failure(f"{c.label}: entering {room} as {nick} refused with {e.condition}, "
                          f"expected {condition}")
        c.muc.rooms[None].pop(JID(room), None)
        say(f"{c.label}: entering {room} as {nick}: refused with {condition} ok")
        return
    except (asyncio.TimeoutError, TimeoutError):
        errs = c.seen(lambda st: isinstance(st, slixmpp.Presence) and st["type"] == "error"
                      and st["from"].bare == room, m)
        if errs:
            raise Failure(f"{c.label}: entering {room} as {nick}: the presence error "
                          f"({error_condition(errs[0])}) lacks the MUC <x/>, so slixmpp's "
                          f"join_muc_wait never sees it: {describe(errs[0])}")
        raise Failure(f"{c.label}: entering {room} as {nick}: no answer within "
                      f"{STEP_TIMEOUT:g} s, expected {condition}")
    raise Failure(f"{c.label}: entered {room} as {nick}, expected {condition}")


async def create(c: MucClient, room: str, nick: str):
    """Create a room (XEP-0045 10.1.1): the self presence has 201; the room is locked, so
    no history or subject follows (slixmpp's join_muc_wait would wait for a subject)."""
    m = c.mark()
    c.muc.rooms[None][JID(room)] = {}
    c.muc.our_nicks[None][JID(room)] = nick
    c.muc.make_join_stanza(JID(room), nick).send()
    pres = await c.expect(lambda st: isinstance(st, slixmpp.Presence)
                          and st["from"].bare == room and (110 in codes(st)
                                                           or st["type"] == "error"),
                          f"the self presence from {room}/{nick}", m)
    if pres["type"] == "error":
        raise Failure(f"{c.label}: creating {room} refused: {error_condition(pres)}")
    if 201 not in codes(pres):
        raise Failure(f"{c.label}: self presence on creating {room} lacks 201 (codes "
                      f"{sorted(codes(pres))}): does the room exist already?")
    it = item(pres)
    if (it.get("affiliation"), it.get("role")) != ("owner", "moderator"):
        raise Failure(f"{c.label}: creator of {room} is {it}, expected owner/moderator")
    say(f"{c.label}: created {room} as {nick} (201, owner/moderator)")
    return pres


async def configure(c: MucClient, room: str, values: dict, what: str) -> None:
    """Fill the muc#roomconfig form from get_room_config and send it with set_room_config."""
    form = await c.iq(c.muc.get_room_config(JID(room), timeout=STEP_TIMEOUT),
                      f"the configuration form of {room}")
    fields = form.get_fields()
    ftype = fields.get("FORM_TYPE")
    if ftype is None or first(ftype["value"]) != "http://jabber.org/protocol/muc#roomconfig":
        raise Failure(f"{c.label}: configuration form of {room} has FORM_TYPE "
                      f"{ftype['value'] if ftype else None!r}")
    missing = set(values) - set(fields)
    if missing:
        raise Failure(f"{c.label}: configuration form of {room} lacks {sorted(missing)} "
                      f"(has {sorted(fields)})")
    for var, value in values.items():
        fields[var]["value"] = value
    await c.iq(c.muc.set_room_config(JID(room), form, timeout=STEP_TIMEOUT),
               f"submitting the configuration of {room} ({what})")
    say(f"{c.label}: configured {room} with slixmpp's get/set_room_config: {what}")


async def disco_info(c: MucClient, jid: str):
    iq = await c.iq(c.plugin["xep_0030"].get_info(jid=jid, timeout=STEP_TIMEOUT),
                    f"disco#info of {jid}")
    return iq["disco_info"]


async def disco_items(c: MucClient, jid: str) -> dict[str, str]:
    iq = await c.iq(c.plugin["xep_0030"].get_items(jid=jid, timeout=STEP_TIMEOUT),
                    f"disco#items of {jid}")
    return {str(j): (name or "") for j, _node, name in iq["disco_items"]["items"]}


def roominfo(info) -> dict[str, object]:
    for x in info.xml.findall(f"{{{NS_DATA}}}x"):
        form = slixmpp.plugins.xep_0004.stanza.Form(xml=x)
        values = {k: first(v) for k, v in form.get_values().items()}
        if values.get("FORM_TYPE") == NS_ROOMINFO:
            return values
    return {}


async def expect_self_exit(c: MucClient, occ: str, code: int | None, m: int, what: str):
    pres = await c.expect(lambda st: is_presence(st, occ, "unavailable") and 110 in codes(st),
                          f"own unavailable presence from {occ} ({what})", m)
    if code is not None and code not in codes(pres):
        raise Failure(f"{c.label}: own unavailable presence from {occ} ({what}) has codes "
                      f"{sorted(codes(pres))}, expected {code}: {describe(pres)}")
    return pres


async def expect_exit(c: MucClient, occ: str, code: int, m: int, what: str):
    pres = await c.expect(lambda st: is_presence(st, occ, "unavailable"),
                          f"unavailable presence from {occ} ({what})", m)
    if code not in codes(pres):
        raise Failure(f"{c.label}: unavailable presence from {occ} ({what}) has codes "
                      f"{sorted(codes(pres))}, expected {code}: {describe(pres)}")
    say(f"{c.label}: {occ} left with {code} ({what}) ok")
    return pres


async def expect_item(c: MucClient, occ: str, m: int, what: str, **attrs):
    """An available presence from `occ` whose item has `attrs`."""
    want = {k: v for k, v in attrs.items()}
    return await c.expect(lambda st: is_presence(st, occ)
                          and all(item(st).get(k) == v for k, v in want.items()),
                          f"a presence from {occ} with {want} ({what})", m)


async def expect_error(c: MucClient, frm: str, condition: str, m: int, what: str):
    st = await c.expect(lambda s: isinstance(s, slixmpp.Message) and s["type"] == "error"
                        and s["from"].full == frm, f"a message error from {frm} ({what})", m)
    if error_condition(st) != condition:
        raise Failure(f"{c.label}: {what}: error {error_condition(st)}, expected {condition}")
    say(f"{c.label}: {what}: refused with {condition} ok")


async def talk(sender: MucClient, room: str, nick: str, text: str, everyone: list) -> str:
    """sender says text; everyone (sender included) gets it from room/nick; the reflection
    keeps the sender's id. Returns the occupant-id it carried."""
    marks = [c.mark() for c in everyone]
    mid = sender.send_groupchat(room, text)
    oid = None
    for c, m in zip(everyone, marks):
        msg = await c.expect(lambda st: is_groupchat(st, f"{room}/{nick}", text),
                             f"{nick}'s message {text!r}", m)
        if c is sender and msg["id"] != mid:
            raise Failure(f"{c.label}: the reflection of its message has id {msg['id']!r}, "
                          f"sent with {mid!r}")
        got = occupant_id(msg)
        if not got:
            raise Failure(f"{c.label}: message from {room}/{nick} without occupant-id")
        if oid is not None and got != oid:
            raise Failure(f"{c.label}: occupant-id {got!r} differs from {oid!r} for the same "
                          f"message")
        oid = got
    say(f"{sender.label}: {text!r} reached {', '.join(c.label for c in everyone)} "
        f"(reflection with id {mid}, occupant-id {oid})")
    return oid


# ---------------------------------------------------------------------- the scenario
async def scenario(args: argparse.Namespace, step: list[str]) -> None:
    loop = asyncio.get_running_loop()
    fatal: asyncio.Future = loop.create_future()
    fatal.add_done_callback(lambda f: f.exception())  # never "exception was never retrieved"
    clients: list[MucClient] = []
    try:
        pw = {}
        for label in ("a", "b", "c", "d", "a2"):
            user = f"{args.prefix}{label[0]}"
            if label != "a2":
                pw[user] = secrets.token_urlsafe(18)
            jid = f"{user}@{args.domain}/muc-{label}"
            c = MucClient(label, jid, pw[user], args, fatal, registered=(label == "a2"))
            clients.append(c)
            step[0] = f"{label}: register + log in"
            say(f"{label}: connecting to {args.host}:{args.port} ({args.mode}) as {jid}")
            c.connect(args.host, args.port)
            await chat.guarded(c.ready, fatal, step, step[0])
            c.send_presence()
            await chat.guarded(chat.barrier(c), fatal, step, f"{label}: IQ after presence")
        a, b, c, d, a2 = clients
        A, B, C, D = (x.boundjid for x in (a, b, c, d))

        async def go(aw, what: str):
            return await chat.guarded(aw, fatal, step, what)

        # --- 1. the service ------------------------------------------------------------------
        step[0] = "service discovery"
        service = MUC_SERVICE
        if not service:
            items = await go(disco_items(a, args.domain), step[0])
            for jid in items:
                info = await go(disco_info(a, jid), step[0])
                if ("conference", "text") in [(i[0], i[1]) for i in info["identities"]]:
                    service = jid
                    break
            if not service:
                raise Failure(f"a: no conference service among the server's disco#items "
                              f"{sorted(items)}")
        info = await go(disco_info(a, service), step[0])
        if NS_MUC not in info["features"]:
            raise Failure(f"a: {service} does not advertise {NS_MUC}: {info['features']}")
        say(f"a: conference service {service} (identity conference/text, feature muc) ok")
        instant = f"{args.prefix}instant@{service}"
        lounge = f"{args.prefix}lounge@{service}"
        vault = f"{args.prefix}vault@{service}"

        # --- 2. an instant room ----------------------------------------------------------------
        step[0] = "instant room"
        await go(create(a, instant, "Alice"), step[0])
        await go(join_refused(b, instant, "Bob", "item-not-found"), "b: entering a locked room")
        empty = a.plugin["xep_0004"].make_form(ftype="submit")
        await go(a.iq(a.muc.set_room_config(JID(instant), empty, timeout=STEP_TIMEOUT),
                      "the empty submit form (instant room)"), step[0])
        say(f"a: {instant} unlocked with an empty submit form (instant room)")
        _, _, occupants, _ = await go(join(b, instant, "Bob"), "b: entering the instant room")
        alice = [p for p in occupants if p["from"].full == f"{instant}/Alice"]
        if not alice or (item(alice[0]).get("affiliation"), item(alice[0]).get("role")) != \
                ("owner", "moderator"):
            raise Failure(f"b: no owner/moderator presence of Alice on entering: "
                          f"{[describe(p) for p in occupants]}")
        m_a, m_b = a.mark(), b.mark()
        b.muc.leave_muc(JID(instant), "Bob")
        await go(expect_self_exit(b, f"{instant}/Bob", None, m_b, "leaving"), step[0])
        await go(a.expect(lambda st: is_presence(st, f"{instant}/Bob", "unavailable"),
                          "Bob leaving", m_a), step[0])
        a.muc.leave_muc(JID(instant), "Alice")
        await go(expect_self_exit(a, f"{instant}/Alice", None, m_a, "leaving"), step[0])
        say("a, b: left the instant room (self presences with 110) ok")

        # --- 3. a reserved room ----------------------------------------------------------------
        step[0] = "reserved room"
        await go(create(a, lounge, "Alice"), step[0])
        await go(configure(a, lounge, {
            "muc#roomconfig_roomname": "Interop lounge",
            "muc#roomconfig_roomdesc": "slixmpp was here",
            "muc#roomconfig_persistentroom": True,
            "muc#roomconfig_publicroom": True,
            "muc#roomconfig_changesubject": False,
            "muc#roomconfig_allowinvites": True,
            "muc#roomconfig_whois": "moderators",
            "muc#roomconfig_membersonly": False,
            "muc#roomconfig_moderatedroom": False,
        }, "name, description, persistent, public, semi-anonymous"), step[0])
        info = await go(disco_info(b, lounge), "b: disco#info of the room")
        feats = set(info["features"])
        want = {NS_MUC, "muc_persistent", "muc_public", "muc_semianonymous", "muc_open",
                "muc_unmoderated", "muc_unsecured", NS_OCCUPANT_ID}
        if want - feats:
            raise Failure(f"b: disco#info of {lounge} lacks {sorted(want - feats)} "
                          f"(has {sorted(feats)})")
        names = [i[3] for i in info["identities"] if (i[0], i[1]) == ("conference", "text")]
        ri = roominfo(info)
        if names != ["Interop lounge"] or ri.get("muc#roominfo_description") != \
                "slixmpp was here":
            raise Failure(f"b: disco#info of {lounge}: identity names {names}, roominfo "
                          f"{ri}: expected the name and description just configured")
        say(f"b: disco#info of {lounge}: {sorted(want)}, name and muc#roominfo description ok")
        listed = await go(disco_items(b, service), "b: disco#items of the service")
        if lounge not in listed:
            raise Failure(f"b: the public room {lounge} is not in {service}'s disco#items "
                          f"{sorted(listed)}")
        say(f"b: {service} lists {lounge} ({listed[lounge]!r}) ok")

        # --- 4. history ----------------------------------------------------------------------
        step[0] = "history"
        oid_a = None
        texts = [f"history {i} ({secrets.token_hex(3)})" for i in (1, 2, 3)]
        for t in texts:
            got = await go(talk(a, lounge, "Alice", t, [a]), step[0])
            if oid_a is not None and got != oid_a:
                raise Failure(f"a: occupant-id changed between messages: {oid_a} then {got}")
            oid_a = got
        m_a = a.mark()
        pres_b, subject, occupants, history = await go(
            join(b, lounge, "Bob", maxstanzas=2), "b: entering with maxstanzas=2")
        if [body(h) for h in history] != texts[1:]:
            raise Failure(f"b: history with maxstanzas=2 is {[body(h) for h in history]}, "
                          f"expected {texts[1:]}")
        for h in history:
            delay = h.xml.find(f"{{{NS_DELAY}}}delay")
            if delay is None or delay.get("from") != lounge or not delay.get("stamp"):
                raise Failure(f"b: history message without a delay from the room: "
                              f"{describe(h)}")
            if h["from"].full != f"{lounge}/Alice" or occupant_id(h) != oid_a:
                raise Failure(f"b: history message from {h['from']} occupant-id "
                              f"{occupant_id(h)}, expected Alice's {oid_a}")
        if subject_of(subject) != "" or subject["from"].bare != lounge:
            raise Failure(f"b: subject on entering is {describe(subject)}, expected empty")
        alice = [p for p in occupants if p["from"].full == f"{lounge}/Alice"]
        if not alice:
            raise Failure(f"b: no presence of Alice on entering {lounge}")
        if "jid" in item(alice[0]):
            raise Failure(f"b: a semi-anonymous room shows a participant Alice's real JID: "
                          f"{describe(alice[0])}")
        if occupant_id(alice[0]) != oid_a:
            raise Failure(f"b: Alice's presence occupant-id {occupant_id(alice[0])} differs "
                          f"from her messages' {oid_a}")
        oid_b = occupant_id(pres_b)
        if not oid_b or oid_b == oid_a:
            raise Failure(f"b: own occupant-id {oid_b!r} missing or equal to Alice's")
        if (item(pres_b).get("affiliation"), item(pres_b).get("role")) != ("none",
                                                                          "participant"):
            raise Failure(f"b: entered as {item(pres_b)}, expected none/participant")
        say("b: history (2 newest, delayed, from Alice with her occupant-id), empty subject, "
            "Alice without real JID, own occupant-id ok")
        p = await go(a.expect(lambda st: is_presence(st, f"{lounge}/Bob"), "Bob entering",
                              m_a), "a: Bob's presence")
        if item(p).get("jid") != B.full or occupant_id(p) != oid_b:
            raise Failure(f"a (moderator): Bob's presence has jid {item(p).get('jid')!r} "
                          f"occupant-id {occupant_id(p)!r}, expected {B.full} and {oid_b}")
        say(f"a: sees Bob enter with his real JID {B.full} ok")
        m_a = a.mark()
        since = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
        _, _, _, history = await go(join(c, lounge, "Carol", since=since),
                                    "c: entering with since")
        if [body(h) for h in history] != texts:
            raise Failure(f"c: history since an hour ago is {[body(h) for h in history]}, "
                          f"expected {texts}")
        p = await go(a.expect(lambda st: is_presence(st, f"{lounge}/Carol"), "Carol entering",
                              m_a), "a: Carol's presence")
        if item(p).get("jid") != C.full:
            raise Failure(f"a: Carol's presence has jid {item(p).get('jid')!r}")
        oid_c = occupant_id(p)
        if oid_c in (None, oid_a, oid_b):
            raise Failure(f"a: Carol's occupant-id {oid_c!r} missing or not unique")
        say("c: history since an hour ago (all 3) ok")

        # --- 5. talking, correction, retraction --------------------------------------------------
        step[0] = "talking"
        text = f"hello room ({secrets.token_hex(3)})"
        marks = [x.mark() for x in (a, c)]
        got = await go(talk(b, lounge, "Bob", text, [b, a, c]), step[0])
        if got != oid_b:
            raise Failure(f"Bob's message has occupant-id {got}, his presence {oid_b}")
        orig = (await a.expect(lambda st: is_groupchat(st, f"{lounge}/Bob", text), "", marks[0]))
        step[0] = "correction (XEP-0308)"
        fixed = text.replace("hello", "hello again")
        marks = [x.mark() for x in (a, b, c)]
        corr = b.plugin["xep_0308"].build_correction(orig["id"], JID(lounge),
                                                     mtype="groupchat", mbody=fixed)
        corr.send()
        for x, m in zip((a, b, c), marks):
            msg = await go(x.expect(lambda st: is_groupchat(st, f"{lounge}/Bob", fixed),
                                    "Bob's correction", m), step[0])
            if msg["replace"]["id"] != orig["id"] or occupant_id(msg) != oid_b:
                raise Failure(f"{x.label}: correction arrived with replace id "
                              f"{msg['replace']['id']!r} occupant-id {occupant_id(msg)!r}, "
                              f"expected {first['id']!r} and {oid_b}")
        say("a, b, c: Bob's correction arrived with its <replace/> and his occupant-id ok")
        step[0] = "retraction (XEP-0424)"
        marks = [x.mark() for x in (a, c)]
        b.plugin["xep_0424"].send_retraction(JID(lounge), orig["id"], mtype="groupchat")
        for x, m in zip((a, c), marks):
            msg = await go(x.expect(lambda st: isinstance(st, slixmpp.Message)
                                    and st["from"].full == f"{lounge}/Bob"
                                    and st.xml.find(f"{{{NS_RETRACT}}}retract") is not None,
                                    "Bob's retraction", m), step[0])
            if msg["retract"]["id"] != orig["id"]:
                raise Failure(f"{x.label}: retraction of id {msg['retract']['id']!r}, "
                              f"expected {first['id']!r}")
        say("a, c: Bob's retraction arrived with its <retract/> ok")

        # --- 6. subject ----------------------------------------------------------------------
        step[0] = "subject"
        topic = f"Interop topic {secrets.token_hex(3)}"
        marks = [x.mark() for x in (a, b, c)]
        a.muc.set_subject(JID(lounge), topic)
        for x, m in zip((a, b, c), marks):
            msg = await go(x.expect(lambda st: isinstance(st, slixmpp.Message)
                                    and st["type"] == "groupchat" and subject_of(st) == topic,
                                    "the new subject", m), step[0])
            if msg["from"].full != f"{lounge}/Alice":
                raise Failure(f"{x.label}: subject from {msg['from']}, expected Alice")
        say(f"a, b, c: subject {topic!r} from {lounge}/Alice ok")
        m = c.mark()
        c.muc.set_subject(JID(lounge), "Carol's topic")
        await go(expect_error(c, lounge, "forbidden", m, "c (participant) setting the subject"),
                 step[0])

        # --- 7. nick change --------------------------------------------------------------------
        step[0] = "nick change"
        marks = [x.mark() for x in (a, b)]
        try:
            new = await go(c.muc.set_self_nick(JID(lounge), "Carla", timeout=STEP_TIMEOUT),
                           step[0])
        except TimeoutError:
            raise Failure("c: set_self_nick got no self presence with 110 and 303")
        if new != "Carla":
            raise Failure(f"c: set_self_nick returned {new!r}, expected 'Carla'")
        for x, m in zip((a, b), marks):
            gone = await go(expect_exit(x, f"{lounge}/Carol", 303, m, "nick change"), step[0])
            if item(gone).get("nick") != "Carla":
                raise Failure(f"{x.label}: 303 presence names nick {item(gone).get('nick')!r}")
            back = await go(x.expect(lambda st: is_presence(st, f"{lounge}/Carla"),
                                     "Carla's presence", m), step[0])
            if occupant_id(back) != oid_c:
                raise Failure(f"{x.label}: Carla's occupant-id {occupant_id(back)} differs "
                              f"from Carol's {oid_c}")
        say("c: now Carla (303 with the new nick, same occupant-id) ok")
        m = b.mark()
        b.make_presence(pto=f"{lounge}/Alice").send()
        err = await go(b.expect(lambda st: isinstance(st, slixmpp.Presence)
                                and st["type"] == "error", "a presence error", m), step[0])
        if error_condition(err) != "conflict":
            raise Failure(f"b: changing nick to a taken one: {error_condition(err)}, "
                          f"expected conflict")
        say("b: nick change to Alice refused with conflict ok")

        # --- 8. private messages ---------------------------------------------------------------
        step[0] = "private messages"
        m = c.mark()
        b.send_message(mto=f"{lounge}/Carla", mbody="psst, Carla", mtype="chat")
        pm = await go(c.expect(lambda st: isinstance(st, slixmpp.Message)
                               and body(st) == "psst, Carla", "Bob's private message", m),
                      step[0])
        if pm["from"].full != f"{lounge}/Bob" or pm["type"] != "chat" or user_x(pm) is None:
            raise Failure(f"c: private message {describe(pm)}: expected type chat from "
                          f"{lounge}/Bob with a muc#user <x/>")
        m = b.mark()
        c.send_message(mto=f"{lounge}/Bob", mbody="hi Bob", mtype="chat")
        pm = await go(b.expect(lambda st: isinstance(st, slixmpp.Message)
                               and body(st) == "hi Bob", "Carla's answer", m), step[0])
        if pm["from"].full != f"{lounge}/Carla":
            raise Failure(f"b: private answer from {pm['from']}, expected {lounge}/Carla")
        say("b <-> c: private messages through the room ok")

        # --- 9. two sessions, one nick -------------------------------------------------------------
        step[0] = "multiple sessions with one nick"
        marks = [x.mark() for x in (a, b, c)]
        pres, _, _, _ = await go(join(a2, lounge, "Alice", maxchars=0),
                                 "a2: entering as Alice")
        if item(pres).get("affiliation") != "owner":
            raise Failure(f"a2: entered as {item(pres)}, expected owner")
        t = f"to both Alices ({secrets.token_hex(3)})"
        await go(talk(b, lounge, "Bob", t, [b, a, a2]), step[0])
        for x, m in zip((a, b, c), marks):
            # An update of Alice's presence is allowed; her leaving (or an error) is not.
            extra = x.seen(lambda st: isinstance(st, slixmpp.Presence)
                           and st["from"].full == f"{lounge}/Alice"
                           and st["type"] in ("unavailable", "error"), m)
            if extra:
                raise Failure(f"{x.label}: Alice's second session entering made her leave: "
                              f"{describe(extra[0])}")
        m2 = a2.mark()
        marks = [x.mark() for x in (a, b, c)]
        a2.muc.leave_muc(JID(lounge), "Alice")
        await go(expect_self_exit(a2, f"{lounge}/Alice", None, m2, "second session leaves"),
                 step[0])
        await go(talk(b, lounge, "Bob", "still here, Alice?", [b, a]), step[0])
        for x, m in zip((a, b, c), marks):
            gone = x.seen(lambda st: is_presence(st, f"{lounge}/Alice", "unavailable"), m)
            if gone:
                raise Failure(f"{x.label}: Alice left when only her second session did: "
                              f"{describe(gone[0])}")
        say("a2: entered and left under a's nick; nobody else saw it; both got messages ok")

        # --- 10. invitations -------------------------------------------------------------------
        step[0] = "mediated invitation"
        m = d.mark()
        a.muc.invite(JID(lounge), D.bare, "come and chat")
        inv = await go(d.expect(lambda st: isinstance(st, slixmpp.Message)
                                and user_x(st) is not None
                                and user_x(st).find(f"{{{NS_USER}}}invite") is not None,
                                "a mediated invitation", m), step[0])
        el = user_x(inv).find(f"{{{NS_USER}}}invite")
        reason = el.findtext(f"{{{NS_USER}}}reason")
        # XEP-0045 7.8.2: the inviter as a bare, full or occupant JID.
        inviter = el.get("from", "")
        if inv["from"].full != lounge or reason != "come and chat" or \
                inviter not in (A.bare, A.full, f"{lounge}/Alice"):
            raise Failure(f"d: invitation {describe(inv)}: expected from {lounge}, invite "
                          f"from {A.bare} (or its full or occupant JID), reason "
                          f"'come and chat'")
        say(f"d: mediated invitation from {el.get('from')} through {lounge} ok")
        m = a.mark()
        d.muc.decline(JID(lounge), A.bare, "not now")
        dec = await go(a.expect(lambda st: isinstance(st, slixmpp.Message)
                                and user_x(st) is not None
                                and user_x(st).find(f"{{{NS_USER}}}decline") is not None,
                                "d's decline", m), step[0])
        el = user_x(dec).find(f"{{{NS_USER}}}decline")
        if dec["from"].full != lounge or JID(el.get("from", "")).bare != D.bare \
                or el.findtext(f"{{{NS_USER}}}reason") != "not now":
            raise Failure(f"a: decline {describe(dec)}: expected from {lounge}, decline from "
                          f"{D.bare}, reason 'not now'")
        say(f"a: decline from {el.get('from')} through {lounge} ok")
        step[0] = "direct invitation (XEP-0249)"
        m = d.mark()
        b.plugin["xep_0249"].send_invitation(D.bare, JID(lounge), reason="direct one")
        inv = await go(d.expect(lambda st: isinstance(st, slixmpp.Message)
                                and st.xml.find("{jabber:x:conference}x") is not None
                                and st["from"].bare == B.bare, "a direct invitation", m),
                       step[0])
        if inv["groupchat_invite"]["jid"] != lounge or \
                inv["groupchat_invite"]["reason"] != "direct one":
            raise Failure(f"d: direct invitation {describe(inv)}")
        say(f"d: direct invitation from {inv['from']} to {lounge} ok")

        # --- 11. d enters ---------------------------------------------------------------------
        step[0] = "d enters"
        await go(join_refused(d, lounge, "Bob", "conflict"), "d: entering as Bob")
        _, subject, _, history = await go(join(d, lounge, "Dave", maxchars=0),
                                          "d: entering as Dave")
        if history:
            raise Failure(f"d: maxchars=0 still brought {len(history)} history message(s)")
        if subject_of(subject) != topic or subject["from"].full != f"{lounge}/Alice":
            raise Failure(f"d: subject on entering {describe(subject)}, expected {topic!r} "
                          f"from Alice")
        say("d: entered as Dave, no history (maxchars=0), the subject from Alice ok")

        # --- 12. voice ------------------------------------------------------------------------
        step[0] = "voice"
        marks = [x.mark() for x in (b, c, d)]
        await go(configure(a, lounge, {"muc#roomconfig_moderatedroom": True}, "moderated"),
                 step[0])
        for x, m in zip((b, c, d), marks):
            await go(x.expect(lambda st: isinstance(st, slixmpp.Message)
                              and st["from"].full == lounge and 104 in codes(st),
                              "a configuration change (104)", m), step[0])
        say("b, c, d: configuration change announced (104) ok")
        marks = [x.mark() for x in (b, d)]
        await go(a.iq(a.muc.set_role(JID(lounge), "Dave", "visitor", timeout=STEP_TIMEOUT),
                      "revoking Dave's voice"), step[0])
        for x, m in zip((b, d), marks):
            await go(expect_item(x, f"{lounge}/Dave", m, "voice revoked", role="visitor"),
                     step[0])
        m = d.mark()
        d.send_groupchat(lounge, "can I talk?")
        await go(expect_error(d, lounge, "forbidden", m, "d (visitor) talking"), step[0])
        m = a.mark()
        d.muc.request_voice(JID(lounge), "participant")
        req = await go(a.expect(lambda st: isinstance(st, slixmpp.Message)
                                and st["from"].full == lounge
                                and st.xml.find(f"{{{NS_DATA}}}x") is not None,
                                "d's voice request", m), step[0])
        values = {k: first(v) for k, v in req["form"].get_values().items()}
        if values.get("FORM_TYPE") != NS_REQUEST or values.get("muc#roomnick") != "Dave" \
                or JID(values.get("muc#jid") or "").bare != D.bare:
            raise Failure(f"a: voice request form {values}")
        say(f"a: voice request from Dave ({values.get('muc#jid')}) ok")
        marks = [x.mark() for x in (b, d)]
        await go(a.iq(a.muc.set_role(JID(lounge), "Dave", "participant",
                                     timeout=STEP_TIMEOUT), "granting Dave voice"), step[0])
        for x, m in zip((b, d), marks):
            await go(expect_item(x, f"{lounge}/Dave", m, "voice granted", role="participant"),
                     step[0])
        await go(talk(d, lounge, "Dave", "thanks for the voice", [d, a, b]), step[0])

        # --- 13. kick -------------------------------------------------------------------------
        step[0] = "kick"
        marks = [x.mark() for x in (b, c, d)]
        await go(a.iq(a.muc.set_role(JID(lounge), "Dave", "none", reason="be nice",
                                     timeout=STEP_TIMEOUT), "kicking Dave"), step[0])
        gone = await go(expect_self_exit(d, f"{lounge}/Dave", 307, marks[2], "kicked"),
                        step[0])
        if item(gone).get("reason") != "be nice":
            raise Failure(f"d: kick without the reason: {describe(gone)}")
        for x, m in zip((b, c), marks):
            await go(expect_exit(x, f"{lounge}/Dave", 307, m, "kicked"), step[0])
        d.muc.rooms[None].pop(JID(lounge), None)
        say("d: kicked (307, 110, reason) ok")
        await go(join(d, lounge, "Dave", maxchars=0), "d: entering again after the kick")

        # --- 14. affiliations -------------------------------------------------------------------
        step[0] = "affiliations"
        marks = [x.mark() for x in (b, c, d)]
        await go(a.iq(a.muc.set_affiliation(JID(lounge), "admin", jid=B.bare,
                                            timeout=STEP_TIMEOUT), "making b admin"), step[0])
        await go(a.iq(a.muc.set_affiliation(JID(lounge), "member", jid=C.bare,
                                            timeout=STEP_TIMEOUT), "making c member"), step[0])
        for x, m in zip((b, c, d), marks):
            await go(expect_item(x, f"{lounge}/Bob", m, "b admin", affiliation="admin",
                                 role="moderator"), step[0])
            await go(expect_item(x, f"{lounge}/Carla", m, "c member", affiliation="member"),
                     step[0])
        for aff, want in (("owner", [A.bare]), ("admin", [B.bare]), ("member", [C.bare])):
            got = await go(a.iq(a.muc.get_affiliation_list(JID(lounge), aff,
                                                           timeout=STEP_TIMEOUT),
                                f"the {aff} list"), step[0])
            if sorted(str(j) for j in got) != want:
                raise Failure(f"a: {aff} list {got}, expected {want}")
        say("a: b admin (moderator), c member; owner/admin/member lists ok")

        # --- 15. members-only ---------------------------------------------------------------------
        step[0] = "members-only"
        marks = [x.mark() for x in (b, d)]
        await go(configure(a, lounge, {"muc#roomconfig_membersonly": True}, "members-only"),
                 step[0])
        await go(expect_self_exit(d, f"{lounge}/Dave", 322, marks[1], "room members-only"),
                 step[0])
        await go(expect_exit(b, f"{lounge}/Dave", 322, marks[0], "room members-only"), step[0])
        d.muc.rooms[None].pop(JID(lounge), None)
        await go(join_refused(d, lounge, "Dave", "registration-required"),
                 "d: entering a members-only room")
        await go(a.iq(a.muc.set_affiliation(JID(lounge), "member", jid=D.bare,
                                            timeout=STEP_TIMEOUT), "making d member"), step[0])
        await go(join(d, lounge, "Dave", maxchars=0), "d: entering as a member")
        marks = [x.mark() for x in (b, c)]
        await go(a.iq(a.muc.set_affiliation(JID(lounge), "none", jid=C.bare,
                                            timeout=STEP_TIMEOUT),
                      "revoking c's membership"), step[0])
        await go(expect_self_exit(c, f"{lounge}/Carla", 321, marks[1], "membership revoked"),
                 step[0])
        await go(expect_exit(b, f"{lounge}/Carla", 321, marks[0], "membership revoked"),
                 step[0])
        c.muc.rooms[None].pop(JID(lounge), None)
        await go(a.iq(a.muc.set_affiliation(JID(lounge), "member", jid=C.bare,
                                            timeout=STEP_TIMEOUT), "making c member again"),
                 step[0])
        await go(join(c, lounge, "Carla", maxchars=0), "c: entering again as a member")
        say("members-only: 322 for d, registration-required, 321 for c ok")

        # --- 16. ban and self-ping ----------------------------------------------------------------
        step[0] = "ban"
        marks = [x.mark() for x in (b, c, d)]
        await go(a.iq(a.muc.set_affiliation(JID(lounge), "outcast", jid=D.bare,
                                            reason="spam", timeout=STEP_TIMEOUT),
                      "banning d"), step[0])
        gone = await go(expect_self_exit(d, f"{lounge}/Dave", 301, marks[2], "banned"),
                        step[0])
        if item(gone).get("reason") != "spam":
            raise Failure(f"d: ban without the reason: {describe(gone)}")
        for x, m in zip((b, c), marks):
            await go(expect_exit(x, f"{lounge}/Dave", 301, m, "banned"), step[0])
        got = await go(a.iq(a.muc.get_affiliation_list(JID(lounge), "outcast",
                                                       timeout=STEP_TIMEOUT),
                            "the outcast list"), step[0])
        if [str(j) for j in got] != [D.bare]:
            raise Failure(f"a: outcast list {got}, expected [{D.bare}]")
        d.muc.rooms[None].pop(JID(lounge), None)
        await go(join_refused(d, lounge, "Dave", "forbidden"), "d: entering when banned")
        say("d: banned (301, reason), outcast list, entry forbidden ok")
        step[0] = "self-ping (XEP-0410)"
        info = await go(disco_info(c, lounge), step[0])
        if NS_SELF_PING not in info["features"]:
            raise Failure(f"c: {lounge} does not advertise {NS_SELF_PING}")
        st = await go(c.plugin["xep_0410"].send_self_ping(JID(f"{lounge}/Carla"),
                                                          timeout=STEP_TIMEOUT), step[0])
        if st != PingStatus.JOINED:
            raise Failure(f"c: self-ping while joined: {st}")
        st = await go(d.plugin["xep_0410"].send_self_ping(JID(f"{lounge}/Dave"),
                                                          timeout=STEP_TIMEOUT), step[0])
        if st != PingStatus.DISCONNECTED:
            raise Failure(f"d: self-ping after the ban: {st}, expected DISCONNECTED")
        say("self-ping: c joined, d (banned) not ok")

        # --- 17. non-anonymous ----------------------------------------------------------------------
        step[0] = "non-anonymous"
        m = c.mark()
        await go(configure(a, lounge, {"muc#roomconfig_whois": "anyone"}, "non-anonymous"),
                 step[0])
        await go(c.expect(lambda st: isinstance(st, slixmpp.Message)
                          and st["from"].full == lounge and 172 in codes(st),
                          "the room now non-anonymous (172)", m), step[0])
        m = c.mark()
        c.muc.leave_muc(JID(lounge), "Carla")
        await go(expect_self_exit(c, f"{lounge}/Carla", None, m, "leaving"), step[0])
        pres, _, occupants, _ = await go(join(c, lounge, "Carla", maxchars=0),
                                         "c: entering the non-anonymous room")
        if 100 not in codes(pres):
            raise Failure(f"c: self presence in a non-anonymous room without 100: "
                          f"{sorted(codes(pres))}")
        alice = [p for p in occupants if p["from"].full == f"{lounge}/Alice"]
        if not alice or JID(item(alice[0]).get("jid", "")).bare != A.bare:
            raise Failure(f"c: Alice's real JID not shown in a non-anonymous room: "
                          f"{[describe(p) for p in alice]}")
        say("c: 172, then 100 and real JIDs on entering ok")

        # --- 18. a password-protected room ----------------------------------------------------------
        step[0] = "password-protected room"
        secret = secrets.token_hex(6)
        await go(create(b, vault, "Bob"), step[0])
        await go(configure(b, vault, {
            "muc#roomconfig_passwordprotectedroom": True,
            "muc#roomconfig_roomsecret": secret,
        }, "password-protected"), step[0])
        info = await go(disco_info(c, vault), step[0])
        if "muc_passwordprotected" not in info["features"]:
            raise Failure(f"c: {vault} does not advertise muc_passwordprotected")
        await go(join_refused(c, vault, "Carla", "not-authorized"), "c: no password")
        await go(join_refused(c, vault, "Carla", "not-authorized", password="wrong"),
                 "c: wrong password")
        await go(join(c, vault, "Carla", password=secret), "c: the password")
        m = d.mark()
        b.muc.invite(JID(vault), D.bare)
        inv = await go(d.expect(lambda st: isinstance(st, slixmpp.Message)
                                and st["from"].full == vault and user_x(st) is not None,
                                "an invitation to the vault", m), step[0])
        if user_x(inv).findtext(f"{{{NS_USER}}}password") != secret:
            raise Failure(f"d: invitation to a password-protected room without the password: "
                          f"{describe(inv)}")
        say("vault: not-authorized without/with a wrong password, entered with it; "
            "invitation carries it ok")

        # --- 19. destroy --------------------------------------------------------------------------
        step[0] = "destroy"
        marks = [x.mark() for x in (a, b, c)]
        await go(a.iq(a.muc.destroy(JID(lounge), "closing time", vault, timeout=STEP_TIMEOUT),
                      "destroying the lounge"), step[0])
        for x, m, nick in zip((a, b, c), marks, ("Alice", "Bob", "Carla")):
            gone = await go(x.expect(lambda st: is_presence(st, f"{lounge}/{nick}",
                                                            "unavailable"),
                                     "the room destroyed", m), step[0])
            ds = user_x(gone).find(f"{{{NS_USER}}}destroy") if user_x(gone) is not None \
                else None
            if ds is None or ds.get("jid") != vault or \
                    ds.findtext(f"{{{NS_USER}}}reason") != "closing time":
                raise Failure(f"{x.label}: destruction presence {describe(gone)}: expected "
                              f"<destroy jid='{vault}'> with the reason")
        await go(b.iq_refused(b.plugin["xep_0030"].get_info(jid=lounge, timeout=STEP_TIMEOUT),
                              f"disco#info of the destroyed {lounge}", "item-not-found",
                              "gone"),
                 step[0])
        listed = await go(disco_items(b, service), step[0])
        if lounge in listed:
            raise Failure(f"b: the destroyed {lounge} is still listed by {service}")
        say("destroyed with reason and alternate venue; gone from disco ok")
        step[0] = "disconnecting"
    except (Failure, asyncio.TimeoutError, TimeoutError, asyncio.CancelledError):
        raise
    except Exception:
        # A slixmpp or script error: where it happened goes to stdout with the steps.
        say(f"unexpected error during step: {step[0]}\n{traceback.format_exc()}")
        raise
    finally:
        for x in clients:
            x.closing = True
        await asyncio.gather(*(chat.close(x) for x in clients))


def main(argv: list[str]) -> int:
    # --muc SERVICE (the conference service's domain; found by disco if not given) is ours,
    # the rest is the command line every interop script takes.
    global MUC_SERVICE
    if "--muc" in argv:
        i = argv.index("--muc")
        MUC_SERVICE = argv[i + 1] if i + 1 < len(argv) else ""
        argv = argv[:i] + argv[i + 2:]
    return chat.run(argv, __doc__, scenario,
                    "OK: multi-user chat (XEP-0045 with 0249, 0308, 0410, 0421, 0424) verified "
                    "with slixmpp", timeout=240.0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
