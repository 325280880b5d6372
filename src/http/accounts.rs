//! Sessions, the current user, users and API tokens.

use actix_web::{HttpRequest, HttpResponse, cookie::Cookie, web};
use serde::Deserialize;

use super::{
    PublicSite,
    error::ApiError,
    extract::{ApiJson, SESSION_COOKIE, hub},
};
use crate::{
    accounts::{self, Caller, LoginAttempt, NewUser},
    domain::user::Role,
    error::Error,
};

type Reply = Result<HttpResponse, ApiError>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginInput {
    pub username: String,
    pub password: String,
}

pub async fn login(req: HttpRequest, input: ApiJson<LoginInput>) -> Reply {
    let hub = hub(&req)?;
    let client = client_address(&req, &hub.settings.server.client_address_header);
    let attempt = LoginAttempt {
        username: input.0.username.trim(),
        password: &input.0.password,
        client: &client,
    };
    let (secret, caller) = accounts::login(&hub, attempt).await?;
    let secure = req
        .app_data::<web::Data<PublicSite>>()
        .is_some_and(|site| site.https);
    let cookie = Cookie::build(SESSION_COOKIE, secret)
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(actix_web::cookie::SameSite::Strict)
        .max_age(actix_web::cookie::time::Duration::hours(i64::from(
            hub.settings.auth.session_hours,
        )))
        .finish();
    Ok(HttpResponse::Ok().cookie(cookie).json(serde_json::json!({
        "id": caller.id, "username": caller.username, "role": caller.role, "area_code": caller.area.as_str(),
    })))
}

/// The client's address: from the configured proxy header when there is one, else the TCP
/// peer. What cannot be read as an address counts as the peer, so a forged header gains nothing.
fn client_address(req: &HttpRequest, header: &str) -> String {
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

pub async fn logout(req: HttpRequest) -> Reply {
    if let Some(cookie) = req.cookie(SESSION_COOKIE) {
        accounts::logout(&*hub(&req)?, cookie.value()).await?;
    }
    let mut expired = Cookie::build(SESSION_COOKIE, "").path("/").finish();
    expired.make_removal();
    Ok(HttpResponse::NoContent().cookie(expired).finish())
}

pub async fn me(caller: Caller) -> Reply {
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "id": caller.id, "username": caller.username, "role": caller.role, "area_code": caller.area.as_str(),
    })))
}

fn require_admin(caller: &Caller) -> Result<(), Error> {
    if caller.role == Role::Admin {
        Ok(())
    } else {
        Err(Error::forbidden("only administrators manage accounts"))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUserInput {
    pub username: String,
    #[serde(default)]
    pub display_name: String,
    pub role: Role,
    pub area_code: String,
    /// Omit to have Herald generate one, returned once in the response.
    #[serde(default)]
    pub password: Option<String>,
}

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
    Ok(HttpResponse::Created().json(serde_json::json!({"user": user, "generated_password": generated})))
}

pub async fn list_users(req: HttpRequest, caller: Caller) -> Reply {
    require_admin(&caller)?;
    Ok(HttpResponse::Ok().json(accounts::list_users(&*hub(&req)?, Some(&caller.area)).await?))
}

pub async fn disable_user(req: HttpRequest, caller: Caller, id: web::Path<String>) -> Reply {
    require_admin(&caller)?;
    Ok(HttpResponse::Ok()
        .json(accounts::disable_user(&*hub(&req)?, &caller.id, Some(&caller.area), &id).await?))
}

/// Lifts the login delays on an account (after failed logins), from every address.
pub async fn unlock_user(req: HttpRequest, caller: Caller, id: web::Path<String>) -> Reply {
    require_admin(&caller)?;
    Ok(HttpResponse::Ok()
        .json(accounts::unlock_user(&*hub(&req)?, &caller.id, Some(&caller.area), &id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTokenInput {
    pub name: String,
    /// An administrator may issue a token for another user of their area.
    #[serde(default)]
    pub user_id: Option<String>,
}

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
    Ok(HttpResponse::Created().json(serde_json::json!({"token": token, "secret": secret})))
}

pub async fn list_tokens(req: HttpRequest, caller: Caller) -> Reply {
    Ok(HttpResponse::Ok().json(accounts::list_tokens(&*hub(&req)?, &caller.id).await?))
}

pub async fn revoke_token(req: HttpRequest, caller: Caller, id: web::Path<String>) -> Reply {
    Ok(HttpResponse::Ok().json(accounts::revoke_token(&*hub(&req)?, &caller, &id).await?))
}
