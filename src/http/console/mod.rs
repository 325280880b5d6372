//! The staff console at `/console`: sign in, the 工作台 (the items of the caller's area), password
//! change, sign out. Server-rendered HTML in Chinese, no script, every asset served by Herald
//! (county networks are often closed to CDNs).
//!
//! Sessions are the API's own (`herald_session`). Every form carries a CSRF token that must
//! equal the `herald_console_csrf` cookie (double submit): a page on another site can make a
//! browser post a form here, but it can neither read nor set that cookie.
//!
//! **Architecture Invariant:** the console reads and changes through the same functions as the
//! API (`accounts`, `workflow`), so a user sees and may do exactly what the API lets them.

use std::sync::Arc;

use actix_web::{
    HttpRequest, HttpResponse,
    cookie::Cookie,
    http::{StatusCode, header::LOCATION},
    web,
};
use askama::Template;
use serde::Deserialize;

use super::{
    accounts::{client_address, is_https, session_cookie, session_removal},
    error::ApiError,
    error_zh::message_zh,
    extract::{SESSION_COOKIE, hub},
};
use crate::{
    accounts::{self, Caller, Credential, LoginAttempt, PasswordChange},
    clock::china_offset,
    delivery::{self, DeliveryKind, DeliveryState, coverage::Reach},
    domain::{
        item::{Disclosure, Genre, ItemInput, ItemState, Validity, sanitise_html, styles_as_classes},
        user::Role,
    },
    error::Error,
    hub::Hub,
    idempotency::IdempotencyKey,
    workflow::{self, DueStatus, ItemFilter, PublishInput},
};

mod admin;
mod charts;
mod compose;
mod previews;
mod queues;
mod versions;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/console", web::get().to(home))
        .route("/console/login", web::get().to(login_page))
        .route("/console/login", web::post().to(login))
        .route("/console/logout", web::post().to(logout))
        .route("/console/password", web::get().to(password_page))
        .route("/console/password", web::post().to(change_password))
        // Before `{id}`, which would take "new" for an id.
        .route("/console/items/new", web::get().to(compose::compose_page))
        .route("/console/items", web::post().to(compose::compose))
        .route("/console/items/{id}", web::get().to(item_page))
        .route(
            "/console/items/{id}/previews",
            web::get().to(previews::previews_page),
        )
        .route(
            "/console/items/{id}/previews/portal",
            web::get().to(previews::portal_preview),
        )
        .route(
            "/console/items/{id}/charts/progress.svg",
            web::get().to(charts::progress_chart),
        )
        .route(
            "/console/items/{id}/charts/coverage.svg",
            web::get().to(charts::coverage_chart),
        )
        .route("/console/items/{id}/submit", web::post().to(submit))
        .route("/console/items/{id}/review", web::post().to(review))
        .route("/console/items/{id}/publish", web::get().to(publish_page))
        .route("/console/items/{id}/publish", web::post().to(publish))
        .route("/console/items/{id}/withdraw", web::post().to(withdraw))
        .route("/console/deliveries", web::get().to(queues::queues_page))
        .route("/console/deliveries/{id}/retry", web::post().to(queues::retry))
        .route("/console/deliveries/{id}/cancel", web::post().to(queues::cancel))
        .route(
            "/console/deliveries/{id}/reconcile",
            web::post().to(queues::reconcile),
        )
        .route("/console/cleanup", web::get().to(admin::cleanup_page))
        .route("/console/report", web::get().to(admin::report_page))
        .route("/console/devices", web::get().to(admin::devices_page))
        .route("/console/targets", web::get().to(admin::targets_page))
        .route("/console/targets", web::post().to(admin::add_target))
        .route("/console/tokens", web::get().to(admin::tokens_page))
        .route("/console/tokens", web::post().to(admin::create_token))
        .route("/console/tokens/{id}/revoke", web::post().to(admin::revoke_token))
        .route("/console/audit", web::get().to(audit_page))
        .route("/console/users", web::get().to(users_page))
        .route("/console/users", web::post().to(create_user))
        .route(
            "/console/users/{id}/password-reset",
            web::post().to(reset_password),
        )
        .route("/console/users/{id}/disable", web::post().to(disable_user))
        .route("/console/users/{id}/unlock", web::post().to(unlock_user))
        .route("/console/audit/verify", web::post().to(verify_audit))
        .route("/console/assets/console.css", web::get().to(stylesheet));
}

type Page = Result<HttpResponse, ApiError>;

const CSRF_COOKIE: &str = "herald_console_csrf";

async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((actix_web::http::header::CACHE_CONTROL, "public, max-age=3600"))
        .body(include_str!("../../../templates/console/console.css"))
}

/// Who is signed in, as the header shows them.
struct SignedIn {
    display: String,
    role: &'static str,
    /// May read the audit log (administrators and reviewers).
    audit: bool,
    /// Manages accounts (administrators).
    admin: bool,
}

/// What every console page carries: the site's name, who is signed in, the form token.
struct Frame {
    site_name: String,
    user: Option<SignedIn>,
    csrf: String,
}

fn role_label(role: Role) -> &'static str {
    match role {
        Role::Admin => "管理员",
        Role::Reviewer => "审核员",
        Role::Publisher => "发布员",
        Role::VillageOperator => "村级操作员",
    }
}

fn state_label(state: ItemState) -> &'static str {
    match state {
        ItemState::Draft => "草稿",
        ItemState::InReview => "待审核",
        ItemState::Approved => "已通过审核",
        ItemState::Published => "已发布",
        ItemState::Withdrawn => "已撤回",
        ItemState::Expired => "已失效",
    }
}

/// The disclosure attribute as documents print it (此件公开发布 …), without its brackets.
fn disclosure_label(disclosure: Disclosure) -> &'static str {
    disclosure
        .annotation()
        .trim_start_matches('（')
        .trim_end_matches('）')
}

/// The form token of this browser: its cookie's, or a new one (then the answer sets it).
fn csrf_token(req: &HttpRequest) -> Result<(String, Option<Cookie<'static>>), ApiError> {
    if let Some(cookie) = req.cookie(CSRF_COOKIE)
        && cookie.value().len() == 32
    {
        return Ok((cookie.value().to_owned(), None));
    }
    let token = accounts::random_secret(16)?;
    let cookie = Cookie::build(CSRF_COOKIE, token.clone())
        .path("/console")
        .http_only(true)
        .secure(is_https(req))
        .same_site(actix_web::cookie::SameSite::Strict)
        .finish();
    Ok((token, Some(cookie)))
}

