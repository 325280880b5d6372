//! 政府信息公开年报: for one calendar year (China time) and the caller's area, the counts the
//! national annual-report template asks of a government's proactive disclosure, from what
//! Herald holds — items by catalog entry (published, corrected, withdrawn, expired), the
//! 行政规范性文件 issued, repealed and in force, and what each channel carried.
//!
//! Every figure is counted from the record (publications, item versions as published,
//! deliveries), never from what an item says of itself today: a document corrected in March
//! counts under the catalog entry it was published under in March.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect, sea_query::Expr};
use serde::Serialize;

use herald_channels::ChannelKind;

use crate::{
    accounts::Caller,
    clock::china_offset,
    delivery::{DeliveryKind, DeliveryState},
    domain::item::{ItemContent, ItemState, Validity},
    error::{Error, Result},
    hub::Hub,
    items::content_of,
    store::{
        ID_CHUNK,
        entities::{delivery, item, item_version, publication},
    },
};

/// The catalog entry of 行政法规、规章和规范性文件 (条例第二十条第（一）项), whose documents
/// the template counts as issued, repealed and in force.
pub const NORMATIVE_CATALOG: &str = "art20-01";

/// The first year Herald can report on: none of its records are older.
const FIRST_YEAR: i32 = 2000;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AnnualReport {
    pub year: i32,
    pub area_code: String,
    pub area_name: String,
    pub totals: Totals,
    /// Every catalog entry, in the catalog's order, with its counts (zero rows included: the
    /// template lists every category).
    pub by_catalog: Vec<CatalogCounts>,
    pub normative: NormativeCounts,
    pub by_channel: Vec<ChannelCounts>,
}

#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Totals {
    /// Items first published in the year.
    pub published: i64,
    /// Of them, policy interpretations (解读).
    pub interpretations: i64,
    /// Of them, emergency information.
    pub emergency: i64,
    /// Corrections (更正) published in the year.
    pub corrected: i64,
    /// Items withdrawn in the year.
    pub withdrawn: i64,
    /// Items that expired in the year.
    pub expired: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CatalogCounts {
    pub code: String,
    pub name: String,
    pub published: i64,
    pub corrected: i64,
    pub withdrawn: i64,
    pub expired: i64,
}

/// 行政规范性文件 as the template counts them.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct NormativeCounts {
    /// 本年制发: first published in the year.
    pub issued: i64,
    /// 本年废止: corrected in the year to 已废止 or 已失效, or withdrawn in the year.
    pub repealed: i64,
    /// 现行有效: published by the year's end, not withdrawn or expired by then, and marked
    /// 现行有效 (or unmarked) in the version live at the year's end.
    pub in_force: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChannelCounts {
    pub channel: ChannelKind,
    /// Items that reached at least one of the channel's targets in the year.
    pub items: i64,
    /// Deliveries that reached their target in the year.
    pub delivered: i64,
    /// Deliveries that failed in the year (their last change was in it).
    pub failed: i64,
}

/// The year's bounds, China time: `[start, end)`.
fn year_bounds(year: i32) -> Result<(DateTime<Utc>, DateTime<Utc>)> {
    let midnight = |year: i32| {
        NaiveDate::from_ymd_opt(year, 1, 1)
            .and_then(|day| day.and_hms_opt(0, 0, 0))
            .and_then(|midnight| midnight.and_local_timezone(china_offset()).single())
            .map(|at| at.with_timezone(&Utc))
            .ok_or_else(|| Error::validation("year", "not a calendar year"))
    };
    Ok((midnight(year)?, midnight(year + 1)?))
}

/// One publication of an item: when, and the content it published.
struct Published {
    at: DateTime<Utc>,
    correction: bool,
    content: ItemContent,
}

