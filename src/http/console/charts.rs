//! An item's deliveries where people would rather look than read: the status matrix (each
//! channel's targets, coloured by state) and two charts, delivery progress over time and
//! coverage by village, rendered server-side as SVG by charts-rs.
//!
//! A chart is its own `image/svg+xml` answer shown through `<img>`: an image never runs script,
//! whatever a label holds. Every chart is read through `delivery::item_deliveries` with the
//! caller, so it shows what the item page shows and nothing outside the caller's area.

use charts_rs::{HorizontalBarChart, LineChart, Series};

use super::*;
use crate::delivery::{DeliveryView, ItemDeliveries, SummaryRow};
use herald_channels::ChannelKind;

/// Cells shown per channel; the rest are counted in the channel's totals.
pub(super) const MATRIX_CELLS: usize = 500;

/// The CJK fonts a browser has (Debian's Noto, Windows' YaHei): charts-rs measures with its
/// own Roboto, the browser draws with these.
const CHART_FONTS: &str = "Noto Sans CJK SC, Microsoft YaHei, sans-serif";

/// The points of the progress chart.
const PROGRESS_POINTS: usize = 12;

/// One channel's row of the status matrix.
pub(super) struct ChannelCells {
    pub label: &'static str,
    /// How many deliveries are in each state, e.g. `已送达 3 · 失败 1`.
    pub counts: String,
    pub cells: Vec<Cell>,
}

/// One delivery of the matrix: a target, coloured by state, its error on hover and for
/// screen readers.
pub(super) struct Cell {
    pub target: String,
    pub state: &'static str,
    pub state_class: &'static str,
    pub withdrawal: bool,
    pub error: String,
}

/// The status matrix of an item's deliveries, channel by channel in the order they count.
pub(super) fn matrix(report: &ItemDeliveries) -> Vec<ChannelCells> {
    let mut channels: Vec<ChannelKind> = report.summary.iter().map(|row| row.channel).collect();
    channels.dedup();
    channels
        .into_iter()
        .map(|channel| ChannelCells {
            label: channel.label_zh(),
            counts: counts(&report.summary, channel),
            cells: report
                .deliveries
                .iter()
                .filter(|d| d.channel == channel)
                .take(MATRIX_CELLS)
                .map(|d| Cell {
                    target: d.target_name.clone(),
                    state: d.state.label_zh(),
                    state_class: d.state.as_str(),
                    withdrawal: d.kind == DeliveryKind::Withdraw,
                    error: d.last_error.clone().unwrap_or_default(),
                })
                .collect(),
        })
        .collect()
}

fn counts(summary: &[SummaryRow], channel: ChannelKind) -> String {
    let mut by_state: Vec<(DeliveryState, i64)> = Vec::new();
    for row in summary.iter().filter(|row| row.channel == channel) {
        match by_state.iter_mut().find(|(state, _)| *state == row.state) {
            Some((_, n)) => *n += row.count,
            None => by_state.push((row.state, row.count)),
        }
    }
    by_state
        .iter()
        .map(|(state, n)| format!("{} {n}", state.label_zh()))
        .collect::<Vec<_>>()
        .join(" · ")
}

/// Where a delivery has got to its target (sent and taken, shown or played).
fn arrived(delivery: &DeliveryView) -> bool {
    matches!(
        delivery.state,
        DeliveryState::Delivered | DeliveryState::Displayed | DeliveryState::Played
    )
}

pub(super) async fn progress_chart(staff: Staff, id: web::Path<String>) -> Page {
    chart(&staff, &id, progress).await
}

pub(super) async fn coverage_chart(staff: Staff, id: web::Path<String>) -> Page {
    chart(&staff, &id, coverage).await
}

async fn chart(
    Staff { hub, caller }: &Staff,
    id: &str,
    draw: impl FnOnce(&ItemDeliveries) -> charts_rs::Result<String>,
) -> Page {
    let filter = delivery::DeliveryFilter {
        kind: Some(DeliveryKind::Publish),
        limit: Some(500),
        ..delivery::DeliveryFilter::default()
    };
    let report = match delivery::item_deliveries(hub, caller, id, filter).await {
        Ok(report) => report,
        Err(Error::NotFound(_) | Error::Forbidden(_)) => {
            return Ok(HttpResponse::NotFound().finish());
        }
        Err(e) => return Err(e.into()),
    };
    let svg = draw(&report).map_err(|e| Error::from(anyhow::anyhow!("chart: {e}")))?;
    Ok(HttpResponse::Ok()
        .content_type("image/svg+xml")
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .body(svg))
}

/// Deliveries arrived by each moment from the first send to the latest change, as a share of
/// all the item's deliveries.
fn progress(report: &ItemDeliveries) -> charts_rs::Result<String> {
    let deliveries = &report.deliveries;
    let first = deliveries.iter().map(|d| d.updated_at).min();
    let last = deliveries.iter().map(|d| d.updated_at).max();
    let (moments, arrived_by): (Vec<String>, Vec<f32>) = match (first, last) {
        (Some(first), Some(last)) => {
            let span_ms = (last - first).num_milliseconds().max(1);
            (0..PROGRESS_POINTS as i64)
                .map(|point| {
                    let at = first
                        + chrono::Duration::milliseconds(span_ms * point / (PROGRESS_POINTS as i64 - 1));
                    let n = deliveries
                        .iter()
                        .filter(|d| arrived(d) && d.updated_at <= at)
                        .count();
                    (clock_time(at), n as f32)
                })
                .unzip()
        }
        _ => (Vec::new(), Vec::new()),
    };
    let mut chart = LineChart::new(vec![Series::new("已送达".to_owned(), arrived_by)], moments);
    chart.base.title.text = format!("送达进度（共 {} 个发布对象）", deliveries.len());
    // Counts: whole-number ticks from 0 to at least every delivery.
    let ticks = deliveries.len().clamp(1, 5);
    let top = deliveries.len().div_ceil(ticks).max(1) * ticks;
    if let Some(axis) = chart.y_axis_configs.first_mut() {
        axis.min = Some(0.0);
        axis.max = Some(top as f32);
        axis.split_number = ticks;
    }
    chart.base.font_family = CHART_FONTS.to_owned();
    chart.base.width = 640.0;
    chart.base.height = 320.0;
    chart.svg()
}

/// Devices reached and not reached in each village the item's devices stand in.
fn coverage(report: &ItemDeliveries) -> charts_rs::Result<String> {
    let villages: Vec<String> = report
        .coverage
        .iter()
        .map(|area| area.area_name.clone())
        .collect();
    let reached: Vec<f32> = report.coverage.iter().map(|area| area.reached as f32).collect();
    let silent: Vec<f32> = report
        .coverage
        .iter()
        .map(|area| (area.devices - area.reached) as f32)
        .collect();
    let height = 120.0 + 36.0 * villages.len() as f32;
    let mut chart = HorizontalBarChart::new(
        vec![
            Series::new("已播放或显示".to_owned(), reached),
            Series::new("未收到".to_owned(), silent),
        ],
        villages,
    );
    chart.base.title.text = "村级覆盖（设备数）".to_owned();
    chart.base.font_family = CHART_FONTS.to_owned();
    chart.base.width = 640.0;
    chart.base.height = height;
    chart.svg()
}

fn clock_time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.with_timezone(&china_offset()).format("%H:%M:%S").to_string()
}
