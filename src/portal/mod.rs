//! The public portal's reads: which pages are live, the listing entries, and why a page came
//! down. The pages themselves are rendered in `http::portal`; `store` writes them for the
//! portal channel.

pub mod store;

use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
    Select,
    sea_query::{Alias, Expr, Func, Order, Query},
};

use herald_channels::{ChannelKind, portal::PortalPage};

use crate::{
    clock::china_offset,
    delivery::{DeliveryKind, DeliveryState},
    domain::{area::AreaCode, delivery::RenditionFor, item::ItemState, search::SearchTerms},
    error::Error,
    hub::Hub,
    store::entities::{delivery, item, portal_generation, portal_page, publication, rendition},
};

/// Where what the portal shows stands: rendered pages stay right until `generation` moves
/// or `next_expiry` (an item's 有效期 ending) passes.
pub struct ShownState {
    pub generation: i64,
    pub next_expiry: Option<chrono::DateTime<chrono::Utc>>,
}

pub async fn shown_state(hub: &Hub) -> Result<ShownState, Error> {
    let now = hub.clock.now();
    let generation = portal_generation::Entity::find_by_id(1)
        .one(&hub.db)
        .await?
        .map(|row| row.generation)
        .ok_or_else(|| anyhow::anyhow!("the portal_generation row is missing"))?;
    let next_expiry = item::Entity::find()
        .select_only()
        .expr_as(Func::min(Expr::col(item::Column::ExpiresAt)), "next_expiry")
        .filter(item::Column::State.eq(ItemState::Published.as_str()))
        .filter(item::Column::ExpiresAt.gt(now))
        .into_tuple::<Option<chrono::DateTime<chrono::Utc>>>()
        .one(&hub.db)
        .await?
        .flatten();
    Ok(ShownState {
        generation,
        next_expiry,
    })
}

/// A page's publication day as the portal shows it (Beijing time).
fn date(t: chrono::DateTime<chrono::Utc>) -> String {
    t.with_timezone(&china_offset()).format("%Y-%m-%d").to_string()
}

pub struct Entry {
    pub item_id: String,
    pub title: String,
    pub date: String,
    pub emergency: bool,
}

/// Pages whose item is still published and not past its expiry at `now`: a withdrawal or an
/// expiry takes effect here at once, before the expiry step or any delivery runs.
///
/// The item is looked up per page (`EXISTS`), not gathered first (`IN`): given the list of
/// every published item, SQLite read the pages by it and sorted them all, 0.36 s for a
/// listing of 100,000 pages, where reading the newest-first index and stopping at a listing's
/// worth takes 2 ms. PostgreSQL plans both alike.
pub fn live(now: chrono::DateTime<chrono::Utc>) -> Condition {
    // Scoped: its blanket `eq` would shadow `PartialEq::eq` elsewhere in this file.
    use sea_orm::sea_query::ExprTrait;
    Condition::all()
        .add(portal_page::Column::WithdrawnAt.is_null())
        .add(Expr::exists(
            Query::select()
                .expr(Expr::val(1))
                .from(item::Entity)
                .and_where(
                    Expr::col((item::Entity, item::Column::Id))
                        .equals((portal_page::Entity, portal_page::Column::ItemId)),
                )
                .and_where(Expr::col((item::Entity, item::Column::State)).eq(ItemState::Published.as_str()))
                .cond_where(
                    Condition::any()
                        .add(Expr::col((item::Entity, item::Column::ExpiresAt)).is_null())
                        .add(Expr::col((item::Entity, item::Column::ExpiresAt)).gt(now)),
                )
                .to_owned(),
        ))
}

/// Entries a listing shows at most.
pub const LIST_LIMIT: usize = 200;

/// A listing's columns: id, title, publication time, emergency.
type Listed = (String, String, chrono::DateTime<chrono::Utc>, bool);

const LISTED: [portal_page::Column; 4] = [
    portal_page::Column::ItemId,
    portal_page::Column::Title,
    portal_page::Column::PublishedAt,
    portal_page::Column::Emergency,
];

/// Live pages' listing columns, emergencies first, then newest first (then by id, so that
/// windows of a search never overlap): the order of the `portal_pages_newest_first` index,
/// read backwards.
fn listing(now: chrono::DateTime<chrono::Utc>) -> Select<portal_page::Entity> {
    use portal_page::Column as C;
    portal_page::Entity::find()
        .select_only()
        .columns(LISTED)
        .filter(live(now))
        .order_by_desc(C::Emergency)
        .order_by_desc(C::PublishedAt)
        .order_by_desc(C::ItemId)
}

