//! `PUT` of an open slot: the headers must say what the slot announced (401/403 without the
//! slot's secret, 400 without or with another length, 413 for more bytes, 415 for another
//! type), then the body goes chunk by chunk through a bounded channel to a writer on the
//! blocking pool, into `<token>.<random>.part`, renamed to `<token>` only when exactly the announced
//! bytes arrived, and recorded in the `uploads` tree. A broken upload leaves nothing.

use std::io::Write;
use std::path::Path;

use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;

use super::plain;
use super::slots::{BeginError, Slot};
use crate::http::HttpState;
use crate::store::uploads::{Upload, Uploads};

/// Chunks on their way to the writer at most (the memory one upload holds).
const CHANNEL_CHUNKS: usize = 8;
/// An upload that sends nothing for this long is dropped (it would hold its slot and one of
/// the account's concurrent uploads forever).
const BODY_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

/// What the writer gets.
enum Chunk {
    Data(Bytes),
    /// Every byte arrived: keep the file.
    Complete,
}

/// A refusal: status and the text the client sees.
type Refusal = (StatusCode, &'static str);

pub(super) async fn put(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Payload,
    state: web::Data<HttpState>,
) -> HttpResponse {
    let (token, filename) = path.into_inner();
    let shared = &state.shared;
    if !shared.config.upload.enabled {
        return plain(StatusCode::NOT_FOUND, "file upload is off");
    }
    let max = shared.config.upload.max_concurrent_per_account;
    let uploading = match shared.upload_slots.begin(&token, &filename, max) {
        Ok(u) => u,
        Err(BeginError::NotFound) => {
            return plain(
                StatusCode::NOT_FOUND,
                "no such upload slot (unknown, expired or used); request a new one",
            )
        }
        Err(BeginError::Busy) => {
            return plain(
                StatusCode::CONFLICT,
                "this slot's upload is running already",
            )
        }
        Err(BeginError::TooMany) => {
            return plain(
                StatusCode::TOO_MANY_REQUESTS,
                "too many uploads at once for this account; try again when one is done",
            )
        }
    };
    if let Err((status, text)) = check_headers(&req, &uploading.slot) {
        return plain(status, text);
    }
    let store = &shared.store;
    if let Err(e) = store.space.check_room(uploading.slot.size) {
        log::debug!("upload refused: {e}");
        return plain(
            StatusCode::INSUFFICIENT_STORAGE,
            "the server is short of disk space; try again later",
        );
    }
    match receive(store.uploads.clone(), &token, &uploading.slot, body).await {
        Ok(()) => {}
        Err((status, text)) => return plain(status, text),
    }
    if let Err(e) = store.durable().await {
        log::error!("upload: the record of a stored file is not durable: {e}");
    }
    log::debug!("upload: stored {} bytes", uploading.slot.size);
    uploading.done();
    plain(StatusCode::CREATED, "stored")
}

/// The request says what the slot announced: its secret, its length, its type.
fn check_headers(req: &HttpRequest, slot: &Slot) -> Result<(), Refusal> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let want = format!("Bearer {}", slot.put_secret);
    match header("authorization") {
        None => {
            return Err((
                StatusCode::UNAUTHORIZED,
                "the slot's Authorization header is missing",
            ))
        }
        Some(a) if !bool::from(subtle::ConstantTimeEq::ct_eq(a.as_bytes(), want.as_bytes())) => {
            return Err((StatusCode::FORBIDDEN, "wrong Authorization for this slot"))
        }
        Some(_) => {}
    }
    let length = header("content-length").and_then(|v| v.trim().parse::<u64>().ok());
    match length {
        None => {
            return Err((
                StatusCode::BAD_REQUEST,
                "Content-Length is required and must be the size announced in the slot request",
            ))
        }
        Some(n) if n > slot.size => {
            return Err((
                StatusCode::PAYLOAD_TOO_LARGE,
                "Content-Length is larger than the size announced in the slot request",
            ))
        }
        Some(n) if n != slot.size => {
            return Err((
                StatusCode::BAD_REQUEST,
                "Content-Length differs from the size announced in the slot request",
            ))
        }
        Some(_) => {}
    }
    if let Some(want) = &slot.content_type {
        let got = header("content-type").unwrap_or_default();
        if !got.trim().eq_ignore_ascii_case(want) {
            return Err((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type differs from the type announced in the slot request",
            ));
        }
    }
    Ok(())
}

