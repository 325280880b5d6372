//! `POST /api/v1/alerts/cap`: a CAP 1.2 alert (Alert, Update or Cancel) from an upstream
//! warning system, as XML. See `workflow::alerts` for what each message does.

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};

use super::{
    callbacks::raw_body,
    error::{ApiError, ErrorBody},
    extract::hub,
};
use crate::{
    accounts::Caller,
    domain::cap::MAX_CAP_BYTES,
    workflow::{self, AlertOutcome},
};

type Reply = Result<HttpResponse, ApiError>;

/// The media types a CAP message comes as.
const CAP_MEDIA_TYPES: [&str; 3] = ["application/cap+xml", "application/xml", "text/xml"];

/// Post a CAP 1.2 alert (administrators): an Alert or Update goes out at once as an emergency item to the areas it covers; an Update or Cancel takes down the alerts it references
#[utoipa::path(
    post, path = "/api/v1/alerts/cap", tag = "alerts",
    request_body(content = String, content_type = "application/cap+xml", description = "A CAP 1.2 `alert` document"),
    responses(
        (status = 201, description = "Taken: what it published and took down", body = AlertOutcome),
        (status = 200, description = "This message (sender and identifier) was taken before; nothing was done again", body = AlertOutcome),
        (status = 403, description = "Not an administrator, or an area outside yours", body = ErrorBody),
        (status = 409, description = "The same message is being taken in by another request; send it again shortly", body = ErrorBody),
        (status = 413, description = "Larger than a CAP message may be", body = ErrorBody),
        (status = 415, description = "Not XML", body = ErrorBody),
        (status = 422, description = "Not a valid CAP 1.2 alert; `field` names the element (`alert.info[0].expires`)", body = ErrorBody),
    )
)]
pub async fn post_cap(req: HttpRequest, caller: Caller, payload: web::Payload) -> Reply {
    let media_type = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if !CAP_MEDIA_TYPES.contains(&media_type.as_str()) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("send the CAP alert as {}", CAP_MEDIA_TYPES.join(", ")),
            Some("Content-Type".into()),
        ));
    }
    let body = raw_body(payload, MAX_CAP_BYTES).await?;
    let outcome = workflow::receive_cap(&*hub(&req)?, &caller, &body).await?;
    Ok(if outcome.replayed {
        HttpResponse::Ok().json(outcome)
    } else {
        HttpResponse::Created().json(outcome)
    })
}
