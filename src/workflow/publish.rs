//! Publishing an approved item: what it would reach, the exact renditions, and the publish
//! itself, which writes the publication and its deliveries in one transaction.

use chrono::{DateTime, Utc};
use herald_channels::ChannelKind;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, Set};
use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use super::{Audited, audit_item, require, require_state};
use crate::{
    accounts::Caller,
    delivery::{
        self,
        targets::{Reach, TargetView},
    },
    domain::{
        area::AreaCode,
        item::{ItemContent, ItemState, sha256_hex},
        text::{MAX_ID_CHARS, single_line},
    },
    error::{Error, Result},
    hub::Hub,
    idempotency::{IdempotencyKey, NextAction, SavedResponse, save_response, try_processing},
    items::{content_of, load_version, load_visible},
    store::{
        begin_write,
        entities::{item, publication},
    },
};

#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishInput {
    /// Channels to deliver to; empty means every channel whose targets match the item.
    #[serde(default)]
    pub channels: Vec<ChannelKind>,
    /// Narrows delivery to these of the resolved targets; empty means all of them.
    #[serde(default)]
    pub targets: Vec<String>,
    /// 定时发布: nothing goes out before this time. Omitted or past: at once.
    #[serde(default)]
    pub not_before: Option<DateTime<Utc>>,
    /// Deliveries not sent by this time are never sent (a notice about an event that is over).
    #[serde(default)]
    pub not_after: Option<DateTime<Utc>>,
}

/// More targets than a county registers are never named in one request.
const MAX_NAMED_TARGETS: usize = 10_000;

impl PublishInput {
    fn check_bounds(&self) -> Result<()> {
        if self.targets.len() > MAX_NAMED_TARGETS {
            return Err(Error::validation(
                "targets",
                format!("must name at most {MAX_NAMED_TARGETS} targets"),
            ));
        }
        for (i, target) in self.targets.iter().enumerate() {
            single_line(&format!("targets[{i}]"), target, MAX_ID_CHARS, true)?;
        }
        Ok(())
    }

    /// The schedule this request asks for, checked against `now`: a start in the past means
    /// at once; the end must come after the start.
    fn schedule(&self, now: DateTime<Utc>) -> Result<delivery::Schedule> {
        let not_before = self.not_before.filter(|at| *at > now);
        if let Some(at) = not_before
            && at > now + chrono::Duration::days(MAX_SCHEDULE_DAYS)
        {
            return Err(Error::validation(
                "not_before",
                format!("must be at most {MAX_SCHEDULE_DAYS} days ahead"),
            ));
        }
        if let Some(end) = self.not_after
            && end <= not_before.unwrap_or(now)
        {
            return Err(Error::validation(
                "not_after",
                "must come after the time the item goes out",
            ));
        }
        Ok(delivery::Schedule {
            not_before,
            not_after: self.not_after,
        })
    }
}

/// 定时发布 reaches at most this far ahead.
const MAX_SCHEDULE_DAYS: i64 = 366;

/// The targets an item's current version would reach, narrowed as a publish request would.
async fn reach_of(
    hub: &Hub,
    db: &impl ConnectionTrait,
    content: &ItemContent,
    input: &PublishInput,
) -> Result<Reach> {
    for (i, channel) in input.channels.iter().enumerate() {
        if hub.channels.get(*channel).is_none() {
            return Err(Error::validation(
                format!("channels[{i}]"),
                format!("channel {} is not available", channel.as_str()),
            ));
        }
    }
    let area = AreaCode::parse(&content.area_code).map_err(anyhow::Error::new)?;
    let reach = Reach::new(
        hub,
        &area,
        &content.catalog,
        &content.tags,
        &input.channels,
        &input.targets,
    );
    if let Some(missing) = reach.missing(db, &input.targets).await?.first() {
        let i = input.targets.iter().position(|t| t == missing).unwrap_or(0);
        return Err(Error::validation(
            format!("targets[{i}]"),
            format!("target {missing} is not among the targets this item reaches"),
        ));
    }
    Ok(reach)
}

