//! XEP-0363 HTTP File Upload, the web side: `PUT /upload/{token}/{filename}` stores the body of
//! an open slot (see [`slots`]; the upload service in `actors/upload.rs` hands them out),
//! `GET` and `HEAD` serve stored files (with ranges), `OPTIONS` answers CORS preflights so web
//! clients (Converse.js) can upload.
//!
//! A `PUT` is streamed to disk chunk by chunk through a bounded channel to a blocking writer
//! ([`put`]): the body never sits in memory, and the request-size limit of the other routes
//! does not apply. Served files carry `X-Content-Type-Options: nosniff`, a `sandbox` content
//! security policy, and `Content-Disposition: attachment` for anything a browser would run or
//! render as a document ([`names::inline`]). Nothing here logs a file name, an account or an
//! address above `debug`.

mod get;
pub mod names;
mod put;
pub mod slots;

use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpResponse, HttpResponseBuilder};

pub use slots::{Slot, Slots};

/// Register this module's routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/upload/{token}/{filename}")
            .route(web::put().to(put::put))
            .route(web::get().to(get::get))
            .route(web::head().to(get::get))
            .route(web::method(Method::OPTIONS).to(preflight)),
    );
}

/// The headers every upload response carries: any origin may read and upload (the URLs are
/// the secret, not the origin), and nothing served runs scripts or loads anything.
const HEADERS: &[(&str, &str)] = &[
    ("access-control-allow-origin", "*"),
    (
        "access-control-expose-headers",
        "Content-Length, Content-Range, Content-Type, Content-Disposition",
    ),
    ("x-content-type-options", "nosniff"),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'; sandbox",
    ),
];

/// A response builder with [`HEADERS`].
fn cors(mut b: HttpResponseBuilder) -> HttpResponseBuilder {
    for h in HEADERS {
        b.insert_header(*h);
    }
    b
}

/// A short plain-text answer (errors, and the `PUT`'s success).
fn plain(status: StatusCode, text: &str) -> HttpResponse {
    cors(HttpResponse::build(status))
        .content_type("text/plain; charset=utf-8")
        .body(format!("{text}\n"))
}

/// CORS preflight: what a browser asks before a `PUT` with `Authorization` and
/// `Content-Type`.
async fn preflight() -> HttpResponse {
    cors(HttpResponse::NoContent())
        .insert_header(("Access-Control-Allow-Methods", "GET, HEAD, PUT, OPTIONS"))
        .insert_header((
            "Access-Control-Allow-Headers",
            "Authorization, Content-Type, Content-Length, Range",
        ))
        .insert_header(("Access-Control-Max-Age", "86400"))
        .finish()
}
