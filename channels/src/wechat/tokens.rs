//! One access token per official account, shared by every worker and every hub instance
//! (wechat-api.md §A.2.3): kept in the hub's store, renewed a few minutes before it expires or
//! when WeChat refuses it, and renewed once however many workers find it wanting at the same
//! moment: the store lets one renew at a time per account, and the others find its token.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use super::api::{self, Account, ApiError, FreshToken};

/// A token this close to its end is renewed before use: an attempt made with it (at most a
/// minute of calls) must not outlive it. Normally the upkeep renews it well before.
pub const RENEW_BEFORE_END: Duration = Duration::from_secs(120);

/// The upkeep renews a token this close to its end: WeChat's platform hands out the next
/// stable token from five minutes before the current one ends (wechat-api.md §A.2.2).
pub const REFRESH_BEFORE_END: Duration = Duration::from_secs(300);

/// Fetches a fresh token from WeChat (for the store to call while it holds the account).
pub type Fetch<'a> = &'a (dyn Fn() -> BoxFuture<'static, Result<FreshToken, ApiError>> + Send + Sync);

/// Why no token could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The hub's store failed; a later attempt may succeed.
    #[error("the token store failed: {0}")]
    Store(String),
}

/// Where the hub keeps each account's token (encrypted), shared by its instances.
#[async_trait::async_trait]
pub trait TokenStore: Send + Sync {
    /// The stored token of `app_id` still valid at `valid_at`, if there is one.
    async fn current(&self, app_id: &str, valid_at: DateTime<Utc>) -> Result<Option<String>, String>;

    /// Stores a token from `fetch`, one caller at a time per account across instances: unless,
    /// once it has the account, the stored token is valid at `valid_at` and is not `refused`
    /// (another caller renewed it meanwhile): then it returns that one and fetches nothing.
    async fn renew(
        &self,
        app_id: &str,
        refused: Option<&str>,
        valid_at: DateTime<Utc>,
        fetch: Fetch<'_>,
    ) -> Result<String, TokenError>;
}

/// The hub's clock, lent to the adapter.
pub type Now = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Access tokens for the WeChat adapter.
pub struct AccessTokens {
    client: reqwest::Client,
    store: Arc<dyn TokenStore>,
    now: Now,
}

impl AccessTokens {
    pub fn new(client: reqwest::Client, store: Arc<dyn TokenStore>, now: Now) -> Self {
        Self { client, store, now }
    }

    fn valid_at(&self) -> DateTime<Utc> {
        self.ahead(RENEW_BEFORE_END)
    }

    fn ahead(&self, by: Duration) -> DateTime<Utc> {
        (self.now)() + chrono::Duration::from_std(by).unwrap_or(chrono::Duration::minutes(5))
    }

    fn fetcher(
        &self,
        account: &Account,
        app_secret: &str,
        force: bool,
    ) -> impl Fn() -> BoxFuture<'static, Result<FreshToken, ApiError>> + Send + Sync {
        let (client, account, secret) = (self.client.clone(), account.clone(), app_secret.to_owned());
        move || {
            let (client, account, secret) = (client.clone(), account.clone(), secret.clone());
            Box::pin(async move { api::stable_token(&client, &account, &secret, force).await })
        }
    }

    /// A token for `account`: the stored one while it has more than [`RENEW_BEFORE_END`] to
    /// run, else a renewed one.
    pub async fn token(&self, account: &Account, app_secret: &str) -> Result<String, TokenError> {
        let valid_at = self.valid_at();
        if let Some(token) = self
            .store
            .current(&account.app_id, valid_at)
            .await
            .map_err(TokenError::Store)?
        {
            return Ok(token);
        }
        let fetch = self.fetcher(account, app_secret, false);
        self.store.renew(&account.app_id, None, valid_at, &fetch).await
    }

    /// Renews `account`'s token ahead of need, once it is within [`REFRESH_BEFORE_END`] of its
    /// end (one task does this, so workers find a fresh token); true when it was renewed.
    pub async fn refresh(&self, account: &Account, app_secret: &str) -> Result<bool, TokenError> {
        let valid_at = self.ahead(REFRESH_BEFORE_END);
        if self
            .store
            .current(&account.app_id, valid_at)
            .await
            .map_err(TokenError::Store)?
            .is_some()
        {
            return Ok(false);
        }
        let fetch = self.fetcher(account, app_secret, false);
        self.store.renew(&account.app_id, None, valid_at, &fetch).await?;
        Ok(true)
    }

    /// After WeChat refused `refused` (40001, 42001, 40014): a new token, forced, fetched once
    /// however many callers were refused the same one.
    pub async fn renew_refused(
        &self,
        account: &Account,
        app_secret: &str,
        refused: &str,
    ) -> Result<String, TokenError> {
        let fetch = self.fetcher(account, app_secret, true);
        self.store
            .renew(&account.app_id, Some(refused), self.valid_at(), &fetch)
            .await
    }
}
