//! CAP 1.2 alerts from an upstream warning system (气象台, 应急管理局 via 国家突发事件预警信息
//! 发布系统): an Alert becomes an emergency item, published at once to every channel of the
//! areas it covers, so it preempts routine audio and takes over notice boards until it expires;
//! an Update takes the items of the alerts it references down and publishes its own; a Cancel
//! only takes them down.
//!
//! The alert goes through the same steps as any item, each in the audit chain: the system
//! account `cap-intake` (预警信息接入, which cannot log in) writes and submits it; the posting
//! account, an administrator's, checks (保密审查), approves and publishes it. So an alert keeps
//! the four-eyes rule: the account that writes an item never approves it.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, Set,
    sea_query::Expr,
};
use serde::Serialize;

use super::{
    ApproveInput, ConfidentialityCheckInput, PublishInput, WithdrawInput, approve, authoring::create_item_in,
    confidentiality_check, preview_targets, publish, require, submit, withdraw,
};
use crate::{
    accounts::Caller,
    clock::china_date,
    domain::{
        area::AreaCode,
        cap::{CapAlert, MsgType},
        item::{Disclosure, Genre, ItemInput, ItemState},
        user::Role,
    },
    error::{Error, Result},
    hub::Hub,
    idempotency::IdempotencyKey,
    store::{
        begin_write,
        entities::{cap_alert, item, user},
        store_time,
    },
};

/// The catalog entry alerts are filed under: 突发公共事件的应急预案、预警信息及应对情况.
const ALERT_CATALOG: &str = "art20-12";

/// The PostgreSQL advisory lock that numbers alerts one at a time (any constant no other
/// lock uses; "ALRT" in ASCII).
const ALERT_NUMBERING_LOCK: i64 = 0x414C_5254;

/// What a CAP message did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AlertOutcome {
    pub identifier: String,
    /// `Alert`, `Update` or `Cancel`.
    pub msg_type: String,
    /// The emergency item it published (Alert and Update).
    pub item_id: Option<String>,
    /// The area codes it reaches.
    pub areas: Vec<String>,
    /// Items of referenced alerts it took down.
    pub withdrawn: Vec<String>,
    /// True when this message had been taken before and nothing was done again.
    pub replayed: bool,
}

/// Takes a CAP message in. A message seen before (same sender and identifier) is answered as
/// it was, not broadcast twice. The message is recorded before anything is done for it, and
/// each step after checks what is done already: a crash part-way leaves a message that the
/// sender's usual resend carries on from where it stopped, never a second broadcast.
pub async fn receive_cap(hub: &Hub, caller: &Caller, xml: &[u8]) -> Result<AlertOutcome> {
    require(
        caller.role == Role::Admin,
        "only an administrator's account may post CAP alerts",
    )?;
    let alert = CapAlert::parse(xml).map_err(|e| Error::validation(e.element, e.message))?;
    let seen = find_message(hub, &alert.sender, &alert.identifier).await?;
    if let Some(seen) = &seen
        && let Some(by) = &seen.superseded_by
    {
        // An attempt that published as the Cancel came, and stopped before it could take
        // its own item down, left it out: it comes down now.
        if let Some(item_id) = &seen.item_id {
            withdraw_if_published(hub, caller, item_id, superseded_reason(by)).await?;
        }
        return Err(superseded(by));
    }
    if let Some(seen) = &seen
        && is_done(hub, seen).await?
    {
        return Ok(AlertOutcome {
            identifier: seen.identifier.clone(),
            msg_type: seen.msg_type.clone(),
            item_id: seen.item_id.clone(),
            areas: Vec::new(),
            withdrawn: Vec::new(),
            replayed: true,
        });
    }
    let areas = reach(hub, caller, &alert)?;
    if let Some(expires) = alert.expires().filter(|e| *e <= hub.clock.now()) {
        return Err(Error::validation(
            "alert.info.expires",
            format!("the alert expired at {}", expires.to_rfc3339()),
        ));
    }
    let message = match seen {
        Some(seen) => seen,
        None => record_message(hub, caller, &alert).await?,
    };
    // An Update's own item goes out before the one it replaces comes down, so the area is
    // never left without the warning if publishing fails; on the devices the new one waits
    // behind the old (same priority) until the old one's cancel arrives.
    let item_id = match alert.msg_type {
        MsgType::Cancel => None,
        MsgType::Alert | MsgType::Update => Some(broadcast(hub, caller, &alert, &areas, message).await?),
    };
    let withdrawn = take_down_referenced(hub, caller, &alert).await?;
    Ok(AlertOutcome {
        identifier: alert.identifier,
        msg_type: alert.msg_type.as_str().into(),
        item_id,
        areas: areas.iter().map(ToString::to_string).collect(),
        withdrawn,
        replayed: false,
    })
}

