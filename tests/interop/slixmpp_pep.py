#!/usr/bin/env python3
"""PEP / OMEMO key publishing interop check of an XMPP server with slixmpp (XEP-0163, XEP-0060).

Steps (see tests/interop/README.md):
  1. register <prefix>a@D and <prefix>b@D in band and log both in (as slixmpp_chat.py does);
     b declares '+notify' interest in the OMEMO device lists (xep_0163.add_interest, advertised
     through its XEP-0115 caps) before its initial presence; a and b have no roster relation yet;
  2. a publishes, with slixmpp's xep_0060 publish() and publish-options pubsub#access_model=open,
     as an OMEMO client does: the legacy (eu.siacs.conversations.axolotl) device list (item
     'current') and bundle (node ...bundles:<device id>, item 'current': signed pre-key,
     signature, identity key and 100 pre-keys, random base64), and the OMEMO 2 device list
     (urn:xmpp:omemo:2:devices, item 'current') and bundle (urn:xmpp:omemo:2:bundles, item id =
     device id, max_items=max);
  3. a publishes to the legacy device list again asking for access_model=presence: it must be
     refused with conflict / precondition-not-met (XEP-0223), leaving the node as it was;
  4. b, with no subscription to a (open access), fetches all four with get_items / get_item:
     each must hold exactly the item a published, payload identical (names, namespaces,
     attributes, text);
  5. a and b subscribe to each other's presence (explicit handshake, as slixmpp_roster.py);
     once b's presence with its caps reaches a's server, the server must send b the last item of
     both device lists (the nodes b wants), and nothing else;
  6. a republishes its legacy bundle (new pre-keys), then both device lists with a second
     device: b must be notified of both new device lists, with the new payloads, and never of a
     bundle (b did not ask for '+notify' on bundles). A last fetch returns the new device list.

Exit code 0 on success; otherwise non-zero with one 'FAIL: reason' line on stderr
(1 = check failed, 2 = timeout, 3 = bad usage / slixmpp missing).
Passwords are never printed (except with --debug, which dumps the raw XML stream).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import secrets
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ left in the source tree
sys.path.insert(0, str(Path(__file__).resolve().parent))
import slixmpp_chat as chat  # noqa: E402  (exits 3 with a FAIL line if slixmpp is missing)
import slixmpp_roster as roster  # noqa: E402
from slixmpp_chat import Failure, guarded, say  # noqa: E402

import slixmpp  # noqa: E402
from slixmpp.exceptions import IqError, IqTimeout  # noqa: E402

STEP_TIMEOUT = roster.STEP_TIMEOUT

AXOLOTL = "eu.siacs.conversations.axolotl"
DEVICELIST = f"{AXOLOTL}.devicelist"
BUNDLES = f"{AXOLOTL}.bundles:"
OMEMO2 = "urn:xmpp:omemo:2"
DEVICES2 = f"{OMEMO2}:devices"
BUNDLES2 = f"{OMEMO2}:bundles"
PUBLISH_OPTIONS = "http://jabber.org/protocol/pubsub#publish-options"
PUBSUB_ERRORS = "http://jabber.org/protocol/pubsub#errors"


# ---------------------------------------------------------------------- OMEMO payloads
def b64(n: int) -> str:
    return base64.b64encode(secrets.token_bytes(n)).decode()


def legacy_devicelist(ids: list[int]) -> ET.Element:
    el = ET.Element(f"{{{AXOLOTL}}}list")
    for i in ids:
        ET.SubElement(el, f"{{{AXOLOTL}}}device", id=str(i))
    return el


def legacy_bundle() -> ET.Element:
    """As Conversations publishes it: curve25519 keys are 33 bytes, signatures 64."""
    el = ET.Element(f"{{{AXOLOTL}}}bundle")
    ET.SubElement(el, f"{{{AXOLOTL}}}signedPreKeyPublic", signedPreKeyId="1").text = b64(33)
    ET.SubElement(el, f"{{{AXOLOTL}}}signedPreKeySignature").text = b64(64)
    ET.SubElement(el, f"{{{AXOLOTL}}}identityKey").text = b64(33)
    prekeys = ET.SubElement(el, f"{{{AXOLOTL}}}prekeys")
    for i in range(1, 101):
        ET.SubElement(prekeys, f"{{{AXOLOTL}}}preKeyPublic", preKeyId=str(i)).text = b64(33)
    return el


def omemo2_devices(devices: list[tuple[int, str]]) -> ET.Element:
    el = ET.Element(f"{{{OMEMO2}}}devices")
    for i, label in devices:
        ET.SubElement(el, f"{{{OMEMO2}}}device", id=str(i), label=label)
    return el


def omemo2_bundle() -> ET.Element:
    """XEP-0384 0.8 bundle: ed25519 identity key, 32-byte keys."""
    el = ET.Element(f"{{{OMEMO2}}}bundle")
    ET.SubElement(el, f"{{{OMEMO2}}}spk", id="1").text = b64(32)
    ET.SubElement(el, f"{{{OMEMO2}}}spks").text = b64(64)
    ET.SubElement(el, f"{{{OMEMO2}}}ik").text = b64(32)
    prekeys = ET.SubElement(el, f"{{{OMEMO2}}}prekeys")
    for i in range(1, 101):
        ET.SubElement(prekeys, f"{{{OMEMO2}}}pk", id=str(i)).text = b64(32)
    return el


def shape(el: ET.Element | None):
    """What must survive the server: qualified names, attributes, text, children in order."""
    if el is None:
        return None
    return (el.tag, sorted(el.attrib.items()), (el.text or "").strip(),
            [shape(c) for c in el])


def describe(el: ET.Element | None) -> str:
    if el is None:
        return "no payload"
    text = ET.tostring(el, encoding="unicode")
    return text if len(text) <= 300 else text[:300] + "..."


# ---------------------------------------------------------------------- the client
class PepClient(roster.RosterClient):
    """A RosterClient (explicit subscriptions) with pubsub, and for b caps with +notify."""

    def __init__(self, *args, interested: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_plugin("xep_0060")
        self.interested = interested
        if interested:
            self.register_plugin("xep_0115")
            self.register_plugin("xep_0163")
        self.events: list[tuple[str, str, str, object]] = []  # (from, node, item id, shape)
        self.caps_queries: list[str] = []  # ids of disco#info queries from the server domain
        self.add_event_handler("pubsub_publish", self._on_publish)
        self.add_filter("in", self._note_caps_query)

    def _on_publish(self, msg) -> None:
        node = msg["pubsub_event"]["items"]["node"]
        # Not `for item in <stanza>`: slixmpp stanzas iterate with one shared index, and
        # xep_0060 is iterating these very items while it fires this event.
        for item in list(msg["pubsub_event"]["items"].iterables):
            say(f"{self.label}: notification from {msg['from'].full}: node {node} item "
                f"{item['id']!r}")
            self.events.append((msg["from"].full, node, item["id"], shape(item["payload"])))
        self._poke()

    def _note_caps_query(self, stanza):
        if isinstance(stanza, slixmpp.Iq) and stanza["type"] == "get" \
                and stanza["from"].full == self.boundjid.domain \
                and stanza.xml.find("{http://jabber.org/protocol/disco#info}query") is not None:
            node = stanza["disco_info"]["node"]
            say(f"{self.label}: the server asks for our disco#info (node {node!r}, "
                f"id {stanza['id']!r})")
            self.caps_queries.append(stanza["id"])
        return stanza

    def publish_options(self, **fields):
        form = self.plugin["xep_0004"].make_form(ftype="submit")
        form.add_field(var="FORM_TYPE", ftype="hidden", value=PUBLISH_OPTIONS)
        for var, value in fields.items():
            form.add_field(var=f"pubsub#{var}", value=value)
        return form

    async def publish(self, node: str, item_id: str, payload: ET.Element, **options) -> None:
        """Publish as OMEMO clients do: to our own PEP service (no 'to'), with options."""
        opts = ", ".join(f"{k}={v}" for k, v in options.items())
        try:
            resp = await self.plugin["xep_0060"].publish(
                None, node, id=item_id, payload=payload,
                options=self.publish_options(**options), timeout=STEP_TIMEOUT)
        except IqError as e:
            raise Failure(f"{self.label}: publish to {node} ({opts}) refused: "
                          f"{chat._iq_error(e.iq)}")
        except IqTimeout:
            raise Failure(f"{self.label}: no answer to a publish to {node} in "
                          f"{STEP_TIMEOUT:g} s")
        got = resp["pubsub"]["publish"]
        if got["node"] != node or got["item"]["id"] != item_id:
            raise Failure(f"{self.label}: publish to {node} answered with node "
                          f"{got['node']!r} item {got['item']['id']!r}, expected {item_id!r}")
        say(f"{self.label}: published {node} item {item_id!r} ({opts})")

    async def fetch(self, owner: PepClient, node: str, item_id: str | None = None):
        """get_items (or get_item with an id) on owner's PEP service: [(id, payload)]."""
        ps = self.plugin["xep_0060"]
        what = f"{node}{' item ' + repr(item_id) if item_id else ''} of {owner.boundjid.bare}"
        try:
            if item_id is None:
                resp = await ps.get_items(owner.boundjid.bare, node, timeout=STEP_TIMEOUT)
            else:
                resp = await ps.get_item(owner.boundjid.bare, node, item_id,
                                         timeout=STEP_TIMEOUT)
        except IqError as e:
            raise Failure(f"{self.label}: fetching {what} refused: {chat._iq_error(e.iq)}")
        except IqTimeout:
            raise Failure(f"{self.label}: no answer fetching {what} in {STEP_TIMEOUT:g} s")
        items = resp["pubsub"]["items"]
        if items["node"] != node:
            raise Failure(f"{self.label}: items of {what} answered for node {items['node']!r}")
        return [(it["id"], it["payload"]) for it in list(items.iterables)]


