//! XEP-0012: Last Activity. To the server: its uptime. To an account: seconds since its last
//! logout (0 while logged in), only for the owner and contacts allowed to see its presence
//! (`from`/`both`); everyone else gets `forbidden`, a blocked entity `service-unavailable`.

use crate::store::Store;
use crate::xml::Element;
use crate::xmpp::{BareJid, Condition, StanzaError};

pub const NS: &str = "jabber:iq:last";

fn query(seconds: u64) -> Element {
    Element::new("query", NS).attr("seconds", seconds.to_string())
}

/// The server's uptime.
pub fn server(uptime: std::time::Duration) -> Element {
    query(uptime.as_secs())
}

/// `target`'s last activity as `requester` may see it.
pub fn account(
    store: &Store,
    requester: &BareJid,
    target: &BareJid,
) -> Result<Option<Element>, StanzaError> {
    let (d, u) = (
        target.domain().as_str(),
        target.node().map(|n| n.as_str()).unwrap_or_default(),
    );
    let internal = |e: crate::store::StoreError| {
        log::error!("last activity lookup failed: {e}");
        StanzaError::from(Condition::InternalServerError)
    };
    if requester != target {
        // XEP-0191 §3.4: a blocked entity learns nothing, as if the account did not exist.
        if store
            .rosters
            .is_blocked(d, u, requester.as_str())
            .map_err(internal)?
        {
            return Err(Condition::ServiceUnavailable.into());
        }
        let allowed = store
            .rosters
            .get(d, u, requester.as_str())
            .map_err(internal)?
            .is_some_and(|i| i.from);
        if !allowed {
            return Err(Condition::Forbidden.into());
        }
    }
    let Some(rec) = store.accounts.get(d, u).map_err(internal)? else {
        return Err(Condition::ServiceUnavailable.into());
    };
    let seconds = if rec.last_login >= rec.last_logout {
        0
    } else {
        crate::store::now_secs().saturating_sub(rec.last_logout)
    };
    Ok(Some(query(seconds)))
}
