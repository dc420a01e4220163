#!/usr/bin/env python3
"""An IRC channel through a real gateway: slixmpp on the XMPP side, biboumi as the server's
external component (XEP-0114), and a raw IRC client on the IRC side.

The IRC server (ngircd) listens on --irc-host:6667; biboumi serves --gateway. Steps, each
asserted:
  1. the raw IRC client (nick 'bob') registers with the IRC server and joins #kleiber;
  2. <prefix>a (slixmpp, registered in band) enters the MUC
     #kleiber%<irc-host>@<gateway>/alice with xep_0045's join_muc_wait: the self presence
     arrives and bob sees alice JOIN #kleiber on IRC;
  3. bob says something in the channel: alice gets it as a groupchat message from
     #kleiber%<irc-host>@<gateway>/bob;
  4. alice says something in the room: bob gets the PRIVMSG from alice on #kleiber;
  5. private messages: bob sends alice a PRIVMSG; alice gets a chat message from a JID of
     the gateway, answers it, and bob gets the answer as a PRIVMSG to bob;
  6. alice leaves the room; bob sees her PART or QUIT.

Exit code 0 on success; otherwise one 'FAIL: reason' line on stderr (see slixmpp_chat.py).
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))
import slixmpp_chat as chat  # noqa: E402
from slixmpp_chat import Failure, say  # noqa: E402
from muc import MucClient  # noqa: E402

GATEWAY = "irc.localhost"
IRC_HOST = "127.0.0.1"
CHANNEL = "#kleiber"
STEP = 20.0


class Irc:
    """A raw IRC client: lines in, lines out, PING answered."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.lines: list[str] = []

    @classmethod
    async def connect(cls, host: str, nick: str) -> "Irc":
        r, w = await asyncio.open_connection(host, 6667)
        irc = cls(r, w)
        irc.send(f"NICK {nick}")
        irc.send(f"USER {nick} 0 * :{nick}")
        await irc.expect(lambda l: f" 001 {nick} " in l, "welcome (001)")
        return irc

    def send(self, line: str) -> None:
        self.writer.write((line + "\r\n").encode())

    async def expect(self, pred, what: str) -> str:
        async def read():
            while True:
                raw = await self.reader.readline()
                if not raw:
                    raise Failure(f"IRC: connection closed while waiting for {what}")
                line = raw.decode(errors="replace").rstrip("\r\n")
                if line.startswith("PING"):
                    self.send("PONG" + line[4:])
                    continue
                self.lines.append(line)
                if pred(line):
                    return line
        try:
            return await asyncio.wait_for(read(), STEP)
        except (asyncio.TimeoutError, TimeoutError):
            raise Failure(f"IRC: no {what} within {STEP:g} s (last lines: {self.lines[-5:]})")


async def scenario(args, step: list[str]) -> None:
    loop = asyncio.get_running_loop()
    fatal: asyncio.Future = loop.create_future()
    fatal.add_done_callback(lambda f: f.exception())
    token = secrets.token_hex(3)

    step[0] = "IRC client joins"
    bob = await Irc.connect(IRC_HOST, "bob")
    bob.send(f"JOIN {CHANNEL}")
    await bob.expect(lambda l: " 366 bob " in l, f"end of NAMES for {CHANNEL}")
    say(f"IRC: bob joined {CHANNEL}")

    a = MucClient("a", f"{args.prefix}a@{args.domain}", secrets.token_urlsafe(18), args, fatal)
    try:
        a.connect(args.host, args.port)
        await chat.guarded(a.ready, fatal, step, "a: register + log in")
        a.send_presence()
        room = f"{CHANNEL}%{IRC_HOST}@{GATEWAY}"
        step[0] = f"alice enters {room}"
        await chat.guarded(a.muc.join_muc_wait(room, "alice", maxstanzas=0, timeout=STEP),
                           fatal, step, f"a: enter {room}")
        say(f"a: in {room} as alice")
        await bob.expect(lambda l: l.startswith(":alice!") and " JOIN " in l and CHANNEL in l,
                         "alice's JOIN")
        say("IRC: bob saw alice join")

        step[0] = "IRC -> XMPP in the channel"
        mark = a.mark()
        text = f"hello from irc {token}"
        bob.send(f"PRIVMSG {CHANNEL} :{text}")
        m = await a.expect(lambda s: s.name == "message" and s["body"] == text,
                           "bob's channel message", since=mark)
        if m["type"] != "groupchat" or m["from"].full != f"{room}/bob":
            raise Failure(f"a: got {m['type']} from {m['from'].full}, expected groupchat "
                          f"from {room}/bob")
        say(f"a: got {text!r} from {m['from'].full}")

        step[0] = "XMPP -> IRC in the channel"
        text = f"hello from xmpp {token}"
        a.send_message(mto=room, mbody=text, mtype="groupchat")
        await bob.expect(lambda l: l.startswith(":alice!") and
                         l.endswith(f"PRIVMSG {CHANNEL} :{text}"), "alice's channel message")
        say(f"IRC: bob got {text!r}")

        step[0] = "private messages"
        mark = a.mark()
        text = f"psst {token}"
        bob.send(f"PRIVMSG alice :{text}")
        m = await a.expect(lambda s: s.name == "message" and s["body"] == text,
                           "bob's private message", since=mark)
        if m["type"] == "groupchat" or m["from"].domain != GATEWAY:
            raise Failure(f"a: private message came as {m['type']} from {m['from'].full}")
        say(f"a: got private {text!r} from {m['from'].full}")
        text = f"psst back {token}"
        a.send_message(mto=m["from"], mbody=text, mtype="chat")
        await bob.expect(lambda l: l.startswith(":alice!") and l.endswith(f"PRIVMSG bob :{text}"),
                         "alice's private answer")
        say(f"IRC: bob got private {text!r}")

        step[0] = "alice leaves"
        a.muc.leave_muc(room, "alice")
        await bob.expect(lambda l: l.startswith(":alice!") and (" PART " in l or " QUIT" in l),
                         "alice's PART or QUIT")
        say("IRC: bob saw alice leave")
    finally:
        a.closing = True
        await chat.close(a)
        bob.send("QUIT :bye")
        bob.writer.close()


def main(argv: list[str]) -> int:
    global GATEWAY, IRC_HOST
    for flag in ("--gateway", "--irc-host"):
        if flag in argv:
            i = argv.index(flag)
            value = argv[i + 1]
            argv = argv[:i] + argv[i + 2:]
            if flag == "--gateway":
                GATEWAY = value
            else:
                IRC_HOST = value
    return chat.run(argv, __doc__, scenario, "OK: IRC channel and private messages through biboumi",
                    timeout=90.0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
