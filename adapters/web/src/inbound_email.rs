//! `POST /inbound/email`: a prospect's reply to the acknowledgement, as Mailgun's route
//! `forward()` posts it (`application/x-www-form-urlencoded`, or `multipart/form-data` when the
//! message has attachments, which are not read). The core checks it and queues it for the
//! notify stage ([`Pipeline::receive_reply`]); this file only reads the form and maps the answer.
//!
//! Answers, as Mailgun reads them (it retries anything but 200 and 406 for 8 hours):
//! 200 forwarded or duplicate; 406 signed but not an address leadrelay issued (or a lead that
//! does not exist, or no sender), so it stops retrying; 401 a missing, forged or stale
//! signature; 404 replies not configured; 413 over the body limit; 503 the reply could not be
//! queued, so it is sent again.
//!
//! The limits: a urlencoded post (no attachments) 256 KiB, as any webhook. A multipart post may
//! carry attachments up to 10 MiB in all (6 MB on Lambda, its request limit), streamed past without being
//! kept, so a prospect's reply with a PDF is not refused; its text fields together still 256 KiB.

use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;
use tracing::warn;

use crate::{error, read_body, retry_later, Api, BodyRead, MAX_BODY_BYTES, RETRY_AFTER_SECS};
use leadrelay_shared::stages::{InboundError, InboundPost, ReplyIntake};

pub(crate) fn routes() -> Router<Api> {
    Router::new().route(
        "/inbound/email",
        post(receive_email).layer(DefaultBodyLimit::max(MAX_MULTIPART_BYTES)),
    )
}

/// A multipart post's whole body, attachments included (API Gateway's limit; on Lambda, its
/// 6 MB request limit applies first).
const MAX_MULTIPART_BYTES: usize = 10 * 1024 * 1024;

async fn receive_email(State(api): State<Api>, request: Request) -> Response {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let multipart = content_type.starts_with("multipart/form-data");
    let (limit, too_large) = if multipart {
        (MAX_MULTIPART_BYTES, "body over 10 MiB")
    } else {
        (MAX_BODY_BYTES, "body over 256 KiB")
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return error(StatusCode::PAYLOAD_TOO_LARGE, too_large, None);
    }
    let form = if multipart {
        match multipart_fields(request).await {
            Ok(fields) => fields,
            Err(MultipartRead::TooLarge(what)) => {
                return error(StatusCode::PAYLOAD_TOO_LARGE, what, None)
            }
            Err(MultipartRead::Malformed(reason)) => {
                warn!(%reason, "unreadable multipart inbound e-mail");
                return error(
                    StatusCode::BAD_REQUEST,
                    "malformed multipart/form-data body",
                    None,
                );
            }
        }
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        let bytes = match read_body(request.into_body(), MAX_BODY_BYTES).await {
            BodyRead::Complete(bytes) => bytes,
            BodyRead::TooLarge => return error(StatusCode::PAYLOAD_TOO_LARGE, too_large, None),
            BodyRead::Unreadable(cause) => {
                warn!(error = %cause, "could not read an inbound e-mail body");
                return error(
                    StatusCode::BAD_REQUEST,
                    "could not read the request body",
                    None,
                );
            }
        };
        url::form_urlencoded::parse(&bytes)
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect()
    } else {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected application/x-www-form-urlencoded or multipart/form-data",
            None,
        );
    };
    let post = inbound_post(form);
    match api.pipeline.receive_reply(&post).await {
        Ok(ReplyIntake::Forwarded { lead_id }) => (
            StatusCode::OK,
            Json(json!({"status": "forwarded", "lead_id": lead_id})),
        )
            .into_response(),
        Ok(ReplyIntake::Duplicate { lead_id }) => (
            StatusCode::OK,
            Json(json!({"status": "duplicate", "lead_id": lead_id})),
        )
            .into_response(),
        Err(InboundError::NotConfigured) => error(
            StatusCode::NOT_FOUND,
            "inbound e-mail is not configured",
            None,
        ),
        Err(InboundError::Unauthorized(reason)) => {
            // Which check failed goes to the log only.
            warn!(reason = %reason, "inbound e-mail signature refused");
            error(StatusCode::UNAUTHORIZED, "invalid signature", None)
        }
        Err(refused @ (InboundError::NotOurs(_) | InboundError::UnknownLead)) => {
            warn!(reason = %refused, "inbound e-mail to an address leadrelay did not issue");
            error(
                StatusCode::NOT_ACCEPTABLE,
                "not a reply address of this relay",
                None,
            )
        }
        Err(InboundError::Unusable(what)) => {
            warn!(missing = what, "inbound e-mail with nothing to forward");
            error(
                StatusCode::NOT_ACCEPTABLE,
                &format!("no usable {what}"),
                None,
            )
        }
        Err(InboundError::InFlight) => retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            "the same post is being taken, retry later",
            RETRY_AFTER_SECS,
        ),
        Err(failure @ (InboundError::Store(_) | InboundError::Queue(_))) => {
            error!(error = %failure, "could not queue an inbound reply");
            retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily unavailable, retry later",
                RETRY_AFTER_SECS,
            )
        }
    }
}

/// Why a multipart body was not read.
enum MultipartRead {
    TooLarge(&'static str),
    Malformed(String),
}

/// The text fields of a multipart body, 256 KiB together; attachments (parts with a file
/// name) are streamed past, never kept.
async fn multipart_fields(request: Request) -> Result<Vec<(String, String)>, MultipartRead> {
    let failed = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            MultipartRead::TooLarge("body over 10 MiB")
        } else {
            MultipartRead::Malformed(e.body_text())
        }
    };
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|e| MultipartRead::Malformed(e.body_text()))?;
    let mut fields = Vec::new();
    let mut text_bytes = 0usize;
    while let Some(mut field) = multipart.next_field().await.map_err(failed)? {
        let name = match (field.name().map(str::to_owned), field.file_name()) {
            (Some(name), None) => name,
            _ => {
                while field.chunk().await.map_err(failed)?.is_some() {}
                continue;
            }
        };
        let mut value = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(failed)? {
            text_bytes += chunk.len();
            if text_bytes > MAX_BODY_BYTES {
                return Err(MultipartRead::TooLarge("text fields over 256 KiB"));
            }
            value.extend_from_slice(&chunk);
        }
        // Mailgun sends every text field as UTF-8.
        if let Ok(value) = String::from_utf8(value) {
            fields.push((name, value));
        }
    }
    Ok(fields)
}

/// Mailgun's fields, by name (the first of each; `Message-Id` in either spelling).
fn inbound_post(form: Vec<(String, String)>) -> InboundPost {
    let mut post = InboundPost::default();
    for (name, value) in form {
        let slot = match name.to_ascii_lowercase().as_str() {
            "recipient" => &mut post.recipient,
            "sender" => &mut post.sender,
            "from" => &mut post.from,
            "subject" => &mut post.subject,
            "body-plain" => &mut post.body_plain,
            "stripped-text" => &mut post.stripped_text,
            "message-id" => &mut post.message_id,
            "timestamp" => &mut post.timestamp,
            "token" => &mut post.token,
            "signature" => &mut post.signature,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(value);
        }
    }
    post
}