/// Whether a posted form carries this browser's form token.
fn csrf_holds(req: &HttpRequest, posted: &str) -> bool {
    req.cookie(CSRF_COOKIE)
        .is_some_and(|cookie| accounts::constant_time_eq(cookie.value().as_bytes(), posted.as_bytes()))
}

/// A form posted without this browser's token: refused, with a page that says what to do.
fn csrf_refused(hub: &Hub) -> Page {
    message(
        hub,
        StatusCode::FORBIDDEN,
        "页面已过期",
        "表单已过期或不是从本平台提交的。请返回重新打开页面后再提交。",
    )
}

#[derive(Template)]
#[template(path = "console/message.html")]
struct MessagePage {
    frame: Frame,
    heading: &'static str,
    text: &'static str,
}

fn message(hub: &Hub, status: StatusCode, heading: &'static str, text: &'static str) -> Page {
    let frame = Frame {
        site_name: site_name(hub),
        user: None,
        csrf: String::new(),
    };
    html(status, &MessagePage { frame, heading, text }, None)
}

fn site_name(hub: &Hub) -> String {
    format!("{}人民政府", hub.areas.root().name)
}

fn html(status: StatusCode, page: &impl Template, csrf_cookie: Option<Cookie<'static>>) -> Page {
    let body = page
        .render()
        .map_err(|e| ApiError::from(Error::from(anyhow::Error::new(e))))?;
    let mut response = HttpResponse::build(status);
    response
        .content_type("text/html; charset=utf-8")
        // A console page shows one user's data: no cache keeps it.
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"));
    if let Some(cookie) = csrf_cookie {
        response.cookie(cookie);
    }
    Ok(response.body(body))
}

fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((LOCATION, to)).finish()
}

/// Why a page asks for sign-in instead of showing itself.
enum NotSignedIn {
    /// No session cookie: the sign-in page.
    Never,
    /// A session cookie the hub no longer knows (expired, ended elsewhere): the sign-in page,
    /// saying so.
    Expired,
}

/// The signed-in caller of a console page.
async fn signed_in(req: &HttpRequest, hub: &Hub) -> Result<Result<Caller, NotSignedIn>, ApiError> {
    let Some(cookie) = req.cookie(SESSION_COOKIE) else {
        return Ok(Err(NotSignedIn::Never));
    };
    match accounts::authenticate(hub, Credential::Session(cookie.value())).await {
        Ok(caller) => Ok(Ok(caller)),
        Err(Error::Unauthenticated) => Ok(Err(NotSignedIn::Expired)),
        Err(e) => Err(e.into()),
    }
}

fn to_sign_in(why: NotSignedIn) -> Page {
    match why {
        NotSignedIn::Never => Ok(see_other("/console/login")),
        // The browser drops the dead cookie, so the next visit is an ordinary sign-in.
        NotSignedIn::Expired => with_cookie(see_other("/console/login?expired=1"), &session_removal()),
    }
}

fn with_cookie(mut response: HttpResponse, cookie: &Cookie<'_>) -> Page {
    response
        .add_cookie(cookie)
        .map_err(|e| ApiError::from(Error::from(anyhow::Error::new(e))))?;
    Ok(response)
}

/// The caller of a staff page, or the answer that sends the browser elsewhere: to sign in, or
/// (signed in with a one-time password) to choose their own password first.
async fn staff(req: &HttpRequest, hub: &Hub) -> Result<Result<Caller, HttpResponse>, ApiError> {
    let caller = match signed_in(req, hub).await? {
        Ok(caller) => caller,
        Err(why) => return to_sign_in(why).map(Err),
    };
    if caller.must_change_password {
        return Ok(Err(see_other("/console/password")));
    }
    Ok(Ok(caller))
}

/// A signed-in member of staff, for a console page: a browser not signed in is sent to sign
/// in instead, one signed in with a one-time password to choose its own first.
struct Staff {
    hub: Arc<Hub>,
    caller: Caller,
}

/// A form posted by a signed-in member of staff that carries this browser's form token;
/// without the token the post is refused with a page saying so, before anything is read.
struct StaffForm<T> {
    hub: Arc<Hub>,
    caller: Caller,
    form: T,
}

/// A console form: what it carries as its form token.
trait TokenedForm {
    fn csrf(&self) -> &str;
}

/// Every console form names its token `csrf`.
macro_rules! tokened_forms {
    ($($form:ty),* $(,)?) => {
        $(impl TokenedForm for $form {
            fn csrf(&self) -> &str {
                &self.csrf
            }
        })*
    };
}

tokened_forms!(
    CsrfForm,
    ReviewForm,
    PublishForm,
    WithdrawForm,
    NewUserForm,
    admin::TargetForm,
    admin::TokenForm,
    queues::DeliveryForm,
);

/// The answer a console request gets instead of its page (a redirect, a refusal page), as the
/// error an extractor fails with.
fn elsewhere(answer: HttpResponse) -> actix_web::Error {
    actix_web::error::InternalError::from_response("answered by another page", answer).into()
}

impl actix_web::FromRequest for Staff {
    type Error = actix_web::Error;
    type Future = futures::future::LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let hub = hub(&req)?;
            match staff(&req, &hub).await? {
                Ok(caller) => Ok(Staff { hub, caller }),
                Err(answer) => Err(elsewhere(answer)),
            }
        })
    }
}

impl<T: serde::de::DeserializeOwned + TokenedForm + 'static> actix_web::FromRequest for StaffForm<T> {
    type Error = actix_web::Error;
    type Future = futures::future::LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let form = web::Form::<T>::from_request(req, payload);
        let req = req.clone();
        Box::pin(async move {
            let form = form.await?.into_inner();
            let hub = hub(&req)?;
            match staff_posting(&req, &hub, form.csrf()).await? {
                Ok(caller) => Ok(StaffForm { hub, caller, form }),
                Err(answer) => Err(elsewhere(answer)),
            }
        })
    }
}

/// `staff`, for a posted form: it must carry this browser's form token.
async fn staff_posting(
    req: &HttpRequest,
    hub: &Hub,
    csrf: &str,
) -> Result<Result<Caller, HttpResponse>, ApiError> {
    if !csrf_holds(req, csrf) {
        return csrf_refused(hub).map(Err);
    }
    staff(req, hub).await
}

