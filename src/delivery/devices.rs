//! The device registry. A village loudspeaker controller or notice-board display is a target of
//! its channel (so the same rule decides which items reach it), plus a `devices` row: the id it
//! logs in to the broker with, the hash of the credential issued to it, revocation, its group
//! in the village, and what it last reported of itself.
//!
//! A credential is random and shown once when issued. Herald keeps two hashes of it and never
//! the credential: its SHA-256, which the hub checks (a 256-bit secret, not a password, so a
//! fast hash is enough for thousands of reconnecting devices), and Mosquitto's own `$7$`
//! PBKDF2 hash, which `herald mqtt acl` writes to the broker's password file.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use herald_channels::ChannelKind;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set, sea_query::LikeExpr};
use serde::{Deserialize, Serialize};

use super::targets::{TargetView, insert_targets};
use crate::{
    accounts::random_secret,
    audit,
    domain::{
        area::AreaCode,
        item::sha256_hex,
        text::{MAX_NAME_CHARS, single_line},
    },
    error::{Error, Result},
    hub::Hub,
    store::{
        ID_CHUNK, begin_write,
        entities::{device, target},
    },
};

/// What every device credential starts with, so one pasted in the wrong place is recognisable.
pub const CREDENTIAL_PREFIX: &str = "hdev_";
const MAX_DEVICE_ID_CHARS: usize = 64;
/// Rows one import takes: a county's devices, with room to spare.
pub const MAX_IMPORT_ROWS: usize = 50_000;
/// Rows per insert statement (ten values a row for targets): under both databases' limits.
const INSERT_CHUNK: usize = 500;

/// A device to register.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDevice {
    /// `loudspeaker` or `notice_board`.
    pub channel: ChannelKind,
    /// The id it logs in to the broker with: 3 to 64 of `A-Z a-z 0-9 . _ -`. None: Herald
    /// makes one.
    #[serde(default)]
    pub device_id: Option<String>,
    pub name: String,
    /// The village (or other area) it stands in.
    pub area_code: String,
    /// Its group within the area (a hamlet, a street), for announcements to part of a village.
    #[serde(default)]
    pub group: String,
    /// The Ed25519 public key it signs its reports with (64 hex digits), as the device shows
    /// it at installation; may also be given later (`set_device_key`).
    #[serde(default)]
    pub public_key: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct DeviceView {
    pub device_id: String,
    pub target_id: String,
    pub channel: ChannelKind,
    pub name: String,
    pub area_code: String,
    pub group: String,
    /// False once revoked: nothing is delivered to it and it cannot log in.
    pub enabled: bool,
    pub revoked_at: Option<DateTime<Utc>>,
    pub credential_issued_at: DateTime<Utc>,
    /// The key id its report frames carry, and the public key registered under it; none until
    /// the device's key is registered, when it cannot be heard.
    pub key_id: Option<i64>,
    pub public_key: Option<String>,
    /// As the device last said in its birth message; none before it first connected.
    pub firmware_version: Option<String>,
    pub capabilities: Option<serde_json::Value>,
    pub health: Option<serde_json::Value>,
    pub last_seen_at: Option<DateTime<Utc>>,
    /// Whether it is connected, from its retained status and its will (a will of an older
    /// session never counts); none until it first reports.
    pub online: Option<bool>,
}

impl DeviceView {
    fn from_rows(device: device::Model, target: target::Model) -> Result<Self> {
        fn json(raw: Option<String>) -> Result<Option<serde_json::Value>> {
            raw.map(|raw| serde_json::from_str(&raw).map_err(|e| Error::from(anyhow::Error::new(e))))
                .transpose()
        }
        Ok(Self {
            device_id: device.device_id,
            target_id: device.target_id.to_string(),
            channel: target.channel,
            name: target.name,
            area_code: target.area_code,
            group: device.group_name,
            enabled: target.enabled && device.revoked_at.is_none(),
            revoked_at: device.revoked_at,
            credential_issued_at: device.credential_issued_at,
            key_id: device.key_id,
            public_key: device.public_key,
            firmware_version: device.firmware_version,
            capabilities: json(device.capabilities)?,
            health: json(device.health)?,
            last_seen_at: device.last_seen_at,
            online: device.online,
        })
    }
}

