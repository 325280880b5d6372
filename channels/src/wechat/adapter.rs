//! The WeChat official-account adapter: an item becomes one article, published with
//! `draft/add` → `freepublish/submit` (wechat-api.md §A.4–A.5). The delivery is `accepted` with
//! the `publish_id`; the outcome comes from the `PUBLISHJOBFINISH` event on the callback, or from
//! `freepublish/get` when none arrives in time. A draft once made is kept in the checkpoint, so a
//! retry never makes a second one, and a submit whose answer was lost is never repeated.
//! Withdrawal deletes the published article.

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{
    api::{self, API_BASE, Account, ApiError, Remedy},
    crypto::{self, AesKey},
    events::{self, Finished, MassSendFinished, PublishFinished},
    tokens::{AccessTokens, TokenError},
};
use crate::{
    CallbackError, CallbackReply, CallbackRequest, Callbacks, Channel, ChannelKind, ChannelReceipt,
    CorrectionStyle, Correlation, DeliveryOutcome, Dispatch, Found, Permanence, PublishedItem, ReceiptStatus,
    RenderError, Rendition, TargetError, TargetRef, Upkeep, Verified, WithdrawOutcome,
    portal::ATTACHMENT_PATH,
};

/// The article limits (§A.4, §A.8), in characters.
pub const MAX_TITLE: usize = 32;
pub const MAX_AUTHOR: usize = 16;
pub const MAX_DIGEST: usize = 128;
pub const MAX_CONTENT_CHARS: usize = 20_000;
pub const MAX_CONTENT_BYTES: usize = 1024 * 1024;
pub const MAX_IMAGE_BYTES: u64 = 1024 * 1024;
/// The publish outcome normally comes within minutes; past this the hub asks `freepublish/get`.
pub const CONFIRM_WITHIN: Duration = Duration::from_secs(30 * 60);
/// A callback timestamp further than this from the hub's time is refused (WeChat signs no
/// time, so this is the hub's own replay defence, §A.7.5).
pub const REPLAY_WINDOW_SECONDS: i64 = 300;

/// Secret names on a WeChat target.
pub const APP_SECRET: &str = "app_secret";
pub const CALLBACK_TOKEN: &str = "token";
pub const ENCODING_AES_KEY: &str = "encoding_aes_key";

/// What the preview shows and the delivery sends (with the target's own author and cover).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Article {
    pub title: String,
    pub digest: String,
    pub content: String,
    pub content_source_url: String,
    /// The item's first image (an image attachment, else a body image), by SHA-256: uploaded
    /// as the article's cover. None: the target's default cover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cover: Option<String>,
    /// What breaks WeChat's limits, by field: shown in the preview; such an item is not sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub field: String,
    pub message: String,
    /// True when WeChat would refuse the article; false for what is only left out.
    pub blocking: bool,
}

/// What a retry resumes from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Checkpoint {
    media_id: Option<String>,
    /// The submit WeChat accepted: a retry asks about it before submitting anything.
    #[serde(default)]
    publish_id: Option<String>,
    /// The item's cover, uploaded as permanent material: its media_id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cover: Option<String>,
    /// Body images uploaded already: SHA-256 → WeChat URL.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    images: BTreeMap<String, String>,
    /// The submit was sent and its answer lost: it may have taken effect, so it is never sent
    /// again blindly.
    #[serde(default)]
    submitted: bool,
    /// What the article is found by among those published, should the submit's answer be
    /// lost: its 阅读原文 link and title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    title: Option<String>,
}

/// A target's settings.
struct Settings {
    account: Account,
    thumb_media_id: String,
    author: String,
    /// Set: the article is mass-sent to followers (all, or one tag) instead of published.
    mass_send: Option<Value>,
}

/// External ids of mass sends (`msg_id`) are told apart from publishes (`publish_id`) by this.
pub const MASS_SEND_PREFIX: &str = "mass:";

/// An article found published after its submit's answer (and publish_id) was lost is known
/// by its article_id, told apart by this.
pub const ARTICLE_PREFIX: &str = "article:";

/// How many pages of `freepublish/batchget` (20 articles each, newest first) are looked
/// through for an article whose submit's answer was lost.
const LOST_SUBMIT_PAGES: u64 = 5;

/// The clientmsgid a delivery's mass send carries on every attempt (WeChat keeps one send per
/// clientmsgid, at most 64 characters): derived from its idempotency key.
fn client_msg_id(idempotency_key: &str) -> String {
    use sha1::{Digest, Sha1};
    format!("herald-{}", hex::encode(Sha1::digest(idempotency_key.as_bytes())))
}

/// `config.mass_send`: `{"to_all": true}` or `{"tag_id": N}`, as WeChat's filter.
fn mass_send_filter(config: &Value) -> Result<Option<Value>, TargetError> {
    let Some(raw) = config.get("mass_send").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let wrong = || TargetError::new("config.mass_send", "{\"to_all\": true} or {\"tag_id\": N}");
    match (raw["to_all"].as_bool(), raw["tag_id"].as_u64()) {
        (Some(true), None) => Ok(Some(json!({"is_to_all": true}))),
        (None | Some(false), Some(tag)) => Ok(Some(json!({"is_to_all": false, "tag_id": tag}))),
        _ => Err(wrong()),
    }
}

