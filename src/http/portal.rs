//! The portal Herald serves at `/`: the 政府信息公开 column with its four sub-columns, a page
//! per organ and per township, item pages with the 文件信息 block, attachments, phrase search,
//! an Atom feed and the cleanup record. Plain server-rendered HTML, no script.
//!
//! **Architecture Invariant:** pages are rendered by askama with auto-escaping; the only raw
//! HTML is an item body, sanitised when stored and again when shown.

use std::collections::{BTreeMap, BTreeSet};

use actix_web::{
    HttpRequest, HttpResponse,
    http::{StatusCode, header::LOCATION},
    web,
};
use askama::Template;
use herald_channels::{
    devices::MEDIA_PATH,
    portal::{ATTACHMENT_PATH, PortalPage},
};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::Deserialize;

use crate::{
    domain::{
        area::AreaLevel,
        catalog::CatalogGroup,
        item::{is_sha256_hex, sanitise_html, styles_as_classes},
        search::{MAX_CHARS, MAX_WORDS, SearchTerms},
    },
    error::Error,
    http::{PublicSite, error::ApiError, extract::hub},
    hub::Hub,
    organs,
    portal::{
        Entry, LIST_LIMIT, PageLink, ShownVersion, entries, interpretations, live, related,
        search as portal_search, shown_page, shown_versions, takedown,
    },
    store::entities::{attachment, item, portal_page},
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(home))
        .route("/xxgk", web::get().to(column))
        .route("/xxgk/zcjd", web::get().to(interpretation_column))
        .route("/xxgk/ysqgk", web::get().to(application))
        .route("/xxgk/catalog/{code}", web::get().to(by_catalog))
        .route("/xxgk/organs/{name}", web::get().to(by_organ))
        .route("/xxgk/areas/{code}", web::get().to(by_area))
        .route("/xxgk/items/{id}", web::get().to(item_page))
        .route("/xxgk/items/{id}/versions/{version}", web::get().to(past_version))
        .route(
            &format!("{ATTACHMENT_PATH}{{sha256}}"),
            web::get().to(attachment_file),
        )
        .route(
            &format!("{MEDIA_PATH}{{sha256}}"),
            web::get().to(loudspeaker_audio),
        )
        .route("/xxgk/cleanup", web::get().to(cleanup))
        .route("/search", web::get().to(search))
        .route("/feed.xml", web::get().to(feed))
        .route("/assets/portal.css", web::get().to(stylesheet));
}

type Page = Result<HttpResponse, ApiError>;

/// The portal's one stylesheet, served from the hub so the pages need no inline style.
async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((actix_web::http::header::CACHE_CONTROL, "public, max-age=3600"))
        .body(include_str!("../../templates/portal/portal.css"))
}

fn site_name(hub: &Hub) -> String {
    format!("{}人民政府", hub.areas.root().name)
}

struct Crumb {
    href: String,
    label: String,
}

/// What every page shows around its content: the site's name, where the page sits
/// (当前位置, from 首页 down to the page itself) and the footer a government site must carry.
struct Frame {
    site_name: String,
    crumbs: Vec<Crumb>,
    footer: Vec<String>,
}

/// The path to the 政府信息公开 column, the first step of most trails.
const COLUMN: (&str, &str) = ("/xxgk", "政府信息公开");

/// The frame of a page reached through `trail` (link, label), the last step being the page.
fn frame(hub: &Hub, trail: &[(&str, &str)]) -> Frame {
    let portal = &hub.settings.portal;
    let host = if portal.host.is_empty() {
        format!("{}人民政府办公室", hub.areas.root().name)
    } else {
        portal.host.clone()
    };
    let footer = [
        ("主办单位", host.as_str()),
        ("网站标识码", portal.site_code.as_str()),
        ("", portal.icp_record.as_str()),
        ("", portal.police_record.as_str()),
        ("联系方式", portal.contact.as_str()),
    ]
    .into_iter()
    .filter(|(_, value)| !value.is_empty())
    .map(|(label, value)| match label {
        "" => value.to_owned(),
        label => format!("{label}：{value}"),
    })
    .collect();
    Frame {
        site_name: site_name(hub),
        crumbs: std::iter::once(("/", "首页"))
            .chain(trail.iter().copied())
            .map(|(href, label)| Crumb {
                href: href.to_owned(),
                label: label.to_owned(),
            })
            .collect(),
        footer,
    }
}

