//! Read models over deliveries: the per-item summary, the listings and the CSV record.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use herald_channels::ChannelKind;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};

use super::state::{DeliveryKind, DeliveryState};
use crate::{
    accounts::Caller,
    domain::{ids::TargetId, page::Page},
    error::Result,
    hub::Hub,
    store::{
        ID_CHUNK,
        entities::{delivery, delivery_count, item, receipt, receipt_inbox, target},
    },
};

#[derive(Debug, Serialize, PartialEq, Eq, PartialOrd, Ord, utoipa::ToSchema)]
pub struct SummaryRow {
    pub channel: ChannelKind,
    pub kind: DeliveryKind,
    pub state: DeliveryState,
    pub count: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    pub id: String,
    pub item_id: String,
    pub version: i32,
    pub target_id: String,
    pub target_name: String,
    pub channel: ChannelKind,
    pub area_code: String,
    pub kind: DeliveryKind,
    pub state: DeliveryState,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub external_id: Option<String>,
    pub last_error: Option<String>,
    pub updated_at: DateTime<Utc>,
    /// A correction's (更正) delivery: the delivery of the earlier version it updates.
    pub supersedes_id: Option<String>,
    /// A withdrawal: the delivery it takes down.
    pub withdraws_id: Option<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveryFilter {
    pub state: Option<DeliveryState>,
    pub channel: Option<ChannelKind>,
    pub kind: Option<DeliveryKind>,
    pub area: Option<String>,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ItemDeliveries {
    pub item_id: String,
    /// Counts by channel × kind × state.
    pub summary: Vec<SummaryRow>,
    /// Of the villages its loudspeakers and notice boards stand in: reached, partly, silent.
    pub coverage: Vec<super::coverage::AreaCoverage>,
    pub deliveries: Vec<DeliveryView>,
}

const MAX_PAGE: u64 = 500;

fn page_of(filter: &DeliveryFilter) -> Result<Page> {
    Page::parse(filter.limit, filter.offset, 100, MAX_PAGE)
}

pub async fn summary(db: &impl ConnectionTrait, item_id: &str) -> Result<Vec<SummaryRow>> {
    let rows = delivery_count::Entity::find()
        .filter(delivery_count::Column::ItemId.eq(item_id))
        .filter(delivery_count::Column::N.gt(0))
        .order_by_asc(delivery_count::Column::Channel)
        .order_by_asc(delivery_count::Column::Kind)
        .order_by_asc(delivery_count::Column::State)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| SummaryRow {
            channel: r.channel,
            kind: r.kind,
            state: r.state,
            count: r.n,
        })
        .collect())
}

pub(super) async fn with_target_names(hub: &Hub, rows: Vec<delivery::Model>) -> Result<Vec<DeliveryView>> {
    let ids: Vec<TargetId> = rows.iter().map(|d| d.target_id.clone()).collect();
    let names: BTreeMap<TargetId, String> = target::Entity::find()
        .filter(target::Column::Id.is_in(ids))
        .all(&hub.db)
        .await?
        .into_iter()
        .map(|t| (t.id, t.name))
        .collect();
    Ok(rows
        .into_iter()
        .map(|d| DeliveryView {
            target_name: names.get(&d.target_id).cloned().unwrap_or_default(),
            id: d.id.into(),
            item_id: d.item_id.into(),
            version: d.version,
            target_id: d.target_id.into(),
            channel: d.channel,
            area_code: d.area_code,
            kind: d.kind,
            state: d.state,
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at,
            external_id: d.external_id,
            last_error: d.last_error,
            updated_at: d.updated_at,
            supersedes_id: d.supersedes_id.map(Into::into),
            withdraws_id: d.withdraws_id.map(Into::into),
        })
        .collect())
}

fn filtered(
    mut query: sea_orm::Select<delivery::Entity>,
    filter: &DeliveryFilter,
) -> sea_orm::Select<delivery::Entity> {
    if let Some(state) = filter.state {
        query = query.filter(delivery::Column::State.eq(state.as_str()));
    }
    if let Some(channel) = filter.channel {
        query = query.filter(delivery::Column::Channel.eq(channel.as_str()));
    }
    if let Some(kind) = filter.kind {
        query = query.filter(delivery::Column::Kind.eq(kind.as_str()));
    }
    query
}

