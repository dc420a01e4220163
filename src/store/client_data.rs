//! The `vcard` and `private` trees: data the client chooses to store, public (vCard-temp,
//! XEP-0054) or private (XEP-0049 private XML storage: bookmarks, client settings).
//!
//! - `vcard`: `domain NUL user` -> the `<vCard/>` element's XML.
//! - `private`: `domain NUL user NUL namespace` -> the stored element's XML.
//!
//! Values are the server's own re-serialisation of elements it parsed. Each account's keys
//! are written only by that account's sessions.

use super::{account_key, StoreError};

/// Handles on the client-data trees.
#[derive(Clone)]
pub struct ClientData {
    vcards: sled::Tree,
    private: sled::Tree,
    space: std::sync::Arc<super::space::Space>,
}

fn private_key(domain: &str, user: &str, ns: &str) -> Vec<u8> {
    let mut k = account_key(domain, user);
    k.push(0);
    k.extend_from_slice(ns.as_bytes());
    k
}

impl ClientData {
    pub(super) fn new(
        vcards: sled::Tree,
        private: sled::Tree,
        space: std::sync::Arc<super::space::Space>,
    ) -> Self {
        ClientData {
            vcards,
            private,
            space,
        }
    }

    /// The stored vCard XML.
    pub fn vcard(&self, domain: &str, user: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .vcards
            .get(account_key(domain, user))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Replace the vCard (an empty `xml` removes it).
    pub fn set_vcard(&self, domain: &str, user: &str, xml: &str) -> Result<(), StoreError> {
        let k = account_key(domain, user);
        if xml.is_empty() {
            self.vcards.remove(k)?;
        } else {
            self.space.check()?;
            self.vcards.insert(k, xml.as_bytes())?;
        }
        Ok(())
    }

    /// The private document stored under `ns`.
    pub fn private(
        &self,
        domain: &str,
        user: &str,
        ns: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .private
            .get(private_key(domain, user, ns))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Store the private document for `ns`.
    pub fn set_private(
        &self,
        domain: &str,
        user: &str,
        ns: &str,
        xml: &str,
    ) -> Result<(), StoreError> {
        self.space.check()?;
        self.private
            .insert(private_key(domain, user, ns), xml.as_bytes())?;
        Ok(())
    }

    /// Total bytes of the account's private documents (for the quota).
    pub fn private_bytes(&self, domain: &str, user: &str) -> Result<usize, StoreError> {
        let mut p = account_key(domain, user);
        p.push(0);
        let mut n = 0;
        for kv in self.private.scan_prefix(&p) {
            n += kv?.1.len();
        }
        Ok(n)
    }

    /// Remove everything of an account.
    pub fn remove_account(&self, domain: &str, user: &str) -> Result<(), StoreError> {
        self.vcards.remove(account_key(domain, user))?;
        let mut p = account_key(domain, user);
        p.push(0);
        for kv in self.private.scan_prefix(&p) {
            self.private.remove(kv?.0)?;
        }
        Ok(())
    }
}
