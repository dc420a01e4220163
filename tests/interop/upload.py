#!/usr/bin/env python3
"""HTTP File Upload (XEP-0363) interop check of an XMPP server with slixmpp's xep_0363 plugin.

One account <prefix>a (registered in band as slixmpp_chat.py does) uses slixmpp's xep_0363
(with xep_0030 and xep_0004). Steps, each asserted:
  1. discovery: xep_0363's find_upload_service finds the upload service through the server's
     disco#items, with the feature urn:xmpp:http:upload:0 and a max-file-size in its form
     (--max-size, in bytes, must match);
  2. upload: upload_file() sends 200 KiB of random bytes named 'interop test.bin' (slot
     request, then an HTTPS PUT with the slot's headers through aiohttp); the returned GET URL
     has the sanitised name and is under /upload/;
  3. download: an HTTPS GET of that URL (aiohttp) returns exactly the bytes uploaded, with
     Content-Type as uploaded and X-Content-Type-Options: nosniff; a ranged GET returns 206
     with the range;
  4. too large: upload_file() of a file larger than max-file-size is refused by slixmpp
     itself (FileTooBig, from the advertised limit), and the server refuses a slot request for
     it with not-acceptable.

The server's certificate is self-signed: TLS verification is off for XMPP and for HTTPS.
Exit code 0 on success; otherwise non-zero with one 'FAIL: reason' line on stderr
(1 = check failed, 2 = timeout, 3 = bad usage / slixmpp or aiohttp missing).
"""

from __future__ import annotations

import asyncio
import io
import secrets
import sys
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ left in the source tree
sys.path.insert(0, str(Path(__file__).resolve().parent))
import slixmpp_chat as chat  # noqa: E402  (exits 3 with a FAIL line if slixmpp is missing)
from slixmpp_chat import Failure, say  # noqa: E402

try:
    import aiohttp  # noqa: E402
    from slixmpp.exceptions import IqError  # noqa: E402
    from slixmpp.plugins.xep_0363 import http_upload  # noqa: E402
except ImportError as exc:  # pragma: no cover - environment problem
    print(f"FAIL: cannot import aiohttp / xep_0363 ({exc}); "
          "pip install -r tests/interop/requirements.txt", file=sys.stderr)
    sys.exit(3)

MAX_SIZE = 0  # --max-size
STEP_TIMEOUT = 20.0


class InsecureSession(aiohttp.ClientSession):
    """aiohttp without certificate verification (the test server's certificate is
    self-signed): what xep_0363 uploads with."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("connector", aiohttp.TCPConnector(ssl=False))
        super().__init__(*args, **kwargs)


http_upload.ClientSession = InsecureSession


class UploadClient(chat.Client):
    def __init__(self, label, jid, password, args, fatal):
        super().__init__(label, jid, password, args, fatal)
        self.register_plugin("xep_0363")


async def fetch(url: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    async with InsecureSession() as s:
        async with s.get(url, headers=headers or {}) as r:
            return r.status, dict(r.headers), await r.read()


async def scenario(args, step: list[str]) -> None:
    loop = asyncio.get_running_loop()
    fatal: asyncio.Future = loop.create_future()
    fatal.add_done_callback(lambda f: f.exception())
    jid = f"{args.prefix}a@{args.domain}"
    a = UploadClient("a", jid, secrets.token_urlsafe(18), args, fatal)

    async def go(aw, what: str):
        return await chat.guarded(asyncio.wait_for(aw, STEP_TIMEOUT), fatal, step, what)

    try:
        say(f"a: connecting to {args.host}:{args.port} ({args.mode}) as {jid}")
        a.connect(args.host, args.port)
        await chat.guarded(a.ready, fatal, step, "a: register + log in")
        up = a.plugin["xep_0363"]

        info = await go(up.find_upload_service(), "1: find_upload_service")
        if info is None:
            raise Failure("a: xep_0363 found no upload service")
        service = info["from"]
        say(f"upload service {service} found")

        data = secrets.token_bytes(200 * 1024)
        url = await go(up.upload_file("interop test.bin", input_file=io.BytesIO(data),
                                      content_type="application/octet-stream"),
                       "2: upload_file")
        if up.max_file_size != MAX_SIZE:
            raise Failure(f"a: max-file-size {up.max_file_size}, expected {MAX_SIZE}")
        if "/upload/" not in url or not url.endswith("/interop_test.bin"):
            raise Failure(f"a: unexpected GET URL {url}")
        say(f"uploaded {len(data)} bytes; max-file-size {up.max_file_size} ok")

        status, headers, body = await go(fetch(url), "3: GET")
        if status != 200 or body != data:
            raise Failure(f"GET {url}: status {status}, {len(body)} bytes "
                          f"({'identical' if body == data else 'different'})")
        if headers.get("Content-Type") != "application/octet-stream" or \
                headers.get("X-Content-Type-Options") != "nosniff":
            raise Failure(f"GET {url}: headers {headers}")
        status, headers, body = await go(fetch(url, {"Range": "bytes=100-199"}), "3: range")
        if status != 206 or body != data[100:200]:
            raise Failure(f"ranged GET: status {status}, {len(body)} bytes")
        say("downloaded byte-identical; range ok")

        too_big = MAX_SIZE + 1
        try:
            await go(up.upload_file("big.bin", size=too_big, input_file=io.BytesIO(b"x")),
                     "4: too large")
            raise Failure("a: upload_file of a file over max-file-size succeeded")
        except http_upload.FileTooBig:
            pass
        try:
            await go(up.request_slot(service, "big.bin", too_big, "application/octet-stream"),
                     "4: slot for a file too large")
            raise Failure("a: the server granted a slot over max-file-size")
        except IqError as e:
            if e.iq["error"]["condition"] != "not-acceptable":
                raise Failure(f"a: too large: {e.iq['error']['condition']}")
        say("too large refused by slixmpp and by the server ok")
        step[0] = "disconnecting"
    finally:
        a.closing = True
        await chat.close(a)


def main(argv: list[str]) -> int:
    global MAX_SIZE
    if "--max-size" in argv:
        i = argv.index("--max-size")
        MAX_SIZE = int(argv[i + 1])
        argv = argv[:i] + argv[i + 2:]
    return chat.run(argv, __doc__, scenario,
                    "OK: HTTP file upload (XEP-0363) verified with slixmpp", timeout=90.0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