/// A refusal's text and the field it names (marked in the form); none: no text, no field.
fn problem_parts(problem: Option<(String, String)>) -> (Option<String>, String) {
    problem.map_or((None, String::new()), |(text, field)| (Some(text), field))
}

/// A signed-in page: the frame (with the form token, and the cookie carrying it when new)
/// made here, the page around it by `page`.
fn staff_page<T: Template>(
    req: &HttpRequest,
    hub: &Hub,
    caller: &Caller,
    status: StatusCode,
    page: impl FnOnce(Frame) -> T,
) -> Page {
    let (csrf, cookie) = csrf_token(req)?;
    html(status, &page(frame_for(hub, caller, csrf)), cookie)
}

fn frame_for(hub: &Hub, caller: &Caller, csrf: String) -> Frame {
    Frame {
        site_name: site_name(hub),
        user: Some(SignedIn {
            display: caller.username.clone(),
            role: role_label(caller.role),
            audit: matches!(caller.role, Role::Admin | Role::Reviewer),
            admin: caller.role == Role::Admin,
        }),
        csrf,
    }
}

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage {
    frame: Frame,
    username: String,
    notice: Option<&'static str>,
    problem: Option<String>,
}

#[derive(Deserialize)]
struct LoginQuery {
    expired: Option<String>,
}

async fn login_page(req: HttpRequest, query: web::Query<LoginQuery>) -> Page {
    let hub = hub(&req)?;
    if let Ok(caller) = signed_in(&req, &hub).await? {
        return Ok(see_other(if caller.must_change_password {
            "/console/password"
        } else {
            "/console"
        }));
    }
    let (csrf, cookie) = csrf_token(&req)?;
    let page = LoginPage {
        frame: Frame {
            site_name: site_name(&hub),
            user: None,
            csrf,
        },
        username: String::new(),
        notice: query.expired.is_some().then_some("登录已过期，请重新登录。"),
        problem: None,
    };
    html(StatusCode::OK, &page, cookie)
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

async fn login(req: HttpRequest, form: web::Form<LoginForm>) -> Page {
    let hub = hub(&req)?;
    if !csrf_holds(&req, &form.csrf) {
        return csrf_refused(&hub);
    }
    let client = client_address(&req, &hub.settings.server.client_address_header);
    let attempt = LoginAttempt {
        username: form.username.trim(),
        password: &form.password,
        client: &client,
    };
    match accounts::login(&hub, attempt).await {
        Ok((secret, caller)) => {
            let to = if caller.must_change_password {
                "/console/password"
            } else {
                "/console"
            };
            with_cookie(see_other(to), &session_cookie(&req, &hub, secret))
        }
        Err(e @ (Error::Unauthenticated | Error::RateLimited { .. } | Error::Validation { .. })) => {
            let refusal = ApiError::from(e);
            let problem = match refusal.status {
                StatusCode::UNAUTHORIZED => "用户名或密码错误，或账号已停用。".to_owned(),
                _ => message_zh(refusal.code, refusal.field.as_deref()),
            };
            let (csrf, cookie) = csrf_token(&req)?;
            let page = LoginPage {
                frame: Frame {
                    site_name: site_name(&hub),
                    user: None,
                    csrf,
                },
                username: form.username.trim().to_owned(),
                notice: None,
                problem: Some(problem),
            };
            html(refusal.status, &page, cookie)
        }
        Err(e) => Err(e.into()),
    }
}

/// A form that posts nothing but its token: a button.
#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(req: HttpRequest, form: web::Form<CsrfForm>) -> Page {
    let hub = hub(&req)?;
    if !csrf_holds(&req, &form.csrf) {
        return csrf_refused(&hub);
    }
    if let Some(cookie) = req.cookie(SESSION_COOKIE) {
        accounts::logout(&hub, cookie.value()).await?;
    }
    with_cookie(see_other("/console/login"), &session_removal())
}

#[derive(Template)]
#[template(path = "console/password.html")]
struct PasswordPage {
    frame: Frame,
    first_sign_in: bool,
    problem: Option<String>,
}

async fn password_page(req: HttpRequest) -> Page {
    let hub = hub(&req)?;
    let caller = match signed_in(&req, &hub).await? {
        Ok(caller) => caller,
        Err(why) => return to_sign_in(why),
    };
    staff_page(&req, &hub, &caller, StatusCode::OK, |frame| PasswordPage {
        frame,
        first_sign_in: caller.must_change_password,
        problem: None,
    })
}

#[derive(Deserialize)]
struct PasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    confirm_password: String,
}

async fn change_password(req: HttpRequest, form: web::Form<PasswordForm>) -> Page {
    let hub = hub(&req)?;
    if !csrf_holds(&req, &form.csrf) {
        return csrf_refused(&hub);
    }
    let caller = match signed_in(&req, &hub).await? {
        Ok(caller) => caller,
        Err(why) => return to_sign_in(why),
    };
    let refused = |problem: String| -> Page {
        staff_page(&req, &hub, &caller, StatusCode::UNPROCESSABLE_ENTITY, |frame| {
            PasswordPage {
                frame,
                first_sign_in: caller.must_change_password,
                problem: Some(problem),
            }
        })
    };
    if form.new_password != form.confirm_password {
        return refused("两次输入的新密码不一致。".to_owned());
    }
    let change = PasswordChange {
        current_password: form.current_password.clone(),
        new_password: form.new_password.clone(),
    };
    let session = req.cookie(SESSION_COOKIE).map(|c| c.value().to_owned());
    match accounts::change_password(&hub, &caller, &change, session.as_deref()).await {
        Ok(_) => Ok(see_other("/console?changed=1")),
        Err(e) => refused(refusal(e)?.1),
    }
}

/// One row of the 工作台's list.
struct Row {
    id: String,
    title: String,
    state: &'static str,
    disclosure: &'static str,
    updated: String,
    emergency: bool,
}

#[derive(Template)]
#[template(path = "console/home.html")]
struct HomePage {
    frame: Frame,
    notice: Option<&'static str>,
    problem: Option<String>,
    may_author: bool,
    /// Interpretations (解读) of published policies still to be published, most urgent first.
    due: Vec<DueRow>,
    q: String,
    states: Vec<Choice>,
    total: u64,
    rows: Vec<Row>,
    /// The page shown (from 1) and how many there are.
    page: u64,
    pages: u64,
    /// Links to the pages before and after, with the same search.
    previous: Option<String>,
    next: Option<String>,
    /// Reviewers: the items waiting for review, a click away.
    may_review: bool,
}