/// A registered device with its credential, which is never shown again.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Issued {
    pub device: DeviceView,
    pub credential: String,
}

/// Why one row of a batch cannot be registered. `row` is the caller's label for it: the
/// line of an imported file, or the position in a request.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct RowError {
    pub row: usize,
    pub field: String,
    pub message: String,
}

fn row_error(row: usize, field: &str, message: impl Into<String>) -> RowError {
    RowError {
        row,
        field: field.to_owned(),
        message: message.into(),
    }
}

pub fn check_device_id(raw: &str) -> std::result::Result<(), String> {
    let length = raw.chars().count();
    if !(3..=MAX_DEVICE_ID_CHARS).contains(&length)
        || !raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(format!(
            "a device id is 3 to {MAX_DEVICE_ID_CHARS} characters of A-Z, a-z, 0-9, `.`, `_` and `-`"
        ));
    }
    Ok(())
}

/// A report-signing key as registered: 32 bytes, lower-case hex, a valid Ed25519 point.
fn check_public_key(raw: &str) -> std::result::Result<String, String> {
    let bytes = herald_firmware_protocol::hex::decode_array::<32>(&raw.to_ascii_lowercase())
        .ok_or_else(|| "an Ed25519 public key is 64 hex digits".to_owned())?;
    ed25519_dalek::VerifyingKey::from_bytes(&bytes)
        .map_err(|_| "these 32 bytes are not an Ed25519 public key".to_owned())?;
    Ok(herald_firmware_protocol::hex::encode(&bytes))
}

/// The next free report key ids, `count` of them, read inside the registering transaction.
async fn next_key_ids(txn: &sea_orm::DatabaseTransaction, count: usize) -> Result<std::ops::Range<i64>> {
    use sea_orm::QuerySelect;
    let max: Option<Option<i64>> = device::Entity::find()
        .select_only()
        .column_as(device::Column::KeyId.max(), "max")
        .into_tuple()
        .one(txn)
        .await?;
    let first = max.flatten().unwrap_or(0) + 1;
    Ok(first..first + i64::try_from(count).map_err(anyhow::Error::new)?)
}

/// A device id Herald makes: the channel's short name and 48 random bits.
fn new_device_id(channel: ChannelKind) -> Result<String> {
    let prefix = match channel {
        ChannelKind::Loudspeaker => "ls",
        _ => "nb",
    };
    Ok(format!("{prefix}-{}", random_secret(6)?))
}

/// One checked row, ready to write.
struct Checked {
    device_id: String,
    public_key: Option<String>,
    channel: ChannelKind,
    name: String,
    area: AreaCode,
    group: String,
}

fn check_row(
    hub: &Hub,
    scope: Option<&AreaCode>,
    row: usize,
    new: NewDevice,
) -> std::result::Result<Checked, RowError> {
    if !new.channel.is_device() {
        return Err(row_error(
            row,
            "channel",
            format!(
                "`{}` is not a device channel: loudspeaker or notice_board",
                new.channel
            ),
        ));
    }
    let text = |field: &str, raw: &str, required: bool| {
        single_line(field, raw, MAX_NAME_CHARS, required).map_err(|e| row_error(row, field, e.to_string()))
    };
    let name = text("name", &new.name, true)?;
    let group = text("group", &new.group, false)?;
    let area = hub
        .areas
        .resolve(new.area_code.trim())
        .map_err(|m| row_error(row, "area_code", m))?;
    if let Some(scope) = scope
        && !area.is_within(scope)
    {
        return Err(row_error(
            row,
            "area_code",
            format!("area {area} is outside your area {scope}"),
        ));
    }
    let device_id = match new.device_id.as_deref().map(str::trim) {
        Some(id) if !id.is_empty() => {
            check_device_id(id).map_err(|m| row_error(row, "device_id", m))?;
            id.to_owned()
        }
        _ => new_device_id(new.channel).map_err(|e| row_error(row, "device_id", e.to_string()))?,
    };
    let public_key = new
        .public_key
        .as_deref()
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| check_public_key(k).map_err(|m| row_error(row, "public_key", m)))
        .transpose()?;
    Ok(Checked {
        device_id,
        public_key,
        channel: new.channel,
        name,
        area,
        group,
    })
}

