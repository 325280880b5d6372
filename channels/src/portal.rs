//! The government portal Herald serves itself. Delivering an item makes its page live in the
//! hub's store (through `PortalStore`); withdrawing takes it down and lists it in the cleanup
//! record (清理结果).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{
    Channel, ChannelKind, DeliveryOutcome, Dispatch, Permanence, PublishedItem, RenderError, Rendition,
    TargetRef, WithdrawOutcome,
};

/// What a portal page shows, rendered once from the approved version.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PortalPage {
    pub item_id: String,
    pub version: i32,
    pub title: String,
    pub summary: String,
    pub body_html: String,
    pub annotation: String,
    /// The 文件信息 block: (label, value) rows in display order.
    pub metadata: Vec<(String, String)>,
    pub issuers: Vec<String>,
    pub catalog_code: String,
    pub catalog_name: String,
    pub area_code: String,
    pub area_name: String,
    pub attachments: Vec<crate::Attachment>,
    pub emergency: bool,
    pub published_at: String,
    /// Title, summary and body as plain text, for phrase search.
    pub search_text: String,
    /// A correction's note, shown above the text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correction: Option<crate::Correction>,
}

/// Where portal pages live; the hub implements it over its database.
#[async_trait::async_trait]
pub trait PortalStore: Send + Sync {
    async fn put_page(&self, target: &TargetRef, page: &PortalPage) -> Result<(), String>;
    /// Takes the page down; false when there was no page.
    async fn take_down(&self, item_id: &str, reason: &str) -> Result<bool, String>;
}

pub struct Portal {
    store: Arc<dyn PortalStore>,
}

impl Portal {
    pub fn new(store: Arc<dyn PortalStore>) -> Self {
        Self { store }
    }

    pub fn page_path(item_id: &str) -> String {
        format!("/xxgk/items/{item_id}")
    }
}

/// Where the portal serves an item's attachments (and a body's images): this, then the
/// file's SHA-256.
pub const ATTACHMENT_PATH: &str = "/xxgk/attachments/";

/// 2017-05-15 → 2017年5月15日 (GB/T 9704-2012 style); anything else unchanged.
pub fn chinese_date(iso: &str) -> String {
    let date = iso.get(..10).unwrap_or(iso);
    let mut parts = date.split('-').map(|p| p.trim_start_matches('0'));
    match (parts.next(), parts.next(), parts.next()) {
        (Some(y), Some(m), Some(d)) if !m.is_empty() && !d.is_empty() => format!("{y}年{m}月{d}日"),
        _ => iso.to_owned(),
    }
}

/// Text content of sanitised HTML, entities decoded for the common cases.
pub fn plain_text(html: &str) -> String {
    let mut text = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                text.push(' ');
            }
            _ if !in_tag => text.push(c),
            _ => {}
        }
    }
    let decoded = text
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    decoded.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub fn render_page(item: &PublishedItem) -> PortalPage {
    let mut metadata = vec![
        ("索引号".to_owned(), item.index_no.clone()),
        ("主题分类".to_owned(), item.topic.join("\\")),
        ("发文机关".to_owned(), item.issuers.join("、")),
        ("成文日期".to_owned(), chinese_date(&item.written_date)),
        ("发文字号".to_owned(), item.doc_no.clone().unwrap_or_default()),
        ("发布日期".to_owned(), chinese_date(&item.published_at)),
    ];
    if let Some(validity) = &item.validity {
        metadata.push(("有效性".to_owned(), validity.clone()));
    }
    let search_text = format!("{} {} {}", item.title, item.summary, plain_text(&item.body_html));
    PortalPage {
        item_id: item.item_id.clone(),
        version: item.version,
        title: item.title.clone(),
        summary: item.summary.clone(),
        body_html: item.body_html.clone(),
        annotation: item.annotation.clone(),
        metadata,
        issuers: item.issuers.clone(),
        catalog_code: item.catalog_code.clone(),
        catalog_name: item.catalog_name.clone(),
        area_code: item.area_code.clone(),
        area_name: item.area_name.clone(),
        attachments: item.attachments.clone(),
        emergency: item.emergency,
        published_at: item.published_at.clone(),
        search_text,
        correction: item.correction.clone(),
    }
}

#[async_trait::async_trait]
impl Channel for Portal {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Portal
    }

    fn render(&self, item: &PublishedItem) -> Result<Rendition, RenderError> {
        let payload =
            serde_json::to_value(render_page(item)).map_err(|e| RenderError::Unrenderable(e.to_string()))?;
        Ok(Rendition {
            channel: ChannelKind::Portal,
            payload,
        })
    }

    async fn deliver(&self, rendition: &Rendition, dispatch: &Dispatch<'_>) -> DeliveryOutcome {
        let target = dispatch.target;
        // Putting a page is an upsert: repeating it is harmless, so the key needs no storage.
        let page: PortalPage = match serde_json::from_value(rendition.payload.clone()) {
            Ok(page) => page,
            Err(e) => {
                return DeliveryOutcome::Failed {
                    permanence: Permanence::Permanent,
                    code: "bad_rendition".into(),
                    message: e.to_string(),
                    checkpoint: None,
                };
            }
        };
        match self.store.put_page(target, &page).await {
            Ok(()) => DeliveryOutcome::Delivered {
                external_id: Some(Self::page_path(&page.item_id)),
            },
            Err(message) => DeliveryOutcome::Failed {
                permanence: Permanence::Transient,
                code: "store".into(),
                message,
                checkpoint: None,
            },
        }
    }

    async fn withdraw(
        &self,
        item_id: &str,
        _target: &TargetRef,
        _external_id: Option<&str>,
        reason: &str,
        _idempotency_key: &str,
    ) -> WithdrawOutcome {
        match self.store.take_down(item_id, reason).await {
            Ok(_) => WithdrawOutcome::Withdrawn,
            Err(message) => WithdrawOutcome::Failed {
                permanence: Permanence::Transient,
                code: "store".into(),
                message,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_print_the_chinese_way() {
        assert_eq!(chinese_date("2017-05-15"), "2017年5月15日");
        assert_eq!(chinese_date("2026-10-10T02:00:00Z"), "2026年10月10日");
    }

    #[test]
    fn plain_text_drops_tags_and_decodes_entities() {
        assert_eq!(plain_text("<p>森林&amp;草原</p><p>防火</p>"), "森林&草原 防火");
    }
}
