//! A fake WeChat official-account API, built from `wechat-api.md` (§A.1, §A.2, §A.4, §A.5,
//! §A.7, §A.9, §A.10): stable access tokens that expire by the fake's own clock, the draft box,
//! `freepublish` with its publish job (status 1, then the outcome a test chose), and the
//! `PUBLISHJOBFINISH` event pushed in safe mode to the hub's callback, encrypted and signed
//! with the crate's own WeChat crypto. Every error answers HTTP 200 with `errcode`/`errmsg`,
//! the message ending in a `rid` as WeChat's do, so a client has to read `errcode`.
//!
//! Codes beyond the brief's: a content of 20,000 characters or 1 MB and more is 45002 (WeChat's
//! "content size out of limit"), an author over 16 characters 45110, a digest over 128
//! characters 45004, a `content_source_url` over 1 KB or not http(s) 41039, more than 8 articles
//! 45008, a JSON body escaping a non-ASCII character as `\uXXXX` 40033, an unknown `publish_id`
//! 53502. An injected 40001 or 40014 also revokes the token the call carried, and an injected
//! 42001 expires it, so the client's fresh token is a different one, as on the real platform.

// The knobs are for the hub's WeChat tests, which do not use every one of them.
#![allow(dead_code)]

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, http::Method, web};
use chrono::{DateTime, TimeDelta, Utc};
use herald_channels::wechat::crypto::{AesKey, encrypt, signature};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub const STABLE_TOKEN: &str = "/cgi-bin/stable_token";
pub const DRAFT_ADD: &str = "/cgi-bin/draft/add";
pub const DRAFT_GET: &str = "/cgi-bin/draft/get";
pub const DRAFT_DELETE: &str = "/cgi-bin/draft/delete";
pub const SUBMIT: &str = "/cgi-bin/freepublish/submit";
pub const PUBLISH_GET: &str = "/cgi-bin/freepublish/get";
pub const PUBLISH_DELETE: &str = "/cgi-bin/freepublish/delete";
pub const PUBLISH_BATCHGET: &str = "/cgi-bin/freepublish/batchget";
pub const MASS_SENDALL: &str = "/cgi-bin/message/mass/sendall";
pub const UPLOAD_IMG: &str = "/cgi-bin/media/uploadimg";
pub const ADD_MATERIAL: &str = "/cgi-bin/material/add_material";
pub const MASS_GET: &str = "/cgi-bin/message/mass/get";
pub const MASS_DELETE: &str = "/cgi-bin/message/mass/delete";

pub const DEFAULT_TOKEN_TTL_SECONDS: i64 = 7200;
/// The brief's cap; the current documentation says 32 (`set_title_limit`).
pub const DEFAULT_TITLE_LIMIT: usize = 64;
/// The platform hands out a new stable token this long before the current one expires.
const RENEW_BEFORE_SECONDS: i64 = 300;
const CONTENT_MAX_CHARS: usize = 20_000;
const CONTENT_MAX_BYTES: usize = 1024 * 1024;
const AUTHOR_MAX_CHARS: usize = 16;
const DIGEST_MAX_CHARS: usize = 128;
const SOURCE_URL_MAX_BYTES: usize = 1024;
const ARTICLES_MAX: usize = 8;
/// Publish ids look like the documented event's, so they also read as numbers.
const FIRST_PUBLISH_ID: u64 = 2_247_503_051;
/// The 群发助手 account that sends `PUBLISHJOBFINISH`.
const PUBLISH_EVENT_SENDER: &str = "mphelper";
/// WeChat waits this long for the hub's answer to a push.
const PUSH_TIMEOUT: Duration = Duration::from_secs(5);

type Shared = Arc<Mutex<WechatState>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub expires_at: DateTime<Utc>,
    /// Invalidated before its time: by a forced refresh or a server-side revocation.
    pub revoked: bool,
}

/// One article of a draft, as `draft/add` takes it; other documented fields are accepted and
/// kept in `Draft::body`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Article {
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_source_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumb_media_id: Option<String>,
    /// 0 or 1 on the wire; a JSON `true` is a format error, as WeChat documents a uint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub need_open_comment: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only_fans_can_comment: Option<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    pub media_id: String,
    pub articles: Vec<Article>,
    /// The request body as it came, for fields `Article` does not name.
    pub body: Value,
}

/// A `freepublish` job, from submit to its outcome (and a later deletion or ban).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishJob {
    pub publish_id: String,
    pub msg_data_id: u64,
    pub media_id: String,
    pub articles: Vec<Article>,
    /// 1 while publishing, then the outcome; 5 after deletion, 6 after a ban.
    pub status: i64,
    /// The status the job will finish with, fixed when it was submitted.
    pub outcome: i64,
    pub delay: Duration,
    pub article_id: Option<String>,
    pub article_urls: Vec<String>,
    /// 1-based; filled for statuses 2 and 4.
    pub fail_idx: Vec<u32>,
    pub outcome_fail_idx: Vec<u32>,
    /// 1-based numbers of the articles deleted one by one.
    pub deleted_articles: BTreeSet<u32>,
}

/// Where and how the fake pushes events: the account's callback settings as the hub has them.
#[derive(Debug, Clone)]
pub struct Callback {
    pub url: String,
    pub token: String,
    pub key: AesKey,
    pub app_id: String,
    pub gh_id: String,
}

/// A push that is wrong on purpose (§A.7.5), to see the hub refuse it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventFault {
    /// `msg_signature` (and `signature`) made with another token.
    BadSignature,
    /// Encrypted for another AppID.
    WrongAppId,
    /// `timestamp` and `CreateTime` this many seconds before the fake's now.
    StaleTimestamp(i64),
}

/// What the callback answered one push: status 0 when it did not answer at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventReply {
    pub status: u16,
    pub body: String,
}

/// One request as it came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub path: String,
    pub query: String,
    pub body: String,
}

/// A safe-mode push, ready to send: query pairs and XML body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedPush {
    pub query: Vec<(String, String)>,
    pub body: String,
}

pub struct WechatState {
    pub app_id: String,
    pub app_secret: String,
    /// The fake's now; `None` follows the wall clock.
    pub now: Option<DateTime<Utc>>,
    pub token_ttl_seconds: i64,
    pub tokens: BTreeMap<String, IssuedToken>,
    pub current_token: Option<String>,
    /// Every `stable_token` call.
    pub token_requests: usize,
    /// New tokens handed out (a still-valid token handed out again does not count).
    pub tokens_issued: usize,
    pub title_limit: usize,
    /// `draft/add` without `thumb_media_id` is 40007, as for a `news` article on the platform.
    pub require_thumb: bool,
    /// The draft box now, by media_id.
    pub draft_box: BTreeMap<String, Draft>,
    /// Every draft `draft/add` accepted, in order.
    pub drafts: Vec<Draft>,
    /// The media_id of every `freepublish/submit` call, whatever it was answered.
    pub submits: Vec<String>,
    pub publishes: BTreeMap<String, PublishJob>,
    /// `freepublish/delete` calls that deleted something: article_id and index (0 = all).
    pub deleted: Vec<(String, u32)>,
    /// Errcodes to answer the next calls of a path with, in order.
    pub injected: BTreeMap<String, VecDeque<i64>>,
    pub requests: Vec<Request>,
    /// How long `freepublish/submit` takes to answer (the job is accepted at once).
    pub submit_delay: Duration,
    /// How long `stable_token` takes to answer (the token is issued at once): callers renewing
    /// at the same moment then surely overlap.
    pub token_delay: Duration,
    /// How long after the submit answer a job finishes.
    pub publish_delay: Duration,
    /// Jobs stay at status 1 until `finish_publish`.
    pub hold_publishes: bool,
    pub final_status: i64,
    /// `fail_idx` for statuses 2 and 4; `None` is `[1]`.
    pub fail_idx: Option<Vec<u32>>,
    pub lose_events: bool,
    /// Each event is sent this many extra times, byte for byte the same request.
    pub duplicate_events: u32,
    pub event_fault: Option<EventFault>,
    /// `publish_id` as a JSON number instead of the documented string.
    pub numeric_publish_id: bool,
    pub callback: Option<Callback>,
    /// Mass sends by clientmsgid (§A.6): msg_id, the draft sent, the filter, and its status
    /// as `mass/get` reports it.
    pub mass_sends: BTreeMap<String, MassSend>,
    /// How a mass send ends: `send success`, `send fail` or `err(N)`.
    pub mass_outcome: String,
    /// `mass/delete` calls: msg_id and article_idx.
    pub mass_deleted: Vec<(String, u32)>,
    /// The size of every `media/uploadimg` request body.
    pub uploaded_images: Vec<usize>,
    /// The media_id of every image `material/add_material` took.
    pub materials: Vec<String>,
    /// The plaintext of every event pushed (once per event, not per duplicate).
    pub events: Vec<String>,
    /// The callback's answer to every push, duplicates included.
    pub event_replies: Vec<EventReply>,
    counter: u64,
}

