//! The `push` tree: the app servers an account's clients registered for XEP-0357 push
//! notifications.
//!
//! `domain NUL user NUL app server JID NUL node` -> JSON [`Registration`]: the app server's
//! JID and node, the publish-options form fields the client gave (typically a `secret` the
//! app server checks), and when it was registered. At most `push.max_per_account` per account:
//! a new registration beyond that replaces the oldest. Written only by the push actor
//! (`actors/push.rs`); removed by the client's `disable`, when the app server says the
//! registration is gone, and with the account.

use serde::{Deserialize, Serialize};

use super::{account_key, StoreError};

/// One registration (XEP-0357 §5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// Record format version (1).
    pub v: u32,
    /// The app server's JID.
    pub jid: String,
    /// The node on the app server (the client's device token lives behind it).
    pub node: String,
    /// The publish-options form the client gave (without `FORM_TYPE`).
    pub options: PublishOptions,
    /// When it was registered (seconds since the epoch).
    pub registered: u64,
}

/// The publish-options fields of a registration, in order: field name and values. They
/// usually hold a `secret` that lets anyone who has it send pushes to the device, so they
/// cannot be printed (no `Display`, a `Debug` that shows only how many fields there are).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PublishOptions(pub Vec<(String, Vec<String>)>);

impl std::fmt::Debug for PublishOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublishOptions({} fields)", self.0.len())
    }
}

/// Handle on the tree.
#[derive(Clone)]
pub struct Push {
    tree: sled::Tree,
    space: std::sync::Arc<super::space::Space>,
}

fn prefix(domain: &str, user: &str) -> Vec<u8> {
    let mut k = account_key(domain, user);
    k.push(0);
    k
}

fn key(domain: &str, user: &str, jid: &str, node: &str) -> Vec<u8> {
    let mut k = prefix(domain, user);
    k.extend_from_slice(jid.as_bytes());
    k.push(0);
    k.extend_from_slice(node.as_bytes());
    k
}

fn decode(v: &[u8]) -> Result<Registration, StoreError> {
    serde_json::from_slice(v).map_err(|e| StoreError::Corrupt(format!("push registration: {e}")))
}

impl Push {
    pub(super) fn new(tree: sled::Tree, space: std::sync::Arc<super::space::Space>) -> Self {
        Push { tree, space }
    }

    /// Every registration of the account, oldest first.
    pub fn list(&self, domain: &str, user: &str) -> Result<Vec<Registration>, StoreError> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(prefix(domain, user)) {
            out.push(decode(&kv?.1)?);
        }
        out.sort_by_key(|r| r.registered);
        Ok(out)
    }

    /// Store `reg` (replacing one for the same app server and node); when the account then
    /// holds more than `max`, the oldest others go. Returns how many were replaced that way.
    pub fn put(
        &self,
        domain: &str,
        user: &str,
        reg: &Registration,
        max: usize,
    ) -> Result<usize, StoreError> {
        self.space.check()?;
        let k = key(domain, user, &reg.jid, &reg.node);
        let others: Vec<Registration> = self
            .list(domain, user)?
            .into_iter()
            .filter(|r| (r.jid.as_str(), r.node.as_str()) != (reg.jid.as_str(), reg.node.as_str()))
            .collect();
        let extra = (others.len() + 1).saturating_sub(max.max(1));
        for old in &others[..extra] {
            self.tree.remove(key(domain, user, &old.jid, &old.node))?;
        }
        let v = serde_json::to_vec(reg).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.tree.insert(k, v)?;
        Ok(extra)
    }

    /// Remove the registrations with the app server `jid` (only the one of `node`, if given);
    /// returns how many there were.
    pub fn remove(
        &self,
        domain: &str,
        user: &str,
        jid: &str,
        node: Option<&str>,
    ) -> Result<usize, StoreError> {
        let mut n = 0;
        for r in self.list(domain, user)? {
            if r.jid == jid && node.is_none_or(|node| node == r.node) {
                n += self
                    .tree
                    .remove(key(domain, user, &r.jid, &r.node))?
                    .is_some() as usize;
            }
        }
        Ok(n)
    }

    /// Remove everything of an account.
    pub fn remove_account(&self, domain: &str, user: &str) -> Result<(), StoreError> {
        for k in self.tree.scan_prefix(prefix(domain, user)).keys() {
            self.tree.remove(k?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(jid: &str, node: &str, registered: u64) -> Registration {
        Registration {
            v: 1,
            jid: jid.into(),
            node: node.into(),
            options: PublishOptions(vec![("secret".into(), vec!["s3".into()])]),
            registered,
        }
    }

    #[test]
    fn oldest_goes_beyond_the_limit_and_disable_by_jid_or_node() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(dir.path()).unwrap();
        let p = &store.push;
        assert_eq!(
            p.put("x", "a", &reg("push.example", "n1", 1), 2).unwrap(),
            0
        );
        assert_eq!(
            p.put("x", "a", &reg("push.example", "n2", 2), 2).unwrap(),
            0
        );
        // The same app server and node again: replaced, nothing else goes.
        assert_eq!(
            p.put("x", "a", &reg("push.example", "n2", 3), 2).unwrap(),
            0
        );
        assert_eq!(
            p.put("x", "a", &reg("other.example", "n", 4), 2).unwrap(),
            1
        );
        let nodes: Vec<String> = p
            .list("x", "a")
            .unwrap()
            .into_iter()
            .map(|r| r.node)
            .collect();
        assert_eq!(nodes, ["n2", "n"]);
        p.put("x", "ab", &reg("push.example", "n1", 1), 2).unwrap();
        assert_eq!(p.remove("x", "a", "push.example", Some("nope")).unwrap(), 0);
        assert_eq!(p.remove("x", "a", "push.example", None).unwrap(), 1);
        p.remove_account("x", "a").unwrap();
        assert!(p.list("x", "a").unwrap().is_empty());
        // Another account whose name starts with the same letters keeps its own.
        assert_eq!(p.list("x", "ab").unwrap().len(), 1);
    }

    #[test]
    fn stored_records_load() {
        let stored = r#"{"v":1,"jid":"push.example","node":"n","options":[["secret",["s"]]],"registered":5}"#;
        let r = decode(stored.as_bytes()).unwrap();
        assert_eq!(r.options.0[0].1, ["s"]);
        assert_eq!(format!("{:?}", r.options), "PublishOptions(1 fields)");
        assert_eq!(serde_json::to_string(&r).unwrap(), stored);
    }
}
