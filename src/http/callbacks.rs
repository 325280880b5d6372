//! `GET|POST /callbacks/{channel}/{target}`: where channels report outcomes (WeChat events, a
//! media centre's signed status callbacks). No login: a callback's authentication is its
//! channel's own verification (`Callbacks::verify`) of method, query, headers, raw body and
//! time, with the target's secrets. A verified callback is stored (`inbox::intake_callback`),
//! once: the same signed request again is refused (401 `replayed`). It is
//! answered at once with the channel's reply; applying it comes later. A rejected one writes
//! nothing and gets a 4xx JSON error naming what failed.
//!
//! Also `GET /api/v1/receipts/unmatched`: stored receipts that named no delivery.

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use futures::StreamExt;
use herald_channels::{CallbackError, CallbackReply, CallbackRequest, ChannelKind};

use super::{
    error::{ApiError, ErrorBody},
    extract::{ApiQuery, hub},
};
use crate::{
    accounts::Caller,
    delivery::{
        inbox::{self, InboxReceiptView, UnmatchedQuery},
        targets::TargetRefs,
    },
};

type Reply = Result<HttpResponse, ApiError>;

/// A callback body is an event or a status report, never a document.
pub const CALLBACK_MAX_BYTES: usize = 64 * 1024;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/callbacks/{channel}/{target}")
            .route(web::get().to(callback))
            .route(web::post().to(callback))
            .default_service(web::to(other_method)),
    );
}

fn not_found(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        message,
        Some(field.to_owned()),
    )
}

/// Reads the raw body, refusing more than `max` bytes before it is all in memory.
pub(super) async fn raw_body(mut payload: web::Payload, max: usize) -> Result<Vec<u8>, ApiError> {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::malformed(format!("the body could not be read: {e}"), Some("body".into()))
        })?;
        if body.len() + chunk.len() > max {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the body is at most {max} bytes"),
                Some("body".into()),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn rejected(error: CallbackError) -> ApiError {
    let message = error.to_string();
    match error {
        CallbackError::Unauthenticated { field, .. } => {
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message, Some(field))
        }
        CallbackError::Stale { field, .. } => {
            ApiError::new(StatusCode::UNAUTHORIZED, "stale", message, Some(field))
        }
        CallbackError::Malformed { field, .. } => ApiError::malformed(message, Some(field)),
        CallbackError::Method(_) => ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            message,
            Some("method".into()),
        ),
    }
}

/// Channels call back with GET (a WeChat server check) or POST; anything else is refused in
/// the API's error shape, like every other refusal here.
async fn other_method(req: HttpRequest) -> Reply {
    Err(ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("callbacks are GET or POST, not {}", req.method()),
        Some("method".into()),
    ))
}

async fn callback(req: HttpRequest, path: web::Path<(String, String)>, payload: web::Payload) -> Reply {
    let hub = hub(&req)?;
    let (channel, target_id) = path.into_inner();
    let kind = ChannelKind::parse(&channel)
        .ok_or_else(|| not_found("channel", format!("no channel `{channel}`")))?;
    let callbacks = hub
        .channels
        .get(kind)
        .and_then(|adapter| adapter.callbacks().is_some().then(|| adapter.clone()))
        .ok_or_else(|| not_found("channel", format!("{} takes no callbacks", kind.as_str())))?;
    let targets = TargetRefs::load(&hub, &[target_id.as_str()]).await?;
    if targets.view(&target_id).is_none_or(|view| view.channel != kind) {
        return Err(not_found(
            "target",
            format!("no {} target `{target_id}`", kind.as_str()),
        ));
    }
    // Secrets that cannot be opened are our configuration, not the caller's fault (a 500):
    // the channel will resend once it is fixed.
    let target = targets.target_ref(&target_id)?;
    let body = raw_body(payload, CALLBACK_MAX_BYTES).await?;
    let headers: Vec<(String, &str)> = req
        .headers()
        .iter()
        .filter_map(|(name, value)| Some((name.as_str().to_ascii_lowercase(), value.to_str().ok()?)))
        .collect();
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(name, value)| (name.as_str(), *value))
        .collect();
    let request = CallbackRequest {
        method: req.method().as_str(),
        query: req.query_string(),
        headers: &headers,
        body: &body,
    };
    let now = hub.clock.now();
    let verifier = callbacks
        .callbacks()
        .ok_or_else(|| not_found("channel", format!("{} takes no callbacks", kind.as_str())))?;
    let verified = verifier.verify(&target, &request, now).map_err(rejected)?;
    // Stored (and committed) before the channel is told it arrived.
    if inbox::intake_callback(&hub.db, kind, &target.id, &verified, now)
        .await?
        .is_none()
    {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "replayed",
            "this signed request was received before",
            Some("nonce".into()),
        ));
    }
    hub.due.wake_appliers();
    Ok(match verified.reply {
        CallbackReply::Text(text) => HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .body(text),
        CallbackReply::Json(value) => HttpResponse::Ok().json(value),
        CallbackReply::Empty => HttpResponse::Ok().finish(),
    })
}

/// Receipts that named no delivery (administrators)
#[utoipa::path(
    get, path = "/api/v1/receipts/unmatched", tag = "deliveries",
    params(UnmatchedQuery),
    responses(
        (status = 200, description = "Stored receipts that matched no delivery, newest first", body = Vec<InboxReceiptView>),
        (status = 403, description = "Not an administrator", body = ErrorBody),
        (status = 422, description = "Invalid limit or offset; `field` names it", body = ErrorBody),
    )
)]
pub async fn unmatched_receipts(req: HttpRequest, caller: Caller, query: ApiQuery<UnmatchedQuery>) -> Reply {
    Ok(HttpResponse::Ok().json(inbox::unmatched(&*hub(&req)?, &caller, query.0).await?))
}