impl WechatState {
    fn new(app_id: &str, app_secret: &str) -> Self {
        Self {
            app_id: app_id.to_owned(),
            app_secret: app_secret.to_owned(),
            now: None,
            token_ttl_seconds: DEFAULT_TOKEN_TTL_SECONDS,
            tokens: BTreeMap::new(),
            current_token: None,
            token_requests: 0,
            tokens_issued: 0,
            title_limit: DEFAULT_TITLE_LIMIT,
            require_thumb: false,
            draft_box: BTreeMap::new(),
            drafts: Vec::new(),
            submits: Vec::new(),
            publishes: BTreeMap::new(),
            deleted: Vec::new(),
            injected: BTreeMap::new(),
            requests: Vec::new(),
            submit_delay: Duration::ZERO,
            token_delay: Duration::ZERO,
            publish_delay: Duration::ZERO,
            hold_publishes: false,
            final_status: 0,
            fail_idx: None,
            lose_events: false,
            duplicate_events: 0,
            event_fault: None,
            mass_sends: BTreeMap::new(),
            mass_outcome: "send success".into(),
            mass_deleted: Vec::new(),
            uploaded_images: Vec::new(),
            materials: Vec::new(),
            numeric_publish_id: false,
            callback: None,
            events: Vec::new(),
            event_replies: Vec::new(),
            counter: 0,
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.now.unwrap_or_else(Utc::now)
    }

    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    fn error(&mut self, errcode: i64) -> HttpResponse {
        let rid = self.next();
        HttpResponse::Ok().json(json!({
            "errcode": errcode,
            "errmsg": format!("{} rid: 6a1b2c3d-{rid:08x}", errmsg(errcode)),
        }))
    }

    fn token_state(&self, token: &str) -> Result<(), i64> {
        match self.tokens.get(token) {
            None => Err(40001),
            Some(issued) if issued.revoked => Err(40001),
            Some(issued) if issued.expires_at <= self.now() => Err(42001),
            Some(_) => Ok(()),
        }
    }

    fn issue_token(&mut self) -> String {
        let token = format!("tok-{}", self.tokens_issued + 1);
        self.tokens_issued += 1;
        let expires_at = self.now() + TimeDelta::seconds(self.token_ttl_seconds);
        self.tokens.insert(
            token.clone(),
            IssuedToken {
                expires_at,
                revoked: false,
            },
        );
        self.current_token = Some(token.clone());
        token
    }

    fn revoke(&mut self, token: &str) {
        if let Some(issued) = self.tokens.get_mut(token) {
            issued.revoked = true;
        }
    }

    fn expire(&mut self, token: &str) {
        let past = self.now() - TimeDelta::seconds(1);
        if let Some(issued) = self.tokens.get_mut(token) {
            issued.expires_at = past;
        }
    }

    fn job_by_article(&mut self, article_id: &str) -> Option<&mut PublishJob> {
        self.publishes
            .values_mut()
            .find(|job| job.article_id.as_deref() == Some(article_id))
    }

    fn publish_id_json(&self, publish_id: &str) -> Value {
        match publish_id.parse::<u64>() {
            Ok(number) if self.numeric_publish_id => json!(number),
            _ => json!(publish_id),
        }
    }
}

fn errmsg(errcode: i64) -> &'static str {
    match errcode {
        -1 => "system error",
        0 => "ok",
        40001 => "invalid credential, access_token is invalid or not latest",
        40002 => "invalid grant_type",
        40007 => "invalid media_id",
        40013 => "invalid appid",
        40014 => "invalid access_token",
        40033 => "invalid charset. please check your request, if include \\uxxxx will create fail!",
        40114 => "invalid index value",
        40125 => "invalid appsecret",
        40164 => "invalid ip 10.0.0.1 ipv6 ::ffff:10.0.0.1, not in whitelist",
        41001 => "access_token missing",
        41002 => "appid missing",
        41004 => "appsecret missing",
        41039 => "invalid content_source_url",
        42001 => "access_token expired",
        43002 => "require POST method",
        44002 => "empty post data",
        45002 => "content size out of limit",
        45003 => "title size out of limit",
        45004 => "description size out of limit",
        45008 => "article size out of limit",
        45009 => "reach max api daily quota limit",
        45011 => "api minute-quota reach limit mustslower retry next minute",
        45110 => "author size out of limit",
        47001 => "data format error",
        48001 => "api unauthorized",
        53500 => "publish banned",
        53501 => "publish too frequently",
        53502 => "invalid publish_id",
        53503 => "该草稿未通过发布检查",
        53600 => "Article ID 无效",
        _ => "error",
    }
}

fn ok() -> HttpResponse {
    HttpResponse::Ok().json(json!({"errcode": 0, "errmsg": "ok"}))
}

/// Whether a JSON body writes a non-ASCII character as a `\uXXXX` escape (WeChat's 40033).
fn escapes_non_ascii(body: &[u8]) -> bool {
    let mut at = 0;
    while at < body.len() {
        if body[at] != b'\\' {
            at += 1;
            continue;
        }
        if body.get(at + 1) == Some(&b'u') {
            let code = body
                .get(at + 2..at + 6)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u32::from_str_radix(hex, 16).ok());
            if code.is_some_and(|code| code >= 0x80) {
                return true;
            }
        }
        // An escape is two characters: `\\u` is a backslash and a `u`.
        at += 2;
    }
    false
}

/// One mass send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MassSend {
    pub msg_id: String,
    pub media_id: String,
    pub filter: Value,
    /// SEND_SUCCESS, SEND_FAIL or DELETE once finished.
    pub status: String,
}

/// What a call is answered with; a submit also starts its job once answered.
enum Answer {
    Now(HttpResponse),
    /// A mass send accepted: its MASSSENDJOBFINISH goes out once answered.
    MassSent {
        response: HttpResponse,
        msg_id: String,
    },
    Submitted {
        response: HttpResponse,
        publish_id: String,
        delay: Duration,
    },
}

