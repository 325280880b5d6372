//! Registered channel targets and how an item's area, catalog entry and tags select them.

use herald_channels::{ChannelKind, TargetRef};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, sea_query::LikeExpr,
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
    store::{begin_write, entities::target},
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
    pub enabled: bool,
}

fn parse_channel(raw: &str) -> Result<ChannelKind> {
    ChannelKind::parse(raw).ok_or_else(|| anyhow::anyhow!("unknown channel {raw}").into())
}

impl TryFrom<target::Model> for TargetView {
    type Error = Error;
    fn try_from(m: target::Model) -> Result<Self> {
        fn json<T: serde::de::DeserializeOwned>(raw: &str) -> Result<T> {
            serde_json::from_str(raw).map_err(|e| Error::from(anyhow::Error::new(e)))
        }
        Ok(Self {
            channel: parse_channel(&m.channel)?,
            catalogs: json(&m.catalogs)?,
            tags: json(&m.tags)?,
            config: json(&m.config)?,
            id: m.id,
            name: m.name,
            area_code: m.area_code,
            enabled: m.enabled,
        })
    }
}

impl TargetView {
    pub fn as_ref(&self) -> TargetRef {
        TargetRef {
            id: self.id.clone(),
            name: self.name.clone(),
            area_code: self.area_code.clone(),
            config: self.config.clone(),
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
    let now = hub.clock.now();
    let txn = begin_write(&hub.db).await?;
    let view = TargetView {
        id: uuid::Uuid::now_v7().to_string(),
        channel: new.channel,
        name: name.to_owned(),
        area_code: area.to_string(),
        catalogs: new.catalogs,
        tags: new.tags,
        config,
        enabled: true,
    };
    let model = insert(&txn, &view, now).await?;
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
            detail: serde_json::json!({"channel": model.channel, "name": model.name, "area_code": model.area_code}),
            area: Some(&model.area_code),
        },
    )
    .await?;
    txn.commit().await?;
    TargetView::try_from(model)
}

async fn insert(
    db: &impl ConnectionTrait,
    view: &TargetView,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<target::Model> {
    let json = |list: &[String]| serde_json::Value::from(list.to_vec()).to_string();
    Ok(target::ActiveModel {
        id: Set(view.id.clone()),
        channel: Set(view.channel.as_str().to_owned()),
        name: Set(view.name.clone()),
        area_code: Set(view.area_code.clone()),
        catalogs: Set(json(&view.catalogs)),
        tags: Set(json(&view.tags)),
        config: Set(view.config.to_string()),
        enabled: Set(view.enabled),
        created_at: Set(now),
    }
    .insert(db)
    .await?)
}

/// Every installation has the portal: the first start registers it for the whole area tree.
pub async fn ensure_portal_target(hub: &Hub) -> Result<()> {
    let exists = target::Entity::find()
        .filter(target::Column::Channel.eq(ChannelKind::Portal.as_str()))
        .one(&hub.db)
        .await?
        .is_some();
    if !exists {
        let root = hub.areas.root();
        let txn = begin_write(&hub.db).await?;
        let portal = TargetView {
            id: uuid::Uuid::now_v7().to_string(),
            channel: ChannelKind::Portal,
            name: "政府门户网站".into(),
            area_code: root.code.to_string(),
            catalogs: Vec::new(),
            tags: Vec::new(),
            config: serde_json::json!({}),
            enabled: true,
        };
        insert(&txn, &portal, hub.clock.now()).await?;
        txn.commit().await?;
    }
    Ok(())
}

pub async fn list_targets(hub: &Hub, caller: &Caller) -> Result<Vec<TargetView>> {
    target::Entity::find()
        .filter(target::Column::AreaCode.starts_with(caller.area.as_str()))
        .order_by_asc(target::Column::Channel)
        .order_by_asc(target::Column::AreaCode)
        .order_by_asc(target::Column::Name)
        .all(&hub.db)
        .await?
        .into_iter()
        .map(TargetView::try_from)
        .collect()
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
        target::Entity::find()
            .filter(self.condition())
            .order_by_asc(target::Column::Id)
            .all(db)
            .await?
            .into_iter()
            .map(TargetView::try_from)
            .collect()
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
        let rows: Vec<(String, i64)> = target::Entity::find()
            .select_only()
            .column(target::Column::Channel)
            .column_as(target::Column::Id.count(), "n")
            .filter(self.condition())
            .group_by(target::Column::Channel)
            .into_tuple()
            .all(db)
            .await?;
        rows.into_iter()
            .map(|(channel, n)| Ok((parse_channel(&channel)?, n)))
            .collect()
    }
}