/// Registers devices, all or none: when any row is wrong nothing is written and every wrong
/// row is reported (so a corrected file can simply be imported again). `scope`: the area the
/// registering administrator may act in (none: the whole tree). `progress` is told how many
/// rows are written so far. Returns each device with its credential.
pub async fn add_devices(
    hub: &Hub,
    actor: &str,
    scope: Option<&AreaCode>,
    rows: Vec<(usize, NewDevice)>,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<std::result::Result<Vec<Issued>, Vec<RowError>>> {
    import_devices(hub, actor, scope, rows, progress, &mut |_| Ok(())).await
}

/// A unique index refused a row another registration wrote meanwhile: a conflict to retry,
/// not a fault.
fn registered_meanwhile(e: sea_orm::DbErr) -> Error {
    match e.sql_err() {
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => Error::conflict(
            "device_conflict",
            "another registration took the same device id or key id at the same moment; try again",
        ),
        _ => e.into(),
    }
}

/// `add_devices`, handing the credentials to `keep` before anything is committed: an import
/// writes them to its file there, so devices are never registered with their credentials
/// lost (should `keep` fail, nothing is registered).
pub async fn import_devices(
    hub: &Hub,
    actor: &str,
    scope: Option<&AreaCode>,
    rows: Vec<(usize, NewDevice)>,
    progress: &(dyn Fn(usize) + Sync),
    keep: &mut (dyn FnMut(&[Issued]) -> Result<()> + Send),
) -> Result<std::result::Result<Vec<Issued>, Vec<RowError>>> {
    if rows.len() > MAX_IMPORT_ROWS {
        return Err(Error::validation(
            "devices",
            format!("at most {MAX_IMPORT_ROWS} devices at once; split the file"),
        ));
    }
    let mut errors = Vec::new();
    let mut checked = Vec::with_capacity(rows.len());
    let mut first_row_of: HashMap<String, usize> = HashMap::new();
    for (row, new) in rows {
        match check_row(hub, scope, row, new) {
            Ok(c) => {
                if let Some(first) = first_row_of.insert(c.device_id.clone(), row) {
                    errors.push(row_error(
                        row,
                        "device_id",
                        format!("`{}` is also on row {first}", c.device_id),
                    ));
                } else {
                    checked.push((row, c));
                }
            }
            Err(e) => errors.push(e),
        }
    }
    // Checked in the writing transaction, so no registration can take an id in between.
    let txn = begin_write(&hub.db).await?;
    let wanted: Vec<String> = checked.iter().map(|(_, c)| c.device_id.clone()).collect();
    let mut taken = BTreeSet::new();
    for chunk in wanted.chunks(ID_CHUNK) {
        for d in device::Entity::find()
            .filter(device::Column::DeviceId.is_in(chunk.iter().cloned()))
            .all(&txn)
            .await?
        {
            taken.insert(d.device_id);
        }
    }
    for (row, c) in &checked {
        if taken.contains(&c.device_id) {
            errors.push(row_error(
                *row,
                "device_id",
                format!("`{}` is already registered", c.device_id),
            ));
        }
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.row);
        return Ok(Err(errors));
    }

    let now = hub.clock.now();
    // Key ids are numbered in the transaction that stores them (the unique index turns a
    // concurrent registration into a conflict, not a shared id).
    let with_keys = checked.iter().filter(|(_, c)| c.public_key.is_some()).count();
    let mut key_ids = next_key_ids(&txn, with_keys).await?;
    let mut issued = Vec::with_capacity(checked.len());
    let mut targets = Vec::with_capacity(checked.len());
    let mut devices = Vec::with_capacity(checked.len());
    for (_, c) in checked {
        let key_id = match c.public_key {
            Some(_) => Some(key_ids.next().ok_or_else(|| anyhow::anyhow!("key ids ran out"))?),
            None => None,
        };
        let credential = format!("{CREDENTIAL_PREFIX}{}", random_secret(32)?);
        let view = TargetView {
            id: hub.clock.new_id().to_string(),
            channel: c.channel,
            name: c.name,
            area_code: c.area.to_string(),
            catalogs: Vec::new(),
            tags: Vec::new(),
            // What the device adapter addresses it by.
            config: serde_json::json!({"device_id": c.device_id, "group": c.group}),
            secret_names: Vec::new(),
            enabled: true,
        };
        devices.push(device::ActiveModel {
            target_id: Set(view.id.as_str().into()),
            device_id: Set(c.device_id.clone()),
            group_name: Set(c.group.clone()),
            credential_hash: Set(sha256_hex(credential.as_bytes())),
            broker_hash: Set(mosquitto_hash(&credential)?),
            credential_issued_at: Set(now),
            key_id: Set(key_id),
            public_key: Set(c.public_key.clone()),
            revoked_at: Set(None),
            capabilities: Set(None),
            firmware_version: Set(None),
            health: Set(None),
            last_seen_at: Set(None),
            online: Set(None),
            created_at: Set(now),
        });
        issued.push(Issued {
            device: DeviceView {
                device_id: c.device_id,
                target_id: view.id.clone(),
                channel: view.channel,
                name: view.name.clone(),
                area_code: view.area_code.clone(),
                group: c.group,
                enabled: true,
                revoked_at: None,
                credential_issued_at: now,
                key_id,
                public_key: c.public_key.clone(),
                firmware_version: None,
                capabilities: None,
                health: None,
                last_seen_at: None,
                online: None,
            },
            credential,
        });
        targets.push(view);
    }
    let mut written = 0;
    for (targets, devices) in targets.chunks(INSERT_CHUNK).zip(devices.chunks(INSERT_CHUNK)) {
        insert_targets(&txn, targets, now).await?;
        device::Entity::insert_many(devices.to_vec())
            .exec_without_returning(&txn)
            .await
            .map_err(registered_meanwhile)?;
        written += targets.len();
        progress(written);
    }
    for i in &issued {
        let d = &i.device;
        let detail = serde_json::json!({
            "target_id": d.target_id,
            "channel": d.channel,
            "name": d.name,
            "group": d.group,
        });
        audit::append_change(
            &txn,
            now,
            actor,
            "device.add",
            ("device", &d.device_id),
            Some(&d.area_code),
            detail,
        )
        .await?;
    }
    keep(&issued)?;
    txn.commit().await?;
    Ok(Ok(issued))
}