pub async fn annual_report(hub: &Hub, caller: &Caller, year: i32) -> Result<AnnualReport> {
    let this_year = crate::clock::china_date(hub.clock.now()).year();
    if !(FIRST_YEAR..=this_year).contains(&year) {
        return Err(Error::validation(
            "year",
            format!("must be a year from {FIRST_YEAR} to {this_year}"),
        ));
    }
    let (start, end) = year_bounds(year)?;
    let scope = caller.area.as_str();

    // The items of the area published before the year ended, and their publications.
    let items: BTreeMap<String, item::Model> = item::Entity::find()
        .filter(item::Column::AreaCode.starts_with(scope))
        .filter(item::Column::PublishedAt.lt(end))
        .all(&hub.db)
        .await?
        .into_iter()
        .map(|row| (row.id.clone(), row))
        .collect();
    let ids: Vec<&str> = items.keys().map(String::as_str).collect();
    let mut publications: BTreeMap<String, Vec<Published>> = BTreeMap::new();
    for chunk in ids.chunks(ID_CHUNK) {
        let rows = publication::Entity::find()
            .filter(publication::Column::ItemId.is_in(chunk.iter().copied()))
            .filter(publication::Column::PublishedAt.lt(end))
            .all(&hub.db)
            .await?;
        // Only the version numbers some publication names: drafts between them are not read.
        let published: std::collections::BTreeSet<i32> = rows.iter().map(|row| row.version).collect();
        let versions = item_version::Entity::find()
            .filter(item_version::Column::ItemId.is_in(chunk.iter().copied()))
            .filter(item_version::Column::Version.is_in(published))
            .all(&hub.db)
            .await?;
        let versions: BTreeMap<(String, i32), &item_version::Model> = versions
            .iter()
            .map(|v| ((v.item_id.clone(), v.version), v))
            .collect();
        for row in rows {
            let item_id = row.item_id.to_string();
            let version = versions
                .get(&(item_id.clone(), row.version))
                .ok_or_else(|| anyhow::anyhow!("publication {} names a missing version", row.id))?;
            publications.entry(item_id).or_default().push(Published {
                at: row.published_at,
                correction: row.corrects_version.is_some(),
                content: content_of(version)?,
            });
        }
    }

    let in_year = |at: DateTime<Utc>| start <= at && at < end;
    let mut totals = Totals::default();
    let mut by_catalog: BTreeMap<String, CatalogCounts> = hub
        .catalog
        .iter()
        .map(|entry| {
            (
                entry.code.clone(),
                CatalogCounts {
                    code: entry.code.clone(),
                    name: entry.name.clone(),
                    published: 0,
                    corrected: 0,
                    withdrawn: 0,
                    expired: 0,
                },
            )
        })
        .collect();
    let mut normative = NormativeCounts::default();
    for (item_id, mut published) in publications {
        let Some(row) = items.get(&item_id) else {
            continue;
        };
        published.sort_by_key(|p| p.at);
        let mut previous_validity: Option<Validity> = None;
        for publication in &published {
            let catalog = &publication.content.catalog;
            let normative_document = catalog == NORMATIVE_CATALOG;
            if in_year(publication.at) {
                let counts = by_catalog.get_mut(catalog);
                if publication.correction {
                    totals.corrected += 1;
                    if let Some(counts) = counts {
                        counts.corrected += 1;
                    }
                    let repealed = matches!(
                        publication.content.validity,
                        Some(Validity::Repealed | Validity::Lapsed)
                    );
                    let was_repealed =
                        matches!(previous_validity, Some(Validity::Repealed | Validity::Lapsed));
                    if normative_document && repealed && !was_repealed {
                        normative.repealed += 1;
                    }
                } else {
                    totals.published += 1;
                    totals.interpretations += i64::from(publication.content.interprets.is_some());
                    totals.emergency += i64::from(publication.content.emergency);
                    if let Some(counts) = counts {
                        counts.published += 1;
                    }
                    if normative_document {
                        normative.issued += 1;
                    }
                }
            }
            previous_validity = publication.content.validity;
        }
        let Some(live) = published.last() else {
            continue;
        };
        let catalog = &live.content.catalog;
        let withdrawn_at = row.withdrawn_at.filter(|_| row.state == ItemState::Withdrawn);
        let expired_at = row.expires_at.filter(|_| row.state == ItemState::Expired);
        if let Some(at) = withdrawn_at.filter(|at| in_year(*at)) {
            totals.withdrawn += 1;
            if let Some(counts) = by_catalog.get_mut(catalog) {
                counts.withdrawn += 1;
            }
            let already_repealed =
                matches!(live.content.validity, Some(Validity::Repealed | Validity::Lapsed));
            if catalog == NORMATIVE_CATALOG && !already_repealed && at < end {
                normative.repealed += 1;
            }
        }
        if expired_at.is_some_and(in_year) {
            totals.expired += 1;
            if let Some(counts) = by_catalog.get_mut(catalog) {
                counts.expired += 1;
            }
        }
        let down_by_year_end =
            withdrawn_at.is_some_and(|at| at < end) || expired_at.is_some_and(|at| at < end);
        let in_force = matches!(live.content.validity, None | Some(Validity::Current));
        if catalog == NORMATIVE_CATALOG && in_force && !down_by_year_end {
            normative.in_force += 1;
        }
    }

    Ok(AnnualReport {
        year,
        area_code: caller.area.as_str().to_owned(),
        area_name: hub
            .areas
            .get(&caller.area)
            .map(|area| area.name.clone())
            .unwrap_or_else(|| caller.area.as_str().to_owned()),
        totals,
        by_catalog: hub
            .catalog
            .iter()
            .filter_map(|entry| by_catalog.remove(&entry.code))
            .collect(),
        normative,
        by_channel: by_channel(hub, scope, start, end).await?,
    })
}

