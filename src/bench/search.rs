//! `herald bench search`: the portal's search and the staff list's search over many published
//! items, on a scratch database; prints p50 / p95 / max per kind of search. Every portal
//! search is also checked against a plain scan of all pages, so a fast wrong answer fails the
//! run.

use std::time::{Duration, Instant};

use anyhow::Context;
use herald_channels::{ChannelKind, PublishedItem, portal::render_page};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use super::{backend_name, err, on_scratch, percentile};
use crate::{
    accounts::{self, Caller, NewUser},
    clock::{Clock, china_offset},
    config::Settings,
    domain::{
        item::{Disclosure, ItemState, item_search_key},
        search::SearchTerms,
        user::Role,
    },
    hub::Hub,
    portal::{self, store::page_row},
    simulate::Dice,
    startup::open_hub,
    store::{
        begin_write,
        entities::{item, portal_page, target},
    },
    workflow::{self, ItemFilter},
};

pub struct SearchOptions {
    pub items: usize,
    /// Searches of each kind.
    pub queries: usize,
    pub postgres_url: Option<String>,
}

/// Words the generated titles and bodies are made of: a county government's vocabulary, so
/// that two-character words are common and some are rare, as in real text.
const WORDS: &[&str] = &[
    "通知",
    "关于",
    "印发",
    "水务",
    "农业",
    "农村",
    "乡村",
    "振兴",
    "教育",
    "卫生",
    "健康",
    "医疗",
    "保障",
    "社会",
    "救助",
    "安全",
    "生产",
    "防汛",
    "抗旱",
    "森林",
    "防火",
    "交通",
    "运输",
    "公路",
    "建设",
    "规划",
    "自然",
    "资源",
    "生态",
    "环境",
    "保护",
    "财政",
    "预算",
    "决算",
    "审计",
    "统计",
    "公报",
    "人口",
    "普查",
    "民政",
    "养老",
    "服务",
    "就业",
    "创业",
    "补贴",
    "资金",
    "项目",
    "招标",
    "采购",
    "公告",
    "公示",
    "名单",
    "人事",
    "任免",
    "政策",
    "解读",
    "实施",
    "方案",
    "意见",
    "办法",
    "规定",
    "细则",
    "工作",
    "要点",
    "总结",
    "报告",
    "会议",
    "纪要",
    "县政府",
    "办公室",
    "乡镇",
    "街道",
    "村委会",
    "群众",
    "企业",
    "市场",
    "监管",
    "食品",
    "药品",
    "价格",
    "税收",
    "住房",
    "保障性",
    "房屋",
    "征收",
    "补偿",
    "土地",
    "承包",
    "林权",
    "水利",
    "工程",
    "灌溉",
    "饮水",
    "电力",
    "通信",
    "网络",
    "信息化",
    "数字",
    "政府",
    "政务",
    "公开",
    "透明",
    "监督",
    "检查",
    "考核",
    "评估",
    "应急",
    "管理",
    "预案",
    "演练",
    "气象",
    "预警",
    "地质",
    "灾害",
    "地震",
    "消防",
    "治安",
    "法治",
    "司法",
    "调解",
    "信访",
    "文化",
    "旅游",
    "体育",
    "民族",
    "宗教",
    "彝族",
    "自治县",
    "峨山",
    "双江",
    "小街",
    "甸中",
    "化念",
    "塔甸",
    "富良棚",
    "岔河",
    "大龙潭",
];
/// 机关代字 of the generated 发文字号.
const ORGAN_CODES: &[&str] = &["峨政发", "峨政办发", "峨水发", "峨农发", "峨教发", "峨卫健发"];
/// How a searcher may type the brackets of a 发文字号's year.
const BRACKETS: &[(&str, &str)] = &[("〔", "〕"), ("[", "]"), ("［", "］"), ("(", ")"), ("（", "）")];
const BODY_WORDS: usize = 300;

struct Generated {
    title: String,
    body: String,
    doc_no: (usize, i32, usize),
    index_no: String,
}

fn doc_no((organ, year, serial): (usize, i32, usize), (open, close): (&str, &str)) -> String {
    let organ = ORGAN_CODES.get(organ).copied().unwrap_or_default();
    format!("{organ}{open}{year}{close}{serial}号")
}

fn words(dice: &mut Dice, n: usize) -> Vec<&'static str> {
    (0..n)
        .map(|_| WORDS.get(dice.below(WORDS.len())).copied().unwrap_or_default())
        .collect()
}

fn generate(dice: &mut Dice, i: usize) -> Generated {
    let year = 2000 + (i % 27) as i32;
    let mut body = String::new();
    for (n, word) in words(dice, BODY_WORDS).into_iter().enumerate() {
        body.push_str(word);
        if n % 12 == 11 {
            body.push('，');
        }
    }
    Generated {
        title: format!("关于{}的通知", words(dice, 4).concat()),
        body: format!("<p>{body}。</p>"),
        doc_no: (dice.below(ORGAN_CODES.len()), year, i % 997 + 1),
        index_no: format!("000014349/{year}-{i:05}"),
    }
}