/// An interpretation on the deadline board.
struct DueRow {
    id: String,
    title: String,
    policy: String,
    deadline: String,
    status: &'static str,
    status_class: &'static str,
}

#[derive(Deserialize)]
struct HomeQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    state: String,
    changed: Option<String>,
    page: Option<String>,
}

/// Items a 工作台 page lists, most recently changed first.
const HOME_ROWS: u64 = 50;

async fn home(req: HttpRequest, Staff { hub, caller }: Staff, query: web::Query<HomeQuery>) -> Page {
    let query = query.into_inner();
    let state = ItemState::parse(&query.state);
    let states = choices(ItemState::ALL.iter().copied(), &query.state, |option| {
        (option.as_str().to_owned(), state_label(*option).to_owned())
    });
    let page = match query.page.as_deref().map(str::trim) {
        None | Some("") => Ok(1),
        Some(raw) => match raw.parse::<u64>() {
            Ok(page) if page >= 1 => Ok(page),
            _ => Err(Error::validation("page", "must be a page number from 1")),
        },
    };
    let (page, listed) = match page {
        Ok(page) => {
            let filter = ItemFilter {
                state,
                area: None,
                disclosure: None,
                kind: None,
                emergency: None,
                q: (!query.q.trim().is_empty()).then(|| query.q.clone()),
                limit: Some(HOME_ROWS),
                offset: Some((page - 1) * HOME_ROWS),
            };
            (page, workflow::list_items(&hub, &caller, filter).await)
        }
        Err(e) => (1, Err(e)),
    };
    let (total, rows, problem): (u64, Vec<Row>, _) = match listed {
        Ok(page) => {
            let rows = page
                .items
                .into_iter()
                .map(|item| Row {
                    id: item.id,
                    title: item.title,
                    state: state_label(item.state),
                    disclosure: disclosure_label(item.disclosure),
                    updated: shown_time(item.updated_at),
                    emergency: item.emergency,
                })
                .collect();
            (page.total, rows, None)
        }
        Err(e) => (0, Vec::new(), Some(refusal(e)?.1)),
    };
    let due = workflow::interpretations_due(&hub, &caller)
        .await?
        .into_iter()
        .map(|due| {
            let (status, status_class) = match due.status {
                DueStatus::Overdue => ("已逾期", "overdue"),
                DueStatus::DueSoon => ("即将到期", "due-soon"),
                DueStatus::Pending => ("未到期", "pending"),
            };
            DueRow {
                id: due.interpretation_id,
                title: due.title,
                policy: due.policy_title,
                deadline: due.deadline.format("%Y-%m-%d").to_string(),
                status,
                status_class,
            }
        })
        .collect();
    let pages = total.div_ceil(HOME_ROWS).max(1);
    let previous = (page > 1).then(|| page_link(&query.q, &query.state, page - 1));
    let next = (page < pages).then(|| page_link(&query.q, &query.state, page + 1));
    staff_page(&req, &hub, &caller, StatusCode::OK, |frame| HomePage {
        frame,
        notice: query.changed.is_some().then_some("密码已修改。"),
        problem,
        may_author: caller.role.may_author(),
        due,
        q: query.q,
        states,
        total,
        rows,
        page,
        pages,
        previous,
        next,
        may_review: caller.role.may_review(),
    })
}

/// The 工作台 at `page`, with the same search and state.
fn page_link(q: &str, state: &str, page: u64) -> String {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("q", q)
        .append_pair("state", state)
        .append_pair("page", &page.to_string())
        .finish();
    format!("/console?{query}")
}

/// A time as staff read it: Beijing time, to the minute.
fn shown_time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.with_timezone(&china_offset())
        .format("%Y-%m-%d %H:%M")
        .to_string()
}

#[derive(Template)]
#[template(path = "console/item.html")]
struct ItemPage {
    frame: Frame,
    id: String,
    version: i32,
    title: String,
    facts: Vec<(&'static str, String)>,
    review_comment: Option<String>,
    body: String,
    /// `(sha256, file name)`.
    attachments: Vec<(String, String)>,
    /// What changed since the version the public has (a correction) or the one before.
    changes: Option<versions::Comparison>,
    may_review: bool,
    may_submit: bool,
    may_publish: bool,
    may_withdraw: bool,
    deliveries: Vec<DeliveryRow>,
    /// Each channel's targets, coloured by the state of their delivery.
    matrix: Vec<charts::ChannelCells>,
    /// Of the villages its loudspeakers and notice boards stand in: how far it got in each.
    coverage: Vec<VillageReach>,
    /// Deliveries still under way: the page reloads itself until they settle.
    under_way: bool,
    notice: Option<&'static str>,
    problem: Option<String>,
}

/// One delivery of the status list: a target of a channel, coloured by state.
struct DeliveryRow {
    id: String,
    /// Failed or unconfirmed, and the caller may send it again.
    may_retry: bool,
    channel: &'static str,
    target: String,
    kind: &'static str,
    state: &'static str,
    /// The state's wire name, the row's colour class.
    state_class: &'static str,
    attempts: i32,
    error: String,
}

/// How far an item got in one village: its devices, how many played or showed it.
struct VillageReach {
    area: String,
    reach: &'static str,
    reach_class: &'static str,
    devices: i64,
    reached: i64,
    /// The devices not reached, by name.
    silent: String,
}

/// A delivery not yet settled: waiting, being sent, or sent and awaiting the channel's report.
fn under_way(state: DeliveryState) -> bool {
    matches!(
        state,
        DeliveryState::Pending | DeliveryState::Sending | DeliveryState::Retrying | DeliveryState::Accepted
    )
}

/// An item the caller may not see, or none, said as a page: not found, or (as the API answers)
/// found but outside the caller's area.
fn not_shown(hub: &Hub, error: Error) -> Page {
    match error {
        Error::NotFound(_) => message(hub, StatusCode::NOT_FOUND, "信息不存在", "没有找到这条信息。"),
        Error::Forbidden(_) => message(
            hub,
            StatusCode::FORBIDDEN,
            "无权查看",
            "这条信息不在您的管辖范围内。",
        ),
        e => Err(e.into()),
    }
}

/// A page reached after a form: what the form did, for the page to say.
#[derive(Deserialize)]
struct DoneQuery {
    done: Option<String>,
}

/// What a form did, as the page it leads to then says it.
fn done_notice(done: Option<&str>) -> Option<&'static str> {
    match done? {
        "approved" => Some("已审核通过。"),
        "rejected" => Some("已退回修改，审核意见已告知发布员。"),
        "published" => Some("已发布，正在向各渠道发送。"),
        "created" => Some("草稿已保存。核对无误后请提交审核。"),
        "submitted" => Some("已提交审核。"),
        "retried" => Some("已重新发送。"),
        "cancelled" => Some("已取消发送。"),
        "reconciling" => Some("已请渠道核实，结果稍后显示。"),
        "added" => Some("发布目标已添加。"),
        "withdrawn" => Some("已撤回，正在从各渠道撤下。"),
        _ => None,
    }
}

