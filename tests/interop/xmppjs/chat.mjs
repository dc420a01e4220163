// xmpp.js (@xmpp/client from npm) against kleiber's RFC 7395 WebSocket endpoint: log in (SASL,
// bind, stream management as xmpp.js does by default), send a chat message to a peer, wait
// for the peer's reply, close the stream. Driven by tests/interop_xmppjs.rs.
//
// usage: node chat.mjs SERVICE_URL USER PASSWORD PEER_JID
// The server's certificate is self-signed: run with NODE_TLS_REJECT_UNAUTHORIZED=0.
import { client, xml } from "@xmpp/client";

const [service, username, password, peer] = process.argv.slice(2);
const xmpp = client({ service, domain: "localhost", username, password, resource: "xmppjs" });

if (process.env.XMPPJS_DEBUG) {
  xmpp.on("input", (s) => console.error("IN  " + s));
  xmpp.on("output", (s) => console.error("OUT " + s));
}

const timer = setTimeout(() => {
  console.error("TIMEOUT waiting for the reply");
  process.exit(1);
}, 20000);

xmpp.on("error", (err) => {
  console.error("ERROR", err.toString());
  process.exit(1);
});

xmpp.on("stanza", async (stanza) => {
  if (stanza.is("message") && stanza.getChildText("body")) {
    console.log("REPLY " + stanza.attrs.from + " " + stanza.getChildText("body"));
    clearTimeout(timer);
    await xmpp.stop();
    process.exit(0);
  }
});

xmpp.on("online", async (address) => {
  console.log("ONLINE " + address.toString());
  await xmpp.send(xml("presence"));
  await xmpp.send(
    xml("message", { type: "chat", to: peer, id: "from-xmppjs" }, xml("body", {}, "Grüße von xmpp.js")),
  );
});

await xmpp.start();