fn entry((item_id, title, published_at, emergency): Listed) -> Entry {
    Entry {
        item_id,
        title,
        date: date(published_at),
        emergency,
    }
}

pub async fn entries(hub: &Hub, condition: Condition) -> Result<Vec<Entry>, Error> {
    let rows = listing(hub.clock.now())
        .filter(condition)
        .limit(LIST_LIMIT as u64)
        .into_tuple::<Listed>()
        .all(&hub.db)
        .await?;
    Ok(rows.into_iter().map(entry).collect())
}

/// Pages a PostgreSQL search checks newest first before it turns to the grams index, and
/// candidates it checks at a time after that: enough that a word on a fifth of the pages fills
/// a listing from the newest ones alone, few enough that checking them all stays cheap.
const SEARCH_WINDOW: u64 = 1000;

/// A listing's row, and whether it holds every word searched for (NULL, for a page with no
/// search key yet, is no).
type Checked = (String, String, chrono::DateTime<chrono::Utc>, bool, Option<bool>);

/// Window `window` of the pages `candidates` selects, in listing order, each with whether it
/// holds every word. The window's ids are a subquery of their own, so the words are checked on
/// its pages only, not on every candidate before the sort picks the window.
async fn check_window(
    db: &impl sea_orm::ConnectionTrait,
    candidates: Select<portal_page::Entity>,
    window: u64,
    holds_every_word: &Condition,
) -> Result<Vec<Checked>, Error> {
    let mut ids = candidates.into_query();
    ids.clear_selects()
        .column(portal_page::Column::ItemId)
        .offset(window * SEARCH_WINDOW)
        .limit(SEARCH_WINDOW);
    Ok(portal_page::Entity::find()
        .select_only()
        .columns(LISTED)
        .expr(holds_every_word.clone())
        .filter(portal_page::Column::ItemId.in_subquery(ids))
        .order_by_desc(portal_page::Column::Emergency)
        .order_by_desc(portal_page::Column::PublishedAt)
        .order_by_desc(portal_page::Column::ItemId)
        .into_tuple()
        .all(db)
        .await?)
}

/// Keeps the rows that hold every word; true when `rows` was a whole window (more may follow).
fn keep_matches(found: &mut Vec<Listed>, rows: Vec<Checked>) -> bool {
    let whole = rows.len() as u64 == SEARCH_WINDOW;
    found.extend(
        rows.into_iter()
            .filter(|row| row.4 == Some(true))
            .map(|(id, title, at, emergency, _)| (id, title, at, emergency)),
    );
    whole
}

/// Of the newest `SEARCH_WINDOW` live pages, in listing order, the first `LIST_LIMIT` that hold
/// every word. The check runs page by page down the newest-first index and stops once the
/// listing is full: a word on most pages costs a few hundred checks, not the whole window.
async fn newest_matches(
    db: &impl sea_orm::ConnectionTrait,
    now: chrono::DateTime<chrono::Utc>,
    terms: &SearchTerms,
) -> Result<Vec<Listed>, Error> {
    use portal_page::Column as C;
    let newest = Alias::new("newest");
    let mut window = listing(now).into_query();
    window.column(C::SearchKey).limit(SEARCH_WINDOW);
    let mut query = Query::select();
    query
        .columns(LISTED.map(|column| (newest.clone(), column)))
        .from_subquery(window, newest.clone())
        .cond_where(crate::store::holds_every_word(
            db.get_database_backend(),
            (newest.clone(), C::SearchKey),
            terms,
        ));
    for column in [C::Emergency, C::PublishedAt, C::ItemId] {
        query.order_by((newest.clone(), column), Order::Desc);
    }
    query.limit(LIST_LIMIT as u64);
    let mut found = Vec::new();
    for row in db.query_all(&query).await? {
        found.push((
            row.try_get("", "item_id")?,
            row.try_get("", "title")?,
            row.try_get("", "published_at")?,
            row.try_get("", "emergency")?,
        ));
    }
    Ok(found)
}