/// Stream `body` into the slot's file and record it.
async fn receive(
    uploads: Uploads,
    token: &str,
    slot: &Slot,
    mut body: web::Payload,
) -> Result<(), Refusal> {
    const BROKEN: Refusal = (
        StatusCode::BAD_REQUEST,
        "the upload broke off before the announced size",
    );
    let record = Upload {
        v: 1,
        domain: slot.domain.clone(),
        user: slot.user.clone(),
        filename: slot.filename.clone(),
        size: slot.size,
        content_type: slot
            .content_type
            .clone()
            .unwrap_or_else(|| "application/octet-stream".into()),
        uploaded: 0,
    };
    let (tx, rx) = tokio::sync::mpsc::channel(CHANNEL_CHUNKS);
    let (token, size) = (token.to_owned(), slot.size);
    let writer = tokio::task::spawn_blocking(move || write(&uploads, &token, rx, record));
    let mut received = 0u64;
    let mut writer_gone = false;
    loop {
        let chunk = match tokio::time::timeout(BODY_IDLE, body.next()).await {
            Ok(Some(Ok(c))) => c,
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err(BROKEN),
            Err(_) => {
                return Err((
                    StatusCode::REQUEST_TIMEOUT,
                    "the upload stalled; request a new slot or try again",
                ))
            }
        };
        received += chunk.len() as u64;
        if received > size {
            return Err((
                StatusCode::PAYLOAD_TOO_LARGE,
                "more bytes than announced in the slot request",
            ));
        }
        if tx.send(Chunk::Data(chunk)).await.is_err() {
            writer_gone = true;
            break;
        }
    }
    if received == size {
        let _ = tx.send(Chunk::Complete).await;
    }
    drop(tx);
    match writer.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) if writer_gone || received == size => {
            log::error!("upload: storing a file failed: {e}");
            Err((
                StatusCode::INSUFFICIENT_STORAGE,
                "the server could not store the file",
            ))
        }
        Ok(Err(_)) => Err(BROKEN),
        Err(_) => Err((StatusCode::INTERNAL_SERVER_ERROR, "server error")),
    }
}

/// On the blocking pool: write the chunks to the partial file; on [`Chunk::Complete`] with every
/// byte written, sync it, rename it to `<token>` and record it. Anything else (the channel
/// closes first, a write fails) removes the partial file.
fn write(
    uploads: &Uploads,
    token: &str,
    mut rx: tokio::sync::mpsc::Receiver<Chunk>,
    mut record: Upload,
) -> Result<(), String> {
    let (Some(part), Some(dest)) = (uploads.part_path_of(token), uploads.path_of(token)) else {
        return Err("invalid token".into());
    };
    uploads.dir().map_err(|e| e.to_string())?;
    let result = write_part(&part, &mut rx, record.size).and_then(|complete| {
        if !complete {
            return Err("incomplete".into());
        }
        std::fs::rename(&part, &dest).map_err(|e| e.to_string())?;
        record.uploaded = crate::store::now_secs();
        uploads.put(token, &record).map_err(|e| {
            let _ = std::fs::remove_file(&dest);
            e.to_string()
        })
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    result
}

/// Write the chunks to `part` (created 0600); `Ok(true)` once complete and synced.
fn write_part(
    part: &Path,
    rx: &mut tokio::sync::mpsc::Receiver<Chunk>,
    size: u64,
) -> Result<bool, String> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(part).map_err(|e| e.to_string())?;
    let mut written = 0u64;
    while let Some(c) = rx.blocking_recv() {
        match c {
            Chunk::Data(b) => {
                f.write_all(&b).map_err(|e| e.to_string())?;
                written += b.len() as u64;
            }
            Chunk::Complete if written == size => {
                f.sync_all().map_err(|e| e.to_string())?;
                return Ok(true);
            }
            Chunk::Complete => break,
        }
    }
    Ok(false)
}
