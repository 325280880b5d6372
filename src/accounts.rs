//! Users, password login with sessions, API tokens, and who a request acts as.

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier, password_hash::SaltString};
use chrono::Duration;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, Set};
use serde::Serialize;

use crate::{
    audit::{self, AuditEvent},
    domain::{
        area::AreaCode,
        item::sha256_hex,
        user::{Role, Username, check_password_strength},
    },
    error::{Error, Result},
    hub::Hub,
    store::{
        begin_write,
        entities::{api_token, login_failure, session, user},
    },
};

/// Who is acting: an authenticated, enabled user.
#[derive(Debug, Clone)]
pub struct Caller {
    pub id: String,
    pub username: String,
    pub role: Role,
    pub area: AreaCode,
}

impl Caller {
    pub fn sees(&self, area: &AreaCode) -> bool {
        area.is_within(&self.area)
    }

    /// The area a listing covers: the one asked for (`area` filter) if it lies within the
    /// caller's, else the caller's own.
    pub fn scope(&self, asked: Option<&str>) -> Result<AreaCode> {
        let Some(raw) = asked else {
            return Ok(self.area.clone());
        };
        let area = AreaCode::parse(raw).map_err(|e| Error::validation("area", e.to_string()))?;
        if !self.sees(&area) {
            return Err(Error::forbidden(format!(
                "area {area} is outside your area {}",
                self.area
            )));
        }
        Ok(area)
    }
}

fn caller_from(model: user::Model) -> Result<Caller> {
    let role = Role::parse(&model.role)
        .ok_or_else(|| anyhow::anyhow!("user {} has unknown role {}", model.id, model.role))?;
    let area = AreaCode::parse(&model.area_code).map_err(anyhow::Error::new)?;
    Ok(Caller {
        id: model.id,
        username: model.username,
        role,
        area,
    })
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub area_code: String,
    pub disabled: bool,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl TryFrom<user::Model> for UserView {
    type Error = Error;
    fn try_from(model: user::Model) -> Result<Self> {
        let role = Role::parse(&model.role).ok_or_else(|| anyhow::anyhow!("unknown role {}", model.role))?;
        Ok(Self {
            id: model.id,
            username: model.username,
            display_name: model.display_name,
            role,
            area_code: model.area_code,
            disabled: model.disabled,
            created_at: model.created_at,
        })
    }
}

pub struct NewUser {
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub area_code: String,
    /// None: generate one and hand it back once.
    pub password: Option<String>,
}

/// 18 random bytes in URL-safe text: enough entropy for tokens and one-time passwords.
fn random_secret(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("system randomness unavailable: {e}"))?;
    Ok(hex::encode(buf))
}

fn hash_password(password: &str) -> Result<String> {
    let mut salt_bytes = [0u8; 16];
    getrandom::fill(&mut salt_bytes).map_err(|e| anyhow::anyhow!("system randomness unavailable: {e}"))?;
    let salt =
        SaltString::encode_b64(&salt_bytes).map_err(|e| anyhow::anyhow!("salt encoding failed: {e}"))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| anyhow::anyhow!("password hashing failed: {e}").into())
}

fn password_matches(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

/// Account changes carry no content hashes; the detail says what changed.
async fn audit_account(
    txn: &sea_orm::DatabaseTransaction,
    at: chrono::DateTime<chrono::Utc>,
    actor: &str,
    action: &str,
    (target_type, target_id): (&str, &str),
    detail: serde_json::Value,
) -> Result<()> {
    let event = AuditEvent {
        actor,
        action,
        target_type,
        target_id,
        before_hash: None,
        after_hash: None,
        detail,
    };
    audit::append(txn, at, event).await?;
    Ok(())
}

/// Creates a user; returns it with the password when Herald generated it.
pub async fn create_user(
    hub: &Hub,
    actor: &str,
    actor_scope: Option<&AreaCode>,
    new: NewUser,
) -> Result<(UserView, Option<String>)> {
    let username = Username::parse(&new.username).map_err(|m| Error::validation("username", m))?;
    let display_name = new.display_name.trim();
    let display_name = if display_name.is_empty() {
        username.as_str()
    } else {
        display_name
    }
    .to_owned();
    let area = hub
        .areas
        .resolve(new.area_code.trim())
        .map_err(|m| Error::validation("area_code", m))?;
    new.role
        .check_scope(&area)
        .map_err(|m| Error::validation("area_code", m))?;
    if let Some(scope) = actor_scope
        && !area.is_within(scope)
    {
        return Err(Error::forbidden(format!(
            "area {area} is outside your area {scope}"
        )));
    }
    let (password, generated) = match new.password {
        Some(password) => {
            check_password_strength(&password).map_err(|m| Error::validation("password", m))?;
            (password, None)
        }
        None => {
            let password = random_secret(9)?;
            (password.clone(), Some(password))
        }
    };
    let password_hash = hash_password(&password)?;
    let now = hub.clock.now();
    let txn = begin_write(&hub.db).await?;
    let taken = user::Entity::find()
        .filter(user::Column::Username.eq(username.as_str()))
        .count(&txn)
        .await?
        > 0;
    if taken {
        return Err(Error::Validation {
            field: "username".into(),
            message: format!("`{}` is taken", username.as_str()),
        });
    }
    let model = user::ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        username: Set(username.as_str().to_owned()),
        display_name: Set(display_name),
        password_hash: Set(password_hash),
        role: Set(new.role.as_str().to_owned()),
        area_code: Set(area.to_string()),
        disabled: Set(false),
        created_at: Set(now),
    }
    .insert(&txn)
    .await?;
    audit_account(
        &txn,
        now,
        actor,
        "user.create",
        ("user", &model.id),
        serde_json::json!({"username": model.username, "role": model.role, "area_code": model.area_code}),
    )
    .await?;
    txn.commit().await?;
    Ok((UserView::try_from(model)?, generated))
}

