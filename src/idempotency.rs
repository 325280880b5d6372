//! Idempotent requests in zero2prod's shape: a client names a request with a key; the first
//! request under that key runs and saves its answer in the same transaction as its effect, and
//! a retry gets the saved answer back. Keys are per user, and each carries a fingerprint of its
//! request, so reusing a key for a different request is refused rather than answered wrongly.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, DatabaseTransaction, EntityTrait, Set};

use crate::{
    domain::text::single_line,
    error::{Error, Result},
    store::entities::idempotency,
};

/// The header a key arrives in, and the field its errors name.
pub const IDEMPOTENCY_KEY_FIELD: &str = "Idempotency-Key";
const MAX_IDEMPOTENCY_KEY_CHARS: usize = 200;

/// A client's name for one request: single-line text of 1–200 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<Self> {
        single_line(IDEMPOTENCY_KEY_FIELD, raw, MAX_IDEMPOTENCY_KEY_CHARS, true).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The answer saved for a key, as first given.
#[derive(Debug, Clone)]
pub struct SavedResponse {
    pub status: u16,
    pub body: serde_json::Value,
}

pub enum NextAction {
    /// No request ran under this key yet: run it, then `save_response` before committing.
    Start,
    /// The same request already ran: answer what it answered.
    Replay(SavedResponse),
}

/// Looks the key up inside the request's transaction. The caller locks what the request
/// changes first, so a concurrent retry waits for the first one and then finds its answer.
pub async fn try_processing(
    txn: &DatabaseTransaction,
    user_id: &str,
    key: &IdempotencyKey,
    request_hash: &str,
) -> Result<NextAction> {
    let Some(saved) = idempotency::Entity::find_by_id((user_id.to_owned(), key.as_str().to_owned()))
        .one(txn)
        .await?
    else {
        return Ok(NextAction::Start);
    };
    if saved.request_hash != request_hash {
        return Err(Error::Refused {
            code: "idempotency_key_reused",
            field: Some(IDEMPOTENCY_KEY_FIELD.into()),
            message: "this Idempotency-Key was used for a different request".into(),
        });
    }
    let body = serde_json::from_str(&saved.response_body).map_err(anyhow::Error::new)?;
    let status = u16::try_from(saved.response_status)
        .map_err(|_| anyhow::anyhow!("saved response has status {}", saved.response_status))?;
    Ok(NextAction::Replay(SavedResponse { status, body }))
}

/// Saves the answer under the key, in the transaction that made the request's effect.
pub async fn save_response(
    txn: &DatabaseTransaction,
    user_id: &str,
    key: &IdempotencyKey,
    request_hash: String,
    response: &SavedResponse,
    at: DateTime<Utc>,
) -> Result<()> {
    idempotency::ActiveModel {
        user_id: Set(user_id.to_owned()),
        key: Set(key.as_str().to_owned()),
        request_hash: Set(request_hash),
        response_status: Set(i32::from(response.status)),
        response_body: Set(response.body.to_string()),
        created_at: Set(at),
    }
    .insert(txn)
    .await?;
    Ok(())
}
