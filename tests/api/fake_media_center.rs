//! A fake county media center, built from the contract in
//! `channels/src/media_center/README.md`: it checks each push's HMAC-SHA256 signature, keeps one manuscript per idempotency key, answers `202 {"id"}`, reports a
//! manuscript's status on `GET /ingest/{id}`, and can be told to refuse the next pushes.
//! The test drives its status callbacks itself (`callback`), signed as a center signs them.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex},
};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use herald_channels::media_center::{IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, signature};
use serde_json::{Value, json};

/// What the center holds and saw.
#[derive(Default)]
pub struct CenterState {
    /// Every push as it arrived: idempotency key and the ninjs document.
    pub pushes: Vec<(String, Value)>,
    /// Pushes refused for a bad or missing signature.
    pub bad_signatures: usize,
    /// Manuscript id by idempotency key: a push sent again is the same manuscript.
    pub manuscripts: BTreeMap<String, String>,
    /// Status by manuscript id, as `GET /ingest/{id}` reports it.
    pub statuses: BTreeMap<String, Value>,
    /// Answers for the next pushes (status, body) before the usual 202.
    pub refusals: VecDeque<(u16, Value)>,
}

pub struct FakeCenter {
    pub url: String,
    pub state: Arc<Mutex<CenterState>>,
}

fn header<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
    request.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn ingest(
    request: HttpRequest,
    body: web::Bytes,
    state: web::Data<Arc<Mutex<CenterState>>>,
    key: web::Data<String>,
) -> HttpResponse {
    let signed = match (
        header(&request, TIMESTAMP_HEADER),
        header(&request, SIGNATURE_HEADER),
    ) {
        (Some(timestamp), Some(given)) => signature(key.as_bytes(), timestamp, &body) == given,
        _ => false,
    };
    let mut state = state.lock().expect("lock");
    if !signed {
        state.bad_signatures += 1;
        return HttpResponse::Unauthorized().json(json!({"error": "签名错误"}));
    }
    let Some(idempotency_key) = header(&request, IDEMPOTENCY_HEADER).map(str::to_owned) else {
        return HttpResponse::BadRequest().json(json!({"error": "missing Idempotency-Key"}));
    };
    let Ok(document) = serde_json::from_slice::<Value>(&body) else {
        return HttpResponse::BadRequest().json(json!({"error": "not JSON"}));
    };
    state.pushes.push((idempotency_key.clone(), document));
    if let Some((status, answer)) = state.refusals.pop_front() {
        let status = actix_web::http::StatusCode::from_u16(status).expect("a status");
        return HttpResponse::build(status).json(answer);
    }
    let next = state.manuscripts.len() + 1;
    let id = state
        .manuscripts
        .entry(idempotency_key)
        .or_insert_with(|| format!("mc-{next}"))
        .clone();
    state
        .statuses
        .entry(id.clone())
        .or_insert_with(|| json!({"status": "received"}));
    HttpResponse::Accepted().json(json!({"id": id}))
}

async fn status(
    request: HttpRequest,
    id: web::Path<String>,
    state: web::Data<Arc<Mutex<CenterState>>>,
    key: web::Data<String>,
) -> HttpResponse {
    let signed = match (
        header(&request, TIMESTAMP_HEADER),
        header(&request, SIGNATURE_HEADER),
    ) {
        (Some(timestamp), Some(given)) => signature(key.as_bytes(), timestamp, b"") == given,
        _ => false,
    };
    if !signed {
        return HttpResponse::Unauthorized().json(json!({"error": "签名错误"}));
    }
    match state.lock().expect("lock").statuses.get(id.as_str()) {
        Some(status) => HttpResponse::Ok().json(status),
        None => HttpResponse::NotFound().json(json!({"error": "无此稿件"})),
    }
}

impl FakeCenter {
    /// Starts a center that checks pushes with `signing_key`.
    pub async fn start(signing_key: &str) -> Self {
        let state = Arc::new(Mutex::new(CenterState::default()));
        let (shared, key) = (state.clone(), signing_key.to_owned());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(shared.clone()))
                .app_data(web::Data::new(key.clone()))
                .route("/ingest", web::post().to(ingest))
                .route("/ingest/{id}", web::get().to(status))
        })
        .workers(1)
        .bind(("127.0.0.1", 0))
        .expect("the fake center binds");
        let address = server.addrs()[0];
        tokio::spawn(server.run());
        Self {
            url: format!("http://{address}/ingest"),
            state,
        }
    }

    pub fn pushes(&self) -> Vec<(String, Value)> {
        self.state.lock().expect("lock").pushes.clone()
    }

    /// Sets what `GET /ingest/{id}` reports.
    pub fn set_status(&self, id: &str, status: Value) {
        self.state
            .lock()
            .expect("lock")
            .statuses
            .insert(id.to_owned(), status);
    }
}