async fn item_page(
    req: HttpRequest,
    Staff { hub, caller }: Staff,
    id: web::Path<String>,
    query: web::Query<DoneQuery>,
) -> Page {
    let notice = done_notice(query.done.as_deref());
    show_item(&req, &hub, &caller, &id, StatusCode::OK, notice, None).await
}

/// The item page of `id` as `caller` may see it; an item outside their area is not found.
async fn show_item(
    req: &HttpRequest,
    hub: &Hub,
    caller: &Caller,
    id: &str,
    status: StatusCode,
    notice: Option<&'static str>,
    problem: Option<String>,
) -> Page {
    let item = match workflow::get_item(hub, caller, id).await {
        Ok(item) => item,
        Err(e) => return not_shown(hub, e),
    };
    let content = &item.content;
    let mut facts = vec![
        ("索引号", content.index_no.clone()),
        ("发文字号", content.doc_no.clone().unwrap_or_default()),
        ("成文日期", content.written_date.format("%Y-%m-%d").to_string()),
        ("发文机关", content.issuers.join("、")),
        ("主题分类", content.topic.join("\\")),
        ("公开属性", disclosure_label(content.disclosure).to_owned()),
        ("状态", state_label(item.state).to_owned()),
        ("版本", format!("第 {} 版", item.current_version)),
        ("更新时间", shown_time(item.updated_at)),
    ];
    if let Some(validity) = content.validity {
        facts.push(("有效性", validity.label_zh().to_owned()));
    }
    if let Some(reason) = &content.legal_reason {
        facts.push(("不公开理由", reason.clone()));
    }
    let filter = delivery::DeliveryFilter {
        limit: Some(charts::MATRIX_CELLS as u64),
        ..delivery::DeliveryFilter::default()
    };
    let report = delivery::item_deliveries(hub, caller, id, filter).await?;
    let matrix = charts::matrix(&report);
    let coverage = report
        .coverage
        .into_iter()
        .map(|area| VillageReach {
            reach: match area.reach {
                Reach::Reached => "全部收到",
                Reach::Partly => "部分收到",
                Reach::Silent => "均未收到",
            },
            reach_class: match area.reach {
                Reach::Reached => "reached",
                Reach::Partly => "partly",
                Reach::Silent => "silent",
            },
            area: area.area_name,
            devices: area.devices,
            reached: area.reached,
            silent: area
                .silent
                .into_iter()
                .map(|device| device.name)
                .collect::<Vec<_>>()
                .join("、"),
        })
        .collect();
    let deliveries = report.deliveries;
    let under_way = deliveries.iter().any(|d| under_way(d.state));
    let may_retry = matches!(caller.role, Role::Admin | Role::Publisher);
    let deliveries = deliveries
        .into_iter()
        .map(|d| DeliveryRow {
            may_retry: may_retry && matches!(d.state, DeliveryState::Failed | DeliveryState::Unconfirmed),
            id: d.id,
            channel: d.channel.label_zh(),
            target: d.target_name,
            kind: match d.kind {
                DeliveryKind::Publish => "发布",
                DeliveryKind::Withdraw => "撤回",
            },
            state: d.state.label_zh(),
            state_class: d.state.as_str(),
            attempts: d.attempts,
            error: d.last_error.unwrap_or_default(),
        })
        .collect();
    let changes = match versions::baseline(item.published_version, item.current_version) {
        Some(from) => Some(versions::compare(hub, caller, id, from, item.current_version).await?),
        None => None,
    };
    let in_review = item.state == ItemState::InReview
        || item.correcting == Some(crate::domain::item::Correcting::InReview);
    staff_page(req, hub, caller, status, |frame| ItemPage {
        frame,
        id: item.id.clone(),
        version: item.current_version,
        title: content.title.clone(),
        facts,
        review_comment: item.review_comment.clone(),
        body: styles_as_classes(&sanitise_html(&content.body)),
        attachments: content
            .attachments
            .iter()
            .map(|a| (a.sha256.clone(), a.filename.clone()))
            .collect(),
        changes,
        may_review: in_review && caller.role.may_review() && item.author_id != caller.id,
        may_submit: item.state == ItemState::Draft && caller.role.may_author(),
        may_publish: item.state == ItemState::Approved && caller.role.may_publish(),
        may_withdraw: item.state == ItemState::Published && caller.role.may_withdraw(),
        deliveries,
        matrix,
        coverage,
        under_way,
        notice,
        problem,
    })
}

#[derive(Deserialize)]
struct ReviewForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    version: i32,
    /// "yes" when the 保密审查 box is ticked; browsers send nothing for an unticked box.
    confidentiality_checked: Option<String>,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    decision: String,
}

/// 审核通过 records the 保密审查 and approves the version the reviewer read; 退回修改 sends it
/// back with the comment. Both through the API's own review steps.
async fn review(
    req: HttpRequest,
    id: web::Path<String>,
    StaffForm { hub, caller, form }: StaffForm<ReviewForm>,
) -> Page {
    let decided = match form.decision.as_str() {
        "approve" => approve(&hub, &caller, &id, form).await.map(|()| "approved"),
        "reject" => workflow::reject(
            &hub,
            &caller,
            &id,
            workflow::RejectInput {
                version: form.version,
                comment: form.comment,
            },
        )
        .await
        .map(|_| "rejected"),
        _ => Err(Error::validation("decision", "choose 审核通过 or 退回修改")),
    };
    back_to_item(&req, &hub, &caller, &id, decided).await
}