fn settings(config: &Value) -> Result<Settings, TargetError> {
    let app_id = config["app_id"]
        .as_str()
        .filter(|id| id.starts_with("wx") && id.len() <= 32 && id.bytes().all(|b| b.is_ascii_alphanumeric()))
        .ok_or_else(|| TargetError::new("config.app_id", "the account's AppID (wx…) is required"))?;
    let api_base = match config.get("api_base").and_then(Value::as_str) {
        None => API_BASE.to_owned(),
        Some(base) if base.starts_with("https://") || base.starts_with("http://") => base.to_owned(),
        Some(_) => return Err(TargetError::new("config.api_base", "must be an http(s) URL")),
    };
    let thumb_media_id = config["thumb_media_id"]
        .as_str()
        .filter(|id| !id.is_empty())
        .ok_or_else(|| {
            TargetError::new(
                "config.thumb_media_id",
                "the permanent cover image (media_id of an image uploaded to the account's material library) is required",
            )
        })?;
    let author = config["author"].as_str().unwrap_or_default().to_owned();
    if author.chars().count() > MAX_AUTHOR {
        return Err(TargetError::new(
            "config.author",
            format!("at most {MAX_AUTHOR} characters"),
        ));
    }
    Ok(Settings {
        account: Account {
            app_id: app_id.to_owned(),
            api_base,
        },
        thumb_media_id: thumb_media_id.to_owned(),
        author,
        mass_send: mass_send_filter(config)?,
    })
}

pub struct WeChat {
    client: reqwest::Client,
    tokens: AccessTokens,
    images: std::sync::Arc<dyn BodyImages>,
    portal_base: String,
}

impl WeChat {
    pub fn new(
        client: reqwest::Client,
        tokens: AccessTokens,
        images: std::sync::Arc<dyn BodyImages>,
        portal_base: &str,
    ) -> Self {
        Self {
            client,
            tokens,
            images,
            portal_base: portal_base.trim_end_matches('/').to_owned(),
        }
    }

    /// Sends the draft to followers (`message/mass/sendall`), under a clientmsgid of its own:
    /// a retry of a send whose answer was lost is answered with the same msg_id, not sent again.
    async fn mass_send(
        &self,
        settings: &Settings,
        secret: &str,
        filter: &Value,
        dispatch: &Dispatch<'_>,
        checkpoint: &Checkpoint,
    ) -> DeliveryOutcome {
        let body = json!({
            "filter": filter,
            "mpnews": {"media_id": checkpoint.media_id},
            "msgtype": "mpnews",
            "send_ignore_reprint": 0,
            "clientmsgid": client_msg_id(dispatch.idempotency_key),
        });
        match self
            .call(settings, secret, "/cgi-bin/message/mass/sendall", &body)
            .await
        {
            Ok(answer) => {
                let msg_id = match &answer["msg_id"] {
                    Value::Number(id) => id.to_string(),
                    Value::String(id) if !id.is_empty() => id.clone(),
                    _ => {
                        return DeliveryOutcome::Failed {
                            permanence: Permanence::Transient,
                            code: "no_msg_id".into(),
                            message: "mass/sendall answered without msg_id".into(),
                            checkpoint: serde_json::to_value(checkpoint).ok(),
                        };
                    }
                };
                DeliveryOutcome::Accepted {
                    external_id: format!("{MASS_SEND_PREFIX}{msg_id}"),
                    confirm_within: Some(CONFIRM_WITHIN),
                    checkpoint: serde_json::to_value(checkpoint).ok(),
                }
            }
            // Lost or refused, the clientmsgid makes trying again safe.
            Err(failure) => failure.outcome(checkpoint),
        }
    }

    /// What became of a publish accepted by an earlier attempt: delivered, still under way,
    /// or taken down since; `None` when it failed on WeChat's side (the draft may go again).
    async fn earlier_publish(
        &self,
        settings: &Settings,
        secret: &str,
        publish_id: &str,
        checkpoint: &Checkpoint,
    ) -> Option<DeliveryOutcome> {
        let asked = self.publish_status(settings, secret, publish_id).await;
        let answer = match asked {
            Ok(answer) => answer,
            Err(failure) => return Some(failure.outcome(checkpoint)),
        };
        match answer["publish_status"].as_i64() {
            Some(0) => Some(DeliveryOutcome::Delivered {
                external_id: Some(publish_id.to_owned()),
            }),
            Some(1) => Some(DeliveryOutcome::Accepted {
                external_id: publish_id.to_owned(),
                confirm_within: Some(CONFIRM_WITHIN),
                checkpoint: serde_json::to_value(checkpoint).ok(),
            }),
            Some(5 | 6) => Some(DeliveryOutcome::Failed {
                permanence: Permanence::Permanent,
                code: "wechat_taken_down".into(),
                message: "文章发布后已在公众平台被删除或封禁".into(),
                checkpoint: serde_json::to_value(checkpoint).ok(),
            }),
            _ => None,
        }
    }

