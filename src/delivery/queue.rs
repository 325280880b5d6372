//! The delivery queue: one narrow row for each delivery the worker still has to act on, due
//! at its first or next attempt. A delivery under way keeps its row (the lease is on the
//! delivery), so one whose worker died is found again once its lease lapses.
//!
//! `deliveries` keeps what a delivery is; this keeps when it is next looked at. Apart, the
//! claim and the record rewrite no indexed column of `deliveries`, so on PostgreSQL their
//! updates stay on the page and write no index entry (see the `delivery_queue` migration).
//! Every delivery that is `pending` or `retrying` has a row here, and so has one `sending`
//! under a lease; a row left behind for a delivery that has moved on is harmless (the claim
//! drops it when it comes due).
//!
//! `delivery_confirmations` is the same for `accepted` deliveries waiting for a report: a row
//! while a delivery is `accepted`, due when the channel is to be asked (`inbox::try_reconcile`);
//! and for an `unconfirmed` one whose attempt kept a checkpoint, until the channel has been
//! asked whether it can find it (`Channel::find_lost`) as often as the hub asks.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    sea_query::{Expr, OnConflict, Query},
};

use super::state::DeliveryState;
use crate::{
    error::Result,
    store::{
        among,
        entities::{delivery, delivery_confirmation, delivery_queue},
    },
};

/// Queues the deliveries just written for `renditions` of `item_id`, each due at its first
/// attempt (which already waits for its not_before).
pub async fn enqueue_written(db: &impl ConnectionTrait, item_id: &str, renditions: &[&str]) -> Result<()> {
    use delivery::Column as D;
    let mut select = Query::select();
    select
        .columns([D::Id, D::Channel, D::Priority, D::NextAttemptAt])
        .from(delivery::Entity)
        .and_where(D::ItemId.eq(item_id))
        .and_where(D::RenditionId.is_in(renditions.iter().copied()));
    let mut insert = Query::insert();
    insert
        .into_table(delivery_queue::Entity)
        .columns([
            delivery_queue::Column::DeliveryId,
            delivery_queue::Column::Channel,
            delivery_queue::Column::Priority,
            delivery_queue::Column::DueAt,
        ])
        .select_from(select)
        .map_err(|e| anyhow::anyhow!("queue insert: {e}"))?;
    db.execute(&insert).await?;
    Ok(())
}

/// Makes the queue agree with one delivery an operator just moved: queued, due at its next
/// attempt, if it waits to be sent; out of the queue otherwise.
pub async fn follow(db: &impl ConnectionTrait, row: &delivery::Model) -> Result<()> {
    if !row.state.not_yet_sent() {
        return dequeue(db, &[row.id.as_str()]).await;
    }
    let queued = delivery_queue::ActiveModel {
        delivery_id: sea_orm::Set(row.id.clone()),
        channel: sea_orm::Set(row.channel),
        priority: sea_orm::Set(row.priority),
        due_at: sea_orm::Set(row.next_attempt_at),
    };
    delivery_queue::Entity::insert(queued)
        .on_conflict(
            OnConflict::column(delivery_queue::Column::DeliveryId)
                .update_column(delivery_queue::Column::DueAt)
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Sets when the worker next tries these deliveries.
pub async fn due_at(db: &impl ConnectionTrait, ids: &[&str], at: DateTime<Utc>) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let backend = db.get_database_backend();
    delivery_queue::Entity::update_many()
        .col_expr(delivery_queue::Column::DueAt, at.into())
        .filter(among(
            backend,
            delivery_queue::Column::DeliveryId,
            ids.iter().copied(),
        ))
        .exec(db)
        .await?;
    Ok(())
}

/// Takes deliveries that need nothing more from the worker out of the queue.
pub async fn dequeue(db: &impl ConnectionTrait, ids: &[&str]) -> Result<()> {
    delete_rows_of::<delivery_queue::Entity>(db, delivery_queue::Column::DeliveryId, ids).await
}

/// Takes out of the queue the rows a claim came across of deliveries that had moved on
/// (neither waiting nor under way), unless the delivery is queued again by now: on SQLite the
/// claim reads before it takes the write lock, and an operator's retry in between queues the
/// delivery afresh under the same row.
pub async fn drop_moved_on(db: &impl ConnectionTrait, ids: &[&str]) -> Result<()> {
    use delivery::Column as D;
    if ids.is_empty() {
        return Ok(());
    }
    let mut still_moved_on = Query::select();
    still_moved_on
        .column(D::Id)
        .from(delivery::Entity)
        .and_where(among(db.get_database_backend(), D::Id, ids.iter().copied()))
        .and_where(D::State.is_not_in([
            DeliveryState::Pending,
            DeliveryState::Retrying,
            DeliveryState::Sending,
        ]));
    delivery_queue::Entity::delete_many()
        .filter(delivery_queue::Column::DeliveryId.in_subquery(still_moved_on))
        .exec(db)
        .await?;
    Ok(())
}

/// Deletes the rows of `E` whose `column` (a delivery id) is one of `ids`.
async fn delete_rows_of<E: EntityTrait>(
    db: &impl ConnectionTrait,
    column: E::Column,
    ids: &[&str],
) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    E::delete_many()
        .filter(among(db.get_database_backend(), column, ids.iter().copied()))
        .exec(db)
        .await?;
    Ok(())
}

/// Watches `ids`, just `accepted`, for their report: asked about at `confirm_by` if none came.
pub async fn await_report(db: &impl ConnectionTrait, ids: &[&str], confirm_by: DateTime<Utc>) -> Result<()> {
    use delivery::Column as D;
    if ids.is_empty() {
        return Ok(());
    }
    let mut select = Query::select();
    select
        .column(D::Id)
        .expr(Expr::val(confirm_by))
        .expr(Expr::val(0i32))
        .from(delivery::Entity)
        .and_where(among(db.get_database_backend(), D::Id, ids.iter().copied()));
    let mut insert = Query::insert();
    insert
        .into_table(delivery_confirmation::Entity)
        .columns([
            delivery_confirmation::Column::DeliveryId,
            delivery_confirmation::Column::ConfirmBy,
            delivery_confirmation::Column::Asks,
        ])
        .select_from(select)
        .map_err(|e| anyhow::anyhow!("confirmation insert: {e}"))?
        // Accepted again (a retry of one given up on): asked about afresh.
        .on_conflict(
            OnConflict::column(delivery_confirmation::Column::DeliveryId)
                .update_columns([
                    delivery_confirmation::Column::ConfirmBy,
                    delivery_confirmation::Column::Asks,
                ])
                .to_owned(),
        );
    db.execute(&insert).await?;
    Ok(())
}

/// Stops watching `ids`: no longer `accepted`, they need no question.
pub async fn report_settled(db: &impl ConnectionTrait, ids: &[&str]) -> Result<()> {
    delete_rows_of::<delivery_confirmation::Entity>(db, delivery_confirmation::Column::DeliveryId, ids).await
}