async fn api(request: HttpRequest, body: web::Bytes, state: web::Data<Shared>) -> HttpResponse {
    let state = state.get_ref().clone();
    let answer = answer(&request, &body, &mut lock(&state));
    let token_delay = if request.path() == STABLE_TOKEN {
        lock(&state).token_delay
    } else {
        Duration::ZERO
    };
    match answer {
        Answer::Now(response) => {
            tokio::time::sleep(token_delay).await;
            response
        }
        Answer::MassSent { response, msg_id } => {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let event = mass_finish(&mut lock(&state), &msg_id);
                if let Some(message) = event {
                    deliver(&state, message).await;
                }
            });
            response
        }
        Answer::Submitted {
            response,
            publish_id,
            delay,
        } => {
            let (answered, on_answer) = oneshot::channel();
            tokio::spawn(run_publish_job(state, publish_id, on_answer));
            tokio::time::sleep(delay).await;
            answered.send(()).ok();
            response
        }
    }
}

fn answer(request: &HttpRequest, body: &[u8], state: &mut WechatState) -> Answer {
    let path = request.path().to_owned();
    let query: BTreeMap<String, String> = form_urlencoded::parse(request.query_string().as_bytes())
        .into_owned()
        .collect();
    let json: Option<Value> = serde_json::from_slice(body).ok();
    state.requests.push(Request {
        path: path.clone(),
        query: request.query_string().to_owned(),
        body: String::from_utf8_lossy(body).into_owned(),
    });
    if path == SUBMIT {
        let media_id = json
            .as_ref()
            .and_then(|b| b["media_id"].as_str())
            .unwrap_or_default();
        state.submits.push(media_id.to_owned());
    }
    let known = [
        STABLE_TOKEN,
        DRAFT_ADD,
        DRAFT_GET,
        DRAFT_DELETE,
        SUBMIT,
        PUBLISH_GET,
        PUBLISH_DELETE,
        PUBLISH_BATCHGET,
        MASS_SENDALL,
        MASS_GET,
        MASS_DELETE,
        UPLOAD_IMG,
        ADD_MATERIAL,
    ];
    if !known.contains(&path.as_str()) {
        return Answer::Now(HttpResponse::NotFound().finish());
    }
    if request.method() != Method::POST {
        return Answer::Now(state.error(43002));
    }
    let token = query.get("access_token").map(String::as_str);
    if let Some(errcode) = state.injected.get_mut(&path).and_then(VecDeque::pop_front) {
        if let Some(token) = token {
            match errcode {
                40001 | 40014 => state.revoke(token),
                42001 => state.expire(token),
                _ => {}
            }
        }
        return Answer::Now(state.error(errcode));
    }
    if path == STABLE_TOKEN {
        return Answer::Now(stable_token(state, json.as_ref()));
    }
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Answer::Now(state.error(41001));
    };
    if let Err(errcode) = state.token_state(token) {
        return Answer::Now(state.error(errcode));
    }
    if path == UPLOAD_IMG || path == ADD_MATERIAL {
        // A multipart form with the image as `media` (§A.3.1): answered with the URL the
        // article's HTML may use.
        let multipart = request
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("multipart/form-data"));
        let media_part: &[u8] = b"name=\"media\"";
        if !multipart || !body.windows(media_part.len()).any(|w| w == media_part) {
            return Answer::Now(state.error(41005));
        }
        let n = state.next();
        let url = format!("http://mmbiz.qpic.cn/fake/{n}/0");
        if path == ADD_MATERIAL {
            // Permanent material (§A.3.2): `type=image`, answered with its media_id too.
            if query.get("type").map(String::as_str) != Some("image") {
                return Answer::Now(state.error(40004));
            }
            let media_id = format!("mat-{n}");
            state.materials.push(media_id.clone());
            return Answer::Now(HttpResponse::Ok().json(json!({"media_id": media_id, "url": url})));
        }
        state.uploaded_images.push(body.len());
        return Answer::Now(HttpResponse::Ok().json(json!({"url": url})));
    }
    if escapes_non_ascii(body) {
        return Answer::Now(state.error(40033));
    }
    let Some(json) = json else {
        let errcode = if body.is_empty() { 44002 } else { 47001 };
        return Answer::Now(state.error(errcode));
    };
    match path.as_str() {
        DRAFT_ADD => Answer::Now(draft_add(state, json)),
        DRAFT_GET => Answer::Now(draft_get(state, &json)),
        DRAFT_DELETE => Answer::Now(draft_delete(state, &json)),
        SUBMIT => submit(state, &json),
        PUBLISH_GET => Answer::Now(publish_get(state, &json)),
        PUBLISH_BATCHGET => Answer::Now(publish_batchget(state, &json)),
        MASS_SENDALL => mass_sendall(state, &json),
        MASS_GET => Answer::Now(mass_get(state, &json)),
        MASS_DELETE => Answer::Now(mass_delete(state, &json)),
        _ => Answer::Now(publish_delete(state, &json)),
    }
}

/// `message/mass/sendall` (§A.6): a draft to every follower or a tag, once per clientmsgid.
fn mass_sendall(state: &mut WechatState, body: &Value) -> Answer {
    let media_id = body["mpnews"]["media_id"].as_str().unwrap_or_default().to_owned();
    let client_msg_id = body["clientmsgid"].as_str().unwrap_or_default().to_owned();
    if client_msg_id.len() > 64 {
        return Answer::Now(state.error(45067));
    }
    if let Some(earlier) = state.mass_sends.get(&client_msg_id) {
        // Documented: the existing record's msg_id comes with the error.
        let msg_id = earlier.msg_id.clone();
        return Answer::Now(HttpResponse::Ok().json(json!({
            "errcode": 45065, "errmsg": "clientmsgid exist", "msg_id": msg_id.parse::<u64>().unwrap_or(0),
        })));
    }
    if !state.draft_box.contains_key(&media_id) {
        return Answer::Now(state.error(40007));
    }
    let msg_id = (1000 + state.next()).to_string();
    state.mass_sends.insert(
        client_msg_id,
        MassSend {
            msg_id: msg_id.clone(),
            media_id,
            filter: body["filter"].clone(),
            status: "SENDING".into(),
        },
    );
    Answer::MassSent {
        response: HttpResponse::Ok().json(json!({
            "errcode": 0, "errmsg": "send job submission success",
            "msg_id": msg_id.parse::<u64>().unwrap_or(0), "msg_data_id": 206_227_730,
        })),
        msg_id,
    }
}

fn mass_by_id<'a>(state: &'a mut WechatState, body: &Value) -> Option<&'a mut MassSend> {
    let msg_id = match &body["msg_id"] {
        Value::String(id) => id.clone(),
        Value::Number(id) => id.to_string(),
        _ => return None,
    };
    state.mass_sends.values_mut().find(|m| m.msg_id == msg_id)
}

fn mass_get(state: &mut WechatState, body: &Value) -> HttpResponse {
    match mass_by_id(state, body).map(|m| (m.msg_id.clone(), m.status.clone())) {
        Some((msg_id, status)) => HttpResponse::Ok()
            .json(json!({"msg_id": msg_id.parse::<u64>().unwrap_or(0), "msg_status": status})),
        None => state.error(40002),
    }
}

fn mass_delete(state: &mut WechatState, body: &Value) -> HttpResponse {
    let index = u32::try_from(body["article_idx"].as_u64().unwrap_or(0)).unwrap_or(0);
    let Some(send) = mass_by_id(state, body) else {
        return state.error(40002);
    };
    send.status = "DELETE".into();
    let msg_id = send.msg_id.clone();
    state.mass_deleted.push((msg_id, index));
    ok()
}

