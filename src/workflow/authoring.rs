//! Writing an item: its first version, every edit as a new version, and submitting it for
//! review.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, PaginatorTrait,
    QueryFilter, Set,
};

use super::{Audited, ItemView, audit_item, get_item, require, require_state};
use crate::{
    accounts::Caller,
    attachments,
    clock::{china_date, end_of_china_day},
    domain::{
        area::AreaCode,
        item::{ContentRules, Correcting, ItemContent, ItemInput, ItemState},
        organ::OrganList,
        text::{MAX_REASON_CHARS, multi_line},
    },
    error::{Error, Result},
    hub::Hub,
    items::{content_of, load_version, load_visible},
    organs,
    store::{
        begin_write,
        entities::{attachment, item, item_version},
    },
};

/// Validates input against configuration and the store: area within the caller's scope,
/// attachments uploaded, the interpreted policy visible and not itself an interpretation.
async fn parse_content(
    hub: &Hub,
    db: &impl ConnectionTrait,
    caller: &Caller,
    input: ItemInput,
    item_id: Option<&str>,
) -> Result<ItemContent> {
    let organs = organs::load(db).await?;
    let kept_issuers = match item_id {
        Some(id) => current_issuers(db, id).await?,
        None => Vec::new(),
    };
    let rules = ContentRules {
        index_no_pattern: &hub.index_no_pattern,
        max_body_bytes: hub.settings.content.max_body_bytes,
        areas: &hub.areas,
        catalog: &hub.catalog,
        organs: &organs,
        kept_issuers: &kept_issuers,
        topics: &hub.topics,
        today: china_date(hub.clock.now()),
    };
    let duplicate_intended = input.confirm_duplicate_doc_no;
    let content = ItemContent::parse(input, &rules)?;
    let area = AreaCode::parse(&content.area_code).map_err(anyhow::Error::new)?;
    if !caller.sees(&area) {
        return Err(Error::Refused {
            code: "area_out_of_scope",
            field: Some("area_code".into()),
            message: format!("area {area} is outside your area {}", caller.area),
        });
    }
    if !duplicate_intended {
        refuse_duplicate_doc_no(db, caller, &content, item_id, &organs).await?;
    }
    for (i, attachment) in content.attachments.iter().enumerate() {
        if attachment::Entity::find_by_id(&attachment.sha256)
            .count(db)
            .await?
            == 0
        {
            return Err(Error::validation(
                format!("attachments[{i}].sha256"),
                "no attachment with that digest was uploaded",
            ));
        }
    }
    if let Some(policy_id) = &content.interprets {
        if Some(policy_id.as_str()) == item_id {
            return Err(Error::validation("interprets", "an item cannot interpret itself"));
        }
        // A township may interpret a published county policy: a policy is linkable when it lies
        // in the caller's area, or is published in an area above it. Any other id answers
        // exactly as one that does not exist.
        let linkable = |policy: &item::Model| -> Result<bool> {
            let area = AreaCode::parse(&policy.area_code).map_err(anyhow::Error::new)?;
            Ok(caller.sees(&area) || (caller.area.is_within(&area) && policy.state == ItemState::Published))
        };
        let policy = match item::Entity::find_by_id(policy_id).one(db).await? {
            Some(policy) if linkable(&policy)? => Some(policy),
            _ => None,
        };
        let policy = policy
            .ok_or_else(|| Error::validation("interprets", "no policy item you may interpret has that id"))?;
        if policy.interprets_id.is_some() {
            return Err(Error::validation(
                "interprets",
                "the target is itself an interpretation",
            ));
        }
    }
    let clash = item::Entity::find()
        .filter(item::Column::IndexNo.eq(&content.index_no))
        .filter(item::Column::Id.ne(item_id.unwrap_or_default()))
        .count(db)
        .await?;
    if clash > 0 {
        return Err(Error::validation(
            "index_no",
            format!("索引号 {} is already used by another item", content.index_no),
        ));
    }
    Ok(content)
}

/// The issuers of an item's current version, as it stores them.
async fn current_issuers(db: &impl ConnectionTrait, item_id: &str) -> Result<Vec<String>> {
    let Some(row) = item::Entity::find_by_id(item_id).one(db).await? else {
        return Ok(Vec::new());
    };
    Ok(content_of(&load_version(db, item_id, row.current_version).await?)?.issuers)
}

