//! One log line per HTTP request, through `tracing_actix_web::TracingLogger`.

use std::time::Instant;

use actix_web::{
    HttpMessage,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
};
use tracing::Span;
use tracing_actix_web::{RequestId, RootSpanBuilder, TracingLogger};

/// The middleware, with Herald's root span.
pub fn request_logger() -> TracingLogger<RequestSpan> {
    TracingLogger::new()
}

/// The root span of every request, for `tracing_actix_web::TracingLogger`. It records the
/// method, the matched route pattern (never the raw path or query), the status, the latency
/// and the request id, and nothing else: no headers, so neither `Authorization` nor the
/// session cookie can reach a log line. The crate's default builder also records the
/// query string, client address and user agent, which is why Herald has its own.
pub struct RequestSpan;

/// When the request arrived, kept in its extensions for the latency.
#[derive(Clone, Copy)]
struct Arrived(Instant);

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        request.extensions_mut().insert(Arrived(Instant::now()));
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .map(ToString::to_string)
            .unwrap_or_default();
        tracing::info_span!(
            "http_request",
            method = %request.method(),
            route = %request.match_pattern().as_deref().unwrap_or("unmatched"),
            request_id = %request_id,
            status = tracing::field::Empty,
            latency_ms = tracing::field::Empty,
        )
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, actix_web::Error>) {
        let (status, arrived, public_read) = match outcome {
            Ok(response) => (
                response.status().as_u16(),
                response.request().extensions().get::<Arrived>().copied(),
                is_public_read(response.request()),
            ),
            Err(error) => (error.as_response_error().status_code().as_u16(), None, false),
        };
        let latency_ms = arrived.map(|Arrived(at)| at.elapsed().as_secs_f64() * 1000.0);
        span.record("status", status);
        if let Some(latency_ms) = latency_ms {
            span.record("latency_ms", latency_ms);
        }
        // A citizen's read of a public page is logged by the reverse proxy in front
        // (deploy/nginx/herald.conf) and would cost the hub half its pages per second in a
        // rush (herald bench portal); API calls, callbacks and every error stay at info.
        if public_read && status < 400 {
            span.in_scope(|| tracing::debug!(status, latency_ms, "request served"));
        } else {
            span.in_scope(|| tracing::info!(status, latency_ms, "request served"));
        }
    }
}

/// A GET or HEAD of the public site: the portal's pages, files and feed, not the API.
fn is_public_read(request: &actix_web::HttpRequest) -> bool {
    let path = request.path();
    matches!(
        *request.method(),
        actix_web::http::Method::GET | actix_web::http::Method::HEAD
    ) && !path.starts_with("/api/")
        && !path.starts_with("/callbacks/")
        && path != "/metrics"
        && path != "/healthz"
}
