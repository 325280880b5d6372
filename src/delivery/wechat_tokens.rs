//! The store behind the WeChat adapter's access tokens (`herald_channels::wechat::tokens`):
//! one row per account, sealed with the storage secrets key, renewed by one caller at a time
//! per account: within this process by a lock per account, across instances on PostgreSQL by
//! a transaction-scoped advisory lock held while WeChat is asked. (SQLite serves one instance,
//! and no write transaction is held open across the call to WeChat.)

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use chrono::{DateTime, Utc};
use herald_channels::{
    SecretString,
    wechat::tokens::{Fetch, TokenError, TokenStore},
};
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait, Set, Statement, sea_query::OnConflict};

use crate::{
    secrets::{Sealed, SecretsKey},
    store::{begin_write, entities::wechat_token, is_postgres},
};

/// What the token is sealed under, beside its account.
const SEALED_AS: &str = "wechat_access_token";

pub struct StoredTokens {
    db: DatabaseConnection,
    key: Option<SecretsKey>,
    clock: crate::clock::Clock,
    /// One renewal at a time per account within this process.
    renewing: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl StoredTokens {
    pub fn new(db: DatabaseConnection, key: Option<SecretsKey>, clock: crate::clock::Clock) -> Self {
        Self {
            db,
            key,
            clock,
            renewing: Mutex::new(HashMap::new()),
        }
    }

    fn key(&self) -> Result<&SecretsKey, String> {
        self.key
            .as_ref()
            .ok_or_else(|| "WeChat access tokens need storage.secrets_key to be kept encrypted".to_owned())
    }

    fn lock_for(&self, app_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.renewing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(app_id.to_owned())
            .or_default()
            .clone()
    }

    /// The stored token, opened, if it is valid at `valid_at`.
    async fn read(
        &self,
        db: &impl ConnectionTrait,
        app_id: &str,
        valid_at: DateTime<Utc>,
    ) -> Result<Option<String>, String> {
        let row = wechat_token::Entity::find_by_id(app_id)
            .one(db)
            .await
            .map_err(|e| e.to_string())?;
        let Some(row) = row.filter(|row| row.expires_at > valid_at) else {
            return Ok(None);
        };
        let sealed = Sealed {
            nonce: row.nonce,
            ciphertext: row.ciphertext,
        };
        let opened = self
            .key()?
            .open(app_id, SEALED_AS, &sealed)
            .map_err(|e| e.to_string())?;
        Ok(Some(opened.expose().to_owned()))
    }

    async fn write(
        &self,
        db: &impl ConnectionTrait,
        app_id: &str,
        token: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), String> {
        let sealed = self
            .key()?
            .seal(app_id, SEALED_AS, &SecretString::new(token.to_owned()))
            .map_err(|e| e.to_string())?;
        let row = wechat_token::ActiveModel {
            app_id: Set(app_id.to_owned()),
            nonce: Set(sealed.nonce),
            ciphertext: Set(sealed.ciphertext),
            expires_at: Set(expires_at),
            renewed_at: Set(self.clock.now()),
        };
        wechat_token::Entity::insert(row)
            .on_conflict(
                OnConflict::column(wechat_token::Column::AppId)
                    .update_columns([
                        wechat_token::Column::Nonce,
                        wechat_token::Column::Ciphertext,
                        wechat_token::Column::ExpiresAt,
                        wechat_token::Column::RenewedAt,
                    ])
                    .to_owned(),
            )
            .exec(db)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// With the account held: the stored token if another caller renewed it meanwhile, else a
    /// fetched one, stored.
    async fn renew_held(
        &self,
        db: &impl ConnectionTrait,
        app_id: &str,
        refused: Option<&str>,
        valid_at: DateTime<Utc>,
        fetch: Fetch<'_>,
    ) -> Result<String, TokenError> {
        if let Some(stored) = self.read(db, app_id, valid_at).await.map_err(TokenError::Store)?
            && Some(stored.as_str()) != refused
        {
            return Ok(stored);
        }
        let fresh = fetch().await?;
        let expires_at = self.clock.now()
            + chrono::Duration::from_std(fresh.expires_in).map_err(|e| TokenError::Store(e.to_string()))?;
        self.write(db, app_id, &fresh.token, expires_at)
            .await
            .map_err(TokenError::Store)?;
        Ok(fresh.token)
    }
}

#[async_trait::async_trait]
impl TokenStore for StoredTokens {
    async fn current(&self, app_id: &str, valid_at: DateTime<Utc>) -> Result<Option<String>, String> {
        self.read(&self.db, app_id, valid_at).await
    }

    async fn renew(
        &self,
        app_id: &str,
        refused: Option<&str>,
        valid_at: DateTime<Utc>,
        fetch: Fetch<'_>,
    ) -> Result<String, TokenError> {
        let lock = self.lock_for(app_id);
        let _held = lock.lock().await;
        if !is_postgres(&self.db) {
            return self.renew_held(&self.db, app_id, refused, valid_at, fetch).await;
        }
        let store_failed = |e: sea_orm::DbErr| TokenError::Store(e.to_string());
        let txn = begin_write(&self.db).await.map_err(store_failed)?;
        // Held until the transaction ends: another instance renewing this account waits here,
        // then finds the token this one stored.
        txn.execute_raw(Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock(hashtext($1))",
            [format!("wechat-token:{app_id}").into()],
        ))
        .await
        .map_err(store_failed)?;
        let token = self.renew_held(&txn, app_id, refused, valid_at, fetch).await?;
        txn.commit().await.map_err(store_failed)?;
        Ok(token)
    }
}
