//! Sessions, the current user, users and API tokens.

use actix_web::{HttpRequest, HttpResponse, cookie::Cookie, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    PublicSite,
    error::{ApiError, ErrorBody},
    extract::{ApiJson, SESSION_COOKIE, hub},
};
use crate::{
    accounts::{self, Caller, LoginAttempt, NewUser, TokenView, UserView},
    domain::user::Role,
    error::Error,
};

type Reply = Result<HttpResponse, ApiError>;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Login)]
pub struct LoginInput {
    pub username: String,
    #[schema(format = Password)]
    pub password: String,
}

/// The signed-in user.
#[derive(Serialize, ToSchema)]
#[schema(as = Me)]
pub struct MeView {
    pub id: String,
    pub username: String,
    pub role: Role,
    pub area_code: String,
    /// Signed in with a one-time password: choose your own (`POST /api/v1/me/password`)
    /// before anything else.
    pub must_change_password: bool,
}

impl MeView {
    fn of(caller: &Caller) -> Self {
        Self {
            id: caller.id.clone(),
            username: caller.username.clone(),
            role: caller.role,
            area_code: caller.area.as_str().to_owned(),
            must_change_password: caller.must_change_password,
        }
    }
}

/// Sign in with a password; sets the `herald_session` cookie
#[utoipa::path(
    post, path = "/api/v1/session", tag = "accounts", security(()),
    request_body = LoginInput,
    responses(
        (status = 200, description = "Signed in; the `herald_session` cookie is set", body = MeView,
            headers(("Set-Cookie" = String, description = "`herald_session`, HttpOnly, SameSite=Strict"))),
        (status = 401, description = "Wrong user name or password, or the account is disabled", body = ErrorBody),
        (status = 429, description = "Too many failed logins for this account", body = ErrorBody),
    )
)]
pub async fn login(req: HttpRequest, input: ApiJson<LoginInput>) -> Reply {
    let hub = hub(&req)?;
    let client = client_address(&req, &hub.settings.server.client_address_header);
    let attempt = LoginAttempt {
        username: input.0.username.trim(),
        password: &input.0.password,
        client: &client,
    };
    let (secret, caller) = accounts::login(&hub, attempt).await?;
    let cookie = session_cookie(&req, &hub, secret);
    Ok(HttpResponse::Ok().cookie(cookie).json(MeView::of(&caller)))
}

/// The `herald_session` cookie for a new session: HttpOnly, SameSite=Strict, `Secure` when
/// the public URL is https, living as long as the session.
pub(crate) fn session_cookie(req: &HttpRequest, hub: &crate::hub::Hub, secret: String) -> Cookie<'static> {
    Cookie::build(SESSION_COOKIE, secret)
        .path("/")
        .http_only(true)
        .secure(is_https(req))
        .same_site(actix_web::cookie::SameSite::Strict)
        .max_age(actix_web::cookie::time::Duration::hours(i64::from(
            hub.settings.auth.session_hours,
        )))
        .finish()
}

/// Whether the hub is reached over https (its public URL), so cookies must be `Secure`.
pub(crate) fn is_https(req: &HttpRequest) -> bool {
    req.app_data::<web::Data<PublicSite>>()
        .is_some_and(|site| site.https)
}

/// The cookie that clears the session cookie in the browser.
pub(crate) fn session_removal() -> Cookie<'static> {
    let mut expired = Cookie::build(SESSION_COOKIE, "").path("/").finish();
    expired.make_removal();
    expired
}

/// The client's address: from the configured proxy header when there is one, else the TCP
/// peer. What cannot be read as an address counts as the peer, so a forged header gains nothing.
pub(crate) fn client_address(req: &HttpRequest, header: &str) -> String {
    let peer = req
        .peer_addr()
        .map(|addr| addr.ip().to_string())
        .unwrap_or_else(|| "unknown".into());
    if header.is_empty() {
        return peer;
    }
    req.headers()
        .get(header)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(',').next())
        .and_then(|value| value.trim().parse::<std::net::IpAddr>().ok())
        .map_or(peer, |ip| ip.to_string())
}

/// Sign out: ends the session
#[utoipa::path(
    delete, path = "/api/v1/session", tag = "accounts", security(()),
    responses((status = 204, description = "Signed out; the session cookie is cleared")),
)]
pub async fn logout(req: HttpRequest) -> Reply {
    if let Some(cookie) = req.cookie(SESSION_COOKIE) {
        accounts::logout(&*hub(&req)?, cookie.value()).await?;
    }
    Ok(HttpResponse::NoContent().cookie(session_removal()).finish())
}

