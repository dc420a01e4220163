//! XEP-0077: In-Band Registration.
//!
//! Before authentication: the form (user name and password, nothing else: the privacy policy
//! asks for nothing more) and account creation. After authentication: password change and
//! cancellation, which deletes the account with everything stored for it
//! (`actors/account.rs`).

use crate::config::AuthConfig;
use crate::credentials::{self, MAX_PASSWORD_BYTES};
use crate::shared::blocking;
use crate::store::Store;
use crate::xml::Element;
use crate::xmpp::{ns, Condition, StanzaError};

/// What a `jabber:iq:register` IQ asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// `get`: the registration form (or, when logged in, the current registration).
    Form,
    /// `set` with user name and password: create the account, or change the password.
    Set { username: String, password: String },
    /// `set` with `<remove/>`: cancel the registration.
    Remove,
}

/// Parse a register IQ whose payload is `query`.
pub fn parse(iq_type: &str, query: &Element) -> Result<Request, StanzaError> {
    match iq_type {
        "get" => Ok(Request::Form),
        "set" if query.get_child("remove", ns::REGISTER).is_some() => Ok(Request::Remove),
        "set" => {
            let field = |name: &str| {
                query
                    .get_child(name, ns::REGISTER)
                    .map(Element::text_content)
            };
            match (field("username"), field("password")) {
                (Some(u), Some(p)) => Ok(Request::Set {
                    username: u,
                    password: p,
                }),
                _ => Err(StanzaError::new(Condition::BadRequest)
                    .with_text("username and password are required")),
            }
        }
        _ => Err(Condition::BadRequest.into()),
    }
}

/// The form: `<username/>` and `<password/>` only; when logged in, the current registration.
pub fn form(registered_as: Option<&str>) -> Element {
    let mut q = Element::new("query", ns::REGISTER);
    match registered_as {
        Some(user) => {
            q = q
                .child(Element::new("registered", ns::REGISTER))
                .child(Element::new("username", ns::REGISTER).text(user))
                .child(Element::new("password", ns::REGISTER));
        }
        None => {
            q = q
                .child(
                    Element::new("instructions", ns::REGISTER)
                        .text("Choose a user name and password. There is no password recovery."),
                )
                .child(Element::new("username", ns::REGISTER))
                .child(Element::new("password", ns::REGISTER));
        }
    }
    q
}

/// The error reply to a register IQ, without the request's payload: the password the client
/// sent must not be echoed back.
pub fn error_reply(iq: &Element, err: &StanzaError) -> Option<Element> {
    let mut stripped = iq.clone();
    stripped.children.clear();
    crate::xmpp::error_reply(&stripped, err)
}

/// Normalise a requested user name (the JID localpart, RFC 7622 / nodeprep).
pub fn normalize_username(s: &str) -> Result<String, StanzaError> {
    let bad = || StanzaError::new(Condition::NotAcceptable).with_text("invalid user name");
    if s.is_empty() || s.len() > 1023 {
        return Err(bad());
    }
    let node = jid::NodePart::new(s).map_err(|_| bad())?;
    Ok(node.to_string())
}

/// SASLprep a new password and check it can be stored without truncation.
pub fn prepare_password(s: &str) -> Result<String, StanzaError> {
    let p = crate::sasl::prep_password(s).ok_or_else(|| {
        StanzaError::new(Condition::NotAcceptable)
            .with_text("password contains forbidden characters")
    })?;
    if p.is_empty() {
        return Err(StanzaError::new(Condition::NotAcceptable).with_text("empty password"));
    }
    if p.len() > MAX_PASSWORD_BYTES {
        return Err(StanzaError::new(Condition::NotAcceptable)
            .with_text(format!("password longer than {MAX_PASSWORD_BYTES} bytes")));
    }
    Ok(p)
}

fn internal(e: crate::store::StoreError) -> StanzaError {
    e.stanza_error("registration storage")
}

/// Create `username@host`, with the password hashed as `auth` says; the caller has checked
/// that registration is open. Hashing runs on the blocking pool; the account is durable
/// before this returns `Ok`, so an acknowledged registration survives a crash.
pub async fn create(
    store: &Store,
    auth: &AuthConfig,
    host: &str,
    username: &str,
    password: &str,
) -> Result<String, StanzaError> {
    let user = normalize_username(username)?;
    let password = prepare_password(password)?;
    // A recently deleted name is not free yet (see accounts.reregistration_block_days).
    if store.accounts.exists(host, &user).map_err(internal)?
        || store.is_tombstoned(host, &user).map_err(internal)?
    {
        return Err(Condition::Conflict.into());
    }
    let (store, auth) = (store.clone(), auth.clone());
    let (h, u) = (host.to_owned(), user.clone());
    let created = blocking(move || {
        let what = credentials::SetPassword::Create;
        credentials::set_password(&store, &auth, (&h, &u), &password, what)
    })
    .await
    .map_err(internal)?;
    if created {
        Ok(user)
    } else {
        Err(Condition::Conflict.into())
    }
}

/// Change the password of `user@host` (logged in as that user), hashed as `auth` says.
pub async fn change_password(
    store: &Store,
    auth: &AuthConfig,
    host: &str,
    user: &str,
    username: &str,
    password: &str,
) -> Result<(), StanzaError> {
    if normalize_username(username)? != user {
        return Err(StanzaError::new(Condition::NotAllowed).with_text("not your user name"));
    }
    let password = prepare_password(password)?;
    let (store, auth) = (store.clone(), auth.clone());
    let (h, u) = (host.to_owned(), user.to_owned());
    blocking(move || {
        let what = credentials::SetPassword::Change;
        credentials::set_password(&store, &auth, (&h, &u), &password, what)
    })
    .await
    .map_err(internal)?
    .then_some(())
    .ok_or_else(|| Condition::ItemNotFound.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::Element;

    #[test]
    fn parses_the_xep_examples() {
        let q = Element::new("query", ns::REGISTER)
            .child(Element::new("username", ns::REGISTER).text("bill"))
            .child(Element::new("password", ns::REGISTER).text("Calliope"));
        assert_eq!(
            parse("set", &q).unwrap(),
            Request::Set {
                username: "bill".into(),
                password: "Calliope".into()
            }
        );
        let q = Element::new("query", ns::REGISTER).child(Element::new("remove", ns::REGISTER));
        assert_eq!(parse("set", &q).unwrap(), Request::Remove);
        let q = Element::new("query", ns::REGISTER).child(Element::new("username", ns::REGISTER));
        assert_eq!(
            parse("set", &q).unwrap_err().condition,
            Condition::BadRequest
        );
    }

    #[test]
    fn usernames_are_normalised_or_refused() {
        assert_eq!(normalize_username("Juliet").unwrap(), "juliet");
        for bad in ["", "a@b", "a/b", "a b", "a\"b", &"x".repeat(1024)] {
            assert_eq!(
                normalize_username(bad).unwrap_err().condition,
                Condition::NotAcceptable,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn passwords_are_checked() {
        assert!(prepare_password("pencil").is_ok());
        assert!(prepare_password("").is_err());
        assert!(prepare_password("a\u{7}b").is_err());
        assert!(prepare_password(&"a".repeat(72)).is_err());
    }
}
