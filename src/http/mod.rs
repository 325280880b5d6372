//! The HTTP API (actix-web). Every route is declared once, in `api_routes`, which both the
//! server and the OpenAPI test read; the OpenAPI document is generated from the handlers
//! (`openapi`).
//!
//! **Architecture Invariant:** only `src/http` knows actix-web; the operations it calls take
//! plain values and return `crate::error::Error`.

mod accounts;
mod alerts;
mod callbacks;
mod console;
mod deliveries;
mod devices;
pub mod error;
mod error_zh;
pub(crate) mod extract;
mod items;
mod openapi;
mod organs;
mod portal;
mod portal_cache;
mod request_log;
pub mod system;

pub use openapi::openapi_document;

use std::{collections::BTreeMap, net::TcpListener, sync::Arc};

use actix_web::{
    App, HttpServer, ResponseError, Route,
    body::MessageBody,
    dev::{Server, Service, ServiceRequest, ServiceResponse},
    http::Method,
    middleware::Next,
    web,
};
use anyhow::Context;

use crate::hub::Hub;
use request_log::request_logger;

/// One API operation: its method, its path (OpenAPI syntax) and its handler.
pub struct ApiRoute {
    pub method: Method,
    pub path: &'static str,
    pub route: Route,
}

fn op(method: Method, path: &'static str, route: Route) -> ApiRoute {
    ApiRoute { method, path, route }
}