fn html(status: StatusCode, template: &impl Template) -> Page {
    let body = template
        .render()
        .map_err(|e| Error::from(anyhow::anyhow!("template: {e}")))?;
    Ok(HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(body))
}

#[derive(Template)]
#[template(path = "portal/list.html")]
struct ListPage {
    frame: Frame,
    heading: String,
    /// Standing text above the list, paragraph by paragraph (the 指南 and 制度 sub-columns).
    intro: Vec<String>,
    entries: Vec<Entry>,
}

/// A list of live pages under `heading`, reached from the 政府信息公开 column unless it is
/// the home page.
async fn list(req: &HttpRequest, heading: String, condition: Condition, intro: Vec<String>) -> Page {
    let hub = hub(req)?;
    let entries = entries(&hub, condition).await?;
    let trail: Vec<(&str, &str)> = match heading.as_str() {
        HOME_HEADING => Vec::new(),
        heading => vec![COLUMN, ("", heading)],
    };
    html(
        StatusCode::OK,
        &ListPage {
            frame: frame(&hub, &trail),
            heading,
            intro,
            entries,
        },
    )
}

const HOME_HEADING: &str = "最新信息";

async fn home(req: HttpRequest) -> Page {
    list(&req, HOME_HEADING.into(), Condition::all(), Vec::new()).await
}

/// 政策解读: every interpretation whose page is live.
async fn interpretation_column(req: HttpRequest) -> Page {
    list(&req, "政策解读".into(), interpretations(), Vec::new()).await
}

struct CatalogLink {
    code: String,
    name: String,
    count: usize,
}

