//! Item access below both the workflow and the delivery records: loading an item the caller
//! may see, its versions, and reading the stored columns back into domain types.

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, sea_query::Expr};
use serde::{Deserialize, Serialize};

use crate::{
    accounts::Caller,
    domain::{area::AreaCode, item::ItemContent},
    error::{Error, Result},
    store::entities::{item, item_version},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    Document,
    Interpretation,
}

pub(crate) fn kind_of(row: &item::Model) -> ItemKind {
    if row.interprets_id.is_some() {
        ItemKind::Interpretation
    } else {
        ItemKind::Document
    }
}

pub(crate) fn content_of(version: &item_version::Model) -> Result<ItemContent> {
    serde_json::from_str(&version.content).map_err(|e| {
        anyhow::anyhow!(
            "item {} version {} is unreadable: {e}",
            version.item_id,
            version.version
        )
        .into()
    })
}

fn area_of(row: &item::Model) -> Result<AreaCode> {
    AreaCode::parse(&row.area_code).map_err(|e| anyhow::Error::new(e).into())
}

/// Loads an item the caller may see; on PostgreSQL, `lock` holds it until the transaction ends.
pub(crate) async fn load_visible(
    db: &impl ConnectionTrait,
    caller: &Caller,
    id: &str,
    lock: bool,
) -> Result<item::Model> {
    let mut query = item::Entity::find_by_id(id);
    if lock {
        query = query.lock_exclusive();
    }
    let row = query.one(db).await?.ok_or(Error::NotFound("item"))?;
    if !caller.sees(&area_of(&row)?) {
        // Neither the item's area nor anything else about it is told.
        return Err(Error::forbidden(format!(
            "this item is outside your area {}",
            caller.area
        )));
    }
    Ok(row)
}

pub(crate) async fn load_version(
    db: &impl ConnectionTrait,
    item_id: &str,
    version: i32,
) -> Result<item_version::Model> {
    item_version::Entity::find_by_id((item_id.to_owned(), version))
        .one(db)
        .await?
        .ok_or(Error::NotFound("item version"))
}

/// Rows a batch of the search-key fill reads at once.
const FILL_BATCH: u64 = 500;

/// Gives every item written before search keys its key, from the version its row shows (the
/// published one while a correction is under way). Run on start; repeating it changes nothing.
pub async fn fill_search_keys(db: &impl ConnectionTrait) -> Result<u64> {
    let mut filled = 0;
    loop {
        let rows = item::Entity::find()
            .filter(item::Column::SearchKey.is_null())
            .limit(FILL_BATCH)
            .all(db)
            .await?;
        if rows.is_empty() {
            return Ok(filled);
        }
        for row in rows {
            let shown = match row.correcting {
                Some(_) => row.published_version.unwrap_or(row.current_version),
                None => row.current_version,
            };
            let content = content_of(&load_version(db, &row.id, shown).await?)?;
            item::Entity::update_many()
                .col_expr(item::Column::SearchKey, Expr::value(content.search_key()))
                .filter(item::Column::Id.eq(row.id.as_str()))
                .exec(db)
                .await?;
            filled += 1;
        }
    }
}