/// The signed-in user
#[utoipa::path(
    get, path = "/api/v1/me", tag = "accounts",
    responses((status = 200, description = "Who you are", body = MeView)),
)]
pub async fn me(caller: Caller) -> Reply {
    Ok(HttpResponse::Ok().json(MeView::of(&caller)))
}

fn require_admin(caller: &Caller) -> Result<(), Error> {
    if caller.role == Role::Admin {
        Ok(())
    } else {
        Err(Error::forbidden("only administrators manage accounts"))
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewUser)]
pub struct NewUserInput {
    pub username: String,
    #[serde(default)]
    pub display_name: String,
    pub role: Role,
    /// 6, 9 or 12 digits within your area; a village_operator needs a village.
    pub area_code: String,
    /// Omit to have Herald generate one, returned once in the response.
    #[serde(default)]
    #[schema(format = Password)]
    pub password: Option<String>,
}

/// A new user, with the generated password when none was given (shown once).
#[derive(Serialize, ToSchema)]
pub struct CreatedUser {
    pub user: UserView,
    /// Null when the request set the password.
    pub generated_password: Option<String>,
}

/// Create a user (administrators); a generated password is returned once
#[utoipa::path(
    post, path = "/api/v1/users", tag = "accounts",
    request_body = NewUserInput,
    responses(
        (status = 201, description = "Created", body = CreatedUser),
        (status = 403, description = "Not an administrator, or an area outside yours", body = ErrorBody),
        (status = 422, description = "Invalid input (including a user name already taken); `field` names it", body = ErrorBody),
    )
)]
pub async fn create_user(req: HttpRequest, caller: Caller, input: ApiJson<NewUserInput>) -> Reply {
    require_admin(&caller)?;
    let input = input.0;
    let new = NewUser {
        username: input.username,
        display_name: input.display_name,
        role: input.role,
        area_code: input.area_code,
        password: input.password,
    };
    let (user, generated) = accounts::create_user(&*hub(&req)?, &caller.id, Some(&caller.area), new).await?;
    Ok(HttpResponse::Created().json(CreatedUser {
        user,
        generated_password: generated,
    }))
}

/// Users of your area (administrators)
#[utoipa::path(
    get, path = "/api/v1/users", tag = "accounts",
    responses(
        (status = 200, description = "Users", body = Vec<UserView>),
        (status = 403, description = "Not an administrator", body = ErrorBody),
    )
)]
pub async fn list_users(req: HttpRequest, caller: Caller) -> Reply {
    require_admin(&caller)?;
    Ok(HttpResponse::Ok().json(accounts::list_users(&*hub(&req)?, Some(&caller.area)).await?))
}

/// Disable a user: ends their sessions and revokes their tokens
#[utoipa::path(
    post, path = "/api/v1/users/{id}/disable", tag = "accounts",
    params(("id" = String, Path, description = "The user's id")),
    responses(
        (status = 200, description = "Disabled", body = UserView),
        (status = 403, description = "Not an administrator, or a user outside your area", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 409, description = "You cannot disable yourself", body = ErrorBody),
    )
)]
pub async fn disable_user(req: HttpRequest, caller: Caller, id: web::Path<String>) -> Reply {
    require_admin(&caller)?;
    Ok(HttpResponse::Ok()
        .json(accounts::disable_user(&*hub(&req)?, &caller.id, Some(&caller.area), &id).await?))
}

/// Choose a new password, proving the current one
///
/// A one-time password (the first administrator's, or one an administrator reset) must be
/// changed this way before anything else is allowed. Every other session of yours ends.
#[utoipa::path(
    post, path = "/api/v1/me/password", tag = "accounts",
    request_body = accounts::PasswordChange,
    responses(
        (status = 200, description = "Changed", body = UserView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 422, description = "The current password is wrong, or the new one too weak; `field` names it", body = ErrorBody),
    )
)]
pub async fn change_password(
    req: HttpRequest,
    caller: Caller,
    input: ApiJson<accounts::PasswordChange>,
) -> Reply {
    let session = req.cookie(SESSION_COOKIE).map(|c| c.value().to_owned());
    Ok(HttpResponse::Ok()
        .json(accounts::change_password(&*hub(&req)?, &caller, &input.0, session.as_deref()).await?))
}

/// The one-time password an administrator set for a user, shown once
#[derive(Serialize, ToSchema)]
pub struct PasswordResetView {
    pub user: UserView,
    /// To be handed to the user, who must change it at their next sign-in.
    pub one_time_password: String,
}

