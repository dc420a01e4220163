#!/usr/bin/env python3
"""Roster and presence-subscription interop check of an XMPP server with slixmpp (RFC 6121).

Steps (see tests/interop/README.md):
  1. register <prefix>a@D and <prefix>b@D in band and log both in (as slixmpp_chat.py does);
     each gets its roster and sends initial presence with a status text of its own;
  2. a subscribes to b; b approves (subscribed) and subscribes back; a approves. slixmpp's
     automatic subscription handling is off: every subscription stanza is sent explicitly;
  3. both rosters must end with the other in subscription 'both' and no pending request, in
     slixmpp's roster state (built from roster pushes) and in an explicit roster get;
  4. each must have received the other's available presence with the other's status text
     (sent by the server on approval, RFC 6121 3.1.5 / 3.4.2), then, after each changes its
     status, the new one (broadcast to subscribers, 4.4.2);
  5. b goes offline (closes its stream); a must receive b's unavailable presence.

Exit code 0 on success; otherwise non-zero with one 'FAIL: reason' line on stderr
(1 = check failed, 2 = timeout, 3 = bad usage / slixmpp missing).
Passwords are never printed (except with --debug, which dumps the raw XML stream).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
from pathlib import Path

# Registration, login, TLS checks and failure plumbing are those of the chat test.
sys.dont_write_bytecode = True  # no __pycache__ left in the source tree
sys.path.insert(0, str(Path(__file__).resolve().parent))
import slixmpp_chat as chat  # noqa: E402  (exits 3 with a FAIL line if slixmpp is missing)
from slixmpp_chat import Failure, guarded, say  # noqa: E402

import slixmpp  # noqa: E402
from slixmpp.exceptions import IqError, IqTimeout  # noqa: E402

STEP_TIMEOUT = 10.0  # seconds for any single expected stanza / state


class RosterClient(chat.Client):
    """A chat.Client that records subscription and presence stanzas, with slixmpp's automatic
    subscription answers switched off."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # No automatic approval/refusal and no automatic subscribe-back: the test does it.
        # (Set before binding: the bound JID's roster node takes these defaults.)
        self.auto_authorize = None
        self.auto_subscribe = False
        self.changed = asyncio.Event()  # set (and replaced) whenever something below changes
        self.sub_in: list = []  # subscription-related presences received, in order
        self.available: dict[str, str] = {}  # full JID -> status of its last available presence
        self.unavailable: set[str] = set()  # full JIDs whose unavailable presence came in
        self.roster_pushes = 0
        for kind in ("subscribe", "subscribed", "unsubscribe", "unsubscribed"):
            self.add_event_handler(f"presence_{kind}", self._on_subscription)
        self.add_event_handler("presence_available", self._on_available)
        self.add_event_handler("presence_unavailable", self._on_unavailable)
        self.add_event_handler("presence_error", self._on_presence_error)
        self.add_event_handler("roster_update", self._on_roster_update)

    def _poke(self) -> None:
        self.changed.set()

    async def wait_for(self, cond, what: str, timeout: float = STEP_TIMEOUT):
        """Waits until cond() returns something true (re-checked after every change)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            v = cond()
            if v:
                return v
            left = deadline - loop.time()
            if left <= 0:
                raise Failure(f"{self.label}: {what} (not within {timeout:g} s)")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except (asyncio.TimeoutError, TimeoutError):
                pass

    # ------------------------------------------------------------------ stanza recording
    def _on_subscription(self, pres) -> None:
        say(f"{self.label}: got <presence type='{pres['type']}'> from {pres['from'].full}")
        self.sub_in.append((pres["type"], pres["from"].bare))
        self._poke()

    def _on_available(self, pres) -> None:
        if pres["from"].bare != self.boundjid.bare:
            say(f"{self.label}: got available presence from {pres['from'].full} "
                f"status {pres['status']!r}")
        self.available[pres["from"].full] = pres["status"]
        self.unavailable.discard(pres["from"].full)
        self._poke()

    def _on_unavailable(self, pres) -> None:
        if pres["from"].bare != self.boundjid.bare:
            say(f"{self.label}: got unavailable presence from {pres['from'].full}")
        self.unavailable.add(pres["from"].full)
        self.available.pop(pres["from"].full, None)
        self._poke()

    def _on_presence_error(self, pres) -> None:
        self.fail(f"presence error from {pres['from']}: {pres['error']['condition']} "
                  f"{pres['error']['text']}".rstrip())

    def _on_roster_update(self, iq) -> None:
        if iq["type"] == "set":
            self.roster_pushes += 1
            items = ", ".join(f"{j}={it['subscription']}"
                              f"{'+ask' if it['ask'] else ''}"
                              for j, it in iq["roster"]["items"].items())
            say(f"{self.label}: roster push: {items}")
        # slixmpp's own handler (registered first) has updated client_roster already.
        self._poke()

    # ------------------------------------------------------------------ helpers
    def got(self, kind: str, peer: RosterClient) -> bool:
        return (kind, peer.boundjid.bare) in self.sub_in

    def roster_state(self, peer: RosterClient) -> str:
        """slixmpp's view of peer's item, as built from roster pushes: subscription, plus
        '+pending_out' for ask='subscribe'; 'absent' if there is no item."""
        roster = self.client_roster
        if peer.boundjid.bare not in roster:
            return "absent"
        item = roster[peer.boundjid.bare]
        return f"{item['subscription']}{' +pending_out' if item['pending_out'] else ''}"

    async def roster_get(self) -> dict[str, tuple[str, str]]:
        """Explicit roster get (no roster version, so the full roster comes back):
        bare JID -> (subscription, ask)."""
        iq = self.Iq()
        iq["type"] = "get"
        iq.enable("roster")
        try:
            resp = await iq.send(timeout=STEP_TIMEOUT)
        except IqError as e:
            raise Failure(f"{self.label}: roster get refused: {chat._iq_error(e.iq)}")
        except IqTimeout:
            raise Failure(f"{self.label}: no answer to a roster get in {STEP_TIMEOUT:g} s")
        return {str(j): (it["subscription"], it["ask"])
                for j, it in resp["roster"]["items"].items()}


def send_sub(c: RosterClient, kind: str, peer: RosterClient) -> None:
    """Sends a subscription stanza as a plain presence. (slixmpp's RosterItem.authorize() would
    also send our presence to the peer directly, hiding whether the server does.)"""
    say(f"{c.label}: sending <presence type='{kind}'> to {peer.boundjid.bare}")
    c.send_presence(pto=peer.boundjid.bare, ptype=kind)
    if kind == "subscribed":
        # Only client-side bookkeeping, which authorize() would have done: the request is
        # answered. The subscription state itself comes from the server's roster pushes.
        c.client_roster[peer.boundjid.bare]["pending_in"] = False


async def check_roster(c: RosterClient, peer: RosterClient, step: list[str], fatal) -> None:
    step[0] = f"{c.label}: waiting for {peer.label} to be 'both' in its roster"
    await guarded(c.wait_for(lambda: c.roster_state(peer) == "both",
                             f"slixmpp roster has {peer.boundjid.bare} as "
                             f"{c.roster_state(peer)!r}, expected 'both' with nothing pending"
                             f" ({c.roster_pushes} roster pushes received)"),
                  fatal, step, step[0])
    items = await guarded(c.roster_get(), fatal, step, f"{c.label}: roster get")
    got = items.get(peer.boundjid.bare)
    if got is None:
        raise Failure(f"{c.label}: roster get result lacks {peer.boundjid.bare} "
                      f"(items: {sorted(items) or 'none'})")
    if got != ("both", ""):
        raise Failure(f"{c.label}: roster get has {peer.boundjid.bare} as subscription="
                      f"{got[0]!r}{' ask=' + repr(got[1]) if got[1] else ''}, expected 'both'")
    say(f"{c.label}: roster: {peer.boundjid.bare} is 'both' (slixmpp state and roster get; "
        f"{len(items)} item(s))")


async def expect_status(c: RosterClient, peer: RosterClient, status: str, why: str,
                        step: list[str], fatal) -> None:
    full = peer.boundjid.full

    def seen():
        return c.available.get(full) == status

    def describe():
        if full in c.available:
            return f"last status from {full} was {c.available[full]!r}, expected {status!r}"
        others = sorted(j for j in c.available if not j.startswith(c.boundjid.bare + "/"))
        return (f"no available presence from {full} ({why})"
                + (f"; had presence from {others}" if others else ""))

    step[0] = f"{c.label}: waiting for {peer.label}'s presence ({why})"
    await guarded(_wait(c, seen, describe), fatal, step, step[0])
    res = c.client_roster[peer.boundjid.bare].resources.get(peer.boundjid.resource)
    if res is None or res.get("status") != status:
        raise Failure(f"{c.label}: slixmpp's roster has no resource {peer.boundjid.resource!r} "
                      f"with status {status!r} for {peer.boundjid.bare} (has {res!r})")
    say(f"{c.label}: has {peer.label}'s available presence from {full} with status "
        f"{status!r} ok ({why})")


async def _wait(c: RosterClient, cond, describe) -> None:
    try:
        await c.wait_for(cond, "")
    except Failure:
        raise Failure(f"{c.label}: {describe()} (not within {STEP_TIMEOUT:g} s)") from None


async def scenario(args: argparse.Namespace, step: list[str]) -> None:
    loop = asyncio.get_running_loop()
    fatal: asyncio.Future = loop.create_future()
    fatal.add_done_callback(lambda f: f.exception())  # never "exception was never retrieved"
    clients: list[RosterClient] = []
    token = secrets.token_hex(3)
    status1 = {"a": f"a is here ({token})", "b": f"b is around ({token})"}
    status2 = {"a": f"a is busy now ({token})", "b": f"b is back ({token})"}
    try:
        for label, resource in (("a", None), ("b", "slixmpp-b")):
            jid = f"{args.prefix}{label}@{args.domain}" + (f"/{resource}" if resource else "")
            c = RosterClient(label, jid, secrets.token_urlsafe(18), args, fatal)
            clients.append(c)
            say(f"{label}: connecting to {args.host}:{args.port} ({args.mode}) as {jid}"
                f"{'' if resource else ' (server-assigned resource)'}")
            c.connect(args.host, args.port)
            await guarded(c.ready, fatal, step, f"{label}: register + log in")
            items = await guarded(c.roster_get(), fatal, step, f"{label}: initial roster get")
            if items:
                raise Failure(f"{label}: new account's roster is not empty: {sorted(items)}")
            say(f"{label}: roster is empty; sending initial presence, status {status1[label]!r}")
            c.send_presence(pstatus=status1[label])
            await guarded(chat.barrier(c), fatal, step, f"{label}: IQ round trip after presence")
        a, b = clients

        # --- subscription handshake ------------------------------------------------------
        send_sub(a, "subscribe", b)
        step[0] = "b: waiting for a's subscription request"
        await guarded(b.wait_for(lambda: b.got("subscribe", a),
                                 f"no <presence type='subscribe'> from {a.boundjid.bare}"),
                      fatal, step, step[0])
        send_sub(b, "subscribed", a)
        send_sub(b, "subscribe", a)
        step[0] = "a: waiting for b's approval and b's own subscription request"
        await guarded(a.wait_for(lambda: a.got("subscribed", b),
                                 f"no <presence type='subscribed'> from {b.boundjid.bare}"),
                      fatal, step, step[0])
        await guarded(a.wait_for(lambda: a.got("subscribe", b),
                                 f"no <presence type='subscribe'> from {b.boundjid.bare}"),
                      fatal, step, step[0])
        send_sub(a, "subscribed", b)
        step[0] = "b: waiting for a's approval"
        await guarded(b.wait_for(lambda: b.got("subscribed", a),
                                 f"no <presence type='subscribed'> from {a.boundjid.bare}"),
                      fatal, step, step[0])

        # --- rosters ---------------------------------------------------------------------
        await check_roster(a, b, step, fatal)
        await check_roster(b, a, step, fatal)

        # --- presence: on approval, then broadcast -----------------------------------------
        await expect_status(a, b, status1["b"], "sent by the server when b approved a",
                            step, fatal)
        await expect_status(b, a, status1["a"], "sent by the server when a approved b",
                            step, fatal)
        for c in (a, b):
            say(f"{c.label}: broadcasting presence with status {status2[c.label]!r}")
            c.send_presence(pstatus=status2[c.label])
        await expect_status(a, b, status2["b"], "broadcast of b's new presence", step, fatal)
        await expect_status(b, a, status2["a"], "broadcast of a's new presence", step, fatal)

        # --- b goes offline ------------------------------------------------------------------
        b_full = b.boundjid.full
        say(f"b: going offline (closing the stream of {b_full})")
        b.closing = True
        await chat.close(b)
        step[0] = "a: waiting for b's unavailable presence"
        await guarded(a.wait_for(lambda: b_full in a.unavailable,
                                 f"no unavailable presence from {b_full} after b closed its "
                                 f"stream (available: {b_full in a.available})"),
                      fatal, step, step[0])
        if a.client_roster[b.boundjid.bare].resources:
            raise Failure(f"a: slixmpp still lists resources of b after its unavailable "
                          f"presence: {sorted(a.client_roster[b.boundjid.bare].resources)}")
        say(f"a: b ({b_full}) is offline ok")
        step[0] = "disconnecting"
    finally:
        await chat.close_all(clients)


def main(argv: list[str]) -> int:
    return chat.run(argv, __doc__, scenario,
                    "OK: subscriptions both ways, rosters, presence on approval and broadcast, "
                    "and unavailable verified")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
