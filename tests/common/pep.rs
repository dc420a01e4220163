//! Helpers for PEP tests: clients with XEP-0115 caps that answer the server's caps query.

use super::fed::wait_for;
use super::*;
use kleiber::xml::Element;

/// The disco#info a test client claims, wanting notifications for `notify`.
pub fn client_info(notify: &[&str]) -> Element {
    let mut q = Element::new("query", "http://jabber.org/protocol/disco#info").child(
        Element::new("identity", "http://jabber.org/protocol/disco#info")
            .attr("category", "client")
            .attr("type", "pc")
            .attr("name", "kleiber-test"),
    );
    let mut features = vec![
        "http://jabber.org/protocol/caps".to_owned(),
        "http://jabber.org/protocol/disco#info".to_owned(),
    ];
    features.extend(notify.iter().map(|n| format!("{n}+notify")));
    for f in features {
        q = q
            .child(Element::new("feature", "http://jabber.org/protocol/disco#info").attr("var", f));
    }
    q
}

/// Log in on localhost with initial presence carrying caps for `notify`; the server's caps
/// query (if it asks: a known version is not asked again) is left to [`answer_caps`].
pub async fn online_with_caps(
    s: &TestServer,
    user: &str,
    resource: &str,
    notify: &[&str],
) -> Client {
    login_with_caps(s.starttls, "localhost", user, resource, notify).await
}

/// Answer the caps query if it comes (skipping other stanzas until then).
pub async fn answer_caps(c: &mut Client, notify: &[&str]) {
    let q = wait_for(c, |e| {
        e.name == "iq"
            && e.get_attr("type") == Some("get")
            && e.get_child("query", "http://jabber.org/protocol/disco#info")
                .is_some()
    })
    .await;
    let mut info = client_info(notify);
    if let Some(node) = q
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .and_then(|q| q.get_attr("node"))
    {
        info.set_attr("node", node);
    }
    c.send(&format!(
        "<iq type='result' id='{}' to='{}'>{}</iq>",
        q.get_attr("id").unwrap(),
        q.get_attr("from").unwrap(),
        info.to_xml("jabber:client")
    ))
    .await;
}

/// Log in as `user@domain/resource` with caps for `notify` in the initial presence.
pub async fn login_with_caps(
    addr: SocketAddr,
    domain: &str,
    user: &str,
    resource: &str,
    notify: &[&str],
) -> Client {
    let ver = kleiber::services::disco::caps_ver(&client_info(notify));
    let mut c = Client::starttls(addr, domain).await;
    c.auth_scram("SCRAM-SHA-256", user, "pw").await.unwrap();
    c.bind(Some(resource)).await;
    c.send(&format!(
        "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://kleiber.test' ver='{ver}'/></presence>"
    ))
    .await;
    c
}