async def expect_items(c: PepClient, owner: PepClient, node: str, item_id: str,
                       payload: ET.Element, by_id: bool) -> None:
    items = await c.fetch(owner, node, item_id if by_id else None)
    ids = [i for i, _ in items]
    if ids != [item_id]:
        raise Failure(f"{c.label}: {node} of {owner.boundjid.bare} has items {ids}, "
                      f"expected only {item_id!r}")
    got = items[0][1]
    if shape(got) != shape(payload):
        raise Failure(f"{c.label}: {node} item {item_id!r} payload differs:\n  got      "
                      f"{describe(got)}\n  expected {describe(payload)}")
    say(f"{c.label}: {'get_item' if by_id else 'get_items'} {node} of {owner.boundjid.bare}: "
        f"item {item_id!r}, payload identical ({len(ET.tostring(got))} bytes) ok")


def notified(c: PepClient, owner: PepClient, node: str, item_id: str, payload: ET.Element):
    want = (owner.boundjid.bare, node, item_id, shape(payload))
    return want in c.events


def events_summary(c: PepClient) -> str:
    return ", ".join(f"{n} {i!r} from {f}" for f, n, i, _ in c.events) or "none"


async def wait_notified(c: PepClient, owner: PepClient, nodes: list[tuple[str, ET.Element]],
                        why: str, step: list[str], fatal) -> None:
    for node, payload in nodes:
        step[0] = f"{c.label}: waiting for the notification of {node} ({why})"
        await guarded(
            c.wait_for(lambda: notified(c, owner, node, "current", payload),
                       f"no notification of {node} item 'current' from "
                       f"{owner.boundjid.bare} with the published payload ({why}; "
                       f"caps queries seen: {len(c.caps_queries)}; notifications: "
                       f"{events_summary(c)})"),
            fatal, step, step[0])
        say(f"{c.label}: notified of {node} item 'current' with the expected payload ({why}) ok")


