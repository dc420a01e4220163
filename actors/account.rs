//! Deleting accounts: the one path that in-band cancellation (XEP-0077), `kleiber user del`
//! (through the control socket, or on the data directory of a stopped server) and the
//! inactivity sweep all take, in the same order:
//!
//! 1. the account's contacts are sent `unsubscribe`/`unsubscribed` (RFC 6121 §3) by the
//!    roster store, which then removes the roster (running server only);
//! 2. every session of the account is closed (running server only; an in-band canceller's
//!    own connection answers its IQ first: it waits for this function before it reads its
//!    mailbox again);
//! 3. the store's part, [`crate::store::Store::delete_accounts`]: name block, local
//!    contacts' rosters (what step 1 did, for a stopped server), every record of the
//!    account, its PEP affiliations and subscriptions on other accounts' nodes, its
//!    delivery-error entries.

use actix::prelude::*;

use super::directory::RouterHandle;
use super::messages::{CloseAccount, DeleteRoster};
use crate::store::{Store, StoreError};
use crate::xmpp::BareJid;

/// What a running server tells when an account goes.
#[derive(Clone)]
pub struct Live {
    pub delete_roster: Recipient<DeleteRoster>,
    pub close_account: Recipient<CloseAccount>,
}

impl From<&RouterHandle> for Live {
    fn from(h: &RouterHandle) -> Live {
        Live {
            delete_roster: h.roster.delete.clone(),
            close_account: h.close_account.clone(),
        }
    }
}

/// Delete the accounts `jids` with everything stored for them; `live` is `None` when no
/// server runs (the CLI on a stopped server). Returns how many of them existed. Logs no JID
/// above `debug`.
pub async fn delete(
    store: &Store,
    live: Option<&Live>,
    jids: Vec<BareJid>,
) -> Result<usize, StoreError> {
    let mut keys = Vec::with_capacity(jids.len());
    for jid in jids {
        if let Some(l) = live {
            let _ = l
                .delete_roster
                .send(DeleteRoster { user: jid.clone() })
                .await;
            l.close_account.do_send(CloseAccount { jid: jid.clone() });
        }
        log::debug!("deleting account {jid}");
        let user = jid
            .node()
            .map(|n| n.as_str().to_owned())
            .unwrap_or_default();
        keys.push((jid.domain().as_str().to_owned(), user));
    }
    let store = store.clone();
    crate::shared::blocking(move || store.delete_accounts(&keys)).await
}