/// Mosquitto's `$7$` hash of a password (PBKDF2-SHA512, 101 rounds, 12-byte salt), the form
/// `mosquitto_passwd` writes: a device logs in to Mosquitto with its credential, and Herald
/// never keeps the credential itself.
pub fn mosquitto_hash(password: &str) -> Result<String> {
    use base64::{Engine, engine::general_purpose::STANDARD};
    const ROUNDS: u32 = 101;
    let mut salt = [0u8; 12];
    getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("system randomness unavailable: {e}"))?;
    let mut hash = [0u8; 64];
    pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password.as_bytes(), &salt, ROUNDS, &mut hash);
    Ok(format!(
        "$7${ROUNDS}${}${}",
        STANDARD.encode(salt),
        STANDARD.encode(hash)
    ))
}

/// What `herald mqtt acl` writes for Mosquitto: a password file (the hub's account and every
/// device not revoked) and an ACL file limiting each device to its own topics (PROTOCOL.md
/// §2.2): it publishes only its reports and reads only its own and area command topics; only
/// the hub publishes commands.
pub struct BrokerFiles {
    pub password_file: String,
    pub acl_file: String,
    pub devices: usize,
}

pub async fn mosquitto_files(hub: &Hub, hub_user: &str, hub_password: &str) -> Result<BrokerFiles> {
    check_device_id(hub_user).map_err(|m| Error::validation("hub_user", m))?;
    let devices = device::Entity::find()
        .filter(device::Column::RevokedAt.is_null())
        .order_by_asc(device::Column::DeviceId)
        .all(&hub.db)
        .await?;
    if devices.iter().any(|d| d.device_id == hub_user) {
        return Err(Error::validation(
            "hub_user",
            format!("`{hub_user}` is also a device's id; choose another name for the hub"),
        ));
    }
    let mut password_file = format!("{hub_user}:{}\n", mosquitto_hash(hub_password)?);
    for d in &devices {
        password_file.push_str(&format!("{}:{}\n", d.device_id, d.broker_hash));
    }
    let mut acl_file = format!(
        "# Written by `herald mqtt acl`; PROTOCOL.md §2.2. Regenerate after devices change.\n\
         user {hub_user}\n\
         topic write herald/v1/d/+/cmd\n\
         topic write herald/v1/a/+/cmd\n\
         topic read herald/v1/d/+/+\n\n\
         # Every device account (%u is its user name, its device id): its own topics only.\n"
    );
    for report in herald_firmware_protocol::topic::REPORT_KINDS {
        acl_file.push_str(&format!("pattern write herald/v1/d/%u/{report}\n"));
    }
    acl_file.push_str("pattern read herald/v1/d/%u/cmd\npattern read herald/v1/a/+/cmd\n");
    Ok(BrokerFiles {
        password_file,
        acl_file,
        devices: devices.len(),
    })
}

