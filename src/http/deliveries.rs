//! Targets, delivery status, retries and the receipts record.

use actix_web::{HttpRequest, HttpResponse, http::header, web};
use herald_channels::{ChannelKind, Rendition};
use serde::Deserialize;

use super::{
    error::{ApiError, ErrorBody},
    extract::{ApiJson, ApiQuery, hub},
};
use crate::{
    accounts::Caller,
    delivery::{
        self, DeliveryFilter, DeliveryView, ItemDeliveries,
        targets::{self, TargetView},
    },
    error::Error,
    workflow::{self, PublishInput},
};

type Reply = Result<HttpResponse, ApiError>;

/// Channel targets of your area
#[utoipa::path(
    get, path = "/api/v1/targets", tag = "deliveries",
    responses((status = 200, description = "Targets", body = Vec<TargetView>)),
)]
pub async fn list_targets(req: HttpRequest, caller: Caller) -> Reply {
    Ok(HttpResponse::Ok().json(targets::list_targets(&*hub(&req)?, &caller).await?))
}

/// Register a channel target (administrators)
#[utoipa::path(
    post, path = "/api/v1/targets", tag = "deliveries",
    request_body = targets::NewTarget,
    responses(
        (status = 201, description = "Registered", body = TargetView),
        (status = 403, description = "Not an administrator, or an area outside yours", body = ErrorBody),
        (status = 422, description = "Invalid input; `field` names it", body = ErrorBody),
    )
)]
pub async fn create_target(req: HttpRequest, caller: Caller, input: ApiJson<targets::NewTarget>) -> Reply {
    Ok(HttpResponse::Created().json(targets::create_target(&*hub(&req)?, &caller, input.0).await?))
}

fn parse_channel(field: &str, raw: &str) -> Result<ChannelKind, Error> {
    ChannelKind::parse(raw.trim()).ok_or_else(|| Error::validation(field, format!("unknown channel `{raw}`")))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TargetQuery {
    /// Comma-separated channel names.
    #[serde(default)]
    pub channels: String,
    /// Comma-separated target ids.
    #[serde(default)]
    pub targets: String,
}

/// The targets publishing would reach now (optionally narrowed)
#[utoipa::path(
    get, path = "/api/v1/items/{id}/targets", tag = "deliveries",
    params(("id" = String, Path, description = "The item's id"), TargetQuery),
    responses(
        (status = 200, description = "Resolved targets", body = Vec<TargetView>),
        (status = 403, description = "The item is outside your area", body = ErrorBody),
        (status = 404, description = "No such item", body = ErrorBody),
        (status = 422, description = "Unknown or unavailable channel, or a target it does not reach; `field` names it", body = ErrorBody),
    )
)]
pub async fn item_targets(
    req: HttpRequest,
    caller: Caller,
    id: web::Path<String>,
    query: ApiQuery<TargetQuery>,
) -> Reply {
    let split = |raw: &str| {
        raw.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let channels = split(&query.0.channels)
        .iter()
        .map(|c| parse_channel("channels", c))
        .collect::<Result<Vec<_>, _>>()?;
    let input = PublishInput {
        channels,
        targets: split(&query.0.targets),
        ..PublishInput::default()
    };
    Ok(HttpResponse::Ok().json(workflow::preview_targets(&*hub(&req)?, &caller, &id, input).await?))
}

/// The exact rendition a channel would receive for the current version
#[utoipa::path(
    get, path = "/api/v1/items/{id}/preview/{channel}", tag = "deliveries",
    params(
        ("id" = String, Path, description = "The item's id"),
        ("channel" = ChannelKind, Path, description = "The channel"),
    ),
    responses(
        (status = 200, description = "Rendition", body = Rendition),
        (status = 403, description = "The item is outside your area", body = ErrorBody),
        (status = 404, description = "No such item", body = ErrorBody),
        (status = 422, description = "Unknown or unavailable channel, or an item the channel cannot render", body = ErrorBody),
    )
)]
pub async fn item_preview(req: HttpRequest, caller: Caller, path: web::Path<(String, String)>) -> Reply {
    let (id, channel) = path.into_inner();
    let channel = parse_channel("channel", &channel)?;
    Ok(HttpResponse::Ok().json(workflow::preview_rendition(&*hub(&req)?, &caller, &id, channel).await?))
}