/// A refusal a page says in Chinese: its status, the message, and the field it is about (the
/// form's name for it, without a list position); `Err` for anything that is no refusal.
fn refusal(error: Error) -> Result<(StatusCode, String, String), Error> {
    match error {
        e @ (Error::Validation { .. }
        | Error::Refused { .. }
        | Error::Conflict { .. }
        | Error::Forbidden(_)) => {
            let refusal = ApiError::from(e);
            let field = refusal.field.as_deref().unwrap_or_default();
            Ok((
                refusal.status,
                message_zh(refusal.code, refusal.field.as_deref()),
                field.split(['[', '.']).next().unwrap_or(field).to_owned(),
            ))
        }
        e => Err(e),
    }
}

/// Where an action on an item leads: back to the item, saying what was `done`; refused, the
/// item page with the refusal.
async fn back_to_item(
    req: &HttpRequest,
    hub: &Hub,
    caller: &Caller,
    id: &str,
    outcome: Result<&str, Error>,
) -> Page {
    match outcome {
        Ok(done) => Ok(see_other(&format!("/console/items/{id}?done={done}"))),
        Err(e) => item_refusal(req, hub, caller, id, e).await,
    }
}

/// A workflow step's refusal, said on the item's page; any other error is an error.
async fn item_refusal(req: &HttpRequest, hub: &Hub, caller: &Caller, id: &str, error: Error) -> Page {
    let (status, problem, _) = refusal(error)?;
    show_item(req, hub, caller, id, status, None, Some(problem)).await
}

async fn approve(hub: &Hub, caller: &Caller, id: &str, form: ReviewForm) -> Result<(), Error> {
    let check = workflow::ConfidentialityCheckInput {
        version: form.version,
        confirmed: form.confidentiality_checked.as_deref() == Some("yes"),
        comment: String::new(),
    };
    workflow::confidentiality_check(hub, caller, id, check).await?;
    let approval = workflow::ApproveInput {
        version: form.version,
        comment: form.comment,
    };
    workflow::approve(hub, caller, id, approval).await?;
    Ok(())
}

/// The targets a publication reaches, by channel, as the confirmation names them.
struct ReachedChannel {
    channel: &'static str,
    count: usize,
    /// The channel's targets by area: the area's name and its targets' names.
    areas: Vec<(String, Vec<String>)>,
}

#[derive(Template)]
#[template(path = "console/publish.html")]
struct PublishPage {
    frame: Frame,
    id: String,
    title: String,
    channels: Vec<ReachedChannel>,
    /// Names this confirmation: posted twice (a double click, a resent form), it publishes once.
    request: String,
}

/// Before publishing, the page names every target it will reach.
async fn publish_page(req: HttpRequest, Staff { hub, caller }: Staff, id: web::Path<String>) -> Page {
    let item = match workflow::get_item(&hub, &caller, &id).await {
        Ok(item) => item,
        // The item's page says which (信息不存在 / 无权查看).
        Err(Error::NotFound(_) | Error::Forbidden(_)) => {
            return Ok(see_other(&format!("/console/items/{}", id.as_str())));
        }
        Err(e) => return Err(e.into()),
    };
    let targets = workflow::preview_targets(&hub, &caller, &id, PublishInput::default()).await?;
    let mut channels: Vec<ReachedChannel> = Vec::new();
    for target in targets {
        let channel = target.channel.label_zh();
        let area = area_name(&hub, &target.area_code);
        let reached = match channels.iter().position(|c| c.channel == channel) {
            Some(at) => &mut channels[at],
            None => {
                channels.push(ReachedChannel {
                    channel,
                    count: 0,
                    areas: Vec::new(),
                });
                let last = channels.len() - 1;
                &mut channels[last]
            }
        };
        reached.count += 1;
        match reached.areas.iter_mut().find(|(name, _)| *name == area) {
            Some((_, names)) => names.push(target.name),
            None => reached.areas.push((area, vec![target.name])),
        }
    }
    let request = accounts::random_secret(16)?;
    staff_page(&req, &hub, &caller, StatusCode::OK, |frame| PublishPage {
        frame,
        id: item.id,
        title: item.content.title,
        channels,
        request,
    })
}

#[derive(Deserialize)]
struct PublishForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    request: String,
}

async fn publish(
    req: HttpRequest,
    id: web::Path<String>,
    StaffForm { hub, caller, form }: StaffForm<PublishForm>,
) -> Page {
    let key = IdempotencyKey::parse(&format!("console-publish-{}", form.request))?;
    let published = workflow::publish(&hub, &caller, &id, &key, PublishInput::default()).await;
    back_to_item(&req, &hub, &caller, &id, published.map(|_| "published")).await
}

async fn submit(
    req: HttpRequest,
    id: web::Path<String>,
    StaffForm { hub, caller, .. }: StaffForm<CsrfForm>,
) -> Page {
    let submitted = workflow::submit(&hub, &caller, &id).await;
    back_to_item(&req, &hub, &caller, &id, submitted.map(|_| "submitted")).await
}

/// A choice in a select or a radio group.
struct Choice {
    value: String,
    label: String,
    selected: bool,
}

fn choices<T>(
    items: impl IntoIterator<Item = T>,
    chosen: &str,
    value_label: impl Fn(&T) -> (String, String),
) -> Vec<Choice> {
    items
        .into_iter()
        .map(|item| {
            let (value, label) = value_label(&item);
            Choice {
                selected: value == chosen,
                value,
                label,
            }
        })
        .collect()
}

/// A value's name as the API takes it (serde's), for a form's `value`.
fn wire_name(value: &impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => String::new(),
    }
}

/// The form's value for a field the API takes by its serde name.
fn by_wire_name<T: serde::de::DeserializeOwned>(field: &str, raw: &str) -> Result<T, Error> {
    serde_json::from_value(serde_json::Value::String(raw.to_owned()))
        .map_err(|_| Error::validation(field, format!("unknown value {raw:?}")))
}

