#!/usr/bin/env python3
"""File transfer through an XMPP server's SOCKS5 bytestreams proxy (XEP-0065) with slixmpp.

Two accounts <prefix>a (sender, the initiator) and <prefix>b (receiver, the target), registered
in band as slixmpp_chat.py does, both with slixmpp's xep_0065 plugin. Steps, each asserted:
  1. discovery: a's xep_0065 discover_proxies() finds exactly one proxy through the server's
     disco#items (identity proxy/bytestreams) and its streamhost (printed as 'found at
     HOST:PORT', for the caller to check);
  2. negotiation: a's handshake() offers the proxy as the only streamhost to b's full JID;
     b (auto_accept) connects to the proxy with SHA-1(sid + a + b) and answers
     streamhost-used; a connects and activates the stream at the proxy;
  3. transfer: a writes 300 KiB of random data and closes; b receives them through the
     proxy until the connection closes, and their SHA-256 equals the sender's.

The server's certificate is self-signed: TLS verification is off. Exit code 0 on success;
otherwise non-zero with one 'FAIL: reason' line on stderr (1 = check failed, 2 = timeout,
3 = bad usage / slixmpp missing).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import sys
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ left in the source tree
sys.path.insert(0, str(Path(__file__).resolve().parent))
import slixmpp_chat as chat  # noqa: E402  (exits 3 with a FAIL line if slixmpp is missing)
from slixmpp_chat import Failure, say  # noqa: E402

SIZE = 300 * 1024
STEP_TIMEOUT = 20.0


class ProxyClient(chat.Client):
    """A test account with xep_0065; as receiver it accepts every offer and collects the
    bytes that arrive until the bytestream closes."""

    def __init__(self, label, jid, password, args, fatal):
        super().__init__(label, jid, password, args, fatal)
        self.register_plugin("xep_0065", {"auto_accept": True})
        self.received = bytearray()
        self.stream_closed: asyncio.Future = self.loop.create_future()
        self.add_event_handler("socks5_data", self.received.extend)
        self.add_event_handler("socks5_closed", self._on_closed)

    def check_received(self, sent: bytes) -> None:
        """What arrived must be what was sent: same SHA-256."""
        want = hashlib.sha256(sent).hexdigest()
        got = hashlib.sha256(bytes(self.received)).hexdigest()
        if got != want:
            raise Failure(f"{self.label}: received {len(self.received)} bytes with SHA-256 "
                          f"{got}, sent {len(sent)} with {want}")
        say(f"{self.label}: received {len(self.received)} bytes, SHA-256 {got} ok")

    def _on_closed(self, _exc) -> None:
        if not self.stream_closed.done():
            self.stream_closed.set_result(None)


async def scenario(args, step: list[str]) -> None:
    loop = asyncio.get_running_loop()
    fatal: asyncio.Future = loop.create_future()
    fatal.add_done_callback(lambda f: f.exception())
    clients = []

    async def go(aw, what: str):
        return await chat.guarded(asyncio.wait_for(aw, STEP_TIMEOUT), fatal, step, what)

    try:
        for label, resource in (("a", "sender"), ("b", "receiver")):
            jid = f"{args.prefix}{label}@{args.domain}/{resource}"
            c = ProxyClient(label, jid, secrets.token_urlsafe(18), args, fatal)
            clients.append(c)
            say(f"{label}: connecting to {args.host}:{args.port} ({args.mode}) as {jid}")
            c.connect(args.host, args.port)
            await chat.guarded(c.ready, fatal, step, f"{label}: register + log in")
            c.send_presence()
            await go(chat.barrier(c), f"{label}: IQ round trip")
        a, b = clients
        s5 = a.plugin["xep_0065"]

        proxies = await go(s5.discover_proxies(), "1: discover_proxies")
        if len(proxies) != 1:
            raise Failure(f"a: expected one proxy, found {proxies!r}")
        (jid, (host, port)), = proxies.items()
        say(f"proxy {jid} found at {host}:{port}")

        sock = await go(s5.handshake(b.boundjid.full), "2: handshake + activation")
        if sock is None:
            raise Failure("a: the SOCKS5 handshake gave no stream")
        say("stream negotiated through the proxy and activated")

        data = secrets.token_bytes(SIZE)
        for i in range(0, len(data), 16 * 1024):
            await sock.write(data[i:i + 16 * 1024])
        sock.transport.close()
        await go(b.stream_closed, "3: receiving until the stream closes")
        b.check_received(data)
        step[0] = "disconnecting"
    finally:
        await chat.close_all(clients)


def main(argv: list[str]) -> int:
    return chat.run(argv, __doc__, scenario,
                    "OK: file transfer through the SOCKS5 proxy (XEP-0065) verified with slixmpp",
                    timeout=90.0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