/// An item's deliveries: counts by channel × kind × state and per-target rows
#[utoipa::path(
    get, path = "/api/v1/items/{id}/deliveries", tag = "deliveries",
    params(("id" = String, Path, description = "The item's id"), DeliveryFilter),
    responses(
        (status = 200, description = "Deliveries", body = ItemDeliveries),
        (status = 403, description = "The item, or the `area` filter, is outside your area", body = ErrorBody),
        (status = 404, description = "No such item", body = ErrorBody),
        (status = 422, description = "Invalid filter; `field` names it", body = ErrorBody),
    )
)]
pub async fn item_deliveries(
    req: HttpRequest,
    caller: Caller,
    id: web::Path<String>,
    filter: ApiQuery<DeliveryFilter>,
) -> Reply {
    Ok(HttpResponse::Ok().json(delivery::item_deliveries(&*hub(&req)?, &caller, &id, filter.0).await?))
}

/// Deliveries to targets in your area, most recently changed first
#[utoipa::path(
    get, path = "/api/v1/deliveries", tag = "deliveries",
    params(DeliveryFilter),
    responses(
        (status = 200, description = "Deliveries", body = Vec<DeliveryView>),
        (status = 403, description = "The `area` filter is outside your area", body = ErrorBody),
        (status = 422, description = "Invalid filter; `field` names it", body = ErrorBody),
    )
)]
pub async fn list_deliveries(req: HttpRequest, caller: Caller, filter: ApiQuery<DeliveryFilter>) -> Reply {
    Ok(HttpResponse::Ok().json(delivery::list_deliveries(&*hub(&req)?, &caller, filter.0).await?))
}

/// Send a failed or unconfirmed delivery again; no other delivery is touched
#[utoipa::path(
    post, path = "/api/v1/deliveries/{id}/retry", tag = "deliveries",
    params(("id" = String, Path, description = "The delivery's id")),
    responses(
        (status = 200, description = "Queued again", body = DeliveryView),
        (status = 403, description = "Your role may not retry deliveries, or the delivery is outside your area", body = ErrorBody),
        (status = 404, description = "No such delivery", body = ErrorBody),
        (status = 409, description = "Only failed or unconfirmed deliveries of a published item are retried", body = ErrorBody),
    )
)]
pub async fn retry(req: HttpRequest, caller: Caller, id: web::Path<String>) -> Reply {
    Ok(HttpResponse::Ok().json(delivery::retry(&*hub(&req)?, &caller, &id).await?))
}

/// Ask the channel now whether an unconfirmed delivery arrived; a report found settles it
#[utoipa::path(
    post, path = "/api/v1/deliveries/{id}/reconcile", tag = "deliveries",
    params(("id" = String, Path, description = "The delivery's id")),
    responses(
        (status = 200, description = "The channel will be asked on the reconciler's next pass", body = DeliveryView),
        (status = 403, description = "Your role may not ask about deliveries, or the delivery is outside your area", body = ErrorBody),
        (status = 404, description = "No such delivery", body = ErrorBody),
        (status = 409, description = "Only unconfirmed deliveries are asked about", body = ErrorBody),
    )
)]
pub async fn reconcile(req: HttpRequest, caller: Caller, id: web::Path<String>) -> Reply {
    Ok(HttpResponse::Ok().json(delivery::reconcile(&*hub(&req)?, &caller, &id).await?))
}

/// Cancel a delivery not yet sent (e.g. a scheduled announcement called off)
#[utoipa::path(
    post, path = "/api/v1/deliveries/{id}/cancel", tag = "deliveries",
    params(("id" = String, Path, description = "The delivery's id")),
    responses(
        (status = 200, description = "Cancelled", body = DeliveryView),
        (status = 403, description = "Your role may not cancel deliveries, or the delivery is outside your area", body = ErrorBody),
        (status = 404, description = "No such delivery", body = ErrorBody),
        (status = 409, description = "Already sent or finished", body = ErrorBody),
    )
)]
pub async fn cancel(req: HttpRequest, caller: Caller, id: web::Path<String>) -> Reply {
    Ok(HttpResponse::Ok().json(delivery::cancel(&*hub(&req)?, &caller, &id).await?))
}

/// Every delivery of an item with its receipts, as CSV for the record
#[utoipa::path(
    get, path = "/api/v1/items/{id}/receipts.csv", tag = "deliveries",
    params(("id" = String, Path, description = "The item's id")),
    responses(
        (status = 200, description = "CSV, one row per delivery and receipt", body = String, content_type = "text/csv",
            headers(("Content-Disposition" = String, description = "attachment; filename=\"receipts-<id>.csv\""))),
        (status = 403, description = "The item is outside your area", body = ErrorBody),
        (status = 404, description = "No such item", body = ErrorBody),
    )
)]
pub async fn receipts_csv(req: HttpRequest, caller: Caller, id: web::Path<String>) -> Reply {
    let csv = delivery::receipts_csv(&*hub(&req)?, &caller, &id).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"receipts-{}.csv\"", id.as_str()),
        ))
        .body(csv))
}
