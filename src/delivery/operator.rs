//! What an operator may do to one delivery: send it again, ask the channel whether it arrived,
//! or call it off.

use sea_orm::{ActiveModelTrait, DatabaseTransaction, EntityTrait, QuerySelect, Set};

use super::{
    counts::{CountChanges, CountedDeliveries},
    queue,
    report::{DeliveryView, with_target_names},
    state::{DeliveryKind, DeliveryState},
};
use crate::{
    accounts::Caller,
    audit::{self, AuditEvent},
    domain::{area::AreaCode, user::Role},
    error::{Error, Result},
    hub::Hub,
    store::{
        begin_write,
        entities::{delivery, item},
    },
};

/// A delivery an operator acts on, loaded under lock with its item, if the caller's area
/// holds the item or the target.
async fn load_for_operator(
    txn: &DatabaseTransaction,
    caller: &Caller,
    delivery_id: &str,
) -> Result<(delivery::Model, item::Model, DeliveryState)> {
    let row = delivery::Entity::find_by_id(delivery_id)
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or(Error::NotFound("delivery"))?;
    let item = item::Entity::find_by_id(row.item_id.as_str())
        .one(txn)
        .await?
        .ok_or(Error::NotFound("item"))?;
    let target_area = AreaCode::parse(&row.area_code).map_err(anyhow::Error::new)?;
    if !caller.sees(&target_area) && !item.area_code.starts_with(caller.area.as_str()) {
        return Err(Error::forbidden("that delivery is outside your area"));
    }
    let state = row.state;
    Ok((row, item, state))
}

/// Moves one delivery to `to` with its counts and an audit entry `action`; `adjust` sets
/// whatever else the move changes.
async fn move_by_operator(
    txn: &DatabaseTransaction,
    hub: &Hub,
    caller: &Caller,
    (row, from, item_area): (delivery::Model, DeliveryState, &str),
    to: DeliveryState,
    action: &str,
    adjust: impl FnOnce(&mut delivery::ActiveModel),
) -> Result<delivery::Model> {
    let now = hub.clock.now();
    let mut counts = CountChanges::default();
    counts.moved(&CountedDeliveries::of(&row), from, to, 1);
    counts.apply(txn).await?;
    let mut active: delivery::ActiveModel = row.into();
    active.state = Set(to);
    active.updated_at = Set(now);
    adjust(&mut active);
    let row = active.update(txn).await?;
    queue::follow(txn, &row).await?;
    let detail = serde_json::json!({"from_state": from.as_str(), "item_id": row.item_id});
    let event = AuditEvent {
        actor: &caller.id,
        action,
        target_type: "delivery",
        target_id: &row.id,
        before_hash: None,
        after_hash: None,
        detail,
        area: Some(item_area),
    };
    audit::append(txn, now, event).await?;
    Ok(row)
}

/// Sends a failed or unconfirmed delivery again, touching nothing else.
pub async fn retry(hub: &Hub, caller: &Caller, delivery_id: &str) -> Result<DeliveryView> {
    if !matches!(caller.role, Role::Admin | Role::Publisher) {
        return Err(Error::forbidden(
            "only publishers and administrators retry deliveries",
        ));
    }
    let txn = begin_write(&hub.db).await?;
    let (row, item, state) = load_for_operator(&txn, caller, delivery_id).await?;
    if !matches!(state, DeliveryState::Failed | DeliveryState::Unconfirmed) {
        let message = format!(
            "only failed or unconfirmed deliveries are retried; this one is {}",
            state.as_str()
        );
        return Err(Error::conflict("not_retryable", message));
    }
    if row.kind == DeliveryKind::Publish && item.state != crate::domain::item::ItemState::Published {
        return Err(Error::conflict(
            "item_not_published",
            "the item is no longer published",
        ));
    }
    // A version a correction (更正) replaced never goes out again.
    if row.kind == DeliveryKind::Publish && item.published_version != Some(row.version) {
        return Err(Error::conflict(
            "superseded",
            format!(
                "version {} of the item was corrected; its current version goes out instead",
                row.version
            ),
        ));
    }
    let now = hub.clock.now();
    let row = move_by_operator(
        &txn,
        hub,
        caller,
        (row, state, &item.area_code),
        DeliveryState::Pending,
        "delivery.retry",
        |active| {
            // A fresh budget of attempts, due now.
            active.attempts = Set(0);
            active.next_attempt_at = Set(now);
            active.lease_owner = Set(None);
            active.lease_expires_at = Set(None);
        },
    )
    .await?;
    txn.commit().await?;
    hub.due.wake(row.channel);
    view(hub, row).await
}

/// Cancels a delivery not yet sent (a scheduled announcement called off); nothing else changes.
pub async fn cancel(hub: &Hub, caller: &Caller, delivery_id: &str) -> Result<DeliveryView> {
    if !matches!(caller.role, Role::Admin | Role::Publisher | Role::VillageOperator) {
        return Err(Error::forbidden("your role may not cancel deliveries"));
    }
    let txn = begin_write(&hub.db).await?;
    let (row, item, state) = load_for_operator(&txn, caller, delivery_id).await?;
    if !state.not_yet_sent() {
        let message = format!(
            "only deliveries not yet sent are cancelled; this one is {}",
            state.as_str()
        );
        return Err(Error::conflict("not_cancellable", message));
    }
    let row = move_by_operator(
        &txn,
        hub,
        caller,
        (row, state, &item.area_code),
        DeliveryState::Cancelled,
        "delivery.cancel",
        |_| {},
    )
    .await?;
    txn.commit().await?;
    view(hub, row).await
}

/// Asks the channel now whether an unconfirmed delivery arrived (向渠道核实), instead of sending
/// it again: the inbox's reconciler looks for it on its next pass, as it does for one whose
/// report never came, and a report it finds settles the delivery.
pub async fn reconcile(hub: &Hub, caller: &Caller, delivery_id: &str) -> Result<DeliveryView> {
    if !matches!(caller.role, Role::Admin | Role::Publisher) {
        return Err(Error::forbidden(
            "only publishers and administrators ask channels about deliveries",
        ));
    }
    let txn = begin_write(&hub.db).await?;
    let (row, item, state) = load_for_operator(&txn, caller, delivery_id).await?;
    if state != DeliveryState::Unconfirmed {
        let message = format!(
            "only unconfirmed deliveries are asked about; this one is {}",
            state.as_str()
        );
        return Err(Error::conflict("not_unconfirmed", message));
    }
    let now = hub.clock.now();
    queue::await_report(&txn, &[row.id.as_str()], now).await?;
    let event = AuditEvent {
        actor: &caller.id,
        action: "delivery.reconcile",
        target_type: "delivery",
        target_id: &row.id,
        before_hash: None,
        after_hash: None,
        detail: serde_json::json!({"item_id": row.item_id}),
        area: Some(&item.area_code),
    };
    audit::append(&txn, now, event).await?;
    txn.commit().await?;
    view(hub, row).await
}

async fn view(hub: &Hub, row: delivery::Model) -> Result<DeliveryView> {
    with_target_names(hub, vec![row])
        .await?
        .into_iter()
        .next()
        .ok_or(Error::NotFound("delivery"))
}
