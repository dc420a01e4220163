//! Group chat (XEP-0045), the pure part: affiliations and roles with the rules of who may
//! change whose ([`rules`]), a room's configuration and its `muc#roomconfig` form ([`form`]),
//! the discussion history kept in memory ([`history`]) and the presence and status-code
//! vocabulary ([`presence`]). No actors and no storage here: the room actors in
//! `actors/muc/` drive these, and `store/muc.rs` persists [`RoomRecord`]s.

pub mod form;
pub mod history;
pub mod presence;
pub mod rules;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const NS_MUC: &str = "http://jabber.org/protocol/muc";
pub const NS_USER: &str = "http://jabber.org/protocol/muc#user";
pub const NS_ADMIN: &str = "http://jabber.org/protocol/muc#admin";
pub const NS_OWNER: &str = "http://jabber.org/protocol/muc#owner";
pub const ROOMCONFIG: &str = "http://jabber.org/protocol/muc#roomconfig";
pub const ROOMINFO: &str = "http://jabber.org/protocol/muc#roominfo";
pub const REQUEST: &str = "http://jabber.org/protocol/muc#request";
pub const OCCUPANT_ID: &str = "urn:xmpp:occupant-id:0";
pub const SELF_PING: &str = "http://jabber.org/protocol/muc#self-ping-optimization";
pub const DELAY: &str = "urn:xmpp:delay";

/// A user's long-lived standing in a room (XEP-0045 §5.2), lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Affiliation {
    Outcast,
    None,
    Member,
    Admin,
    Owner,
}

crate::xmpp::named!(Affiliation {
    Outcast = "outcast",
    None = "none",
    Member = "member",
    Admin = "admin",
    Owner = "owner",
});

/// An occupant's standing while in the room (XEP-0045 §5.1), lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    None,
    Visitor,
    Participant,
    Moderator,
}

crate::xmpp::named!(Role {
    None = "none",
    Visitor = "visitor",
    Participant = "participant",
    Moderator = "moderator",
});

/// Who may send private messages through the room (`muc#roomconfig_allowpm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AllowPm {
    Anyone,
    Participants,
    Moderators,
    None,
}

impl AllowPm {
    /// May an occupant with `role` send a private message?
    pub fn allows(self, role: Role) -> bool {
        match self {
            AllowPm::Anyone => true,
            AllowPm::Participants => role >= Role::Participant,
            AllowPm::Moderators => role >= Role::Moderator,
            AllowPm::None => false,
        }
    }
}

crate::xmpp::named!(AllowPm {
    Anyone = "anyone",
    Participants = "participants",
    Moderators = "moderators",
    None = "none",
});

/// A room's configuration (`muc#roomconfig`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoomConfig {
    pub name: String,
    pub description: String,
    pub language: String,
    /// Kept when the last occupant leaves (and across restarts).
    pub persistent: bool,
    /// Listed in the service's disco#items.
    pub public: bool,
    pub members_only: bool,
    /// Only occupants with voice (participants and moderators) may talk.
    pub moderated: bool,
    /// The room's password; empty: none.
    pub password: String,
    /// Everyone sees occupants' real JIDs (non-anonymous); otherwise moderators only.
    pub whois_anyone: bool,
    pub max_users: usize,
    /// Participants (not only moderators) may change the subject.
    pub change_subject: bool,
    /// Occupants (not only admins) may invite others; invitees become members of a
    /// members-only room.
    pub allow_invites: bool,
    pub allow_pm: AllowPm,
    /// The owner turned the message archive on (`muc#roomconfig_enablearchiving`; only
    /// offered when the operator allows room archives).
    pub archive: bool,
}

impl Default for RoomConfig {
    fn default() -> Self {
        RoomConfig {
            name: String::new(),
            description: String::new(),
            language: String::new(),
            persistent: false,
            public: true,
            members_only: false,
            moderated: false,
            password: String::new(),
            whois_anyone: false,
            max_users: 200,
            change_subject: false,
            allow_invites: false,
            allow_pm: AllowPm::Anyone,
            archive: false,
        }
    }
}

/// What is kept of a room: its configuration, affiliations and subject. Occupants and history
/// are never stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoomRecord {
    pub config: RoomConfig,
    /// Bare JID -> affiliation other than `none`.
    pub affiliations: BTreeMap<String, Affiliation>,
    /// The subject and the nick that set it.
    pub subject: String,
    pub subject_by: String,
    /// When someone last entered the room (seconds since the epoch), for the scheduler's
    /// removal of unused rooms.
    pub last_used: u64,
}

impl RoomRecord {
    /// `jid`'s affiliation: its own, or `outcast` when its whole domain is banned (XEP-0045
    /// §9.1 allows banning a domain).
    pub fn affiliation(&self, bare: &str) -> Affiliation {
        if let Some(a) = self.affiliations.get(bare) {
            return *a;
        }
        match self.affiliations.get(crate::xmpp::domain_part(bare)) {
            Some(Affiliation::Outcast) => Affiliation::Outcast,
            _ => Affiliation::None,
        }
    }

    /// Set `jid`'s affiliation (`none` removes the entry).
    pub fn set_affiliation(&mut self, bare: &str, a: Affiliation) {
        if a == Affiliation::None {
            self.affiliations.remove(bare);
        } else {
            self.affiliations.insert(bare.to_owned(), a);
        }
    }

    /// The owners' bare JIDs.
    pub fn owners(&self) -> impl Iterator<Item = &str> {
        self.affiliations
            .iter()
            .filter(|(_, a)| **a == Affiliation::Owner)
            .map(|(j, _)| j.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_are_the_wire_names() {
        for a in Affiliation::ALL {
            assert_eq!(
                serde_json::to_string(a).unwrap(),
                format!("\"{}\"", a.as_str())
            );
            assert_eq!(a.as_str().parse::<Affiliation>(), Ok(*a));
        }
        for p in AllowPm::ALL {
            assert_eq!(
                serde_json::to_string(p).unwrap(),
                format!("\"{}\"", p.as_str())
            );
        }
        assert!("king".parse::<Role>().is_err());
        assert!(Affiliation::Owner > Affiliation::Admin && Role::Moderator > Role::Visitor);
    }
}