/// Ends a mass send as `mass_outcome` says; the event to push, unless events are lost.
fn mass_finish(state: &mut WechatState, msg_id: &str) -> Option<String> {
    let outcome = state.mass_outcome.clone();
    let send = state.mass_sends.values_mut().find(|m| m.msg_id == msg_id)?;
    send.status = if outcome == "send success" {
        "SEND_SUCCESS"
    } else {
        "SEND_FAIL"
    }
    .into();
    if outcome == "send success" {
        // A draft once mass-sent leaves the draft box (§A.4).
        let media_id = send.media_id.clone();
        state.draft_box.remove(&media_id);
    }
    if state.lose_events {
        return None;
    }
    let gh_id = state.callback.as_ref()?.gh_id.clone();
    let created = event_time(state);
    Some(format!(
        "<xml><ToUserName><![CDATA[{gh_id}]]></ToUserName><FromUserName><![CDATA[{PUBLISH_EVENT_SENDER}]]></FromUserName>\
         <CreateTime>{created}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[MASSSENDJOBFINISH]]></Event>\
         <MsgID>{msg_id}</MsgID><Status><![CDATA[{outcome}]]></Status><TotalCount>100</TotalCount><FilterCount>80</FilterCount>\
         <SentCount>75</SentCount><ErrorCount>5</ErrorCount></xml>"
    ))
}

fn stable_token(state: &mut WechatState, body: Option<&Value>) -> HttpResponse {
    state.token_requests += 1;
    let Some(body) = body else {
        return state.error(47001);
    };
    if body["grant_type"].as_str() != Some("client_credential") {
        return state.error(40002);
    }
    let (Some(app_id), Some(secret)) = (body["appid"].as_str(), body["secret"].as_str()) else {
        let errcode = if body["appid"].is_string() { 41004 } else { 41002 };
        return state.error(errcode);
    };
    if app_id != state.app_id {
        return state.error(40013);
    }
    if secret != state.app_secret {
        return state.error(40125);
    }
    let force = body["force_refresh"].as_bool().unwrap_or(false);
    let renew_before = RENEW_BEFORE_SECONDS.min(state.token_ttl_seconds / 2);
    let now = state.now();
    let reusable = state.current_token.clone().filter(|token| {
        state.token_state(token).is_ok()
            && state.tokens[token].expires_at - now > TimeDelta::seconds(renew_before)
    });
    let token = match reusable {
        Some(token) if !force => token,
        _ => {
            if force && let Some(previous) = state.current_token.clone() {
                state.revoke(&previous);
            }
            state.issue_token()
        }
    };
    let expires_in = (state.tokens[&token].expires_at - now).num_seconds();
    HttpResponse::Ok().json(json!({"access_token": token, "expires_in": expires_in}))
}

fn draft_add(state: &mut WechatState, body: Value) -> HttpResponse {
    #[derive(Deserialize)]
    struct DraftAdd {
        articles: Vec<Article>,
    }
    let Ok(DraftAdd { articles }) = serde_json::from_value::<DraftAdd>(body.clone()) else {
        return state.error(47001);
    };
    if articles.is_empty() {
        return state.error(44002);
    }
    if articles.len() > ARTICLES_MAX {
        return state.error(45008);
    }
    for article in &articles {
        if let Err(errcode) = check_article(state, article) {
            return state.error(errcode);
        }
    }
    let media_id = format!("draft-{}", state.next());
    let draft = Draft {
        media_id: media_id.clone(),
        articles,
        body,
    };
    state.draft_box.insert(media_id.clone(), draft.clone());
    state.drafts.push(draft);
    HttpResponse::Ok().json(json!({"media_id": media_id}))
}

fn check_article(state: &WechatState, article: &Article) -> Result<(), i64> {
    let chars = |text: &str| text.chars().count();
    if article.title.trim().is_empty() || chars(&article.title) > state.title_limit {
        return Err(45003);
    }
    if chars(&article.content) >= CONTENT_MAX_CHARS || article.content.len() >= CONTENT_MAX_BYTES {
        return Err(45002);
    }
    if article
        .author
        .as_deref()
        .is_some_and(|a| chars(a) > AUTHOR_MAX_CHARS)
    {
        return Err(45110);
    }
    if article
        .digest
        .as_deref()
        .is_some_and(|d| chars(d) > DIGEST_MAX_CHARS)
    {
        return Err(45004);
    }
    if let Some(url) = article.content_source_url.as_deref().filter(|u| !u.is_empty())
        && (url.len() > SOURCE_URL_MAX_BYTES || !(url.starts_with("http://") || url.starts_with("https://")))
    {
        return Err(41039);
    }
    if state.require_thumb && article.thumb_media_id.as_deref().is_none_or(str::is_empty) {
        return Err(40007);
    }
    Ok(())
}

fn draft_get(state: &mut WechatState, body: &Value) -> HttpResponse {
    let draft = body["media_id"]
        .as_str()
        .and_then(|id| state.draft_box.get(id))
        .cloned();
    match draft {
        Some(draft) => HttpResponse::Ok().json(json!({"news_item": draft.articles})),
        None => state.error(40007),
    }
}

fn draft_delete(state: &mut WechatState, body: &Value) -> HttpResponse {
    let removed = body["media_id"]
        .as_str()
        .and_then(|id| state.draft_box.remove(id));
    match removed {
        Some(_) => ok(),
        None => state.error(40007),
    }
}

fn submit(state: &mut WechatState, body: &Value) -> Answer {
    let draft = body["media_id"]
        .as_str()
        .and_then(|id| state.draft_box.get(id))
        .cloned();
    let Some(draft) = draft else {
        return Answer::Now(state.error(40007));
    };
    let publish_id = (FIRST_PUBLISH_ID + state.publishes.len() as u64).to_string();
    let msg_data_id = 2_247_483_700 + state.next();
    let outcome_fail_idx = match state.final_status {
        2 | 4 => state.fail_idx.clone().unwrap_or_else(|| vec![1]),
        _ => Vec::new(),
    };
    state.publishes.insert(
        publish_id.clone(),
        PublishJob {
            publish_id: publish_id.clone(),
            msg_data_id,
            media_id: draft.media_id,
            articles: draft.articles,
            status: 1,
            outcome: state.final_status,
            delay: state.publish_delay,
            article_id: None,
            article_urls: Vec::new(),
            fail_idx: Vec::new(),
            outcome_fail_idx,
            deleted_articles: BTreeSet::new(),
        },
    );
    let response = HttpResponse::Ok().json(json!({
        "errcode": 0,
        "errmsg": "ok",
        "publish_id": state.publish_id_json(&publish_id),
        "msg_data_id": msg_data_id,
    }));
    Answer::Submitted {
        response,
        publish_id,
        delay: state.submit_delay,
    }
}

fn publish_get(state: &mut WechatState, body: &Value) -> HttpResponse {
    let publish_id = match &body["publish_id"] {
        Value::String(id) => id.trim().to_owned(),
        Value::Number(id) => id.to_string(),
        _ => return state.error(40002),
    };
    let Some(job) = state.publishes.get(&publish_id).cloned() else {
        return state.error(53502);
    };
    let mut answer = json!({
        "publish_id": state.publish_id_json(&job.publish_id),
        "publish_status": job.status,
        "fail_idx": job.fail_idx,
    });
    if job.status == 0 {
        answer["article_id"] = json!(job.article_id);
        answer["article_detail"] = json!({
            "count": job.article_urls.len(),
            "item": job.article_urls.iter().enumerate()
                .map(|(at, url)| json!({"idx": at + 1, "article_url": url}))
                .collect::<Vec<_>>(),
        });
    }
    HttpResponse::Ok().json(answer)
}

