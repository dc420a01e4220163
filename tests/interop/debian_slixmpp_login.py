#!/usr/bin/python3
"""Login and chat with Debian's python3-slixmpp (the library Debian's poezio uses).

Run it with Debian's own /usr/bin/python3, not a venv: the point is the slixmpp Debian ships
(1.8.3 in Debian 12), whose SASL differs from current slixmpp's: for SCRAM-*-PLUS it always
sends the channel-binding type tls-unique (Python's ssl.get_channel_binding()), whatever the
server advertises in XEP-0440, and on each <failure/> it moves on to the next mechanism.

Steps:
  1. log <prefix>a@D and <prefix>b@D (existing accounts, both with --password) in over
     STARTTLS or direct TLS (XEP-0368), mechanism picked by slixmpp; every <auth/> it sends is
     recorded (mechanism, and for SCRAM the gs2 channel-binding flag: p=TYPE, y or n) with the
     server's answer;
  2. both send initial <presence/>; a sends a chat message to b's bare JID, b answers to a's
     full JID; each must arrive with the exact body and the sender's full JID as 'from'.

Output on stdout: 'slixmpp VERSION', then one line per SASL attempt:
  SASL <label> <MECH> cb=<flag> -> success|failure <condition>
then for each account
  FINAL <label> <MECH> refusals=<n>
and at the end 'OK: login and chat verified'. Passwords are never printed.
Exit code 0 on success; otherwise 1 with one 'FAIL: reason' line on stderr (2 = timeout,
3 = slixmpp missing).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import ssl
import sys

try:
    import slixmpp
    from slixmpp.features.feature_mechanisms.stanza import Auth
except ImportError as exc:  # pragma: no cover - environment problem
    print(f"FAIL: cannot import slixmpp ({exc}); apt-get install python3-slixmpp",
          file=sys.stderr)
    sys.exit(3)


class Failure(Exception):
    pass


def gs2_flag(mech: str, value: bytes) -> str:
    """The channel-binding flag of a SCRAM client-first message ('-' for other mechanisms)."""
    if not mech.startswith("SCRAM-"):
        return "-"
    raw = value if isinstance(value, bytes) else base64.b64decode(value)
    return raw.split(b",", 1)[0].decode("ascii", "replace")


class Client(slixmpp.ClientXMPP):
    def __init__(self, label: str, jid: str, password: str, fatal: asyncio.Future):
        super().__init__(jid, password)
        self.label = label
        self.fatal = fatal
        self.attempts: list[list[str]] = []  # [mech, cb flag, outcome]
        self.ready = asyncio.get_event_loop().create_future()
        self.inbox: asyncio.Queue = asyncio.Queue()
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the test server's certificate is self-signed
        self.ssl_context = ctx
        self.add_filter("out", self._record_auth)
        self.add_event_handler("failed_auth", self._on_failed_auth)
        self.add_event_handler("auth_success", self._on_auth_success)
        self.add_event_handler("failed_all_auth",
                               lambda _e: self.fail("every SASL mechanism was refused"))
        self.add_event_handler("connection_failed", lambda e: self.fail(f"connection: {e}"))
        self.add_event_handler("stream_error", lambda e: self.fail(f"stream error: {e}"))
        self.add_event_handler("session_start", self._on_session_start)
        self.add_event_handler("message", self._on_message)

    def fail(self, why: str) -> None:
        if not self.fatal.done():
            self.fatal.set_exception(Failure(f"{self.label}: {why}"))

    def _record_auth(self, stanza):
        if isinstance(stanza, Auth):
            mech = stanza["mechanism"]
            self.attempts.append([mech, gs2_flag(mech, stanza["value"]), "?"])
        return stanza

    def _report(self, outcome: str) -> None:
        if self.attempts:
            a = self.attempts[-1]
            a[2] = outcome
            print(f"SASL {self.label} {a[0]} cb={a[1]} -> {outcome}", flush=True)

    def _on_failed_auth(self, stanza) -> None:
        self._report(f"failure {stanza['condition']}")

    def _on_auth_success(self, _stanza) -> None:
        self._report("success")

    async def _on_session_start(self, _event) -> None:
        self.send_presence()
        await self.get_roster()
        if not self.ready.done():
            self.ready.set_result(True)

    def _on_message(self, msg) -> None:
        if msg["type"] in ("chat", "normal"):
            self.inbox.put_nowait((str(msg["from"]), msg["body"]))


async def expect(c: Client, sender: str, body: str) -> None:
    frm, got = await asyncio.wait_for(c.inbox.get(), 10)
    if got != body or frm != sender:
        raise Failure(f"{c.label} got {got!r} from {frm}, expected {body!r} from {sender}")


async def run(args) -> None:
    print(f"slixmpp {slixmpp.__version__}", flush=True)
    fatal = asyncio.get_event_loop().create_future()
    clients = [Client(x, f"{args.prefix}{x}@{args.domain}", args.password, fatal)
               for x in ("a", "b")]
    for c in clients:
        c.connect((args.host, args.port), use_ssl=args.mode == "direct-tls",
                  force_starttls=args.mode == "starttls")
    ready = asyncio.gather(*(c.ready for c in clients))
    done, _ = await asyncio.wait([ready, fatal], return_when=asyncio.FIRST_COMPLETED)
    if fatal in done:
        fatal.result()
    a, b = clients
    for c in clients:
        ok = [x for x in c.attempts if x[2] == "success"]
        if len(ok) != 1:
            raise Failure(f"{c.label}: session without exactly one SASL success: {c.attempts}")
        print(f"FINAL {c.label} {ok[0][0]} refusals={len(c.attempts) - 1}", flush=True)
    await asyncio.sleep(0.3)  # presence processed before the messages
    a.send_message(mto=b.boundjid.bare, mbody="hello b from debian slixmpp", mtype="chat")
    await expect(b, str(a.boundjid), "hello b from debian slixmpp")
    b.send_message(mto=str(a.boundjid), mbody="hello a from debian slixmpp", mtype="chat")
    await expect(a, str(b.boundjid), "hello a from debian slixmpp")
    for c in clients:
        c.disconnect()
    print(f"OK: login and chat verified (slixmpp {slixmpp.__version__})", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--domain", default="localhost")
    p.add_argument("--mode", choices=["starttls", "direct-tls"], default="starttls")
    p.add_argument("--prefix", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--timeout", type=float, default=30)
    args = p.parse_args()
    loop = asyncio.get_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(run(args), args.timeout))
    except asyncio.TimeoutError:
        print(f"FAIL: timeout after {args.timeout} s", file=sys.stderr)
        return 2
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
