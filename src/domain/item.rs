//! An item's content as a publisher submits it, and the validated, immutable form a version
//! stores. Every channel renders from a stored version; nothing renders from raw input.

use chrono::NaiveDate;
use regex::Regex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{
    area::AreaTree,
    catalog::Catalog,
    document::{DocNumber, IndexNumber},
    organ::OrganList,
    text::{MAX_ID_CHARS, MAX_NAME_CHARS, single_line},
    topic::TopicVocabulary,
};
use crate::error::Error;

/// 公开属性, decided when the document is drafted.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
    strum::Display,
    sea_orm::DeriveValueType,
)]
#[sea_orm(value_type = "String")]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Disclosure {
    /// 此件公开发布
    Public,
    /// 此件删减后公开: channels receive the redacted body only.
    PublicRedacted,
    /// 此件依申请公开: never leaves the store.
    OnRequest,
    /// 此件不公开: never leaves the store; a legal reason is recorded.
    NotPublic,
}

herald_channels::wire_names!(Disclosure);

impl Disclosure {
    pub fn may_leave_the_store(self) -> bool {
        matches!(self, Disclosure::Public | Disclosure::PublicRedacted)
    }

    /// The 附注 printed under the 成文日期.
    pub fn annotation(self) -> &'static str {
        match self {
            Disclosure::Public => "（此件公开发布）",
            Disclosure::PublicRedacted => "（此件删减后公开）",
            Disclosure::OnRequest => "（此件依申请公开）",
            Disclosure::NotPublic => "（此件不公开）",
        }
    }
}

/// 有效性 of a normative document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Validity {
    /// 现行有效
    Current,
    /// 已修改
    Amended,
    /// 已废止
    Repealed,
    /// 已失效
    Lapsed,
}

impl Validity {
    pub const ALL: [Validity; 4] = [
        Validity::Current,
        Validity::Amended,
        Validity::Repealed,
        Validity::Lapsed,
    ];

    pub fn label_zh(self) -> &'static str {
        match self {
            Validity::Current => "现行有效",
            Validity::Amended => "已修改",
            Validity::Repealed => "已废止",
            Validity::Lapsed => "已失效",
        }
    }
}

/// 体裁: the fifteen 公文 kinds of the 党政机关公文处理工作条例, plus the non-公文 kinds portals carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Genre {
    Resolution,
    Decision,
    Order,
    Communique,
    Announcement,
    PublicNotice,
    Opinion,
    Notice,
    Bulletin,
    Report,
    Request,
    Reply,
    Motion,
    Letter,
    Minutes,
    News,
    Interpretation,
    Other,
}

impl Genre {
    /// Every genre, in the order forms offer them: the 公文 kinds as the 条例 lists them first.
    pub const ALL: [Genre; 18] = [
        Genre::Resolution,
        Genre::Decision,
        Genre::Order,
        Genre::Communique,
        Genre::Announcement,
        Genre::PublicNotice,
        Genre::Opinion,
        Genre::Notice,
        Genre::Bulletin,
        Genre::Report,
        Genre::Request,
        Genre::Reply,
        Genre::Motion,
        Genre::Letter,
        Genre::Minutes,
        Genre::News,
        Genre::Interpretation,
        Genre::Other,
    ];

