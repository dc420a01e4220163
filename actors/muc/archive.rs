//! A room's message archive (XEP-0313 on rooms), when the operator allows room archives
//! (`archive.rooms`) and the owner turned it on (`muc#roomconfig_enablearchiving`): group
//! messages with a body are stamped with the room's stanza id (XEP-0359) and kept as the
//! occupants saw them (from the occupant's room JID, never a real JID) for
//! `archive.retention_days`; the archive goes with the room. Anyone who may enter the room
//! (members and above in a members-only room; never outcasts) may query it.

use super::room::Room;
use crate::muc::Affiliation;
use crate::services::mam;
use crate::store::archive::{owner_of, Entry};
use crate::xml::Element;
use crate::xmpp::{error_reply, ns, Condition, StanzaError};

impl Room {
    /// The operator allows room archives.
    pub(super) fn archives_offered(&self) -> bool {
        self.env.shared.config.archive.rooms
    }

    /// This room archives its messages now.
    pub(super) fn archiving(&self) -> bool {
        self.archives_offered() && self.rec.config.archive
    }

    /// Stamp a group message from `nick` with its stanza id and archive it, if the room
    /// archives and the message is one to keep.
    pub(super) fn archive_message(&self, m: &mut Element, nick: &str) {
        if !self.archiving() || !mam::archivable_groupchat(m) {
            return;
        }
        let store = &self.env.store;
        let id = store.archive.next_id();
        mam::stamp(m, &self.jid, id);
        let entry = Entry {
            id,
            with: self.occupant_jid(nick),
            outgoing: false,
            xml: m.to_xml(ns::CLIENT),
        };
        let (domain, node) = owner_of(&self.jid);
        if !store.archive.try_append(domain, node, &entry) {
            mam::strip_stanza_ids(m, &self.jid);
        }
    }

    /// A query of the room's archive by `real` (a bare JID).
    pub(super) fn mam_iq(&self, real: &str, iq: &Element) {
        let aff = self.affiliation(real);
        let allowed = aff > Affiliation::Outcast
            && (!self.rec.config.members_only || aff >= Affiliation::Member);
        if !allowed {
            let e = StanzaError::new(Condition::Forbidden)
                .with_text("only those who may enter the room may read its archive");
            if let Some(r) = error_reply(iq, &e) {
                self.env.send(r);
            }
            return;
        }
        let (domain, node) = owner_of(&self.jid);
        let archive = mam::Archive {
            store: &self.env.store,
            domain,
            node,
            from: Some(&self.jid),
            max_page: self.env.shared.config.archive.max_page_size,
        };
        for out in mam::answer(&archive, iq) {
            let mut out = out;
            if out.get_attr("from").is_none() {
                out.set_attr("from", self.jid.as_str());
            }
            self.env.send(out);
        }
    }
}
