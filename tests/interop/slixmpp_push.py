#!/usr/bin/env python3
"""Push notification interop check of an XMPP server with slixmpp (XEP-0357).

Steps (see tests/interop/README.md):
  1. the app server: a slixmpp ComponentXMPP (XEP-0114) connects to the server's component
     port as --app-domain with --app-secret and answers every pubsub publish it gets with a
     result, recording it;
  2. register <prefix>a@D and <prefix>b@D in band and log both in (as slixmpp_chat.py does);
     a has slixmpp's xep_0198 plugin with resumption allowed (as slixmpp_resume.py);
  3. a enables push (an <enable xmlns='urn:xmpp:push:0'/> IQ built with slixmpp's stanza API:
     slixmpp 1.17 has no xep_0357 plugin) for the app server and a random node, with a
     publish-options form holding a random secret; the server must answer with a result;
  4. a's TCP connection is cut without </stream:stream> (transport.abort()): the session
     hibernates;
  5. b sends a a chat message every half second until the app server gets a notification
     (the server may take a moment to notice the cut); then two more;
  6. the notification must be an IQ set from a's bare JID to the app server: a pubsub publish
     to a's node with a <notification xmlns='urn:xmpp:push:0'/> whose summary form has
     FORM_TYPE urn:xmpp:push:summary and a message-count of at least 1, and no sender and no
     body (the server's default); publish-options with a's secret. Exactly one arrives for the
     burst;
  7. a reconnects and resumes; it must receive every message b sent, exactly once.

Exit code 0 on success; otherwise non-zero with one 'FAIL: reason' line on stderr
(1 = check failed, 2 = timeout, 3 = bad usage / slixmpp missing).
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from collections import Counter
from pathlib import Path
from xml.etree import ElementTree as ET

sys.dont_write_bytecode = True  # no __pycache__ left in the source tree
sys.path.insert(0, str(Path(__file__).resolve().parent))
import slixmpp_chat as chat  # noqa: E402  (exits 3 with a FAIL line if slixmpp is missing)
from slixmpp_chat import Failure, guarded, say  # noqa: E402
from slixmpp_resume import SmClient, login, receive  # noqa: E402

import slixmpp  # noqa: E402
from slixmpp.xmlstream.handler import Callback  # noqa: E402
from slixmpp.xmlstream.matcher import MatchXPath  # noqa: E402

PUSH = "urn:xmpp:push:0"
PUBSUB = "http://jabber.org/protocol/pubsub"
FORMS = "jabber:x:data"
STEP_TIMEOUT = 10.0


class AppServer(slixmpp.ComponentXMPP):
    """The app server: records the notifications it gets and accepts them."""

    def __init__(self, domain: str, secret: str, fatal: asyncio.Future):
        super().__init__(domain, secret)
        self.fatal = fatal
        self.ready: asyncio.Future = self.loop.create_future()
        self.notifications: list[ET.Element] = []
        self.changed = asyncio.Event()
        self.add_event_handler("session_start", lambda _e: self.ready.done()
                               or self.ready.set_result(True))
        self.register_handler(Callback(
            "push notification",
            MatchXPath(f"{{{self.default_ns}}}iq/{{{PUBSUB}}}pubsub"),
            self._on_publish))

    def _on_publish(self, iq) -> None:
        self.notifications.append(iq.xml)
        say(f"app: notification #{len(self.notifications)} from {iq['from']} "
            f"(type {iq['type']})")
        iq.reply().send()
        self.changed.set()


def check_notification(n: ET.Element, a_bare: str, app: str, node: str, secret: str,
                       ns: str) -> None:
    """The notification is XEP-0357 §7's, with only the summary the server allows by default."""
    if n.get("type") != "set" or n.get("from") != a_bare or n.get("to") != app:
        raise Failure(f"app: notification type/from/to {n.get('type')}/{n.get('from')}/"
                      f"{n.get('to')}, expected set/{a_bare}/{app}")
    publish = n.find(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}publish")
    if publish is None or publish.get("node") != node:
        raise Failure(f"app: no publish to node {node!r}: {ET.tostring(n)!r}")
    form = publish.find(f"{{{PUBSUB}}}item/{{{PUSH}}}notification/{{{FORMS}}}x")
    if form is None:
        raise Failure(f"app: no notification form: {ET.tostring(n)!r}")
    fields = {f.get("var"): [v.text for v in f.findall(f"{{{FORMS}}}value")]
              for f in form.findall(f"{{{FORMS}}}field")}
    if fields.get("FORM_TYPE") != ["urn:xmpp:push:summary"]:
        raise Failure(f"app: summary FORM_TYPE {fields.get('FORM_TYPE')}")
    count = (fields.get("message-count") or ["0"])[0]
    if not count.isdigit() or int(count) < 1:
        raise Failure(f"app: message-count {count!r}")
    leaked = [k for k in ("last-message-sender", "last-message-body") if k in fields]
    if leaked:
        raise Failure(f"app: the summary holds {leaked}, which the server sends only if told")
    options = n.find(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}publish-options/{{{FORMS}}}x")
    values = {} if options is None else {
        f.get("var"): [v.text for v in f.findall(f"{{{FORMS}}}value")]
        for f in options.findall(f"{{{FORMS}}}field")}
    if values.get("secret") != [secret]:
        raise Failure("app: the publish options do not carry a's secret")
    say(f"app: notification checked: node, summary (message-count {count}, no sender, "
        f"no body), publish options with the secret")