pub fn api_routes() -> Vec<ApiRoute> {
    use Method as M;
    vec![
        op(M::GET, "/healthz", web::get().to(system::healthz)),
        op(M::GET, "/metrics", web::get().to(system::metrics)),
        op(M::GET, "/api/openapi.json", web::get().to(openapi::openapi)),
        op(M::POST, "/api/v1/session", web::post().to(accounts::login)),
        op(M::DELETE, "/api/v1/session", web::delete().to(accounts::logout)),
        op(M::GET, "/api/v1/me", web::get().to(accounts::me)),
        op(
            M::POST,
            "/api/v1/me/password",
            web::post().to(accounts::change_password),
        ),
        op(M::GET, "/api/v1/users", web::get().to(accounts::list_users)),
        op(M::POST, "/api/v1/users", web::post().to(accounts::create_user)),
        op(
            M::POST,
            "/api/v1/users/{id}/disable",
            web::post().to(accounts::disable_user),
        ),
        op(
            M::POST,
            "/api/v1/users/{id}/unlock",
            web::post().to(accounts::unlock_user),
        ),
        op(
            M::POST,
            "/api/v1/users/{id}/password-reset",
            web::post().to(accounts::reset_password),
        ),
        op(M::GET, "/api/v1/tokens", web::get().to(accounts::list_tokens)),
        op(M::POST, "/api/v1/tokens", web::post().to(accounts::create_token)),
        op(
            M::DELETE,
            "/api/v1/tokens/{id}",
            web::delete().to(accounts::revoke_token),
        ),
        op(M::GET, "/api/v1/items", web::get().to(items::list)),
        op(M::POST, "/api/v1/items", web::post().to(items::create)),
        op(M::GET, "/api/v1/items/{id}", web::get().to(items::get)),
        op(M::PUT, "/api/v1/items/{id}", web::put().to(items::edit)),
        op(
            M::GET,
            "/api/v1/items/{id}/versions",
            web::get().to(items::versions),
        ),
        op(
            M::GET,
            "/api/v1/items/{id}/versions/{version}",
            web::get().to(items::version),
        ),
        op(
            M::POST,
            "/api/v1/items/{id}/submit",
            web::post().to(items::submit),
        ),
        op(
            M::POST,
            "/api/v1/items/{id}/confidentiality-check",
            web::post().to(items::confidentiality_check),
        ),
        op(
            M::POST,
            "/api/v1/items/{id}/approve",
            web::post().to(items::approve),
        ),
        op(
            M::POST,
            "/api/v1/items/{id}/reject",
            web::post().to(items::reject),
        ),
        op(
            M::POST,
            "/api/v1/items/{id}/publish",
            web::post().to(items::publish),
        ),
        op(
            M::POST,
            "/api/v1/items/{id}/withdraw",
            web::post().to(items::withdraw),
        ),
        op(
            M::POST,
            "/api/v1/attachments",
            web::post().to(items::upload_attachment),
        ),
        op(
            M::GET,
            "/api/v1/attachments/{sha256}",
            web::get().to(items::download_attachment),
        ),
        op(
            M::GET,
            "/api/v1/interpretations/due",
            web::get().to(items::interpretations_due),
        ),
        op(
            M::GET,
            "/api/v1/items/{id}/targets",
            web::get().to(deliveries::item_targets),
        ),
        op(
            M::GET,
            "/api/v1/items/{id}/preview/{channel}",
            web::get().to(deliveries::item_preview),
        ),
        op(
            M::GET,
            "/api/v1/items/{id}/deliveries",
            web::get().to(deliveries::item_deliveries),
        ),
        op(
            M::GET,
            "/api/v1/items/{id}/receipts.csv",
            web::get().to(deliveries::receipts_csv),
        ),
        op(
            M::GET,
            "/api/v1/deliveries",
            web::get().to(deliveries::list_deliveries),
        ),
        op(
            M::POST,
            "/api/v1/deliveries/{id}/retry",
            web::post().to(deliveries::retry),
        ),
        op(
            M::POST,
            "/api/v1/deliveries/{id}/cancel",
            web::post().to(deliveries::cancel),
        ),
        op(
            M::POST,
            "/api/v1/deliveries/{id}/reconcile",
            web::post().to(deliveries::reconcile),
        ),
        op(
            M::GET,
            "/api/v1/receipts/unmatched",
            web::get().to(callbacks::unmatched_receipts),
        ),
        op(M::GET, "/api/v1/targets", web::get().to(deliveries::list_targets)),
        op(
            M::POST,
            "/api/v1/targets",
            web::post().to(deliveries::create_target),
        ),
        op(M::GET, "/api/v1/devices", web::get().to(devices::list_devices)),
        op(M::POST, "/api/v1/devices", web::post().to(devices::add_device)),
        op(
            M::POST,
            "/api/v1/devices/{id}/revoke",
            web::post().to(devices::revoke_device),
        ),
        op(M::POST, "/api/v1/alerts/cap", web::post().to(alerts::post_cap)),
        op(M::GET, "/api/v1/audit", web::get().to(system::audit_log)),
        op(
            M::GET,
            "/api/v1/reports/annual",
            web::get().to(system::annual_report),
        ),
        op(
            M::GET,
            "/api/v1/reports/annual.csv",
            web::get().to(system::annual_report_csv),
        ),
        op(M::GET, "/api/v1/areas", web::get().to(system::areas)),
        op(M::GET, "/api/v1/catalog", web::get().to(system::catalog)),
        op(M::GET, "/api/v1/topics", web::get().to(system::topics)),
        op(M::GET, "/api/v1/organs", web::get().to(organs::list_organs)),
        op(M::POST, "/api/v1/organs", web::post().to(organs::create_organ)),
        op(
            M::PATCH,
            "/api/v1/organs/{id}",
            web::patch().to(organs::update_organ),
        ),
    ]
}

fn configure(cfg: &mut web::ServiceConfig) {
    // One resource per path: actix answers 405 from the first resource whose path matches, so
    // every method of a path must live on the same resource.
    let mut by_path: BTreeMap<&'static str, Vec<Route>> = BTreeMap::new();
    for api_route in api_routes() {
        by_path.entry(api_route.path).or_default().push(api_route.route);
    }
    for (path, routes) in by_path {
        let mut resource = web::resource(path);
        for route in routes {
            resource = resource.route(route);
        }
        cfg.service(resource);
    }
}