/// Devices in `scope` (none: all), by area, group and id.
pub async fn list_devices(hub: &Hub, scope: Option<&AreaCode>) -> Result<Vec<DeviceView>> {
    let mut query = device::Entity::find();
    if let Some(scope) = scope {
        let in_scope = sea_orm::sea_query::Query::select()
            .column(target::Column::Id)
            .from(target::Entity)
            .and_where(target::Column::AreaCode.like(LikeExpr::new(format!("{scope}%"))))
            .to_owned();
        query = query.filter(device::Column::TargetId.in_subquery(in_scope));
    }
    let devices = query.order_by_asc(device::Column::DeviceId).all(&hub.db).await?;
    let mut targets = HashMap::new();
    for chunk in devices.chunks(ID_CHUNK) {
        for t in target::Entity::find()
            .filter(target::Column::Id.is_in(chunk.iter().map(|d| d.target_id.clone())))
            .all(&hub.db)
            .await?
        {
            targets.insert(t.id.to_string(), t);
        }
    }
    let mut views = devices
        .into_iter()
        .map(|d| {
            let t = targets
                .remove(d.target_id.as_str())
                .ok_or_else(|| anyhow::anyhow!("device {} has no target", d.device_id))?;
            DeviceView::from_rows(d, t)
        })
        .collect::<Result<Vec<_>>>()?;
    views.sort_by(|a, b| (&a.area_code, &a.group, &a.device_id).cmp(&(&b.area_code, &b.group, &b.device_id)));
    Ok(views)
}

async fn find(db: &impl sea_orm::ConnectionTrait, device_id: &str) -> Result<(device::Model, target::Model)> {
    let device = device::Entity::find()
        .filter(device::Column::DeviceId.eq(device_id))
        .one(db)
        .await?
        .ok_or(Error::NotFound("device"))?;
    let target = target::Entity::find_by_id(device.target_id.as_str())
        .one(db)
        .await?
        .ok_or(Error::NotFound("device"))?;
    Ok((device, target))
}

/// An administrator's change to one device, as the audit log records it.
struct Change<'a> {
    at: DateTime<Utc>,
    actor: &'a str,
    action: &'a str,
    detail: serde_json::Value,
}

/// Records `change` in the audit log, commits, and returns the device as it now is.
async fn commit_change(
    txn: sea_orm::DatabaseTransaction,
    change: Change<'_>,
    device: device::Model,
    target: target::Model,
) -> Result<DeviceView> {
    audit::append_change(
        &txn,
        change.at,
        change.actor,
        change.action,
        ("device", &device.device_id),
        Some(&target.area_code),
        change.detail,
    )
    .await?;
    txn.commit().await?;
    DeviceView::from_rows(device, target)
}

