//! Health, metrics, the audit log and reference data.

use actix_web::{HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    error::{ApiError, ErrorBody},
    extract::{ApiQuery, hub},
};
use crate::{
    accounts::Caller,
    annual_report, audit,
    domain::{
        area::AreaLevel, catalog::CatalogEntry, item::ItemState, page::Page, topic::TopicClass, user::Role,
    },
    error::Error,
    store::{self, entities::item},
};

type Reply = Result<HttpResponse, ApiError>;

/// Whether the hub and its database answer.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `unavailable` when the database does not answer.
    pub status: &'static str,
    /// `ok`, or why the database does not answer.
    pub database: String,
}

/// Health check: answers 200 when the database does
#[utoipa::path(
    get, path = "/healthz", tag = "system", security(()),
    responses(
        (status = 200, description = "Healthy", body = Health),
        (status = 503, description = "Database unreachable", body = Health),
    )
)]
pub async fn healthz(req: HttpRequest) -> Reply {
    let hub = hub(&req)?;
    match store::ping(&hub.db).await {
        Ok(()) => Ok(HttpResponse::Ok().json(Health {
            status: "ok",
            database: "ok".into(),
        })),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unreachable");
            Ok(HttpResponse::ServiceUnavailable().json(Health {
                status: "unavailable",
                database: e.to_string(),
            }))
        }
    }
}

/// Prometheus metrics, for a scraper presenting `server.metrics_token`; off while none is set
#[utoipa::path(
    get, path = "/metrics", tag = "system", security(("metrics_token" = [])),
    responses(
        (status = 200, description = "Metrics in the Prometheus text format 0.0.4", body = String, content_type = "text/plain"),
        (status = 401, description = "The bearer token is not `server.metrics_token`", body = ErrorBody),
        (status = 404, description = "No `server.metrics_token` is configured: metrics are off", body = ErrorBody),
    ),
)]
pub async fn metrics(req: HttpRequest) -> Reply {
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
    if !crate::accounts::constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
        return Err(Error::Unauthenticated.into());
    }
    let mut items = Vec::with_capacity(ItemState::ALL.len());
    for state in ItemState::ALL {
        let count = item::Entity::find()
            .filter(item::Column::State.eq(state.as_str()))
            .count(&hub.db)
            .await
            .map_err(Error::from)?;
        items.push((state.as_str(), count));
    }
    let up = store::ping(&hub.db).await.is_ok();
    let text = hub.metrics.render(&items, up);
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(text))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Entries after this sequence number.
    #[serde(default)]
    pub after: i64,
    /// 1–1000; 100 when omitted.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
}

/// One entry of the hash-chained audit log.
#[derive(Serialize, ToSchema)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: DateTime<Utc>,
    /// The acting user's id (or `cli`, `system`…).
    pub actor: String,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub before_hash: Option<String>,
    pub after_hash: Option<String>,
    /// What changed, as recorded.
    pub detail: serde_json::Value,
    pub prev_hash: String,
    pub row_hash: String,
    /// The area the entry's target lies in; null for entries about no area (a failed login
    /// for a name nobody has), which only readers of the whole county see.
    pub area_code: Option<String>,
}

/// The hash-chained audit log (administrators and reviewers), within the caller's area
#[utoipa::path(
    get, path = "/api/v1/audit", tag = "system",
    params(AuditQuery),
    responses(
        (status = 200, description = "Entries, oldest first", body = Vec<AuditEntry>),
        (status = 403, description = "Only administrators and reviewers read the audit log", body = ErrorBody),
        (status = 422, description = "Invalid limit", body = ErrorBody),
    )
)]
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
        .map(|r| AuditEntry {
            seq: r.seq,
            at: r.at,
            actor: r.actor,
            action: r.action,
            target_type: r.target_type,
            target_id: r.target_id,
            before_hash: r.before_hash,
            after_hash: r.after_hash,
            // The log is evidence: an entry whose detail is not JSON is shown as the text it
            // holds (its hash covers that text, so `verify` tells whether it was changed),
            // never hidden behind an error or replaced.
            detail: serde_json::from_str::<serde_json::Value>(&r.detail)
                .unwrap_or(serde_json::Value::String(r.detail)),
            prev_hash: r.prev_hash,
            row_hash: r.row_hash,
            area_code: r.area_code,
        })
        .collect();
    Ok(HttpResponse::Ok().json(entries))
}

