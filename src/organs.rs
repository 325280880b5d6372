//! The organ list (发文机关名录) in the database, shared by every hub instance: read for
//! resolving an item's issuers and for the portal's organ pages, seeded from
//! `content.organs_file` on start, edited by administrators (each change audited).
//!
//! **Architecture Invariant:** a name or alias belongs to one organ only: every spelling is a
//! row of `organ_spellings` keyed by it, and every change of the list is checked whole
//! (`OrganList::new`) under the list's lock before it is written.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, Set,
};
use serde::Serialize;

use crate::{
    accounts::Caller,
    audit,
    domain::{
        area::AreaCode,
        organ::{MAX_ALIASES, Organ, OrganList, OrganListError, checked_spelling, spelling_key},
        text::{MAX_ID_CHARS, MAX_NAME_CHARS, single_line},
        user::Role,
    },
    error::{Error, Result},
    hub::Hub,
    store::{
        begin_write,
        entities::{organ, organ_spelling},
        is_postgres,
    },
};

/// The PostgreSQL advisory lock that serialises changes of the list across instances (any
/// constant no other lock uses; "ORGN" in ASCII). SQLite write transactions are serial anyway.
const ORGAN_LIST_LOCK: i64 = 0x4F52_474E;

/// An organ as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = Organ)]
pub struct OrganView {
    pub id: String,
    /// The full name (e.g. 峨山彝族自治县水务局): what items and the portal's organ page carry.
    pub name: String,
    /// Other spellings an item may use (e.g. 峨山县水务局, 县水务局); filed under `name`.
    pub aliases: Vec<String>,
    /// Where the organ sits in the area tree; null for the whole tree.
    pub area_code: Option<String>,
    /// Retired (机构改革): its published items stay, new items cannot name it.
    pub retired: bool,
    pub retired_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl OrganView {
    fn as_organ(&self) -> Result<Organ> {
        let area_code = self
            .area_code
            .as_deref()
            .map(AreaCode::parse)
            .transpose()
            .map_err(|e| anyhow::anyhow!("organ {} has an unreadable area code: {e}", self.id))?;
        Ok(Organ {
            name: self.name.clone(),
            aliases: self.aliases.clone(),
            area_code,
            retired: self.retired,
        })
    }

    /// What an audit entry records of it.
    fn facts(&self) -> serde_json::Value {
        serde_json::json!({"aliases": self.aliases, "area_code": self.area_code, "retired": self.retired})
    }
}

/// A new organ, as an administrator sends it.
pub struct NewOrgan {
    pub name: String,
    pub aliases: Vec<String>,
    /// Empty: the administrator's own area.
    pub area_code: Option<String>,
}

/// A change to an organ: what is given replaces what is there. Its name stays: an organ that
/// is renamed is a new organ, and the old one is retired.
#[derive(Default)]
pub struct OrganChange {
    pub aliases: Option<Vec<String>>,
    pub area_code: Option<String>,
    pub retired: Option<bool>,
}

/// Every organ with its aliases, in area order and, within an area, in the order they were
/// added (ids are v7, made in order).
async fn read_all(db: &impl ConnectionTrait) -> Result<Vec<OrganView>> {
    let mut organs = organ::Entity::find().all(db).await?;
    // Ordered here: the databases order a missing area differently.
    organs.sort_by(|a, b| (&a.area_code, &a.id).cmp(&(&b.area_code, &b.id)));
    let mut aliases: HashMap<String, Vec<String>> = HashMap::new();
    for spelling in organ_spelling::Entity::find()
        .filter(organ_spelling::Column::IsAlias.eq(true))
        .all(db)
        .await?
    {
        aliases
            .entry(spelling.organ_id)
            .or_default()
            .push(spelling.spelling);
    }
    Ok(organs
        .into_iter()
        .map(|row| OrganView {
            // Sorted here, not by the database, whose collation may differ from `checked_aliases`.
            aliases: aliases
                .remove(&row.id)
                .map(|mut list| {
                    list.sort();
                    list
                })
                .unwrap_or_default(),
            id: row.id,
            name: row.name,
            area_code: row.area_code,
            retired: row.retired_at.is_some(),
            retired_at: row.retired_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
        .collect())
}

fn as_list(views: &[OrganView]) -> Result<OrganList> {
    let organs = views
        .iter()
        .map(OrganView::as_organ)
        .collect::<Result<Vec<_>>>()?;
    OrganList::new(organs).map_err(|e| anyhow::anyhow!("the stored organ list is inconsistent: {e}").into())
}

/// The organ list as it stands, for resolving issuers.
pub async fn load(db: &impl ConnectionTrait) -> Result<OrganList> {
    as_list(&read_all(db).await?)
}

/// Every organ, retired ones included (marked), for anyone signed in: the console offers them.
pub async fn list(hub: &Hub) -> Result<Vec<OrganView>> {
    read_all(&hub.db).await
}

async fn lock_list(txn: &DatabaseTransaction) -> Result<()> {
    if is_postgres(txn) {
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({ORGAN_LIST_LOCK})"))
            .await?;
    }
    Ok(())
}

fn require_admin(caller: &Caller) -> Result<()> {
    if caller.role == Role::Admin {
        Ok(())
    } else {
        Err(Error::forbidden("only administrators edit the organ list"))
    }
}

/// The area an administrator gives an organ: in the tree and within their own.
fn area_for(hub: &Hub, caller: &Caller, raw: &str) -> Result<AreaCode> {
    let raw = single_line("area_code", raw, MAX_NAME_CHARS, true)?;
    let area = hub
        .areas
        .resolve(&raw)
        .map_err(|m| Error::validation("area_code", m))?;
    if !caller.sees(&area) {
        return Err(Error::forbidden(format!(
            "area {area} is outside your area {}",
            caller.area
        )));
    }
    Ok(area)
}

/// Aliases as they are kept: checked, each once, the organ's own name left out.
fn checked_aliases(name: &str, raw: &[String]) -> Result<Vec<String>> {
    if raw.len() > MAX_ALIASES {
        return Err(Error::validation(
            "aliases",
            format!("must have at most {MAX_ALIASES} entries"),
        ));
    }
    let mut aliases: Vec<String> = Vec::with_capacity(raw.len());
    for (i, alias) in raw.iter().enumerate() {
        let alias = checked_spelling(&format!("aliases[{i}]"), alias)?;
        if alias != name && !aliases.contains(&alias) {
            aliases.push(alias);
        }
    }
    // In the order the list reads them back.
    aliases.sort();
    Ok(aliases)
}

/// Checks the list with `changed` (last, so a clash is reported as its own) and names the
/// field a clash comes from: `name`, or the alias as sent (`aliases[2]`).
fn check_list(others: Vec<Organ>, changed: Organ, sent_aliases: &[String]) -> Result<()> {
    let mut organs = others;
    organs.push(changed);
    match OrganList::new(organs) {
        Ok(_) => Ok(()),
        Err(OrganListError::Taken { spelling, of, by }) => {
            let key = spelling_key(&spelling);
            let field = if key == spelling_key(&of) {
                "name".to_owned()
            } else {
                sent_aliases
                    .iter()
                    .position(|sent| spelling_key(sent) == key)
                    .map_or_else(|| "aliases".to_owned(), |i| format!("aliases[{i}]"))
            };
            Err(Error::Refused {
                code: "organ_name_taken",
                field: Some(field),
                message: format!("`{spelling}` is already the name or an alias of organ `{by}`"),
            })
        }
    }
}

async fn write_aliases(txn: &DatabaseTransaction, organ_id: &str, aliases: &[String]) -> Result<()> {
    organ_spelling::Entity::delete_many()
        .filter(organ_spelling::Column::OrganId.eq(organ_id))
        .filter(organ_spelling::Column::IsAlias.eq(true))
        .exec(txn)
        .await?;
    for alias in aliases {
        organ_spelling::ActiveModel {
            spelling: Set(alias.clone()),
            organ_id: Set(organ_id.to_owned()),
            is_alias: Set(true),
        }
        .insert(txn)
        .await?;
    }
    Ok(())
}

async fn insert_organ(
    txn: &DatabaseTransaction,
    hub: &Hub,
    organ: &Organ,
    at: DateTime<Utc>,
) -> Result<String> {
    let id = hub.clock.new_id().to_string();
    organ::ActiveModel {
        id: Set(id.clone()),
        name: Set(organ.name.clone()),
        area_code: Set(organ.area_code.as_ref().map(ToString::to_string)),
        retired_at: Set(organ.retired.then_some(at)),
        created_at: Set(at),
        updated_at: Set(at),
    }
    .insert(txn)
    .await?;
    organ_spelling::ActiveModel {
        spelling: Set(organ.name.clone()),
        organ_id: Set(id.clone()),
        is_alias: Set(false),
    }
    .insert(txn)
    .await?;
    write_aliases(txn, &id, &organ.aliases).await?;
    Ok(id)
}

async fn view_of(txn: &DatabaseTransaction, id: &str) -> Result<OrganView> {
    read_all(txn)
        .await?
        .into_iter()
        .find(|view| view.id == id)
        .ok_or_else(|| anyhow::anyhow!("organ {id} vanished").into())
}

/// Adds an organ (administrators, within their area).
pub async fn create(hub: &Hub, caller: &Caller, new: NewOrgan) -> Result<OrganView> {
    require_admin(caller)?;
    let name = checked_spelling("name", &new.name)?;
    let aliases = checked_aliases(&name, &new.aliases)?;
    let area = match new.area_code.as_deref().filter(|raw| !raw.trim().is_empty()) {
        Some(raw) => area_for(hub, caller, raw)?,
        None => caller.area.clone(),
    };
    let organ = Organ {
        name,
        aliases,
        area_code: Some(area.clone()),
        retired: false,
    };
    let now = hub.clock.now();
    let txn = begin_write(&hub.db).await?;
    lock_list(&txn).await?;
    let existing = read_all(&txn).await?;
    let others = existing
        .iter()
        .map(OrganView::as_organ)
        .collect::<Result<Vec<_>>>()?;
    check_list(others, organ.clone(), &new.aliases)?;
    let id = insert_organ(&txn, hub, &organ, now).await?;
    let view = view_of(&txn, &id).await?;
    audit::append_change(
        &txn,
        now,
        &caller.id,
        "organ.create",
        ("organ", &id),
        Some(area.as_str()),
        serde_json::json!({"name": view.name, "after": view.facts()}),
    )
    .await?;
    txn.commit().await?;
    Ok(view)
}

/// Changes an organ's aliases, area or retirement (administrators, for organs of their area;
/// an organ without an area is the whole tree's).
pub async fn update(hub: &Hub, caller: &Caller, id: &str, change: OrganChange) -> Result<OrganView> {
    require_admin(caller)?;
    let id = single_line("id", id, MAX_ID_CHARS, true)?;
    let now = hub.clock.now();
    let txn = begin_write(&hub.db).await?;
    lock_list(&txn).await?;
    let (before, others): (Vec<OrganView>, Vec<OrganView>) =
        read_all(&txn).await?.into_iter().partition(|view| view.id == id);
    let before = before.into_iter().next().ok_or(Error::NotFound("organ"))?;
    let root = hub.areas.root().code.clone();
    let current_area = before.as_organ()?.area_code.unwrap_or_else(|| root.clone());
    if !caller.sees(&current_area) {
        return Err(Error::forbidden(format!(
            "organ `{}` belongs to area {current_area}, outside your area {}",
            before.name, caller.area
        )));
    }
    let mut after = before.clone();
    let sent_aliases = change.aliases.unwrap_or_else(|| before.aliases.clone());
    after.aliases = checked_aliases(&before.name, &sent_aliases)?;
    if let Some(raw) = change.area_code.as_deref() {
        after.area_code = Some(area_for(hub, caller, raw)?.to_string());
    }
    if let Some(retired) = change.retired {
        after.retired = retired;
    }
    let action = match (before.retired, after.retired) {
        (false, true) => "organ.retire",
        (true, false) => "organ.reinstate",
        _ => "organ.update",
    };
    if before.facts() == after.facts() {
        txn.rollback().await?;
        return Ok(before);
    }
    let others = others
        .iter()
        .map(OrganView::as_organ)
        .collect::<Result<Vec<_>>>()?;
    check_list(others, after.as_organ()?, &sent_aliases)?;
    let retired_at = match (before.retired_at, after.retired) {
        (Some(at), true) => Some(at),
        (None, true) => Some(now),
        (_, false) => None,
    };
    organ::ActiveModel {
        id: Set(id.clone()),
        area_code: Set(after.area_code.clone()),
        retired_at: Set(retired_at),
        updated_at: Set(now),
        ..Default::default()
    }
    .update(&txn)
    .await?;
    if before.aliases != after.aliases {
        write_aliases(&txn, &id, &after.aliases).await?;
    }
    let view = view_of(&txn, &id).await?;
    let area = view.area_code.clone().unwrap_or_else(|| root.to_string());
    audit::append_change(
        &txn,
        now,
        &caller.id,
        action,
        ("organ", &id),
        Some(area.as_str()),
        serde_json::json!({"name": view.name, "before": before.facts(), "after": view.facts()}),
    )
    .await?;
    txn.commit().await?;
    Ok(view)
}

/// Adds the organs of the seed file that the database does not hold yet (by name); an organ
/// already there is left as administrators made it. A spelling of the file that the database
/// already gives another organ is left out, and said so in the log. Returns the names added.
pub async fn seed(hub: &Hub, seed: &OrganList) -> Result<Vec<String>> {
    let now = hub.clock.now();
    let txn = begin_write(&hub.db).await?;
    lock_list(&txn).await?;
    let existing = read_all(&txn).await?;
    let mut taken: HashMap<String, String> = HashMap::new();
    for view in &existing {
        for spelling in std::iter::once(&view.name).chain(&view.aliases) {
            taken.insert(spelling_key(spelling), view.name.clone());
        }
    }
    let mut added = Vec::new();
    for organ in seed.iter() {
        if existing.iter().any(|view| view.name == organ.name) {
            continue;
        }
        if let Some(holder) = taken.get(&spelling_key(&organ.name)) {
            tracing::warn!(organ = %organ.name, alias_of = %holder, "organs file: an organ whose name the list already gives another organ is not added");
            continue;
        }
        let mut aliases = Vec::with_capacity(organ.aliases.len());
        for alias in &organ.aliases {
            match taken.get(&spelling_key(alias)) {
                Some(holder) => {
                    tracing::warn!(organ = %organ.name, alias = %alias, held_by = %holder, "organs file: an alias the list already gives another organ is left out");
                }
                None => aliases.push(alias.clone()),
            }
        }
        let organ = Organ {
            aliases,
            ..organ.clone()
        };
        insert_organ(&txn, hub, &organ, now).await?;
        for spelling in organ.spellings() {
            taken.insert(spelling_key(spelling), organ.name.clone());
        }
        added.push(organ.name.clone());
    }
    txn.commit().await?;
    if !added.is_empty() {
        tracing::info!(added = added.len(), "organ list: organs of the organs file added");
    }
    Ok(added)
}