/// A first-level column and its catalog entries, grouped as the catalog groups them (the
/// 法定主动公开内容 by the article of the 条例 or the standard directory that asks for them).
struct Section {
    name: &'static str,
    groups: Vec<(Option<&'static str>, Vec<CatalogLink>)>,
}

struct NamedLink {
    path: String,
    name: String,
}

struct AreaLink {
    code: String,
    name: String,
}

#[derive(Template)]
#[template(path = "portal/column.html")]
struct ColumnPage {
    frame: Frame,
    sections: Vec<Section>,
    organs: Vec<NamedLink>,
    townships: Vec<AreaLink>,
}

/// The four first-level columns every 政府信息公开 column has (国办公开办函〔2019〕61号).
fn section_of(group: CatalogGroup) -> usize {
    match group {
        CatalogGroup::Guide => 0,
        CatalogGroup::Rules => 1,
        CatalogGroup::StatutoryArt20
        | CatalogGroup::StatutoryArt21
        | CatalogGroup::StatutoryTownship
        | CatalogGroup::StandardDomain => 2,
        CatalogGroup::AnnualReport => 3,
    }
}

#[derive(Template)]
#[template(path = "portal/application.html")]
struct ApplicationPage {
    frame: Frame,
    office: String,
    address: String,
    phone: String,
    hours: String,
    email: String,
}

/// The receiving office (`portal.application_office`), or the site's host when none is set.
fn application_office(hub: &Hub) -> String {
    match hub.settings.portal.application_office.as_str() {
        "" => format!("{}人民政府办公室", hub.areas.root().name),
        office => office.to_owned(),
    }
}

/// 依申请公开: how to apply, the form, where, and the time limits the 条例 sets.
async fn application(req: HttpRequest) -> Page {
    let hub = hub(&req)?;
    let portal = &hub.settings.portal;
    html(
        StatusCode::OK,
        &ApplicationPage {
            frame: frame(&hub, &[COLUMN, ("", "依申请公开")]),
            office: application_office(&hub),
            address: portal.application_address.clone(),
            phone: portal.application_phone.clone(),
            hours: portal.application_hours.clone(),
            email: portal.application_email.clone(),
        },
    )
}

/// The 指南's standing text, from the settings: what is published where, how to apply, and
/// where to complain. Documents published under the 指南 entry are listed below it.
fn guide_text(hub: &Hub) -> Vec<String> {
    let site = site_name(hub);
    vec![
        format!(
            "为了更好地提供政府信息公开服务，依据《中华人民共和国政府信息公开条例》，编制本指南。{site}的政府信息，除依法不予公开的以外，均予以公开。"
        ),
        format!(
            "主动公开：本网站“政府信息公开”栏目按法定主动公开内容和基层政务公开标准目录分类发布，同时通过政务新媒体、县融媒体中心和村务公开栏等渠道发布。信息自形成或者变更之日起 20 个工作日内公开；撤回或失效的信息从各渠道下架，并在“清理结果”中列明。"
        ),
        format!(
            "依申请公开：向{}提出，受理方式、申请表和答复时限见“依申请公开”页面。",
            application_office(hub)
        ),
        "监督和救济：认为行政机关在政府信息公开工作中侵犯其合法权益的，可以向上一级行政机关或者政府信息公开工作主管部门投诉、举报，也可以依法申请行政复议或者提起行政诉讼。".to_owned(),
    ]
}

/// The 制度's standing text: the rules this site's publishing runs by, as the hub enforces
/// them. Documents published under the 制度 entry are listed below it.
fn rules_text(hub: &Hub) -> Vec<String> {
    let days = hub.settings.workflow.interpretation_working_days;
    vec![
        "公开属性认定制度：每份文件在起草时确定公开属性（主动公开、删减后公开、依申请公开、不予公开），只有前两类可以发布。".to_owned(),
        "保密审查制度：信息发布前须经审核人进行保密审查并批准，起草人不得审核本人起草的信息。".to_owned(),
        format!("政策解读制度：政策文件发布后 {days} 个工作日内发布其解读，解读与文件相互链接。"),
        "信息更正与清理制度：已发布信息有误的，经重新审核后发布更正说明；撤回或有效期届满的信息从所有渠道下架，并公布清理结果。".to_owned(),
        "应急信息优先发布制度：突发事件预警和应急信息优先于其他信息发布。".to_owned(),
    ]
}

/// The heading a group of catalog entries stands under inside its column; none where the
/// column is the group.
fn group_heading(group: CatalogGroup) -> Option<&'static str> {
    match group {
        CatalogGroup::StatutoryArt20 => Some("《政府信息公开条例》第二十条规定的信息"),
        CatalogGroup::StatutoryArt21 => Some("第二十一条规定的信息（县级人民政府及其部门）"),
        CatalogGroup::StatutoryTownship => Some("第二十一条规定的信息（乡镇人民政府）"),
        CatalogGroup::StandardDomain => Some("基层政务公开标准目录"),
        CatalogGroup::Guide | CatalogGroup::Rules | CatalogGroup::AnnualReport => None,
    }
}