/// One administrative division.
#[derive(Serialize, ToSchema)]
#[schema(as = Area)]
pub struct AreaView {
    /// 6 (county), 9 (township) or 12 (village) digits.
    pub code: String,
    pub name: String,
    pub level: AreaLevel,
    /// The enclosing division; null for the county.
    pub parent: Option<String>,
}

/// The administrative-division tree
#[utoipa::path(
    get, path = "/api/v1/areas", tag = "system",
    responses((status = 200, description = "Areas", body = Vec<AreaView>)),
)]
pub async fn areas(req: HttpRequest, _caller: Caller) -> Reply {
    let hub = hub(&req)?;
    let areas: Vec<_> = hub
        .areas
        .iter()
        .map(|a| AreaView {
            code: a.code.as_str().to_owned(),
            name: a.name.clone(),
            level: a.code.level(),
            parent: a.code.parent().map(|p| p.to_string()),
        })
        .collect();
    Ok(HttpResponse::Ok().json(areas))
}

/// Catalog entries items are filed under
#[utoipa::path(
    get, path = "/api/v1/catalog", tag = "system",
    responses((status = 200, description = "Entries", body = Vec<CatalogEntry>)),
)]
pub async fn catalog(req: HttpRequest, _caller: Caller) -> Reply {
    let hub = hub(&req)?;
    Ok(HttpResponse::Ok().json(hub.catalog.iter().collect::<Vec<_>>()))
}

/// The 主题分类 vocabulary an item's topic is taken from: each class with its entries
#[utoipa::path(
    get, path = "/api/v1/topics", tag = "system",
    responses((status = 200, description = "Classes, in the vocabulary's order", body = Vec<TopicClass>)),
)]
pub async fn topics(req: HttpRequest, _caller: Caller) -> Reply {
    let hub = hub(&req)?;
    Ok(HttpResponse::Ok().json(hub.topics.classes()))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// The calendar year (China time), from 2000 to this year.
    pub year: i32,
}

/// 政府信息公开年报 statistics of proactive disclosure for a year, within the caller's area
#[utoipa::path(
    get, path = "/api/v1/reports/annual", tag = "system",
    params(ReportQuery),
    responses(
        (status = 200, description = "The year's counts", body = annual_report::AnnualReport),
        (status = 422, description = "A year outside 2000 to this year; `field` is `year`", body = ErrorBody),
    )
)]
pub async fn annual_report(req: HttpRequest, caller: Caller, query: ApiQuery<ReportQuery>) -> Reply {
    let report = annual_report::annual_report(&*hub(&req)?, &caller, query.0.year).await?;
    Ok(HttpResponse::Ok().json(report))
}

/// The same statistics as CSV (UTF-8 with BOM, so Excel opens the Chinese correctly)
#[utoipa::path(
    get, path = "/api/v1/reports/annual.csv", tag = "system",
    params(ReportQuery),
    responses(
        (status = 200, description = "CSV, one table after another", body = String, content_type = "text/csv",
            headers(("Content-Disposition" = String, description = "attachment; filename=\"annual-report-<year>.csv\""))),
        (status = 422, description = "A year outside 2000 to this year; `field` is `year`", body = ErrorBody),
    )
)]
pub async fn annual_report_csv(req: HttpRequest, caller: Caller, query: ApiQuery<ReportQuery>) -> Reply {
    let year = query.0.year;
    let report = annual_report::annual_report(&*hub(&req)?, &caller, year).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"annual-report-{year}.csv\""),
        ))
        .body(annual_report::to_csv(&report)?))
}
