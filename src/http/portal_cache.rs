//! The portal's rendered pages, kept so that a rush (an emergency notice sends a whole county
//! to one page) is answered from memory: each page is rendered once per change, compressed
//! once, and revalidated by `ETag` / `Last-Modified` (304).
//!
//! **Architecture Invariant:** a kept page is never served after what it shows changed. The
//! store counts changes (`portal_generation`, moved by triggers in the changing transaction:
//! migration 000019); an instance reads the count at most `server.portal_recheck_ms` after it
//! last did and drops every page rendered under an older one, and drops them at once after
//! any request of its own that may change something (every method but GET and HEAD) and when
//! an item's 有效期 ends. So a withdrawal answers 410 at once on the instance that took it and
//! within the recheck interval on every other.

use std::{
    collections::HashMap,
    io::Write,
    sync::{Arc, Mutex, MutexGuard},
};

use actix_web::{
    HttpResponse,
    body::{BoxBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::{
        Method, StatusCode,
        header::{self, HeaderMap, HeaderValue},
    },
    middleware::Next,
    web,
};
use chrono::{DateTime, Utc};
use herald_channels::{devices::MEDIA_PATH, portal::ATTACHMENT_PATH};
use sha2::Digest;

use crate::{hub::Hub, portal::shown_state};

/// Kept pages at most, and their bytes (plain and compressed): past either, everything kept
/// is dropped and rendered again as asked for, which a county's site never reaches in practice
/// (a few thousand pages of tens of kilobytes) but a crawler walking every page might.
const MAX_PAGES: usize = 20_000;
const MAX_BYTES: usize = 256 << 20;

struct Kept {
    content_type: HeaderValue,
    body: web::Bytes,
    gzip: web::Bytes,
    etag: HeaderValue,
    last_modified: DateTime<Utc>,
}

#[derive(Default)]
struct Shelf {
    generation: Option<i64>,
    checked_at: Option<DateTime<Utc>>,
    /// When an item's 有效期 ends next: pages listing it change then without a write.
    fresh_until: Option<DateTime<Utc>>,
    pages: HashMap<String, Arc<Kept>>,
    bytes: usize,
}

impl Shelf {
    fn clear(&mut self) {
        self.pages.clear();
        self.bytes = 0;
    }
}

pub struct PortalCache {
    recheck: chrono::Duration,
    shelf: Mutex<Shelf>,
}

impl PortalCache {
    pub fn new(recheck_ms: u64) -> Self {
        Self {
            recheck: chrono::Duration::milliseconds(i64::try_from(recheck_ms).unwrap_or(i64::MAX)),
            shelf: Mutex::new(Shelf::default()),
        }
    }

    fn shelf(&self) -> MutexGuard<'_, Shelf> {
        // A panic while holding the lock leaves nothing half-done that matters: at worst a
        // page is rendered again.
        self.shelf.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Drops every kept page and reads the store's count at the next request.
    pub fn invalidate(&self) {
        let mut shelf = self.shelf();
        shelf.clear();
        shelf.checked_at = None;
    }

    /// The generation pages rendered now belong to, after dropping those of an older one.
    async fn current(&self, hub: &Hub) -> Result<i64, crate::error::Error> {
        let now = hub.clock.now();
        {
            let shelf = self.shelf();
            let recent = shelf.checked_at.is_some_and(|at| now - at < self.recheck);
            let fresh = shelf.fresh_until.is_none_or(|until| now < until);
            if let (true, true, Some(generation)) = (recent, fresh, shelf.generation) {
                return Ok(generation);
            }
        }
        let state = shown_state(hub).await?;
        let mut shelf = self.shelf();
        let expired = shelf.fresh_until.is_some_and(|until| now >= until);
        if shelf.generation != Some(state.generation) || expired {
            shelf.clear();
        }
        shelf.generation = Some(state.generation);
        shelf.checked_at = Some(now);
        shelf.fresh_until = state.next_expiry;
        Ok(state.generation)
    }

    fn get(&self, key: &str, generation: i64) -> Option<Arc<Kept>> {
        let shelf = self.shelf();
        (shelf.generation == Some(generation))
            .then(|| shelf.pages.get(key).cloned())
            .flatten()
    }

    fn keep(&self, key: String, page: Kept, generation: i64) -> Arc<Kept> {
        let page = Arc::new(page);
        let mut shelf = self.shelf();
        // Rendered under a generation already gone: serve it this once, keep nothing.
        if shelf.generation != Some(generation) {
            return page;
        }
        let size = page.body.len() + page.gzip.len();
        if shelf.pages.len() >= MAX_PAGES || shelf.bytes + size > MAX_BYTES {
            shelf.clear();
        }
        shelf.bytes += size;
        if let Some(old) = shelf.pages.insert(key, page.clone()) {
            shelf.bytes -= old.body.len() + old.gzip.len();
        }
        page
    }
}

/// The portal's pages that are kept: everything under `/`, `/xxgk` and the feed, but not
/// attachments and recordings (files, served from the store as asked) or searches (one page
/// per query typed).
fn keeps(method: &Method, path: &str) -> bool {
    (method == Method::GET || method == Method::HEAD)
        && (path == "/" || path == "/feed.xml" || path == "/xxgk" || path.starts_with("/xxgk/"))
        && !path.starts_with(ATTACHMENT_PATH)
        && !path.starts_with(MEDIA_PATH)
}

fn gzip(body: &[u8]) -> std::io::Result<web::Bytes> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(body)?;
    Ok(encoder.finish()?.into())
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let refused = parts.any(|p| p.replace(' ', "") == "q=0" || p.replace(' ', "") == "q=0.0");
            name.eq_ignore_ascii_case("gzip") && !refused
        })
}