pub async fn any_user_exists(hub: &Hub) -> Result<bool> {
    Ok(user::Entity::find().count(&hub.db).await? > 0)
}

pub async fn list_users(hub: &Hub, scope: Option<&AreaCode>) -> Result<Vec<UserView>> {
    let mut query = user::Entity::find().order_by_asc(user::Column::Username);
    if let Some(scope) = scope {
        query = query.filter(user::Column::AreaCode.starts_with(scope.as_str()));
    }
    query
        .all(&hub.db)
        .await?
        .into_iter()
        .map(UserView::try_from)
        .collect()
}

pub async fn find_user_by_name(hub: &Hub, username: &str) -> Result<user::Model> {
    user::Entity::find()
        .filter(user::Column::Username.eq(username))
        .one(&hub.db)
        .await?
        .ok_or(Error::NotFound("user"))
}

/// Disables a user and ends their sessions and tokens at once.
pub async fn disable_user(
    hub: &Hub,
    actor: &str,
    actor_scope: Option<&AreaCode>,
    user_id: &str,
) -> Result<UserView> {
    let now = hub.clock.now();
    let txn = begin_write(&hub.db).await?;
    let model = user::Entity::find_by_id(user_id)
        .one(&txn)
        .await?
        .ok_or(Error::NotFound("user"))?;
    if let Some(scope) = actor_scope
        && !model.area_code.starts_with(scope.as_str())
    {
        return Err(Error::forbidden("that user is outside your area"));
    }
    if model.id == actor {
        return Err(Error::conflict(
            "self_disable",
            "you cannot disable your own account",
        ));
    }
    let mut active: user::ActiveModel = model.into();
    active.disabled = Set(true);
    let model = active.update(&txn).await?;
    session::Entity::delete_many()
        .filter(session::Column::UserId.eq(&model.id))
        .exec(&txn)
        .await?;
    api_token::Entity::update_many()
        .col_expr(
            api_token::Column::RevokedAt,
            sea_orm::sea_query::Expr::value(Some(now)),
        )
        .filter(api_token::Column::UserId.eq(&model.id))
        .filter(api_token::Column::RevokedAt.is_null())
        .exec(&txn)
        .await?;
    audit_account(
        &txn,
        now,
        actor,
        "user.disable",
        ("user", &model.id),
        serde_json::json!({"username": model.username}),
    )
    .await?;
    txn.commit().await?;
    UserView::try_from(model)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenView {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<api_token::Model> for TokenView {
    fn from(m: api_token::Model) -> Self {
        Self {
            id: m.id,
            user_id: m.user_id,
            name: m.name,
            created_at: m.created_at,
            revoked_at: m.revoked_at,
        }
    }
}

const TOKEN_PREFIX: &str = "hrld_";

/// Issues an API token; the secret is shown once and only its hash is kept.
pub async fn create_token(hub: &Hub, actor: &str, user_id: &str, name: &str) -> Result<(TokenView, String)> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(Error::validation("name", "must be 1–100 characters"));
    }
    let secret = format!("{TOKEN_PREFIX}{}", random_secret(32)?);
    let now = hub.clock.now();
    let txn = begin_write(&hub.db).await?;
    let owner = user::Entity::find_by_id(user_id)
        .one(&txn)
        .await?
        .ok_or(Error::NotFound("user"))?;
    if owner.disabled {
        return Err(Error::conflict("user_disabled", "that user is disabled"));
    }
    let model = api_token::ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        user_id: Set(owner.id.clone()),
        name: Set(name.to_owned()),
        token_hash: Set(sha256_hex(secret.as_bytes())),
        created_at: Set(now),
        revoked_at: Set(None),
    }
    .insert(&txn)
    .await?;
    audit_account(
        &txn,
        now,
        actor,
        "token.create",
        ("token", &model.id),
        serde_json::json!({"user_id": owner.id, "name": model.name}),
    )
    .await?;
    txn.commit().await?;
    Ok((model.into(), secret))
}