async fn column(req: HttpRequest) -> Page {
    let hub = hub(&req)?;
    let rows = portal_page::Entity::find()
        .filter(live(hub.clock.now()))
        .all(&hub.db)
        .await
        .map_err(Error::from)?;
    // One link an organ, however its pages spell it: a page written under an alias, or before
    // the organ list, is the organ's.
    let organ_list = organs::load(&hub.db).await?;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut organs = BTreeSet::new();
    for row in &rows {
        *counts.entry(row.catalog.clone()).or_default() += 1;
        let issuers: Vec<String> = serde_json::from_str(&row.issuers)
            .map_err(|e| anyhow::anyhow!("portal page {} has unreadable issuers: {e}", row.item_id))
            .map_err(Error::from)?;
        organs.extend(
            issuers
                .iter()
                .map(|issuer| organ_list.canonical(issuer).to_owned()),
        );
    }
    let mut sections: Vec<Section> = [
        "政府信息公开指南",
        "政府信息公开制度",
        "法定主动公开内容",
        "政府信息公开年报",
    ]
    .into_iter()
    .map(|name| Section {
        name,
        groups: Vec::new(),
    })
    .collect();
    for entry in hub.catalog.iter() {
        let link = CatalogLink {
            code: entry.code.clone(),
            name: entry.name.clone(),
            count: counts.get(&entry.code).copied().unwrap_or(0),
        };
        let Some(section) = sections.get_mut(section_of(entry.group)) else {
            continue;
        };
        let heading = group_heading(entry.group);
        match section.groups.iter_mut().find(|(name, _)| *name == heading) {
            Some((_, links)) => links.push(link),
            None => section.groups.push((heading, vec![link])),
        }
    }
    let organs = organs
        .into_iter()
        .map(|name| NamedLink {
            path: form_urlencoded::byte_serialize(name.as_bytes()).collect(),
            name,
        })
        .collect();
    let townships = hub
        .areas
        .iter()
        .filter(|a| a.code.level() == AreaLevel::Township)
        .map(|a| AreaLink {
            code: a.code.to_string(),
            name: a.name.clone(),
        })
        .collect();
    html(
        StatusCode::OK,
        &ColumnPage {
            frame: frame(&hub, &[("", COLUMN.1)]),
            sections,
            organs,
            townships,
        },
    )
}

async fn by_catalog(req: HttpRequest, code: web::Path<String>) -> Page {
    let hub = hub(&req)?;
    let Some(entry) = hub.catalog.get(&code) else {
        return not_found(&hub);
    };
    let intro = match entry.group {
        CatalogGroup::Guide => guide_text(&hub),
        CatalogGroup::Rules => rules_text(&hub),
        _ => Vec::new(),
    };
    list(
        &req,
        entry.name.clone(),
        Condition::all().add(portal_page::Column::Catalog.eq(code.as_str())),
        intro,
    )
    .await
}

fn organ_path(name: &str) -> String {
    format!(
        "/xxgk/organs/{}",
        form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>()
    )
}

/// An organ's page: every live page whose issuers name it, by its name or an alias (pages
/// written before the organ list may carry one). An alias's address moves to the name's.
async fn by_organ(req: HttpRequest, name: web::Path<String>) -> Page {
    let hub = hub(&req)?;
    let organ_list = organs::load(&hub.db).await?;
    let (heading, spellings): (String, Vec<String>) = match organ_list.find(&name) {
        Some(organ) if organ.name != *name => {
            return Ok(HttpResponse::MovedPermanently()
                .insert_header((LOCATION, organ_path(&organ.name)))
                .finish());
        }
        Some(organ) => (organ.name.clone(), organ.spellings().map(str::to_owned).collect()),
        None => (name.clone(), vec![name.clone()]),
    };
    // Issuers are stored as a JSON array of strings: match each quoted spelling.
    let condition = spellings.iter().fold(Condition::any(), |any, spelling| {
        let quoted = serde_json::Value::from(spelling.as_str()).to_string();
        any.add(portal_page::Column::Issuers.contains(&quoted))
    });
    list(&req, heading, Condition::all().add(condition), Vec::new()).await
}

async fn by_area(req: HttpRequest, code: web::Path<String>) -> Page {
    let hub = hub(&req)?;
    let Ok(area) = hub.areas.resolve(&code) else {
        return not_found(&hub);
    };
    let name = hub.areas.get(&area).map(|a| a.name.clone()).unwrap_or_default();
    list(
        &req,
        name,
        Condition::all().add(portal_page::Column::AreaCode.starts_with(area.as_str())),
        Vec::new(),
    )
    .await
}

#[derive(Template)]
#[template(path = "portal/message.html")]
struct MessagePage {
    frame: Frame,
    heading: String,
    message: String,
}

