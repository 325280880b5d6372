//! `/api/v1/items…`, attachments and interpretation deadlines.

use super::{
    error::ApiError,
    extract::{ApiJson, ApiQuery, hub, parse_json_body},
};
use crate::{accounts::Caller, attachments, domain::item::ItemInput, error::Error, workflow};
use actix_web::{HttpRequest, HttpResponse, http::header, web};

type Reply = Result<HttpResponse, ApiError>;

pub async fn create(req: HttpRequest, caller: Caller, input: ApiJson<ItemInput>) -> Reply {
    let view = workflow::create_item(&*hub(&req)?, &caller, input.0).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/items/{}", view.id)))
        .json(view))
}

pub async fn list(req: HttpRequest, caller: Caller, filter: ApiQuery<workflow::ItemFilter>) -> Reply {
    Ok(HttpResponse::Ok().json(workflow::list_items(&*hub(&req)?, &caller, filter.0).await?))
}

pub async fn get(req: HttpRequest, caller: Caller, id: web::Path<String>) -> Reply {
    Ok(HttpResponse::Ok().json(workflow::get_item(&*hub(&req)?, &caller, &id).await?))
}

pub async fn edit(
    req: HttpRequest,
    caller: Caller,
    id: web::Path<String>,
    input: ApiJson<ItemInput>,
) -> Reply {
    Ok(HttpResponse::Ok().json(workflow::edit_item(&*hub(&req)?, &caller, &id, input.0).await?))
}

pub async fn versions(req: HttpRequest, caller: Caller, id: web::Path<String>) -> Reply {
    Ok(HttpResponse::Ok().json(workflow::list_versions(&*hub(&req)?, &caller, &id).await?))
}

pub async fn version(req: HttpRequest, caller: Caller, path: web::Path<(String, String)>) -> Reply {
    let (id, version) = path.into_inner();
    let version: i32 = version
        .parse()
        .map_err(|_| Error::validation("version", "must be a whole number"))?;
    Ok(HttpResponse::Ok().json(workflow::get_version(&*hub(&req)?, &caller, &id, version).await?))
}

pub async fn submit(req: HttpRequest, caller: Caller, id: web::Path<String>) -> Reply {
    Ok(HttpResponse::Ok().json(workflow::submit(&*hub(&req)?, &caller, &id).await?))
}

pub async fn confidentiality_check(
    req: HttpRequest,
    caller: Caller,
    id: web::Path<String>,
    input: ApiJson<workflow::ConfidentialityCheckInput>,
) -> Reply {
    Ok(HttpResponse::Ok().json(workflow::confidentiality_check(&*hub(&req)?, &caller, &id, input.0).await?))
}

pub async fn approve(
    req: HttpRequest,
    caller: Caller,
    id: web::Path<String>,
    input: ApiJson<workflow::ApproveInput>,
) -> Reply {
    Ok(HttpResponse::Ok().json(workflow::approve(&*hub(&req)?, &caller, &id, input.0).await?))
}

pub async fn reject(
    req: HttpRequest,
    caller: Caller,
    id: web::Path<String>,
    input: ApiJson<workflow::RejectInput>,
) -> Reply {
    Ok(HttpResponse::Ok().json(workflow::reject(&*hub(&req)?, &caller, &id, input.0).await?))
}

/// The body is optional: an empty body publishes to every matching channel.
pub async fn publish(req: HttpRequest, caller: Caller, id: web::Path<String>, body: web::Bytes) -> Reply {
    let key = req
        .headers()
        .get("Idempotency-Key")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::validation("Idempotency-Key", "publishing requires an Idempotency-Key header"))?
        .to_owned();
    let input = if body.is_empty() {
        workflow::PublishInput::default()
    } else {
        parse_json_body(&req, &body)?
    };
    let outcome = workflow::publish(&*hub(&req)?, &caller, &id, &key, input).await?;
    let status =
        actix_web::http::StatusCode::from_u16(outcome.status).unwrap_or(actix_web::http::StatusCode::OK);
    Ok(HttpResponse::build(status)
        .insert_header(("Idempotent-Replayed", outcome.replayed.to_string()))
        .json(outcome.body))
}

pub async fn withdraw(
    req: HttpRequest,
    caller: Caller,
    id: web::Path<String>,
    input: ApiJson<workflow::WithdrawInput>,
) -> Reply {
    Ok(HttpResponse::Ok().json(workflow::withdraw(&*hub(&req)?, &caller, &id, input.0).await?))
}

pub async fn interpretations_due(req: HttpRequest, caller: Caller) -> Reply {
    Ok(HttpResponse::Ok().json(workflow::interpretations_due(&*hub(&req)?, &caller).await?))
}

pub async fn upload_attachment(req: HttpRequest, caller: Caller, body: web::Bytes) -> Reply {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::validation("content_type", "send the file with its Content-Type"))?
        .to_owned();
    let view = attachments::upload(&*hub(&req)?, &caller, &content_type, &body).await?;
    Ok(HttpResponse::Created().json(view))
}

pub async fn download_attachment(req: HttpRequest, caller: Caller, sha256: web::Path<String>) -> Reply {
    let file = attachments::download(&*hub(&req)?, &caller, &sha256).await?;
    Ok(HttpResponse::Ok().content_type(file.content_type).body(file.data))
}
