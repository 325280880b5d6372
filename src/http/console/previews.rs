//! 预览: an item as each channel would receive it, side by side, from the same `render` the
//! delivery uses (`workflow::preview_rendition`), so what staff check is what goes out.

use herald_channels::{
    ChannelKind, Rendition,
    devices::Announcement,
    portal::PortalPage,
    wechat::adapter::{Article, MAX_CONTENT_CHARS, MAX_DIGEST, MAX_TITLE},
};

use super::*;

/// The previews page frames the portal page and plays the loudspeaker's recording: the
/// hub's own, and nothing else.
const PREVIEWS_POLICY: &str = "default-src 'none'; img-src 'self'; style-src 'self'; media-src 'self'; frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// The portal page of a preview may be framed by the console's previews page alone.
const FRAMED_POLICY: &str = "default-src 'none'; img-src 'self'; style-src 'self'; form-action 'none'; frame-ancestors 'self'; base-uri 'none'";

/// Chinese read aloud by a loudspeaker's speech synthesis: about four characters a second.
const SPOKEN_CHARS_PER_SECOND: usize = 4;

#[derive(Template)]
#[template(path = "console/previews.html")]
struct PreviewsPage {
    frame: Frame,
    id: String,
    title: String,
    previews: Vec<ChannelPreview>,
}

struct ChannelPreview {
    label: &'static str,
    shown: Shown,
}