pub(super) fn not_found(hub: &Hub) -> Page {
    let page = MessagePage {
        frame: frame(hub, &[("", "页面不存在")]),
        heading: "页面不存在".into(),
        message: "您访问的信息不存在或尚未发布。".into(),
    };
    html(StatusCode::NOT_FOUND, &page)
}

#[derive(Template)]
#[template(path = "portal/item.html")]
struct ItemPage {
    frame: Frame,
    page: PortalPage,
    body: String,
    /// 版本记录: every version shown, once the item has been corrected.
    versions: Vec<ShownVersion>,
    /// Set when this is an earlier version: the current one's number.
    superseded_by: Option<i32>,
    /// The policy this page interprets (解读), and the interpretations of this policy.
    policy: Option<PageLink>,
    interpretations: Vec<PageLink>,
}

#[derive(Template)]
#[template(path = "portal/gone.html")]
struct GonePage {
    frame: Frame,
    title: String,
    date: String,
    reason: String,
}

/// 410 for a page taken down: its title, and when and why (`takedown`).
fn gone(hub: &Hub, title: String, (date, reason): (String, String)) -> Page {
    html(
        StatusCode::GONE,
        &GonePage {
            frame: frame(hub, &[COLUMN, ("", title.as_str())]),
            title,
            date,
            reason,
        },
    )
}

/// An item's current page, as long as it is up: what it says when it came down otherwise, or
/// not found.
async fn live_page(hub: &Hub, id: &str) -> std::result::Result<PortalPage, Page> {
    let Some(row) = portal_page::Entity::find_by_id(id)
        .one(&hub.db)
        .await
        .map_err(|e| Err(Error::from(e).into()))?
    else {
        return Err(not_found(hub));
    };
    let Some(item) = item::Entity::find_by_id(id)
        .one(&hub.db)
        .await
        .map_err(|e| Err(Error::from(e).into()))?
    else {
        return Err(not_found(hub));
    };
    if let Some(why) = takedown(&row, &item, hub.clock.now()) {
        return Err(gone(hub, row.title, why));
    }
    serde_json::from_str(&row.payload).map_err(|e| Err(Error::from(anyhow::Error::new(e)).into()))
}

/// The page of a version; the history is listed only once there is more than one version.
async fn show(hub: &Hub, page: PortalPage, superseded_by: Option<i32>) -> Page {
    let mut versions = shown_versions(hub, &page.item_id).await?;
    if versions.len() < 2 {
        versions.clear();
    }
    let (policy, interpretations) = related(hub, &page.item_id).await?;
    let body = styles_as_classes(&sanitise_html(&page.body_html));
    html(
        StatusCode::OK,
        &ItemPage {
            frame: frame(
                hub,
                &[
                    COLUMN,
                    (
                        &format!("/xxgk/catalog/{}", page.catalog_code),
                        &page.catalog_name,
                    ),
                    ("", &page.title),
                ],
            ),
            page,
            body,
            versions,
            superseded_by,
            policy,
            interpretations,
        },
    )
}

/// The page `page` would be, shown to staff before it is published (the console's preview).
pub async fn preview(hub: &Hub, page: PortalPage) -> Page {
    show(hub, page, None).await
}

async fn item_page(req: HttpRequest, id: web::Path<String>) -> Page {
    let hub = hub(&req)?;
    match live_page(&hub, &id).await {
        Ok(page) => show(&hub, page, None).await,
        Err(answer) => answer,
    }
}

/// An earlier version of a corrected item, while the item is up: a correction keeps what it
/// corrected open to read (版本记录), marked as replaced.
async fn past_version(req: HttpRequest, path: web::Path<(String, String)>) -> Page {
    let hub = hub(&req)?;
    let (id, version) = path.into_inner();
    let current = match live_page(&hub, &id).await {
        Ok(page) => page,
        Err(answer) => return answer,
    };
    let Ok(version) = version.parse::<i32>() else {
        return not_found(&hub);
    };
    if version == current.version {
        return show(&hub, current, None).await;
    }
    match shown_page(&hub, &id, version).await? {
        Some(page) => show(&hub, page, Some(current.version)).await,
        None => not_found(&hub),
    }
}

