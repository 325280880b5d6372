//! Health, metrics, the OpenAPI document, the audit log and reference data.

use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::{HttpRequest, HttpResponse, web};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde::Deserialize;

use super::{
    error::ApiError,
    extract::{ApiQuery, hub},
};
use crate::{
    accounts::Caller,
    audit,
    domain::{item::ItemState, page::Page, user::Role},
    error::Error,
    store::{self, entities::item},
};

type Reply = Result<HttpResponse, ApiError>;

pub const OPENAPI: &str = include_str!("openapi.json");

pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(OPENAPI)
}

pub async fn healthz(req: HttpRequest) -> Reply {
    let hub = hub(&req)?;
    match store::ping(&hub.db).await {
        Ok(()) => Ok(HttpResponse::Ok().json(serde_json::json!({"status": "ok", "database": "ok"}))),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unreachable");
            Ok(HttpResponse::ServiceUnavailable()
                .json(serde_json::json!({"status": "unavailable", "database": e.to_string()})))
        }
    }
}

/// Responses by status class (1xx…5xx), counted since start.
#[derive(Default)]
pub struct HttpMetrics {
    responses: [AtomicU64; 5],
}

impl HttpMetrics {
    pub fn record(&self, status: u16) {
        if let Some(counter) = self.responses.get(usize::from(status / 100).wrapping_sub(1)) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Prometheus text, for a scraper presenting `server.metrics_token`; off while none is set.
pub async fn metrics(req: HttpRequest, counters: web::Data<HttpMetrics>) -> Reply {
    let hub = hub(&req)?;
    let expected = hub.settings.server.metrics_token.as_str();
    if expected.is_empty() {
        return Err(Error::NotFound("metrics endpoint (set server.metrics_token)").into());
    }
    let presented = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
        return Err(Error::Unauthenticated.into());
    }
    let mut text = String::from(
        "# HELP herald_http_responses_total HTTP responses by status class.\n# TYPE herald_http_responses_total counter\n",
    );
    for (i, counter) in counters.responses.iter().enumerate() {
        text.push_str(&format!(
            "herald_http_responses_total{{class=\"{}xx\"}} {}\n",
            i + 1,
            counter.load(Ordering::Relaxed)
        ));
    }
    text.push_str("# HELP herald_items Items by workflow state.\n# TYPE herald_items gauge\n");
    for state in ItemState::ALL {
        let count = item::Entity::find()
            .filter(item::Column::State.eq(state.as_str()))
            .count(&hub.db)
            .await
            .map_err(Error::from)?;
        text.push_str(&format!("herald_items{{state=\"{}\"}} {count}\n", state.as_str()));
    }
    let up = u8::from(store::ping(&hub.db).await.is_ok());
    text.push_str(&format!("# HELP herald_database_up Whether the database answers.\n# TYPE herald_database_up gauge\nherald_database_up {up}\n"));
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(text))
}

/// Compares secrets without an early exit, so timing does not reveal how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    #[serde(default)]
    pub after: i64,
    pub limit: Option<u64>,
}

pub async fn audit_log(req: HttpRequest, caller: Caller, query: ApiQuery<AuditQuery>) -> Reply {
    if !matches!(caller.role, Role::Admin | Role::Reviewer) {
        return Err(Error::forbidden("only administrators and reviewers read the audit log").into());
    }
    let page = Page::parse(query.0.limit, None, 100, 1000)?;
    let hub = hub(&req)?;
    // Readers of the whole tree also see entries about no area (failed logins for unknown names).
    let scope = (caller.area != hub.areas.root().code).then_some(caller.area.as_str());
    let rows = audit::list(&hub.db, scope, query.0.after, page.limit)
        .await
        .map_err(Error::from)?;
    let entries: Vec<_> = rows
        .into_iter()
        .map(|r| {
            serde_json::json!({
                "seq": r.seq, "at": r.at, "actor": r.actor, "action": r.action,
                "target_type": r.target_type, "target_id": r.target_id,
                "before_hash": r.before_hash, "after_hash": r.after_hash,
                "detail": serde_json::from_str::<serde_json::Value>(&r.detail).unwrap_or(serde_json::Value::String(r.detail)),
                "prev_hash": r.prev_hash, "row_hash": r.row_hash, "area_code": r.area_code,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(entries))
}

pub async fn areas(req: HttpRequest, _caller: Caller) -> Reply {
    let hub = hub(&req)?;
    let areas: Vec<_> = hub
        .areas
        .iter()
        .map(|a| {
            serde_json::json!({
                "code": a.code.as_str(), "name": a.name, "level": a.code.level().as_str(),
                "parent": a.code.parent().map(|p| p.to_string()),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(areas))
}

pub async fn catalog(req: HttpRequest, _caller: Caller) -> Reply {
    let hub = hub(&req)?;
    Ok(HttpResponse::Ok().json(hub.catalog.iter().collect::<Vec<_>>()))
}
