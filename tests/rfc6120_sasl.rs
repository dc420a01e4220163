//! RFC 6120 §6-7: SASL (SCRAM-SHA-1/256 with and without channel binding, PLAIN) and
//! resource binding, against a real server over TLS.

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mechanisms_are_offered_with_channel_binding_types() {
    let s = TestServer::start();
    let c = Client::starttls(s.starttls, "localhost").await;
    assert_eq!(
        c.mechanisms(),
        [
            "SCRAM-SHA-256-PLUS",
            "SCRAM-SHA-1-PLUS",
            "SCRAM-SHA-256",
            "SCRAM-SHA-1",
            "PLAIN"
        ]
    );
    let cb = c
        .features
        .get_child("sasl-channel-binding", "urn:xmpp:sasl-cb:0")
        .unwrap();
    let types: Vec<_> = cb
        .elements()
        .map(|e| e.get_attr("type").unwrap().to_owned())
        .collect();
    assert_eq!(types, ["tls-exporter", "tls-server-end-point"]);
    let limits = c
        .features
        .get_child("limits", "urn:xmpp:stream-limits:0")
        .unwrap();
    assert_eq!(
        limits
            .get_child("max-bytes", "urn:xmpp:stream-limits:0")
            .unwrap()
            .text_content(),
        "8192"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_and_plain_logins() {
    let s = TestServer::start();
    s.add_user("juliet", "pw");
    for mech in ["SCRAM-SHA-256", "SCRAM-SHA-1"] {
        let mut c = Client::starttls(s.starttls, "localhost").await;
        c.auth_scram(mech, "juliet", "pw").await.unwrap();
        assert!(c
            .features
            .get_child("bind", "urn:ietf:params:xml:ns:xmpp-bind")
            .is_some());
        let session = c
            .features
            .get_child("session", "urn:ietf:params:xml:ns:xmpp-session")
            .unwrap();
        assert!(session
            .get_child("optional", "urn:ietf:params:xml:ns:xmpp-session")
            .is_some());
        let mut c = Client::starttls(s.starttls, "localhost").await;
        assert_eq!(
            c.auth_scram(mech, "juliet", "wrong").await,
            Err("not-authorized".into())
        );
    }
    let mut c = Client::direct(s.direct, "localhost").await;
    c.auth_plain("", "juliet", "pw").await.unwrap();
    let mut c = Client::direct(s.direct, "localhost").await;
    assert_eq!(
        c.auth_plain("", "juliet", "nope").await,
        Err("not-authorized".into())
    );
    let mut c = Client::direct(s.direct, "localhost").await;
    assert_eq!(
        c.auth_plain("", "nobody", "pw").await,
        Err("not-authorized".into())
    );
    // The user name is normalised (case-folded) like the JID localpart.
    let mut c = Client::direct(s.direct, "localhost").await;
    c.auth_plain("", "Juliet", "pw").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_binding() {
    let s = TestServer::start();
    s.add_user("romeo", "pw");
    for (mech, cb) in [
        ("SCRAM-SHA-256-PLUS", "tls-exporter"),
        ("SCRAM-SHA-256-PLUS", "tls-server-end-point"),
        ("SCRAM-SHA-1-PLUS", "tls-exporter"),
    ] {
        let mut c = Client::starttls(s.starttls, "localhost").await;
        c.auth_scram_cb(mech, "romeo", "pw", Some(cb), None)
            .await
            .unwrap();
        // Channel-binding data from a different TLS session (a man in the middle) fails.
        let mut c = Client::starttls(s.starttls, "localhost").await;
        let r = c
            .auth_scram_cb(mech, "romeo", "pw", Some(cb), Some(vec![0; 32]))
            .await;
        assert_eq!(r, Err("not-authorized".into()), "{mech} {cb}");
    }
    // Over TLS 1.2 there is no tls-exporter: only tls-server-end-point is offered.
    let mut c = Client::starttls12(s.starttls, "localhost").await;
    let cb = c
        .features
        .get_child("sasl-channel-binding", "urn:xmpp:sasl-cb:0")
        .unwrap();
    assert_eq!(cb.elements().count(), 1);
    assert_eq!(
        c.auth_scram_cb(
            "SCRAM-SHA-256-PLUS",
            "romeo",
            "pw",
            Some("tls-exporter"),
            Some(vec![1; 32])
        )
        .await,
        Err("not-authorized".into())
    );
    let mut c = Client::starttls12(s.starttls, "localhost").await;
    c.auth_scram_cb(
        "SCRAM-SHA-256-PLUS",
        "romeo",
        "pw",
        Some("tls-server-end-point"),
        None,
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_failures() {
    let s = TestServer::start();
    s.add_user("juliet", "pw");
    let mut c = Client::starttls(s.starttls, "localhost").await;
    // authzid naming someone else.
    assert_eq!(
        c.auth_plain("romeo@localhost", "juliet", "pw").await,
        Err("invalid-authzid".into())
    );
    // authzid naming oneself is fine.
    let mut c2 = Client::starttls(s.starttls, "localhost").await;
    c2.auth_plain("juliet@localhost", "juliet", "pw")
        .await
        .unwrap();
    // Unknown mechanism.
    c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='DIGEST-MD5'/>")
        .await;
    assert_eq!(
        c.recv_xml().await,
        "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><invalid-mechanism/></failure>"
    );
    // Garbage.
    c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>bm90IHBsYWlu</auth>")
        .await;
    assert_eq!(
        c.recv_xml().await,
        "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><malformed-request/></failure>"
    );
    c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>!!!</auth>")
        .await;
    assert_eq!(
        c.recv_xml().await,
        "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><incorrect-encoding/></failure>"
    );
    // A response with no exchange in progress.
    c.send("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>=</response>")
        .await;
    assert_eq!(
        c.recv_xml().await,
        "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><malformed-request/></failure>"
    );
    // Abort in the middle of SCRAM.
    let mut c = Client::starttls(s.starttls, "localhost").await;
    let first = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        "n,,n=juliet,r=abc",
    );
    c.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>{first}</auth>"
    ))
    .await;
    assert_eq!(c.recv().await.name, "challenge");
    c.send("<abort xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
        .await;
    assert_eq!(
        c.recv_xml().await,
        "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><aborted/></failure>"
    );
    // After a failure the client may try again on the same stream.
    c.auth_plain("", "juliet", "pw").await.unwrap();
    // Too many failures end the stream.
    let mut c = Client::starttls(s.starttls, "localhost").await;
    for _ in 0..4 {
        assert!(c.auth_plain("", "juliet", "bad").await.is_err());
    }
    let msg = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "\0juliet\0bad");
    c.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{msg}</auth>"
    ))
    .await;
    assert_eq!(c.recv().await.name, "failure");
    c.expect_stream_error("policy-violation").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_with_empty_initial_response() {
    let s = TestServer::start();
    s.add_user("juliet", "pw");
    let mut c = Client::starttls(s.starttls, "localhost").await;
    c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>=</auth>")
        .await;
    assert_eq!(
        c.recv_xml().await,
        "<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>=</challenge>"
    );
    let msg = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "\0juliet\0pw");
    c.send(&format!(
        "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{msg}</response>"
    ))
    .await;
    assert_eq!(
        c.recv_xml().await,
        "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_chosen_generated_and_conflict() {
    let s = TestServer::start();
    s.add_user("juliet", "pw");
    let mut a = Client::starttls(s.starttls, "localhost").await;
    a.auth_scram("SCRAM-SHA-256", "juliet", "pw").await.unwrap();
    assert_eq!(a.bind(Some("balcony")).await, "juliet@localhost/balcony");
    let mut g = Client::starttls(s.starttls, "localhost").await;
    g.auth_scram("SCRAM-SHA-256", "juliet", "pw").await.unwrap();
    let generated = g.bind(None).await;
    assert!(
        generated.starts_with("juliet@localhost/") && generated.len() > "juliet@localhost/".len()
    );
    // The legacy session IQ is answered.
    g.send("<iq type='set' id='s1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>")
        .await;
    assert_eq!(g.recv().await.get_attr("type"), Some("result"));
    // A second bind of the same full JID replaces the first session.
    let mut b = Client::starttls(s.starttls, "localhost").await;
    b.auth_scram("SCRAM-SHA-256", "juliet", "pw").await.unwrap();
    assert_eq!(b.bind(Some("balcony")).await, "juliet@localhost/balcony");
    a.expect_stream_error("conflict").await;
    // The new session works.
    b.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    assert_eq!(
        b.recv_xml().await,
        "<iq type='result' id='p1' to='juliet@localhost/balcony'/>"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stanzas_before_bind() {
    let s = TestServer::start();
    s.add_user("juliet", "pw");
    let mut c = Client::starttls(s.starttls, "localhost").await;
    c.auth_scram("SCRAM-SHA-256", "juliet", "pw").await.unwrap();
    c.send("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    assert_eq!(
        error_condition(&c.recv().await).as_deref(),
        Some("not-allowed")
    );
    c.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>a\u{0007}b</resource></bind></iq>").await;
    // U+0007 is not even XML: the stream ends.
    c.expect_stream_error("not-well-formed").await;
    let mut c = Client::starttls(s.starttls, "localhost").await;
    c.auth_scram("SCRAM-SHA-256", "juliet", "pw").await.unwrap();
    c.send("<message to='juliet@localhost'><body>x</body></message>")
        .await;
    c.expect_stream_error("not-authorized").await;
}

/// The salt and iteration count a SCRAM server-first message shows for `user`.
async fn scram_salt(s: &TestServer, mech: &str, user: &str) -> (String, String) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut c = Client::starttls(s.starttls, "localhost").await;
    let first = b64.encode(format!("n,,n={user},r=abcdefgh"));
    c.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mech}'>{first}</auth>"
    ))
    .await;
    let ch = c.recv().await;
    assert_eq!(ch.name, "challenge");
    let sf = String::from_utf8(b64.decode(ch.text_content().trim()).unwrap()).unwrap();
    let attr = |k: &str| {
        sf.split(',')
            .find_map(|a| a.strip_prefix(k))
            .unwrap()
            .to_owned()
    };
    (attr("s="), attr("i="))
}