/// `find`, for an administrator of `scope`.
async fn find_in_scope(
    db: &impl sea_orm::ConnectionTrait,
    scope: Option<&AreaCode>,
    device_id: &str,
) -> Result<(device::Model, target::Model)> {
    let (device, target) = find(db, device_id).await?;
    if let Some(scope) = scope {
        let area = AreaCode::parse(&target.area_code).map_err(|e| anyhow::anyhow!("{e}"))?;
        if !area.is_within(scope) {
            return Err(Error::forbidden(format!(
                "device {device_id} is in area {area}, outside your area {scope}"
            )));
        }
    }
    Ok((device, target))
}

/// Revokes a device: its credential stops working and nothing more is delivered to it. Its
/// record and deliveries stay.
pub async fn revoke_device(
    hub: &Hub,
    actor: &str,
    scope: Option<&AreaCode>,
    device_id: &str,
) -> Result<DeviceView> {
    let now = hub.clock.now();
    let txn = begin_write(&hub.db).await?;
    let (device, target) = find_in_scope(&txn, scope, device_id).await?;
    if device.revoked_at.is_some() {
        return Err(Error::conflict(
            "already_revoked",
            format!("device {device_id} is already revoked"),
        ));
    }
    let mut revoked: device::ActiveModel = device.into();
    revoked.revoked_at = Set(Some(now));
    let device = sea_orm::ActiveModelTrait::update(revoked, &txn).await?;
    let mut disabled: target::ActiveModel = target.into();
    disabled.enabled = Set(false);
    let target = sea_orm::ActiveModelTrait::update(disabled, &txn).await?;
    let cancelled = cancel_queued(&txn, now, &device.target_id).await?;
    let detail = serde_json::json!({"target_id": device.target_id, "cancelled_deliveries": cancelled});
    let change = Change {
        at: now,
        actor,
        action: "device.revoke",
        detail,
    };
    commit_change(txn, change, device, target).await
}

/// Calls off what is still queued for a revoked device's target (pending, or waiting for a
/// retry), with the counts, so nothing more reaches it; returns how many. Locked on
/// PostgreSQL, where a worker's claim skips locked rows; SQLite's write transaction is
/// exclusive already.
async fn cancel_queued(
    txn: &sea_orm::DatabaseTransaction,
    now: DateTime<Utc>,
    target_id: &str,
) -> Result<usize> {
    use super::{
        DeliveryState,
        counts::{CountChanges, CountedDeliveries},
    };
    use crate::store::entities::delivery;
    use sea_orm::{QuerySelect, sea_query::Expr};
    let queued = delivery::Entity::find()
        .filter(delivery::Column::TargetId.eq(target_id))
        .filter(delivery::Column::State.is_in([DeliveryState::Pending, DeliveryState::Retrying]))
        .lock_exclusive()
        .all(txn)
        .await?;
    let mut counts = CountChanges::default();
    for d in &queued {
        counts.moved(&CountedDeliveries::of(d), d.state, DeliveryState::Cancelled, 1);
    }
    let ids: Vec<String> = queued.iter().map(|d| d.id.to_string()).collect();
    for chunk in ids.chunks(ID_CHUNK) {
        delivery::Entity::update_many()
            .col_expr(delivery::Column::State, Expr::value(DeliveryState::Cancelled))
            .col_expr(delivery::Column::UpdatedAt, Expr::value(now))
            .filter(delivery::Column::Id.is_in(chunk.iter().cloned()))
            .exec(txn)
            .await?;
    }
    let unqueued: Vec<&str> = ids.iter().map(String::as_str).collect();
    super::queue::dequeue(txn, &unqueued).await?;
    counts.apply(txn).await?;
    Ok(queued.len())
}

