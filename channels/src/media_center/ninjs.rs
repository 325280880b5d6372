//! An item as IPTC ninjs ("News in JSON"), the exchange format the media center takes: version
//! 2.2 (lower-case keys) or 3.1 (camelCase keys), both from one builder so the two never say
//! different things. The official schemas are in `tests/fixtures/ninjs/` and every form built
//! here is validated against them in the tests.

use serde_json::{Map, Value, json};

use crate::{PublishedItem, portal::ATTACHMENT_PATH};

/// The ninjs line a media center reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NinjsVersion {
    V2_2,
    V3_1,
}

impl NinjsVersion {
    /// As configured on a target (`config.ninjs_version`).
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "2.2" => Some(Self::V2_2),
            "3.1" => Some(Self::V3_1),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::V2_2 => "2.2",
            Self::V3_1 => "3.1",
        }
    }

    /// The key a rendition stores this version's document under.
    pub fn payload_key(self) -> &'static str {
        match self {
            Self::V2_2 => "ninjs_2_2",
            Self::V3_1 => "ninjs_3_1",
        }
    }

    /// A property's name in this version, from its 2.2 (lower-case) name: 3.x writes the
    /// compound ones in camelCase.
    fn key(self, lower: &'static str) -> &'static str {
        if self == Self::V2_2 {
            return lower;
        }
        match lower {
            "versioncreated" => "versionCreated",
            "pubstatus" => "pubStatus",
            "contenttype" => "contentType",
            "infosources" => "infoSources",
            "altids" => "altIds",
            "sizeinbytes" => "sizeInBytes",
            "ednote" => "edNote",
            other => other,
        }
    }

    fn schema(self) -> String {
        format!(
            "http://www.iptc.org/std/ninjs/ninjs-schema_{}.json",
            self.as_str()
        )
    }
}

/// The item's global id in ninjs: the same for every version of it, so a correction or a
/// withdrawal names the object the center already has.
pub fn uri(item_id: &str) -> String {
    format!("urn:herald:item:{item_id}")
}

/// Where the item's public pages and files are: the portal's address, without a trailing
/// slash; empty when none is configured (then no links are given).
pub struct Links<'a> {
    pub portal_base: &'a str,
}

/// The IPTC news type of an attachment, by its media type.
fn news_type(content_type: &str) -> &'static str {
    match content_type.split('/').next() {
        Some("audio") => "audio",
        Some("video") => "video",
        Some("image") => "picture",
        // Documents (PDF, OFD, Word, Excel, text) are parts of the item.
        _ => "component",
    }
}

/// The item as a ninjs document of `version`.
pub fn document(item: &PublishedItem, version: NinjsVersion, links: &Links<'_>) -> Value {
    let k = |lower| version.key(lower);
    let mut doc = Map::new();
    doc.insert("uri".into(), json!(uri(&item.item_id)));
    doc.insert("type".into(), json!("text"));
    doc.insert("version".into(), json!(item.version.to_string()));
    // A correction is a new version of the same story: created when it was corrected.
    let created = item
        .correction
        .as_ref()
        .map_or(&item.published_at, |c| &c.corrected_at);
    doc.insert(k("versioncreated").into(), json!(created));
    doc.insert(k("pubstatus").into(), json!("usable"));
    // 1 is the most urgent: an emergency goes first on the center's desk too.
    doc.insert("urgency".into(), json!(if item.emergency { 1 } else { 5 }));
    doc.insert("language".into(), json!("zh-CN"));
    doc.insert("headlines".into(), json!([{"role": "main", "value": item.title}]));
    let mut descriptions = Vec::new();
    if !item.summary.trim().is_empty() {
        descriptions.push(json!({"role": "summary", "value": item.summary}));
    }
    if let Some(correction) = &item.correction {
        descriptions.push(json!({"role": "correction", "value": correction.notice_zh()}));
    }
    if !descriptions.is_empty() {
        doc.insert("descriptions".into(), Value::Array(descriptions));
    }
    // The disclosure annotation closes the body, as on the portal and in a printed 公文.
    let mut body = item.body_html.clone();
    if !item.annotation.is_empty() {
        body.push_str(&format!("<p>{}</p>", item.annotation));
    }
    doc.insert(
        "bodies".into(),
        json!([{"role": "main", k("contenttype"): "text/html", "value": body}]),
    );
    if !item.issuers.is_empty() {
        doc.insert("by".into(), json!(item.issuers.join("、")));
        let sources: Vec<Value> = item
            .issuers
            .iter()
            .map(|name| json!({"name": name, "role": "issuer"}))
            .collect();
        doc.insert(k("infosources").into(), Value::Array(sources));
    }
    let mut altids = vec![
        json!({"role": "gov:index-number", "value": item.index_no}),
        json!({"role": "herald:item-id", "value": item.item_id}),
    ];
    if let Some(doc_no) = &item.doc_no {
        altids.push(json!({"role": "gov:doc-number", "value": doc_no}));
    }
    doc.insert(k("altids").into(), Value::Array(altids));
    doc.insert(
        "genres".into(),
        json!([{"name": item.genre, "uri": format!("urn:herald:genre:{}", item.genre)}]),
    );
    let mut subjects = vec![json!({
        "name": item.catalog_name,
        "uri": format!("urn:herald:catalog:{}", item.catalog_code),
    })];
    subjects.extend(item.topic.iter().map(|topic| json!({"name": topic})));
    doc.insert("subjects".into(), Value::Array(subjects));
    doc.insert(
        "places".into(),
        json!([{"name": item.area_name, "uri": format!("urn:gbt2260:{}", item.area_code)}]),
    );
    if let Some(expires) = &item.expires_at {
        doc.insert("expires".into(), json!(expires));
    }
    if !links.portal_base.is_empty() {
        doc.insert(
            "renditions".into(),
            json!([{
                "name": "web",
                "href": format!("{}{}", links.portal_base, crate::portal::Portal::page_path(&item.item_id)),
                k("contenttype"): "text/html",
            }]),
        );
    }
    let associations: Vec<Value> = item
        .attachments
        .iter()
        .enumerate()
        .map(|(n, attachment)| {
            let mut association = json!({
                "name": format!("attachment-{}", n + 1),
                "uri": format!("urn:herald:attachment:{}", attachment.sha256),
                "type": news_type(&attachment.content_type),
                "title": attachment.filename,
            });
            if !links.portal_base.is_empty() {
                association["renditions"] = json!([{
                    "name": "original",
                    "href": format!("{}{ATTACHMENT_PATH}{}", links.portal_base, attachment.sha256),
                    k("contenttype"): attachment.content_type,
                    k("sizeinbytes"): attachment.size,
                    "title": attachment.filename,
                }]);
            }
            association
        })
        .collect();
    if !associations.is_empty() {
        doc.insert("associations".into(), Value::Array(associations));
    }
    doc.insert(
        "standard".into(),
        json!({"name": "ninjs", "version": version.as_str(), "schema": version.schema()}),
    );
    Value::Object(doc)
}

/// What tells a center to take the item down: the same `uri`, `pubstatus: canceled`, and the
/// reason as an editorial note (not for publication).
pub fn cancellation(item_id: &str, version: NinjsVersion, at: &str, reason: &str) -> Value {
    let k = |lower| version.key(lower);
    json!({
        "uri": uri(item_id),
        k("versioncreated"): at,
        k("pubstatus"): "canceled",
        k("ednote"): reason,
        "standard": {"name": "ninjs", "version": version.as_str(), "schema": version.schema()},
    })
}
