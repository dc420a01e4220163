//! `GET` and `HEAD` of a stored file: the type it was uploaded with, ranges (actix-files'
//! `NamedFile`), attachment or inline by type, and the restrictive headers of [`super::cors`].

use actix_files::NamedFile;
use actix_web::http::header::{
    Charset, ContentDisposition, DispositionParam, DispositionType, ExtendedValue, HeaderName,
    HeaderValue,
};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::names::inline;
use super::plain;
use crate::http::HttpState;

const NOT_FOUND: &str = "no such file (it may have expired)";

pub(super) async fn get(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<HttpState>,
) -> HttpResponse {
    let (token, filename) = path.into_inner();
    let shared = &state.shared;
    if !shared.config.upload.enabled {
        return plain(StatusCode::NOT_FOUND, NOT_FOUND);
    }
    let uploads = &shared.store.uploads;
    let rec = match uploads.get(&token) {
        Ok(Some(r)) if r.filename == filename => r,
        Ok(_) => return plain(StatusCode::NOT_FOUND, NOT_FOUND),
        Err(e) => {
            log::error!("upload: reading a file's record failed: {e}");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "server error");
        }
    };
    let Some(file_path) = uploads.path_of(&token) else {
        return plain(StatusCode::NOT_FOUND, NOT_FOUND);
    };
    let file = match NamedFile::open_async(&file_path).await {
        Ok(f) => f,
        Err(_) => return plain(StatusCode::NOT_FOUND, NOT_FOUND),
    };
    let mime = rec
        .content_type
        .parse::<mime::Mime>()
        .unwrap_or(mime::APPLICATION_OCTET_STREAM);
    let file = file
        .set_content_type(mime)
        .set_content_disposition(disposition(&rec.filename, inline(&rec.content_type)))
        .prefer_utf8(false)
        .use_etag(true)
        .use_last_modified(true);
    let mut resp = file.into_response(&req);
    let h = resp.headers_mut();
    let extra = [("cache-control", "private, max-age=86400")];
    for (name, value) in super::HEADERS.iter().chain(&extra) {
        h.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    resp
}

/// `inline` or `attachment`, with the file name (RFC 6266; non-ASCII names as `filename*`).
fn disposition(filename: &str, inline: bool) -> ContentDisposition {
    let ascii: String = filename
        .chars()
        .map(|c| if c.is_ascii() { c } else { '_' })
        .collect();
    let mut parameters = vec![DispositionParam::Filename(ascii)];
    if !filename.is_ascii() {
        parameters.push(DispositionParam::FilenameExt(ExtendedValue {
            charset: Charset::Ext("UTF-8".into()),
            language_tag: None,
            value: filename.as_bytes().to_vec(),
        }));
    }
    ContentDisposition {
        disposition: if inline {
            DispositionType::Inline
        } else {
            DispositionType::Attachment
        },
        parameters,
    }
}
