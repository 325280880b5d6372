//! Targets, delivery status, retries and the receipts record.

use actix_web::{HttpRequest, HttpResponse, http::header, web};
use herald_channels::ChannelKind;
use serde::Deserialize;

use super::{
    error::ApiError,
    extract::{ApiJson, ApiQuery, hub},
};
use crate::{
    accounts::Caller,
    delivery::{self, DeliveryFilter, targets},
    error::Error,
    workflow::{self, PublishInput},
};

type Reply = Result<HttpResponse, ApiError>;

pub async fn list_targets(req: HttpRequest, caller: Caller) -> Reply {
    Ok(HttpResponse::Ok().json(targets::list_targets(&*hub(&req)?, &caller).await?))
}

pub async fn create_target(req: HttpRequest, caller: Caller, input: ApiJson<targets::NewTarget>) -> Reply {
    Ok(HttpResponse::Created().json(targets::create_target(&*hub(&req)?, &caller, input.0).await?))
}

fn parse_channel(field: &str, raw: &str) -> Result<ChannelKind, Error> {
    ChannelKind::parse(raw.trim()).ok_or_else(|| Error::validation(field, format!("unknown channel `{raw}`")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetQuery {
    /// Comma-separated channel names.
    #[serde(default)]
    pub channels: String,
    /// Comma-separated target ids.
    #[serde(default)]
    pub targets: String,
}

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
    };
    Ok(HttpResponse::Ok().json(workflow::preview_targets(&*hub(&req)?, &caller, &id, input).await?))
}

pub async fn item_preview(req: HttpRequest, caller: Caller, path: web::Path<(String, String)>) -> Reply {
    let (id, channel) = path.into_inner();
    let channel = parse_channel("channel", &channel)?;
    Ok(HttpResponse::Ok().json(workflow::preview_rendition(&*hub(&req)?, &caller, &id, channel).await?))
}

pub async fn item_deliveries(
    req: HttpRequest,
    caller: Caller,
    id: web::Path<String>,
    filter: ApiQuery<DeliveryFilter>,
) -> Reply {
    Ok(HttpResponse::Ok().json(delivery::item_deliveries(&*hub(&req)?, &caller, &id, filter.0).await?))
}

pub async fn list_deliveries(req: HttpRequest, caller: Caller, filter: ApiQuery<DeliveryFilter>) -> Reply {
    Ok(HttpResponse::Ok().json(delivery::list_deliveries(&*hub(&req)?, &caller, filter.0).await?))
}

pub async fn retry(req: HttpRequest, caller: Caller, id: web::Path<String>) -> Reply {
    Ok(HttpResponse::Ok().json(delivery::retry(&*hub(&req)?, &caller, &id).await?))
}

pub async fn cancel(req: HttpRequest, caller: Caller, id: web::Path<String>) -> Reply {
    Ok(HttpResponse::Ok().json(delivery::cancel(&*hub(&req)?, &caller, &id).await?))
}

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