/// Reset a user's password to a one-time password
///
/// The user's sessions end and their login delays are lifted; the password is returned once.
#[utoipa::path(
    post, path = "/api/v1/users/{id}/password-reset", tag = "accounts",
    params(("id" = String, Path, description = "User id")),
    responses(
        (status = 200, description = "Reset", body = PasswordResetView),
        (status = 403, description = "Only administrators reset passwords", body = ErrorBody),
        (status = 404, description = "No such user in your area", body = ErrorBody),
    )
)]
pub async fn reset_password(req: HttpRequest, caller: Caller, id: web::Path<String>) -> Reply {
    require_admin(&caller)?;
    let (user, one_time_password) =
        accounts::reset_password(&*hub(&req)?, &caller.id, Some(&caller.area), &id).await?;
    Ok(HttpResponse::Ok().json(PasswordResetView {
        user,
        one_time_password,
    }))
}

/// Lift the login delays failed logins put on an account, from every address
#[utoipa::path(
    post, path = "/api/v1/users/{id}/unlock", tag = "accounts",
    params(("id" = String, Path, description = "User id")),
    responses(
        (status = 200, description = "The delays are lifted", body = UserView),
        (status = 403, description = "Only administrators unlock accounts", body = ErrorBody),
        (status = 404, description = "No such user in your area", body = ErrorBody),
    )
)]
pub async fn unlock_user(req: HttpRequest, caller: Caller, id: web::Path<String>) -> Reply {
    require_admin(&caller)?;
    Ok(HttpResponse::Ok()
        .json(accounts::unlock_user(&*hub(&req)?, &caller.id, Some(&caller.area), &id).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewToken)]
pub struct NewTokenInput {
    /// 1–100 characters.
    pub name: String,
    /// An administrator may issue a token for another user of their area.
    #[serde(default)]
    pub user_id: Option<String>,
}

/// A new API token with its secret (shown once).
#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    pub token: TokenView,
    /// Shown once; send as `Authorization: Bearer …`.
    pub secret: String,
}

/// Issue an API token; the secret is returned once
#[utoipa::path(
    post, path = "/api/v1/tokens", tag = "accounts",
    request_body = NewTokenInput,
    responses(
        (status = 201, description = "Issued", body = CreatedToken),
        (status = 403, description = "Only administrators issue tokens for others", body = ErrorBody),
        (status = 404, description = "No such user in your area", body = ErrorBody),
        (status = 409, description = "The user is disabled", body = ErrorBody),
        (status = 422, description = "Invalid input; `field` names it", body = ErrorBody),
    )
)]
pub async fn create_token(req: HttpRequest, caller: Caller, input: ApiJson<NewTokenInput>) -> Reply {
    let hub = hub(&req)?;
    let owner = match input.0.user_id.as_deref() {
        None => caller.id.clone(),
        Some(id) if id == caller.id => caller.id.clone(),
        Some(id) => {
            require_admin(&caller)?;
            let users = accounts::list_users(&hub, Some(&caller.area)).await?;
            users
                .into_iter()
                .find(|u| u.id == id)
                .map(|u| u.id)
                .ok_or(Error::NotFound("user"))?
        }
    };
    let (token, secret) = accounts::create_token(&hub, &caller.id, &owner, &input.0.name).await?;
    Ok(HttpResponse::Created().json(CreatedToken { token, secret }))
}

/// Your API tokens (never their secrets)
#[utoipa::path(
    get, path = "/api/v1/tokens", tag = "accounts",
    responses((status = 200, description = "Tokens", body = Vec<TokenView>)),
)]
pub async fn list_tokens(req: HttpRequest, caller: Caller) -> Reply {
    Ok(HttpResponse::Ok().json(accounts::list_tokens(&*hub(&req)?, &caller.id).await?))
}

/// Revoke an API token
#[utoipa::path(
    delete, path = "/api/v1/tokens/{id}", tag = "accounts",
    params(("id" = String, Path, description = "The token's id")),
    responses(
        (status = 200, description = "Revoked", body = TokenView),
        (status = 403, description = "Another user's token, and you are not their administrator", body = ErrorBody),
        (status = 404, description = "No such token", body = ErrorBody),
    )
)]
pub async fn revoke_token(req: HttpRequest, caller: Caller, id: web::Path<String>) -> Reply {
    Ok(HttpResponse::Ok().json(accounts::revoke_token(&*hub(&req)?, &caller, &id).await?))
}