pub async fn item_deliveries(
    hub: &Hub,
    caller: &Caller,
    item_id: &str,
    filter: DeliveryFilter,
) -> Result<ItemDeliveries> {
    crate::items::load_visible(&hub.db, caller, item_id, false).await?;
    let page = page_of(&filter)?;
    let rows = filtered(
        delivery::Entity::find().filter(delivery::Column::ItemId.eq(item_id)),
        &filter,
    )
    .order_by_asc(delivery::Column::Id)
    .offset(page.offset)
    .limit(page.limit)
    .all(&hub.db)
    .await?;
    Ok(ItemDeliveries {
        item_id: item_id.to_owned(),
        summary: summary(&hub.db, item_id).await?,
        coverage: super::coverage::coverage(hub, item_id).await?,
        deliveries: with_target_names(hub, rows).await?,
    })
}

pub async fn list_deliveries(
    hub: &Hub,
    caller: &Caller,
    filter: DeliveryFilter,
) -> Result<Vec<DeliveryView>> {
    let scope = caller.scope(filter.area.as_deref())?;
    let page = page_of(&filter)?;
    let rows = filtered(
        delivery::Entity::find().filter(delivery::Column::AreaCode.starts_with(scope.as_str())),
        &filter,
    )
    .order_by_desc(delivery::Column::UpdatedAt)
    .offset(page.offset)
    .limit(page.limit)
    .all(&hub.db)
    .await?;
    with_target_names(hub, rows).await
}

/// A cell a spreadsheet would not run as a formula: text starting with `=`, `+`, `-`, `@` (or a
/// tab or carriage return, which some programs strip first) gets a leading apostrophe.
fn spreadsheet_safe(value: String) -> String {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value
    }
}

/// Longest channel payload the record repeats in full (the rest stay in the inbox row).
const MAX_PAYLOAD_SHOWN: usize = 1024;

/// One line of a delivery's record: a receipt the worker wrote, or one the channel pushed.
struct RecordLine {
    source: String,
    kind: String,
    source_time: Option<DateTime<Utc>>,
    received_at: DateTime<Utc>,
    /// What tells the receipt apart: the record and attempt that wrote it (`<record>:<attempt>`),
    /// or the channel's own dedup id.
    digest: String,
    detail: String,
}

impl From<receipt::Model> for RecordLine {
    fn from(r: receipt::Model) -> Self {
        Self {
            source: r.source,
            kind: r.kind,
            source_time: r.source_time,
            received_at: r.received_at,
            digest: r.digest,
            detail: r.detail,
        }
    }
}

impl From<receipt_inbox::Model> for RecordLine {
    fn from(r: receipt_inbox::Model) -> Self {
        // The status as reported (JSON, as `intake` wrote it), what applying it did, where
        // the payload is kept, and the payload itself when it is short (a media center's
        // `published` names the article's URL): the record says where the item went.
        let payload = if r.raw.len() <= MAX_PAYLOAD_SHOWN {
            r.raw.as_str()
        } else {
            "null"
        };
        let detail = format!(
            r#"{{"status":{},"outcome":{},"moved_to":{},"inbox":{},"payload":{payload}}}"#,
            r.detail,
            serde_json::json!(r.outcome),
            serde_json::json!(r.moved_to),
            r.id
        );
        Self {
            source: r.channel.as_str().to_owned(),
            kind: r.status,
            source_time: r.source_time,
            received_at: r.received_at,
            digest: r.dedup,
            detail,
        }
    }
}