    /// Calls `path` with the account's token; a refused token is renewed once and the call
    /// made once more.
    async fn call(
        &self,
        settings: &Settings,
        secret: &str,
        path: &str,
        body: &Value,
    ) -> Result<Value, Failure> {
        self.send(settings, secret, path, api::Payload::Json(body)).await
    }

    /// `freepublish/get`: what WeChat says of a publish.
    async fn publish_status(
        &self,
        settings: &Settings,
        secret: &str,
        publish_id: &str,
    ) -> Result<Value, Failure> {
        self.call(
            settings,
            secret,
            "/cgi-bin/freepublish/get",
            &json!({"publish_id": publish_id}),
        )
        .await
    }

    /// `freepublish/delete` of the whole article; the outcome names it.
    async fn delete_article(&self, settings: &Settings, secret: &str, article_id: &str) -> WithdrawOutcome {
        let deleted = self
            .call(
                settings,
                secret,
                "/cgi-bin/freepublish/delete",
                &json!({"article_id": article_id, "index": 0}),
            )
            .await;
        match deleted {
            Ok(_) => WithdrawOutcome::Removed {
                what: article_id.to_owned(),
            },
            Err(Failure::Api(ApiError::NoAnswer(message))) => WithdrawOutcome::Unknown { message },
            Err(failure) => failure.withdraw_outcome(),
        }
    }

    /// Where a submit whose answer was lost stands: `Some(article_id)` once it is found among
    /// the published articles; `None` while its draft is still in the draft box (not published
    /// yet, or never taken) or it is not among the newest.
    async fn lost_submit(
        &self,
        settings: &Settings,
        secret: &str,
        checkpoint: &Checkpoint,
    ) -> Result<Option<String>, Failure> {
        let (Some(media_id), Some(source_url), Some(title)) =
            (&checkpoint.media_id, &checkpoint.source_url, &checkpoint.title)
        else {
            return Ok(None);
        };
        match self
            .call(
                settings,
                secret,
                "/cgi-bin/draft/get",
                &json!({"media_id": media_id}),
            )
            .await
        {
            Ok(_) => return Ok(None),
            Err(Failure::Api(ApiError::WeChat { code: 40007, .. })) => {}
            Err(failure) => return Err(failure),
        }
        for page in 0..LOST_SUBMIT_PAGES {
            let answer = self
                .call(
                    settings,
                    secret,
                    "/cgi-bin/freepublish/batchget",
                    &json!({"offset": page * 20, "count": 20, "no_content": 1}),
                )
                .await?;
            let items = answer["item"].as_array().cloned().unwrap_or_default();
            let found = items.iter().find(|item| {
                item["content"]["news_item"].as_array().is_some_and(|articles| {
                    articles.iter().any(|a| {
                        a["content_source_url"].as_str() == Some(source_url.as_str())
                            && a["title"].as_str() == Some(title.as_str())
                            && a["is_deleted"].as_bool() != Some(true)
                    })
                })
            });
            if let Some(article_id) = found.and_then(|item| item["article_id"].as_str()) {
                return Ok(Some(article_id.to_owned()));
            }
            if items.len() < 20 {
                break;
            }
        }
        Ok(None)
    }

    /// As `call`, with any payload.
    async fn send(
        &self,
        settings: &Settings,
        secret: &str,
        path: &str,
        payload: api::Payload<'_>,
    ) -> Result<Value, Failure> {
        let token = self.tokens.token(&settings.account, secret).await?;
        match api::send(&self.client, &settings.account, Some(&token), path, payload).await {
            Err(e) if e.remedy() == Remedy::RenewToken => {
                let renewed = self
                    .tokens
                    .renew_refused(&settings.account, secret, &token)
                    .await?;
                Ok(api::send(&self.client, &settings.account, Some(&renewed), path, payload).await?)
            }
            answer => Ok(answer?),
        }
    }

    /// Uploads the stored image `sha256` to `path` (`media/uploadimg` for a body image,
    /// `material/add_material?type=image` for a cover) and returns the answer's `field` (the
    /// URL, or the media_id).
    async fn upload_stored_image(
        &self,
        settings: &Settings,
        secret: &str,
        sha256: &str,
        path: &str,
        field: &str,
    ) -> Result<String, ImagesNotReady> {
        let (content_type, bytes) = match self.images.image(sha256).await {
            Ok(Some(image)) => image,
            Ok(None) => return Err(ImagesNotReady::Missing(sha256.to_owned())),
            Err(e) => return Err(ImagesNotReady::Failed(Failure::Store(e))),
        };
        let filename = format!(
            "{sha256}.{}",
            if content_type == "image/png" { "png" } else { "jpg" }
        );
        let payload = api::Payload::Image {
            filename: &filename,
            content_type: &content_type,
            bytes: &bytes,
        };
        let answer = self
            .send(settings, secret, path, payload)
            .await
            .map_err(ImagesNotReady::Failed)?;
        match answer[field].as_str().filter(|value| !value.is_empty()) {
            Some(value) => Ok(value.to_owned()),
            None => Err(ImagesNotReady::Failed(Failure::Api(ApiError::NoAnswer(format!(
                "{path} answered without {field}"
            ))))),
        }
    }

