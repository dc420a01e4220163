//! The `muc#roomconfig` form (XEP-0045 §10.2, XEP-0004) an owner gets and submits, and the
//! `muc#roominfo` form in a room's disco#info (§6.4).

use super::presence::status;
use super::{AllowPm, RoomConfig, ROOMCONFIG, ROOMINFO};
use crate::xml::Element;
use crate::xmpp::form::{self, boolean, field, list_single, parse_bool, Values};
use crate::xmpp::{Condition, StanzaError};

/// Longest room name, description and password, in characters.
pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_DESCRIPTION_CHARS: usize = 2000;
pub const MAX_PASSWORD_CHARS: usize = 200;

const PM_OPTIONS: &[(&str, &str)] = &[
    ("anyone", "Anyone"),
    ("participants", "Participants"),
    ("moderators", "Moderators"),
    ("none", "Nobody"),
];

/// The choices offered for `muc#roomconfig_maxusers`: round numbers up to the service's
/// limit, the limit itself and the room's current value.
fn max_users_options(current: usize, limit: usize) -> Vec<String> {
    let mut v: Vec<usize> = [10, 20, 30, 50, 100, 200, 500, 1000]
        .into_iter()
        .chain([current, limit])
        .filter(|n| (1..=limit).contains(n))
        .collect();
    v.sort_unstable();
    v.dedup();
    v.into_iter().map(|n| n.to_string()).collect()
}

/// The form field that turns a room's archive on.
pub const ENABLE_ARCHIVING: &str = "muc#roomconfig_enablearchiving";

/// The configuration form for `cfg`; `max_users` is the service's limit, `archives`: the
/// operator allows room archives (XEP-0313), so owners may turn theirs on.
pub fn config_form(cfg: &RoomConfig, max_users: usize, archives: bool) -> Element {
    let max = cfg.max_users.to_string();
    let options = max_users_options(cfg.max_users, max_users);
    let options: Vec<(&str, &str)> = options.iter().map(|o| (o.as_str(), o.as_str())).collect();
    let f = form::form("form", ROOMCONFIG)
        .child(field(
            "muc#roomconfig_roomname",
            "text-single",
            Some("Name"),
            [cfg.name.as_str()],
        ))
        .child(field(
            "muc#roomconfig_roomdesc",
            "text-single",
            Some("Description"),
            [cfg.description.as_str()],
        ))
        .child(field(
            "muc#roomconfig_lang",
            "text-single",
            Some("Language"),
            [cfg.language.as_str()],
        ))
        .child(boolean(
            "muc#roomconfig_persistentroom",
            "Keep the room when empty",
            cfg.persistent,
        ))
        .child(boolean(
            "muc#roomconfig_publicroom",
            "List the room publicly",
            cfg.public,
        ))
        .child(boolean(
            "muc#roomconfig_membersonly",
            "Members only",
            cfg.members_only,
        ))
        .child(boolean(
            "muc#roomconfig_moderatedroom",
            "Moderated",
            cfg.moderated,
        ))
        .child(boolean(
            "muc#roomconfig_passwordprotectedroom",
            "Password protected",
            !cfg.password.is_empty(),
        ))
        .child(field(
            "muc#roomconfig_roomsecret",
            "text-private",
            Some("Password"),
            [cfg.password.as_str()],
        ))
        .child(list_single(
            "muc#roomconfig_whois",
            "Who may see real JIDs",
            if cfg.whois_anyone {
                "anyone"
            } else {
                "moderators"
            },
            &[("moderators", "Moderators only"), ("anyone", "Anyone")],
        ))
        .child(list_single(
            "muc#roomconfig_maxusers",
            "Most occupants",
            &max,
            &options,
        ))
        .child(boolean(
            "muc#roomconfig_changesubject",
            "Participants may change the subject",
            cfg.change_subject,
        ))
        .child(boolean(
            "muc#roomconfig_allowinvites",
            "Occupants may invite",
            cfg.allow_invites,
        ))
        .child(list_single(
            "muc#roomconfig_allowpm",
            "Who may send private messages",
            cfg.allow_pm.as_str(),
            PM_OPTIONS,
        ))
        .child(boolean(
            "muc#roomconfig_enablelogging",
            "Publish public logs (not offered)",
            false,
        ));
    if archives {
        f.child(boolean(
            ENABLE_ARCHIVING,
            "Keep a message archive members can search (XEP-0313)",
            cfg.archive,
        ))
    } else {
        f
    }
}

fn bad(text: String) -> StanzaError {
    StanzaError::new(Condition::NotAcceptable).with_text(text)
}

