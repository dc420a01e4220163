//! The upload service (XEP-0363 HTTP File Upload): one [`UploadService`] actor per host owns
//! the service domain (`upload.<host>`), answers disco (identity `store/file`, the feature,
//! and the XEP-0128 form with `max-file-size`) and hands out upload slots to accounts of this
//! server: a random token and a `PUT` secret, kept in memory ([`crate::http::upload::Slots`])
//! for the web side's `PUT` (`src/http/upload/`). A slot is refused with XEP-0363's errors:
//! `not-acceptable` with `<file-too-large/>` and the largest size, `resource-constraint`
//! when the account's quota (stored files plus open slots) or the disk reserve would be
//! crossed, `bad-request` for a missing or invalid name, size or type. It runs on the storage
//! arbiter (the quota reads the `uploads` tree).
//!
//! ```text
//!  Router --ToService--> UploadService --Route--> Router
//!  UploadService --Slots::open--> (memory) <--Slots::begin-- PUT (src/http/upload/put.rs)
//!  Router --AccountGone--> UploadService (the account's open slots are forgotten; its files
//!                          go with Store::delete_accounts)
//! ```

use std::sync::Arc;

use actix::prelude::*;

use super::messages::{AccountGone, Route, ToService};
use super::{service, ServiceContext, ServiceInbox, ServiceSpec};
use crate::http::upload::{names, slots, Slot};
use crate::shared::Shared;
use crate::xml::Element;
use crate::xmpp::{ns, Condition, StanzaError};

/// XEP-0363's namespace.
pub const NS_UPLOAD: &str = "urn:xmpp:http:upload:0";

/// The upload service of one host.
pub struct UploadService {
    shared: Arc<Shared>,
    /// The service domain.
    domain: String,
    /// The host whose web side serves the files.
    host: String,
    route: Recipient<Route>,
}

/// The upload service of `host` at `domain`, to start with the server.
pub fn spec(domain: String, host: String) -> ServiceSpec {
    ServiceSpec {
        domain: domain.clone(),
        start: Box::new(move |cx: ServiceContext| {
            let ServiceContext {
                shared,
                route,
                arbiter,
                ..
            } = cx;
            let addr = UploadService::start_in_arbiter(&arbiter, move |_| UploadService {
                shared,
                domain,
                host,
                route,
            });
            ServiceInbox {
                stanzas: addr.clone().recipient(),
                account_gone: Some(addr.recipient()),
                shutdown: None,
            }
        }),
    }
}

impl Actor for UploadService {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        log::info!("upload service {} started", self.domain);
    }
}

impl Handler<ToService> for UploadService {
    type Result = ();
    fn handle(&mut self, msg: ToService, _: &mut Context<Self>) {
        let Some(req) = service::request(&self.route, &msg) else {
            return;
        };
        let p = req.payload;
        let answer = match (p.ns.as_str(), p.name.as_str()) {
            _ if !req.to_service || req.kind != "get" => {
                Err(StanzaError::new(Condition::ServiceUnavailable))
            }
            (NS_UPLOAD, "request") => self.slot(&msg.from, p).map(Some),
            _ => req
                .common(|| self.disco_info())
                .unwrap_or_else(|| Err(StanzaError::new(Condition::ServiceUnavailable))),
        };
        service::answer(&self.route, &msg.stanza, answer);
    }
}

impl Handler<AccountGone> for UploadService {
    type Result = ();
    fn handle(&mut self, msg: AccountGone, _: &mut Context<Self>) {
        if let Some(user) = msg.jid.node() {
            self.shared
                .upload_slots
                .forget_account(msg.jid.domain().as_str(), user.as_str());
        }
    }
}

impl UploadService {
    fn disco_info(&self) -> Element {
        let field = |var: &str, value: String| {
            Element::new("field", ns::DATA_FORMS)
                .attr("var", var)
                .child(Element::new("value", ns::DATA_FORMS).text(value))
        };
        let mut form_type = field("FORM_TYPE", NS_UPLOAD.into());
        form_type.set_attr("type", "hidden");
        let max = self.shared.config.upload.max_file_bytes();
        let form = Element::new("x", ns::DATA_FORMS)
            .attr("type", "result")
            .child(form_type)
            .child(field("max-file-size", max.to_string()));
        service::disco_info("store", "file", "HTTP file upload", &[NS_UPLOAD]).child(form)
    }