/// Refuses a 发文字号 that another item sharing one of its 发文机关 already has: the same
/// number twice is a typing slip until the publisher confirms it (`confirm_duplicate_doc_no`).
/// Another item's issuers are compared by organ, so one written under an alias, or before the
/// organ list, still counts.
async fn refuse_duplicate_doc_no(
    db: &impl ConnectionTrait,
    caller: &Caller,
    content: &ItemContent,
    item_id: Option<&str>,
    organs: &OrganList,
) -> Result<()> {
    let Some(doc_no) = &content.doc_no else {
        return Ok(());
    };
    let stored = serde_json::to_string(doc_no).map_err(anyhow::Error::new)?;
    let candidates = item_version::Entity::find()
        .filter(item_version::Column::Content.contains(format!("\"doc_no\":{stored}")))
        .filter(item_version::Column::ItemId.ne(item_id.unwrap_or_default()))
        .all(db)
        .await?;
    for version in candidates {
        let Some(other) = item::Entity::find_by_id(&version.item_id).one(db).await? else {
            continue;
        };
        if other.current_version != version.version || other.state.is_terminal() {
            continue;
        }
        let theirs = content_of(&version)?;
        let shared = theirs
            .issuers
            .iter()
            .map(|issuer| organs.canonical(issuer))
            .find(|issuer| content.issuers.iter().any(|ours| ours == issuer));
        if let (Some(issuer), Some(_)) = (shared, theirs.doc_no.filter(|d| d == doc_no)) {
            // Named only to someone who may see it: a number says nothing of another area's drafts.
            let visible = caller.sees(&AreaCode::parse(&other.area_code).map_err(anyhow::Error::new)?);
            let which = if visible {
                format!("item {} ({})", other.id, other.title)
            } else {
                "another item".to_owned()
            };
            return Err(Error::Refused {
                code: "duplicate_doc_no",
                field: Some("doc_no".into()),
                message: format!(
                    "发文字号 {doc_no} of {issuer} is already used by {which}; send confirm_duplicate_doc_no: true if that is intended"
                ),
            });
        }
    }
    Ok(())
}

async fn insert_version(
    txn: &DatabaseTransaction,
    item_id: &str,
    (version, correction_note): (i32, Option<String>),
    content: &ItemContent,
    caller: &Caller,
    at: DateTime<Utc>,
) -> Result<String> {
    let hash = content.content_hash();
    item_version::ActiveModel {
        item_id: Set(item_id.to_owned()),
        version: Set(version),
        content: Set(content.canonical_json()),
        content_hash: Set(hash.clone()),
        created_by: Set(caller.id.clone()),
        created_at: Set(at),
        correction_note: Set(correction_note),
    }
    .insert(txn)
    .await?;
    attachments::link_to_item(txn, item_id, &content.attachments).await?;
    Ok(hash)
}

pub async fn create_item(hub: &Hub, caller: &Caller, input: ItemInput) -> Result<ItemView> {
    let txn = begin_write(&hub.db).await?;
    let id = create_item_in(&txn, hub, caller, input).await?;
    txn.commit().await?;
    get_item(hub, caller, &id).await
}

/// The item row's copy of what its shown version says: what lists, scoping, expiry and staff
/// search read without opening the version.
pub(super) fn show_content(row: &mut item::ActiveModel, content: &ItemContent) {
    row.title = Set(content.title.clone());
    row.area_code = Set(content.area_code.clone());
    row.index_no = Set(content.index_no.clone());
    row.disclosure = Set(content.disclosure);
    row.emergency = Set(content.emergency);
    row.interprets_id = Set(content.interprets.clone());
    row.expires_at = Set(content.expires_on.map(end_of_china_day));
    row.search_key = Set(Some(content.search_key()));
}

/// Creates the item inside `txn`, for a caller that writes something else with it in the same
/// transaction (a CAP alert notes its item, so a crash never leaves a draft nobody knows of);
/// returns its id.
pub async fn create_item_in(
    txn: &DatabaseTransaction,
    hub: &Hub,
    caller: &Caller,
    input: ItemInput,
) -> Result<String> {
    require(caller.role.may_author(), "your role may not create items")?;
    if input.correction_note.is_some() {
        return Err(Error::validation(
            "correction_note",
            "only an edit of a published item is a correction (更正)",
        ));
    }
    let content = parse_content(hub, txn, caller, input, None).await?;
    let now = hub.clock.now();
    let id = hub.clock.new_id().to_string();
    let mut row = item::ActiveModel {
        id: Set(id.clone()),
        state: Set(ItemState::Draft),
        author_id: Set(caller.id.clone()),
        current_version: Set(1),
        approved_version: Set(None),
        approved_hash: Set(None),
        published_version: Set(None),
        published_at: Set(None),
        withdrawn_at: Set(None),
        review_comment: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        correcting: Set(None),
        ..Default::default()
    };
    show_content(&mut row, &content);
    row.insert(txn).await?;
    let hash = insert_version(txn, &id, (1, None), &content, caller, now).await?;
    audit_item(
        txn,
        hub,
        caller,
        &id,
        Audited {
            action: "item.create",
            before_hash: None,
            after_hash: Some(&hash),
            detail: serde_json::json!({"version": 1}),
        },
    )
    .await?;
    Ok(id)
}

