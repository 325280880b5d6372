//! `/api/v1/items…`, attachments and interpretation deadlines.

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, http::header, web};
use chrono::{DateTime, Utc};
use herald_channels::ChannelKind;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    error::{ApiError, ErrorBody},
    extract::{ApiBytes, ApiJson, ApiQuery, hub, parse_json_body},
};
use crate::{
    accounts::Caller,
    attachments::{self, AttachmentView},
    domain::item::ItemInput,
    error::Error,
    idempotency::{IDEMPOTENCY_KEY_FIELD, IdempotencyKey},
    workflow::{self, DueInterpretation, ItemPage, ItemView, VersionView},
};

type Reply = Result<HttpResponse, ApiError>;

/// Create an item (version 1, draft)
#[utoipa::path(
    post, path = "/api/v1/items", tag = "items",
    request_body = ItemInput,
    responses(
        (status = 201, description = "Created", body = ItemView,
            headers(("Location" = String, description = "The new item's URL"))),
        (status = 403, description = "Your role may not create items", body = ErrorBody),
        (status = 422, description = "Invalid input, or an area outside yours; `field` names it", body = ErrorBody),
    )
)]
pub async fn create(req: HttpRequest, caller: Caller, input: ApiJson<ItemInput>) -> Reply {
    let view = workflow::create_item(&*hub(&req)?, &caller, input.0).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/items/{}", view.id)))
        .json(view))
}

/// List items in your area, emergency first, newest first
#[utoipa::path(
    get, path = "/api/v1/items", tag = "items",
    params(workflow::ItemFilter),
    responses(
        (status = 200, description = "A page of items", body = ItemPage),
        (status = 403, description = "The `area` filter is outside your area", body = ErrorBody),
        (status = 422, description = "Invalid filter; `field` names it", body = ErrorBody),
    )
)]
pub async fn list(req: HttpRequest, caller: Caller, filter: ApiQuery<workflow::ItemFilter>) -> Reply {
    Ok(HttpResponse::Ok().json(workflow::list_items(&*hub(&req)?, &caller, filter.0).await?))
}

/// One item with its current version's content
#[utoipa::path(
    get, path = "/api/v1/items/{id}", tag = "items",
    params(("id" = String, Path, description = "The item's id")),
    responses(
        (status = 200, description = "The item", body = ItemView),
        (status = 403, description = "The item is outside your area", body = ErrorBody),
        (status = 404, description = "No such item", body = ErrorBody),
    )
)]
pub async fn get(req: HttpRequest, caller: Caller, id: web::Path<String>) -> Reply {
    Ok(HttpResponse::Ok().json(workflow::get_item(&*hub(&req)?, &caller, &id).await?))
}

/// Edit: stores a new immutable version; a submitted or approved item returns to draft
#[utoipa::path(
    put, path = "/api/v1/items/{id}", tag = "items",
    params(("id" = String, Path, description = "The item's id")),
    request_body = ItemInput,
    responses(
        (status = 200, description = "The item", body = ItemView),
        (status = 403, description = "Your role may not edit items, or the item is outside your area", body = ErrorBody),
        (status = 404, description = "No such item", body = ErrorBody),
        (status = 409, description = "Published, withdrawn and expired items are not edited; an edit that changes nothing", body = ErrorBody),
        (status = 422, description = "Invalid input; `field` names it", body = ErrorBody),
    )
)]
pub async fn edit(
    req: HttpRequest,
    caller: Caller,
    id: web::Path<String>,
    input: ApiJson<ItemInput>,
) -> Reply {
    Ok(HttpResponse::Ok().json(workflow::edit_item(&*hub(&req)?, &caller, &id, input.0).await?))
}