/// Live pages holding every word of `terms`, listed as `entries` lists them.
///
/// SQLite, which has no index for this, checks pages newest first until the listing is full.
/// PostgreSQL does the same over the newest pages only (a common word is on enough of them to
/// fill the listing), then finds the rest through the grams index (migration 000017), a
/// window at a time. The grams condition goes to the index even where the planner would
/// rather scan: it cannot tell a word on most pages from a rare one, and a scan reads every
/// page's whole set of grams.
pub async fn search(hub: &Hub, terms: &SearchTerms) -> Result<Vec<Entry>, Error> {
    let now = hub.clock.now();
    let backend = hub.db.get_database_backend();
    let holds_every_word = crate::store::holds_every_word(backend, portal_page::Column::SearchKey, terms);
    if backend != sea_orm::DbBackend::Postgres {
        let rows = listing(now)
            .filter(holds_every_word)
            .limit(LIST_LIMIT as u64)
            .into_tuple::<Listed>()
            .all(&hub.db)
            .await?;
        return Ok(rows.into_iter().map(entry).collect());
    }
    let mut found = newest_matches(&hub.db, now, terms).await?;
    if found.len() < LIST_LIMIT {
        found.clear();
        let holds_every_piece = Expr::cust_with_values("search_grams @@ $1::tsquery", [terms.grams_query()]);
        let txn = crate::store::begin_read(&hub.db).await?;
        txn.execute_unprepared("SET LOCAL enable_seqscan = off").await?;
        for window in 0.. {
            let candidates = listing(now).filter(holds_every_piece.clone());
            let more = keep_matches(
                &mut found,
                check_window(&txn, candidates, window, &holds_every_word).await?,
            );
            if !more || found.len() >= LIST_LIMIT {
                break;
            }
        }
        txn.commit().await?;
    }
    found.truncate(LIST_LIMIT);
    Ok(found.into_iter().map(entry).collect())
}

/// A page taken down from the portal: 清理结果.
pub struct TakenDown {
    pub item_id: String,
    pub title: String,
    pub area_code: String,
    /// The day it came down (China time), `YYYY-MM-DD`.
    pub date: String,
    pub reason: String,
}

/// Every page taken down from the portal (within `within`, if given), newest first: the
/// public 清理结果 and the console's alike.
pub async fn taken_down(hub: &Hub, within: Option<&AreaCode>) -> Result<Vec<TakenDown>, Error> {
    let now = hub.clock.now();
    // A page comes down only after its item was withdrawn or expired, so those items' pages
    // are the whole record.
    let states = [ItemState::Withdrawn, ItemState::Expired];
    let mut items = item::Entity::find().filter(item::Column::State.is_in(states));
    if let Some(area) = within {
        items = items.filter(item::Column::AreaCode.starts_with(area.as_str()));
    }
    let items: std::collections::BTreeMap<String, item::Model> = items
        .all(&hub.db)
        .await?
        .into_iter()
        .map(|i| (i.id.clone(), i))
        .collect();
    let mut taken_down_items = Query::select()
        .column(item::Column::Id)
        .from(item::Entity)
        .and_where(item::Column::State.is_in(states))
        .to_owned();
    if let Some(area) = within {
        taken_down_items.and_where(item::Column::AreaCode.starts_with(area.as_str()));
    }
    let pages = portal_page::Entity::find()
        .filter(portal_page::Column::ItemId.in_subquery(taken_down_items))
        .all(&hub.db)
        .await?;
    let mut entries: Vec<TakenDown> = pages
        .into_iter()
        .filter_map(|page| {
            let item = items.get(&page.item_id)?;
            let (date, reason) = takedown(&page, item, now)?;
            Some(TakenDown {
                item_id: page.item_id,
                title: page.title,
                area_code: item.area_code.clone(),
                date,
                reason,
            })
        })
        .collect();
    entries.sort_by(|a, b| b.date.cmp(&a.date));
    Ok(entries)
}

