#!/usr/bin/env python3
"""Interop check of an XMPP server with slixmpp (a third-party client library).

Steps (see tests/interop/README.md):
  1. register <prefix>a@D and <prefix>b@D by XEP-0077 in-band registration (random passwords),
     on the TLS-protected stream, before SASL;
  2. log both in over STARTTLS or direct TLS (XEP-0368), SASL mechanism picked by slixmpp;
  3. both send initial <presence/>;
  4. a -> b's full JID and b -> a's bare JID chat messages; each must arrive with the right body
     and a 'from' equal to the sender's full JID.

Exit code 0 on success; otherwise non-zero with one 'FAIL: reason' line on stderr
(1 = check failed, 2 = timeout, 3 = bad usage / slixmpp missing).
Passwords are never printed (except with --debug, which dumps the raw XML stream).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import ssl
import sys
import time
from pathlib import Path

try:
    import slixmpp
    from slixmpp.exceptions import IqError, IqTimeout
    from slixmpp.stanza import StreamFeatures
except ImportError as exc:  # pragma: no cover - environment problem
    print(f"FAIL: cannot import slixmpp ({exc}); pip install -r tests/interop/requirements.txt",
          file=sys.stderr)
    sys.exit(3)

T0 = time.monotonic()
IQ_TIMEOUT = 10


def say(msg: str) -> None:
    print(f"[{time.monotonic() - T0:6.2f}s] {msg}", flush=True)


class Failure(Exception):
    """A check failed; the message is the one-line reason."""


class Client(slixmpp.ClientXMPP):
    """One test account: registers itself, logs in, collects incoming chat messages."""

    def __init__(self, label: str, jid: str, password: str, args: argparse.Namespace,
                 fatal: asyncio.Future):
        super().__init__(jid, password)
        self.label = label
        self.args = args
        self.fatal = fatal
        self.closing = False
        self.registered = False
        self.register_advertised: bool | None = None
        self.sasl_mech: str | None = None
        self.ready: asyncio.Future = self.loop.create_future()
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.own_presence = asyncio.Event()

        # --- transport: exactly one way in -------------------------------------------------
        # With an explicit (host, port), slixmpp 1.17's connect loop tries, on that same port,
        # direct TLS first (if enable_direct_tls), then STARTTLS (if enable_starttls), then
        # plaintext (if enable_plaintext). Enable only the mode under test so a failure of it
        # is not masked by a fallback.
        self.enable_plaintext = False
        if args.mode == "starttls":
            self.enable_direct_tls = False
            self.enable_starttls = True
        else:  # direct-tls (XEP-0368): TLS handshake from the first byte, no STARTTLS afterwards
            self.enable_direct_tls = True
            self.enable_starttls = False

        # --- TLS certificate verification ---------------------------------------------------
        # slixmpp uses self.ssl_context for both the direct-TLS connect and STARTTLS;
        # get_ssl_context() loads self.ca_certs into it (and forces CERT_REQUIRED) if set.
        if args.cafile:
            self.ca_certs = Path(args.cafile)  # keeps check_hostname=True against the domain
        else:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            self.ssl_context = ctx
        if args.alpn:
            self.ssl_context.set_alpn_protocols([args.alpn])

        # --- plugins --------------------------------------------------------------------------
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0004")
        self.register_plugin("xep_0066")
        self.register_plugin("xep_0077", {"force_registration": False})
        self.register_plugin("xep_0199", {"keepalive": False})  # only for the <ping/> stanza
        # Replace xep_0077's own stream-feature handler by ours (same feature, same order):
        # ours reports errors instead of stalling, and its form/iq handling is explicit.
        # (xep_0077's force_registration does not work over STARTTLS in slixmpp 1.17: it checks
        # for ssl.SSLSocket while asyncio gives an ssl.SSLObject, so we force it ourselves.)
        order = self.plugin["xep_0077"].order
        self.unregister_feature("register", order)
        self.register_feature("register", self._register_feature, restart=False, order=order)
        self.add_filter("in", self._features_filter)

        # --- events ---------------------------------------------------------------------------
        self.add_event_handler("session_start", self._on_session_start)
        self.add_event_handler("auth_success", self._on_auth_success)
        self.add_event_handler("failed_auth", self._on_failed_auth)
        self.add_event_handler("failed_all_auth",
                               lambda _e: self.fail("no acceptable SASL mechanism / all failed"))
        self.add_event_handler("connection_failed",
                               lambda e: self.fail(f"connection failed: {e}"))
        self.add_event_handler("ssl_invalid_chain",
                               lambda e: self.fail(f"TLS certificate not trusted: {e}"))
        self.add_event_handler("stream_error", self._on_stream_error)
        self.add_event_handler("disconnected", self._on_disconnected)
        self.add_event_handler("message", self._on_message)
        self.add_event_handler("message_error", self._on_message_error)
        self.add_event_handler("presence_available", self._on_presence)

    # ------------------------------------------------------------------ failure plumbing
    def fail(self, reason: str) -> None:
        if not self.fatal.done():
            self.fatal.set_exception(Failure(f"{self.label}: {reason}"))

    def exception(self, exception: Exception) -> None:  # slixmpp hook for handler errors
        self.fail(f"unhandled error in slixmpp handler: {exception!r}")

    def tls_object(self) -> ssl.SSLObject | None:
        if self.transport is None:
            return None
        return self.transport.get_extra_info("ssl_object")

    # ------------------------------------------------------------------ registration
    def _features_filter(self, stanza):
        """Note whether the server advertises XEP-0077's stream feature; force it if not."""
        if isinstance(stanza, StreamFeatures) and "mechanisms" not in self.features \
                and self.tls_object() is not None:
            advertised = "register" in stanza["features"]
            if self.register_advertised is None:
                self.register_advertised = advertised
            if not advertised:
                stanza.enable("register")
        return stanza

    async def _register_feature(self, _features) -> bool:
        if "mechanisms" in self.features or self.registered:
            return False
        if self.tls_object() is None:  # never send credentials in the clear
            self.fail("server offered in-band registration before TLS")
            return False
        say(f"{self.label}: TLS up ({self.tls_object().version()}); register stream feature "
            f"{'advertised' if self.register_advertised else 'NOT advertised (forced)'}; "
            f"asking for the registration form")
        try:
            form = await self.plugin["xep_0077"].get_registration(timeout=IQ_TIMEOUT)
        except IqError as e:
            self.fail(f"registration form request refused: {_iq_error(e.iq)}")
            return False
        except IqTimeout:
            self.fail(f"no answer to the registration form request in {IQ_TIMEOUT} s")
            return False
        reg = form["register"]
        fields = sorted(reg["fields"])
        say(f"{self.label}: registration form fields: {fields or '(none)'}"
            f"{' [already registered]' if reg['registered'] else ''}")
        missing = {"username", "password"} - set(fields)
        if missing:
            self.fail(f"registration form lacks {sorted(missing)} (fields {fields})")
            return False
        resp = self.Iq()
        resp["type"] = "set"
        resp["register"]["username"] = self.boundjid.user
        resp["register"]["password"] = self.password
        say(f"{self.label}: registering {self.boundjid.bare}")
        try:
            await resp.send(timeout=IQ_TIMEOUT)
        except IqError as e:
            self.fail(f"registration of {self.boundjid.bare} refused: {_iq_error(e.iq)}"
                      + (" (account exists: use a new --prefix)"
                         if e.iq["error"]["condition"] == "conflict" else ""))
            return False
        except IqTimeout:
            self.fail(f"no answer to the registration request in {IQ_TIMEOUT} s")
            return False
        self.registered = True
        say(f"{self.label}: registered {self.boundjid.bare}; now SASL on the same stream")
        return False  # continue with the next features (SASL) without a stream restart

    # ------------------------------------------------------------------ login
    def _on_auth_success(self, _stanza) -> None:
        mech = self.plugin["feature_mechanisms"].mech
        self.sasl_mech = mech.name if mech is not None else "?"
        say(f"{self.label}: SASL {self.sasl_mech} succeeded")

    def _on_failed_auth(self, stanza) -> None:
        mech = self.plugin["feature_mechanisms"].mech
        self.fail(f"SASL {mech.name if mech else '?'} failed: "
                  f"{stanza['condition']} {stanza['text']}".rstrip())

    def _on_session_start(self, _event) -> None:
        tls = self.tls_object()
        if tls is None:
            self.fail("session established without TLS")
            return
        if not self.registered:
            self.fail("logged in without having registered (registration step never ran)")
            return
        if self.args.mode == "direct-tls" and "starttls" in self.features:
            self.fail("direct-tls mode but STARTTLS was negotiated")
            return
        alpn = tls.selected_alpn_protocol()
        say(f"{self.label}: session started as {self.boundjid.full} "
            f"({tls.version()}, {tls.cipher()[0]}"
            f"{', ALPN ' + alpn if alpn else ''}, SASL {self.sasl_mech})")
        if not self.ready.done():
            self.ready.set_result(True)

    # ------------------------------------------------------------------ stream trouble
    def _on_stream_error(self, err) -> None:
        self.fail(f"stream error: {err['condition']} {err['text']}".rstrip())

    def _on_disconnected(self, reason) -> None:
        if not self.closing:
            self.fail(f"disconnected unexpectedly ({reason or 'no reason given'})")

    # ------------------------------------------------------------------ stanzas
    def _on_message(self, msg) -> None:
        if msg["body"]:
            self.inbox.put_nowait(msg)

    def _on_message_error(self, msg) -> None:
        self.fail(f"message error from {msg['from']}: {msg['error']['condition']} "
                  f"{msg['error']['text']}".rstrip())

    def _on_presence(self, pres) -> None:
        if pres["from"] == self.boundjid:
            self.own_presence.set()