/// Issue 14.5: a name without an account cannot be told from a real one by its SCRAM
/// parameters: the same salt at every attempt (as a real account has), and the configured
/// iteration count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_users_show_a_stable_salt_and_the_configured_iterations() {
    let s = TestServer::start();
    s.add_user("juliet", "pw");
    for mech in ["SCRAM-SHA-1", "SCRAM-SHA-256"] {
        let real = scram_salt(&s, mech, "juliet").await;
        assert_eq!(real, scram_salt(&s, mech, "juliet").await);
        let (salt, iterations) = scram_salt(&s, mech, "nobody").await;
        assert_eq!(iterations, real.1);
        assert_eq!(
            iterations,
            s.shared().config.auth.scram_iterations.to_string()
        );
        assert_eq!(salt.len(), real.0.len());
        assert_eq!(
            (salt.clone(), iterations),
            scram_salt(&s, mech, "nobody").await
        );
        assert_ne!(salt, scram_salt(&s, mech, "somebody").await.0);
    }
}

/// Issue 14.9: what an older slixmpp (poezio in Debian) does on TLS 1.3 — SCRAM-*-PLUS with
/// `tls-unique`, then plain SCRAM with the `y` flag — is refused at once, each with
/// `not-authorized`, but neither counts as a failed login: no delay grows for the account or
/// the address. A wrong password does count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_channel_binding_is_not_a_failed_login() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let s = TestServer::start();
    s.add_user("juliet", "pw");
    let max = std::time::Duration::from_secs(60);
    let delay = |account: &str| s.shared().limiter.login_delay(None, account, max);
    let mut c = Client::starttls(s.starttls, "localhost").await;
    for (mech, gs2) in [
        ("SCRAM-SHA-1-PLUS", "p=tls-unique,,"),
        ("SCRAM-SHA-256-PLUS", "p=tls-unique,,"),
        ("SCRAM-SHA-1", "y,,"),
    ] {
        let first = b64.encode(format!("{gs2}n=juliet,r=abcdefgh"));
        c.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mech}'>{first}</auth>"
        ))
        .await;
        let f = c.recv().await;
        assert_eq!(f.name, "failure", "{mech}");
        assert!(f
            .get_child("not-authorized", "urn:ietf:params:xml:ns:xmpp-sasl")
            .is_some());
    }
    assert_eq!(delay("juliet"), std::time::Duration::ZERO);
    assert_eq!(delay(""), std::time::Duration::ZERO);
    c.auth_plain("", "juliet", "pw").await.unwrap();

    let mut c = Client::starttls(s.starttls, "localhost").await;
    assert!(c.auth_plain("", "juliet", "wrong").await.is_err());
    assert!(delay("juliet") > std::time::Duration::ZERO);
}