pub async fn search(options: SearchOptions) -> anyhow::Result<()> {
    on_scratch(options.postgres_url.clone(), |settings| async move {
        run(&settings, &options).await
    })
    .await
}

/// Writes `options.items` published items and their portal pages, through the rows the
/// portal store and the workflow write, in batches.
async fn fill(hub: &Hub, options: &SearchOptions) -> anyhow::Result<Vec<Generated>> {
    let portal_target = target::Entity::find()
        .filter(target::Column::Channel.eq(ChannelKind::Portal))
        .one(&hub.db)
        .await?
        .context("the portal target")?
        .id;
    let area = hub.areas.root();
    let catalog = hub.catalog.get("art20-12").context("catalog entry art20-12")?;
    let issuers = vec!["峨山彝族自治县人民政府办公室".to_owned()];
    let first = chrono::DateTime::parse_from_rfc3339("2020-01-01T00:00:00Z")?.with_timezone(&chrono::Utc);
    let author = NewUser {
        username: "bench-publisher".into(),
        display_name: String::new(),
        role: Role::Publisher,
        area_code: area.code.to_string(),
        password: Some("bench-password".into()),
    };
    let (author, _) = accounts::create_user(hub, "bench", None, author)
        .await
        .map_err(err)?;
    let mut dice = Dice(0x5eed_0f5e_a4c8);
    let mut generated = Vec::with_capacity(options.items);
    for chunk_start in (0..options.items).step_by(500) {
        let mut items = Vec::new();
        let mut pages = Vec::new();
        for i in chunk_start..(chunk_start + 500).min(options.items) {
            let g = generate(&mut dice, i);
            let id = format!("bench-search-{i:06}");
            let published_at = first + chrono::Duration::minutes(i as i64);
            let emergency = i % 500 == 7;
            let doc_no = doc_no(g.doc_no, ("〔", "〕"));
            let published = PublishedItem {
                item_id: id.clone(),
                version: 1,
                content_hash: String::new(),
                title: g.title.clone(),
                summary: String::new(),
                body_html: g.body.clone(),
                annotation: "（此件公开发布）".into(),
                index_no: g.index_no.clone(),
                topic: vec!["综合政务".into()],
                issuers: issuers.clone(),
                written_date: published_at
                    .with_timezone(&china_offset())
                    .date_naive()
                    .to_string(),
                doc_no: Some(doc_no.clone()),
                validity: None,
                genre: "notice".into(),
                keywords: Vec::new(),
                catalog_code: catalog.code.clone(),
                catalog_name: catalog.name.clone(),
                area_code: area.code.to_string(),
                area_name: area.name.clone(),
                attachments: Vec::new(),
                emergency,
                published_at: published_at.to_rfc3339(),
                expires_at: None,
                correction: None,
            };
            pages.push(page_row(&portal_target, &render_page(&published)).map_err(anyhow::Error::msg)?);
            items.push(item::ActiveModel {
                id: sea_orm::Set(id),
                state: sea_orm::Set(ItemState::Published),
                title: sea_orm::Set(g.title.clone()),
                area_code: sea_orm::Set(area.code.to_string()),
                index_no: sea_orm::Set(g.index_no.clone()),
                disclosure: sea_orm::Set(Disclosure::Public),
                emergency: sea_orm::Set(emergency),
                interprets_id: sea_orm::Set(None),
                author_id: sea_orm::Set(author.id.clone()),
                current_version: sea_orm::Set(1),
                approved_version: sea_orm::Set(Some(1)),
                approved_hash: sea_orm::Set(None),
                published_version: sea_orm::Set(Some(1)),
                published_at: sea_orm::Set(Some(published_at)),
                withdrawn_at: sea_orm::Set(None),
                expires_at: sea_orm::Set(None),
                review_comment: sea_orm::Set(None),
                created_at: sea_orm::Set(published_at),
                updated_at: sea_orm::Set(published_at),
                correcting: sea_orm::Set(None),
                search_key: sea_orm::Set(Some(item_search_key(
                    &g.title,
                    &g.index_no,
                    Some(&doc_no),
                    &issuers,
                ))),
            });
            generated.push(g);
        }
        let txn = begin_write(&hub.db).await?;
        item::Entity::insert_many(items)
            .exec_without_returning(&txn)
            .await?;
        portal_page::Entity::insert_many(pages)
            .exec_without_returning(&txn)
            .await?;
        txn.commit().await?;
    }
    if crate::store::is_postgres(&hub.db) {
        // As autovacuum would have by the time a county has this many pages.
        hub.db.execute_unprepared("VACUUM ANALYZE").await?;
    }
    Ok(generated)
}