def _iq_error(iq) -> str:
    err = iq["error"]
    return f"{err['type']}/{err['condition']} {err['text']}".strip()


async def guarded(aw, fatal: asyncio.Future, step: list[str], what: str):
    """Await `aw` unless a fatal failure is reported first."""
    step[0] = what
    task = asyncio.ensure_future(aw)
    done, _ = await asyncio.wait({task, fatal}, return_when=asyncio.FIRST_COMPLETED)
    if fatal in done:
        task.cancel()
        fatal.result()  # raises Failure
    return task.result()


async def barrier(c: Client) -> None:
    """One IQ round trip to the server (XEP-0199 ping; an error reply is as good): the server
    answers stanzas of one stream in order, so the presence sent before has been processed."""
    iq = c.Iq()
    iq["type"] = "get"
    iq["to"] = c.boundjid.domain
    iq.enable("ping")
    try:
        await iq.send(timeout=IQ_TIMEOUT)
    except IqError:
        pass
    except IqTimeout:
        raise Failure(f"{c.label}: no answer to an IQ ping of the server in {IQ_TIMEOUT} s")


async def expect_message(receiver: Client, sender: Client, body: str) -> None:
    while True:
        msg = await receiver.inbox.get()
        if msg["from"].user:
            break
        # e.g. a welcome message / MOTD from the server itself: not what we are testing
        say(f"{receiver.label}: ignoring message from the server {msg['from'].full!r}")
    if msg["body"] != body:
        raise Failure(f"{receiver.label} got body {msg['body']!r}, expected {body!r}")
    if msg["from"].full != sender.boundjid.full:
        raise Failure(f"{receiver.label} got from={msg['from'].full!r}, expected the sender's "
                      f"full JID {sender.boundjid.full!r}")
    if msg["type"] != "chat":
        raise Failure(f"{receiver.label} got type={msg['type']!r}, expected 'chat'")
    say(f"{receiver.label}: received from {msg['from'].full} to {msg['to'].full}: {body!r} ok")