    /// The content with each body image (`/xxgk/attachments/<sha256>`) uploaded to WeChat
    /// (`media/uploadimg`) and pointed at there. Images uploaded by an earlier attempt are
    /// kept in the checkpoint and not uploaded again; at most [`IMAGES_PER_ATTEMPT`] new ones
    /// per attempt, so an attempt stays inside its deadline (a retry goes on with the rest).
    async fn with_uploaded_images(
        &self,
        settings: &Settings,
        secret: &str,
        content: &str,
        checkpoint: &mut Checkpoint,
    ) -> Result<String, ImagesNotReady> {
        let mut uploaded_now = 0;
        for sha256 in body_images(content) {
            if checkpoint.images.contains_key(&sha256) {
                continue;
            }
            if uploaded_now == IMAGES_PER_ATTEMPT {
                return Err(ImagesNotReady::More);
            }
            let url = self
                .upload_stored_image(settings, secret, &sha256, "/cgi-bin/media/uploadimg", "url")
                .await?;
            checkpoint.images.insert(sha256, url);
            uploaded_now += 1;
        }
        let mut rewritten = content.to_owned();
        for (sha256, url) in &checkpoint.images {
            rewritten = rewritten.replace(
                &format!("src=\"{ATTACHMENT_PATH}{sha256}\""),
                &format!("src=\"{url}\""),
            );
        }
        Ok(rewritten)
    }
}

/// New images uploaded per attempt: with the other calls, within the attempt deadline.
pub const IMAGES_PER_ATTEMPT: usize = 2;

/// The stored images the body refers to, by SHA-256, in order, once each.
fn body_images(content: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let pattern = format!("src=\"{ATTACHMENT_PATH}");
    let mut rest = content;
    while let Some(at) = rest.find(&pattern) {
        let after = &rest[at + pattern.len()..];
        let sha256: String = after.chars().take_while(char::is_ascii_hexdigit).collect();
        if sha256.len() == 64 && !found.contains(&sha256) {
            found.push(sha256);
        }
        rest = after;
    }
    found
}

/// Why the content is not ready to go.
enum ImagesNotReady {
    /// More images wait for the next attempt.
    More,
    /// An image the body names is not stored.
    Missing(String),
    Failed(Failure),
}

/// Where the adapter reads body images from: the hub's attachment store.
#[async_trait::async_trait]
pub trait BodyImages: Send + Sync {
    /// The stored file `sha256`: its media type and bytes; `None` if there is none.
    async fn image(&self, sha256: &str) -> Result<Option<(String, Vec<u8>)>, String>;
}

/// Why a step failed.
enum Failure {
    Api(ApiError),
    Store(String),
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure::Api(e)
    }
}

impl From<TokenError> for Failure {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Api(e) => Failure::Api(e),
            TokenError::Store(e) => Failure::Store(e),
        }
    }
}

impl Failure {
    /// The delivery outcome of a step that did not succeed, keeping `checkpoint`.
    fn outcome(self, checkpoint: &Checkpoint) -> DeliveryOutcome {
        let (permanence, code, message) = self.classified();
        DeliveryOutcome::Failed {
            permanence,
            code,
            message,
            checkpoint: serde_json::to_value(checkpoint).ok(),
        }
    }

    fn withdraw_outcome(self) -> WithdrawOutcome {
        let (permanence, code, message) = self.classified();
        WithdrawOutcome::Failed {
            permanence,
            code,
            message,
        }
    }

    fn classified(self) -> (Permanence, String, String) {
        match self {
            Failure::Store(message) => (Permanence::Transient, "token_store".to_owned(), message),
            Failure::Api(e) => match e.remedy() {
                Remedy::Retry | Remedy::RenewToken => (Permanence::Transient, code_of(&e), e.to_string()),
                Remedy::WaitForQuota => (
                    Permanence::Transient,
                    code_of(&e),
                    "今日接口调用次数已用完：稍后按退避重试，额度次日恢复；重试次数用尽时请次日手动重试"
                        .to_owned(),
                ),
                Remedy::GiveUp(message) => (Permanence::Permanent, code_of(&e), message),
            },
        }
    }
}

fn code_of(e: &ApiError) -> String {
    match e {
        ApiError::NotSent(_) => "unreachable".into(),
        ApiError::NoAnswer(_) => "no_answer".into(),
        ApiError::WeChat { code, .. } => format!("wechat_{code}"),
    }
}