    pub fn label_zh(self) -> &'static str {
        match self {
            Genre::Resolution => "决议",
            Genre::Decision => "决定",
            Genre::Order => "命令（令）",
            Genre::Communique => "公报",
            Genre::Announcement => "公告",
            Genre::PublicNotice => "通告",
            Genre::Opinion => "意见",
            Genre::Notice => "通知",
            Genre::Bulletin => "通报",
            Genre::Report => "报告",
            Genre::Request => "请示",
            Genre::Reply => "批复",
            Genre::Motion => "议案",
            Genre::Letter => "函",
            Genre::Minutes => "纪要",
            Genre::News => "新闻动态",
            Genre::Interpretation => "政策解读",
            Genre::Other => "其他",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachmentRef {
    pub sha256: String,
    pub filename: String,
}

/// What a publisher sends to create or edit an item.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemInput {
    pub title: String,
    pub body: String,
    #[serde(default)]
    pub summary: String,
    pub disclosure: Disclosure,
    #[serde(default)]
    pub redacted_body: Option<String>,
    #[serde(default)]
    pub legal_reason: Option<String>,
    pub index_no: String,
    /// 发文机关: organs of the organ list (`GET /api/v1/organs`), by full name or alias; each
    /// is stored under its full name.
    pub issuers: Vec<String>,
    #[serde(default)]
    pub doc_no: Option<String>,
    pub written_date: NaiveDate,
    /// 主题分类 from the vocabulary (`GET /api/v1/topics`): a class (`["综合政务"]`), or a
    /// class and one of its entries (`["综合政务", "应急管理"]` or `["综合政务\\应急管理"]`);
    /// an entry alone is filed under its class when only one class has it.
    #[serde(default)]
    pub topic: Vec<String>,
    #[serde(default)]
    pub validity: Option<Validity>,
    pub genre: Genre,
    #[serde(default)]
    pub keywords: Vec<String>,
    pub catalog: String,
    pub area_code: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub attachments: Vec<AttachmentRef>,
    #[serde(default)]
    pub emergency: bool,
    #[serde(default)]
    pub expires_on: Option<NaiveDate>,
    /// For a policy interpretation (解读): the id of the policy item it explains.
    #[serde(default)]
    pub interprets: Option<String>,
    /// The 发文字号 is one another item of the same 发文机关 already has, and that is intended
    /// (a document reissued as is); without it such a duplicate is refused.
    #[serde(default)]
    pub confirm_duplicate_doc_no: bool,
    /// Required to edit a published item, and refused otherwise: the edit is then a correction
    /// (更正), and this note, shown with it on every channel, says what was corrected.
    #[serde(default)]
    pub correction_note: Option<String>,
}

/// A validated item version's content. Its canonical JSON is what the content hash covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ItemContent {
    pub title: String,
    pub body: String,
    pub summary: String,
    pub disclosure: Disclosure,
    pub redacted_body: Option<String>,
    pub legal_reason: Option<String>,
    pub index_no: String,
    /// Full names of organs of the organ list (versions written before it hold what was typed).
    pub issuers: Vec<String>,
    pub doc_no: Option<String>,
    pub written_date: NaiveDate,
    /// `[class]` or `[class, entry]` of the 主题分类 vocabulary, shown as `一级\二级`.
    pub topic: Vec<String>,
    pub validity: Option<Validity>,
    pub genre: Genre,
    pub keywords: Vec<String>,
    pub catalog: String,
    pub area_code: String,
    pub tags: Vec<String>,
    pub attachments: Vec<AttachmentRef>,
    pub emergency: bool,
    pub expires_on: Option<NaiveDate>,
    pub interprets: Option<String>,
}

/// What staff find an item by in their lists, folded as searches are.
pub fn item_search_key(title: &str, index_no: &str, doc_no: Option<&str>, issuers: &[String]) -> String {
    let mut parts = vec![title, index_no];
    parts.extend(doc_no);
    parts.extend(issuers.iter().map(String::as_str));
    crate::domain::search::fold(&parts.join(" "))
}

/// What the content is checked against; all of it comes from configuration.
pub struct ContentRules<'a> {
    pub index_no_pattern: &'a Regex,
    pub max_body_bytes: usize,
    pub areas: &'a AreaTree,
    pub catalog: &'a Catalog,
    /// 发文机关名录: every issuer must be one of its organs, named or aliased.
    pub organs: &'a OrganList,
    /// The issuers the item's current version names (empty for a new item): a retired organ
    /// among them stays accepted, so a correction keeps who issued the document.
    pub kept_issuers: &'a [String],
    /// 主题分类: the topic must be one of its classes, or a class and one of its entries.
    pub topics: &'a TopicVocabulary,
    /// Today in Beijing: no document is written after it.
    pub today: NaiveDate,
}

/// The founding of the People's Republic: no 公文 of a county government is written before it.
pub const EARLIEST_WRITTEN_DATE: NaiveDate = match NaiveDate::from_ymd_opt(1949, 10, 1) {
    Some(date) => date,
    None => NaiveDate::MIN,
};