async def scenario(args: argparse.Namespace, step: list[str]) -> None:
    loop = asyncio.get_running_loop()
    fatal: asyncio.Future = loop.create_future()
    fatal.add_done_callback(lambda f: f.exception())  # never "exception was never retrieved"
    clients = []
    try:
        for label, resource in (("a", None), ("b", "slixmpp-b")):
            jid = f"{args.prefix}{label}@{args.domain}" + (f"/{resource}" if resource else "")
            c = Client(label, jid, secrets.token_urlsafe(18), args, fatal)
            clients.append(c)
            say(f"{label}: connecting to {args.host}:{args.port} ({args.mode}) as {jid}"
                f"{'' if resource else ' (server-assigned resource)'}")
            c.connect(args.host, args.port)
            await guarded(c.ready, fatal, step, f"{label}: register + log in")
            c.send_presence()
            say(f"{label}: sent <presence/>")
            await guarded(barrier(c), fatal, step, f"{label}: IQ round trip after presence")
            say(f"{label}: server answered an IQ after the presence (own presence reflected: "
                f"{'yes' if c.own_presence.is_set() else 'not yet'})")
        a, b = clients
        token = secrets.token_hex(4)

        body1 = f"hello b, full JID ({token})"
        say(f"a: sending chat to b's full JID {b.boundjid.full}")
        a.send_message(mto=b.boundjid.full, mbody=body1, mtype="chat")
        await guarded(expect_message(b, a, body1), fatal, step, "b: waiting for a's message")

        body2 = f"hello a, bare JID ({token})"
        say(f"b: sending chat to a's bare JID {a.boundjid.bare}")
        b.send_message(mto=a.boundjid.bare, mbody=body2, mtype="chat")
        await guarded(expect_message(a, b, body2), fatal, step, "a: waiting for b's message")
        step[0] = "disconnecting"
    finally:
        await close_all(clients)


