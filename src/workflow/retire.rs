//! Taking an item down: withdrawal by a person, and expiry when its 有效期 ends.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect, Set,
};
use serde::Deserialize;

use super::{Audited, ItemView, audit_item, get_item, require, require_state};
use crate::{
    accounts::Caller,
    audit::{self, AuditEvent},
    delivery,
    domain::{
        area::AreaCode,
        item::ItemState,
        text::{MAX_REASON_CHARS, multi_line},
    },
    error::{Error, Result},
    hub::Hub,
    items::load_visible,
    store::{begin_write, entities::item},
};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WithdrawInput {
    /// Why the item comes down; shown in the cleanup record.
    pub reason: String,
}

pub async fn withdraw(hub: &Hub, caller: &Caller, id: &str, input: WithdrawInput) -> Result<ItemView> {
    require(caller.role.may_withdraw(), "your role may not withdraw items")?;
    let reason = multi_line("reason", &input.reason, MAX_REASON_CHARS, false)?;
    if reason.is_empty() {
        return Err(Error::validation("reason", "say why the item is withdrawn"));
    }
    let reason = reason.as_str();
    let txn = begin_write(&hub.db).await?;
    let row = load_visible(&txn, caller, id, true).await?;
    require_state(&row, &[ItemState::Published], "withdraw")?;
    // A policy's interpretations (解读) explain what is no longer in force: they come down
    // with it, in the same transaction, each recorded as withdrawn with the policy.
    let interpretations = item::Entity::find()
        .filter(item::Column::InterpretsId.eq(id))
        .filter(item::Column::State.eq(ItemState::Published))
        .lock_exclusive()
        .all(&txn)
        .await?;
    // The caller is told only of those in their area.
    let mut interpretation_ids = Vec::new();
    for interpretation in &interpretations {
        if caller.sees(&AreaCode::parse(&interpretation.area_code).map_err(anyhow::Error::new)?) {
            interpretation_ids.push(interpretation.id.clone());
        }
    }
    let mut detail = serde_json::json!({"reason": reason});
    if !interpretation_ids.is_empty() {
        detail["interpretations_withdrawn"] = serde_json::json!(interpretation_ids);
    }
    take_down(&txn, hub, caller, row, reason, detail).await?;
    let with_policy = format!("所解读的政策已撤回：{reason}");
    for interpretation in interpretations {
        let detail = serde_json::json!({"reason": with_policy, "with_policy": id});
        take_down(&txn, hub, caller, interpretation, &with_policy, detail).await?;
    }

    txn.commit().await?;
    hub.due.wake_all();
    get_item(hub, caller, id).await
}

/// Withdraws published item `row` for `reason` inside `txn`: its state, the withdrawal of
/// everything it reached, and its audit entry with `detail`.
async fn take_down(
    txn: &DatabaseTransaction,
    hub: &Hub,
    caller: &Caller,
    row: item::Model,
    reason: &str,
    mut detail: serde_json::Value,
) -> Result<()> {
    let id = row.id.clone();
    let hash = row.approved_hash.clone();
    let emergency = row.emergency;
    let area_code = row.area_code.clone();
    let now = hub.clock.now();
    let mut active: item::ActiveModel = row.into();
    active.state = Set(ItemState::Withdrawn);
    // A correction under way has nothing left to correct.
    active.correcting = Set(None);
    active.withdrawn_at = Set(Some(now));
    active.updated_at = Set(now);
    active.update(txn).await?;
    detail["withdrawal_deliveries"] = delivery::enqueue_withdrawal(hub, txn, &id, reason, emergency)
        .await?
        .into();
    let entry = Audited {
        action: "item.withdraw",
        before_hash: hash.as_deref(),
        after_hash: hash.as_deref(),
        detail,
    };
    let area = AreaCode::parse(&area_code).map_err(anyhow::Error::new)?;
    if caller.sees(&area) {
        return audit_item(txn, hub, caller, &id, entry).await;
    }
    audit::append(
        txn,
        now,
        AuditEvent {
            actor: "system",
            action: entry.action,
            target_type: "item",
            target_id: &id,
            before_hash: entry.before_hash,
            after_hash: entry.after_hash,
            detail: entry.detail,
            area: Some(&area_code),
        },
    )
    .await?;
    Ok(())
}

/// Why expired items come down, as the cleanup record (清理结果) says.
pub const EXPIRY_REASON: &str = "有效期届满";

/// Moves published items past their 有效期 to `expired` and takes them down from every
/// channel; returns how many.
pub async fn expire_due(hub: &Hub) -> Result<u64> {
    let now = hub.clock.now();
    let due = item::Entity::find()
        .filter(item::Column::State.eq(ItemState::Published))
        .filter(item::Column::ExpiresAt.lte(now))
        .all(&hub.db)
        .await?;
    let mut expired = 0;
    for candidate in due {
        let txn = begin_write(&hub.db).await?;
        // Re-read under the lock: another instance may have expired or withdrawn it meanwhile.
        let Some(row) = item::Entity::find_by_id(&candidate.id)
            .lock_exclusive()
            .one(&txn)
            .await?
        else {
            continue;
        };
        // A correction may meanwhile have moved its 有效期 on.
        if row.state != ItemState::Published || row.expires_at.is_none_or(|at| at > now) {
            continue;
        }
        let hash = row.approved_hash.clone();
        let id = row.id.clone();
        let area_code = row.area_code.clone();
        let withdrawals = delivery::enqueue_withdrawal(hub, &txn, &id, EXPIRY_REASON, row.emergency).await?;
        let mut active: item::ActiveModel = row.into();
        active.state = Set(ItemState::Expired);
        active.correcting = Set(None);
        active.updated_at = Set(now);
        active.update(&txn).await?;
        audit::append(
            &txn,
            now,
            AuditEvent {
                actor: "system",
                action: "item.expire",
                target_type: "item",
                target_id: &id,
                before_hash: hash.as_deref(),
                after_hash: hash.as_deref(),
                detail: serde_json::json!({"withdrawal_deliveries": withdrawals}),
                area: Some(&area_code),
            },
        )
        .await?;
        txn.commit().await?;
        hub.due.wake_all();
        expired += 1;
    }
    Ok(expired)
}
