#!/usr/bin/env python3
"""Stream resumption interop check of an XMPP server with slixmpp (XEP-0198).

Steps (see tests/interop/README.md):
  1. register <prefix>a@D and <prefix>b@D in band and log both in (as slixmpp_chat.py does);
     a has slixmpp's xep_0198 plugin, resumption allowed: the server must answer <enable/>
     with <enabled resume='true'/> and an id. Both send initial presence;
  2. b sends a numbered chat messages, alternately to a's full and bare JID, and a receives
     them; a acknowledges the first ones explicitly (<a h/>), the next ones stay unacknowledged
     (counted in a's h but not acknowledged to the server);
  3. a sends b a message; once b has it, a's TCP connection is cut without </stream:stream>:
     the first time with transport.abort() (FIN), the second time with SO_LINGER 0 (RST);
  4. meanwhile b sends a more messages (and an IQ round trip, so they have been routed); a also
     queues a message for b while disconnected;
  5. a reconnects on a new TCP connection, authenticates and resumes: 'session_resumed' must
     fire with the previous id, 'session_start' must not fire again, no <failed/>;
  6. b sends one more message after the resumption (anything the server sends again comes
     before it); steps 3-6 are done twice;
  7. a must have received every message exactly once, in the order b sent them, and b every
     message of a exactly once (so the h the server reported in <resumed/> was right: slixmpp
     sends again what the server had not handled). a acknowledges everything (<a h/>) before
     closing its stream, as XEP-0198 recommends.

Exit code 0 on success; otherwise non-zero with one 'FAIL: reason' line on stderr
(1 = check failed, 2 = timeout, 3 = bad usage / slixmpp missing).
Passwords are never printed (except with --debug, which dumps the raw XML stream).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import socket
import struct
import sys
from collections import Counter
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ left in the source tree
sys.path.insert(0, str(Path(__file__).resolve().parent))
import slixmpp_chat as chat  # noqa: E402  (exits 3 with a FAIL line if slixmpp is missing)
from slixmpp_chat import Failure, guarded, say  # noqa: E402

import slixmpp  # noqa: E402

STEP_TIMEOUT = 10.0  # seconds for any single expected stanza / state


class SmClient(chat.Client):
    """A chat.Client that records messages in order and, with `sm`, uses XEP-0198 with
    resumption, and may lose its connection on purpose."""

    def __init__(self, *args, sm: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.changed = asyncio.Event()
        self.bodies: list[str] = []  # bodies of chat messages from users, in arrival order
        self.session_starts = 0
        self.resumed: list = []  # <resumed/> elements, in order
        self.enabled = None  # the <enabled/> element
        self.cutting = False  # a disconnection is expected now
        self.disconnects = 0
        if sm:
            self.register_plugin("xep_0198", {"allow_resume": True})
            self.add_event_handler("sm_enabled", self._on_sm_enabled)
            self.add_event_handler("session_resumed", self._on_resumed)
            self.add_event_handler("sm_failed", self._on_sm_failed)
        self.add_event_handler("session_start", self._count_session_start)

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

    # ------------------------------------------------------------------ events
    def _count_session_start(self, _event) -> None:
        self.session_starts += 1
        if self.session_starts > 1:
            self.fail("session_start fired again: a new session was started instead of the "
                      "old one resumed")
        self._poke()

    def _on_sm_enabled(self, enabled) -> None:
        say(f"{self.label}: stream management enabled: id {enabled['id']!r} resume "
            f"{enabled['resume']} max {enabled['max']!r}")
        self.enabled = enabled
        self._poke()

    def _on_resumed(self, resumed) -> None:
        say(f"{self.label}: session resumed: previd {resumed['previd']!r}, server handled "
            f"h={resumed['h']}")
        self.resumed.append(resumed)
        self._poke()

    def _on_sm_failed(self, failed) -> None:
        self.fail(f"stream management <failed/>: {failed}")

    def _on_disconnected(self, reason) -> None:
        self.disconnects += 1
        self._poke()
        if not self.closing and not self.cutting:
            self.fail(f"disconnected unexpectedly ({reason or 'no reason given'})")

    def _on_message(self, msg) -> None:
        super()._on_message(msg)
        if msg["body"] and msg["from"].user:
            if msg["type"] != "chat":
                self.fail(f"message {msg['body']!r} arrived with type {msg['type']!r}")
            self.bodies.append(msg["body"])
            self._poke()

    # ------------------------------------------------------------------ helpers
    def has_all(self, bodies: list[str]):
        return all(b in self.bodies for b in bodies)

    def cut(self, how: str) -> None:
        """Lose the TCP connection without closing the stream (or TLS)."""
        self.cutting = True
        if how == "rst":
            sock = self.transport.get_extra_info("socket")
            # A reset, as when a NAT or the network drops the connection.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()


async def receive(c: SmClient, bodies: list[str], why: str, step: list[str], fatal) -> None:
    step[0] = f"{c.label}: waiting for {len(bodies)} message(s) ({why})"
    await guarded(c.wait_for(lambda: c.has_all(bodies),
                             f"missing {[b for b in bodies if b not in c.bodies]} ({why}); "
                             f"received so far: {c.bodies}"), fatal, step, step[0])
    say(f"{c.label}: received {len(bodies)} message(s) ({why})")


async def login(args: argparse.Namespace, fatal, step: list[str], clients: list,
                label: str, resource: str, sm: bool) -> SmClient:
    """Register and log in <prefix><label>@D/<resource> (with XEP-0198 resumption if `sm`),
    send initial presence and wait for an IQ round trip after it."""
    jid = f"{args.prefix}{label}@{args.domain}/{resource}"
    c = SmClient(label, jid, secrets.token_urlsafe(18), args, fatal, sm=sm)
    clients.append(c)
    say(f"{label}: connecting to {args.host}:{args.port} ({args.mode}) as {jid}")
    c.connect(args.host, args.port)
    await guarded(c.ready, fatal, step, f"{label}: register + log in")
    c.send_presence()
    await guarded(chat.barrier(c), fatal, step, f"{label}: IQ round trip after presence")
    return c


async def scenario(args: argparse.Namespace, step: list[str]) -> None:
    loop = asyncio.get_running_loop()
    fatal: asyncio.Future = loop.create_future()
    fatal.add_done_callback(lambda f: f.exception())  # never "exception was never retrieved"
    clients: list[SmClient] = []
    token = secrets.token_hex(3)
    try:
        for label, resource in (("a", "resumable"), ("b", "sender")):
            await login(args, fatal, step, clients, label, resource, sm=(label == "a"))
        a, b = clients
        step[0] = "a: waiting for <enabled/>"
        await guarded(a.wait_for(lambda: a.enabled is not None, "no <enabled/>"),
                      fatal, step, step[0])
        sm_id = a.enabled["id"]
        if not sm_id or not a.enabled["resume"]:
            raise Failure(f"a: <enabled/> without resumption (id {sm_id!r}, resume "
                          f"{a.enabled['resume']}) although <enable resume='true'/> was sent")

        sent_to_a: list[str] = []
        sent_to_b: list[str] = []
        n = [0]

        def b_sends(count: int) -> list[str]:
            batch = []
            for _ in range(count):
                n[0] += 1
                body = f"b->a #{n[0]} ({token})"
                to = a.boundjid.full if n[0] % 2 else a.boundjid.bare
                b.send_message(mto=to, mbody=body, mtype="chat")
                batch.append(body)
            sent_to_a.extend(batch)
            return batch

        def a_sends(what: str) -> str:
            body = f"a->b {what} ({token})"
            a.send_message(mto=b.boundjid.full, mbody=body, mtype="chat")
            sent_to_b.append(body)
            return body

        # --- messages before any cut: some acknowledged, some not ---------------------------
        await receive(a, b_sends(3), "first batch", step, fatal)
        a.plugin["xep_0198"].send_ack()
        await guarded(chat.barrier(a), fatal, step, "a: IQ round trip after its <a/>")
        say(f"a: acknowledged h={a.plugin['xep_0198'].handled}")
        await receive(a, b_sends(3), "second batch, not acknowledged by a", step, fatal)

        for round_no, how in ((1, "fin"), (2, "rst")):
            # --- a's message, handled by the server, maybe not acknowledged to a -------------
            body = a_sends(f"before cut {round_no}")
            await receive(b, [body], f"a's message before cut {round_no}", step, fatal)

            # --- the cut ----------------------------------------------------------------------
            say(f"a: cutting the TCP connection ({'abort, FIN' if how == 'fin' else 'RST'}), "
                f"no </stream:stream>; a's h={a.plugin['xep_0198'].handled}, "
                f"unacked outgoing={len(a.plugin['xep_0198'].unacked_queue)}")
            before = a.disconnects
            a.cut(how)
            step[0] = f"a: waiting for the disconnection (cut {round_no})"
            await guarded(a.wait_for(lambda: a.disconnects > before, "no 'disconnected' event"),
                          fatal, step, step[0])
            if a.transport is not None:
                raise Failure("a: still has a transport after the cut")

            # --- meanwhile ----------------------------------------------------------------------
            missed = b_sends(5)
            await guarded(chat.barrier(b), fatal, step, "b: IQ round trip after sending")
            say(f"b: sent {len(missed)} messages while a is disconnected")
            queued = a_sends(f"while cut {round_no}")  # slixmpp keeps it until resumed

            # --- resumption ---------------------------------------------------------------------
            resumed_before = len(a.resumed)
            say(f"a: reconnecting to resume {sm_id!r}")
            a.connect(args.host, args.port)
            step[0] = f"a: waiting for <resumed/> (cut {round_no})"
            await guarded(a.wait_for(lambda: len(a.resumed) > resumed_before,
                                     "no <resumed/> ('session_resumed' did not fire)"),
                          fatal, step, step[0])
            a.cutting = False
            got = a.resumed[-1]
            if got["previd"] != sm_id:
                raise Failure(f"a: <resumed previd={got['previd']!r}>, expected {sm_id!r}")
            if a.session_starts != 1:
                raise Failure(f"a: session_start fired {a.session_starts} times")
            await receive(a, missed, f"sent while a was disconnected (cut {round_no})",
                          step, fatal)
            await receive(b, [queued], f"a's message queued while cut {round_no}", step, fatal)

            # --- live again ---------------------------------------------------------------------
            await receive(a, b_sends(1), f"after resumption {round_no}", step, fatal)
            await receive(b, [a_sends(f"after resumption {round_no}")],
                          f"a's message after resumption {round_no}", step, fatal)

        # --- exactly once, in order -------------------------------------------------------------
        for c, expected in ((a, sent_to_a), (b, sent_to_b)):
            dups = sorted(body for body, k in Counter(c.bodies).items() if k > 1)
            if dups:
                raise Failure(f"{c.label}: received more than once: {dups} (all: {c.bodies})")
            if c.bodies != expected:
                raise Failure(f"{c.label}: received {c.bodies}, expected exactly {expected}")
            say(f"{c.label}: all {len(expected)} messages received exactly once, in order")
        if a.session_starts != 1:
            raise Failure(f"a: session_start fired {a.session_starts} times")
        say(f"a: resumed {len(a.resumed)} times, one session_start in all")
        # As XEP-0198 recommends before a graceful close (slixmpp does not do it by itself):
        # acknowledge everything, or the server would route unacknowledged messages again.
        a.plugin["xep_0198"].send_ack()
        await guarded(chat.barrier(a), fatal, step, "a: IQ round trip after its last <a/>")
        step[0] = "disconnecting"
    finally:
        await chat.close_all(clients)


def main(argv: list[str]) -> int:
    return chat.run(argv, __doc__, scenario,
                    "OK: two cuts resumed (session_resumed, no new session), every message exactly once "
                    "in order both ways", timeout=60.0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