/// Nothing answers here: the API's JSON error for a program, the portal's Chinese page for
/// a citizen who mistyped an address.
async fn no_route(req: actix_web::HttpRequest) -> Result<actix_web::HttpResponse, error::ApiError> {
    let path = req.path();
    let for_programs = ["/api/", "/callbacks/", "/healthz", "/metrics", "/media/"]
        .iter()
        .any(|prefix| path.starts_with(prefix));
    if !for_programs {
        return portal::not_found(&*extract::hub(&req)?);
    }
    Err(error::ApiError::new(
        actix_web::http::StatusCode::NOT_FOUND,
        "no_route",
        "no such endpoint",
        None,
    ))
}

pub struct Application {
    server: Server,
    local_addr: std::net::SocketAddr,
}

/// How the hub is reached from outside, fixed at start: absolute links are built from `base`,
/// never from a request's Host header.
#[derive(Debug, Clone)]
pub struct PublicSite {
    pub base: String,
    /// Whether cookies must be `Secure` (the public URL is https).
    pub https: bool,
}

/// Sent with every answer, API and portal alike: no script runs, no other site frames a page
/// or receives more than the origin as referrer, and images come from the hub itself.
const SECURITY_HEADERS: [(&str, &str); 4] = [
    (
        "Content-Security-Policy",
        "default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "strict-origin-when-cross-origin"),
    ("X-Frame-Options", "DENY"),
];

/// Every string a path or query carries is checked here, once, before any handler or the
/// database sees it.
async fn reject_control_characters(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    if let Some(field) = extract::control_character_in(req.path(), req.query_string()) {
        let response = extract::control_character_error(field).error_response();
        return Ok(req.into_response(response).map_into_right_body());
    }
    next.call(req).await.map(ServiceResponse::map_into_left_body)
}

fn security_headers() -> actix_web::middleware::DefaultHeaders {
    SECURITY_HEADERS
        .iter()
        .fold(actix_web::middleware::DefaultHeaders::new(), |headers, header| {
            headers.add(*header)
        })
}

impl Application {
    /// Binds the configured address (port 0 picks a free port) and prepares the server.
    pub fn build(hub: Arc<Hub>) -> anyhow::Result<Self> {
        let listen = hub.settings.server.listen.clone();
        let listener = TcpListener::bind(&listen)
            .with_context(|| format!("cannot listen on {listen} (server.listen)"))?;
        let local_addr = listener.local_addr()?;
        let base = hub
            .settings
            .server
            .public_base(local_addr)
            .map_err(anyhow::Error::msg)?;
        let site = web::Data::new(PublicSite {
            https: base.starts_with("https://"),
            base,
        });
        let hub_data = web::Data::from(hub.clone());
        let payload_limit = hub
            .settings
            .content
            .max_attachment_bytes
            .max(hub.settings.content.max_json_bytes())
            + (1 << 20);
        let kept_pages = web::Data::new(portal_cache::PortalCache::new(
            hub.settings.server.portal_recheck_ms,
        ));
        let server = HttpServer::new(move || {
            let counted = hub.clone();
            App::new()
                .app_data(hub_data.clone())
                .app_data(site.clone())
                .app_data(kept_pages.clone())
                .app_data(web::PayloadConfig::new(payload_limit))
                .wrap(actix_web::middleware::from_fn(portal_cache::serve_kept))
                .wrap(actix_web::middleware::from_fn(reject_control_characters))
                .wrap(security_headers())
                .wrap(request_logger())
                .wrap_fn(move |req, srv| {
                    let hub = counted.clone();
                    let response = srv.call(req);
                    async move {
                        let response = response.await?;
                        hub.metrics.http_response(response.status().as_u16());
                        Ok(response)
                    }
                })
                .configure(configure)
                .configure(callbacks::configure)
                .configure(portal::configure)
                .configure(console::configure)
                .default_service(web::to(no_route))
        })
        .listen(listener)?
        .run();
        Ok(Self { server, local_addr })
    }

    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.local_addr
    }

    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