/// What publishing would reach now, for the publisher to check first.
pub async fn preview_targets(
    hub: &Hub,
    caller: &Caller,
    id: &str,
    input: PublishInput,
) -> Result<Vec<TargetView>> {
    input.check_bounds()?;
    let row = load_visible(&hub.db, caller, id, false).await?;
    let content = content_of(&load_version(&hub.db, id, row.current_version).await?)?;
    reach_of(hub, &hub.db, &content, &input)
        .await?
        .targets(&hub.db)
        .await
}

/// The exact rendition a channel would receive for the current version.
pub async fn preview_rendition(
    hub: &Hub,
    caller: &Caller,
    id: &str,
    channel: ChannelKind,
) -> Result<herald_channels::Rendition> {
    let row = load_visible(&hub.db, caller, id, false).await?;
    let version = load_version(&hub.db, id, row.current_version).await?;
    let content = content_of(&version)?;
    let adapter = hub.channels.get(channel).ok_or_else(|| {
        Error::validation(
            "channel",
            format!("channel {} is not available", channel.as_str()),
        )
    })?;
    let now = hub.clock.now();
    let at = row.published_at.unwrap_or(now);
    let mut item = delivery::published_item(
        hub,
        &hub.db,
        id,
        (version.version, &version.content_hash, &content),
        (at, row.expires_at),
    )
    .await?;
    // A correction is shown with its note: as it went out, or as it would go out now.
    if let Some(note) = version.correction_note {
        let went_out = publication::Entity::find()
            .filter(publication::Column::ItemId.eq(id))
            .filter(publication::Column::Version.eq(version.version))
            .one(&hub.db)
            .await?;
        let corrects_version = went_out
            .as_ref()
            .and_then(|p| p.corrects_version)
            .or(row.published_version)
            .unwrap_or(version.version - 1);
        item.correction = Some(herald_channels::Correction {
            note,
            corrects_version,
            corrected_at: went_out.map_or(now, |p| p.published_at).to_rfc3339(),
        });
    }
    adapter.render(&item).map_err(|e| Error::Refused {
        code: "unrenderable",
        field: None,
        message: e.to_string(),
    })
}

/// The saved outcome of a publish request, returned again for a retry with the same key.
#[derive(Debug, Clone)]
pub struct PublishOutcome {
    pub status: u16,
    pub body: serde_json::Value,
    pub replayed: bool,
}