async def scenario(args: argparse.Namespace, step: list[str]) -> None:
    loop = asyncio.get_running_loop()
    fatal: asyncio.Future = loop.create_future()
    fatal.add_done_callback(lambda f: f.exception())  # never "exception was never retrieved"
    clients: list[PepClient] = []
    try:
        for label, resource in (("a", "omemo-a"), ("b", "omemo-b")):
            jid = f"{args.prefix}{label}@{args.domain}/{resource}"
            c = PepClient(label, jid, secrets.token_urlsafe(18), args, fatal,
                          interested=(label == "b"))
            clients.append(c)
            say(f"{label}: connecting to {args.host}:{args.port} ({args.mode}) as {jid}")
            c.connect(args.host, args.port)
            await guarded(c.ready, fatal, step, f"{label}: register + log in")
            # The roster first (as clients do), so that the server sends roster pushes.
            await guarded(c.roster_get(), fatal, step, f"{label}: roster get")
            if c.interested:
                # As OMEMO clients do: +notify for the device lists only, in the caps that
                # go out with the initial presence.
                c.plugin["xep_0163"].add_interest([DEVICELIST, DEVICES2])
                await guarded(c.plugin["xep_0115"].update_caps(broadcast=False), fatal, step,
                              f"{label}: computing caps")
                ver = await c.plugin["xep_0115"].get_verstring()
                say(f"{label}: +notify for {DEVICELIST} and {DEVICES2}; caps ver {ver}")
            c.send_presence()
            await guarded(chat.barrier(c), fatal, step, f"{label}: IQ round trip after presence")
        a, b = clients

        # --- a publishes its OMEMO keys ----------------------------------------------------
        dev1, dev2 = 1000 + secrets.randbelow(2**31 - 1000), 1000 + secrets.randbelow(2**31 - 1000)
        published = {
            DEVICELIST: legacy_devicelist([dev1]),
            f"{BUNDLES}{dev1}": legacy_bundle(),
            DEVICES2: omemo2_devices([(dev1, "slixmpp interop")]),
            BUNDLES2: omemo2_bundle(),
        }
        step[0] = "a: publishing"
        await guarded(a.publish(DEVICELIST, "current", published[DEVICELIST],
                                access_model="open"), fatal, step, step[0])
        await guarded(a.publish(f"{BUNDLES}{dev1}", "current", published[f"{BUNDLES}{dev1}"],
                                access_model="open"), fatal, step, step[0])
        await guarded(a.publish(DEVICES2, "current", published[DEVICES2],
                                access_model="open"), fatal, step, step[0])
        await guarded(a.publish(BUNDLES2, str(dev1), published[BUNDLES2],
                                access_model="open", max_items="max"), fatal, step, step[0])

        # --- a precondition that does not hold ----------------------------------------------
        step[0] = "a: publishing with a precondition the node does not meet"
        try:
            await guarded(a.plugin["xep_0060"].publish(
                None, DEVICELIST, id="current", payload=legacy_devicelist([dev1, 1]),
                options=a.publish_options(access_model="presence"), timeout=STEP_TIMEOUT),
                fatal, step, step[0])
            raise Failure(f"a: publish to {DEVICELIST} (open) with access_model=presence as "
                          f"publish-options was accepted, expected precondition-not-met")
        except IqError as e:
            cond = e.iq["error"]["condition"]
            specific = e.iq["error"].xml.find(f"{{{PUBSUB_ERRORS}}}precondition-not-met")
            if cond != "conflict" or specific is None:
                raise Failure(f"a: precondition mismatch refused with {chat._iq_error(e.iq)}"
                              f"{'' if specific is not None else ' without precondition-not-met'}"
                              f", expected conflict + precondition-not-met")
        except IqTimeout:
            raise Failure(f"a: no answer to a publish with publish-options in {STEP_TIMEOUT:g} s")
        say("a: publish with access_model=presence on the open device list refused: "
            "conflict / precondition-not-met ok")

        # --- b fetches everything, no subscription needed (open) -------------------------------
        step[0] = "b: fetching a's keys"
        await guarded(expect_items(b, a, DEVICELIST, "current", published[DEVICELIST], False),
                      fatal, step, step[0])
        await guarded(expect_items(b, a, f"{BUNDLES}{dev1}", "current",
                                   published[f"{BUNDLES}{dev1}"], True), fatal, step, step[0])
        await guarded(expect_items(b, a, DEVICES2, "current", published[DEVICES2], False),
                      fatal, step, step[0])
        await guarded(expect_items(b, a, BUNDLES2, str(dev1), published[BUNDLES2], True),
                      fatal, step, step[0])
        if b.events:
            raise Failure(f"b: notified before any presence reached a: {events_summary(b)}")

        # --- mutual presence subscription ------------------------------------------------------
        roster.send_sub(b, "subscribe", a)
        step[0] = "a: waiting for b's subscription request"
        await guarded(a.wait_for(lambda: a.got("subscribe", b),
                                 f"no <presence type='subscribe'> from {b.boundjid.bare}"),
                      fatal, step, step[0])
        roster.send_sub(a, "subscribed", b)
        roster.send_sub(a, "subscribe", b)
        step[0] = "b: waiting for a's approval and request"
        await guarded(b.wait_for(lambda: b.got("subscribed", a) and b.got("subscribe", a),
                                 f"no <presence type='subscribed'> and 'subscribe' from "
                                 f"{a.boundjid.bare}"), fatal, step, step[0])
        roster.send_sub(b, "subscribed", a)
        step[0] = "a: waiting for b's approval"
        await guarded(a.wait_for(lambda: a.got("subscribed", b),
                                 f"no <presence type='subscribed'> from {b.boundjid.bare}"),
                      fatal, step, step[0])
        await roster.check_roster(a, b, step, fatal)
        await roster.check_roster(b, a, step, fatal)

        # --- last items on presence ----------------------------------------------------------
        await wait_notified(b, a, [(DEVICELIST, published[DEVICELIST]),
                                   (DEVICES2, published[DEVICES2])],
                            "last item, once b's presence and caps reached a", step, fatal)

        # --- republish: new bundle, then a second device -----------------------------------------
        new_bundle = legacy_bundle()
        step[0] = "a: republishing"
        await guarded(a.publish(f"{BUNDLES}{dev1}", "current", new_bundle,
                                access_model="open"), fatal, step, step[0])
        new_list = legacy_devicelist([dev1, dev2])
        new_devices = omemo2_devices([(dev1, "slixmpp interop"), (dev2, "second device")])
        await guarded(a.publish(DEVICELIST, "current", new_list, access_model="open"),
                      fatal, step, step[0])
        await guarded(a.publish(DEVICES2, "current", new_devices, access_model="open"),
                      fatal, step, step[0])
        await wait_notified(b, a, [(DEVICELIST, new_list), (DEVICES2, new_devices)],
                            "a republished with a second device", step, fatal)
        bundles = [e for e in b.events if "bundles" in e[1]]
        if bundles:
            raise Failure(f"b: notified of a bundle node without '+notify' for it: "
                          f"{[(n, i) for _, n, i, _ in bundles]}")
        say("b: no bundle notification (not in b's caps) ok")
        others = [e for e in b.events if e[0] != a.boundjid.bare]
        if others:
            raise Failure(f"b: notifications not from {a.boundjid.bare}: {events_summary(b)}")
        await guarded(expect_items(b, a, DEVICELIST, "current", new_list, False),
                      fatal, step, "b: fetching the new device list")
        await guarded(expect_items(b, a, f"{BUNDLES}{dev1}", "current", new_bundle, True),
                      fatal, step, "b: fetching the new bundle")
        say(f"b: {len(b.events)} notification(s) in all, caps queried {len(b.caps_queries)} "
            f"time(s)")
        step[0] = "disconnecting"
    finally:
        await chat.close_all(clients)


def main(argv: list[str]) -> int:
    return chat.run(argv, __doc__, scenario,
                    "OK: OMEMO device lists and bundles (legacy and OMEMO 2) published, fetched by another "
                    "account, precondition enforced, last items and +notify notifications verified", timeout=60.0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