async fn attachment_file(req: HttpRequest, sha256: web::Path<String>) -> Page {
    let hub = hub(&req)?;
    if !is_sha256_hex(&sha256) {
        return not_found(&hub);
    }
    let named = format!("\"sha256\":\"{}\"", sha256.as_str());
    // Only attachments of a live page are public; one of a page taken down says so.
    let referenced = portal_page::Entity::find()
        .filter(portal_page::Column::Payload.contains(&named))
        .all(&hub.db)
        .await
        .map_err(Error::from)?;
    let now = hub.clock.now();
    let mut taken_down = None;
    let mut live_page = None;
    for row in referenced {
        let item = item::Entity::find_by_id(row.item_id.as_str())
            .one(&hub.db)
            .await
            .map_err(Error::from)?;
        match item.as_ref().and_then(|item| takedown(&row, item, now)) {
            Some(why) => taken_down = taken_down.or(Some((row.title.clone(), why))),
            None if item.is_some() => live_page = Some(row),
            None => {}
        }
    }
    let Some(page) = live_page else {
        return match taken_down {
            Some((title, why)) => gone(&hub, title, why),
            None => not_found(&hub),
        };
    };
    let Some(file) = attachment::Entity::find_by_id(sha256.as_str())
        .one(&hub.db)
        .await
        .map_err(Error::from)?
    else {
        return not_found(&hub);
    };
    // Saved under its own name (RFC 6266 `filename*`), when the page lists it as an attachment.
    let listed: PortalPage =
        serde_json::from_str(&page.payload).map_err(|e| Error::from(anyhow::Error::new(e)))?;
    let filename = listed
        .attachments
        .into_iter()
        .find(|a| a.sha256 == sha256.as_str())
        .map(|a| a.filename);
    let mut answer = HttpResponse::Ok();
    answer.content_type(file.content_type);
    if let Some(filename) = filename {
        answer.insert_header(download_as(&filename));
    }
    Ok(answer.body(file.data))
}

/// `Content-Disposition: attachment` naming `filename`: UTF-8 in `filename*`, and an ASCII
/// stand-in (its extension kept) for clients that read only `filename`.
fn download_as(filename: &str) -> actix_web::http::header::ContentDisposition {
    use actix_web::http::header::{
        Charset, ContentDisposition, DispositionParam, DispositionType, ExtendedValue,
    };
    let extension = filename
        .rsplit_once('.')
        .map(|(_, ext)| ext)
        .filter(|ext| ext.chars().all(|c| c.is_ascii_alphanumeric()))
        .unwrap_or("bin");
    ContentDisposition {
        disposition: DispositionType::Attachment,
        parameters: vec![
            DispositionParam::Filename(format!("attachment.{extension}")),
            DispositionParam::FilenameExt(ExtendedValue {
                charset: Charset::Ext("UTF-8".into()),
                language_tag: None,
                value: filename.as_bytes().to_vec(),
            }),
        ],
    }
}

/// A recording for village loudspeakers (`attachments::for_loudspeakers` says which). The
/// command pins its hash, so the file never changes under this address; but it must stop being
/// served the moment its item is withdrawn, so no cache may keep it without asking.
async fn loudspeaker_audio(req: HttpRequest, sha256: web::Path<String>) -> Page {
    let hub = hub(&req)?;
    if !is_sha256_hex(&sha256) {
        return not_found(&hub);
    }
    match crate::attachments::for_loudspeakers(&hub, &sha256).await? {
        Some(file) => Ok(HttpResponse::Ok()
            .content_type(file.content_type)
            .insert_header((actix_web::http::header::ETAG, format!("\"{}\"", file.sha256)))
            .insert_header((actix_web::http::header::CACHE_CONTROL, "no-cache"))
            .body(file.data)),
        None => not_found(&hub),
    }
}