pub async fn publish(
    hub: &Hub,
    caller: &Caller,
    id: &str,
    key: &IdempotencyKey,
    input: PublishInput,
) -> Result<PublishOutcome> {
    input.check_bounds()?;
    require(caller.role.may_publish(), "your role may not publish items")?;
    let request_hash = sha256_hex(serde_json::json!([id, input]).to_string().as_bytes());
    let txn = begin_write(&hub.db).await?;
    // Lock the item first: a concurrent retry waits here, then finds the saved response below.
    let row = load_visible(&txn, caller, id, true).await?;
    if let NextAction::Replay(saved) = try_processing(&txn, &caller.id, key, &request_hash).await? {
        return Ok(PublishOutcome {
            status: saved.status,
            body: saved.body,
            replayed: true,
        });
    }
    let disclosure = row.disclosure;
    let expires_at = row.expires_at;
    if !disclosure.may_leave_the_store() {
        return Err(Error::Refused {
            code: "not_publishable",
            field: Some("disclosure".into()),
            message: format!(
                "an item whose disclosure is {} (此件依申请公开 / 此件不公开) is never published",
                disclosure.as_str()
            ),
        });
    }
    require_state(&row, &[ItemState::Approved], "publish")?;
    if let Some(expires_at) = row.expires_at
        && expires_at <= hub.clock.now()
    {
        return Err(Error::Refused {
            code: "expired",
            field: Some("expires_on".into()),
            message: "the item's 有效期 has ended; an expired item is never published".into(),
        });
    }
    let (Some(approved_version), Some(approved_hash)) = (row.approved_version, row.approved_hash.clone())
    else {
        return Err(Error::conflict(
            "not_approved",
            "the item has no approved version",
        ));
    };
    let version = load_version(&txn, id, approved_version).await?;
    if version.content_hash != approved_hash || approved_version != row.current_version {
        return Err(anyhow::anyhow!(
            "item {id}: approved version {approved_version} no longer matches its pinned hash"
        )
        .into());
    }
    let now = hub.clock.now();
    let schedule = input.schedule(now)?;
    // A scheduled publication counts as published from the time it goes out.
    let goes_out = schedule.not_before.unwrap_or(now);
    if let Some(policy_id) = &row.interprets_id {
        // Locked as a withdrawal locks it: one of the two waits for the other.
        let policy = item::Entity::find_by_id(policy_id)
            .lock_exclusive()
            .one(&txn)
            .await?;
        // A withdrawn or expired policy keeps its publication date, but nothing explains it now.
        if policy
            .filter(|p| p.state == ItemState::Published)
            .and_then(|p| p.published_at)
            .is_none_or(|policy_out| policy_out > goes_out)
        {
            return Err(Error::conflict(
                "policy_not_published",
                "an interpretation (解读) is published after its policy, not before",
            ));
        }
    }
    let content = content_of(&version)?;
    let reach = reach_of(hub, &txn, &content, &input).await?;
    let publication_id = hub.clock.new_id().to_string();
    let channels = serde_json::to_string(&input.channels).map_err(anyhow::Error::new)?;
    publication::ActiveModel {
        id: Set(publication_id.as_str().into()),
        item_id: Set(id.into()),
        version: Set(approved_version),
        content_hash: Set(approved_hash.clone()),
        published_by: Set(caller.id.clone()),
        published_at: Set(goes_out),
        channels: Set(channels),
        corrects_version: Set(None),
        correction_note: Set(None),
    }
    .insert(&txn)
    .await?;
    let mut active: item::ActiveModel = row.into();
    active.state = Set(ItemState::Published);
    active.published_version = Set(Some(approved_version));
    active.published_at = Set(Some(goes_out));
    active.updated_at = Set(now);
    active.update(&txn).await?;
    let published = delivery::published_item(
        hub,
        &txn,
        id,
        (approved_version, &approved_hash, &content),
        (goes_out, expires_at),
    )
    .await?;
    let enqueued =
        delivery::enqueue_publication(hub, &txn, &publication_id, &published, (&reach, schedule), now)
            .await?;
    let deliveries: BTreeMap<&str, usize> = enqueued.written.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    let detail = serde_json::json!({"version": approved_version, "publication_id": publication_id, "channels": input.channels, "deliveries": deliveries, "not_before": schedule.not_before, "not_after": schedule.not_after});
    audit_item(
        &txn,
        hub,
        caller,
        id,
        Audited {
            action: "item.publish",
            before_hash: Some(&approved_hash),
            after_hash: Some(&approved_hash),
            detail,
        },
    )
    .await?;
    let body = serde_json::json!({
        "publication_id": publication_id,
        "item_id": id,
        "version": approved_version,
        "content_hash": approved_hash,
        "published_at": goes_out,
        "channels": input.channels,
        "deliveries": deliveries,
        "not_before": schedule.not_before,
        "not_after": schedule.not_after,
    });
    let response = SavedResponse { status: 201, body };
    save_response(&txn, &caller.id, key, request_hash, &response, now).await?;
    txn.commit().await?;
    enqueued.hand_over(hub);
    Ok(PublishOutcome {
        status: response.status,
        body: response.body,
        replayed: false,
    })
}