/// Every delivery of an item with each of its receipts: the record an auditor asks for.
pub async fn receipts_csv(hub: &Hub, caller: &Caller, item_id: &str) -> Result<String> {
    crate::items::load_visible(&hub.db, caller, item_id, false).await?;
    let deliveries = delivery::Entity::find()
        .filter(delivery::Column::ItemId.eq(item_id))
        .order_by_asc(delivery::Column::Id)
        .all(&hub.db)
        .await?;
    let views = with_target_names(hub, deliveries).await?;
    let mut receipts: BTreeMap<String, Vec<RecordLine>> = BTreeMap::new();
    for chunk in views.chunks(ID_CHUNK) {
        let ids: Vec<String> = chunk.iter().map(|d| d.id.clone()).collect();
        for r in receipt::Entity::find()
            .filter(receipt::Column::DeliveryId.is_in(ids.clone()))
            .order_by_asc(receipt::Column::Id)
            .all(&hub.db)
            .await?
        {
            receipts
                .entry(r.delivery_id.to_string())
                .or_default()
                .push(RecordLine::from(r));
        }
        // Receipts the channel pushed later stay in the inbox, marked with their delivery.
        for r in receipt_inbox::Entity::find()
            .filter(receipt_inbox::Column::DeliveryId.is_in(ids))
            .order_by_asc(receipt_inbox::Column::Id)
            .all(&hub.db)
            .await?
        {
            if let Some(delivery_id) = r.delivery_id.clone() {
                receipts
                    .entry(delivery_id.to_string())
                    .or_default()
                    .push(RecordLine::from(r));
            }
        }
    }
    // Each delivery's record in the order it arrived, whichever table holds a line.
    for lines in receipts.values_mut() {
        lines.sort_by_key(|line| line.received_at);
    }
    // The item's title and 发文字号 head every row, so a row pasted elsewhere still says
    // what it is about.
    let item_row = item::Entity::find_by_id(item_id)
        .one(&hub.db)
        .await?
        .ok_or(crate::error::Error::NotFound("item"))?;
    let shown_version = item_row.published_version.unwrap_or(item_row.current_version);
    let doc_no =
        crate::items::content_of(&crate::items::load_version(&hub.db, item_id, shown_version).await?)?
            .doc_no
            .unwrap_or_default();
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record([
        "信息标题",
        "发文字号",
        "投递编号",
        "投递类型",
        "渠道",
        "目标编号",
        "目标名称",
        "投递状态",
        "版本",
        "回执来源",
        "回执类型",
        "渠道时间",
        "接收时间",
        "回执编号",
        "回执详情",
    ])
    .map_err(anyhow::Error::new)?;
    for d in &views {
        let none = Vec::new();
        let rows = receipts.get(&d.id).unwrap_or(&none);
        let receipt_rows: Vec<Option<&RecordLine>> = if rows.is_empty() {
            vec![None]
        } else {
            rows.iter().map(Some).collect()
        };
        for r in receipt_rows {
            let fields = [
                item_row.title.clone(),
                doc_no.clone(),
                d.id.clone(),
                // A correction's delivery is an update of what the target holds (更正).
                match (d.kind, d.supersedes_id.is_some()) {
                    (DeliveryKind::Withdraw, _) => "撤回",
                    (DeliveryKind::Publish, true) => "更正",
                    (DeliveryKind::Publish, false) => "发布",
                }
                .to_owned(),
                d.channel.label_zh().to_owned(),
                d.target_id.clone(),
                d.target_name.clone(),
                d.state.label_zh().to_owned(),
                d.version.to_string(),
                r.map(|r| r.source.to_owned()).unwrap_or_default(),
                r.map(|r| r.kind.clone()).unwrap_or_default(),
                r.and_then(|r| r.source_time)
                    .map(beijing_time)
                    .unwrap_or_default(),
                r.map(|r| beijing_time(r.received_at)).unwrap_or_default(),
                r.map(|r| r.digest.clone()).unwrap_or_default(),
                r.map(|r| readable(&r.detail)).unwrap_or_default(),
            ];
            csv.write_record(fields.map(spreadsheet_safe))
                .map_err(anyhow::Error::new)?;
        }
    }
    let bytes = csv.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    // Excel on Chinese Windows reads a CSV as GBK unless it opens with the UTF-8 BOM.
    let text = String::from_utf8(bytes).map_err(anyhow::Error::new)?;
    Ok(format!("\u{feff}{text}"))
}

/// A time as staff read it: Beijing time, to the second.
fn beijing_time(at: DateTime<Utc>) -> String {
    at.with_timezone(&crate::clock::china_offset())
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// A receipt's detail as a line to read, not JSON: `key: value` pairs (nested keys joined by
/// dots, lists by 、) separated by semicolons, empty values left out. Text that is not JSON is
/// shown as it is.
fn readable(detail: &str) -> String {
    fn pairs(prefix: &str, value: &serde_json::Value, out: &mut Vec<String>) {
        use serde_json::Value;
        match value {
            Value::Null => {}
            Value::Object(fields) => {
                for (key, field) in fields {
                    let name = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    pairs(&name, field, out);
                }
            }
            Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
                let listed: Vec<String> = items.iter().map(scalar).collect();
                out.push(format!("{prefix}: {}", listed.join("、")));
            }
            Value::Array(items) => {
                for (at, item) in items.iter().enumerate() {
                    pairs(&format!("{prefix}[{at}]"), item, out);
                }
            }
            other => out.push(format!("{prefix}: {}", scalar(other))),
        }
    }
    fn scalar(value: &serde_json::Value) -> String {
        match value {
            serde_json::Value::String(text) => text.clone(),
            other => other.to_string(),
        }
    }
    match serde_json::from_str::<serde_json::Value>(detail) {
        Ok(value @ (serde_json::Value::Object(_) | serde_json::Value::Array(_))) => {
            let mut out = Vec::new();
            pairs("", &value, &mut out);
            out.join("; ")
        }
        _ => detail.to_owned(),
    }
}
