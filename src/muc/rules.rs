//! Who may do what in a room (XEP-0045 §5 and the tables of §8–§10): the role a user gets on
//! entering, and whether an occupant may change another's role or a user's affiliation. Every
//! decision returns the stanza error the XEP prescribes.

use super::{Affiliation, Role, RoomConfig};
use crate::xmpp::{Condition, StanzaError};

/// The role a user with affiliation `a` gets on entering.
pub fn default_role(a: Affiliation, cfg: &RoomConfig) -> Role {
    match a {
        Affiliation::Owner | Affiliation::Admin => Role::Moderator,
        Affiliation::Member => Role::Participant,
        Affiliation::None if cfg.moderated => Role::Visitor,
        Affiliation::None => Role::Participant,
        Affiliation::Outcast => Role::None,
    }
}

/// Why a user may not enter, if so (XEP-0045 §7.2.5–§7.2.9); `occupants` counts the
/// occupants already there. A wrong password comes first for those who may enter otherwise.
pub fn may_enter(
    a: Affiliation,
    cfg: &RoomConfig,
    password: Option<&str>,
    occupants: usize,
) -> Result<(), StanzaError> {
    if a == Affiliation::Outcast {
        return Err(StanzaError::new(Condition::Forbidden).with_text("you are banned"));
    }
    if cfg.members_only && a < Affiliation::Member {
        return Err(StanzaError::new(Condition::RegistrationRequired)
            .with_text("this room is for members only"));
    }
    if !cfg.password.is_empty() && a < Affiliation::Admin && password != Some(&cfg.password) {
        return Err(StanzaError::new(Condition::NotAuthorized).with_text("a password is required"));
    }
    if occupants >= cfg.max_users && a < Affiliation::Admin {
        let mut e = StanzaError::new(Condition::ServiceUnavailable).with_text("the room is full");
        e.kind = crate::xmpp::ErrorType::Wait;
        return Err(e);
    }
    Ok(())
}

fn not_allowed(text: &str) -> StanzaError {
    StanzaError::new(Condition::NotAllowed).with_text(text)
}

fn forbidden(text: &str) -> StanzaError {
    StanzaError::new(Condition::Forbidden).with_text(text)
}

/// May an occupant (`actor` role and affiliation) give `target` (current role and
/// affiliation) the role `new`? (XEP-0045 §8.2–§8.5, §9.6–§9.7.)
pub fn may_set_role(
    actor: (Role, Affiliation),
    target: (Role, Affiliation),
    new: Role,
) -> Result<(), StanzaError> {
    if actor.0 < Role::Moderator {
        return Err(forbidden("only moderators may change roles"));
    }
    // Nobody's role can be lowered by someone of lower affiliation, and admins and owners
    // keep their moderator role whatever a moderator does.
    if new < target.0 && target.1 >= Affiliation::Admin {
        return Err(not_allowed("admins and owners keep their role"));
    }
    if target.1 > actor.1 && new < target.0 {
        return Err(not_allowed(
            "the occupant's affiliation is higher than yours",
        ));
    }
    let moderator_change = new == Role::Moderator || target.0 == Role::Moderator;
    if moderator_change && actor.1 < Affiliation::Admin {
        return Err(forbidden("only admins may grant or revoke moderation"));
    }
    Ok(())
}

/// May a user with affiliation `actor` change `target`'s affiliation to `new`? (XEP-0045 §9,
/// §10; that a room keeps an owner is [`keeps_an_owner`].)
pub fn may_set_affiliation(
    actor: Affiliation,
    target: Affiliation,
    new: Affiliation,
) -> Result<(), StanzaError> {
    match actor {
        Affiliation::Owner => Ok(()),
        Affiliation::Admin if target < Affiliation::Admin && new < Affiliation::Admin => Ok(()),
        Affiliation::Admin => Err(not_allowed("only owners may change admins and owners")),
        _ => Err(forbidden("only admins and owners may change affiliations")),
    }
}

/// A room needs an owner (§10.6): `owners_after` counts them once all the changes of a
/// request are made, so that handing a room over in one request works.
pub fn keeps_an_owner(owners_after: usize) -> Result<(), StanzaError> {
    if owners_after == 0 {
        return Err(
            StanzaError::new(Condition::Conflict).with_text("a room needs at least one owner")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use Affiliation as A;
    use Role as R;

    #[test]
    fn roles() {
        let mod_admin = (R::Moderator, A::Admin);
        let mod_none = (R::Moderator, A::None);
        // A moderator kicks a participant, not an admin.
        assert!(may_set_role(mod_none, (R::Participant, A::None), R::None).is_ok());
        assert!(may_set_role(mod_none, (R::Moderator, A::Admin), R::None).is_err());
        // Voice: any moderator; moderation: admins.
        assert!(may_set_role(mod_none, (R::Visitor, A::None), R::Participant).is_ok());
        assert!(may_set_role(mod_none, (R::Participant, A::None), R::Moderator).is_err());
        assert!(may_set_role(mod_admin, (R::Participant, A::None), R::Moderator).is_ok());
        assert!(may_set_role(mod_admin, (R::Moderator, A::None), R::Participant).is_ok());
        // Participants cannot kick.
        let part = (R::Participant, A::Member);
        let e = may_set_role(part, (R::Participant, A::None), R::None).unwrap_err();
        assert_eq!(e.condition, Condition::Forbidden);
    }

    #[test]
    fn affiliations() {
        assert!(may_set_affiliation(A::Owner, A::None, A::Admin).is_ok());
        assert!(may_set_affiliation(A::Owner, A::Owner, A::Member).is_ok());
        assert_eq!(
            keeps_an_owner(0).unwrap_err().condition,
            Condition::Conflict
        );
        assert!(keeps_an_owner(1).is_ok());
        assert!(may_set_affiliation(A::Admin, A::Member, A::Outcast).is_ok());
        assert!(may_set_affiliation(A::Admin, A::Admin, A::None).is_err());
        assert!(may_set_affiliation(A::Admin, A::None, A::Owner).is_err());
        assert!(may_set_affiliation(A::Member, A::None, A::Member).is_err());
    }

    #[test]
    fn entering() {
        let mut cfg = RoomConfig::default();
        assert!(may_enter(A::None, &cfg, None, 0).is_ok());
        assert!(may_enter(A::Outcast, &cfg, None, 0).is_err());
        cfg.members_only = true;
        assert_eq!(
            may_enter(A::None, &cfg, None, 0).unwrap_err().condition,
            Condition::RegistrationRequired
        );
        cfg.members_only = false;
        cfg.password = "s".into();
        assert_eq!(
            may_enter(A::Member, &cfg, Some("x"), 0)
                .unwrap_err()
                .condition,
            Condition::NotAuthorized
        );
        assert!(may_enter(A::Member, &cfg, Some("s"), 0).is_ok());
        cfg.max_users = 1;
        assert!(may_enter(A::Member, &cfg, Some("s"), 1).is_err());
        assert!(may_enter(A::Owner, &cfg, None, 1).is_ok());
    }
}