/// Issues a device a new credential (the old one was lost, or may have leaked): the old one
/// stops working at once, on the broker after `herald mqtt acl` and a reload. A revoked
/// device gets none.
pub async fn reissue_credential(
    hub: &Hub,
    actor: &str,
    scope: Option<&AreaCode>,
    device_id: &str,
) -> Result<Issued> {
    let now = hub.clock.now();
    let txn = begin_write(&hub.db).await?;
    let (device, target) = find_in_scope(&txn, scope, device_id).await?;
    if device.revoked_at.is_some() {
        return Err(Error::conflict(
            "revoked",
            format!("device {device_id} is revoked; register it again instead"),
        ));
    }
    let credential = format!("{CREDENTIAL_PREFIX}{}", random_secret(32)?);
    let mut reissued: device::ActiveModel = device.into();
    reissued.credential_hash = Set(sha256_hex(credential.as_bytes()));
    reissued.broker_hash = Set(mosquitto_hash(&credential)?);
    reissued.credential_issued_at = Set(now);
    let device = sea_orm::ActiveModelTrait::update(reissued, &txn).await?;
    let change = Change {
        at: now,
        actor,
        action: "device.credential",
        detail: serde_json::json!({"target_id": device.target_id}),
    };
    let device = commit_change(txn, change, device, target).await?;
    Ok(Issued { device, credential })
}

/// Registers the report-signing key a device shows at installation (or a replacement, which is
/// a re-registration): it gets a new key id, and reports under the old one are refused.
pub async fn set_device_key(
    hub: &Hub,
    actor: &str,
    scope: Option<&AreaCode>,
    device_id: &str,
    public_key: &str,
) -> Result<DeviceView> {
    let public_key = check_public_key(public_key.trim()).map_err(|m| Error::validation("public_key", m))?;
    let now = hub.clock.now();
    let txn = begin_write(&hub.db).await?;
    let (device, target) = find_in_scope(&txn, scope, device_id).await?;
    let key_id = next_key_ids(&txn, 1).await?.start;
    let mut keyed: device::ActiveModel = device.into();
    keyed.key_id = Set(Some(key_id));
    keyed.public_key = Set(Some(public_key.clone()));
    let device = sea_orm::ActiveModelTrait::update(keyed, &txn)
        .await
        .map_err(registered_meanwhile)?;
    let detail = serde_json::json!({"key_id": key_id, "public_key": public_key});
    let change = Change {
        at: now,
        actor,
        action: "device.key",
        detail,
    };
    commit_change(txn, change, device, target).await
}

/// A device heard on the broker: its report key, and the target its reports are receipts for.
#[derive(Debug, Clone)]
pub struct ReportingDevice {
    pub key: herald_firmware_protocol::hub::DeviceKey,
    pub target_id: String,
    pub channel: ChannelKind,
}

/// The device and key a report frame's key id names, for `open_report`; none for an unknown
/// id or a revoked device (a revoked device is not heard).
pub async fn report_key(hub: &Hub, key_id: u32) -> Result<Option<ReportingDevice>> {
    let Some(device) = device::Entity::find()
        .filter(device::Column::KeyId.eq(i64::from(key_id)))
        .filter(device::Column::RevokedAt.is_null())
        .one(&hub.db)
        .await?
    else {
        return Ok(None);
    };
    let target = target::Entity::find_by_id(device.target_id.as_str())
        .one(&hub.db)
        .await?
        .ok_or(Error::NotFound("device"))?;
    let public_key = device
        .public_key
        .as_deref()
        .and_then(herald_firmware_protocol::hex::decode_array::<32>)
        .ok_or_else(|| anyhow::anyhow!("device {} has a key id but no readable key", device.device_id))?;
    Ok(Some(ReportingDevice {
        key: herald_firmware_protocol::hub::DeviceKey {
            device_id: device.device_id,
            public_key,
        },
        target_id: target.id.to_string(),
        channel: target.channel,
    }))
}

/// What a device's status, birth or health report says of it, kept on its row: when it was
/// last heard, whether it is online, what it can do, how it is.
#[derive(Debug, Default, Clone)]
pub struct Heard {
    pub online: Option<bool>,
    pub capabilities: Option<serde_json::Value>,
    pub firmware_version: Option<String>,
    pub health: Option<serde_json::Value>,
}