/// The account's access token, renewed by the hub's upkeep task before it ends.
#[async_trait::async_trait]
impl Upkeep for WeChat {
    async fn upkeep(&self, target: &TargetRef) -> Result<(), String> {
        let settings = settings(&target.config).map_err(|e| e.to_string())?;
        let secret = target
            .secrets
            .get(APP_SECRET)
            .ok_or_else(|| format!("the target has no secrets.{APP_SECRET}"))?;
        self.tokens
            .refresh(&settings.account, secret.expose())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

#[async_trait::async_trait]
impl Channel for WeChat {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Wechat
    }

    fn check_target(&self, config: &Value, secret_names: &[&str]) -> Result<(), TargetError> {
        settings(config)?;
        TargetError::missing_secret(
            secret_names,
            &[APP_SECRET, CALLBACK_TOKEN, ENCODING_AES_KEY],
            "from the account's 基本配置 page (AppSecret, Token, EncodingAESKey)",
        )
    }

    fn correction_style(&self) -> CorrectionStyle {
        CorrectionStyle::PublishThenRemoveOld
    }

    fn render(&self, item: &PublishedItem) -> Result<Rendition, RenderError> {
        // A correction is a new article, and says so first.
        let mut body = match &item.correction {
            Some(correction) => format!(
                "<p><strong>{}</strong></p>{}",
                crate::escape_html(&correction.notice_zh()),
                item.body_html
            ),
            None => item.body_html.clone(),
        };
        if !item.annotation.is_empty() {
            body.push_str(&format!("<p>{}</p>", item.annotation));
        }
        // Body images stay: they are uploaded to WeChat when the article is sent.
        let content = super::html::wechat_safe(&body);
        let digest = if item.summary.trim().is_empty() {
            crate::portal::plain_text(&item.body_html)
                .chars()
                .take(54)
                .collect()
        } else {
            item.summary.clone()
        };
        let mut problems = Vec::new();
        let mut limit = |field: &str, value: &str, max: usize| {
            let n = value.chars().count();
            if n > max {
                problems.push(Problem {
                    field: field.into(),
                    message: format!("微信限 {max} 字，当前 {n} 字"),
                    blocking: true,
                });
            }
        };
        limit("title", &item.title, MAX_TITLE);
        limit("digest", &digest, MAX_DIGEST);
        // Fewer than 20,000 characters and less than 1 MB.
        limit("content", &content, MAX_CONTENT_CHARS - 1);
        if content.len() >= MAX_CONTENT_BYTES {
            problems.push(Problem {
                field: "content".into(),
                message: "正文须小于 1 MB".into(),
                blocking: true,
            });
        }
        // WeChat takes body images as JPG or PNG under 1 MB (§A.8); those that are attachments
        // of the item are checked here, by what was stored.
        for sha256 in body_images(&content) {
            let Some(image) = item.attachments.iter().find(|a| a.sha256 == sha256) else {
                continue;
            };
            let usable_type = matches!(image.content_type.as_str(), "image/jpeg" | "image/png");
            if !usable_type || image.size >= MAX_IMAGE_BYTES {
                problems.push(Problem {
                    field: "content".into(),
                    message: format!("正文图片“{}”须为 JPG 或 PNG 且小于 1 MB", image.filename),
                    blocking: true,
                });
            }
        }
        // A correction's 阅读原文 leads to its own version's page: each version's article has a
        // link of its own, by which it is found should its submit's answer be lost.
        let link = match (&item.correction, self.portal_base.is_empty()) {
            (_, true) => String::new(),
            (None, false) => format!(
                "{}{}",
                self.portal_base,
                crate::portal::Portal::page_path(&item.item_id)
            ),
            (Some(_), false) => format!(
                "{}{}/versions/{}",
                self.portal_base,
                crate::portal::Portal::page_path(&item.item_id),
                item.version
            ),
        };
        let cover = item
            .attachments
            .iter()
            .find(|a| {
                matches!(a.content_type.as_str(), "image/jpeg" | "image/png") && a.size < MAX_IMAGE_BYTES
            })
            .map(|a| a.sha256.clone())
            .or_else(|| body_images(&content).into_iter().next());
        let article = Article {
            title: item.title.clone(),
            digest,
            content,
            content_source_url: link,
            cover,
            problems,
        };
        Ok(Rendition {
            channel: ChannelKind::Wechat,
            payload: serde_json::to_value(article).map_err(|e| RenderError::Unrenderable(e.to_string()))?,
        })
    }

    async fn deliver(&self, rendition: &Rendition, dispatch: &Dispatch<'_>) -> DeliveryOutcome {
        let permanent = |code: &str, message: String| DeliveryOutcome::Failed {
            permanence: Permanence::Permanent,
            code: code.into(),
            message,
            checkpoint: None,
        };
        let settings = match settings(&dispatch.target.config) {
            Ok(settings) => settings,
            Err(e) => return permanent("misconfigured", e.to_string()),
        };
        let Some(secret) = dispatch.target.secrets.get(APP_SECRET) else {
            return permanent("misconfigured", format!("the target has no secrets.{APP_SECRET}"));
        };
        let article: Article = match serde_json::from_value(rendition.payload.clone()) {
            Ok(article) => article,
            Err(e) => return permanent("unreadable_rendition", e.to_string()),
        };
        // Images are left out with a note; anything over the limits is not sent.
        let blocking: Vec<&Problem> = article.problems.iter().filter(|p| p.blocking).collect();
        if !blocking.is_empty() {
            let listed: Vec<String> = blocking
                .iter()
                .map(|p| format!("{}：{}", p.field, p.message))
                .collect();
            return permanent("exceeds_wechat_limits", listed.join("；"));
        }
        let mut checkpoint: Checkpoint = dispatch
            .checkpoint
            .and_then(|c| serde_json::from_value(c.clone()).ok())
            .unwrap_or_default();
        let secret = secret.expose();
        if checkpoint.submitted {
            // Published after all (an operator's retry of a send whose answer was lost): found.
            if let Ok(Some(article_id)) = self.lost_submit(&settings, secret, &checkpoint).await {
                return DeliveryOutcome::Delivered {
                    external_id: Some(format!("{ARTICLE_PREFIX}{article_id}")),
                };
            }
            return DeliveryOutcome::Unknown {
                message: "上次提交发布后未收到应答，可能已发布：请在公众平台“发表记录”中核对，勿重复发布"
                    .into(),
                checkpoint: serde_json::to_value(&checkpoint).ok(),
            };
        }
        // Accepted before (the delivery was then retried by an operator): what became of that
        // publish decides, so it is never submitted twice.
        if let Some(publish_id) = checkpoint.publish_id.clone() {
            match self
                .earlier_publish(&settings, secret, &publish_id, &checkpoint)
                .await
            {
                Some(outcome) => return outcome,
                // It failed on WeChat's side: the draft is submitted again.
                None => checkpoint.publish_id = None,
            }
        }
        let media_id = match &checkpoint.media_id {
            Some(media_id) => media_id.clone(),
            None => {
                let content = match self
                    .with_uploaded_images(&settings, secret, &article.content, &mut checkpoint)
                    .await
                {
                    Ok(content) => content,
                    Err(ImagesNotReady::More) => {
                        return DeliveryOutcome::Failed {
                            permanence: Permanence::Transient,
                            code: "wechat_images_uploading".into(),
                            message: "正文图片分批上传中，稍后继续".into(),
                            checkpoint: serde_json::to_value(&checkpoint).ok(),
                        };
                    }
                    Err(ImagesNotReady::Missing(sha256)) => {
                        return permanent("image_missing", format!("正文图片 {sha256} 不在附件库中"));
                    }
                    Err(ImagesNotReady::Failed(failure)) => return failure.outcome(&checkpoint),
                };
                let thumb_media_id = match (&checkpoint.cover, &article.cover) {
                    (Some(uploaded), _) => uploaded.clone(),
                    (None, Some(sha256)) => match self
                        .upload_stored_image(
                            &settings,
                            secret,
                            sha256,
                            "/cgi-bin/material/add_material?type=image",
                            "media_id",
                        )
                        .await
                    {
                        Ok(media_id) => {
                            checkpoint.cover = Some(media_id.clone());
                            media_id
                        }
                        Err(ImagesNotReady::Failed(failure)) => return failure.outcome(&checkpoint),
                        // The image is gone from the store: the target's default cover serves.
                        Err(_) => settings.thumb_media_id.clone(),
                    },
                    (None, None) => settings.thumb_media_id.clone(),
                };
                let body = json!({"articles": [{
                    "title": article.title,
                    "author": settings.author,
                    "digest": article.digest,
                    "content": content,
                    "content_source_url": article.content_source_url,
                    "thumb_media_id": thumb_media_id,
                    "need_open_comment": 0,
                    "only_fans_can_comment": 0,
                }]});
                match self.call(&settings, secret, "/cgi-bin/draft/add", &body).await {
                    Ok(answer) => match answer["media_id"].as_str() {
                        Some(media_id) => media_id.to_owned(),
                        None => {
                            return permanent("no_media_id", "draft/add answered without media_id".into());
                        }
                    },
                    Err(failure) => return failure.outcome(&checkpoint),
                }
            }
        };
        checkpoint.media_id = Some(media_id.clone());
        checkpoint.source_url = Some(article.content_source_url.clone());
        checkpoint.title = Some(article.title.clone());
        if let Some(filter) = &settings.mass_send {
            return self
                .mass_send(&settings, secret, filter, dispatch, &checkpoint)
                .await;
        }
        match self
            .call(
                &settings,
                secret,
                "/cgi-bin/freepublish/submit",
                &json!({"media_id": media_id}),
            )
            .await
        {
            Ok(answer) => {
                let publish_id = match &answer["publish_id"] {
                    Value::String(id) => id.clone(),
                    Value::Number(id) => id.to_string(),
                    _ => String::new(),
                };
                if publish_id.is_empty() {
                    checkpoint.submitted = true;
                    return DeliveryOutcome::Unknown {
                        message: "freepublish/submit answered without publish_id".into(),
                        checkpoint: serde_json::to_value(&checkpoint).ok(),
                    };
                }
                checkpoint.publish_id = Some(publish_id.clone());
                DeliveryOutcome::Accepted {
                    external_id: publish_id,
                    confirm_within: Some(CONFIRM_WITHIN),
                    checkpoint: serde_json::to_value(&checkpoint).ok(),
                }
            }
            Err(Failure::Api(ApiError::NoAnswer(e))) => {
                checkpoint.submitted = true;
                DeliveryOutcome::Unknown {
                    message: format!("提交发布后未收到应答（{e}），可能已发布"),
                    checkpoint: serde_json::to_value(&checkpoint).ok(),
                }
            }
            Err(failure) => failure.outcome(&checkpoint),
        }
    }

    async fn reconcile(&self, dispatch: &Dispatch<'_>, publish_id: &str) -> Option<ReceiptStatus> {
        let settings = settings(&dispatch.target.config).ok()?;
        let secret = dispatch.target.secrets.get(APP_SECRET)?;
        if let Some(msg_id) = publish_id.strip_prefix(MASS_SEND_PREFIX) {
            let answer = self
                .call(
                    &settings,
                    secret.expose(),
                    "/cgi-bin/message/mass/get",
                    &json!({"msg_id": msg_id}),
                )
                .await
                .ok()?;
            return events::mass_send_outcome(answer["msg_status"].as_str()?);
        }
        let answer = self
            .publish_status(&settings, secret.expose(), publish_id)
            .await
            .ok()?;
        let fail_idx: Vec<u32> = answer["fail_idx"]
            .as_array()
            .map(|ids| {
                ids.iter()
                    .filter_map(|i| i.as_u64().and_then(|i| u32::try_from(i).ok()))
                    .collect()
            })
            .unwrap_or_default();
        events::publish_outcome(answer["publish_status"].as_i64()?, &fail_idx)
    }

    /// A submit whose answer was lost: once WeChat has taken the draft out of the draft box
    /// (it does so when the article is published), the article is looked for among those
    /// published, by its link and title.
    async fn find_lost(&self, dispatch: &Dispatch<'_>) -> Option<Found> {
        let settings = settings(&dispatch.target.config).ok()?;
        let secret = dispatch.target.secrets.get(APP_SECRET)?;
        let checkpoint: Checkpoint = serde_json::from_value(dispatch.checkpoint?.clone()).ok()?;
        if !checkpoint.submitted || checkpoint.publish_id.is_some() {
            return None;
        }
        let article_id = self
            .lost_submit(&settings, secret.expose(), &checkpoint)
            .await
            .ok()??;
        Some(Found {
            status: ReceiptStatus::Delivered,
            external_id: format!("{ARTICLE_PREFIX}{article_id}"),
        })
    }

    async fn withdraw(
        &self,
        _item_id: &str,
        target: &TargetRef,
        external_id: Option<&str>,
        _reason: &str,
        _idempotency_key: &str,
    ) -> WithdrawOutcome {
        // No publish_id: the submit's answer was lost, so it may be out; only someone looking
        // at the platform can tell.
        let Some(publish_id) = external_id else {
            return WithdrawOutcome::Unknown {
                message: "发布结果未确认，无法自动删除：请在公众平台“发表记录”中核对并删除".into(),
            };
        };
        let (settings, secret) = match (settings(&target.config), target.secrets.get(APP_SECRET)) {
            (Ok(settings), Some(secret)) => (settings, secret.expose()),
            _ => {
                return WithdrawOutcome::Failed {
                    permanence: Permanence::Permanent,
                    code: "misconfigured".into(),
                    message: "the target's settings or app_secret are missing".into(),
                };
            }
        };
        if let Some(article_id) = publish_id.strip_prefix(ARTICLE_PREFIX) {
            return self.delete_article(&settings, secret, article_id).await;
        }
        if let Some(msg_id) = publish_id.strip_prefix(MASS_SEND_PREFIX) {
            let deleted = self
                .call(
                    &settings,
                    secret,
                    "/cgi-bin/message/mass/delete",
                    &json!({"msg_id": msg_id, "article_idx": 0}),
                )
                .await;
            return match deleted {
                Ok(_) => WithdrawOutcome::Removed {
                    what: publish_id.to_owned(),
                },
                Err(Failure::Api(ApiError::NoAnswer(message))) => WithdrawOutcome::Unknown { message },
                Err(failure) => failure.withdraw_outcome(),
            };
        }
        let asked = self.publish_status(&settings, secret, publish_id).await;
        let published = match asked {
            Ok(answer) => answer,
            Err(failure) => return failure.withdraw_outcome(),
        };
        let article_id = match published["publish_status"].as_i64() {
            Some(0) => published["article_id"].as_str().unwrap_or_default().to_owned(),
            // Still publishing: it will be out in a moment, and must then come down.
            Some(1) => {
                return WithdrawOutcome::Failed {
                    permanence: Permanence::Transient,
                    code: "wechat_still_publishing".into(),
                    message: "文章仍在发布中，稍后再删除".into(),
                };
            }
            // Failed on WeChat's side, or taken down there already: nothing is out.
            _ => return WithdrawOutcome::Withdrawn,
        };
        self.delete_article(&settings, secret, &article_id).await
    }

    fn upkeep(&self) -> Option<&dyn Upkeep> {
        Some(self)
    }

    fn callbacks(&self) -> Option<&dyn Callbacks> {
        Some(self)
    }
}

fn unauthenticated(field: &str, message: &str) -> CallbackError {
    CallbackError::Unauthenticated {
        field: field.into(),
        message: message.into(),
    }
}

fn malformed(field: &str, message: impl Into<String>) -> CallbackError {
    CallbackError::Malformed {
        field: field.into(),
        message: message.into(),
    }
}

/// The `<Encrypt>` of a safe-mode push.
#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "Encrypt")]
    encrypt: String,
}

