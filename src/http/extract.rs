//! Request extractors that turn bad input into JSON errors naming the field, and
//! authentication into a `Caller`.

use std::{future::Future, pin::Pin, sync::Arc};

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::{
    accounts::{self, Caller, Credential},
    hub::Hub,
};

pub const SESSION_COOKIE: &str = "herald_session";

/// JSON body, deserialised with the path of the first offending field.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for ApiJson<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let bytes = web::Bytes::from_request(req, payload);
        let is_json = req
            .headers()
            .get(actix_web::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        Box::pin(async move {
            if !is_json {
                return Err(ApiError::new(
                    actix_web::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "send the body as application/json",
                    None,
                ));
            }
            let bytes = bytes.await.map_err(|e| {
                ApiError::new(
                    actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    e.to_string(),
                    Some("body".into()),
                )
            })?;
            let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
            serde_path_to_error::deserialize(&mut deserializer)
                .map(ApiJson)
                .map_err(|e| ApiError::malformed(format!("{}", e.inner()), super::error::field_of(&e)))
        })
    }
}

/// Query string, with the same error shape as `ApiJson`.
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

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let hub = hub(req);
        let token = bearer(req);
        let session = req.cookie(SESSION_COOKIE).map(|c| c.value().to_owned());
        Box::pin(async move {
            let hub = hub?;
            let credential = match (&token, &session) {
                (Some(token), _) => Credential::Token(token),
                (None, Some(session)) => Credential::Session(session),
                (None, None) => return Err(crate::error::Error::Unauthenticated.into()),
            };
            Ok(accounts::authenticate(&hub, credential).await?)
        })
    }
}