/// Every version of an item, oldest first
#[utoipa::path(
    get, path = "/api/v1/items/{id}/versions", tag = "items",
    params(("id" = String, Path, description = "The item's id")),
    responses(
        (status = 200, description = "Versions, without their content", body = Vec<VersionView>),
        (status = 403, description = "The item is outside your area", body = ErrorBody),
        (status = 404, description = "No such item", body = ErrorBody),
    )
)]
pub async fn versions(req: HttpRequest, caller: Caller, id: web::Path<String>) -> Reply {
    Ok(HttpResponse::Ok().json(workflow::list_versions(&*hub(&req)?, &caller, &id).await?))
}

/// One version with its content
#[utoipa::path(
    get, path = "/api/v1/items/{id}/versions/{version}", tag = "items",
    params(
        ("id" = String, Path, description = "The item's id"),
        ("version" = i32, Path, description = "The version number"),
    ),
    responses(
        (status = 200, description = "The version", body = VersionView),
        (status = 403, description = "The item is outside your area", body = ErrorBody),
        (status = 404, description = "No such item or version", body = ErrorBody),
        (status = 422, description = "The version is not a whole number", body = ErrorBody),
    )
)]
pub async fn version(req: HttpRequest, caller: Caller, path: web::Path<(String, String)>) -> Reply {
    let (id, version) = path.into_inner();
    let version: i32 = version
        .parse()
        .map_err(|_| Error::validation("version", "must be a whole number"))?;
    Ok(HttpResponse::Ok().json(workflow::get_version(&*hub(&req)?, &caller, &id, version).await?))
}

/// Submit a draft for review
#[utoipa::path(
    post, path = "/api/v1/items/{id}/submit", tag = "items",
    params(("id" = String, Path, description = "The item's id")),
    responses(
        (status = 200, description = "The item, in review", body = ItemView),
        (status = 403, description = "Your role may not submit items, or the item is outside your area", body = ErrorBody),
        (status = 404, description = "No such item", body = ErrorBody),
        (status = 409, description = "The item is not a draft", body = ErrorBody),
    )
)]
pub async fn submit(req: HttpRequest, caller: Caller, id: web::Path<String>) -> Reply {
    Ok(HttpResponse::Ok().json(workflow::submit(&*hub(&req)?, &caller, &id).await?))
}

/// Record the confidentiality check (保密审查) of the current version; never by its author
#[utoipa::path(
    post, path = "/api/v1/items/{id}/confidentiality-check", tag = "items",
    params(("id" = String, Path, description = "The item's id")),
    request_body = workflow::ConfidentialityCheckInput,
    responses(
        (status = 200, description = "The item", body = ItemView),
        (status = 403, description = "Not a reviewer, the item's author, or outside your area", body = ErrorBody),
        (status = 404, description = "No such item", body = ErrorBody),
        (status = 409, description = "The item is not in review", body = ErrorBody),
        (status = 422, description = "Invalid input or a stale version; `field` names it", body = ErrorBody),
    )
)]
pub async fn confidentiality_check(
    req: HttpRequest,
    caller: Caller,
    id: web::Path<String>,
    input: ApiJson<workflow::ConfidentialityCheckInput>,
) -> Reply {
    Ok(HttpResponse::Ok().json(workflow::confidentiality_check(&*hub(&req)?, &caller, &id, input.0).await?))
}

/// Approve the version reviewed, pinning it and its content hash; needs the confidentiality check; never by the author
#[utoipa::path(
    post, path = "/api/v1/items/{id}/approve", tag = "items",
    params(("id" = String, Path, description = "The item's id")),
    request_body = workflow::ApproveInput,
    responses(
        (status = 200, description = "The item, approved", body = ItemView),
        (status = 403, description = "Not a reviewer, the item's author, or outside your area", body = ErrorBody),
        (status = 404, description = "No such item", body = ErrorBody),
        (status = 409, description = "The item is not in review, or its confidentiality check is missing", body = ErrorBody),
        (status = 422, description = "A stale version; `field` names it", body = ErrorBody),
    )
)]
pub async fn approve(
    req: HttpRequest,
    caller: Caller,
    id: web::Path<String>,
    input: ApiJson<workflow::ApproveInput>,
) -> Reply {
    Ok(HttpResponse::Ok().json(workflow::approve(&*hub(&req)?, &caller, &id, input.0).await?))
}