impl Callbacks for WeChat {
    fn verify(
        &self,
        target: &TargetRef,
        request: &CallbackRequest<'_>,
        now: DateTime<Utc>,
    ) -> Result<Verified, CallbackError> {
        let query: HashMap<String, String> = form_urlencoded_pairs(request.query);
        let param = |name: &str| {
            query
                .get(name)
                .map(String::as_str)
                .ok_or_else(|| unauthenticated(name, "missing"))
        };
        let token = target
            .secrets
            .get(CALLBACK_TOKEN)
            .ok_or_else(|| {
                unauthenticated(
                    &format!("secrets.{CALLBACK_TOKEN}"),
                    "the target has no callback token",
                )
            })?
            .expose();
        let (timestamp, nonce) = (param("timestamp")?, param("nonce")?);
        if !crypto::same(
            param("signature")?,
            &crypto::signature(&[token, timestamp, nonce]),
        ) {
            return Err(unauthenticated("signature", "the signature does not match"));
        }
        // WeChat checks the URL with a GET and wants its echostr back.
        if request.method == "GET" {
            return Ok(Verified {
                receipts: Vec::new(),
                reply: CallbackReply::Text(param("echostr")?.to_owned()),
                replay_key: None,
            });
        }
        if request.method != "POST" {
            return Err(CallbackError::Method("WeChat pushes with POST".into()));
        }
        let signed_at: i64 = timestamp
            .parse()
            .map_err(|_| unauthenticated("timestamp", "not a Unix time"))?;
        if (now.timestamp() - signed_at).abs() > REPLAY_WINDOW_SECONDS {
            return Err(CallbackError::Stale {
                field: "timestamp".into(),
                message: format!("more than {REPLAY_WINDOW_SECONDS} s from the hub's time"),
            });
        }
        if query.get("encrypt_type").map(String::as_str) != Some("aes") {
            return Err(unauthenticated(
                "encrypt_type",
                "only safe mode (aes) is accepted",
            ));
        }
        let body = std::str::from_utf8(request.body).map_err(|_| malformed("body", "not UTF-8"))?;
        let envelope: Envelope =
            quick_xml::de::from_str(body).map_err(|_| malformed("body", "no <Encrypt> element"))?;
        let msg_signature = param("msg_signature")?;
        if !crypto::same(
            msg_signature,
            &crypto::signature(&[token, timestamp, nonce, &envelope.encrypt]),
        ) {
            return Err(unauthenticated("msg_signature", "the signature does not match"));
        }
        let app_id = settings(&target.config)
            .map(|s| s.account.app_id)
            .map_err(|e| unauthenticated(&e.field, &e.message))?;
        let key = AesKey::from_encoding_aes_key(
            target
                .secrets
                .get(ENCODING_AES_KEY)
                .ok_or_else(|| unauthenticated(&format!("secrets.{ENCODING_AES_KEY}"), "missing"))?
                .expose(),
        )
        .map_err(|e| unauthenticated(&format!("secrets.{ENCODING_AES_KEY}"), &e.to_string()))?;
        let message = crypto::decrypt(&key, &envelope.encrypt, &app_id)
            .map_err(|e| unauthenticated("Encrypt", &e.to_string()))?;
        let receipts = match events::finished(&message).map_err(|e| malformed("Encrypt", e))? {
            Some(Finished::Publish(event)) => vec![receipt_of(&event)],
            Some(Finished::MassSend(event)) => vec![mass_receipt_of(&event)],
            // A follower's message or another event: acknowledged, nothing to record.
            None => Vec::new(),
        };
        // A push WeChat retried because the first answer was late carries the same timestamp
        // and nonce: refusing it loses nothing, since the first is stored by the time it is
        // refused (the key commits with the receipts), and one the hub never stored is taken.
        Ok(Verified {
            receipts,
            reply: CallbackReply::Text("success".into()),
            replay_key: Some(format!("{timestamp}:{nonce}")),
        })
    }
}

