//! The server's own web pages and XEP-0156 discovery:
//!
//! - `/.well-known/host-meta` (XRD) and `/.well-known/host-meta.json`: where web clients
//!   find the WebSocket and BOSH endpoints of the host asked for (`discovery.rs`); always
//!   served while the web side runs.
//! - `/`: what this server is, registration (the live state), clients, connection details,
//!   group chat, file upload, contact addresses (`home.rs`).
//! - `/privacy`: the privacy policy, written from `doc/data-inventory.md` and filled in with
//!   the running configuration's figures, so it says what the server does (`privacy.rs`).
//! - `/style.css`, and a small 404 page for every path nobody else serves.
//!
//! The pages are plain HTML and CSS in German and English (`?lang=`, else `Accept-Language`),
//! without JavaScript, behind a strict Content Security Policy. `http.pages = false` turns
//! `/` and `/privacy` into 404s. Nothing here logs a request.

mod discovery;
mod home;
mod html;
mod privacy;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{guard, web, HttpRequest, HttpResponse};

pub use html::{esc, negotiate, Lang};

use super::HttpState;
use crate::config::Config;
use crate::shared::Shared;

/// The pages' Content Security Policy: our own stylesheet, nothing else.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

/// The stylesheet of every page.
const STYLE: &str = include_str!("style.css");

/// Register this module's routes (and the 404 page as the App's default service).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/.well-known/host-meta").route(get_or_head().to(host_meta_xrd)))
        .service(
            web::resource("/.well-known/host-meta.json").route(get_or_head().to(host_meta_json)),
        )
        .service(web::resource("/style.css").route(get_or_head().to(style)))
        .service(web::resource("/").route(get_or_head().to(home_page)))
        .service(web::resource("/privacy").route(get_or_head().to(privacy_page)))
        .default_service(web::to(not_found));
}

/// A route for GET and HEAD.
fn get_or_head() -> actix_web::Route {
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}

/// The account host a request is for: its `Host` (without the port) when that is one of
/// `hosts`, the parent host when it is a service domain (`upload.<host>`), else the default
/// host.
pub fn host_of<'a>(req: &HttpRequest, config: &'a Config) -> &'a str {
    let info = req.connection_info();
    let raw = info.host().trim().to_ascii_lowercase();
    let name = match raw.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => raw.as_str(),
    };
    let name = name.trim_end_matches('.');
    if let Some((host, _)) = config.hosts.get_key_value(name) {
        return host;
    }
    if let Some(parent) = config.services.get(name) {
        if let Some((host, _)) = config.hosts.get_key_value(parent.as_str()) {
            return host;
        }
    }
    config.default_host()
}

/// The language a request asks for.
fn lang_of(req: &HttpRequest) -> Lang {
    let accept = req
        .headers()
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok());
    negotiate(req.query_string(), accept)
}

/// An HTML response with the pages' security headers.
fn html_response(status: StatusCode, lang: Lang, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::CONTENT_LANGUAGE, lang.code()))
        .insert_header((header::VARY, "Accept-Language"))
        // Registration can open or close at any moment: always ask again.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

/// `/`.
async fn home_page(req: HttpRequest, state: web::Data<HttpState>) -> HttpResponse {
    page_response(req, &state.shared, |lang, host, shared| {
        home::page(lang, host, &shared.config, shared.registration_open())
    })
    .await
}

/// `/privacy`.
async fn privacy_page(req: HttpRequest, state: web::Data<HttpState>) -> HttpResponse {
    page_response(req, &state.shared, |lang, host, shared| {
        privacy::page(lang, host, &shared.config, log::max_level())
    })
    .await
}

/// A page in the request's language for the request's host, or 404 when `http.pages` is off.
async fn page_response(
    req: HttpRequest,
    shared: &Shared,
    build: impl FnOnce(Lang, &str, &Shared) -> String,
) -> HttpResponse {
    if !shared.config.http.pages {
        return not_found(req).await;
    }
    let lang = lang_of(&req);
    let body = build(lang, host_of(&req, &shared.config), shared);
    html_response(StatusCode::OK, lang, body)
}

/// Every path nobody serves.
async fn not_found(req: HttpRequest) -> HttpResponse {
    let lang = lang_of(&req);
    let mut page = html::Page::new(lang, "/", lang.t("Page not found", "Seite nicht gefunden"));
    page.p(lang.t(
        "There is nothing at this address.",
        "Unter dieser Adresse gibt es nichts.",
    ));
    html_response(StatusCode::NOT_FOUND, lang, page.finish())
}

/// `/style.css`.
async fn style() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/css; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "max-age=3600"))
        .body(STYLE)
}

/// `/.well-known/host-meta`.
async fn host_meta_xrd(req: HttpRequest, state: web::Data<HttpState>) -> HttpResponse {
    let config = &state.shared.config;
    let body = discovery::xrd(&discovery::links(config, host_of(&req, config)));
    discovery_response("application/xrd+xml; charset=utf-8", body)
}

/// `/.well-known/host-meta.json`.
async fn host_meta_json(req: HttpRequest, state: web::Data<HttpState>) -> HttpResponse {
    let config = &state.shared.config;
    let body = discovery::json(&discovery::links(config, host_of(&req, config)));
    discovery_response("application/json", body)
}

/// A host-meta response: any web client may read it (CORS).
fn discovery_response(content_type: &'static str, body: String) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        ))
        .insert_header((header::CACHE_CONTROL, "max-age=3600"))
        .body(body)
}
