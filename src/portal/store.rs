//! The portal's pages, kept in the central store so every hub instance serves the same site.

use herald_channels::{
    TargetRef,
    portal::{PortalPage, PortalStore},
};
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect, Set,
    sea_query::{Expr, ExprTrait, OnConflict},
};

use crate::{clock::Clock, domain::search::fold, store::entities::portal_page};

/// What a page is found by: its text and every value of its 文件信息 block (索引号, 发文字号,
/// 发文机关, …), folded as searches are.
pub fn search_key(page: &PortalPage) -> String {
    let mut text = page.search_text.clone();
    for (_, value) in &page.metadata {
        text.push(' ');
        text.push_str(value);
    }
    fold(&text)
}

/// The row that stores `page` for portal target `target_id`.
pub fn page_row(target_id: &str, page: &PortalPage) -> Result<portal_page::ActiveModel, String> {
    let published_at = chrono::DateTime::parse_from_rfc3339(&page.published_at)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("published_at: {e}"))?;
    let payload = serde_json::to_string(page).map_err(|e| e.to_string())?;
    let issuers = serde_json::Value::from(page.issuers.clone()).to_string();
    Ok(portal_page::ActiveModel {
        item_id: Set(page.item_id.clone()),
        target_id: Set(target_id.to_owned()),
        version: Set(page.version),
        title: Set(page.title.clone()),
        payload: Set(payload),
        search_text: Set(page.search_text.clone()),
        catalog: Set(page.catalog_code.clone()),
        area_code: Set(page.area_code.clone()),
        issuers: Set(issuers),
        emergency: Set(page.emergency),
        published_at: Set(crate::store::store_time(published_at)),
        withdrawn_at: Set(None),
        withdraw_reason: Set(None),
        search_key: Set(Some(search_key(page))),
    })
}

pub struct DbPortalStore {
    pub db: DatabaseConnection,
    pub clock: Clock,
}

#[async_trait::async_trait]
impl PortalStore for DbPortalStore {
    async fn put_page(&self, target: &TargetRef, page: &PortalPage) -> Result<(), String> {
        let row = page_row(&target.id, page)?;
        use portal_page::Column as C;
        portal_page::Entity::insert(row)
            .on_conflict(
                OnConflict::column(C::ItemId)
                    .update_columns([
                        C::TargetId,
                        C::Version,
                        C::Title,
                        C::Payload,
                        C::SearchText,
                        C::Catalog,
                        C::AreaCode,
                        C::Issuers,
                        C::Emergency,
                        C::PublishedAt,
                        C::WithdrawnAt,
                        C::WithdrawReason,
                        C::SearchKey,
                    ])
                    // An earlier version landing late (sent before a correction) never
                    // replaces the correction.
                    .action_and_where(
                        Expr::col((portal_page::Entity, C::Version)).lte(Expr::cust("excluded.version")),
                    )
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    async fn take_down(&self, item_id: &str, reason: &str) -> Result<bool, String> {
        let result = portal_page::Entity::update_many()
            .col_expr(
                portal_page::Column::WithdrawnAt,
                Expr::value(Some(self.clock.now())),
            )
            .col_expr(
                portal_page::Column::WithdrawReason,
                Expr::value(Some(reason.to_owned())),
            )
            .filter(portal_page::Column::ItemId.eq(item_id))
            .filter(portal_page::Column::WithdrawnAt.is_null())
            .exec(&self.db)
            .await
            .map_err(|e| e.to_string())?;
        Ok(result.rows_affected > 0)
    }
}

/// Gives every page written before search keys its key, from its stored page. Run on start;
/// repeating it changes nothing.
pub async fn fill_search_keys(db: &DatabaseConnection) -> Result<u64, sea_orm::DbErr> {
    let mut filled = 0;
    loop {
        let rows = portal_page::Entity::find()
            .filter(portal_page::Column::SearchKey.is_null())
            .limit(500)
            .all(db)
            .await?;
        if rows.is_empty() {
            return Ok(filled);
        }
        for row in rows {
            let page: PortalPage = serde_json::from_str(&row.payload).map_err(|e| {
                sea_orm::DbErr::Custom(format!("portal page {} is unreadable: {e}", row.item_id))
            })?;
            portal_page::Entity::update_many()
                .col_expr(portal_page::Column::SearchKey, Expr::value(search_key(&page)))
                .filter(portal_page::Column::ItemId.eq(row.item_id.as_str()))
                .exec(db)
                .await?;
            filled += 1;
        }
    }
}
