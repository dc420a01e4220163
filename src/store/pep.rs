//! The `pep` tree: each account's personal eventing nodes (XEP-0163), data the client chooses
//! to publish (OMEMO keys, avatar, nickname, bookmarks, ...).
//!
//! `domain NUL user NUL node` -> JSON [`Node`]: the node's configuration, its items (oldest
//! first, each item the server's own serialisation of the payload it parsed), the affiliations
//! its owner gave and its explicit subscriptions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{account_key, StoreError};

/// One node.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Node {
    /// Who may see the items.
    pub access_model: AccessModel,
    /// Most items kept (the oldest go first).
    pub max_items: usize,
    /// Items, oldest first: (id, payload XML).
    pub items: Vec<(String, String)>,
    /// Whether the last item goes to interested contacts when they come online.
    #[serde(default)]
    pub send_last_published_item: SendLastPublished,
    /// Affiliations the owner gave (XEP-0060 §8.9): bare JID -> `member` (may see the node
    /// whatever its access model) or `outcast` (may not).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub affiliations: BTreeMap<String, Affiliation>,
    /// Explicit subscriptions (XEP-0060 §6.1): subscribed JID (bare or full) -> subscription id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub subscribers: BTreeMap<String, String>,
}

// The closed sets below have the same names on the wire and in the store (where serde writes
// them; a test checks that both agree): `crate::xmpp::named!` gives them `as_str`/`FromStr`.

/// Who may see a node's items (XEP-0060 §4.5). A new node's is `presence` (XEP-0163 §4.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessModel {
    /// Contacts with a presence subscription to the owner (`from` or `both`).
    #[default]
    Presence,
    /// Anyone.
    Open,
    /// Contacts in the owner's roster.
    Roster,
    /// Only the owner and the `member`s.
    Whitelist,
}

crate::xmpp::named!(AccessModel {
    Presence = "presence",
    Open = "open",
    Roster = "roster",
    Whitelist = "whitelist",
});

/// An entity's affiliation with a node (XEP-0060 §4.1). Only `member` and `outcast` are
/// stored; the owner is the account, `none` is the absence of one, and kleiber refuses the
/// publisher affiliations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Affiliation {
    Owner,
    Publisher,
    #[serde(rename = "publish-only")]
    PublishOnly,
    /// May see the node whatever its access model.
    Member,
    None,
    /// May not see the node.
    Outcast,
}

crate::xmpp::named!(Affiliation {
    Owner = "owner",
    Publisher = "publisher",
    PublishOnly = "publish-only",
    Member = "member",
    None = "none",
    Outcast = "outcast",
});

/// When the last item goes to a subscriber (XEP-0060 §16.4 `pubsub#send_last_published_item`).
/// kleiber sends it whenever an interested resource comes online, unless `never`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SendLastPublished {
    Never,
    OnSub,
    #[default]
    OnSubAndPresence,
}

crate::xmpp::named!(SendLastPublished {
    Never = "never",
    OnSub = "on_sub",
    OnSubAndPresence = "on_sub_and_presence",
});

impl Node {
    /// Bytes the node takes for the per-account quota: the owner's items and affiliations.
    /// Subscriptions are others' and are capped by count instead, so that strangers
    /// subscribing to an open node cannot use up its owner's quota.
    pub fn bytes(&self) -> usize {
        self.items
            .iter()
            .map(|(i, x)| i.len() + x.len())
            .chain(
                self.affiliations
                    .iter()
                    .map(|(j, a)| j.len() + a.as_str().len()),
            )
            .sum::<usize>()
            + 64
    }
}

/// Handle on the tree.
#[derive(Clone)]
pub struct Pep {
    tree: sled::Tree,
    space: std::sync::Arc<super::space::Space>,
}

fn node_key(domain: &str, user: &str, node: &str) -> Vec<u8> {
    let mut k = account_key(domain, user);
    k.push(0);
    k.extend_from_slice(node.as_bytes());
    k
}

fn decode(v: &[u8]) -> Result<Node, StoreError> {
    serde_json::from_slice(v).map_err(|e| StoreError::Corrupt(format!("pep node: {e}")))
}

impl Pep {
    pub(super) fn new(tree: sled::Tree, space: std::sync::Arc<super::space::Space>) -> Self {
        Pep { tree, space }
    }

    pub fn get(&self, domain: &str, user: &str, node: &str) -> Result<Option<Node>, StoreError> {
        self.tree
            .get(node_key(domain, user, node))?
            .map(|v| decode(&v))
            .transpose()
    }

    pub fn put(&self, domain: &str, user: &str, node: &str, n: &Node) -> Result<(), StoreError> {
        self.space.check()?;
        let v = serde_json::to_vec(n).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.tree.insert(node_key(domain, user, node), v)?;
        Ok(())
    }