fn text_field(
    values: &Values,
    var: &str,
    max: usize,
    into: &mut String,
) -> Result<(), StanzaError> {
    if let Some(v) = values.get(var) {
        let v = v.join("\n");
        if v.chars().count() > max {
            return Err(bad(format!("{var}: at most {max} characters")));
        }
        *into = v;
    }
    Ok(())
}

fn bool_field(values: &Values, var: &str, into: &mut bool) -> Result<(), StanzaError> {
    if let Some(v) = form::first(values, var) {
        *into = parse_bool(v).ok_or_else(|| bad(format!("{var}: not a boolean")))?;
    }
    Ok(())
}

/// `cfg` with the submitted form `x` applied; unknown fields are ignored, bad values refused
/// with `not-acceptable` naming the field.
pub fn apply(
    cfg: &RoomConfig,
    x: &Element,
    max_users: usize,
    archives: bool,
) -> Result<RoomConfig, StanzaError> {
    let (form_type, values) = form::values(x);
    if form_type.as_deref().is_some_and(|t| t != ROOMCONFIG) {
        return Err(StanzaError::new(Condition::BadRequest).with_text("not a muc#roomconfig form"));
    }
    let mut c = cfg.clone();
    text_field(
        &values,
        "muc#roomconfig_roomname",
        MAX_NAME_CHARS,
        &mut c.name,
    )?;
    text_field(
        &values,
        "muc#roomconfig_roomdesc",
        MAX_DESCRIPTION_CHARS,
        &mut c.description,
    )?;
    text_field(&values, "muc#roomconfig_lang", 35, &mut c.language)?;
    bool_field(&values, "muc#roomconfig_persistentroom", &mut c.persistent)?;
    bool_field(&values, "muc#roomconfig_publicroom", &mut c.public)?;
    bool_field(&values, "muc#roomconfig_membersonly", &mut c.members_only)?;
    bool_field(&values, "muc#roomconfig_moderatedroom", &mut c.moderated)?;
    bool_field(
        &values,
        "muc#roomconfig_changesubject",
        &mut c.change_subject,
    )?;
    bool_field(&values, "muc#roomconfig_allowinvites", &mut c.allow_invites)?;
    text_field(
        &values,
        "muc#roomconfig_roomsecret",
        MAX_PASSWORD_CHARS,
        &mut c.password,
    )?;
    let mut protected = !c.password.is_empty();
    bool_field(
        &values,
        "muc#roomconfig_passwordprotectedroom",
        &mut protected,
    )?;
    if !protected {
        c.password.clear();
    } else if c.password.is_empty() {
        return Err(bad(
            "muc#roomconfig_roomsecret: a password-protected room needs a password".into(),
        ));
    }
    if let Some(w) = form::first(&values, "muc#roomconfig_whois") {
        c.whois_anyone = match w {
            "anyone" => true,
            "moderators" => false,
            _ => return Err(bad("muc#roomconfig_whois: anyone or moderators".into())),
        };
    }
    if let Some(m) = form::first(&values, "muc#roomconfig_maxusers") {
        c.max_users = match m {
            "" | "none" => max_users,
            m => m
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=max_users).contains(n))
                .ok_or_else(|| bad(format!("muc#roomconfig_maxusers: 1 to {max_users}")))?,
        };
    }
    if let Some(p) = form::first(&values, "muc#roomconfig_allowpm") {
        c.allow_pm = p.parse::<AllowPm>().ok().ok_or_else(|| {
            bad("muc#roomconfig_allowpm: anyone, participants, moderators or none".into())
        })?;
    }
    if let Some(l) = form::first(&values, "muc#roomconfig_enablelogging") {
        if parse_bool(l) == Some(true) {
            return Err(bad(
                "muc#roomconfig_enablelogging: this service does not publish logs".into(),
            ));
        }
    }
    if archives {
        bool_field(&values, ENABLE_ARCHIVING, &mut c.archive)?;
    } else if form::first(&values, ENABLE_ARCHIVING).and_then(parse_bool) == Some(true) {
        return Err(bad(format!(
            "{ENABLE_ARCHIVING}: this server does not archive rooms"
        )));
    }
    Ok(c)
}

/// The status codes a configuration change announces to the occupants (§10.2.1).
pub fn change_codes(old: &RoomConfig, new: &RoomConfig) -> Vec<u16> {
    if old == new {
        return Vec::new();
    }
    let mut codes = vec![status::CONFIG_CHANGED];
    if new.whois_anyone && !old.whois_anyone {
        codes.push(status::NOW_NON_ANONYMOUS);
    } else if !new.whois_anyone && old.whois_anyone {
        codes.push(status::NOW_SEMI_ANONYMOUS);
    }
    codes
}