/// A form's text, trimmed; empty: not given.
fn optional(raw: &str) -> Option<String> {
    let trimmed = raw.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

/// An area's name, or its code when the reference data no longer has it.
fn area_name(hub: &Hub, code: &str) -> String {
    hub.areas
        .iter()
        .find(|area| area.code.as_str() == code)
        .map_or_else(|| code.to_owned(), |area| area.name.clone())
}

/// The areas within the caller's, the one `chosen` (else the caller's own) selected.
fn area_choices(hub: &Hub, caller: &Caller, chosen: &str) -> Vec<Choice> {
    let chosen = if chosen.is_empty() {
        caller.area.as_str()
    } else {
        chosen
    };
    choices(
        hub.areas.iter().filter(|area| area.code.is_within(&caller.area)),
        chosen,
        |area| (area.code.as_str().to_owned(), area.name.clone()),
    )
}

#[derive(Deserialize)]
struct WithdrawForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

/// 撤回: the item comes down from every channel it reached, with the reason the 清理结果 shows.
async fn withdraw(
    req: HttpRequest,
    id: web::Path<String>,
    StaffForm { hub, caller, form }: StaffForm<WithdrawForm>,
) -> Page {
    let input = workflow::WithdrawInput { reason: form.reason };
    let withdrawn = workflow::withdraw(&hub, &caller, &id, input).await;
    back_to_item(&req, &hub, &caller, &id, withdrawn.map(|_| "withdrawn")).await
}

/// What an audit entry's action says, in the words staff use; an action not listed shows its code.
fn action_label(action: &str) -> &str {
    const LABELS: &[(&str, &str)] = &[
        ("item.create", "新建信息"),
        ("item.edit", "修改信息"),
        ("item.submit", "提交审核"),
        ("item.confidentiality_check", "保密审查"),
        ("item.approve", "审核通过"),
        ("item.reject", "退回修改"),
        ("item.publish", "发布"),
        ("item.withdraw", "撤回"),
        ("item.expire", "到期失效"),
        ("item.correction_draft", "起草更正"),
        ("item.correct", "更正"),
        ("user.create", "新建用户"),
        ("user.disable", "停用用户"),
        ("user.password_change", "修改密码"),
        ("user.password_reset", "重置密码"),
        ("user.rescope", "调整用户区域"),
        ("user.unlock", "解除登录锁定"),
        ("login.failure", "登录失败"),
        ("token.create", "创建接口令牌"),
        ("token.revoke", "吊销接口令牌"),
        ("target.create", "新建发布目标"),
        ("delivery.retry", "重新发送"),
        ("delivery.cancel", "取消发送"),
        ("delivery.reconcile", "向渠道核实"),
        ("device.add", "登记设备"),
        ("device.credential", "签发设备凭据"),
        ("device.key", "更换签名密钥"),
        ("device.revoke", "停用设备"),
        ("organ.create", "新增发文机关"),
        ("organ.update", "修改发文机关"),
        ("organ.retire", "撤销发文机关"),
        ("organ.reinstate", "恢复发文机关"),
    ];
    LABELS
        .iter()
        .find(|(code, _)| *code == action)
        .map_or(action, |(_, label)| label)
}

/// Audit entries a page shows.
const AUDIT_ROWS: u64 = 100;

/// One entry of the audit log as the page lists it.
struct AuditRow {
    seq: i64,
    at: String,
    actor: String,
    action: String,
    target: String,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPage {
    frame: Frame,
    rows: Vec<AuditRow>,
    /// The page before this one (older entries), if any.
    older: Option<i64>,
    may_verify: bool,
    /// After 校验: the outcome, and whether the chain held.
    verdict: Option<(bool, String)>,
}

#[derive(Deserialize)]
struct AuditQuery {
    /// Show the entries after this sequence number; none: the newest.
    after: Option<i64>,
}

/// The audit log, for those the API lets read it (administrators and reviewers), within
/// their area; administrators may verify the whole chain.
async fn audit_page(req: HttpRequest, Staff { hub, caller }: Staff, query: web::Query<AuditQuery>) -> Page {
    show_audit(&req, &hub, &caller, query.after, None).await
}

async fn show_audit(
    req: &HttpRequest,
    hub: &Hub,
    caller: &Caller,
    after: Option<i64>,
    verdict: Option<(bool, String)>,
) -> Page {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
    if !matches!(caller.role, Role::Admin | Role::Reviewer) {
        return message(
            hub,
            StatusCode::FORBIDDEN,
            "无权查看",
            "只有管理员和审核员可以查看审计日志。",
        );
    }
    // Readers of the whole tree also see entries about no area, as the API shows them.
    let scope = (caller.area != hub.areas.root().code).then_some(caller.area.as_str());
    let after = match after {
        Some(after) => after.max(0),
        None => {
            let newest = crate::store::entities::audit_entry::Entity::find()
                .order_by_desc(crate::store::entities::audit_entry::Column::Seq)
                .one(&hub.db)
                .await
                .map_err(Error::from)?
                .map_or(0, |entry| entry.seq);
            (newest - AUDIT_ROWS as i64).max(0)
        }
    };
    let entries = crate::audit::list(&hub.db, scope, after, AUDIT_ROWS)
        .await
        .map_err(Error::from)?;
    // Actors are user ids (or a system account's name): shown by user name where one is known.
    let names: std::collections::HashMap<String, String> = crate::store::entities::user::Entity::find()
        .filter(
            crate::store::entities::user::Column::Id.is_in(entries.iter().map(|entry| entry.actor.clone())),
        )
        .all(&hub.db)
        .await
        .map_err(Error::from)?
        .into_iter()
        .map(|user| (user.id, user.username))
        .collect();
    let rows = entries
        .into_iter()
        .rev()
        .map(|entry| AuditRow {
            seq: entry.seq,
            at: shown_time(entry.at),
            actor: names.get(&entry.actor).cloned().unwrap_or(entry.actor),
            action: action_label(&entry.action).to_owned(),
            target: format!("{} {}", entry.target_type, entry.target_id),
        })
        .collect();
    staff_page(req, hub, caller, StatusCode::OK, |frame| AuditPage {
        frame,
        rows,
        older: (after > 0).then(|| (after - AUDIT_ROWS as i64).max(0)),
        may_verify: caller.role == Role::Admin,
        verdict,
    })
}

/// 校验审计链: re-computes every entry's hash and link, as `herald audit verify` does.
async fn verify_audit(req: HttpRequest, StaffForm { hub, caller, .. }: StaffForm<CsrfForm>) -> Page {
    if caller.role != Role::Admin {
        return message(
            &hub,
            StatusCode::FORBIDDEN,
            "无权校验",
            "只有管理员可以校验审计链。",
        );
    }
    let checked = crate::audit::verify(&hub.db).await.map_err(Error::from)?;
    let verdict = match checked.first_bad {
        None => (
            true,
            format!(
                "审计链完整：已校验全部 {} 条记录，未发现改动。",
                checked.rows_checked
            ),
        ),
        Some(bad) => (
            false,
            format!(
                "审计链在第 {} 条记录处断开：{}。请立即报告系统管理员。",
                bad.seq, bad.reason
            ),
        ),
    };
    show_audit(&req, &hub, &caller, None, Some(verdict)).await
}

/// One account of the users page.
struct UserRow {
    id: String,
    username: String,
    display_name: String,
    role: &'static str,
    area: String,
    disabled: bool,
}

/// What to fill in for a new account, kept when it is refused.
#[derive(Deserialize, Default)]
#[serde(default)]
struct NewUserForm {
    csrf: String,
    username: String,
    display_name: String,
    role: String,
    area_code: String,
}

#[derive(Template)]
#[template(path = "console/users.html")]
struct UsersPage {
    frame: Frame,
    rows: Vec<UserRow>,
    form: NewUserForm,
    roles: Vec<Choice>,
    areas: Vec<Choice>,
    /// A one-time password just made, shown this once: (user name, password).
    issued: Option<(String, String)>,
    problem: Option<String>,
    invalid: String,
}

/// The page anyone but an administrator gets for the users page and its forms.
fn not_admin(hub: &Hub) -> Page {
    message(
        hub,
        StatusCode::FORBIDDEN,
        "无权管理用户",
        "只有管理员可以管理用户。",
    )
}

/// The users page as an administrator sees it; anyone else is refused.
async fn show_users(
    req: &HttpRequest,
    hub: &Hub,
    caller: &Caller,
    status: StatusCode,
    form: NewUserForm,
    issued: Option<(String, String)>,
    problem: Option<(String, String)>,
) -> Page {
    if caller.role != Role::Admin {
        return not_admin(hub);
    }
    let rows = accounts::list_users(hub, Some(&caller.area))
        .await?
        .into_iter()
        .map(|user| UserRow {
            area: area_name(hub, &user.area_code),
            id: user.id,
            username: user.username,
            display_name: user.display_name,
            role: role_label(user.role),
            disabled: user.disabled,
        })
        .collect();
    let roles = choices(
        [
            Role::Publisher,
            Role::Reviewer,
            Role::VillageOperator,
            Role::Admin,
        ],
        if form.role.is_empty() {
            "publisher"
        } else {
            &form.role
        },
        |role| (role.as_str().to_owned(), role_label(*role).to_owned()),
    );
    let areas = area_choices(hub, caller, &form.area_code);
    let (problem, invalid) = problem_parts(problem);
    staff_page(req, hub, caller, status, |frame| UsersPage {
        frame,
        rows,
        form,
        roles,
        areas,
        issued,
        problem,
        invalid,
    })
}

async fn users_page(req: HttpRequest, Staff { hub, caller }: Staff) -> Page {
    show_users(
        &req,
        &hub,
        &caller,
        StatusCode::OK,
        NewUserForm::default(),
        None,
        None,
    )
    .await
}

/// 新建用户: the account gets a one-time password, shown once, to be changed at first sign-in.
async fn create_user(req: HttpRequest, StaffForm { hub, caller, form }: StaffForm<NewUserForm>) -> Page {
    if caller.role != Role::Admin {
        return not_admin(&hub);
    }
    let created = match by_wire_name::<Role>("role", &form.role) {
        Ok(role) => {
            let new = accounts::NewUser {
                username: form.username.trim().to_owned(),
                display_name: form.display_name.trim().to_owned(),
                role,
                area_code: form.area_code.clone(),
                password: None,
            };
            accounts::create_user(&hub, &caller.id, Some(&caller.area), new).await
        }
        Err(e) => Err(e),
    };
    match created {
        Ok((user, password)) => {
            let issued = password.map(|password| (user.username, password));
            show_users(
                &req,
                &hub,
                &caller,
                StatusCode::OK,
                NewUserForm::default(),
                issued,
                None,
            )
            .await
        }
        Err(e) => {
            let (status, problem, field) = refusal(e)?;
            show_users(&req, &hub, &caller, status, form, None, Some((problem, field))).await
        }
    }
}

/// 重置密码: a new one-time password, shown once; the user's sessions end.
async fn reset_password(req: HttpRequest, posted: StaffForm<CsrfForm>, id: web::Path<String>) -> Page {
    change_user(&req, posted, &id, UserChange::ResetPassword).await
}

/// 停用 and 解锁: an account of the administrator's area switched off, or its sign-in delays
/// (after wrong passwords) lifted.
async fn disable_user(req: HttpRequest, posted: StaffForm<CsrfForm>, id: web::Path<String>) -> Page {
    change_user(&req, posted, &id, UserChange::Disable).await
}

async fn unlock_user(req: HttpRequest, posted: StaffForm<CsrfForm>, id: web::Path<String>) -> Page {
    change_user(&req, posted, &id, UserChange::Unlock).await
}

enum UserChange {
    Disable,
    Unlock,
    ResetPassword,
}

async fn change_user(
    req: &HttpRequest,
    StaffForm { hub, caller, .. }: StaffForm<CsrfForm>,
    id: &str,
    change: UserChange,
) -> Page {
    if caller.role != Role::Admin {
        return not_admin(&hub);
    }
    let scope = Some(&caller.area);
    // What a reset issues: the user's name and the one-time password, shown once.
    let changed = match change {
        UserChange::Disable => accounts::disable_user(&hub, &caller.id, scope, id)
            .await
            .map(|_| None),
        UserChange::Unlock => accounts::unlock_user(&hub, &caller.id, scope, id)
            .await
            .map(|_| None),
        UserChange::ResetPassword => accounts::reset_password(&hub, &caller.id, scope, id)
            .await
            .map(|(user, password)| Some((user.username, password))),
    };
    let (status, issued, problem) = match changed {
        Ok(issued) => (StatusCode::OK, issued, None),
        Err(e) => {
            let (status, problem, _) = refusal(e)?;
            (status, None, Some((problem, String::new())))
        }
    };
    show_users(
        req,
        &hub,
        &caller,
        status,
        NewUserForm::default(),
        issued,
        problem,
    )
    .await
}