pub async fn list_tokens(hub: &Hub, user_id: &str) -> Result<Vec<TokenView>> {
    Ok(api_token::Entity::find()
        .filter(api_token::Column::UserId.eq(user_id))
        .order_by_asc(api_token::Column::CreatedAt)
        .all(&hub.db)
        .await?
        .into_iter()
        .map(TokenView::from)
        .collect())
}

pub async fn revoke_token(hub: &Hub, caller: &Caller, token_id: &str) -> Result<TokenView> {
    let now = hub.clock.now();
    let txn = begin_write(&hub.db).await?;
    let token = api_token::Entity::find_by_id(token_id)
        .one(&txn)
        .await?
        .ok_or(Error::NotFound("token"))?;
    if token.user_id != caller.id {
        let owner = user::Entity::find_by_id(&token.user_id)
            .one(&txn)
            .await?
            .ok_or(Error::NotFound("user"))?;
        if caller.role != Role::Admin || !owner.area_code.starts_with(caller.area.as_str()) {
            return Err(Error::forbidden(
                "only the token's owner or an administrator of their area may revoke it",
            ));
        }
    }
    if token.revoked_at.is_some() {
        return Ok(token.into());
    }
    let mut active: api_token::ActiveModel = token.into();
    active.revoked_at = Set(Some(now));
    let token = active.update(&txn).await?;
    audit_account(
        &txn,
        now,
        &caller.id,
        "token.revoke",
        ("token", &token.id),
        serde_json::json!({"user_id": token.user_id}),
    )
    .await?;
    txn.commit().await?;
    Ok(token.into())
}

/// Checks a password and opens a session; returns the session secret for the cookie.
pub async fn login(hub: &Hub, username: &str, password: &str) -> Result<(String, Caller)> {
    let now = hub.clock.now();
    let auth = &hub.settings.auth;
    let window_start = now - Duration::minutes(i64::from(auth.login_window_minutes));
    let recent_failures = login_failure::Entity::find()
        .filter(login_failure::Column::Username.eq(username))
        .filter(login_failure::Column::At.gt(window_start))
        .count(&hub.db)
        .await?;
    if recent_failures >= u64::from(auth.login_max_failures) {
        return Err(Error::RateLimited(format!(
            "too many failed logins for this account; try again in {} minutes",
            auth.login_window_minutes
        )));
    }
    let found = user::Entity::find()
        .filter(user::Column::Username.eq(username))
        .one(&hub.db)
        .await?;
    let verified = match &found {
        Some(model) => password_matches(password, &model.password_hash) && !model.disabled,
        // Hash anyway so the response time does not reveal which user names exist.
        None => {
            let _ = hash_password(password);
            false
        }
    };
    let txn = begin_write(&hub.db).await?;
    let Some(model) = found.filter(|_| verified) else {
        login_failure::ActiveModel {
            id: Default::default(),
            username: Set(username.to_owned()),
            at: Set(now),
        }
        .insert(&txn)
        .await?;
        txn.commit().await?;
        return Err(Error::Unauthenticated);
    };
    login_failure::Entity::delete_many()
        .filter(login_failure::Column::Username.eq(username))
        .exec(&txn)
        .await?;
    let secret = random_secret(32)?;
    session::ActiveModel {
        token_hash: Set(sha256_hex(secret.as_bytes())),
        user_id: Set(model.id.clone()),
        created_at: Set(now),
        expires_at: Set(now + Duration::hours(i64::from(auth.session_hours))),
    }
    .insert(&txn)
    .await?;
    txn.commit().await?;
    Ok((secret, caller_from(model)?))
}

pub async fn logout(hub: &Hub, session_secret: &str) -> Result<()> {
    session::Entity::delete_by_id(sha256_hex(session_secret.as_bytes()))
        .exec(&hub.db)
        .await?;
    Ok(())
}

pub enum Credential<'a> {
    Session(&'a str),
    Token(&'a str),
}

pub async fn authenticate(hub: &Hub, credential: Credential<'_>) -> Result<Caller> {
    let user_id = match credential {
        Credential::Session(secret) => {
            let found = session::Entity::find_by_id(sha256_hex(secret.as_bytes()))
                .one(&hub.db)
                .await?;
            match found {
                Some(s) if s.expires_at > hub.clock.now() => s.user_id,
                _ => return Err(Error::Unauthenticated),
            }
        }
        Credential::Token(secret) => {
            let found = api_token::Entity::find()
                .filter(api_token::Column::TokenHash.eq(sha256_hex(secret.as_bytes())))
                .filter(api_token::Column::RevokedAt.is_null())
                .one(&hub.db)
                .await?;
            found.ok_or(Error::Unauthenticated)?.user_id
        }
    };
    let model = user::Entity::find_by_id(user_id)
        .one(&hub.db)
        .await?
        .ok_or(Error::Unauthenticated)?;
    if model.disabled {
        return Err(Error::Unauthenticated);
    }
    caller_from(model)
}
