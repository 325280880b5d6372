//! Registered channel targets and how an item's area, catalog entry and tags select them.

use std::collections::{BTreeMap, HashMap};

use herald_channels::{ChannelKind, SecretString, TargetRef};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
    sea_query::{LikeExpr, Query},
};
use serde::{Deserialize, Serialize};

use crate::{
    accounts::Caller,
    audit::{self, AuditEvent},
    domain::{
        area::AreaCode,
        text::{MAX_NAME_CHARS, single_line},
        user::Role,
    },
    error::{Error, Result},
    hub::Hub,
    secrets::{MAX_SECRET_BYTES, MAX_SECRET_NAME_CHARS, MAX_SECRETS, Sealed},
    store::{
        JsonRows, among, begin_write,
        entities::{target, target_secret},
    },
};

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct TargetView {
    pub id: String,
    pub channel: ChannelKind,
    pub name: String,
    pub area_code: String,
    /// Catalog entries it takes; empty: all.
    pub catalogs: Vec<String>,
    /// Tags it takes; empty: all.
    pub tags: Vec<String>,
    pub config: serde_json::Value,
    /// Names of the target's secrets; their values are never shown.
    pub secret_names: Vec<String>,
    pub enabled: bool,
}

impl TryFrom<target::Model> for TargetView {
    type Error = Error;
    fn try_from(m: target::Model) -> Result<Self> {
        TargetColumns(
            m.id.into(),
            m.channel,
            m.name,
            m.area_code,
            m.catalogs,
            m.tags,
            m.config,
            StoredBool(m.enabled),
        )
        .try_into()
    }
}

/// What a `TargetView` is made of, as the store keeps it (lists and settings as JSON text), in
/// `TARGET_COLUMNS` order.
#[derive(Deserialize)]
struct TargetColumns(
    String,
    ChannelKind,
    String,
    String,
    String,
    String,
    String,
    StoredBool,
);

/// The columns of `targets` that `TargetColumns` reads, in its fields' order.
const TARGET_COLUMNS: [&str; 8] = [
    "id",
    "channel",
    "name",
    "area_code",
    "catalogs",
    "tags",
    "config",
    "enabled",
];

/// A boolean column read as JSON: `true`/`false` from PostgreSQL, `1`/`0` from SQLite.
struct StoredBool(bool);

impl<'de> Deserialize<'de> for StoredBool {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Stored {
            Bool(bool),
            Integer(i64),
        }
        Ok(StoredBool(match Stored::deserialize(deserializer)? {
            Stored::Bool(b) => b,
            Stored::Integer(i) => i != 0,
        }))
    }
}

impl TryFrom<TargetColumns> for TargetView {
    type Error = Error;
    fn try_from(
        TargetColumns(id, channel, name, area_code, catalogs, tags, config, enabled): TargetColumns,
    ) -> Result<Self> {
        fn json<T: serde::de::DeserializeOwned>(raw: &str) -> Result<T> {
            serde_json::from_str(raw).map_err(|e| Error::from(anyhow::Error::new(e)))
        }
        Ok(Self {
            channel,
            catalogs: json(&catalogs)?,
            tags: json(&tags)?,
            config: json(&config)?,
            id,
            name,
            area_code,
            secret_names: Vec::new(),
            enabled: enabled.0,
        })
    }
}