const MAX_TITLE_CHARS: usize = 200;
const MAX_SUMMARY_CHARS: usize = 500;
const MAX_LIST_ENTRIES: usize = 20;
const MAX_SHORT_TEXT_CHARS: usize = MAX_NAME_CHARS;
const MAX_ATTACHMENTS: usize = 50;

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Error {
    Error::Validation {
        field: field.into(),
        message: message.into(),
    }
}

fn plain_list(field: &str, raw: &[String], required: bool) -> Result<Vec<String>, Error> {
    if required && raw.is_empty() {
        return Err(invalid(field, "must name at least one entry"));
    }
    if raw.len() > MAX_LIST_ENTRIES {
        return Err(invalid(
            field,
            format!("must have at most {MAX_LIST_ENTRIES} entries"),
        ));
    }
    raw.iter()
        .enumerate()
        .map(|(i, entry)| single_line(&format!("{field}[{i}]"), entry, MAX_SHORT_TEXT_CHARS, true))
        .collect()
}

/// Where an item body's images may come from: the hub's own attachments, never another site
/// (which would learn who reads what, and could change the picture after review).
pub const BODY_IMAGE_PREFIX: &str = herald_channels::portal::ATTACHMENT_PATH;

/// Rich text reduced to an allow-list of tags and attributes: no script, no event handler,
/// no `javascript:` URL, no image from another site survives, whatever channel renders it.
pub fn sanitise_html(raw: &str) -> String {
    ammonia::Builder::default()
        .link_rel(Some("noopener noreferrer"))
        // A 公文's 落款 and date stand right-aligned (GB/T 9704): alignment is kept, nothing
        // else of a style.
        .add_generic_attributes(["style"])
        .attribute_filter(|element, attribute, value| match (element, attribute) {
            ("img", "src") if !value.starts_with(BODY_IMAGE_PREFIX) || value.contains("..") => None,
            (_, "style") => alignment_only(value).map(Into::into),
            _ => Some(value.into()),
        })
        .clean(raw)
        .to_string()
}

/// Of a `style`, only `text-align` (left, right, center, justify) and `text-indent` (in em);
/// `None` when nothing is left.
fn alignment_only(style: &str) -> Option<String> {
    let kept: Vec<String> = style
        .split(';')
        .filter_map(|declaration| {
            let (name, value) = declaration.split_once(':')?;
            let (name, value) = (
                name.trim().to_ascii_lowercase(),
                value.trim().to_ascii_lowercase(),
            );
            let allowed = match name.as_str() {
                "text-align" => ALIGNMENTS.contains(&value.as_str()),
                "text-indent" => INDENTS.contains(&value.as_str()),
                _ => false,
            };
            allowed.then(|| format!("{name}:{value}"))
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join(";"))
}

/// The alignments kept (the portal's stylesheet has a class for each).
const ALIGNMENTS: [&str; 4] = ["left", "right", "center", "justify"];

/// The first-line indents kept: a 公文 indents its paragraphs by two characters.
const INDENTS: [&str; 3] = ["1em", "2em", "4em"];

/// A kept style as the portal's stylesheet classes: the portal's Content-Security-Policy
/// (`style-src 'self'`) refuses inline styles, so `style="text-align:right"` is shown as
/// `class="align-right"`. Every value `alignment_only` keeps has its class.
pub fn styles_as_classes(html: &str) -> String {
    const ATTRIBUTE: &str = " style=\"";
    let mut shown = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(at) = rest.find(ATTRIBUTE) {
        let value_and_after = &rest[at + ATTRIBUTE.len()..];
        // Rewritten only when the value is exactly what `alignment_only` keeps: text that
        // merely looks like an attribute (a body may say ` style="`) is copied as it stands,
        // so no markup can be assembled from it.
        let classes = value_and_after
            .find('"')
            .and_then(|end| Some((end, kept_style_classes(&value_and_after[..end])?)));
        match classes {
            Some((end, classes)) => {
                shown.push_str(&rest[..at]);
                shown.push_str(&format!(" class=\"{classes}\""));
                rest = &value_and_after[end + 1..];
            }
            None => {
                shown.push_str(&rest[..at + ATTRIBUTE.len()]);
                rest = value_and_after;
            }
        }
    }
    shown.push_str(rest);
    shown
}

/// The classes for a style value `alignment_only` produced; `None` for anything else.
fn kept_style_classes(style: &str) -> Option<String> {
    let mut classes = Vec::new();
    for declaration in style.split(';') {
        let class = match declaration.split_once(':')? {
            ("text-align", value) if ALIGNMENTS.contains(&value) => {
                format!("align-{value}")
            }
            ("text-indent", value) if INDENTS.contains(&value) => format!("indent-{value}"),
            _ => return None,
        };
        classes.push(class);
    }
    Some(classes.join(" "))
}

/// Text pasted without markup, as HTML that keeps its paragraphs: one `<p>` a line.
fn paragraphs_of(plain: &str) -> String {
    plain
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| format!("<p>{}</p>", herald_channels::escape_html(line)))
        .collect()
}