/// Reject back to draft with a comment
#[utoipa::path(
    post, path = "/api/v1/items/{id}/reject", tag = "items",
    params(("id" = String, Path, description = "The item's id")),
    request_body = workflow::RejectInput,
    responses(
        (status = 200, description = "The item, back to draft", body = ItemView),
        (status = 403, description = "Not a reviewer, the item's author, or outside your area", body = ErrorBody),
        (status = 404, description = "No such item", body = ErrorBody),
        (status = 409, description = "The item is not in review", body = ErrorBody),
        (status = 422, description = "Invalid input or a stale version; `field` names it", body = ErrorBody),
    )
)]
pub async fn reject(
    req: HttpRequest,
    caller: Caller,
    id: web::Path<String>,
    input: ApiJson<workflow::RejectInput>,
) -> Reply {
    Ok(HttpResponse::Ok().json(workflow::reject(&*hub(&req)?, &caller, &id, input.0).await?))
}

/// Publish the approved version. Idempotent: a retry with the same Idempotency-Key returns the first result
///
/// The body is optional: an empty body publishes to every matching channel.
#[utoipa::path(
    post, path = "/api/v1/items/{id}/publish", tag = "items",
    params(
        ("id" = String, Path, description = "The item's id"),
        ("Idempotency-Key" = String, Header, description = "1–200 characters; a retry with the same key and request returns the first answer"),
    ),
    request_body(content = Option<workflow::PublishInput>, description = "Optional: channels and targets to narrow delivery to"),
    responses(
        (status = 201, description = "Published (or the replay of the first publish)", body = Publication,
            headers(("Idempotent-Replayed" = bool, description = "`true` when this answer is the saved one of an earlier request with the same key"))),
        (status = 400, description = "Malformed body; `field` names it", body = ErrorBody),
        (status = 403, description = "Your role may not publish items, or the item is outside your area", body = ErrorBody),
        (status = 404, description = "No such item", body = ErrorBody),
        (status = 409, description = "Not approved, or an interpretation whose policy is unpublished", body = ErrorBody),
        (status = 413, description = "Body larger than the request limit", body = ErrorBody),
        (status = 422, description = "Missing Idempotency-Key, a key reused for another request, a disclosure (on_request / not_public) that never leaves the store, an unavailable channel or a target it does not reach; `field` names it", body = ErrorBody),
    )
)]
pub async fn publish(
    req: HttpRequest,
    caller: Caller,
    id: web::Path<String>,
    ApiBytes(body): ApiBytes,
) -> Reply {
    let key = req
        .headers()
        .get(IDEMPOTENCY_KEY_FIELD)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            Error::validation(
                IDEMPOTENCY_KEY_FIELD,
                "publishing requires an Idempotency-Key header",
            )
        })?
        .to_owned();
    let input = if body.is_empty() {
        workflow::PublishInput::default()
    } else {
        parse_json_body(&req, &body)?
    };
    let key = IdempotencyKey::parse(&key)?;
    let outcome = workflow::publish(&*hub(&req)?, &caller, &id, &key, input).await?;
    let publication: Publication =
        serde_json::from_value(outcome.body).map_err(|e| Error::from(anyhow::Error::new(e)))?;
    let status = actix_web::http::StatusCode::from_u16(outcome.status)
        .map_err(|e| Error::from(anyhow::Error::new(e)))?;
    Ok(HttpResponse::build(status)
        .insert_header(("Idempotent-Replayed", outcome.replayed.to_string()))
        .json(publication))
}