impl TargetView {
    /// What the adapter sees: the settings and, decrypted, the secrets.
    pub fn target_ref(&self, secrets: BTreeMap<String, SecretString>) -> TargetRef {
        TargetRef {
            id: self.id.clone(),
            name: self.name.clone(),
            area_code: self.area_code.clone(),
            config: self.config.clone(),
            secrets,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTarget {
    pub channel: ChannelKind,
    pub name: String,
    pub area_code: String,
    #[serde(default)]
    pub catalogs: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub config: Option<serde_json::Value>,
    /// Secrets the adapter needs (`app_secret`, `signing_key`): stored encrypted, apart from
    /// `config`, and never shown again; views list their names only. At most 16; names of
    /// `[a-z0-9_]`, at most 64 characters; values at most 4,096 bytes on one line.
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, String>)]
    pub secrets: BTreeMap<String, SecretString>,
}

/// Checks names and values; the error names `secrets.<name>` and never repeats a value.
fn check_secrets(secrets: &BTreeMap<String, SecretString>) -> Result<()> {
    if secrets.len() > MAX_SECRETS {
        return Err(Error::validation(
            "secrets",
            format!("must have at most {MAX_SECRETS} entries"),
        ));
    }
    for (name, value) in secrets {
        let shown: String = name.chars().take(MAX_SECRET_NAME_CHARS).collect();
        let field = format!("secrets.{shown}");
        if name.is_empty()
            || name.chars().count() > MAX_SECRET_NAME_CHARS
            || !name.chars().all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        {
            return Err(Error::validation(
                field,
                format!("a secret's name is 1 to {MAX_SECRET_NAME_CHARS} characters of a-z, 0-9 and _"),
            ));
        }
        let raw = value.expose();
        if raw.len() > MAX_SECRET_BYTES {
            return Err(Error::validation(
                field,
                format!("must be at most {MAX_SECRET_BYTES} bytes"),
            ));
        }
        let checked = single_line(&field, raw, MAX_SECRET_BYTES, true)?;
        if checked != raw {
            return Err(Error::validation(field, "must not begin or end with white space"));
        }
    }
    Ok(())
}

/// A target's settings are a few addresses and options, never documents.
pub const MAX_CONFIG_BYTES: usize = 16 * 1024;
const MAX_FILTER_ENTRIES: usize = 50;

pub async fn create_target(hub: &Hub, actor: &Caller, new: NewTarget) -> Result<TargetView> {
    if actor.role != Role::Admin {
        return Err(Error::forbidden("only administrators register channel targets"));
    }
    let name = single_line("name", &new.name, MAX_NAME_CHARS, true)?;
    let name = name.as_str();
    let area_code = single_line("area_code", &new.area_code, MAX_NAME_CHARS, true)?;
    let area = hub
        .areas
        .resolve(&area_code)
        .map_err(|m| Error::validation("area_code", m))?;
    if !actor.sees(&area) {
        return Err(Error::forbidden(format!(
            "area {area} is outside your area {}",
            actor.area
        )));
    }
    for (field, list) in [("catalogs", &new.catalogs), ("tags", &new.tags)] {
        if list.len() > MAX_FILTER_ENTRIES {
            return Err(Error::validation(
                field,
                format!("must have at most {MAX_FILTER_ENTRIES} entries"),
            ));
        }
        for (i, entry) in list.iter().enumerate() {
            single_line(&format!("{field}[{i}]"), entry, MAX_NAME_CHARS, true)?;
        }
    }
    for (i, code) in new.catalogs.iter().enumerate() {
        if hub.catalog.get(code).is_none() {
            return Err(Error::validation(
                format!("catalogs[{i}]"),
                format!("catalog entry `{code}` is not configured"),
            ));
        }
    }
    let config = new.config.unwrap_or_else(|| serde_json::json!({}));
    if !config.is_object() {
        return Err(Error::validation("config", "must be a JSON object"));
    }
    let config_bytes = config.to_string().len();
    if config_bytes > MAX_CONFIG_BYTES {
        return Err(Error::validation(
            "config",
            format!("is {config_bytes} bytes as JSON; the limit is {MAX_CONFIG_BYTES}"),
        ));
    }
    check_secrets(&new.secrets)?;
    // A target no adapter serves would be skipped at every publish without a word.
    let Some(adapter) = hub.channels.get(new.channel) else {
        let how = if new.channel.is_device() {
            "this hub runs no device link (mqtt settings); devices are registered with POST /api/v1/devices"
        } else {
            "this hub runs no adapter for it"
        };
        return Err(Error::validation(
            "channel",
            format!("{} ({}): {how}", new.channel.label_zh(), new.channel.as_str()),
        ));
    };
    let secret_names: Vec<&str> = new.secrets.keys().map(String::as_str).collect();
    adapter
        .check_target(&config, &secret_names)
        .map_err(|e| Error::validation(e.field, e.message))?;
    let key = match (&hub.secrets_key, new.secrets.is_empty()) {
        (_, true) => None,
        (Some(key), false) => Some(key),
        (None, false) => {
            return Err(Error::Refused {
                code: "secrets_key_missing",
                field: Some("secrets".into()),
                message: "this server has no storage.secrets_key, so it cannot store target secrets \
                          encrypted; configure the key and restart"
                    .into(),
            });
        }
    };
    let now = hub.clock.now();
    let txn = begin_write(&hub.db).await?;
    let view = TargetView {
        id: hub.clock.new_id().to_string(),
        channel: new.channel,
        name: name.to_owned(),
        area_code: area.to_string(),
        catalogs: new.catalogs,
        tags: new.tags,
        config,
        secret_names: new.secrets.keys().cloned().collect(),
        enabled: true,
    };
    let model = insert(&txn, &view, now).await?;
    if let Some(key) = key {
        for (name, value) in &new.secrets {
            let sealed = key.seal(&view.id, name, value)?;
            target_secret::ActiveModel {
                target_id: Set(view.id.clone()),
                name: Set(name.clone()),
                nonce: Set(sealed.nonce),
                ciphertext: Set(sealed.ciphertext),
            }
            .insert(&txn)
            .await?;
        }
    }
    audit::append(
        &txn,
        now,
        AuditEvent {
            actor: &actor.id,
            action: "target.create",
            target_type: "target",
            target_id: &model.id,
            before_hash: None,
            after_hash: None,
            detail: serde_json::json!({
                "channel": model.channel,
                "name": model.name,
                "area_code": model.area_code,
                "secret_names": view.secret_names,
            }),
            area: Some(&model.area_code),
        },
    )
    .await?;
    txn.commit().await?;
    let mut created = TargetView::try_from(model)?;
    created.secret_names = view.secret_names;
    Ok(created)
}

fn target_row(view: &TargetView, now: chrono::DateTime<chrono::Utc>) -> target::ActiveModel {
    let json = |list: &[String]| serde_json::Value::from(list.to_vec()).to_string();
    target::ActiveModel {
        id: Set(view.id.as_str().into()),
        channel: Set(view.channel),
        name: Set(view.name.clone()),
        area_code: Set(view.area_code.clone()),
        catalogs: Set(json(&view.catalogs)),
        tags: Set(json(&view.tags)),
        config: Set(view.config.to_string()),
        enabled: Set(view.enabled),
        created_at: Set(now),
    }
}

async fn insert(
    db: &impl ConnectionTrait,
    view: &TargetView,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<target::Model> {
    Ok(target_row(view, now).insert(db).await?)
}

/// Registers many targets in one statement (the device registry's bulk import).
pub(super) async fn insert_targets(
    db: &impl ConnectionTrait,
    views: &[TargetView],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    if views.is_empty() {
        return Ok(());
    }
    target::Entity::insert_many(views.iter().map(|view| target_row(view, now)))
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Every installation has the portal: the first start registers it for the whole area tree.
pub async fn ensure_portal_target(hub: &Hub) -> Result<()> {
    let exists = target::Entity::find()
        .filter(target::Column::Channel.eq(ChannelKind::Portal))
        .one(&hub.db)
        .await?
        .is_some();
    if !exists {
        let root = hub.areas.root();
        let txn = begin_write(&hub.db).await?;
        let portal = TargetView {
            id: hub.clock.new_id().to_string(),
            channel: ChannelKind::Portal,
            name: "政府门户网站".into(),
            area_code: root.code.to_string(),
            catalogs: Vec::new(),
            tags: Vec::new(),
            config: serde_json::json!({}),
            secret_names: Vec::new(),
            enabled: true,
        };
        insert(&txn, &portal, hub.clock.now()).await?;
        txn.commit().await?;
    }
    Ok(())
}

pub async fn list_targets(hub: &Hub, caller: &Caller) -> Result<Vec<TargetView>> {
    let condition = Condition::all().add(target::Column::AreaCode.starts_with(caller.area.as_str()));
    let views = target::Entity::find()
        .filter(condition.clone())
        .order_by_asc(target::Column::Channel)
        .order_by_asc(target::Column::AreaCode)
        .order_by_asc(target::Column::Name)
        .all(&hub.db)
        .await?
        .into_iter()
        .map(TargetView::try_from)
        .collect::<Result<Vec<_>>>()?;
    with_secret_names(&hub.db, condition, views).await
}

/// Fills in `secret_names` of `views`, the targets `condition` selects (one query, whatever
/// their number: the targets are a subquery, not a list of ids).
async fn with_secret_names(
    db: &impl ConnectionTrait,
    condition: Condition,
    mut views: Vec<TargetView>,
) -> Result<Vec<TargetView>> {
    let selected = Query::select()
        .column(target::Column::Id)
        .from(target::Entity)
        .cond_where(condition)
        .to_owned();
    let rows: Vec<(String, String)> = target_secret::Entity::find()
        .select_only()
        .column(target_secret::Column::TargetId)
        .column(target_secret::Column::Name)
        .filter(target_secret::Column::TargetId.in_subquery(selected))
        .order_by_asc(target_secret::Column::Name)
        .into_tuple()
        .all(db)
        .await?;
    let mut names: HashMap<String, Vec<String>> = HashMap::new();
    for (target_id, name) in rows {
        names.entry(target_id).or_default().push(name);
    }
    for view in &mut views {
        view.secret_names = names.remove(&view.id).unwrap_or_default();
    }
    Ok(views)
}

/// A target's decrypted secrets, or why they cannot be opened (no key, another key, an altered
/// row): the reason never holds a value.
type OpenedSecrets = std::result::Result<BTreeMap<String, SecretString>, String>;

/// Targets as their adapters see them, read together: settings, and secrets decrypted. The one
/// way the worker (a batch), reconcile (overdue deliveries) and the callback route (one
/// target) assemble a `TargetRef`.
pub struct TargetRefs {
    views: HashMap<String, TargetView>,
    secrets: HashMap<String, OpenedSecrets>,
}

impl TargetRefs {
    /// Reads `ids`, however many: a device batch can hold 10,000.
    pub async fn load(hub: &Hub, ids: &[&str]) -> Result<Self> {
        let mut views = HashMap::with_capacity(ids.len());
        let backend = hub.db.get_database_backend();
        let json = JsonRows::new(backend);
        let these = Condition::all().add(among(backend, target::Column::Id, ids.iter().copied()));
        let statement = json.select(target::Entity, &json.array(TARGET_COLUMNS), "", these);
        let rows: Vec<TargetColumns> = JsonRows::read(&hub.db, statement).await?;
        for row in rows {
            let view = TargetView::try_from(row)?;
            views.insert(view.id.clone(), view);
        }
        let secrets = load_secrets(hub, ids).await?;
        Ok(Self { views, secrets })
    }

    pub fn view(&self, target_id: &str) -> Option<&TargetView> {
        self.views.get(target_id)
    }

    /// Why the target's secrets cannot be opened, when they cannot.
    pub fn unreadable_secrets(&self, target_id: &str) -> Option<&str> {
        match self.secrets.get(target_id) {
            Some(Err(reason)) => Some(reason),
            _ => None,
        }
    }

    /// What the adapter sees of a target: its settings and decrypted secrets.
    pub fn target_ref(&self, target_id: &str) -> Result<TargetRef> {
        let view = self
            .view(target_id)
            .ok_or_else(|| anyhow::anyhow!("target {target_id} vanished"))?;
        let secrets = match self.secrets.get(target_id) {
            Some(Ok(secrets)) => secrets.clone(),
            Some(Err(reason)) => return Err(anyhow::anyhow!("{reason}").into()),
            None => BTreeMap::new(),
        };
        Ok(view.target_ref(secrets))
    }
}

/// The decrypted secrets of `target_ids`, by target; a target without secrets is absent.
async fn load_secrets(hub: &Hub, target_ids: &[&str]) -> Result<HashMap<String, OpenedSecrets>> {
    let backend = hub.db.get_database_backend();
    let rows = target_secret::Entity::find()
        .filter(among(
            backend,
            target_secret::Column::TargetId,
            target_ids.iter().copied(),
        ))
        .all(&hub.db)
        .await?;
    let mut secrets: HashMap<String, OpenedSecrets> = HashMap::new();
    for row in rows {
        let opened = match &hub.secrets_key {
            None => Err("the target has secrets but no storage.secrets_key is configured".to_owned()),
            Some(key) => key
                .open(
                    &row.target_id,
                    &row.name,
                    &Sealed {
                        nonce: row.nonce,
                        ciphertext: row.ciphertext,
                    },
                )
                .map_err(|e| e.to_string()),
        };
        let entry = secrets
            .entry(row.target_id)
            .or_insert_with(|| Ok(BTreeMap::new()));
        match (entry, opened) {
            (Ok(map), Ok(value)) => {
                map.insert(row.name, value);
            }
            (entry @ Ok(_), Err(reason)) => *entry = Err(reason),
            (Err(_), _) => {}
        }
    }
    Ok(secrets)
}

/// JSON-array columns hold plain strings: a value is in the array when its JSON form is.
fn json_array_has(column: target::Column, value: &str) -> Condition {
    let json = serde_json::Value::from(value).to_string();
    let escaped = json.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    Condition::all().add(column.like(LikeExpr::new(format!("%{escaped}%")).escape('\\')))
}

/// Which targets an item reaches. The rule lives here once, in SQL, so that the preview a
/// publisher checks and the deliveries a publish writes are the same set.
#[derive(Clone)]
pub struct Reach {
    condition: Condition,
}

impl Reach {
    /// Targets in the item's area subtree; for the county-level outlets (portal, WeChat, media
    /// center) also those of the areas above it, since a township item goes to the county
    /// portal. Devices only ever play what belongs to their own area. A target that lists
    /// catalog entries or tags takes only items filed under one of them.
    pub fn new(
        hub: &Hub,
        area: &AreaCode,
        catalog: &str,
        tags: &[String],
        channels: &[ChannelKind],
        only: &[String],
    ) -> Self {
        let kinds: Vec<&str> = hub
            .channels
            .kinds()
            .filter(|k| channels.is_empty() || channels.contains(k))
            .map(ChannelKind::as_str)
            .collect();
        let mut ancestors = Vec::new();
        let mut up = area.parent();
        while let Some(code) = up {
            up = code.parent();
            ancestors.push(code.to_string());
        }
        let outlets: Vec<&str> = ChannelKind::ALL
            .iter()
            .filter(|k| !k.is_device())
            .map(|k| k.as_str())
            .collect();
        let mut reach = Condition::any().add(target::Column::AreaCode.starts_with(area.as_str()));
        if !ancestors.is_empty() {
            reach = reach.add(
                Condition::all()
                    .add(target::Column::AreaCode.is_in(ancestors))
                    .add(target::Column::Channel.is_in(outlets)),
            );
        }
        let mut catalog_ok = Condition::any().add(target::Column::Catalogs.eq("[]"));
        catalog_ok = catalog_ok.add(json_array_has(target::Column::Catalogs, catalog));
        let mut tags_ok = Condition::any().add(target::Column::Tags.eq("[]"));
        for tag in tags {
            tags_ok = tags_ok.add(json_array_has(target::Column::Tags, tag));
        }
        let mut condition = Condition::all()
            .add(target::Column::Enabled.eq(true))
            .add(target::Column::Channel.is_in(kinds))
            .add(reach)
            .add(catalog_ok)
            .add(tags_ok);
        if !only.is_empty() {
            condition = condition.add(target::Column::Id.is_in(only.iter().cloned()));
        }
        Self { condition }
    }

    pub fn condition(&self) -> Condition {
        self.condition.clone()
    }

    pub async fn targets(&self, db: &impl ConnectionTrait) -> Result<Vec<TargetView>> {
        let views = target::Entity::find()
            .filter(self.condition())
            .order_by_asc(target::Column::Id)
            .all(db)
            .await?
            .into_iter()
            .map(TargetView::try_from)
            .collect::<Result<Vec<_>>>()?;
        with_secret_names(db, self.condition(), views).await
    }

    /// Of `ids`, those this reach does not include.
    pub async fn missing(&self, db: &impl ConnectionTrait, ids: &[String]) -> Result<Vec<String>> {
        let found: Vec<String> = target::Entity::find()
            .select_only()
            .column(target::Column::Id)
            .filter(self.condition())
            .filter(target::Column::Id.is_in(ids.iter().cloned()))
            .into_tuple()
            .all(db)
            .await?;
        Ok(ids.iter().filter(|id| !found.contains(id)).cloned().collect())
    }

    pub async fn count_by_channel(&self, db: &impl ConnectionTrait) -> Result<Vec<(ChannelKind, i64)>> {
        Ok(target::Entity::find()
            .select_only()
            .column(target::Column::Channel)
            .column_as(target::Column::Id.count(), "n")
            .filter(self.condition())
            .group_by(target::Column::Channel)
            .into_tuple()
            .all(db)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_read_as_json_decodes_from_either_store() {
        // SQLite keeps a boolean as 0/1, PostgreSQL as false/true.
        for (enabled, expected) in [("1", true), ("0", false), ("true", true), ("false", false)] {
            let text = format!(
                r#"[["t1","loudspeaker","村口","530426001001","[]","[\"应急\"]","{{\"group\":\"g\"}}",{enabled}]]"#
            );
            let rows: Vec<TargetColumns> = serde_json::from_str(&text).expect("decodes");
            let view = TargetView::try_from(rows.into_iter().next().expect("one row")).expect("a view");
            assert_eq!(view.enabled, expected);
            assert_eq!(view.tags, vec!["应急".to_owned()]);
            assert_eq!(view.config["group"], "g");
        }
        let not_a_boolean = r#"[["t1","loudspeaker","村口","530426001001","[]","[]","{}","yes"]]"#;
        assert!(serde_json::from_str::<Vec<TargetColumns>>(not_a_boolean).is_err());
    }
}