fn rich_text(field: &str, raw: &str, max_bytes: usize) -> Result<String, Error> {
    if raw.len() > max_bytes {
        return Err(invalid(
            field,
            format!("is {} bytes; the limit is {max_bytes}", raw.len()),
        ));
    }
    // Markup is a tag's start (`<p`, `</`, `<!`); a `<` in running text is not.
    let is_markup = raw
        .as_bytes()
        .windows(2)
        .any(|pair| pair[0] == b'<' && (pair[1].is_ascii_alphabetic() || b"/!".contains(&pair[1])));
    let clean = if is_markup {
        sanitise_html(raw)
    } else {
        sanitise_html(&paragraphs_of(raw))
    };
    if clean.trim().is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    Ok(clean)
}

pub fn is_sha256_hex(raw: &str) -> bool {
    raw.len() == 64
        && raw
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl ItemContent {
    /// What staff find the item by in their lists: title, 索引号, 发文字号 and 发文机关.
    pub fn search_key(&self) -> String {
        item_search_key(&self.title, &self.index_no, self.doc_no.as_deref(), &self.issuers)
    }

    pub fn parse(input: ItemInput, rules: &ContentRules<'_>) -> Result<Self, Error> {
        let title = single_line("title", &input.title, MAX_TITLE_CHARS, true)?;
        let body = rich_text("body", &input.body, rules.max_body_bytes)?;
        let summary = single_line("summary", &input.summary, MAX_SUMMARY_CHARS, false)?;

        let redacted_body = match (input.disclosure, input.redacted_body.as_deref()) {
            (Disclosure::PublicRedacted, Some(raw)) => {
                Some(rich_text("redacted_body", raw, rules.max_body_bytes)?)
            }
            (Disclosure::PublicRedacted, None) => {
                return Err(invalid(
                    "redacted_body",
                    "is required when disclosure is public_redacted (此件删减后公开)",
                ));
            }
            (_, Some(_)) => {
                return Err(invalid(
                    "redacted_body",
                    "is only accepted when disclosure is public_redacted",
                ));
            }
            (_, None) => None,
        };
        let legal_reason = match (input.disclosure, input.legal_reason.as_deref()) {
            (Disclosure::NotPublic, Some(raw)) => {
                Some(single_line("legal_reason", raw, MAX_SUMMARY_CHARS, true)?)
            }
            (Disclosure::NotPublic, None) => {
                return Err(invalid(
                    "legal_reason",
                    "is required when disclosure is not_public (此件不公开)",
                ));
            }
            (_, Some(raw)) => Some(single_line("legal_reason", raw, MAX_SUMMARY_CHARS, false)?),
            (_, None) => None,
        }
        .filter(|reason| !reason.is_empty());

        let index_no = single_line("index_no", &input.index_no, MAX_SHORT_TEXT_CHARS, true)?;
        let index_no =
            IndexNumber::parse(&index_no, rules.index_no_pattern).map_err(|m| invalid("index_no", m))?;
        let doc_no = single_line(
            "doc_no",
            input.doc_no.as_deref().unwrap_or_default(),
            MAX_SHORT_TEXT_CHARS,
            false,
        )?;
        let doc_no = Some(doc_no)
            .filter(|raw| !raw.is_empty())
            .map(|raw| DocNumber::parse(&raw).map(DocNumber::into_string))
            .transpose()
            .map_err(|m| invalid("doc_no", m))?;
        let area_code = single_line("area_code", &input.area_code, MAX_SHORT_TEXT_CHARS, true)?;
        let area = rules
            .areas
            .resolve(&area_code)
            .map_err(|m| invalid("area_code", m))?;
        let catalog = single_line("catalog", &input.catalog, MAX_SHORT_TEXT_CHARS, true)?;
        let catalog = catalog.as_str();
        if rules.catalog.get(catalog).is_none() {
            return Err(invalid(
                "catalog",
                format!("catalog entry `{catalog}` is not configured"),
            ));
        }
        if input.written_date < EARLIEST_WRITTEN_DATE || input.written_date > rules.today {
            return Err(invalid(
                "written_date",
                format!(
                    "成文日期 must be a date (YYYY-MM-DD) from {EARLIEST_WRITTEN_DATE} to today ({})",
                    rules.today
                ),
            ));
        }
        if let Some(expires_on) = input.expires_on
            && expires_on < input.written_date
        {
            return Err(invalid("expires_on", "must not be before written_date"));
        }
        if input.attachments.len() > MAX_ATTACHMENTS {
            return Err(invalid(
                "attachments",
                format!("must have at most {MAX_ATTACHMENTS} entries"),
            ));
        }
        for (i, attachment) in input.attachments.iter().enumerate() {
            if !is_sha256_hex(&attachment.sha256) {
                return Err(invalid(
                    format!("attachments[{i}].sha256"),
                    "must be a lower-case SHA-256 hex digest",
                ));
            }
            single_line(
                &format!("attachments[{i}].filename"),
                &attachment.filename,
                MAX_SHORT_TEXT_CHARS,
                true,
            )?;
        }
        let interprets = single_line(
            "interprets",
            input.interprets.as_deref().unwrap_or_default(),
            MAX_ID_CHARS,
            false,
        )?;
        let interprets = Some(interprets).filter(|id| !id.is_empty());

        Ok(Self {
            title,
            body,
            summary,
            disclosure: input.disclosure,
            redacted_body,
            legal_reason,
            index_no: index_no.into_string(),
            issuers: rules
                .organs
                .resolve_issuers(&plain_list("issuers", &input.issuers, true)?, rules.kept_issuers)?,
            doc_no,
            written_date: input.written_date,
            topic: rules.topics.resolve(&plain_list("topic", &input.topic, false)?)?,
            validity: input.validity,
            genre: input.genre,
            keywords: plain_list("keywords", &input.keywords, false)?,
            catalog: catalog.to_owned(),
            area_code: area.as_str().to_owned(),
            tags: plain_list("tags", &input.tags, false)?,
            attachments: input
                .attachments
                .into_iter()
                .map(|a| AttachmentRef {
                    sha256: a.sha256,
                    filename: a.filename.trim().to_owned(),
                })
                .collect(),
            emergency: input.emergency,
            expires_on: input.expires_on,
            interprets,
        })
    }

    /// The body every channel receives: the redacted one for 此件删减后公开.
    pub fn public_body(&self) -> &str {
        self.redacted_body.as_deref().unwrap_or(&self.body)
    }

    pub fn canonical_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| unreachable!("ItemContent always serialises: {e}"))
    }

    pub fn content_hash(&self) -> String {
        sha256_hex(self.canonical_json().as_bytes())
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
    strum::Display,
    sea_orm::DeriveValueType,
)]
#[sea_orm(value_type = "String")]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ItemState {
    Draft,
    InReview,
    Approved,
    Published,
    Withdrawn,
    Expired,
}