/// The disco#info features that describe `cfg` (§15.5).
pub fn features(cfg: &RoomConfig) -> [&'static str; 6] {
    let f = |on: bool, yes: &'static str, no: &'static str| if on { yes } else { no };
    [
        f(cfg.public, "muc_public", "muc_hidden"),
        f(cfg.persistent, "muc_persistent", "muc_temporary"),
        f(cfg.members_only, "muc_membersonly", "muc_open"),
        f(cfg.moderated, "muc_moderated", "muc_unmoderated"),
        f(cfg.whois_anyone, "muc_nonanonymous", "muc_semianonymous"),
        f(
            !cfg.password.is_empty(),
            "muc_passwordprotected",
            "muc_unsecured",
        ),
    ]
}

/// The `muc#roominfo` form of a room's disco#info.
pub fn room_info(cfg: &RoomConfig, occupants: usize, subject: &str) -> Element {
    let n = occupants.to_string();
    form::form("result", ROOMINFO)
        .child(field(
            "muc#roominfo_description",
            "text-single",
            Some("Description"),
            [cfg.description.as_str()],
        ))
        .child(field(
            "muc#roominfo_occupants",
            "text-single",
            Some("Occupants"),
            [n.as_str()],
        ))
        .child(field(
            "muc#roominfo_subject",
            "text-single",
            Some("Subject"),
            [subject],
        ))
        .child(field(
            "muc#roominfo_lang",
            "text-single",
            Some("Language"),
            [cfg.language.as_str()],
        ))
        .child(field(
            "muc#roomconfig_roomname",
            "text-single",
            Some("Name"),
            [cfg.name.as_str()],
        ))
        .child(boolean(
            "muc#roomconfig_changesubject",
            "Participants may change the subject",
            cfg.change_subject,
        ))
        .child(field(
            "muc#roomconfig_allowpm",
            "list-single",
            Some("Who may send private messages"),
            [cfg.allow_pm.as_str()],
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submit(fields: &[(&str, &str)]) -> Element {
        let mut x = form::form("submit", ROOMCONFIG);
        for (var, v) in fields {
            x = x.child(field(var, "text-single", None, [*v]));
        }
        x
    }

    #[test]
    fn round_trip_and_limits() {
        let cfg = RoomConfig::default();
        let x = submit(&[
            ("muc#roomconfig_roomname", "Kaffee"),
            ("muc#roomconfig_persistentroom", "1"),
            ("muc#roomconfig_membersonly", "true"),
            ("muc#roomconfig_whois", "anyone"),
            ("muc#roomconfig_maxusers", "50"),
            ("muc#roomconfig_allowpm", "moderators"),
        ]);
        let c = apply(&cfg, &x, 100, false).unwrap();
        assert_eq!(c.name, "Kaffee");
        assert!(c.persistent && c.members_only && c.whois_anyone);
        assert_eq!(c.max_users, 50);
        assert_eq!(c.allow_pm, AllowPm::Moderators);
        assert_eq!(change_codes(&cfg, &c), [104, 172]);
        // The offered form carries the values back.
        let (_, v) = form::values(&config_form(&c, 100, false));
        assert_eq!(form::first(&v, "muc#roomconfig_roomname"), Some("Kaffee"));
        assert_eq!(max_users_options(50, 100), ["10", "20", "30", "50", "100"]);
        assert_eq!(max_users_options(3, 3), ["3"]);
        assert_eq!(
            max_users_options(42, 60),
            ["10", "20", "30", "42", "50", "60"]
        );
        let too_many = submit(&[("muc#roomconfig_maxusers", "101")]);
        assert!(apply(&cfg, &too_many, 100, false).is_err());
        let long = "x".repeat(MAX_NAME_CHARS + 1);
        assert!(apply(
            &cfg,
            &submit(&[("muc#roomconfig_roomname", &long)]),
            100,
            false
        )
        .is_err());
        let no_pw = submit(&[("muc#roomconfig_passwordprotectedroom", "1")]);
        assert!(apply(&cfg, &no_pw, 100, false).is_err());
        let pw = submit(&[
            ("muc#roomconfig_passwordprotectedroom", "1"),
            ("muc#roomconfig_roomsecret", "s3cret"),
        ]);
        assert_eq!(apply(&cfg, &pw, 100, false).unwrap().password, "s3cret");
        let logging = submit(&[("muc#roomconfig_enablelogging", "1")]);
        assert!(apply(&cfg, &logging, 100, false).is_err());
        // Room archives: refused unless the operator allows them, then an owner's choice.
        let archive = submit(&[(ENABLE_ARCHIVING, "1")]);
        assert!(apply(&cfg, &archive, 100, false).is_err());
        assert!(apply(&cfg, &archive, 100, true).unwrap().archive);
        let (_, v) = form::values(&config_form(&cfg, 100, true));
        assert!(v.contains_key(ENABLE_ARCHIVING));
    }
}