impl Heard {
    /// This, then `newer`: what `newer` says wins, the rest stands.
    pub fn then(self, newer: Heard) -> Heard {
        Heard {
            online: newer.online.or(self.online),
            capabilities: newer.capabilities.or(self.capabilities),
            firmware_version: newer.firmware_version.or(self.firmware_version),
            health: newer.health.or(self.health),
        }
    }
}

/// Records what a device reported about itself at `at`.
pub async fn record_heard(
    db: &impl sea_orm::ConnectionTrait,
    device_id: &str,
    at: DateTime<Utc>,
    heard: Heard,
) -> Result<()> {
    let mut update = device::Entity::update_many()
        .col_expr(device::Column::LastSeenAt, sea_orm::sea_query::Expr::value(at))
        .filter(device::Column::DeviceId.eq(device_id));
    if let Some(online) = heard.online {
        update = update.col_expr(device::Column::Online, sea_orm::sea_query::Expr::value(online));
    }
    if let Some(capabilities) = heard.capabilities {
        update = update.col_expr(
            device::Column::Capabilities,
            sea_orm::sea_query::Expr::value(capabilities.to_string()),
        );
    }
    if let Some(firmware) = heard.firmware_version {
        update = update.col_expr(
            device::Column::FirmwareVersion,
            sea_orm::sea_query::Expr::value(firmware),
        );
    }
    if let Some(health) = heard.health {
        update = update.col_expr(
            device::Column::Health,
            sea_orm::sea_query::Expr::value(health.to_string()),
        );
    }
    update.exec(db).await?;
    Ok(())
}

/// The device a broker login names, if the credential is its own and it is not revoked.
pub async fn authenticate(hub: &Hub, device_id: &str, credential: &str) -> Result<Option<DeviceView>> {
    let (device, target) = match find(&hub.db, device_id).await {
        Ok(found) => found,
        Err(Error::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    if device.revoked_at.is_some() || device.credential_hash != sha256_hex(credential.as_bytes()) {
        return Ok(None);
    }
    DeviceView::from_rows(device, target).map(Some)
}

/// Reads an import file: a header row naming `channel`, `name` and `area_code` (and optionally
/// `device_id`, `group` and `public_key`), then one device per row. Each row is labelled with its line in
/// the file; rows that cannot be read at all are reported with the rest.
pub fn parse_csv(bytes: &[u8]) -> std::result::Result<Vec<(usize, NewDevice)>, Vec<RowError>> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Line {
        channel: String,
        name: String,
        area_code: String,
        #[serde(default)]
        device_id: Option<String>,
        #[serde(default)]
        group: Option<String>,
        #[serde(default)]
        public_key: Option<String>,
    }
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(bytes);
    let headers = match reader.headers() {
        Ok(headers) => headers.clone(),
        Err(e) => return Err(vec![row_error(1, "header", e.to_string())]),
    };
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for record in reader.records() {
        let (at, line) = match record {
            Ok(record) => {
                let at = record.position().map_or(0, |p| p.line() as usize);
                (at, record.deserialize::<Line>(Some(&headers)))
            }
            Err(e) => {
                let at = e.position().map_or(0, |p| p.line() as usize);
                errors.push(row_error(at, "row", e.to_string()));
                continue;
            }
        };
        match line {
            Ok(line) => match ChannelKind::parse(&line.channel) {
                Some(channel) => rows.push((
                    at,
                    NewDevice {
                        channel,
                        device_id: line.device_id,
                        name: line.name,
                        area_code: line.area_code,
                        group: line.group.unwrap_or_default(),
                        public_key: line.public_key,
                    },
                )),
                None => errors.push(row_error(
                    at,
                    "channel",
                    format!("unknown channel `{}`", line.channel),
                )),
            },
            Err(e) => errors.push(row_error(at, "row", e.to_string())),
        }
    }
    if errors.is_empty() { Ok(rows) } else { Err(errors) }
}
