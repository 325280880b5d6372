//! The HTTP face of errors: `{"error":{"code","message","message_zh","field","field_label"}}`
//! with a fitting status.

use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use serde::Serialize;

use crate::error::Error;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// Seconds for the `Retry-After` header of a 429.
    pub retry_after_seconds: Option<u64>,
}

/// Every error answer: `{"error":{"code","message","message_zh","field","field_label"}}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail<'a> {
    /// A stable machine-readable code, e.g. `invalid`, `not_found`, `invalid_state`.
    pub code: &'a str,
    /// What went wrong, for people (English, with the details).
    pub message: &'a str,
    /// What went wrong in Chinese, for the staff who read it: the field as the form labels it
    /// and, where it has one, the form it must take.
    pub message_zh: &'a str,
    /// The offending input field, when there is one.
    #[schema(required = true)]
    pub field: Option<&'a str>,
    /// The field as the form labels it (成文日期 for `written_date`), when it has a label.
    #[schema(required = true)]
    pub field_label: Option<&'a str>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
        field: Option<String>,
    ) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field,
            retry_after_seconds: None,
        }
    }

    /// A request the server could not read as the expected JSON, query or path.
    pub fn malformed(message: impl Into<String>, field: Option<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed_request", message, field)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(seconds) = self.retry_after_seconds {
            response.insert_header((actix_web::http::header::RETRY_AFTER, seconds.to_string()));
        }
        // A parser's position in the request says nothing to the person who sent it.
        let message = super::error_zh::without_parser_position(&self.message);
        let message_zh = super::error_zh::message_zh(self.code, self.field.as_deref());
        let field_label = self.field.as_deref().and_then(super::error_zh::field_label);
        response.json(ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &message,
                message_zh: &message_zh,
                field: self.field.as_deref(),
                field_label: field_label.as_deref(),
            },
        })
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match error {
            Error::Validation { field, message } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message, Some(field))
            }
            Error::Refused { code, field, message } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message, field)
            }
            Error::Conflict { code, message } => Self::new(StatusCode::CONFLICT, code, message, None),
            Error::NotFound(what) => Self::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{what} not found"),
                None,
            ),
            Error::Forbidden(message) => Self::new(StatusCode::FORBIDDEN, "forbidden", message, None),
            Error::Unauthenticated => Self::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "sign in or present an API token",
                None,
            ),
            Error::RateLimited {
                message,
                retry_after_seconds,
            } => Self {
                retry_after_seconds: Some(retry_after_seconds),
                ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message, None)
            },
            Error::Unexpected(cause) => {
                tracing::error!(error.cause_chain = ?cause, "request failed unexpectedly");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "an internal error occurred; it has been logged",
                    None,
                )
            }
        }
    }
}

/// Names the field a serde error is about: from the path when there is one, otherwise from
/// the `missing field` / `unknown field` wording.
pub fn field_of<E: std::fmt::Display>(error: &serde_path_to_error::Error<E>) -> Option<String> {
    let path = error.path().to_string();
    let message = error.inner().to_string();
    let quoted = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned)
    };
    let missing = quoted("missing field `");
    let unknown = quoted("unknown field `");
    match (path.as_str(), missing, unknown) {
        // A missing field's path is its parent object.
        (".", Some(name), _) => Some(name),
        (parent, Some(name), _) => Some(format!("{parent}.{name}")),
        (".", None, unknown) => unknown,
        (path, None, _) => Some(path.to_owned()),
    }
}