/// What one channel would receive, as that channel shows it.
enum Shown {
    /// The portal page, framed from its own address.
    Portal,
    Wechat {
        article: Article,
        /// `(what, characters, limit)`, for the counts beside the article.
        counts: Vec<(&'static str, usize, usize)>,
        body: String,
    },
    MediaCenter {
        headline: String,
        summary: String,
        by: String,
        /// The ninjs documents sent, pretty-printed, by version.
        documents: Vec<(&'static str, String)>,
    },
    NoticeBoard {
        pages: Vec<String>,
        link: Option<String>,
    },
    Loudspeaker {
        speech: Option<String>,
        spoken_seconds: usize,
        /// The recording played instead of speech, where the item has one.
        recording: Option<(String, String)>,
    },
    /// A channel whose rendition this page does not know how to draw: what it is sent.
    Sent(String),
    /// The channel cannot take this item: why, in the channel's words.
    Refused(String),
}

pub(super) async fn previews_page(
    req: HttpRequest,
    Staff { hub, caller }: Staff,
    id: web::Path<String>,
) -> Page {
    let item = match workflow::get_item(&hub, &caller, &id).await {
        Ok(item) => item,
        Err(e) => return not_shown(&hub, e),
    };
    let mut previews = Vec::new();
    for channel in hub.channels.kinds() {
        let shown = match workflow::preview_rendition(&hub, &caller, &id, channel).await {
            Ok(rendition) => shown(rendition),
            Err(e @ (Error::Validation { .. } | Error::Refused { .. })) => Shown::Refused(refusal(e)?.1),
            Err(e) => return Err(e.into()),
        };
        previews.push(ChannelPreview {
            label: channel.label_zh(),
            shown,
        });
    }
    let mut answer = staff_page(&req, &hub, &caller, StatusCode::OK, |frame| PreviewsPage {
        frame,
        id: item.id,
        title: item.content.title,
        previews,
    })?;
    answer.headers_mut().insert(
        actix_web::http::header::CONTENT_SECURITY_POLICY,
        actix_web::http::header::HeaderValue::from_static(PREVIEWS_POLICY),
    );
    Ok(answer)
}

/// The portal page an item would have, framed by the previews page.
pub(super) async fn portal_preview(Staff { hub, caller }: Staff, id: web::Path<String>) -> Page {
    let rendition = match workflow::preview_rendition(&hub, &caller, &id, ChannelKind::Portal).await {
        Ok(rendition) => rendition,
        Err(e) => return not_shown(&hub, e),
    };
    let page: PortalPage =
        serde_json::from_value(rendition.payload).map_err(|e| Error::from(anyhow::Error::new(e)))?;
    let mut answer = crate::http::portal::preview(&hub, page).await?;
    let headers = answer.headers_mut();
    headers.insert(
        actix_web::http::header::CONTENT_SECURITY_POLICY,
        actix_web::http::header::HeaderValue::from_static(FRAMED_POLICY),
    );
    headers.insert(
        actix_web::http::header::X_FRAME_OPTIONS,
        actix_web::http::header::HeaderValue::from_static("SAMEORIGIN"),
    );
    headers.insert(
        actix_web::http::header::CACHE_CONTROL,
        actix_web::http::header::HeaderValue::from_static("no-store"),
    );
    Ok(answer)
}

fn shown(rendition: Rendition) -> Shown {
    match rendition.channel {
        ChannelKind::Portal => Shown::Portal,
        ChannelKind::Wechat => match serde_json::from_value::<Article>(rendition.payload.clone()) {
            Ok(article) => Shown::Wechat {
                counts: vec![
                    ("标题", article.title.chars().count(), MAX_TITLE),
                    ("摘要", article.digest.chars().count(), MAX_DIGEST),
                    ("正文", article.content.chars().count(), MAX_CONTENT_CHARS),
                ],
                body: styles_as_classes(&sanitise_html(&article.content)),
                article,
            },
            Err(_) => sent(&rendition.payload),
        },
        ChannelKind::MediaCenter => media_center(&rendition.payload),
        ChannelKind::NoticeBoard | ChannelKind::Loudspeaker => {
            match serde_json::from_value::<Announcement>(rendition.payload.clone()) {
                Ok(announcement) if rendition.channel == ChannelKind::NoticeBoard => Shown::NoticeBoard {
                    pages: announcement.pages,
                    link: announcement.link,
                },
                Ok(announcement) => Shown::Loudspeaker {
                    spoken_seconds: announcement.speech.as_deref().map_or(0, |speech| {
                        speech.chars().count().div_ceil(SPOKEN_CHARS_PER_SECOND)
                    }),
                    speech: announcement.speech,
                    recording: announcement.recording.map(|recording| {
                        (
                            format!("/api/v1/attachments/{}", recording.sha256),
                            minutes_seconds(recording.duration_ms / 1000),
                        )
                    }),
                },
                Err(_) => sent(&rendition.payload),
            }
        }
    }
}

/// A rendition of a shape this page does not draw (an adapter of a deployment's own): shown as
/// the JSON the channel is sent, which is still exactly what goes out.
fn sent(payload: &serde_json::Value) -> Shown {
    Shown::Sent(format!("{payload:#}"))
}

/// The media center's summary of the ninjs it is sent, and the documents themselves.
fn media_center(payload: &serde_json::Value) -> Shown {
    let Some(documents) = payload
        .as_object()
        .filter(|documents| documents.keys().all(|key| key.starts_with("ninjs_")) && !documents.is_empty())
    else {
        return sent(payload);
    };
    let first = documents.values().next();
    let text_of = |key: &str, role: &str| -> String {
        first
            .and_then(|document| document.get(key))
            .and_then(serde_json::Value::as_array)
            .and_then(|entries| {
                entries
                    .iter()
                    .find(|entry| entry.get("role").and_then(serde_json::Value::as_str) == Some(role))
            })
            .and_then(|entry| entry.get("value"))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .unwrap_or_default()
    };
    Shown::MediaCenter {
        headline: text_of("headlines", "main"),
        summary: text_of("descriptions", "summary"),
        by: first
            .and_then(|document| document.get("by"))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .unwrap_or_default(),
        documents: documents
            .iter()
            .map(|(key, document)| {
                let version = if key.ends_with("2_2") {
                    "ninjs 2.2"
                } else {
                    "ninjs 3.1"
                };
                (version, format!("{document:#}"))
            })
            .collect(),
    }
}

fn minutes_seconds(seconds: u64) -> String {
    format!("{} 分 {:02} 秒", seconds / 60, seconds % 60)
}
