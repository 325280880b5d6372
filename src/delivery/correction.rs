//! Corrections (更正): an approved correction goes to every target the item reached, each
//! delivery naming the one of the earlier version it supersedes there, and what each channel
//! holds of the earlier version comes down as that channel takes corrections
//! ([`CorrectionStyle`]): not at all (replaced in place), at once (a device's command), or once
//! the new version is out (a WeChat article).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use herald_channels::{ChannelKind, CorrectionStyle, PublishedItem};
use sea_orm::{
    ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect,
    sea_query::{Expr, ExprTrait, Query},
};

use super::{
    outbox::{
        Renditions, cancel_unsent, correction_style, insert_selected, insert_withdrawals, locked_publishes,
        prefixed, store_renditions, withdrawn_ids,
    },
    queue,
    state::{DeliveryKind, DeliveryState, priority_of},
};
use crate::{
    error::Result,
    hub::Hub,
    store::{among, begin_write, entities::delivery},
};

/// Why the earlier version comes down from a channel that does not replace it in place.
fn replaced_reason(version: i32) -> String {
    format!("更正：已由第{version}版替代")
}

/// Writes the deliveries of correction `publication_id` (of `item`, a new version of a
/// published item) in the approving transaction: one per target the item reached or is still
/// on its way to, each superseding the delivery it replaces there. What was not sent yet of the
/// earlier version is cancelled; a device's earlier command is cancelled at once.
pub async fn enqueue_correction(
    hub: &Hub,
    txn: &sea_orm::DatabaseTransaction,
    publication_id: &str,
    item: &PublishedItem,
    now: DateTime<Utc>,
) -> Result<BTreeMap<ChannelKind, usize>> {
    let publishes = locked_publishes(txn, &item.item_id).await?;
    // Per target, the newest delivery that got there, may have, or still may: the one this
    // correction takes the place of. Failed, cancelled and expired ones left nothing to correct.
    let mut latest: HashMap<&str, &delivery::Model> = HashMap::new();
    for d in &publishes {
        let standing =
            d.state.reached_target() || d.state == DeliveryState::Sending || d.state.not_yet_sent();
        if standing
            && latest
                .get(d.target_id.as_str())
                .is_none_or(|l| l.version < d.version)
        {
            latest.insert(d.target_id.as_str(), d);
        }
    }
    let replaced: Vec<delivery::Model> = latest.into_values().cloned().collect();
    if replaced.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut per_channel: BTreeMap<ChannelKind, i64> = BTreeMap::new();
    for d in &replaced {
        *per_channel.entry(d.channel).or_insert(0) += 1;
    }
    let per_channel: Vec<(ChannelKind, i64)> = per_channel.into_iter().collect();
    let Renditions {
        pick,
        ids: renditions,
        counts,
        written,
    } = store_renditions(
        hub,
        txn,
        publication_id,
        item,
        &per_channel,
        (delivery::Entity, delivery::Column::Channel),
        now,
    )
    .await?;
    use delivery::Column as C;
    let target_id = (delivery::Entity, C::TargetId);
    // A replaced delivery never sent is cancelled below and stood nowhere: the new one
    // supersedes what that one would have. (A retrying one may have landed: it is followed
    // by a withdrawal below, unless the new one replaces it in place.)
    let supersedes = Expr::case(
        Expr::col(C::State).eq(DeliveryState::Pending),
        Expr::col(C::SupersedesId),
    )
    .finally(Expr::col(C::Id));
    // A publication still waiting for its time (定时发布) keeps its schedule: the correction
    // goes out no sooner, and no later than it would have.
    let first_attempt =
        Expr::case(Expr::col(C::NotBefore).gt(now), Expr::col(C::NotBefore)).finally(Expr::val(now));
    let (id_prefix, key_prefix) = super::outbox::delivery_prefixes(publication_id);
    let mut select = Query::select();
    select
        .from(delivery::Entity)
        .columns([C::NotBefore, C::NotAfter])
        .expr(prefixed(id_prefix, target_id))
        .expr(Expr::val(publication_id))
        .column(C::ItemId)
        .expr(Expr::val(item.version))
        .columns([C::TargetId, C::Channel, C::AreaCode])
        .expr(Expr::val(DeliveryKind::Publish))
        .expr(Expr::val(DeliveryState::Pending))
        .expr(Expr::val(priority_of(item.emergency)))
        .expr(Expr::val(0i32))
        .expr(first_attempt)
        .expr(pick)
        .expr(prefixed(key_prefix, target_id))
        .expr(Expr::val(Option::<String>::None))
        .expr(Expr::val(now))
        .expr(Expr::val(now))
        .expr(supersedes)
        .and_where(among(
            sea_orm::ConnectionTrait::get_database_backend(txn),
            (delivery::Entity, C::Id),
            replaced.iter().map(|d| d.id.as_str()),
        ));
    insert_selected(txn, select).await?;
    let renditions: Vec<&str> = renditions.iter().map(String::as_str).collect();
    queue::enqueue_written(txn, &item.item_id, &renditions).await?;
    counts.apply(txn).await?;
    let taken_down = withdrawn_ids(txn, &item.item_id).await?;
    let (devices, others): (Vec<_>, Vec<_>) = replaced
        .into_iter()
        .partition(|d| correction_style(hub, d.channel) == CorrectionStyle::RemoveOldAndResend);
    // What was not sent yet is cancelled, the new version going in its place; a retrying one
    // may have landed, and comes down unless the new one replaces it in place.
    let unsent: Vec<delivery::Model> = others.into_iter().filter(|d| d.state.not_yet_sent()).collect();
    let mut reached = cancel_unsent(hub, txn, unsent).await?;
    reached.retain(|d| correction_style(hub, d.channel) != CorrectionStyle::InPlace);
    reached.extend(cancel_unsent(hub, txn, devices).await?);
    // A device command an earlier correction cancelled is not cancelled twice.
    reached.retain(|d| !taken_down.contains(d.id.as_str()));
    insert_withdrawals(
        hub,
        txn,
        &item.item_id,
        &replaced_reason(item.version),
        priority_of(item.emergency),
        &reached,
    )
    .await?;
    Ok(written)
}

