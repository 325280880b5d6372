//! Request extractors that turn bad input into JSON errors naming the field, and
//! authentication into a `Caller`.

use std::{future::Future, pin::Pin, sync::Arc};

use actix_web::{FromRequest, HttpMessage, HttpRequest, dev::Payload, web};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::{
    accounts::{self, Caller, Credential},
    hub::Hub,
};

pub const SESSION_COOKIE: &str = "herald_session";

/// Whether a character may stand in text that enters the hub: no NUL or other control
/// character, except the line breaks and tabs that multi-line text (bodies, comments) holds.
pub fn is_forbidden_char(c: char) -> bool {
    c.is_control() && !matches!(c, '\n' | '\r' | '\t')
}

/// The answer to text holding a forbidden character, in a body, a path or a query.
pub fn control_character_error(field: String) -> ApiError {
    ApiError::new(
        actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
        "invalid",
        "must not contain NUL or other control characters",
        Some(field),
    )
}

/// Finds the first string (or key) holding a forbidden character; returns its path in the
/// `a.b[2]` form serde_path_to_error uses.
fn forbidden_text_in(value: &serde_json::Value, path: &str) -> Option<String> {
    use serde_json::Value;
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        Value::String(text) => text.chars().any(is_forbidden_char).then(|| {
            if path.is_empty() {
                ".".to_owned()
            } else {
                path.to_owned()
            }
        }),
        Value::Array(entries) => entries
            .iter()
            .enumerate()
            .find_map(|(i, entry)| forbidden_text_in(entry, &format!("{path}[{i}]"))),
        Value::Object(fields) => fields.iter().find_map(|(key, entry)| {
            if key.chars().any(is_forbidden_char) {
                Some(join(key))
            } else {
                forbidden_text_in(entry, &join(key))
            }
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => None,
    }
}

/// The one way a JSON request body enters the hub: declared as exactly `application/json`,
/// one JSON value with nothing after it, no control characters in any string, within the
/// size limit, then deserialised with the path of the first offending field.
pub fn parse_json_body<T: DeserializeOwned>(req: &HttpRequest, bytes: &[u8]) -> Result<T, ApiError> {
    let is_json = req
        .mime_type()
        .ok()
        .flatten()
        .is_some_and(|mime| mime.essence_str() == "application/json");
    if !is_json {
        return Err(ApiError::new(
            actix_web::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as application/json",
            Some("Content-Type".into()),
        ));
    }
    let limit = hub(req)?.settings.content.max_json_bytes();
    if bytes.len() > limit {
        return Err(ApiError::new(
            actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the JSON body is {} bytes; the limit is {limit}", bytes.len()),
            Some("body".into()),
        ));
    }
    // Parsing into a Value first refuses trailing bytes and bounds nesting depth, and lets
    // every string be checked once, whatever type it lands in.
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::malformed(
            format!("the body is not one JSON value: {e}"),
            Some("body".into()),
        )
    })?;
    if let Some(field) = forbidden_text_in(&value, "") {
        return Err(control_character_error(field));
    }
    serde_path_to_error::deserialize(value)
        .map_err(|e| ApiError::malformed(format!("{}", e.inner()), super::error::field_of(&e)))
}

/// A raw request body, whose read errors (over the size limit, a broken upload) answer in
/// the API's JSON error shape like every other refusal.
pub struct ApiBytes(pub web::Bytes);

impl FromRequest for ApiBytes {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            bytes.await.map(ApiBytes).map_err(|e| {
                ApiError::new(
                    actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    e.to_string(),
                    Some("body".into()),
                )
            })
        })
    }
}

/// JSON body, read by `parse_json_body`.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for ApiJson<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let bytes = ApiBytes::from_request(req, payload);
        let req = req.clone();
        Box::pin(async move { parse_json_body(&req, &bytes.await?.0).map(ApiJson) })
    }
}

/// Query string, with the same error shape as `ApiJson`. Control characters never get this
/// far: `reject_control_characters` refuses them for every route.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for ApiQuery<T> {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let query = req.query_string();
        let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        std::future::ready(
            serde_path_to_error::deserialize(deserializer)
                .map(ApiQuery)
                .map_err(|e| ApiError::malformed(format!("{}", e.inner()), super::error::field_of(&e))),
        )
    }
}

/// Names the first part of a request's path or query that holds a control character: `path`,
/// or the query parameter's name. Percent-encoded bytes are decoded first, so `%00` counts.
pub fn control_character_in(path: &str, query: &str) -> Option<String> {
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    if decoded.chars().any(char::is_control) {
        return Some("path".into());
    }
    form_urlencoded::parse(query.as_bytes()).find_map(|(key, value)| {
        (key.chars().any(char::is_control) || value.chars().any(char::is_control)).then(|| {
            let printable: String = key.chars().filter(|c| !c.is_control()).take(64).collect();
            if printable.is_empty() {
                "query".to_owned()
            } else {
                printable
            }
        })
    })
}

pub fn hub(req: &HttpRequest) -> Result<Arc<Hub>, ApiError> {
    req.app_data::<web::Data<Hub>>()
        .map(|data| data.clone().into_inner())
        .ok_or_else(|| crate::error::Error::Unexpected(anyhow::anyhow!("Hub missing from app data")).into())
}

fn bearer(req: &HttpRequest) -> Option<String> {
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    header
        .strip_prefix("Bearer ")
        .map(|token| token.trim().to_owned())
}

/// What a user signed in with a one-time password may do: see who they are, choose their own.
const ALLOWED_BEFORE_PASSWORD_CHANGE: [&str; 2] = ["/api/v1/me", "/api/v1/me/password"];

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let hub = hub(req);
        let token = bearer(req);
        let session = req.cookie(SESSION_COOKIE).map(|c| c.value().to_owned());
        let path = req.path().to_owned();
        Box::pin(async move {
            let hub = hub?;
            let credential = match (&token, &session) {
                (Some(token), _) => Credential::Token(token),
                (None, Some(session)) => Credential::Session(session),
                (None, None) => return Err(crate::error::Error::Unauthenticated.into()),
            };
            let caller = accounts::authenticate(&hub, credential).await?;
            if caller.must_change_password && !ALLOWED_BEFORE_PASSWORD_CHANGE.contains(&path.as_str()) {
                return Err(ApiError::new(
                    actix_web::http::StatusCode::FORBIDDEN,
                    "password_change_required",
                    "you signed in with a one-time password: choose your own first (POST /api/v1/me/password)",
                    Some("password".into()),
                ));
            }
            Ok(caller)
        })
    }
}