/// `freepublish/batchget` (§A.5): the published articles not deleted, newest first, 1 to 20
/// a page; with `no_content` 1 the articles' `content` is left empty.
fn publish_batchget(state: &mut WechatState, body: &Value) -> HttpResponse {
    let (Some(offset), Some(count)) = (body["offset"].as_u64(), body["count"].as_u64()) else {
        return state.error(40097);
    };
    if !(1..=20).contains(&count) {
        return state.error(40097);
    }
    let no_content = body["no_content"].as_u64() == Some(1);
    let mut published: Vec<&PublishJob> = state
        .publishes
        .values()
        .filter(|job| job.status == 0 && job.article_id.is_some())
        .collect();
    published.sort_by_key(|job| std::cmp::Reverse(job.publish_id.parse::<u64>().unwrap_or(0)));
    let items: Vec<Value> = published
        .iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(usize::try_from(count).unwrap_or(0))
        .map(|job| {
            let news: Vec<Value> = job
                .articles
                .iter()
                .zip(&job.article_urls)
                .map(|(article, url)| {
                    let mut item = serde_json::to_value(article).unwrap_or_default();
                    item["url"] = json!(url);
                    item["is_deleted"] = json!(false);
                    if no_content {
                        item["content"] = json!("");
                    }
                    item
                })
                .collect();
            json!({"article_id": job.article_id, "content": {"news_item": news}, "update_time": job.msg_data_id})
        })
        .collect();
    HttpResponse::Ok().json(json!({
        "total_count": published.len(),
        "item_count": items.len(),
        "item": items,
    }))
}

fn publish_delete(state: &mut WechatState, body: &Value) -> HttpResponse {
    let Some(article_id) = body["article_id"].as_str().map(str::to_owned) else {
        return state.error(53600);
    };
    let Ok(index) = u32::try_from(body["index"].as_u64().unwrap_or(0)) else {
        return state.error(40114);
    };
    let found = state
        .publishes
        .values()
        .find(|job| job.article_id.as_deref() == Some(article_id.as_str()))
        .map(|job| (job.publish_id.clone(), job.status, job.articles.len()));
    let Some((publish_id, status, count)) = found else {
        return state.error(53600);
    };
    // Deleting what is already gone answers ok: the article is deleted either way.
    if status != 0 {
        return ok();
    }
    let count = u32::try_from(count).unwrap_or(u32::MAX);
    if index > count {
        return state.error(40114);
    }
    let job = state.publishes.get_mut(&publish_id).expect("the job found above");
    if index == 0 {
        job.deleted_articles = (1..=count).collect();
    } else {
        job.deleted_articles.insert(index);
    }
    if job.deleted_articles.len() == job.articles.len() {
        job.status = 5;
    }
    state.deleted.push((article_id, index));
    ok()
}

/// Waits for the submit answer, then the job's delay, then finishes it and pushes its event.
async fn run_publish_job(state: Shared, publish_id: String, on_answer: oneshot::Receiver<()>) {
    // A submit the client gave up on still publishes: a dropped sender ends the wait too.
    on_answer.await.ok();
    let (delay, held) = {
        let state = lock(&state);
        let delay = state.publishes.get(&publish_id).map(|job| job.delay);
        (delay.unwrap_or_default(), state.hold_publishes)
    };
    if held {
        return;
    }
    tokio::time::sleep(delay).await;
    finish_and_announce(&state, &publish_id).await;
}

async fn finish_and_announce(state: &Shared, publish_id: &str) {
    let event = {
        let mut state = lock(state);
        finish(&mut state, publish_id)
    };
    if let Some(message) = event {
        deliver(state, message).await;
    }
}

/// Moves a publishing job to its outcome; the event to push, unless events are lost or there
/// is nowhere to push them.
fn finish(state: &mut WechatState, publish_id: &str) -> Option<String> {
    let serial = state.next();
    let job = state.publishes.get_mut(publish_id)?;
    if job.status != 1 {
        return None;
    }
    job.status = job.outcome;
    job.fail_idx = job.outcome_fail_idx.clone();
    if job.status == 0 {
        job.article_id = Some(format!("art-{publish_id}-Fake{serial}"));
        job.article_urls = (1..=job.articles.len())
            .map(|idx| {
                format!(
                    "http://mp.weixin.qq.com/s?__biz=MzFake&mid={publish_id}&idx={idx}&sn=fake{serial}#rd"
                )
            })
            .collect();
    }
    let job = job.clone();
    if job.status == 0 {
        state.draft_box.remove(&job.media_id);
    }
    if state.lose_events {
        return None;
    }
    let gh_id = state.callback.as_ref()?.gh_id.clone();
    let created = event_time(state);
    Some(publish_event_xml(&gh_id, created, &job))
}

fn event_time(state: &WechatState) -> i64 {
    let stale = match state.event_fault {
        Some(EventFault::StaleTimestamp(seconds)) => seconds,
        _ => 0,
    };
    state.now().timestamp() - stale
}

pub fn publish_event_xml(gh_id: &str, created: i64, job: &PublishJob) -> String {
    let mut info = format!(
        "<publish_id>{}</publish_id><publish_status>{}</publish_status>",
        job.publish_id, job.status
    );
    if let Some(article_id) = &job.article_id {
        info.push_str(&format!(
            "<article_id><![CDATA[{article_id}]]></article_id><article_detail><count>{}</count>",
            job.article_urls.len()
        ));
        for (at, url) in job.article_urls.iter().enumerate() {
            info.push_str(&format!(
                "<item><idx>{}</idx><article_url><![CDATA[{url}]]></article_url></item>",
                at + 1
            ));
        }
        info.push_str("</article_detail>");
    }
    for idx in &job.fail_idx {
        info.push_str(&format!("<fail_idx>{idx}</fail_idx>"));
    }
    format!(
        "<xml><ToUserName><![CDATA[{gh_id}]]></ToUserName>\
         <FromUserName><![CDATA[{PUBLISH_EVENT_SENDER}]]></FromUserName>\
         <CreateTime>{created}</CreateTime><MsgType><![CDATA[event]]></MsgType>\
         <Event><![CDATA[PUBLISHJOBFINISH]]></Event>\
         <PublishEventInfo>{info}</PublishEventInfo></xml>"
    )
}

/// `message` as WeChat pushes it in safe mode (§A.7.2, §A.7.3), with `fault` applied.
pub fn seal(
    callback: &Callback,
    message: &str,
    timestamp: i64,
    nonce: &str,
    random: &[u8; 16],
    fault: Option<EventFault>,
) -> SealedPush {
    let app_id = match fault {
        Some(EventFault::WrongAppId) => "wx0000000000000000",
        _ => callback.app_id.as_str(),
    };
    let token = match fault {
        Some(EventFault::BadSignature) => format!("{}-not", callback.token),
        _ => callback.token.clone(),
    };
    let encrypted = encrypt(&callback.key, random, message.as_bytes(), app_id);
    let timestamp = timestamp.to_string();
    let query = vec![
        ("signature", signature(&[&token, &timestamp, nonce])),
        ("timestamp", timestamp.clone()),
        ("nonce", nonce.to_owned()),
        ("openid", PUBLISH_EVENT_SENDER.to_owned()),
        ("encrypt_type", "aes".to_owned()),
        (
            "msg_signature",
            signature(&[&token, &timestamp, nonce, &encrypted]),
        ),
    ];
    SealedPush {
        query: query.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        body: format!(
            "<xml><ToUserName><![CDATA[{}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>",
            callback.gh_id
        ),
    }
}