/// Every edit is a new immutable version; an edit to a submitted or approved item sends it
/// back to draft, so nothing unreviewed can be published. An edit of a published item is a
/// correction (更正): its note says what it corrects, the published version stays live, and
/// the correction is reviewed again before it replaces it.
pub async fn edit_item(hub: &Hub, caller: &Caller, id: &str, mut input: ItemInput) -> Result<ItemView> {
    require(caller.role.may_author(), "your role may not edit items")?;
    let txn = begin_write(&hub.db).await?;
    let row = load_visible(&txn, caller, id, true).await?;
    let state = require_state(
        &row,
        &[
            ItemState::Draft,
            ItemState::InReview,
            ItemState::Approved,
            ItemState::Published,
        ],
        "edit",
    )?;
    let correcting = state == ItemState::Published;
    let correction_note = match (correcting, input.correction_note.take()) {
        (true, Some(note)) => Some(multi_line("correction_note", &note, MAX_REASON_CHARS, true)?),
        (true, None) => {
            return Err(Error::validation(
                "correction_note",
                "the item is published: an edit is a correction (更正), and must say what it corrects",
            ));
        }
        (false, Some(_)) => {
            return Err(Error::validation(
                "correction_note",
                "only an edit of a published item is a correction (更正)",
            ));
        }
        (false, None) => None,
    };
    let content = parse_content(hub, &txn, caller, input, Some(id)).await?;
    if correcting && !content.disclosure.may_leave_the_store() {
        return Err(Error::validation(
            "disclosure",
            "a correction keeps the item public; to take it out of public view, withdraw it",
        ));
    }
    let previous = load_version(&txn, id, row.current_version).await?;
    if previous.content_hash == content.content_hash() {
        return Err(Error::conflict("unchanged", "the edit changes nothing"));
    }
    let now = hub.clock.now();
    let version = row.current_version + 1;
    let hash = insert_version(
        &txn,
        id,
        (version, correction_note.clone()),
        &content,
        caller,
        now,
    )
    .await?;
    let mut active: item::ActiveModel = row.into();
    if correcting {
        // The published version stays live, with everything the item row says of it (its
        // title in lists, its 有效期), until the correction is approved.
        active.correcting = Set(Some(Correcting::Draft));
    } else {
        active.state = Set(ItemState::Draft);
        show_content(&mut active, &content);
        active.approved_version = Set(None);
        active.approved_hash = Set(None);
    }
    active.current_version = Set(version);
    active.updated_at = Set(now);
    active.update(&txn).await?;
    let detail = serde_json::json!({"version": version, "from_state": state.as_str(), "correction_note": correction_note});
    audit_item(
        &txn,
        hub,
        caller,
        id,
        Audited {
            action: if correcting {
                "item.correction_draft"
            } else {
                "item.edit"
            },
            before_hash: Some(&previous.content_hash),
            after_hash: Some(&hash),
            detail,
        },
    )
    .await?;
    txn.commit().await?;
    get_item(hub, caller, id).await
}

pub async fn submit(hub: &Hub, caller: &Caller, id: &str) -> Result<ItemView> {
    require(
        caller.role.may_author(),
        "your role may not submit items for review",
    )?;
    let txn = begin_write(&hub.db).await?;
    let row = load_visible(&txn, caller, id, true).await?;
    let state = require_state(&row, &[ItemState::Draft, ItemState::Published], "submit")?;
    let correction = state == ItemState::Published;
    if correction && row.correcting != Some(Correcting::Draft) {
        return Err(Error::conflict(
            "invalid_state",
            "the item is published and has no correction (更正) to submit",
        ));
    }
    let version = load_version(&txn, id, row.current_version).await?;
    let mut active: item::ActiveModel = row.into();
    if correction {
        active.correcting = Set(Some(Correcting::InReview));
    } else {
        active.state = Set(ItemState::InReview);
    }
    active.updated_at = Set(hub.clock.now());
    active.update(&txn).await?;
    let detail = serde_json::json!({"version": version.version, "correction": correction});
    audit_item(
        &txn,
        hub,
        caller,
        id,
        Audited {
            action: "item.submit",
            before_hash: Some(&version.content_hash),
            after_hash: Some(&version.content_hash),
            detail,
        },
    )
    .await?;
    txn.commit().await?;
    get_item(hub, caller, id).await
}