async def enable_push(a: SmClient, app: str, node: str, secret: str) -> None:
    iq = a.Iq()
    iq["type"] = "set"
    enable = ET.Element(f"{{{PUSH}}}enable", {"jid": app, "node": node})
    x = ET.SubElement(enable, f"{{{FORMS}}}x", {"type": "submit"})
    for var, value in (("FORM_TYPE", "http://jabber.org/protocol/pubsub#publish-options"),
                       ("secret", secret)):
        f = ET.SubElement(x, f"{{{FORMS}}}field", {"var": var})
        ET.SubElement(f, f"{{{FORMS}}}value").text = value
    iq.xml.append(enable)
    try:
        await iq.send(timeout=STEP_TIMEOUT)
    except slixmpp.exceptions.IqError as e:
        raise Failure(f"a: enable refused: {e.iq['error']['condition']}")
    say(f"a: push enabled for {app}, node {node!r}")


async def burst_until_pushed(a, b, app: AppServer, fatal, step) -> list[str]:
    """b writes to a until the app server hears of it; then two more messages."""
    token = secrets.token_hex(3)
    sent: list[str] = []
    step[0] = "b: writing to a until the app server gets a notification"
    for i in range(40):
        body = f"b->a #{i} ({token})"
        b.send_message(mto=a.boundjid.bare, mbody=body, mtype="chat")
        sent.append(body)
        app.changed.clear()
        try:
            await guarded(asyncio.wait_for(app.changed.wait(), 0.5), fatal, step, step[0])
        except (asyncio.TimeoutError, TimeoutError):
            continue
        break
    if not app.notifications:
        raise Failure(f"app: no notification after {len(sent)} messages to a hibernated session")
    for i in range(2):
        body = f"b->a after the push #{i} ({token})"
        b.send_message(mto=a.boundjid.bare, mbody=body, mtype="chat")
        sent.append(body)
    await guarded(chat.barrier(b), fatal, step, "b: IQ round trip after sending")
    say(f"b: {len(sent)} messages sent while a is away")
    return sent


async def scenario(args, step: list[str]) -> None:
    loop = asyncio.get_running_loop()
    fatal: asyncio.Future = loop.create_future()
    fatal.add_done_callback(lambda f: f.exception())
    clients: list = []
    app = AppServer(args.app_domain, args.app_secret, fatal)
    try:
        say(f"app: connecting as component {args.app_domain} to port {args.app_port}")
        app.connect(args.host, args.app_port)
        await guarded(app.ready, fatal, step, "app: component handshake")
        a = await login(args, fatal, step, clients, "a", "phone", sm=True)
        b = await login(args, fatal, step, clients, "b", "desk", sm=False)
        await guarded(a.wait_for(lambda: a.enabled is not None, "no <enabled/>"),
                      fatal, step, "a: waiting for <enabled/>")
        node, secret = secrets.token_urlsafe(12), secrets.token_urlsafe(16)
        await guarded(enable_push(a, args.app_domain, node, secret), fatal, step, "a: enable")

        before = a.disconnects
        a.cut("fin")
        await guarded(a.wait_for(lambda: a.disconnects > before, "no 'disconnected' event"),
                      fatal, step, "a: waiting for the disconnection")
        sent = await burst_until_pushed(a, b, app, fatal, step)
        check_notification(app.notifications[0], a.boundjid.bare, args.app_domain, node,
                           secret, app.default_ns)

        say("a: reconnecting to resume")
        resumed_before = len(a.resumed)
        a.connect(args.host, args.port)
        await guarded(a.wait_for(lambda: len(a.resumed) > resumed_before, "no <resumed/>"),
                      fatal, step, "a: waiting for <resumed/>")
        a.cutting = False
        await receive(a, sent, "sent while a was away", step, fatal)
        dups = sorted(body for body, k in Counter(a.bodies).items() if k > 1)
        if dups:
            raise Failure(f"a: received more than once: {dups}")
        await guarded(chat.barrier(b), fatal, step, "b: last round trip")
        if len(app.notifications) != 1:
            raise Failure(f"app: {len(app.notifications)} notifications for one burst")
        say("app: one notification for the burst")
        a.plugin["xep_0198"].send_ack()
        await guarded(chat.barrier(a), fatal, step, "a: IQ round trip after its last <a/>")
        step[0] = "disconnecting"
    finally:
        await chat.close_all(clients)
        app.disconnect()


def main(argv: list[str]) -> int:
    # The app server's options, then the usual command line (see slixmpp_chat.py).
    rest, extra = [], {}
    it = iter(argv)
    for arg in it:
        if arg in ("--app-port", "--app-domain", "--app-secret"):
            extra[arg[2:].replace("-", "_")] = next(it, "")
        else:
            rest.append(arg)
    if set(extra) != {"app_port", "app_domain", "app_secret"}:
        print("FAIL: --app-port, --app-domain and --app-secret are required", file=sys.stderr)
        return 3

    async def with_app(args, step):
        args.app_port = int(extra["app_port"])
        args.app_domain = extra["app_domain"]
        args.app_secret = extra["app_secret"]
        await scenario(args, step)

    return chat.run(rest, __doc__, with_app,
                    "OK: push enabled, one notification for a hibernated session's burst, "
                    "resumed with every message", timeout=60.0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