/// The answer to an alert that an Update or Cancel has taken the place of: it never goes out.
fn superseded(by: &str) -> Error {
    Error::conflict(
        "alert_superseded",
        format!("this alert was replaced or cancelled by message {by}; it is not broadcast"),
    )
}

/// The Update or Cancel that took the recorded message's place, read again (it may have
/// come in while this request was under way).
async fn superseded_by(hub: &Hub, message_id: &str) -> Result<Option<String>> {
    Ok(cap_alert::Entity::find_by_id(message_id)
        .one(&hub.db)
        .await?
        .and_then(|message| message.superseded_by))
}

/// Whether everything a recorded message asks for is done: its item went out (and may have
/// come down since). A Cancel is never "done" here: taking down again what is down already
/// does nothing, so it simply runs again.
async fn is_done(hub: &Hub, message: &cap_alert::Model) -> Result<bool> {
    let Some(item_id) = &message.item_id else {
        return Ok(false);
    };
    let state = item_state(hub, item_id).await?;
    Ok(matches!(
        state,
        Some(ItemState::Published | ItemState::Withdrawn | ItemState::Expired)
    ))
}

/// Records a message before anything is done for it. The same message posted twice at once
/// meets the unique index: the second is told to wait for the first.
async fn record_message(hub: &Hub, caller: &Caller, alert: &CapAlert) -> Result<cap_alert::Model> {
    let txn = begin_write(&hub.db).await?;
    let recorded = cap_alert::ActiveModel {
        id: Set(hub.clock.new_id().to_string()),
        sender: Set(alert.sender.clone()),
        identifier: Set(alert.identifier.clone()),
        sent: Set(store_time(alert.sent)),
        msg_type: Set(alert.msg_type.as_str().into()),
        item_id: Set(None),
        posted_by: Set(caller.id.clone()),
        received_at: Set(hub.clock.now()),
        superseded_by: Set(None),
    }
    .insert(&txn)
    .await;
    match recorded {
        Ok(recorded) => {
            txn.commit().await?;
            Ok(recorded)
        }
        Err(e) if matches!(e.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_))) => {
            Err(Error::conflict(
                "alert_in_progress",
                "this CAP message is being taken in by another request; send it again shortly",
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// An item's state, if the item exists.
async fn item_state(hub: &Hub, id: &str) -> Result<Option<ItemState>> {
    Ok(item::Entity::find_by_id(id).one(&hub.db).await?.map(|i| i.state))
}

async fn find_message(hub: &Hub, sender: &str, identifier: &str) -> Result<Option<cap_alert::Model>> {
    Ok(cap_alert::Entity::find()
        .filter(cap_alert::Column::Sender.eq(sender))
        .filter(cap_alert::Column::Identifier.eq(identifier))
        .one(&hub.db)
        .await?)
}

/// The areas an Alert or Update reaches, all within the poster's own area.
fn reach(hub: &Hub, caller: &Caller, alert: &CapAlert) -> Result<Vec<AreaCode>> {
    if alert.msg_type == MsgType::Cancel {
        return Ok(Vec::new());
    }
    let areas = alert.reach(&hub.areas);
    if areas.is_empty() {
        return Err(Error::validation(
            "alert.info.area",
            "no geocode, polygon or circle of the alert covers an area of this county",
        ));
    }
    if let Some(outside) = areas.iter().find(|a| !caller.sees(a)) {
        return Err(Error::forbidden(format!(
            "the alert reaches area {outside}, outside your area {}",
            caller.area
        )));
    }
    Ok(areas)
}

/// Withdraws the published items of the alerts an Update or Cancel references.
async fn take_down_referenced(hub: &Hub, caller: &Caller, alert: &CapAlert) -> Result<Vec<String>> {
    let mut known = 0;
    let mut withdrawn = Vec::new();
    for reference in &alert.references {
        let Some(earlier) = find_message(hub, &reference.sender, &reference.identifier).await? else {
            continue;
        };
        known += 1;
        // Only a poster who may take the earlier alert's item down may retire it.
        if let Some(item_id) = &earlier.item_id {
            crate::items::load_visible(&hub.db, caller, item_id, false).await?;
        }
        // Marked before its item is looked at: an attempt at the earlier alert still under
        // way checks the mark after it publishes, and takes its item down itself.
        cap_alert::Entity::update_many()
            .col_expr(
                cap_alert::Column::SupersededBy,
                Expr::value(alert.identifier.clone()),
            )
            .filter(cap_alert::Column::Id.eq(&earlier.id))
            .exec(&hub.db)
            .await?;
        let Some(item_id) = earlier.item_id else { continue };
        let reason = format!(
            "预警{}：{}（{}）",
            if alert.msg_type == MsgType::Cancel {
                "解除"
            } else {
                "更新"
            },
            alert.identifier,
            alert.sender
        );
        if withdraw_if_published(hub, caller, &item_id, reason).await? {
            withdrawn.push(item_id);
        }
    }
    if alert.msg_type != MsgType::Alert && known == 0 {
        return Err(Error::validation(
            "alert.references",
            "none of the referenced alerts was received here",
        ));
    }
    Ok(withdrawn)
}

/// Publishes the alert as an emergency item: one item for the smallest area holding every
/// reached area, narrowed to the device targets inside the reached areas. Carries on from
/// whatever an earlier, interrupted attempt at the same message got done.
async fn broadcast(
    hub: &Hub,
    caller: &Caller,
    alert: &CapAlert,
    areas: &[AreaCode],
    message: cap_alert::Model,
) -> Result<String> {
    let home = common_area(areas).unwrap_or_else(|| caller.area.clone());
    let author = intake_author(hub).await?;
    let message_id = message.id.clone();
    let id = match message.item_id {
        Some(id) => id,
        None => create_noted_item(hub, &author, alert, &home, &message_id).await?,
    };
    let mut state = item_state(hub, &id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("alert item {id} vanished"))?;
    let note = format!(
        "CAP {} {}（{}）",
        alert.msg_type.as_str(),
        alert.identifier,
        alert.sender
    );
    if state == ItemState::Draft {
        state = submit(hub, &author, &id).await?.state;
    }
    if state == ItemState::InReview {
        let check = ConfidentialityCheckInput {
            version: 1,
            confirmed: true,
            comment: note.clone(),
        };
        confidentiality_check(hub, caller, &id, check).await?;
        let approval = ApproveInput {
            version: 1,
            comment: note,
        };
        state = approve(hub, caller, &id, approval).await?.state;
    }
    if state != ItemState::Approved {
        return Ok(id);
    }
    if let Some(expires) = alert.expires() {
        // The alert ends at its own time, not at the end of the day its 有效期 names.
        item::Entity::update_many()
            .col_expr(item::Column::ExpiresAt, Expr::value(store_time(expires)))
            .filter(item::Column::Id.eq(&id))
            .exec(&hub.db)
            .await?;
    }
    let mut input = PublishInput::default();
    if areas.len() > 1 || areas.first() != Some(&home) {
        for target in preview_targets(hub, caller, &id, PublishInput::default()).await? {
            let area = AreaCode::parse(&target.area_code).map_err(anyhow::Error::new)?;
            if !target.channel.is_device() || areas.iter().any(|r| area.is_within(r)) {
                input.targets.push(target.id);
            }
        }
    }
    if let Some(by) = superseded_by(hub, &message_id).await? {
        return Err(superseded(&by));
    }
    let key = IdempotencyKey::parse(&format!("cap:{id}"))?;
    let outcome = publish(hub, caller, &id, &key, input).await?;
    if outcome.status >= 300 {
        return Err(anyhow::anyhow!("alert item {id}: publish answered {}", outcome.status).into());
    }
    // An Update or Cancel that came in while this was publishing found nothing published to
    // take down: this attempt takes its own item down.
    if let Some(by) = superseded_by(hub, &message_id).await? {
        withdraw_if_published(hub, caller, &id, superseded_reason(&by)).await?;
        return Err(superseded(&by));
    }
    Ok(id)
}

fn superseded_reason(by: &str) -> String {
    format!("预警已被 {by} 取代")
}

/// Takes the item down if it is out; says whether this call did. A racing request (the
/// Cancel, or the alert's own attempt) that took it down first leaves nothing to do.
async fn withdraw_if_published(hub: &Hub, caller: &Caller, item_id: &str, reason: String) -> Result<bool> {
    if item_state(hub, item_id).await? != Some(ItemState::Published) {
        return Ok(false);
    }
    match withdraw(hub, caller, item_id, WithdrawInput { reason }).await {
        Ok(_) => Ok(true),
        Err(_) if item_state(hub, item_id).await? == Some(ItemState::Withdrawn) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Creates the alert's item and notes it on its message in one transaction, so a crash never
/// leaves an item the message does not name. Only one request notes an item: a resend racing
/// this one that noted first wins, this one's item is never written, and theirs is used.
async fn create_noted_item(
    hub: &Hub,
    author: &Caller,
    alert: &CapAlert,
    home: &AreaCode,
    message_id: &str,
) -> Result<String> {
    let txn = begin_write(&hub.db).await?;
    // Alerts are numbered one at a time (two different alerts lock different message rows
    // below); on SQLite the write transaction is already alone.
    if crate::store::is_postgres(&txn) {
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({ALERT_NUMBERING_LOCK})"))
            .await?;
    }
    // The message row, locked: a racing resend of the same message waits here, then finds
    // the item this one noted.
    let message = cap_alert::Entity::find_by_id(message_id)
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or_else(|| anyhow::anyhow!("CAP message {message_id} vanished"))?;
    if let Some(theirs) = message.item_id {
        txn.rollback().await?;
        return Ok(theirs);
    }
    // Numbered inside the transaction, under the numbering lock: two alerts at once never take
    // the same 索引号.
    let input = alert_item(&txn, hub, alert, home).await?;
    let created = create_item_in(&txn, hub, author, input)
        .await
        .map_err(|e| sender_refused(e, alert))?;
    let mut noted: cap_alert::ActiveModel = message.into();
    noted.item_id = Set(Some(created.clone()));
    noted.update(&txn).await?;
    txn.commit().await?;
    Ok(created)
}

/// An alert's item refused for its issuer (a sender the organ list does not know, or a retired
/// organ) names the CAP element the issuer came from: an administrator adds the organ or the
/// spelling as an alias, and the sender's resend goes out.
fn sender_refused(error: Error, alert: &CapAlert) -> Error {
    match error {
        Error::Refused {
            code,
            field: Some(field),
            message,
        } if field.starts_with("issuers") => {
            let element = if alert.info().and_then(|info| info.sender_name.as_ref()).is_some() {
                "alert.info.senderName"
            } else {
                "alert.sender"
            };
            Error::Refused {
                code,
                field: Some(element.into()),
                message,
            }
        }
        other => other,
    }
}

/// The item an Alert or Update is published as.
async fn alert_item(
    db: &impl ConnectionTrait,
    hub: &Hub,
    alert: &CapAlert,
    home: &AreaCode,
) -> Result<ItemInput> {
    let info = alert
        .info()
        .ok_or_else(|| Error::validation("alert.info", "an Alert or Update needs at least one info"))?;
    let headline = info.headline.clone().unwrap_or_else(|| info.event.clone());
    let mut body = String::new();
    for text in [&info.description, &info.instruction].into_iter().flatten() {
        body.push_str(&format!("<p>{}</p>", ammonia::clean_text(text)));
    }
    if body.is_empty() {
        body = format!("<p>{}</p>", ammonia::clean_text(&headline));
    }
    Ok(ItemInput {
        title: headline.chars().take(200).collect(),
        body,
        summary: headline.clone(),
        disclosure: Disclosure::Public,
        redacted_body: None,
        legal_reason: None,
        index_no: next_index_no(db, hub, alert).await?,
        issuers: vec![info.sender_name.clone().unwrap_or_else(|| alert.sender.clone())],
        doc_no: None,
        // A sender's clock a little ahead around midnight must not date it tomorrow.
        written_date: china_date(alert.sent.min(hub.clock.now())),
        topic: vec!["综合政务".into(), "应急管理".into()],
        validity: None,
        genre: Genre::PublicNotice,
        keywords: vec![info.event.clone()],
        catalog: ALERT_CATALOG.into(),
        area_code: home.to_string(),
        tags: Vec::new(),
        attachments: Vec::new(),
        emergency: true,
        expires_on: alert.expires().map(china_date),
        interprets: None,
        correction_note: None,
        confirm_duplicate_doc_no: false,
    })
}

/// The user name of the account alerts are written under.
pub const INTAKE_USERNAME: &str = "cap-intake";

/// The system account alerts are written under, made on first use: county-wide, a publisher,
/// disabled, with no password that could ever match.
async fn intake_author(hub: &Hub) -> Result<Caller> {
    let as_caller = crate::accounts::caller_from;
    let find = || {
        user::Entity::find()
            .filter(user::Column::Username.eq(INTAKE_USERNAME))
            .one(&hub.db)
    };
    if let Some(row) = find().await? {
        return as_caller(row);
    }
    let made = user::ActiveModel {
        id: Set(hub.clock.new_id().to_string()),
        username: Set(INTAKE_USERNAME.into()),
        display_name: Set("预警信息接入".into()),
        // Not a hash of anything: no password verifies against it.
        password_hash: Set("!".into()),
        role: Set(Role::Publisher),
        area_code: Set(hub.areas.root().code.to_string()),
        disabled: Set(true),
        created_at: Set(hub.clock.now()),
        must_change_password: Set(false),
    }
    .insert(&hub.db)
    .await;
    // Two alerts at once may both make it; the one that lost the race reads the winner's.
    match (made, find().await?) {
        (_, Some(row)) => as_caller(row),
        (Err(e), None) => Err(e.into()),
        (Ok(_), None) => Err(anyhow::anyhow!("the {INTAKE_USERNAME} account vanished").into()),
    }
}

/// The smallest area holding every one of `areas`.
fn common_area(areas: &[AreaCode]) -> Option<AreaCode> {
    let mut candidate = areas.first()?.clone();
    while !areas.iter().all(|a| a.is_within(&candidate)) {
        candidate = candidate.parent()?;
    }
    Some(candidate)
}

/// The next 索引号 for an alert: the configured organisation code, the year, and a serial in
/// the 900000s that hand-numbered items never use.
async fn next_index_no(db: &impl ConnectionTrait, hub: &Hub, alert: &CapAlert) -> Result<String> {
    let year = china_date(alert.sent).format("%Y").to_string();
    let prefix = format!("{}/{year}-9", hub.settings.content.organisation_code);
    let taken = item::Entity::find()
        .filter(item::Column::IndexNo.starts_with(&prefix))
        .all(db)
        .await?;
    let serial = taken
        .iter()
        .filter_map(|i| i.index_no.get(prefix.len()..).and_then(|s| s.parse::<u32>().ok()))
        .max()
        .map_or(1, |n| n + 1);
    Ok(format!("{prefix}{serial:05}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(raw: &[&str]) -> Vec<AreaCode> {
        raw.iter().map(|c| AreaCode::parse(c).expect("code")).collect()
    }

    #[test]
    fn the_common_area_is_the_smallest_holding_them_all() {
        let of = |raw: &[&str]| common_area(&codes(raw)).map(|a| a.to_string());
        assert_eq!(of(&["530426101001"]), Some("530426101001".into()));
        assert_eq!(of(&["530426101001", "530426101002"]), Some("530426101".into()));
        assert_eq!(of(&["530426101001", "530426102001"]), Some("530426".into()));
        assert_eq!(of(&["530426101", "530426101002"]), Some("530426101".into()));
        assert_eq!(of(&[]), None);
    }
}