struct CleanupEntry {
    title: String,
    date: String,
    reason: String,
}

#[derive(Template)]
#[template(path = "portal/cleanup.html")]
struct CleanupPage {
    frame: Frame,
    entries: Vec<CleanupEntry>,
}

/// 清理结果: what came down from the portal, and when.
async fn cleanup(req: HttpRequest) -> Page {
    let hub = hub(&req)?;
    let entries = crate::portal::taken_down(&hub, None)
        .await?
        .into_iter()
        .map(|down| CleanupEntry {
            title: down.title,
            date: down.date,
            reason: down.reason,
        })
        .collect();
    html(
        StatusCode::OK,
        &CleanupPage {
            frame: frame(&hub, &[COLUMN, ("", "清理结果")]),
            entries,
        },
    )
}

#[derive(Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: String,
}

#[derive(Template)]
#[template(path = "portal/search.html")]
struct SearchPage {
    frame: Frame,
    query: String,
    /// Why the search was not run, in words for the reader.
    problem: Option<String>,
    entries: Vec<Entry>,
    shown_at_most: usize,
}

/// Search by words, 发文字号 or 索引号 (`domain::search`): every word must occur.
async fn search(req: HttpRequest, query: web::Query<SearchQuery>) -> Page {
    let hub = hub(&req)?;
    let (status, problem, entries) = match SearchTerms::parse(&query.q) {
        Ok(Some(terms)) => (StatusCode::OK, None, portal_search(&hub, &terms).await?),
        Ok(None) => (StatusCode::OK, None, Vec::new()),
        Err(_) => (
            StatusCode::BAD_REQUEST,
            Some(format!(
                "搜索词过长：最多 {MAX_WORDS} 个词、{MAX_CHARS} 个字，请缩短后重试。"
            )),
            Vec::new(),
        ),
    };
    html(
        status,
        &SearchPage {
            frame: frame(&hub, &[("", "站内搜索")]),
            query: query.q.trim().chars().take(MAX_CHARS).collect(),
            problem,
            entries,
            shown_at_most: LIST_LIMIT,
        },
    )
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn feed(req: HttpRequest) -> Page {
    let hub = hub(&req)?;
    let rows = portal_page::Entity::find()
        .filter(live(hub.clock.now()))
        .order_by_desc(portal_page::Column::PublishedAt)
        .limit(50)
        .all(&hub.db)
        .await
        .map_err(Error::from)?;
    let base = req
        .app_data::<web::Data<PublicSite>>()
        .map(|site| site.base.clone())
        .ok_or_else(|| Error::from(anyhow::anyhow!("PublicSite missing from app data")))?;
    let updated = rows
        .first()
        .map(|r| r.published_at)
        .unwrap_or_else(|| hub.clock.now());
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">\n<title>{}</title>\n<id>{base}/</id>\n<link href=\"{base}/\"/>\n<link rel=\"self\" href=\"{base}/feed.xml\"/>\n<updated>{}</updated>\n",
        xml_escape(&site_name(&hub)),
        updated.to_rfc3339()
    );
    for row in rows {
        let page: PortalPage =
            serde_json::from_str(&row.payload).map_err(|e| Error::from(anyhow::Error::new(e)))?;
        let url = format!("{base}/xxgk/items/{}", row.item_id);
        xml.push_str(&format!(
            "<entry>\n<title>{}</title>\n<id>{url}</id>\n<link href=\"{url}\"/>\n<updated>{}</updated>\n<summary>{}</summary>\n</entry>\n",
            xml_escape(&row.title),
            row.published_at.to_rfc3339(),
            xml_escape(&page.summary),
        ));
    }
    xml.push_str("</feed>\n");
    Ok(HttpResponse::Ok()
        .content_type("application/atom+xml; charset=utf-8")
        .body(xml))
}