fn receipt_of(event: &PublishFinished) -> ChannelReceipt {
    ChannelReceipt {
        correlation: Correlation::ExternalId(event.publish_id.clone()),
        status: events::publish_outcome(event.status, &event.fail_idx).unwrap_or(ReceiptStatus::Accepted),
        source_time: DateTime::from_timestamp(event.created, 0),
        // WeChat sends an event up to three times: one receipt per publish and status.
        dedup: format!("publish:{}:{}", event.publish_id, event.status),
        raw: json!({
            "publish_id": event.publish_id,
            "publish_status": event.status,
            "article_id": event.article_id,
            "article_urls": event.article_urls,
            "fail_idx": event.fail_idx,
        }),
    }
}

fn mass_receipt_of(event: &MassSendFinished) -> ChannelReceipt {
    ChannelReceipt {
        correlation: Correlation::ExternalId(format!("{MASS_SEND_PREFIX}{}", event.msg_id)),
        status: events::mass_send_outcome(&event.status).unwrap_or(ReceiptStatus::Accepted),
        source_time: None,
        dedup: format!("mass:{}:{}", event.msg_id, event.status),
        // The counts are the channel's receipt: followers targeted, after filtering, reached, not.
        raw: json!({
            "msg_id": event.msg_id,
            "status": event.status,
            "total_count": event.total,
            "filter_count": event.filtered,
            "sent_count": event.sent,
            "error_count": event.failed,
        }),
    }
}

/// The query string as name → value (the first of each name).
fn form_urlencoded_pairs(query: &str) -> HashMap<String, String> {
    let mut pairs = HashMap::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        pairs
            .entry(name.into_owned())
            .or_insert_with(|| value.into_owned());
    }
    pairs
}
