//! The error every operation of the hub returns. The HTTP layer maps it to a status and a JSON
//! body, the CLI to a message and an exit code; both name the offending field when there is one.

#[derive(thiserror::Error)]
pub enum Error {
    /// Input that cannot be accepted as it stands.
    #[error("{field}: {message}")]
    Validation { field: String, message: String },
    /// A rule of 政务公开 or of the workflow forbids this, whoever asks.
    #[error("{message}")]
    Refused {
        code: &'static str,
        field: Option<String>,
        message: String,
    },
    /// The action does not fit the item's current state.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Forbidden(String),
    #[error("authentication required")]
    Unauthenticated,
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after_seconds: u64,
    },
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl Error {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Validation {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Error::Forbidden(message.into())
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Error::Conflict {
            code,
            message: message.into(),
        }
    }
}

impl From<sea_orm::DbErr> for Error {
    fn from(e: sea_orm::DbErr) -> Self {
        Error::Unexpected(anyhow::Error::new(e))
    }
}

/// Shows the whole `source()` chain, so a log line explains itself.
impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{self}")?;
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            writeln!(f, "caused by: {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