/// Whether the client's copy is this page: `If-None-Match` when it sends one, else
/// `If-Modified-Since` (RFC 9110 §13.2.2).
fn not_modified(page: &Kept, headers: &HeaderMap) -> bool {
    if let Some(tags) = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        let ours = page.etag.to_str().unwrap_or_default();
        return tags
            .split(',')
            .map(|tag| tag.trim().trim_start_matches("W/"))
            .any(|tag| tag == "*" || tag == ours);
    }
    headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|since| DateTime::parse_from_rfc2822(since).ok())
        .is_some_and(|since| page.last_modified.timestamp() <= since.timestamp())
}

fn answer(page: &Kept, headers: &HeaderMap) -> HttpResponse {
    let unchanged = not_modified(page, headers);
    let mut response = if unchanged {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::ETAG, page.etag.clone()))
        .insert_header((
            header::LAST_MODIFIED,
            page.last_modified.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
        ))
        // Every reader asks again each time: a withdrawn page must not live on in a browser or
        // a proxy. The answer to asking again is a 304, not the page.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::VARY, "Accept-Encoding"));
    if unchanged {
        return response.finish();
    }
    response.insert_header((header::CONTENT_TYPE, page.content_type.clone()));
    if accepts_gzip(headers) {
        response
            .insert_header((header::CONTENT_ENCODING, "gzip"))
            .body(page.gzip.clone())
    } else {
        response.body(page.body.clone())
    }
}

/// The middleware: kept pages answered from memory, others rendered and kept; any request
/// that may change something drops what is kept once it is answered.
pub async fn serve_kept(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let (Some(cache), Some(hub)) = (
        req.app_data::<web::Data<PortalCache>>().cloned(),
        req.app_data::<web::Data<Hub>>().cloned(),
    ) else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    if !keeps(req.method(), req.path()) {
        let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
        let response = next.call(req).await?.map_into_boxed_body();
        if changes {
            cache.invalidate();
        }
        return Ok(response);
    }
    let generation = cache
        .current(&hub)
        .await
        .map_err(crate::http::error::ApiError::from)?;
    let key = match req.query_string() {
        "" => req.path().to_owned(),
        query => format!("{}?{query}", req.path()),
    };
    if let Some(page) = cache.get(&key, generation) {
        let response = answer(&page, req.headers());
        return Ok(req.into_response(response));
    }
    let response = next.call(req).await?;
    let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
    let (Some(content_type), StatusCode::OK) = (content_type, response.status()) else {
        return Ok(response.map_into_boxed_body());
    };
    let (req, response) = response.into_parts();
    let body = actix_web::body::to_bytes(response.into_body())
        .await
        .map_err(|_| actix_web::error::ErrorInternalServerError("reading a rendered page"))?;
    let gzipped = gzip(&body).map_err(actix_web::error::ErrorInternalServerError)?;
    let etag = format!("\"{}\"", &hex::encode(sha2::Sha256::digest(&body))[..32]);
    let page = Kept {
        content_type,
        gzip: gzipped,
        etag: HeaderValue::from_str(&etag).map_err(actix_web::error::ErrorInternalServerError)?,
        last_modified: hub.clock.now(),
        body,
    };
    let page = cache.keep(key, page, generation);
    let response = answer(&page, req.headers());
    Ok(ServiceResponse::new(req, response))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_sent_only_to_clients_that_take_it() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(value).unwrap());
            accepts_gzip(&headers)
        };
        assert!(with("gzip, deflate, br"));
        assert!(with("br;q=1.0, GZIP;q=0.5"));
        assert!(!with("gzip;q=0, deflate"));
        assert!(!with("deflate, br"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn only_portal_pages_are_kept() {
        for path in ["/", "/xxgk", "/xxgk/items/1", "/feed.xml", "/xxgk/organs/x"] {
            assert!(keeps(&Method::GET, path), "{path}");
        }
        for path in [
            "/search",
            "/xxgk/attachments/ab",
            "/media/ab",
            "/api/v1/items",
            "/healthz",
        ] {
            assert!(!keeps(&Method::GET, path), "{path}");
        }
        assert!(!keeps(&Method::POST, "/xxgk"));
    }
}