async def close(c: Client) -> None:
    """Close a client's stream politely, or drop its connection."""
    if c.transport is None:
        return
    try:
        await asyncio.wait_for(c.disconnect(wait=1.0), 2.0)
    except Exception:
        c.abort()


async def close_all(clients: list[Client]) -> None:
    """Close every client (the end of a scenario, also after a failure)."""
    for c in clients:
        c.closing = True
    await asyncio.gather(*(close(c) for c in clients))


def parse_args(argv: list[str], doc: str, timeout: float) -> argparse.Namespace:
    """The command line every interop script takes (see README.md)."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--domain", required=True, help="XMPP domain served (the JIDs' domain)")
    p.add_argument("--mode", choices=("starttls", "direct-tls"), default="starttls")
    p.add_argument("--prefix", required=True,
                   help="accounts <prefix>a and <prefix>b are registered: must be new")
    p.add_argument("--cafile", help="PEM CA bundle to verify the server certificate "
                                    "(default: no verification, accepts self-signed)")
    p.add_argument("--alpn", default=None,
                   help="offer this ALPN protocol in TLS, e.g. xmpp-client (slixmpp sends none)")
    p.add_argument("--timeout", type=float, default=timeout, help="overall limit in seconds")
    p.add_argument("--debug", action="store_true",
                   help="slixmpp debug log incl. raw XML (shows passwords!)")
    return p.parse_args(argv)


def run(argv: list[str], doc: str, scenario, ok: str, timeout: float = 30.0) -> int:
    """Parse the command line, run `scenario(args, step)` within the time limit, and turn the
    outcome into the exit code and the one FAIL line the Rust tests read."""
    args = parse_args(argv, doc, timeout)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.ERROR,
                        format="    slixmpp %(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    say(f"slixmpp {slixmpp.__version__}, Python {sys.version.split()[0]}; target {args.host}:"
        f"{args.port} domain {args.domain} mode {args.mode}"
        f"{', CA ' + args.cafile if args.cafile else ', certificate not verified'}")
    step = ["start"]

    async def go() -> None:
        await asyncio.wait_for(scenario(args, step), args.timeout)

    try:
        asyncio.run(go())
    except Failure as f:
        print(f"FAIL: {f}", file=sys.stderr, flush=True)
        return 1
    except (asyncio.TimeoutError, TimeoutError):
        print(f"FAIL: timed out after {args.timeout:g} s during step: {step[0]}",
              file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print("FAIL: interrupted", file=sys.stderr, flush=True)
        return 130
    except Exception as exc:  # anything unexpected is a failure too, on one line
        print(f"FAIL: unexpected {type(exc).__name__}: {exc}".replace("\n", " "),
              file=sys.stderr, flush=True)
        return 1
    say(ok)
    return 0


def main(argv: list[str]) -> int:
    return run(argv, __doc__, scenario,
               "OK: registration, login, presence and both chat messages verified")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