/// Why and when a page came down, for withdrawn and expired items.
pub fn takedown(
    page: &portal_page::Model,
    item: &item::Model,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<(String, String)> {
    let state = item.state;
    let expiry_passed = item.expires_at.filter(|at| *at <= now);
    if page.withdrawn_at.is_none() && !state.is_terminal() && expiry_passed.is_none() {
        return None;
    }
    let at = page
        .withdrawn_at
        .or(item.withdrawn_at)
        .or(expiry_passed)
        .unwrap_or(item.updated_at);
    let fallback = if state == ItemState::Expired || expiry_passed.is_some() {
        crate::workflow::EXPIRY_REASON
    } else {
        "已撤回"
    };
    Some((
        date(at),
        page.withdraw_reason
            .clone()
            .unwrap_or_else(|| fallback.to_owned()),
    ))
}

/// One version of an item as the portal showed it (版本记录).
pub struct ShownVersion {
    pub version: i32,
    /// The day it went up.
    pub date: String,
    /// For a correction (更正): what it corrected.
    pub correction_note: Option<String>,
}

/// The publications of `item_id` whose portal delivery got there: the first publication, then
/// each correction, oldest first.
async fn shown_publications(hub: &Hub, item_id: &str) -> Result<Vec<publication::Model>, Error> {
    Ok(publication::Entity::find()
        .filter(publication::Column::ItemId.eq(item_id))
        .filter(
            publication::Column::Id.in_subquery(
                Query::select()
                    .column(delivery::Column::PublicationId)
                    .from(delivery::Entity)
                    .and_where(delivery::Column::ItemId.eq(item_id))
                    .and_where(delivery::Column::Channel.eq(ChannelKind::Portal))
                    .and_where(delivery::Column::Kind.eq(DeliveryKind::Publish))
                    .and_where(delivery::Column::State.is_in(DeliveryState::REACHED))
                    .to_owned(),
            ),
        )
        .order_by_asc(publication::Column::Version)
        .all(&hub.db)
        .await?)
}

/// The versions of an item the portal has shown, oldest first; one entry means it was never
/// corrected.
pub async fn shown_versions(hub: &Hub, item_id: &str) -> Result<Vec<ShownVersion>, Error> {
    Ok(shown_publications(hub, item_id)
        .await?
        .into_iter()
        .map(|p| ShownVersion {
            version: p.version,
            date: date(p.published_at),
            correction_note: p.correction_note,
        })
        .collect())
}

/// Version `version` of an item's page, exactly as the portal showed it, if it showed it.
pub async fn shown_page(hub: &Hub, item_id: &str, version: i32) -> Result<Option<PortalPage>, Error> {
    let Some(shown) = shown_publications(hub, item_id)
        .await?
        .into_iter()
        .find(|p| p.version == version)
    else {
        return Ok(None);
    };
    let renditions = rendition::Entity::find()
        .filter(rendition::Column::PublicationId.eq(shown.id))
        .all(&hub.db)
        .await?;
    renditions
        .into_iter()
        .find(|r| r.channel == RenditionFor::Channel(ChannelKind::Portal))
        .map(|r| serde_json::from_str(&r.payload).map_err(|e| Error::from(anyhow::Error::new(e))))
        .transpose()
}

/// A live page, linked from another.
pub struct PageLink {
    pub item_id: String,
    pub title: String,
}

impl From<portal_page::Model> for PageLink {
    fn from(page: portal_page::Model) -> Self {
        Self {
            item_id: page.item_id,
            title: page.title,
        }
    }
}

/// The items that interpret a policy (解读), as a condition on pages.
fn interpreting(policy_id: Option<&str>) -> sea_orm::sea_query::SelectStatement {
    let mut select = Query::select();
    select.column(item::Column::Id).from(item::Entity);
    match policy_id {
        Some(id) => select.and_where(item::Column::InterpretsId.eq(id)),
        None => select.and_where(item::Column::InterpretsId.is_not_null()),
    };
    select
}

/// The 政策解读 column: pages of interpretations.
pub fn interpretations() -> Condition {
    Condition::all().add(portal_page::Column::ItemId.in_subquery(interpreting(None)))
}

/// What a page links to beside itself, each while its page is live: the policy it interprets,
/// and the interpretations of it, oldest first.
pub async fn related(hub: &Hub, item_id: &str) -> Result<(Option<PageLink>, Vec<PageLink>), Error> {
    let now = hub.clock.now();
    let interprets = item::Entity::find_by_id(item_id)
        .one(&hub.db)
        .await?
        .and_then(|item| item.interprets_id);
    let policy = match interprets {
        Some(policy_id) => portal_page::Entity::find_by_id(policy_id)
            .filter(live(now))
            .one(&hub.db)
            .await?
            .map(PageLink::from),
        None => None,
    };
    let interpretations = portal_page::Entity::find()
        .filter(live(now))
        .filter(portal_page::Column::ItemId.in_subquery(interpreting(Some(item_id))))
        .order_by_asc(portal_page::Column::PublishedAt)
        .all(&hub.db)
        .await?
        .into_iter()
        .map(PageLink::from)
        .collect();
    Ok((policy, interpretations))
}
