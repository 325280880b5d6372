//! Coverage by area: of the villages an item's loudspeakers and notice boards stand in, which
//! were reached, which partly, which stayed silent, and which devices are silent. Read from
//! the item's latest publication, with aggregate queries: an item heard in 10,000 places
//! reads a row per (village, state), and the silent devices only.

use std::collections::BTreeMap;

use herald_channels::ChannelKind;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};
use serde::Serialize;

use super::{DeliveryKind, DeliveryState};
use crate::{
    domain::area::AreaCode,
    error::Result,
    hub::Hub,
    store::{
        Binds,
        entities::{delivery, target},
    },
};

/// Silent devices listed per area, at most; the count says how many there are.
const SILENT_LISTED: usize = 100;

/// How far an item reached an area's devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reach {
    /// Every device played or showed it (or has started to).
    Reached,
    /// Some did.
    Partly,
    /// None did (yet).
    Silent,
}

/// A device the item has not reached, and where its delivery stands.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SilentDevice {
    pub target_id: String,
    pub name: String,
    pub channel: ChannelKind,
    pub state: DeliveryState,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AreaCoverage {
    pub area_code: String,
    pub area_name: String,
    pub reach: Reach,
    /// Devices the item went to in the area.
    pub devices: i64,
    /// Of them, how many played or showed it (or started to).
    pub reached: i64,
    /// The devices not reached, up to 100.
    pub silent: Vec<SilentDevice>,
}

/// Where a delivery counts as having reached its device.
const REACHED: [DeliveryState; 3] = [
    DeliveryState::Delivered,
    DeliveryState::Displayed,
    DeliveryState::Played,
];

const DEVICE_CHANNELS: [ChannelKind; 2] = [ChannelKind::Loudspeaker, ChannelKind::NoticeBoard];

/// Coverage of the item's latest publication to devices, by area; empty if it went to none.
pub async fn coverage(hub: &Hub, item_id: &str) -> Result<Vec<AreaCoverage>> {
    let of_item = || {
        delivery::Entity::find()
            .filter(delivery::Column::ItemId.eq(item_id))
            .filter(delivery::Column::Kind.eq(DeliveryKind::Publish))
            .filter(delivery::Column::Channel.is_in(DEVICE_CHANNELS))
    };
    let latest: Option<Option<i32>> = of_item()
        .select_only()
        .column_as(delivery::Column::Version.max(), "latest")
        .into_tuple()
        .one(&hub.db)
        .await?;
    let Some(Some(version)) = latest else {
        return Ok(Vec::new());
    };
    let counts: Vec<(String, DeliveryState, i64)> = of_item()
        .filter(delivery::Column::Version.eq(version))
        .select_only()
        .column(delivery::Column::AreaCode)
        .column(delivery::Column::State)
        .column_as(delivery::Column::Id.count(), "n")
        .group_by(delivery::Column::AreaCode)
        .group_by(delivery::Column::State)
        .into_tuple()
        .all(&hub.db)
        .await?;
    let mut areas: BTreeMap<String, AreaCoverage> = BTreeMap::new();
    for (area_code, state, n) in counts {
        if !areas.contains_key(&area_code) {
            // A retired area keeps its code; its name is gone from the reference data.
            let code = AreaCode::parse(&area_code).map_err(anyhow::Error::new)?;
            let area_name = hub.areas.get(&code).map(|a| a.name.clone()).unwrap_or_default();
            areas.insert(
                area_code.clone(),
                AreaCoverage {
                    area_name,
                    area_code: area_code.clone(),
                    reach: Reach::Silent,
                    devices: 0,
                    reached: 0,
                    silent: Vec::new(),
                },
            );
        }
        let Some(area) = areas.get_mut(&area_code) else {
            continue;
        };
        area.devices += n;
        if REACHED.contains(&state) {
            area.reached += n;
        }
    }
    // The first `SILENT_LISTED` of each area, numbered by the database: an item silent in
    // 10,000 places reads a hundred rows an area, not every silent delivery.
    let mut binds = Binds::new(hub.db.get_database_backend());
    let sql = format!(
        "SELECT area_code, target_id, channel, state FROM ( \
           SELECT area_code, target_id, channel, state, \
             ROW_NUMBER() OVER (PARTITION BY area_code ORDER BY target_id) AS place \
           FROM deliveries \
           WHERE item_id = {} AND kind = {} AND channel IN ({}, {}) AND version = {} \
             AND state NOT IN ({}, {}, {}) \
         ) silent WHERE place <= {} ORDER BY area_code, target_id",
        binds.add(item_id),
        binds.add(DeliveryKind::Publish.as_str()),
        binds.add(DEVICE_CHANNELS[0].as_str()),
        binds.add(DEVICE_CHANNELS[1].as_str()),
        binds.add(version),
        binds.add(REACHED[0].as_str()),
        binds.add(REACHED[1].as_str()),
        binds.add(REACHED[2].as_str()),
        binds.add(i64::try_from(SILENT_LISTED).unwrap_or(i64::MAX)),
    );
    let mut listed: Vec<(String, String, ChannelKind, DeliveryState)> = Vec::new();
    for row in hub.db.query_all_raw(binds.statement(sql)).await? {
        listed.push((
            row.try_get("", "area_code")?,
            row.try_get("", "target_id")?,
            row.try_get("", "channel")?,
            row.try_get("", "state")?,
        ));
    }
    let names: BTreeMap<String, String> = target::Entity::find()
        .filter(crate::store::among(
            hub.db.get_database_backend(),
            target::Column::Id,
            listed.iter().map(|(_, id, _, _)| id.as_str()),
        ))
        .all(&hub.db)
        .await?
        .into_iter()
        .map(|t| (t.id.to_string(), t.name))
        .collect();
    for (area_code, target_id, channel, state) in listed {
        if let Some(area) = areas.get_mut(&area_code) {
            area.silent.push(SilentDevice {
                name: names.get(&target_id).cloned().unwrap_or_default(),
                target_id,
                channel,
                state,
            });
        }
    }
    Ok(areas
        .into_values()
        .map(|mut area| {
            area.reach = match area.reached {
                0 => Reach::Silent,
                n if n == area.devices => Reach::Reached,
                _ => Reach::Partly,
            };
            area
        })
        .collect())
}