/// Pushes `message` to the callback, once and then `duplicate_events` times more.
async fn deliver(state: &Shared, message: String) {
    let mut random = [0u8; 16];
    getrandom::fill(&mut random).expect("random bytes");
    let (callback, push, copies) = {
        let mut state = lock(state);
        let Some(callback) = state.callback.clone() else {
            return;
        };
        let nonce = (100_000_000 + state.next()).to_string();
        let push = seal(
            &callback,
            &message,
            event_time(&state),
            &nonce,
            &random,
            state.event_fault,
        );
        state.events.push(message);
        (callback, push, 1 + state.duplicate_events)
    };
    let client = reqwest::Client::builder()
        .timeout(PUSH_TIMEOUT)
        .build()
        .expect("an HTTP client");
    for _ in 0..copies {
        let sent = client
            .post(&callback.url)
            .query(&push.query)
            .header("content-type", "text/xml")
            .body(push.body.clone())
            .send()
            .await;
        let reply = match sent {
            Ok(response) => EventReply {
                status: response.status().as_u16(),
                body: response.text().await.unwrap_or_default(),
            },
            Err(error) => EventReply {
                status: 0,
                body: error.to_string(),
            },
        };
        lock(state).event_replies.push(reply);
    }
}

fn lock(state: &Shared) -> MutexGuard<'_, WechatState> {
    state.lock().expect("the fake's state lock")
}

pub struct FakeWechat {
    /// Stands in for `https://api.weixin.qq.com`.
    pub base_url: String,
    pub state: Arc<Mutex<WechatState>>,
}