herald_channels::wire_names!(ItemState);

/// Where a correction (更正) of a published item stands. It is reviewed as a first version is;
/// approval publishes it, so there is no state between approved and published.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
    strum::Display,
    sea_orm::DeriveValueType,
)]
#[sea_orm(value_type = "String")]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Correcting {
    Draft,
    InReview,
}

herald_channels::wire_names!(Correcting);

impl ItemState {
    /// Withdrawn and expired items never go out again.
    pub fn is_terminal(self) -> bool {
        matches!(self, ItemState::Withdrawn | ItemState::Expired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::assert_wire_names_agree;

    #[test]
    fn wire_names_match_serde() {
        assert_wire_names_agree(ItemState::ALL, ItemState::as_str, ItemState::parse);
        assert_eq!(ItemState::ALL.len(), 6);
        assert_wire_names_agree(Correcting::ALL, Correcting::as_str, Correcting::parse);
        assert_wire_names_agree(Disclosure::ALL, Disclosure::as_str, Disclosure::parse);
        assert_eq!(Disclosure::ALL.len(), 4);
        assert_eq!(ItemState::parse("InReview"), None);
        assert_eq!(Disclosure::parse(""), None);
    }

    #[test]
    fn alignment_survives_sanitising_and_nothing_else_of_a_style() {
        let clean = sanitise_html(
            r#"<p style="text-align: right">峨山彝族自治县人民政府</p><p style="text-indent:2em;background:url(x.png)">正文</p><p style="color:red">红字</p>"#,
        );
        assert!(
            clean.contains(r#"<p style="text-align:right">峨山彝族自治县人民政府</p>"#),
            "{clean}"
        );
        assert!(
            clean.contains(r#"<p style="text-indent:2em">正文</p>"#),
            "{clean}"
        );
        assert!(clean.contains("<p>红字</p>"), "{clean}");
    }

    #[test]
    fn kept_styles_show_as_the_portals_classes() {
        let clean = sanitise_html(r#"<p style="text-align:right;text-indent:2em">落款</p><p>正文</p>"#);
        assert_eq!(
            styles_as_classes(&clean),
            r#"<p class="align-right indent-2em">落款</p><p>正文</p>"#
        );
        // Text that only looks like the attribute stays text: no markup is assembled from it.
        let tricky =
            sanitise_html(r#"<p>a style="</p><p title="<img src=//evil.example/x onerror=alert(1)>">b</p>"#);
        let shown = styles_as_classes(&tricky);
        assert_eq!(shown, tricky);
        assert!(!shown.contains("<img"), "{shown}");
    }

    #[test]
    fn pasted_plain_text_keeps_its_paragraphs() {
        let body = rich_text(
            "body",
            "各乡镇人民政府：\n\n  现将有关事项通知如下。\r\n一、提高认识 <不要> & 落实",
            10_000,
        )
        .expect("accepted");
        assert_eq!(
            body,
            "<p>各乡镇人民政府：</p><p>现将有关事项通知如下。</p><p>一、提高认识 &lt;不要&gt; &amp; 落实</p>"
        );
    }

    #[test]
    fn sanitising_removes_scripts_handlers_and_javascript_urls() {
        let dirty = r#"<p onclick="x()">正文<script>alert(1)</script><img src="a.png" onerror="alert(2)"><a href="javascript:alert(3)">链接</a></p>"#;
        let clean = sanitise_html(dirty);
        for banned in ["<script", "onclick", "onerror", "javascript:"] {
            assert!(!clean.contains(banned), "{banned} survived in {clean}");
        }
        assert!(clean.contains("正文"));
    }

    #[test]
    fn images_in_a_body_come_only_from_the_hubs_attachments() {
        let own = format!("{BODY_IMAGE_PREFIX}{}", "a".repeat(64));
        let dirty = format!(
            r#"<p><img src="https://tracker.example/p.png"><img src="//evil.example/x.png"><img src="{own}"><img src="/xxgk/attachments/../../admin"></p>"#
        );
        let clean = sanitise_html(&dirty);
        assert!(!clean.contains("example"), "{clean}");
        assert!(!clean.contains(".."), "{clean}");
        assert!(clean.contains(&format!(r#"src="{own}""#)), "{clean}");
    }

    #[test]
    fn disclosure_round_trips_through_its_wire_name() {
        for d in [
            Disclosure::Public,
            Disclosure::PublicRedacted,
            Disclosure::OnRequest,
            Disclosure::NotPublic,
        ] {
            assert_eq!(Disclosure::parse(d.as_str()), Some(d));
        }
        assert!(Disclosure::Public.may_leave_the_store());
        assert!(Disclosure::PublicRedacted.may_leave_the_store());
        assert!(!Disclosure::OnRequest.may_leave_the_store());
        assert!(!Disclosure::NotPublic.may_leave_the_store());
    }
}