/// What each channel carried in the year: deliveries of items (not takedowns) that reached
/// their target, or failed, with their last change in the year.
async fn by_channel(
    hub: &Hub,
    scope: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<ChannelCounts>> {
    // A delivery later taken down (withdrawn) had reached its target all the same.
    let arrived = [
        DeliveryState::Delivered,
        DeliveryState::Displayed,
        DeliveryState::Played,
        DeliveryState::Withdrawn,
    ];
    let counted = |states: Vec<DeliveryState>| {
        delivery::Entity::find()
            .filter(delivery::Column::AreaCode.starts_with(scope))
            .filter(delivery::Column::Kind.eq(DeliveryKind::Publish))
            .filter(delivery::Column::State.is_in(states))
            .filter(delivery::Column::UpdatedAt.gte(start))
            .filter(delivery::Column::UpdatedAt.lt(end))
            .select_only()
            .column(delivery::Column::Channel)
            .column_as(delivery::Column::Id.count(), "n")
            .column_as(Expr::cust("COUNT(DISTINCT item_id)"), "items")
            .group_by(delivery::Column::Channel)
    };
    let delivered: Vec<(ChannelKind, i64, i64)> = counted(arrived.to_vec()).into_tuple().all(&hub.db).await?;
    let failed: Vec<(ChannelKind, i64, i64)> = counted(vec![DeliveryState::Failed])
        .into_tuple()
        .all(&hub.db)
        .await?;
    Ok(hub
        .channels
        .kinds()
        .map(|channel| {
            let (delivered, items) = delivered
                .iter()
                .find(|(kind, _, _)| *kind == channel)
                .map_or((0, 0), |(_, n, items)| (*n, *items));
            let failed = failed
                .iter()
                .find(|(kind, _, _)| *kind == channel)
                .map_or(0, |(_, n, _)| *n);
            ChannelCounts {
                channel,
                items,
                delivered,
                failed,
            }
        })
        .collect())
}

/// The report as CSV for Excel: UTF-8 with a byte-order mark (without it Excel reads Chinese
/// as mojibake), one table after another, each headed by its title.
pub fn to_csv(report: &AnnualReport) -> Result<String> {
    let mut out = csv::WriterBuilder::new().flexible(true).from_writer(Vec::new());
    let mut row = |cells: &[String]| out.write_record(cells).map_err(anyhow::Error::new);
    let text = |s: &str| s.to_owned();
    row(&[format!(
        "{}政府信息公开工作年度报告统计（{}年）",
        report.area_name, report.year
    )])?;
    row(&[])?;
    row(&[text("一、主动公开政府信息情况")])?;
    row(&[
        text("项目"),
        text("本年新发布"),
        text("本年更正"),
        text("本年撤回"),
        text("本年失效"),
    ])?;
    for entry in &report.by_catalog {
        row(&[
            entry.name.clone(),
            entry.published.to_string(),
            entry.corrected.to_string(),
            entry.withdrawn.to_string(),
            entry.expired.to_string(),
        ])?;
    }
    let totals = &report.totals;
    row(&[
        text("合计"),
        totals.published.to_string(),
        totals.corrected.to_string(),
        totals.withdrawn.to_string(),
        totals.expired.to_string(),
    ])?;
    row(&[])?;
    row(&[text("二、行政规范性文件")])?;
    row(&[text("本年制发件数"), text("本年废止件数"), text("现行有效件数")])?;
    let normative = &report.normative;
    row(&[
        normative.issued.to_string(),
        normative.repealed.to_string(),
        normative.in_force.to_string(),
    ])?;
    row(&[])?;
    row(&[text("三、发布渠道")])?;
    row(&[
        text("渠道"),
        text("送达信息条数"),
        text("送达次数"),
        text("发送失败次数"),
    ])?;
    for channel in &report.by_channel {
        row(&[
            channel.channel.label_zh().to_owned(),
            channel.items.to_string(),
            channel.delivered.to_string(),
            channel.failed.to_string(),
        ])?;
    }
    row(&[])?;
    row(&[
        text("其中：政策解读"),
        totals.interpretations.to_string(),
        text("紧急信息"),
        totals.emergency.to_string(),
    ])?;
    let bytes = out.into_inner().map_err(|e| anyhow::anyhow!("csv: {e}"))?;
    let body = String::from_utf8(bytes).map_err(anyhow::Error::new)?;
    Ok(format!("\u{feff}{body}"))
}