/// Withdraw a published item from every channel
#[utoipa::path(
    post, path = "/api/v1/items/{id}/withdraw", tag = "items",
    params(("id" = String, Path, description = "The item's id")),
    request_body = workflow::WithdrawInput,
    responses(
        (status = 200, description = "The item, withdrawn", body = ItemView),
        (status = 403, description = "Your role may not withdraw items, or the item is outside your area", body = ErrorBody),
        (status = 404, description = "No such item", body = ErrorBody),
        (status = 409, description = "The item is not published", body = ErrorBody),
        (status = 422, description = "Invalid input; `field` names it", body = ErrorBody),
    )
)]
pub async fn withdraw(
    req: HttpRequest,
    caller: Caller,
    id: web::Path<String>,
    input: ApiJson<workflow::WithdrawInput>,
) -> Reply {
    Ok(HttpResponse::Ok().json(workflow::withdraw(&*hub(&req)?, &caller, &id, input.0).await?))
}

/// Unpublished policy interpretations (解读) with their deadlines: overdue, due soon or pending
#[utoipa::path(
    get, path = "/api/v1/interpretations/due", tag = "items",
    responses((status = 200, description = "Interpretations, soonest deadline first", body = Vec<DueInterpretation>)),
)]
pub async fn interpretations_due(req: HttpRequest, caller: Caller) -> Reply {
    Ok(HttpResponse::Ok().json(workflow::interpretations_due(&*hub(&req)?, &caller).await?))
}

/// Upload an attachment (the raw file as the body, with its Content-Type); stored by SHA-256
#[utoipa::path(
    post, path = "/api/v1/attachments", tag = "items",
    request_body(content = Vec<u8>, content_type = "*/*",
        description = "The file itself, sent with its own Content-Type (one of the configured attachment types, e.g. application/pdf)"),
    responses(
        (status = 201, description = "Stored", body = AttachmentView),
        (status = 413, description = "Larger than the request limit", body = ErrorBody),
        (status = 422, description = "No Content-Type, a type not allowed, content not of the declared type, empty or too large", body = ErrorBody),
    )
)]
pub async fn upload_attachment(req: HttpRequest, caller: Caller, ApiBytes(body): ApiBytes) -> Reply {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::validation("content_type", "send the file with its Content-Type"))?
        .to_owned();
    let view = attachments::upload(&*hub(&req)?, &caller, &content_type, &body).await?;
    Ok(HttpResponse::Created().json(view))
}

/// Download an attachment
#[utoipa::path(
    get, path = "/api/v1/attachments/{sha256}", tag = "items",
    params(("sha256" = String, Path, description = "The attachment's SHA-256, hex")),
    responses(
        (status = 200, description = "The file, with the Content-Type it was uploaded with", body = Vec<u8>, content_type = "*/*"),
        (status = 404, description = "No such attachment, or none you may read: readable are those named by an item you may see, and your own uploads no item names yet", body = ErrorBody),
    )
)]
pub async fn download_attachment(req: HttpRequest, caller: Caller, sha256: web::Path<String>) -> Reply {
    let file = attachments::download(&*hub(&req)?, &caller, &sha256).await?;
    Ok(HttpResponse::Ok().content_type(file.content_type).body(file.data))
}

/// What a publish answers (and a replay answers again). `workflow::publish` builds it as JSON,
/// stored for replays; the handler reads it back through this type, so the document describes
/// what is sent.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Publication {
    pub publication_id: String,
    pub item_id: String,
    pub version: i32,
    pub content_hash: String,
    pub published_at: DateTime<Utc>,
    /// The channels asked for; empty: every channel whose targets match.
    pub channels: Vec<ChannelKind>,
    /// Deliveries written, per channel.
    pub deliveries: BTreeMap<ChannelKind, usize>,
    /// 定时发布: nothing goes out before this time (null: at once).
    #[serde(default)]
    pub not_before: Option<DateTime<Utc>>,
    /// Deliveries not sent by this time are never sent.
    #[serde(default)]
    pub not_after: Option<DateTime<Utc>>,
}