    /// A slot for the request `req` of `from`, or why not.
    fn slot(&self, from: &jid::Jid, req: &Element) -> Result<Element, StanzaError> {
        let domain = from.domain().as_str();
        let user = match from.node() {
            Some(u) if self.shared.is_account_host(domain) => u.as_str(),
            _ => {
                return Err(StanzaError::new(Condition::NotAllowed)
                    .with_text("only accounts of this server may upload files here"))
            }
        };
        let (filename, size, content_type) = self.parse_request(req)?;
        self.check_room(domain, user, size)?;
        let token = names::random_token();
        let secret = names::random_token();
        let url = names::url(
            &self.shared.config.http.url_of(&self.host),
            &token,
            &filename,
        );
        log::debug!("upload: slot of {size} bytes for {user}@{domain}");
        self.shared.upload_slots.open(
            token,
            Slot {
                domain: domain.to_owned(),
                user: user.to_owned(),
                filename,
                size,
                content_type,
                put_secret: secret.clone(),
            },
        );
        let header = Element::new("header", NS_UPLOAD)
            .attr("name", "Authorization")
            .text(format!("Bearer {secret}"));
        Ok(Element::new("slot", NS_UPLOAD)
            .child(
                Element::new("put", NS_UPLOAD)
                    .attr("url", url.as_str())
                    .child(header),
            )
            .child(Element::new("get", NS_UPLOAD).attr("url", url.as_str())))
    }

    /// The request's file name (sanitised), size and content type.
    fn parse_request(&self, req: &Element) -> Result<(String, u64, Option<String>), StanzaError> {
        let bad = |t: &str| StanzaError::new(Condition::BadRequest).with_text(t);
        let filename = req
            .get_attr("filename")
            .and_then(names::sanitize_filename)
            .ok_or_else(|| bad("the request needs a file name"))?;
        let size = req
            .get_attr("size")
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| bad("the request needs the file's size in bytes"))?;
        let max = self.shared.config.upload.max_file_bytes();
        if size > max {
            let too_large = Element::new("file-too-large", NS_UPLOAD)
                .child(Element::new("max-file-size", NS_UPLOAD).text(max.to_string()));
            return Err(StanzaError::new(Condition::NotAcceptable)
                .with_text(format!("the file is larger than {max} bytes"))
                .with_extra(too_large));
        }
        let content_type = match req.get_attr("content-type").map(str::trim) {
            None | Some("") => None,
            Some(t) if names::valid_content_type(t) => Some(t.to_owned()),
            Some(_) => return Err(bad("the content-type is not a valid media type")),
        };
        Ok((filename, size, content_type))
    }

    /// Would a file of `size` bytes cross the account's quota, its open slots or the disk
    /// reserve?
    fn check_room(&self, domain: &str, user: &str, size: u64) -> Result<(), StanzaError> {
        let cfg = &self.shared.config.upload;
        let store = &self.shared.store;
        let (pending, open) = self.shared.upload_slots.pending(domain, user);
        if open >= slots::MAX_OPEN_SLOTS {
            return Err(StanzaError::new(Condition::ResourceConstraint)
                .with_text("too many unused upload slots; use or let them expire first"));
        }
        if cfg.quota_mb > 0 {
            let stored = store
                .uploads
                .usage(domain, user)
                .map_err(|e| e.stanza_error("upload quota"))?;
            if stored + pending + size > cfg.quota_mb.saturating_mul(1 << 20) {
                return Err(StanzaError::new(Condition::ResourceConstraint).with_text(format!(
                    "this file would exceed your upload quota of {} MB; files are deleted {} days after their upload",
                    cfg.quota_mb, cfg.expire_after_days
                )));
            }
        }
        store
            .space
            .check_room(pending + size)
            .map_err(|e| e.stanza_error("upload slot"))
    }
}