/// Takes down, from channels whose correction is a new publication (WeChat), up to `limit`
/// earlier versions whose correction is now out; returns how many.
pub async fn try_remove_superseded(hub: &Hub, limit: u64) -> Result<usize> {
    let channels: Vec<ChannelKind> = hub
        .channels
        .kinds()
        .filter(|kind| correction_style(hub, *kind) == CorrectionStyle::PublishThenRemoveOld)
        .collect();
    if channels.is_empty() {
        return Ok(0);
    }
    use delivery::Column as C;
    let mut corrections_out = Query::select();
    corrections_out
        .column(C::SupersedesId)
        .from(delivery::Entity)
        .and_where(C::SupersedesId.is_not_null())
        .and_where(C::Kind.eq(DeliveryKind::Publish))
        .and_where(C::Channel.is_in(channels.iter().map(|c| c.as_str())))
        .and_where(C::State.is_in([
            DeliveryState::Delivered,
            DeliveryState::Displayed,
            DeliveryState::Played,
        ]));
    let mut followed = Query::select();
    followed
        .column(C::WithdrawsId)
        .from(delivery::Entity)
        .and_where(C::WithdrawsId.is_not_null())
        .and_where(C::State.is_not_in(DeliveryState::TAKEDOWN_ENDED));
    let due: Vec<delivery::Model> = delivery::Entity::find()
        .filter(C::Id.in_subquery(corrections_out))
        .filter(C::Id.not_in_subquery(followed))
        .filter(C::State.is_in(DeliveryState::REACHED))
        .limit(limit)
        .all(&hub.db)
        .await?;
    let mut removed = 0;
    for old in due {
        let txn = begin_write(&hub.db).await?;
        // Under the item's lock, as a withdrawal takes it: one of the two follows the old
        // delivery, never both.
        let publishes = locked_publishes(&txn, &old.item_id).await?;
        let followed = delivery::Entity::find()
            .filter(C::WithdrawsId.eq(old.id.as_str()))
            .filter(C::State.is_not_in(DeliveryState::TAKEDOWN_ENDED))
            .count(&txn)
            .await?;
        let Some(current) = publishes.iter().find(|d| d.id == old.id) else {
            continue;
        };
        if followed > 0 || !current.state.reached_target() {
            continue;
        }
        let newest = publishes.iter().map(|d| d.version).max().unwrap_or(old.version);
        removed += insert_withdrawals(
            hub,
            &txn,
            &old.item_id,
            &replaced_reason(newest),
            old.priority,
            std::slice::from_ref(current),
        )
        .await?;
        txn.commit().await?;
        hub.due.wake(current.channel);
    }
    Ok(removed)
}