/// The kinds of search a county's visitors and staff type, each drawn from the data.
fn queries(dice: &mut Dice, generated: &[Generated], per_kind: usize) -> Vec<(&'static str, String)> {
    let mut queries = Vec::new();
    for _ in 0..per_kind {
        let Some(g) = generated.get(dice.below(generated.len())) else {
            break;
        };
        let brackets = BRACKETS
            .get(dice.below(BRACKETS.len()))
            .copied()
            .unwrap_or(("〔", "〕"));
        queries.push(("发文字号", doc_no(g.doc_no, brackets)));
        queries.push(("索引号", g.index_no.clone()));
        queries.push(("one word", words(dice, 1).concat()));
        queries.push(("two words", words(dice, 2).join(" ")));
        queries.push(("three words", words(dice, 3).join(" ")));
        // Eight characters straight from a body: a phrase someone remembers.
        let text: Vec<char> = g.body.chars().filter(|c| !"<>/p，。".contains(*c)).collect();
        let at = dice.below(text.len().saturating_sub(8));
        queries.push(("phrase", text.iter().skip(at).take(8).collect()));
        queries.push(("no match", format!("{} 不存在的词", words(dice, 1).concat())));
    }
    queries
}

/// Every live page's id and key, newest first as listings are, for checking the searches.
async fn all_pages(hub: &Hub) -> anyhow::Result<Vec<(String, Option<String>)>> {
    use sea_orm::{QueryOrder, QuerySelect};
    Ok(portal_page::Entity::find()
        .select_only()
        .columns([portal_page::Column::ItemId, portal_page::Column::SearchKey])
        .order_by_desc(portal_page::Column::Emergency)
        .order_by_desc(portal_page::Column::PublishedAt)
        .order_by_desc(portal_page::Column::ItemId)
        .into_tuple()
        .all(&hub.db)
        .await?)
}

fn report(label: &str, kinds: &[&str], timings: &[(&str, Duration)]) {
    println!("  {label}");
    for kind in kinds.iter().copied().chain(["all"]) {
        let mut times: Vec<Duration> = timings
            .iter()
            .filter(|(k, _)| kind == "all" || *k == kind)
            .map(|(_, t)| *t)
            .collect();
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "    {kind:<12} n={:<4} p50 {:>8.2} ms  p95 {:>8.2} ms  max {:>8.2} ms",
            times.len(),
            ms(percentile(&times, 0.50)),
            ms(percentile(&times, 0.95)),
            ms(times.last().copied().unwrap_or_default()),
        );
    }
}

async fn run(settings: &Settings, options: &SearchOptions) -> anyhow::Result<()> {
    let hub = open_hub(settings.clone(), Clock::System).await?;
    let started = Instant::now();
    let generated = fill(&hub, options).await?;
    println!(
        "bench search on {}: {} published items and their portal pages written in {:.1} s",
        backend_name(&hub),
        generated.len(),
        started.elapsed().as_secs_f64()
    );
    anyhow::ensure!(!generated.is_empty(), "--items must be at least 1");
    let mut dice = Dice(0x0a11_ce5e_a7c4);
    let queries = queries(&mut dice, &generated, options.queries);
    let kinds: Vec<&str> = queries.iter().take(7).map(|(kind, _)| *kind).collect();
    let pages = all_pages(&hub).await?;
    let caller = Caller {
        id: "bench".into(),
        username: "bench".into(),
        role: Role::Admin,
        area: hub.areas.root().code.clone(),
        must_change_password: false,
    };

    let mut portal_timings = Vec::new();
    let mut staff_timings = Vec::new();
    let mut found_total = 0;
    for (kind, q) in &queries {
        let terms = SearchTerms::parse(q)
            .map_err(anyhow::Error::msg)?
            .context("an empty query")?;
        let started = Instant::now();
        let found = portal::search(&hub, &terms).await.map_err(err)?;
        portal_timings.push((*kind, started.elapsed()));
        found_total += found.len();
        let expected: Vec<&str> = pages
            .iter()
            .filter(|(_, key)| key.as_deref().is_some_and(|key| terms.all_in(key)))
            .map(|(id, _)| id.as_str())
            .take(portal::LIST_LIMIT)
            .collect();
        let got: Vec<&str> = found.iter().map(|e| e.item_id.as_str()).collect();
        anyhow::ensure!(
            got == expected,
            "the portal's search for {q:?} ({kind}) found {} pages where a scan finds {}",
            got.len(),
            expected.len()
        );

        let filter = ItemFilter {
            state: None,
            area: None,
            disclosure: None,
            kind: None,
            emergency: None,
            q: Some(q.clone()),
            limit: None,
            offset: None,
        };
        let started = Instant::now();
        workflow::list_items(&hub, &caller, filter).await.map_err(err)?;
        staff_timings.push((*kind, started.elapsed()));
    }
    println!(
        "  {} searches, each checked against a scan of all pages; {} pages listed in all",
        queries.len(),
        found_total
    );
    report(
        "portal search (/search: pages live, newest 200)",
        &kinds,
        &portal_timings,
    );
    report(
        "staff list search (GET /api/v1/items?q=: title, 索引号, 发文字号, 发文机关; with its total)",
        &kinds,
        &staff_timings,
    );
    Ok(())
}
