"""What an acknowledged write costs: N roster sets pipelined, N roster sets one at a time
(each waits for its result), and N messages to an offline user followed by one XEP-0198 <r/>
(time until <a h=N/>). Every one of these answers waits for the write to be on disk (group
commit), so this measures that wait. Raw XML over direct TLS, no client library.

    python3 benches/ack_cost.py HOST DIRECT_TLS_PORT N     # N <= 500 (the offline quota)

Registers `ackw` and `ackr` (in-band, registration must be open); run on a fresh data_dir.
Prints one `RESULT ...` line."""
import socket, ssl, sys, time, base64, re

host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def connect(user):
    ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
    s = ctx.wrap_socket(socket.create_connection((host, port)), server_hostname="localhost")
    buf = b""
    def send(x): s.sendall(x.encode())
    def until(pat):
        nonlocal buf
        while True:
            m = re.search(pat.encode(), buf, re.S)
            if m:
                buf = buf[m.end():]
                return m
            d = s.recv(65536)
            if not d: raise SystemExit("closed: " + buf.decode(errors="replace")[-300:])
            buf += d
    hdr = "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
    send(hdr); until("</stream:features>")
    tok = base64.b64encode(b"\0" + user.encode() + b"\0pw").decode()
    send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{tok}</auth>"); until("<success")
    send(hdr); until("</stream:features>")
    send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>"); until("id='b'.*?</iq>")
    return send, until

def register(user):
    ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
    s = ctx.wrap_socket(socket.create_connection((host, port)), server_hostname="localhost")
    s.sendall(b"<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
    s.sendall(f"<iq type='set' id='r'><query xmlns='jabber:iq:register'><username>{user}</username><password>pw</password></query></iq>".encode())
    buf = b""
    while b"id='r'" not in buf and b'id="r"' not in buf: buf += s.recv(65536)
    s.close()

for u in ("ackw", "ackr"): register(u)
send, until = connect("ackw")
t = time.time()
send("".join(f"<iq type='set' id='p{i}'><query xmlns='jabber:iq:roster'><item jid='c{i}@example.net'/></query></iq>" for i in range(n)))
until(f"id='p{n-1}'")
pip = time.time() - t
t = time.time()
for i in range(n):
    send(f"<iq type='set' id='s{i}'><query xmlns='jabber:iq:roster'><item jid='d{i}@example.net'/></query></iq>")
    until(f"id='s{i}'")
seq = time.time() - t
send("<enable xmlns='urn:xmpp:sm:3'/>"); until("<enabled")
t = time.time()
send("".join(f"<message to='ackr@localhost' type='chat' id='m{i}'><body>{i}</body></message>" for i in range(n)) + "<r xmlns='urn:xmpp:sm:3'/>")
until(f"<a xmlns='urn:xmpp:sm:3' h='{n}'/>")
sm = time.time() - t
print(f"RESULT n={n} roster_pipelined_per_s={n/pip:.0f} roster_sequential_per_s={n/seq:.0f} roster_sequential_ms={1000*seq/n:.2f} offline_sm_acked_per_s={n/sm:.0f}")