    pub fn delete(&self, domain: &str, user: &str, node: &str) -> Result<bool, StoreError> {
        Ok(self.tree.remove(node_key(domain, user, node))?.is_some())
    }

    /// Every node of the account, by name.
    pub fn nodes(&self, domain: &str, user: &str) -> Result<Vec<(String, Node)>, StoreError> {
        let mut p = account_key(domain, user);
        p.push(0);
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(&p) {
            let (k, v) = kv?;
            let name = String::from_utf8_lossy(&k[p.len()..]).into_owned();
            out.push((name, decode(&v)?));
        }
        Ok(out)
    }

    /// Bytes the account's nodes take.
    pub fn bytes(&self, domain: &str, user: &str) -> Result<usize, StoreError> {
        Ok(self
            .nodes(domain, user)?
            .iter()
            .map(|(n, node)| n.len() + node.bytes())
            .sum())
    }

    /// Remove the affiliations and subscriptions of the bare JIDs `jids` (and of their full
    /// JIDs) from every node, for accounts being deleted. One pass over the tree; only nodes
    /// that have affiliations or subscriptions at all are decoded. Returns how many nodes
    /// changed.
    pub fn forget(&self, jids: &std::collections::HashSet<String>) -> Result<usize, StoreError> {
        if jids.is_empty() {
            return Ok(0);
        }
        let named = |j: &str| jids.contains(crate::xmpp::bare_part(j));
        let mut changed = 0;
        for kv in self.tree.iter() {
            let (k, mut old) = kv?;
            let has = |v: &[u8], what: &[u8]| v.windows(what.len()).any(|w| w == what);
            // A compare-and-swap, so that a concurrent write of the node is not lost.
            loop {
                if !has(&old, b"\"affiliations\"") && !has(&old, b"\"subscribers\"") {
                    break;
                }
                let mut node = decode(&old)?;
                let before = (node.affiliations.len(), node.subscribers.len());
                node.affiliations.retain(|j, _| !named(j));
                node.subscribers.retain(|j, _| !named(j));
                if before == (node.affiliations.len(), node.subscribers.len()) {
                    break;
                }
                let new =
                    serde_json::to_vec(&node).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                match self.tree.compare_and_swap(&k, Some(&old), Some(new))? {
                    Ok(()) => {
                        changed += 1;
                        break;
                    }
                    Err(e) => match e.current {
                        Some(cur) => old = cur,
                        None => break,
                    },
                }
            }
        }
        Ok(changed)
    }

    /// Remove everything of an account.
    pub fn remove_account(&self, domain: &str, user: &str) -> Result<(), StoreError> {
        let mut p = account_key(domain, user);
        p.push(0);
        for k in self.tree.scan_prefix(&p).keys() {
            self.tree.remove(k?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node as the store has written it since PEP was added (the names were strings then).
    const STORED: &str = r#"{"access_model":"whitelist","max_items":1,"items":[["1","<x xmlns='urn:example'/>"]],"send_last_published_item":"never","affiliations":{"a@x":"member","b@x":"outcast"},"subscribers":{"a@x/r":"s1"}}"#;

    #[test]
    fn stored_nodes_load_and_are_written_byte_for_byte_the_same() {
        let n = decode(STORED.as_bytes()).unwrap();
        assert_eq!(n.access_model, AccessModel::Whitelist);
        assert_eq!(n.send_last_published_item, SendLastPublished::Never);
        assert_eq!(n.affiliations["a@x"], Affiliation::Member);
        assert_eq!(n.affiliations["b@x"], Affiliation::Outcast);
        assert_eq!(serde_json::to_string(&n).unwrap(), STORED);
        // Nodes stored before `send_last_published_item` existed.
        let old = r#"{"access_model":"open","max_items":1,"items":[]}"#;
        let n = decode(old.as_bytes()).unwrap();
        assert_eq!(
            n.send_last_published_item,
            SendLastPublished::OnSubAndPresence
        );
    }

    #[test]
    fn the_stored_names_are_the_wire_names() {
        fn check<T>(all: &[T], name: impl Fn(&T) -> &'static str)
        where
            T: Serialize + std::str::FromStr + PartialEq + std::fmt::Debug,
            T::Err: std::fmt::Debug,
        {
            for v in all {
                let n = name(v);
                assert_eq!(serde_json::to_string(v).unwrap(), format!("\"{n}\""));
                assert_eq!(&n.parse::<T>().unwrap(), v);
            }
        }
        check(AccessModel::ALL, |v| v.as_str());
        check(Affiliation::ALL, |v| v.as_str());
        check(SendLastPublished::ALL, |v| v.as_str());
        assert!("authorize".parse::<AccessModel>().is_err());
        assert!("Open".parse::<AccessModel>().is_err());
    }
}
