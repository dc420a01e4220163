// Strophe.js (the BOSH client library of Converse.js and many web clients) against kleiber's
// /http-bind, run by tests/interop_strophe_bosh.rs in Node with the xhr2 XMLHttpRequest:
// log in, send presence and a message to PEER, wait for PEER's answer, disconnect.
//
// usage: node bosh.cjs URL JID PASSWORD PEER
// (after `npm ci` here; the test server's certificate is self-signed, so the test sets
// NODE_TLS_REJECT_UNAUTHORIZED=0.)
'use strict';

const XHR = require('xhr2');
const { DOMParser } = require('@xmldom/xmldom');
// xhr2 has no DOM: give it the responseXML a browser's XMLHttpRequest has.
Object.defineProperty(XHR.prototype, 'responseXML', {
    get() {
        return this.responseText ? new DOMParser().parseFromString(this.responseText, 'text/xml') : null;
    },
});
globalThis.XMLHttpRequest = XHR;
const { Strophe, $msg, $pres } = require('strophe.js');

const [url, jid, password, peer] = process.argv.slice(2);
const say = (line) => process.stdout.write(line + '\n');

const guard = setTimeout(() => {
    say('TIMEOUT');
    process.exit(2);
}, 30000);

const conn = new Strophe.Connection(url);
if (process.env.STROPHE_TRACE) {
    conn.rawInput = (data) => say('IN ' + data);
    conn.rawOutput = (data) => say('OUT ' + data);
    Strophe.setLogLevel(Strophe.LogLevel.DEBUG);
    Strophe.log = (level, msg) => say('LOG ' + level + ' ' + msg);
}
conn.connect(jid, password, (status, condition) => {
    const S = Strophe.Status;
    if (status === S.CONNECTED) {
        say('CONNECTED ' + conn.jid);
        conn.addHandler((m) => {
            const body = m.getElementsByTagName('body')[0];
            say('RECEIVED ' + (body ? body.textContent : ''));
            conn.disconnect('done');
            return false;
        }, null, 'message', 'chat');
        conn.send($pres());
        conn.send($msg({ to: peer, type: 'chat' }).c('body').t('hello from strophe'));
    } else if (status === S.AUTHFAIL || status === S.CONNFAIL || status === S.ERROR) {
        say('FAILED ' + status + ' ' + (condition || ''));
        process.exit(1);
    } else if (status === S.DISCONNECTED) {
        say('DISCONNECTED');
        clearTimeout(guard);
        process.exit(0);
    }
});
