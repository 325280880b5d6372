//! Users, password login with sessions, API tokens, and who a request acts as.

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier, password_hash::SaltString};
use chrono::Duration;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    sea_query::{Expr, OnConflict},
};
use serde::Serialize;

use crate::{
    audit,
    domain::{
        area::AreaCode,
        item::sha256_hex,
        text::{MAX_NAME_CHARS, single_line},
        user::{Role, Username, check_password_length, check_password_strength},
    },
    error::{Error, Result},
    hub::Hub,
    store::{
        begin_write,
        entities::{api_token, known_client, login_throttle, session, user},
    },
};

/// Who is acting: an authenticated, enabled user.
#[derive(Debug, Clone)]
pub struct Caller {
    pub id: String,
    pub username: String,
    pub role: Role,
    pub area: AreaCode,
    /// Signed in with a password Herald generated, not yet replaced: allowed only to change it
    /// (an API token never is).
    pub must_change_password: bool,
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

/// Who a user acts as.
pub fn caller_from(model: user::Model) -> Result<Caller> {
    let role = model.role;
    let area = AreaCode::parse(&model.area_code).map_err(anyhow::Error::new)?;
    Ok(Caller {
        id: model.id,
        username: model.username,
        role,
        area,
        must_change_password: model.must_change_password,
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

impl From<user::Model> for UserView {
    fn from(model: user::Model) -> Self {
        Self {
            id: model.id,
            username: model.username,
            display_name: model.display_name,
            role: model.role,
            area_code: model.area_code,
            disabled: model.disabled,
            created_at: model.created_at,
        }
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

/// Compares secrets without an early exit, so timing does not reveal how much matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// 18 random bytes in URL-safe text: enough entropy for tokens and one-time passwords.
/// `bytes` of system randomness, hex-encoded: for secrets shown once and stored hashed.
pub fn random_secret(bytes: usize) -> Result<String> {
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

/// Creates a user; returns it with the password when Herald generated it.
pub async fn create_user(
    hub: &Hub,
    actor: &str,
    actor_scope: Option<&AreaCode>,
    new: NewUser,
) -> Result<(UserView, Option<String>)> {
    let username = Username::parse(&new.username).map_err(|m| Error::validation("username", m))?;
    let display_name = single_line("display_name", &new.display_name, MAX_NAME_CHARS, false)?;
    let display_name = if display_name.is_empty() {
        username.as_str().to_owned()
    } else {
        display_name
    };
    let area_code = single_line("area_code", &new.area_code, MAX_NAME_CHARS, true)?;
    let area = hub
        .areas
        .resolve(&area_code)
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
        id: Set(hub.clock.new_id().to_string()),
        username: Set(username.as_str().to_owned()),
        display_name: Set(display_name),
        password_hash: Set(password_hash),
        role: Set(new.role),
        area_code: Set(area.to_string()),
        disabled: Set(false),
        created_at: Set(now),
        must_change_password: Set(generated.is_some()),
    }
    .insert(&txn)
    .await?;
    audit_user(
        &txn,
        now,
        actor,
        "user.create",
        &model,
        serde_json::json!({"username": model.username, "role": model.role, "area_code": model.area_code}),
    )
    .await?;
    txn.commit().await?;
    Ok((UserView::from(model), generated))
}

pub async fn any_user_exists(hub: &Hub) -> Result<bool> {
    Ok(user::Entity::find().count(&hub.db).await? > 0)
}

pub async fn list_users(hub: &Hub, scope: Option<&AreaCode>) -> Result<Vec<UserView>> {
    let mut query = user::Entity::find().order_by_asc(user::Column::Username);
    if let Some(scope) = scope {
        query = query.filter(user::Column::AreaCode.starts_with(scope.as_str()));
    }
    Ok(query
        .all(&hub.db)
        .await?
        .into_iter()
        .map(UserView::from)
        .collect())
}

pub async fn find_user_by_name(hub: &Hub, username: &str) -> Result<user::Model> {
    user::Entity::find()
        .filter(user::Column::Username.eq(username))
        .one(&hub.db)
        .await?
        .ok_or(Error::NotFound("user"))
}

/// A user an administrator of `scope` acts on; a user of another area answers as if it did
/// not exist.
async fn load_user_in_scope(
    txn: &sea_orm::DatabaseTransaction,
    scope: Option<&AreaCode>,
    user_id: &str,
) -> Result<user::Model> {
    user::Entity::find_by_id(user_id)
        .one(txn)
        .await?
        .filter(|model| scope.is_none_or(|scope| model.area_code.starts_with(scope.as_str())))
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
    let model = load_user_in_scope(&txn, actor_scope, user_id).await?;
    if model.id == actor {
        return Err(Error::conflict(
            "self_disable",
            "you cannot disable your own account",
        ));
    }
    let mut active: user::ActiveModel = model.into();
    active.disabled = Set(true);
    let model = active.update(&txn).await?;
    end_sessions_of(&txn, &model.id, None).await?;
    revoke_tokens_of(&txn, &model.id, now).await?;
    audit_user(
        &txn,
        now,
        actor,
        "user.disable",
        &model,
        serde_json::json!({"username": model.username}),
    )
    .await?;
    txn.commit().await?;
    Ok(UserView::from(model))
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
    let name = single_line("name", name, MAX_NAME_CHARS, true)?;
    let name = name.as_str();
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
        id: Set(hub.clock.new_id().to_string()),
        user_id: Set(owner.id.clone()),
        name: Set(name.to_owned()),
        token_hash: Set(sha256_hex(secret.as_bytes())),
        created_at: Set(now),
        revoked_at: Set(None),
    }
    .insert(&txn)
    .await?;
    audit::append_change(
        &txn,
        now,
        actor,
        "token.create",
        ("token", &model.id),
        Some(&owner.area_code),
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
    let owner = user::Entity::find_by_id(&token.user_id)
        .one(&txn)
        .await?
        .ok_or(Error::NotFound("token"))?;
    if token.user_id != caller.id {
        // A token of another area answers as if it did not exist.
        if !owner.area_code.starts_with(caller.area.as_str()) {
            return Err(Error::NotFound("token"));
        }
        if caller.role != Role::Admin {
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
    audit::append_change(
        &txn,
        now,
        &caller.id,
        "token.revoke",
        ("token", &token.id),
        Some(&owner.area_code),
        serde_json::json!({"user_id": token.user_id}),
    )
    .await?;
    txn.commit().await?;
    Ok(token.into())
}

/// Where a login attempt comes from: the client's address as the HTTP layer determined it.
pub struct LoginAttempt<'a> {
    pub username: &'a str,
    pub password: &'a str,
    pub client: &'a str,
}

/// A throttle bucket: failures of one account from one client address, or of one account from
/// all unknown addresses together.
struct Bucket {
    key: String,
    max_failures: u32,
}

fn buckets(
    attempt: &LoginAttempt<'_>,
    auth: &crate::config::AuthSettings,
    known_client: bool,
) -> Vec<Bucket> {
    let mut buckets = vec![Bucket {
        key: format!("client:{}:{}", attempt.client, attempt.username),
        max_failures: auth.login_max_failures,
    }];
    if !known_client {
        buckets.push(Bucket {
            key: format!("account:{}", attempt.username),
            max_failures: auth.login_account_max_failures,
        });
    }
    buckets
}

/// How long the attempt after `failures` must wait: nothing below the bucket's limit, then 1 s
/// doubling with each further failure, capped.
fn delay_after(failures: u32, max_failures: u32, cap: Duration) -> Duration {
    let Some(excess) = failures.checked_sub(max_failures) else {
        return Duration::zero();
    };
    let seconds = 1_i64.checked_shl(excess.min(40)).unwrap_or(i64::MAX);
    Duration::seconds(seconds).min(cap)
}

/// Counts this attempt as a failure in each of its buckets before the password is checked, in
/// one transaction that locks the buckets: concurrent attempts, on any hub instance, each see
/// the failures charged before them, so no more than the limit are ever checked at once. A
/// correct password refunds the charge.
async fn charge_attempt(hub: &Hub, attempt: &LoginAttempt<'_>, buckets: &[Bucket]) -> Result<()> {
    let now = hub.clock.now();
    let auth = &hub.settings.auth;
    let window = Duration::minutes(i64::from(auth.login_window_minutes));
    let cap = Duration::minutes(i64::from(auth.login_max_delay_minutes));
    let txn = begin_write(&hub.db).await?;
    let mut charged = Vec::with_capacity(buckets.len());
    for bucket in buckets {
        login_throttle::Entity::insert(login_throttle::ActiveModel {
            key: Set(bucket.key.clone()),
            username: Set(attempt.username.to_owned()),
            failures: Set(0),
            last_failure_at: Set(now),
            next_attempt_at: Set(now),
        })
        .on_conflict(
            OnConflict::column(login_throttle::Column::Key)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
        let row = login_throttle::Entity::find_by_id(bucket.key.clone())
            .lock_exclusive()
            .one(&txn)
            .await?
            .ok_or_else(|| anyhow::anyhow!("login throttle row {} vanished", bucket.key))?;
        if row.next_attempt_at > now {
            let wait = (row.next_attempt_at - now).num_seconds().max(1);
            return Err(Error::RateLimited {
                message: format!("too many failed logins; try again in {wait} seconds"),
                retry_after_seconds: u64::try_from(wait).unwrap_or(1),
            });
        }
        let previous = if row.last_failure_at + window < now {
            0
        } else {
            u32::try_from(row.failures)
                .map_err(|_| anyhow::anyhow!("throttle {} counts {} failures", row.key, row.failures))?
        };
        charged.push((row, previous.saturating_add(1), bucket.max_failures));
    }
    for (row, failures, max_failures) in charged {
        let mut active: login_throttle::ActiveModel = row.into();
        active.failures = Set(i32::try_from(failures).unwrap_or(i32::MAX));
        active.last_failure_at = Set(now);
        active.next_attempt_at = Set(now + delay_after(failures, max_failures, cap));
        active.update(&txn).await?;
    }
    txn.commit().await?;
    Ok(())
}

/// Checks a password and opens a session; returns the session secret for the cookie. Every
/// failed attempt is throttled per account and client address and written to the audit log.
pub async fn login(hub: &Hub, attempt: LoginAttempt<'_>) -> Result<(String, Caller)> {
    let username_chars = attempt.username.chars().count();
    if username_chars == 0 || username_chars > Username::MAX_CHARS {
        return Err(Error::validation(
            "username",
            format!("must be 1–{} characters", Username::MAX_CHARS),
        ));
    }
    check_password_length(attempt.password).map_err(|m| Error::validation("password", m))?;
    let now = hub.clock.now();
    let auth = &hub.settings.auth;
    let found = user::Entity::find()
        .filter(user::Column::Username.eq(attempt.username))
        .one(&hub.db)
        .await?;
    let known_client = match &found {
        Some(model) => {
            known_client::Entity::find_by_id((model.id.clone(), attempt.client.to_owned()))
                .filter(
                    known_client::Column::LastSeenAt
                        .gt(now - Duration::days(i64::from(auth.known_client_days))),
                )
                .count(&hub.db)
                .await?
                > 0
        }
        None => false,
    };
    let buckets = buckets(&attempt, auth, known_client);
    charge_attempt(hub, &attempt, &buckets).await?;
    let verified = match &found {
        Some(model) => password_matches(attempt.password, &model.password_hash) && !model.disabled,
        // Hash anyway so the response time does not reveal which user names exist.
        None => {
            let _ = hash_password(attempt.password);
            false
        }
    };
    let txn = begin_write(&hub.db).await?;
    let Some(model) = found.clone().filter(|_| verified) else {
        let reason = match &found {
            None => "unknown_user",
            Some(model) if model.disabled => "disabled",
            Some(_) => "wrong_password",
        };
        audit::append_change(
            &txn,
            now,
            "anonymous",
            "login.failure",
            ("user", found.as_ref().map_or("", |m| m.id.as_str())),
            found.as_ref().map(|m| m.area_code.as_str()),
            serde_json::json!({"username": attempt.username, "client": attempt.client, "reason": reason}),
        )
        .await?;
        txn.commit().await?;
        return Err(Error::Unauthenticated);
    };
    // The right password: this attempt was no failure. Its own address starts afresh; the
    // account's count of failures from unknown addresses only loses this attempt.
    let (own_address, others) = buckets.split_first().unzip();
    if let Some(bucket) = own_address {
        login_throttle::Entity::delete_by_id(bucket.key.clone())
            .exec(&txn)
            .await?;
    }
    for bucket in others.unwrap_or_default() {
        login_throttle::Entity::update_many()
            .col_expr(
                login_throttle::Column::Failures,
                sea_orm::sea_query::ExprTrait::sub(Expr::col(login_throttle::Column::Failures), 1),
            )
            .filter(login_throttle::Column::Key.eq(bucket.key.clone()))
            .filter(login_throttle::Column::Failures.gt(0))
            .exec(&txn)
            .await?;
    }
    known_client::Entity::insert(known_client::ActiveModel {
        user_id: Set(model.id.clone()),
        client: Set(attempt.client.to_owned()),
        last_seen_at: Set(now),
    })
    .on_conflict(
        OnConflict::columns([known_client::Column::UserId, known_client::Column::Client])
            .update_column(known_client::Column::LastSeenAt)
            .to_owned(),
    )
    .exec_without_returning(&txn)
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

/// Lifts every login delay on an account, from every address.
pub async fn unlock_user(
    hub: &Hub,
    actor: &str,
    actor_scope: Option<&AreaCode>,
    user_id: &str,
) -> Result<UserView> {
    let now = hub.clock.now();
    let txn = begin_write(&hub.db).await?;
    let model = load_user_in_scope(&txn, actor_scope, user_id).await?;
    let lifted = lift_login_delays(&txn, &model.username).await?;
    audit_user(
        &txn,
        now,
        actor,
        "user.unlock",
        &model,
        serde_json::json!({"username": model.username, "buckets_cleared": lifted}),
    )
    .await?;
    txn.commit().await?;
    Ok(UserView::from(model))
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
    let (user_id, by_token) = match credential {
        Credential::Session(secret) => {
            let found = session::Entity::find_by_id(sha256_hex(secret.as_bytes()))
                .one(&hub.db)
                .await?;
            match found {
                Some(s) if s.expires_at > hub.clock.now() => (s.user_id, false),
                _ => return Err(Error::Unauthenticated),
            }
        }
        Credential::Token(secret) => {
            let found = api_token::Entity::find()
                .filter(api_token::Column::TokenHash.eq(sha256_hex(secret.as_bytes())))
                .filter(api_token::Column::RevokedAt.is_null())
                .one(&hub.db)
                .await?;
            (found.ok_or(Error::Unauthenticated)?.user_id, true)
        }
    };
    let model = user::Entity::find_by_id(user_id)
        .one(&hub.db)
        .await?
        .ok_or(Error::Unauthenticated)?;
    if model.disabled {
        return Err(Error::Unauthenticated);
    }
    // A token is issued by someone already signed in with a password of their own.
    let mut caller = caller_from(model)?;
    caller.must_change_password &= !by_token;
    Ok(caller)
}

/// A password change: the current one, and the one chosen.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    #[schema(format = Password)]
    pub current_password: String,
    /// At least 10 characters, mixing two of letters, digits and other characters.
    #[schema(format = Password)]
    pub new_password: String,
}

/// The caller chooses a new password, proving the current one: a generated one stops being
/// required to change, and every other session of theirs ends.
pub async fn change_password(
    hub: &Hub,
    caller: &Caller,
    change: &PasswordChange,
    keep_session: Option<&str>,
) -> Result<UserView> {
    check_password_length(&change.current_password).map_err(|m| Error::validation("current_password", m))?;
    check_password_strength(&change.new_password).map_err(|m| Error::validation("new_password", m))?;
    if change.new_password == change.current_password {
        return Err(Error::validation(
            "new_password",
            "must differ from the current password",
        ));
    }
    // Checked before the write transaction: hashing is slow, and a guess must not hold the
    // database's write lock while it runs.
    let checked = user::Entity::find_by_id(&caller.id)
        .one(&hub.db)
        .await?
        .ok_or(Error::Unauthenticated)?;
    if !password_matches(&change.current_password, &checked.password_hash) {
        return Err(Error::validation(
            "current_password",
            "is not your current password",
        ));
    }
    let hash = hash_password(&change.new_password)?;
    let now = hub.clock.now();
    let txn = begin_write(&hub.db).await?;
    let model = user::Entity::find_by_id(&caller.id)
        .one(&txn)
        .await?
        .ok_or(Error::Unauthenticated)?;
    if model.password_hash != checked.password_hash {
        return Err(Error::conflict(
            "password_changed",
            "the password was changed meanwhile; sign in again",
        ));
    }
    end_sessions_of(&txn, &model.id, keep_session).await?;
    let mut active: user::ActiveModel = model.into();
    active.password_hash = Set(hash);
    active.must_change_password = Set(false);
    let model = active.update(&txn).await?;
    audit_user(
        &txn,
        now,
        &caller.id,
        "user.password_change",
        &model,
        serde_json::json!({"username": model.username}),
    )
    .await?;
    txn.commit().await?;
    Ok(UserView::from(model))
}

/// Moves a user to `area_code` of the configured area tree (the first administrator, after
/// the demo county was replaced by the real one); their sessions end, since what they may see
/// changed.
pub async fn rescope_user(hub: &Hub, actor: &str, user_id: &str, area_code: &str) -> Result<UserView> {
    let area = hub
        .areas
        .resolve(area_code)
        .map_err(|m| Error::validation("area_code", m))?;
    let now = hub.clock.now();
    let txn = begin_write(&hub.db).await?;
    let model = load_user_in_scope(&txn, None, user_id).await?;
    model
        .role
        .check_scope(&area)
        .map_err(|m| Error::validation("area_code", m))?;
    let from = model.area_code.clone();
    end_sessions_of(&txn, &model.id, None).await?;
    let mut active: user::ActiveModel = model.into();
    active.area_code = Set(area.to_string());
    let model = active.update(&txn).await?;
    audit_user(
        &txn,
        now,
        actor,
        "user.rescope",
        &model,
        serde_json::json!({"username": model.username, "from": from, "to": model.area_code}),
    )
    .await?;
    txn.commit().await?;
    Ok(UserView::from(model))
}

/// Ends `user_id`'s sessions, but for `keep` (the session secret of the request that does it).
async fn end_sessions_of(
    txn: &sea_orm::DatabaseTransaction,
    user_id: &str,
    keep: Option<&str>,
) -> Result<()> {
    let mut sessions = session::Entity::delete_many().filter(session::Column::UserId.eq(user_id));
    if let Some(kept) = keep {
        sessions = sessions.filter(session::Column::TokenHash.ne(sha256_hex(kept.as_bytes())));
    }
    sessions.exec(txn).await?;
    Ok(())
}

/// Lifts every login delay on `username`, from every address; returns how many were lifted.
async fn lift_login_delays(txn: &sea_orm::DatabaseTransaction, username: &str) -> Result<u64> {
    Ok(login_throttle::Entity::delete_many()
        .filter(login_throttle::Column::Username.eq(username))
        .exec(txn)
        .await?
        .rows_affected)
}

/// Audits `action` on user `model`, in its area.
async fn audit_user(
    txn: &sea_orm::DatabaseTransaction,
    now: chrono::DateTime<chrono::Utc>,
    actor: &str,
    action: &str,
    model: &user::Model,
    detail: serde_json::Value,
) -> Result<()> {
    audit::append_change(
        txn,
        now,
        actor,
        action,
        ("user", &model.id),
        Some(&model.area_code),
        detail,
    )
    .await?;
    Ok(())
}

/// Revokes every API token of `user_id`: one left over would act for the user whatever
/// became of their password or account.
async fn revoke_tokens_of(
    txn: &sea_orm::DatabaseTransaction,
    user_id: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    api_token::Entity::update_many()
        .col_expr(
            api_token::Column::RevokedAt,
            sea_orm::sea_query::Expr::value(Some(now)),
        )
        .filter(api_token::Column::UserId.eq(user_id))
        .filter(api_token::Column::RevokedAt.is_null())
        .exec(txn)
        .await?;
    Ok(())
}

/// An administrator resets a user's password: a generated one-time password (returned once),
/// to be changed at the next sign-in; the user's sessions end and login delays are lifted.
pub async fn reset_password(
    hub: &Hub,
    actor: &str,
    actor_scope: Option<&AreaCode>,
    user_id: &str,
) -> Result<(UserView, String)> {
    let password = random_secret(9)?;
    let hash = hash_password(&password)?;
    let now = hub.clock.now();
    let txn = begin_write(&hub.db).await?;
    let model = load_user_in_scope(&txn, actor_scope, user_id).await?;
    // Over the API an administrator's password is reset only by themselves (by changing it);
    // another's only from the server's command line, so one administrator cannot become
    // another.
    if actor_scope.is_some() && model.role == Role::Admin && model.id != actor {
        return Err(Error::forbidden(
            "an administrator's password is reset from the command line (herald user reset-password)",
        ));
    }
    end_sessions_of(&txn, &model.id, None).await?;
    // A reset is how a taken-over account is recovered: its tokens go too.
    revoke_tokens_of(&txn, &model.id, now).await?;
    lift_login_delays(&txn, &model.username).await?;
    let mut active: user::ActiveModel = model.into();
    active.password_hash = Set(hash);
    active.must_change_password = Set(true);
    let model = active.update(&txn).await?;
    audit_user(
        &txn,
        now,
        actor,
        "user.password_reset",
        &model,
        serde_json::json!({"username": model.username}),
    )
    .await?;
    txn.commit().await?;
    Ok((UserView::from(model), password))
}