impl FakeWechat {
    /// Starts a fake for the account `app_id` with secret `app_secret`.
    pub async fn start(app_id: &str, app_secret: &str) -> Self {
        let state = Arc::new(Mutex::new(WechatState::new(app_id, app_secret)));
        let shared = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(shared.clone()))
                .app_data(web::PayloadConfig::new(8 * 1024 * 1024))
                .default_service(web::to(api))
        })
        .workers(1)
        .bind(("127.0.0.1", 0))
        .expect("the fake WeChat binds");
        let address = server.addrs()[0];
        tokio::spawn(server.run());
        Self {
            base_url: format!("http://{address}"),
            state,
        }
    }

    fn lock(&self) -> MutexGuard<'_, WechatState> {
        lock(&self.state)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub fn tokens_issued(&self) -> usize {
        self.lock().tokens_issued
    }

    pub fn token_requests(&self) -> usize {
        self.lock().token_requests
    }

    /// Calls of `freepublish/submit`, answered or refused.
    pub fn submits(&self) -> usize {
        self.lock().submits.len()
    }

    /// Drafts `draft/add` accepted.
    pub fn drafts(&self) -> usize {
        self.lock().drafts.len()
    }

    pub fn draft_log(&self) -> Vec<Draft> {
        self.lock().drafts.clone()
    }

    /// The article ids `freepublish/delete` deleted from.
    pub fn deleted(&self) -> Vec<String> {
        self.lock().deleted.iter().map(|(id, _)| id.clone()).collect()
    }

    pub fn publishes(&self) -> Vec<PublishJob> {
        self.lock().publishes.values().cloned().collect()
    }

    pub fn publish(&self, publish_id: &str) -> Option<PublishJob> {
        self.lock().publishes.get(publish_id).cloned()
    }

    pub fn events(&self) -> Vec<String> {
        self.lock().events.clone()
    }

    pub fn event_replies(&self) -> Vec<EventReply> {
        self.lock().event_replies.clone()
    }

    pub fn requests(&self) -> Vec<Request> {
        self.lock().requests.clone()
    }

    /// Where events go, with the account's callback settings (`encoding_aes_key` is the
    /// 43-character EncodingAESKey).
    pub fn set_callback(
        &self,
        url: String,
        token: String,
        encoding_aes_key: String,
        app_id: String,
        gh_id: String,
    ) {
        let key = AesKey::from_encoding_aes_key(&encoding_aes_key).expect("a valid EncodingAESKey");
        self.lock().callback = Some(Callback {
            url,
            token,
            key,
            app_id,
            gh_id,
        });
    }

    pub fn set_token_ttl(&self, ttl: Duration) {
        self.lock().token_ttl_seconds = i64::try_from(ttl.as_secs()).expect("a sane ttl");
    }

    /// Every token issued so far is past its lifetime: the next call with one is 42001.
    pub fn expire_tokens(&self) {
        let mut state = self.lock();
        let tokens: Vec<String> = state.tokens.keys().cloned().collect();
        for token in tokens {
            state.expire(&token);
        }
    }

    /// Every token issued so far is invalid: the next call with one is 40001.
    pub fn revoke_tokens(&self) {
        let mut state = self.lock();
        for issued in state.tokens.values_mut() {
            issued.revoked = true;
        }
    }

    /// Stops the fake's clock at `at` (for a hub on a manual clock).
    pub fn set_now(&self, at: DateTime<Utc>) {
        self.lock().now = Some(at);
    }

    pub fn advance(&self, by: TimeDelta) {
        let mut state = self.lock();
        state.now = Some(state.now() + by);
    }

    /// The next call of `path` (e.g. `SUBMIT`) is answered with `errcode`; calls queue up.
    pub fn fail_next(&self, path: &str, errcode: i64) {
        self.lock()
            .injected
            .entry(path.to_owned())
            .or_default()
            .push_back(errcode);
    }

    /// How the next mass sends end: `send success`, `send fail` or `err(N)`.
    pub fn set_mass_outcome(&self, outcome: &str) {
        self.lock().mass_outcome = outcome.to_owned();
    }

    pub fn mass_sends(&self) -> Vec<MassSend> {
        self.lock().mass_sends.values().cloned().collect()
    }

    pub fn mass_deleted(&self) -> Vec<(String, u32)> {
        self.lock().mass_deleted.clone()
    }

    pub fn uploaded_images(&self) -> usize {
        self.lock().uploaded_images.len()
    }

    pub fn materials(&self) -> Vec<String> {
        self.lock().materials.clone()
    }

    pub fn set_submit_delay(&self, delay: Duration) {
        self.lock().submit_delay = delay;
    }

    pub fn set_token_delay(&self, delay: Duration) {
        self.lock().token_delay = delay;
    }

    pub fn set_publish_delay(&self, delay: Duration) {
        self.lock().publish_delay = delay;
    }

    pub fn set_hold_publishes(&self, hold: bool) {
        self.lock().hold_publishes = hold;
    }

    /// The status jobs submitted from now on finish with: 0, or 2, 3, 4 for failures.
    pub fn set_final_status(&self, status: i64) {
        self.lock().final_status = status;
    }

    pub fn set_fail_idx(&self, fail_idx: Vec<u32>) {
        self.lock().fail_idx = Some(fail_idx);
    }

    pub fn set_lose_events(&self, lose: bool) {
        self.lock().lose_events = lose;
    }

    pub fn set_duplicate_events(&self, extra_copies: u32) {
        self.lock().duplicate_events = extra_copies;
    }

    pub fn set_event_fault(&self, fault: Option<EventFault>) {
        self.lock().event_fault = fault;
    }

    pub fn set_numeric_publish_id(&self, numeric: bool) {
        self.lock().numeric_publish_id = numeric;
    }

    pub fn set_title_limit(&self, chars: usize) {
        self.lock().title_limit = chars;
    }

    pub fn set_require_thumb(&self, require: bool) {
        self.lock().require_thumb = require;
    }

    /// The platform bans a published article: its job moves to status 6 (no event).
    pub fn ban_article(&self, article_id: &str) {
        let mut state = self.lock();
        let job = state.job_by_article(article_id).expect("a published article");
        job.status = 6;
    }

    /// Finishes a held (or not yet finished) job now and pushes its event.
    pub async fn finish_publish(&self, publish_id: &str) {
        finish_and_announce(&self.state, publish_id).await;
    }

    /// Pushes any plaintext message XML to the callback as the current knobs say.
    pub async fn push_message(&self, message: &str) {
        deliver(&self.state, message.to_owned()).await;
    }

    /// The callback's answers once there are at least `count`; panics after 10 seconds.
    pub async fn wait_for_event_replies(&self, count: usize) -> Vec<EventReply> {
        for _ in 0..1000 {
            let replies = self.event_replies();
            if replies.len() >= count {
                return replies;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "the callback answered {:?}, not {count} pushes",
            self.event_replies()
        );
    }

    /// The job once it has left status 1; panics after 10 seconds.
    pub async fn wait_for_outcome(&self, publish_id: &str) -> PublishJob {
        for _ in 0..1000 {
            if let Some(job) = self.publish(publish_id).filter(|job| job.status != 1) {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "publish {publish_id} is still publishing: {:?}",
            self.publish(publish_id)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_channels::wechat::{crypto::decrypt, events::publish_finished};

    const APP_ID: &str = "wx49f0ab532d5d035a";
    const SECRET: &str = "secret-峨山";
    const CALLBACK_TOKEN: &str = "callback-token";
    const ENCODING_AES_KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
    const GH_ID: &str = "gh_4d00ed8d6399";

    async fn call(fake: &FakeWechat, path: &str, token: &str, body: Value) -> Value {
        reqwest::Client::new()
            .post(fake.url(path))
            .query(&[("access_token", token)])
            .json(&body)
            .send()
            .await
            .expect("the fake answers")
            .json()
            .await
            .expect("a JSON answer")
    }

    async fn token(fake: &FakeWechat, secret: &str, force: bool) -> Value {
        let response = reqwest::Client::new()
            .post(fake.url(STABLE_TOKEN))
            .json(&json!({
                "grant_type": "client_credential",
                "appid": APP_ID,
                "secret": secret,
                "force_refresh": force,
            }))
            .send()
            .await
            .expect("the fake answers");
        assert_eq!(response.status(), 200, "WeChat answers errors with 200 too");
        response.json().await.expect("a JSON answer")
    }

    async fn access_token(fake: &FakeWechat) -> String {
        token(fake, SECRET, false).await["access_token"]
            .as_str()
            .expect("a token")
            .to_owned()
    }

    fn article(title: &str) -> Value {
        json!({"title": title, "author": "峨山县政府", "content": "<p>通知正文</p>", "need_open_comment": 0})
    }

    /// Adds a one-article draft and submits it: the publish_id.
    async fn publish(fake: &FakeWechat, token: &str) -> String {
        let added = call(
            fake,
            DRAFT_ADD,
            token,
            json!({"articles": [article("关于国庆假期的通知")]}),
        )
        .await;
        let media_id = added["media_id"].as_str().expect("a media_id");
        let submitted = call(fake, SUBMIT, token, json!({"media_id": media_id})).await;
        assert_eq!(submitted["errcode"], 0, "{submitted}");
        submitted["publish_id"]
            .as_str()
            .expect("a string publish_id")
            .to_owned()
    }

    type Received = Arc<Mutex<Vec<(BTreeMap<String, String>, String)>>>;

    /// A callback that keeps every push and answers `success`.
    async fn start_receiver() -> (String, Received) {
        let received: Received = Arc::default();
        let shared = received.clone();
        let server = HttpServer::new(move || {
            App::new().app_data(web::Data::new(shared.clone())).route(
                "/wechat",
                web::post().to(
                    |query: web::Query<BTreeMap<String, String>>,
                     body: String,
                     received: web::Data<Received>| async move {
                        received.lock().expect("lock").push((query.into_inner(), body));
                        HttpResponse::Ok().body("success")
                    },
                ),
            )
        })
        .workers(1)
        .bind(("127.0.0.1", 0))
        .expect("the receiver binds");
        let address = server.addrs()[0];
        tokio::spawn(server.run());
        (format!("http://{address}/wechat"), received)
    }

    fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
        let from = text.find(start).expect("the start marker") + start.len();
        let to = from + text[from..].find(end).expect("the end marker");
        &text[from..to]
    }

    #[tokio::test]
    async fn fake_wechat_issues_stable_tokens_and_refuses_bad_credentials() {
        let fake = FakeWechat::start(APP_ID, SECRET).await;

        let first = token(&fake, SECRET, false).await;
        assert_eq!(first["access_token"], "tok-1");
        assert_eq!(first["expires_in"], 7200);
        let again = token(&fake, SECRET, false).await;
        assert_eq!(again["access_token"], "tok-1", "a valid stable token comes back");
        let forced = token(&fake, SECRET, true).await;
        assert_eq!(forced["access_token"], "tok-2");
        assert_eq!(fake.tokens_issued(), 2);
        assert_eq!(fake.token_requests(), 3);

        let refused = token(&fake, "wrong", false).await;
        assert_eq!(refused["errcode"], 40125);
        assert!(refused["errmsg"].as_str().expect("errmsg").contains("rid: "));
        let other_account = reqwest::Client::new()
            .post(fake.url(STABLE_TOKEN))
            .json(&json!({"grant_type": "client_credential", "appid": "wx-other", "secret": SECRET}))
            .send()
            .await
            .expect("answers")
            .json::<Value>()
            .await
            .expect("JSON");
        assert_eq!(other_account["errcode"], 40013);

        let body = json!({"articles": [article("标题")]});
        assert_eq!(
            call(&fake, DRAFT_ADD, "tok-1", body.clone()).await["errcode"],
            40001,
            "forced out"
        );
        assert_eq!(
            call(&fake, DRAFT_ADD, "made-up", body.clone()).await["errcode"],
            40001
        );
        assert!(call(&fake, DRAFT_ADD, "tok-2", body.clone()).await["media_id"].is_string());

        fake.expire_tokens();
        assert_eq!(
            call(&fake, DRAFT_ADD, "tok-2", body.clone()).await["errcode"],
            42001
        );
        assert_eq!(access_token(&fake).await, "tok-3");

        fake.advance(TimeDelta::seconds(7200));
        assert_eq!(
            call(&fake, DRAFT_ADD, "tok-3", body.clone()).await["errcode"],
            42001
        );
        fake.set_token_ttl(Duration::from_secs(60));
        let short = token(&fake, SECRET, false).await;
        assert_eq!(
            (short["access_token"].as_str(), short["expires_in"].as_i64()),
            (Some("tok-4"), Some(60))
        );

        let missing = reqwest::Client::new()
            .post(fake.url(DRAFT_ADD))
            .json(&body)
            .send()
            .await
            .expect("answers")
            .json::<Value>()
            .await
            .expect("JSON");
        assert_eq!(missing["errcode"], 41001);
        let get = reqwest::get(fake.url(STABLE_TOKEN)).await.expect("answers");
        assert_eq!(get.json::<Value>().await.expect("JSON")["errcode"], 43002);
    }

    #[tokio::test]
    async fn fake_wechat_publishes_a_draft_then_deletes_the_article() {
        let fake = FakeWechat::start(APP_ID, SECRET).await;
        let token = access_token(&fake).await;

        let long_title = "长".repeat(DEFAULT_TITLE_LIMIT + 1);
        let too_long = call(
            &fake,
            DRAFT_ADD,
            &token,
            json!({"articles": [article(&long_title)]}),
        )
        .await;
        assert_eq!(too_long["errcode"], 45003);
        let big = json!({"articles": [{"title": "大", "content": "字".repeat(CONTENT_MAX_CHARS)}]});
        assert_eq!(call(&fake, DRAFT_ADD, &token, big).await["errcode"], 45002);
        let escaped = reqwest::Client::new()
            .post(fake.url(DRAFT_ADD))
            .query(&[("access_token", &token)])
            .body(r#"{"articles":[{"title":"\u901a\u77e5","content":"x"}]}"#)
            .send()
            .await
            .expect("answers")
            .json::<Value>()
            .await
            .expect("JSON");
        assert_eq!(escaped["errcode"], 40033, "CJK must be sent literally");
        assert_eq!(fake.drafts(), 0);
        let unknown = call(&fake, SUBMIT, &token, json!({"media_id": "draft-none"})).await;
        assert_eq!(unknown["errcode"], 40007);

        let publish_id = publish(&fake, &token).await;
        assert_eq!(fake.drafts(), 1);
        assert_eq!(fake.submits(), 2);
        assert_eq!(
            fake.draft_log()[0].articles[0].author.as_deref(),
            Some("峨山县政府")
        );
        let job = fake.wait_for_outcome(&publish_id).await;
        assert_eq!(job.status, 0);
        assert!(
            fake.lock().draft_box.is_empty(),
            "a published draft leaves the draft box"
        );

        let numeric_id: u64 = publish_id.parse().expect("a numeric publish_id");
        let status = call(&fake, PUBLISH_GET, &token, json!({"publish_id": numeric_id})).await;
        assert_eq!(status["publish_id"], json!(publish_id));
        assert_eq!(status["publish_status"], 0);
        let article_id = status["article_id"].as_str().expect("an article_id").to_owned();
        assert_eq!(status["article_detail"]["count"], 1);
        assert_eq!(status["article_detail"]["item"][0]["idx"], 1);
        assert!(
            status["article_detail"]["item"][0]["article_url"]
                .as_str()
                .is_some()
        );

        let missing = call(
            &fake,
            PUBLISH_DELETE,
            &token,
            json!({"article_id": "art-none", "index": 0}),
        )
        .await;
        assert_eq!(missing["errcode"], 53600);
        let deleted = call(
            &fake,
            PUBLISH_DELETE,
            &token,
            json!({"article_id": article_id, "index": 0}),
        )
        .await;
        assert_eq!(deleted["errcode"], 0);
        assert_eq!(fake.deleted(), vec![article_id]);
        let after = call(&fake, PUBLISH_GET, &token, json!({"publish_id": publish_id})).await;
        assert_eq!(after["publish_status"], 5);
        assert!(after.get("article_id").is_none());
    }

    #[tokio::test]
    async fn fake_wechat_answers_injected_errors_and_a_slow_submit() {
        let fake = FakeWechat::start(APP_ID, SECRET).await;
        let token = access_token(&fake).await;
        let media_id =
            call(&fake, DRAFT_ADD, &token, json!({"articles": [article("通知")]})).await["media_id"]
                .as_str()
                .expect("a media_id")
                .to_owned();

        fake.fail_next(SUBMIT, 45009);
        fake.fail_next(SUBMIT, -1);
        let quota = call(&fake, SUBMIT, &token, json!({"media_id": media_id})).await;
        assert_eq!(quota["errcode"], 45009);
        assert_eq!(
            call(&fake, SUBMIT, &token, json!({"media_id": media_id})).await["errcode"],
            -1
        );

        fake.fail_next(SUBMIT, 40001);
        let revoked = call(&fake, SUBMIT, &token, json!({"media_id": media_id})).await;
        assert_eq!(revoked["errcode"], 40001);
        assert_eq!(
            call(&fake, PUBLISH_GET, &token, json!({"publish_id": "1"})).await["errcode"],
            40001
        );
        let fresh = access_token(&fake).await;
        assert_ne!(fresh, token, "a revoked token is not handed out again");
        assert!(fake.publishes().is_empty());

        fake.set_submit_delay(Duration::from_millis(800));
        fake.set_numeric_publish_id(true);
        let impatient = reqwest::Client::builder()
            .timeout(Duration::from_millis(100))
            .build()
            .expect("a client");
        let timed_out = impatient
            .post(fake.url(SUBMIT))
            .query(&[("access_token", &fresh)])
            .json(&json!({"media_id": media_id}))
            .send()
            .await;
        assert!(timed_out.is_err(), "the answer comes too late");
        let jobs = fake.publishes();
        assert_eq!(jobs.len(), 1, "the job was accepted all the same");
        assert_eq!(fake.wait_for_outcome(&jobs[0].publish_id).await.status, 0);
        let status = call(
            &fake,
            PUBLISH_GET,
            &fresh,
            json!({"publish_id": jobs[0].publish_id}),
        )
        .await;
        assert!(status["publish_id"].is_u64(), "{status}");
        assert_eq!(fake.submits(), 4);
    }

    #[tokio::test]
    async fn fake_wechat_pushes_publish_events_in_safe_mode() {
        let fake = FakeWechat::start(APP_ID, SECRET).await;
        let (url, received) = start_receiver().await;
        fake.set_callback(
            url,
            CALLBACK_TOKEN.into(),
            ENCODING_AES_KEY.into(),
            APP_ID.into(),
            GH_ID.into(),
        );
        fake.set_duplicate_events(1);
        let token = access_token(&fake).await;

        let publish_id = publish(&fake, &token).await;
        let replies = fake.wait_for_event_replies(2).await;
        assert!(
            replies.iter().all(|r| r.status == 200 && r.body == "success"),
            "{replies:?}"
        );
        let pushes = received.lock().expect("lock").clone();
        assert_eq!(pushes.len(), 2);
        assert_eq!(pushes[0], pushes[1], "a duplicate is the same request");

        let (query, body) = &pushes[0];
        assert_eq!(query["encrypt_type"], "aes");
        assert_eq!(query["openid"], "mphelper");
        assert_eq!(between(body, "<ToUserName><![CDATA[", "]]>"), GH_ID);
        let encrypted = between(body, "<Encrypt><![CDATA[", "]]></Encrypt>");
        let (timestamp, nonce) = (query["timestamp"].as_str(), query["nonce"].as_str());
        assert_eq!(query["signature"], signature(&[CALLBACK_TOKEN, timestamp, nonce]));
        assert_eq!(
            query["msg_signature"],
            signature(&[CALLBACK_TOKEN, timestamp, nonce, encrypted])
        );

        let key = AesKey::from_encoding_aes_key(ENCODING_AES_KEY).expect("key");
        let message = decrypt(&key, encrypted, APP_ID).expect("decrypts for the account");
        let event = publish_finished(&message)
            .expect("reads")
            .expect("a PUBLISHJOBFINISH");
        assert_eq!(event.account, GH_ID);
        assert_eq!(event.publish_id, publish_id);
        assert_eq!(event.status, 0);
        assert_eq!(
            event.article_id,
            fake.publish(&publish_id).expect("the job").article_id
        );
        assert_eq!(event.article_urls.len(), 1);
        assert_eq!(event.created.to_string(), timestamp);

        fake.set_duplicate_events(0);
        fake.set_final_status(4);
        let rejected_id = publish(&fake, &token).await;
        fake.wait_for_event_replies(3).await;
        let (_, body) = received.lock().expect("lock")[2].clone();
        let message = decrypt(&key, between(&body, "<Encrypt><![CDATA[", "]]>"), APP_ID).expect("decrypts");
        let event = publish_finished(&message).expect("reads").expect("an event");
        assert_eq!(
            (event.publish_id, event.status, event.fail_idx),
            (rejected_id.clone(), 4, vec![1])
        );
        let status = call(&fake, PUBLISH_GET, &token, json!({"publish_id": rejected_id})).await;
        assert_eq!(
            (status["publish_status"].as_i64(), &status["fail_idx"]),
            (Some(4), &json!([1]))
        );

        fake.set_lose_events(true);
        let lost_id = publish(&fake, &token).await;
        fake.wait_for_outcome(&lost_id).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(fake.event_replies().len(), 3, "a lost event is never pushed");
    }
}
