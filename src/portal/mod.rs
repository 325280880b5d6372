//! The public portal's reads: which pages are live, the listing entries, and why a page came
//! down. The pages themselves are rendered in `http::portal`; `store` writes them for the
//! portal channel.

pub mod store;

use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect, sea_query::Query};

use crate::{
    clock::china_offset,
    domain::item::ItemState,
    error::Error,
    hub::Hub,
    store::entities::{item, portal_page},
};

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
pub fn live(now: chrono::DateTime<chrono::Utc>) -> Condition {
    Condition::all()
        .add(portal_page::Column::WithdrawnAt.is_null())
        .add(
            portal_page::Column::ItemId.in_subquery(
                Query::select()
                    .column(item::Column::Id)
                    .from(item::Entity)
                    .and_where(item::Column::State.eq(ItemState::Published))
                    .cond_where(
                        Condition::any()
                            .add(item::Column::ExpiresAt.is_null())
                            .add(item::Column::ExpiresAt.gt(now)),
                    )
                    .to_owned(),
            ),
        )
}

const LIST_LIMIT: u64 = 200;

pub async fn entries(hub: &Hub, condition: Condition) -> Result<Vec<Entry>, Error> {
    let rows = portal_page::Entity::find()
        .filter(live(hub.clock.now()))
        .filter(condition)
        .order_by_desc(portal_page::Column::Emergency)
        .order_by_desc(portal_page::Column::PublishedAt)
        .limit(LIST_LIMIT)
        .all(&hub.db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|p| Entry {
            item_id: p.item_id,
            title: p.title,
            date: date(p.published_at),
            emergency: p.emergency,
        })
        .collect())
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
