//! What administrators and village staff look after besides items: 清理结果 (what came down,
//! and whether every channel took it down), 设备 (the village devices and their health),
//! 发布目标 (where items go), and API 令牌 (for programs that post on a user's behalf).
//!
//! Each page reads through the functions the API uses, scoped to the caller's area: a village
//! operator sees their own village's devices and targets and nothing of another village's.

use herald_channels::ChannelKind;
use herald_firmware_protocol::report::{Condition, Health};

use super::*;
use crate::delivery::{devices, targets};

#[derive(Template)]
#[template(path = "console/cleanup.html")]
struct CleanupPage {
    frame: Frame,
    rows: Vec<CleanupRow>,
}

struct CleanupRow {
    item_id: String,
    title: String,
    date: String,
    reason: String,
    /// Channels that took it down, of those it went to; and those that failed to.
    taken_down: i64,
    takedowns: i64,
    failed: i64,
}

/// 清理结果: the items of the caller's area taken down, and how far each takedown got.
pub(super) async fn cleanup_page(req: HttpRequest, Staff { hub, caller }: Staff) -> Page {
    let mut rows = Vec::new();
    for down in crate::portal::taken_down(&hub, Some(&caller.area)).await? {
        let filter = delivery::DeliveryFilter {
            kind: Some(DeliveryKind::Withdraw),
            ..delivery::DeliveryFilter::default()
        };
        let report = delivery::item_deliveries(&hub, &caller, &down.item_id, filter).await?;
        let withdrawals = report
            .summary
            .iter()
            .filter(|row| row.kind == DeliveryKind::Withdraw);
        let (mut taken_down, mut takedowns, mut failed) = (0, 0, 0);
        for row in withdrawals {
            takedowns += row.count;
            match row.state {
                DeliveryState::Delivered | DeliveryState::Withdrawn => taken_down += row.count,
                DeliveryState::Failed | DeliveryState::Unconfirmed => failed += row.count,
                _ => {}
            }
        }
        rows.push(CleanupRow {
            item_id: down.item_id,
            title: down.title,
            date: down.date,
            reason: down.reason,
            taken_down,
            takedowns,
            failed,
        });
    }
    staff_page(&req, &hub, &caller, StatusCode::OK, |frame| CleanupPage {
        frame,
        rows,
    })
}

#[derive(Template)]
#[template(path = "console/devices.html")]
struct DevicesPage {
    frame: Frame,
    rows: Vec<DeviceRow>,
    online: usize,
    faulty: usize,
}

struct DeviceRow {
    name: String,
    device_id: String,
    kind: &'static str,
    area: String,
    /// 在线 / 离线 / 尚未连接 / 已停用, and its colour class.
    status: &'static str,
    status_class: &'static str,
    last_seen: String,
    firmware: String,
    /// What its last health report says is wrong, in words; empty: nothing.
    faults: Vec<String>,
}

/// 设备: the loudspeakers and notice boards of the caller's area, with what they last said.
pub(super) async fn devices_page(req: HttpRequest, Staff { hub, caller }: Staff) -> Page {
    let rows: Vec<DeviceRow> = devices::list_devices(&hub, Some(&caller.area))
        .await?
        .into_iter()
        .map(|device| {
            let (status, status_class) = match (device.enabled, device.online) {
                (false, _) => ("已停用", "revoked"),
                (true, Some(true)) => ("在线", "online"),
                (true, Some(false)) => ("离线", "offline"),
                (true, None) => ("尚未连接", "never"),
            };
            DeviceRow {
                kind: device.channel.label_zh(),
                area: area_name(&hub, &device.area_code),
                status,
                status_class,
                last_seen: device
                    .last_seen_at
                    .map(shown_time)
                    .unwrap_or_else(|| "—".to_owned()),
                firmware: device.firmware_version.unwrap_or_default(),
                faults: device.health.map(faults).unwrap_or_default(),
                name: device.name,
                device_id: device.device_id,
            }
        })
        .collect();
    staff_page(&req, &hub, &caller, StatusCode::OK, |frame| DevicesPage {
        frame,
        online: rows.iter().filter(|row| row.status_class == "online").count(),
        faulty: rows.iter().filter(|row| !row.faults.is_empty()).count(),
        rows,
    })
}

/// Free storage below this share of the total is reported: recordings stop fitting.
const LOW_STORAGE_PERCENT: u64 = 10;
/// Above this temperature (tenths of a degree) an outdoor cabinet is overheating.
const HOT_DECIDEGREES: i16 = 700;

/// What a device's last health report says is wrong.
fn faults(health: serde_json::Value) -> Vec<String> {
    let health: Health = match serde_json::from_value(health) {
        Ok(health) => health,
        Err(e) => return vec![format!("健康报告无法识别：{e}")],
    };
    let mut faults = Vec::new();
    if health.amplifier == Condition::Fault {
        faults.push("功放故障".to_owned());
    }
    if health.line == Condition::Fault {
        faults.push("喇叭线路故障（断路或短路）".to_owned());
    }
    let total = u64::from(health.storage_total_kib);
    if total > 0 && u64::from(health.storage_free_kib) * 100 < total * LOW_STORAGE_PERCENT {
        faults.push(format!(
            "存储空间不足（剩余 {} MB）",
            health.storage_free_kib / 1024
        ));
    }
    if let Some(temperature) = health.temperature_decidegrees
        && temperature > HOT_DECIDEGREES
    {
        faults.push(format!("温度过高（{:.1} ℃）", f32::from(temperature) / 10.0));
    }
    faults
}

#[derive(Template)]
#[template(path = "console/targets.html")]
struct TargetsPage {
    frame: Frame,
    rows: Vec<TargetRow>,
    /// Administrators register targets; others read the list.
    may_add: bool,
    form: TargetForm,
    channels: Vec<Choice>,
    areas: Vec<Choice>,
    notice: Option<&'static str>,
    problem: Option<String>,
    invalid: String,
}

struct TargetRow {
    channel: &'static str,
    name: String,
    area: String,
    takes: String,
    enabled: bool,
    secrets: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct TargetForm {
    pub(super) csrf: String,
    channel: String,
    name: String,
    area_code: String,
    catalogs: String,
    tags: String,
    /// The channel's settings as JSON (an account's app id, a center's URL).
    config: String,
    /// Secrets, one `name=value` a line; never shown again.
    secrets: String,
}

pub(super) async fn targets_page(
    req: HttpRequest,
    Staff { hub, caller }: Staff,
    query: web::Query<DoneQuery>,
) -> Page {
    let notice = done_notice(query.done.as_deref());
    show_targets(
        &req,
        &hub,
        &caller,
        StatusCode::OK,
        TargetForm::default(),
        notice,
        None,
    )
    .await
}

async fn show_targets(
    req: &HttpRequest,
    hub: &Hub,
    caller: &Caller,
    status: StatusCode,
    form: TargetForm,
    notice: Option<&'static str>,
    problem: Option<(String, String)>,
) -> Page {
    // Devices are targets too, listed under 设备状态 with their health.
    let rows = targets::list_targets(hub, caller)
        .await?
        .into_iter()
        .filter(|target| !target.channel.is_device())
        .map(|target| {
            let mut takes = Vec::new();
            if !target.catalogs.is_empty() {
                takes.push(format!("目录：{}", target.catalogs.join("、")));
            }
            if !target.tags.is_empty() {
                takes.push(format!("标签：{}", target.tags.join("、")));
            }
            TargetRow {
                channel: target.channel.label_zh(),
                area: area_name(hub, &target.area_code),
                takes: if takes.is_empty() {
                    "全部信息".to_owned()
                } else {
                    takes.join("；")
                },
                enabled: target.enabled,
                secrets: target.secret_names.join("、"),
                name: target.name,
            }
        })
        .collect();
    let (problem, invalid) = problem_parts(problem);
    staff_page(req, hub, caller, status, |frame| TargetsPage {
        frame,
        rows,
        may_add: caller.role == Role::Admin,
        channels: choices(
            hub.channels.kinds().filter(|kind| !kind.is_device()),
            &form.channel,
            |kind| (kind.as_str().to_owned(), kind.label_zh().to_owned()),
        ),
        areas: area_choices(hub, caller, &form.area_code),
        form,
        notice,
        problem,
        invalid,
    })
}

pub(super) async fn add_target(
    req: HttpRequest,
    StaffForm { hub, caller, form }: StaffForm<TargetForm>,
) -> Page {
    let added = match new_target(&form) {
        Ok(new) => targets::create_target(&hub, &caller, new).await,
        Err(e) => Err(e),
    };
    match added {
        Ok(_) => Ok(see_other("/console/targets?done=added")),
        Err(e) => {
            // A channel's setting is named as the channel's documentation names it
            // (`config.app_id`): the administrator copies it from there.
            let setting = match &e {
                Error::Validation { field, message } if field.contains('.') => {
                    Some(format!("（{field}：{message}）"))
                }
                _ => None,
            };
            let (status, problem, field) = refusal(e)?;
            let problem = problem + setting.as_deref().unwrap_or_default();
            // The secrets are not shown back: they are typed again.
            let form = TargetForm {
                secrets: String::new(),
                ..form
            };
            show_targets(&req, &hub, &caller, status, form, None, Some((problem, field))).await
        }
    }
}

fn new_target(form: &TargetForm) -> Result<targets::NewTarget, Error> {
    let listed = |raw: &str| -> Vec<String> {
        raw.split(['、', ',', '，', ' ', '\n'])
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let config = match optional(&form.config) {
        Some(raw) => Some(
            serde_json::from_str(&raw).map_err(|e| Error::validation("config", format!("not JSON: {e}")))?,
        ),
        None => None,
    };
    let mut secrets = std::collections::BTreeMap::new();
    for line in form
        .secrets
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
    {
        let Some((name, value)) = line.split_once('=') else {
            return Err(Error::validation("secrets", "one name=value a line"));
        };
        let secret: herald_channels::SecretString =
            serde_json::from_value(serde_json::Value::String(value.trim().to_owned()))
                .map_err(|e| Error::validation("secrets", e.to_string()))?;
        secrets.insert(name.trim().to_owned(), secret);
    }
    Ok(targets::NewTarget {
        channel: by_wire_name::<ChannelKind>("channel", &form.channel)?,
        name: form.name.trim().to_owned(),
        area_code: form.area_code.clone(),
        catalogs: listed(&form.catalogs),
        tags: listed(&form.tags),
        config,
        secrets,
    })
}

#[derive(Template)]
#[template(path = "console/tokens.html")]
struct TokensPage {
    frame: Frame,
    rows: Vec<TokenRow>,
    /// A token just made: its name and its secret, shown this once.
    issued: Option<(String, String)>,
    problem: Option<String>,
}

struct TokenRow {
    id: String,
    name: String,
    created: String,
    revoked: Option<String>,
}

/// API 令牌: the caller's own tokens, for the programs that post as them.
pub(super) async fn tokens_page(req: HttpRequest, Staff { hub, caller }: Staff) -> Page {
    show_tokens(&req, &hub, &caller, StatusCode::OK, None, None).await
}

async fn show_tokens(
    req: &HttpRequest,
    hub: &Hub,
    caller: &Caller,
    status: StatusCode,
    issued: Option<(String, String)>,
    problem: Option<String>,
) -> Page {
    let rows = accounts::list_tokens(hub, &caller.id)
        .await?
        .into_iter()
        .map(|token| TokenRow {
            id: token.id,
            name: token.name,
            created: shown_time(token.created_at),
            revoked: token.revoked_at.map(shown_time),
        })
        .collect();
    staff_page(req, hub, caller, status, |frame| TokensPage {
        frame,
        rows,
        issued,
        problem,
    })
}

#[derive(Deserialize)]
pub(super) struct TokenForm {
    #[serde(default)]
    pub(super) csrf: String,
    #[serde(default)]
    name: String,
}

pub(super) async fn create_token(
    req: HttpRequest,
    StaffForm { hub, caller, form }: StaffForm<TokenForm>,
) -> Page {
    match accounts::create_token(&hub, &caller.id, &caller.id, form.name.trim()).await {
        Ok((token, secret)) => {
            show_tokens(
                &req,
                &hub,
                &caller,
                StatusCode::OK,
                Some((token.name, secret)),
                None,
            )
            .await
        }
        Err(e) => {
            let (status, problem, _) = refusal(e)?;
            show_tokens(&req, &hub, &caller, status, None, Some(problem)).await
        }
    }
}

pub(super) async fn revoke_token(
    req: HttpRequest,
    id: web::Path<String>,
    StaffForm { hub, caller, .. }: StaffForm<CsrfForm>,
) -> Page {
    match accounts::revoke_token(&hub, &caller, &id).await {
        Ok(_) => Ok(see_other("/console/tokens")),
        Err(e) => {
            let (status, problem, _) = refusal(e)?;
            show_tokens(&req, &hub, &caller, status, None, Some(problem)).await
        }
    }
}

#[derive(Template)]
#[template(path = "console/report.html")]
struct ReportPage {
    frame: Frame,
    year: i32,
    years: Vec<i32>,
    report: Option<crate::annual_report::AnnualReport>,
    problem: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct ReportQuery {
    year: Option<String>,
}

/// 年报统计: a year's counts for the 政府信息公开年报, as tables, with the CSV to download.
pub(super) async fn report_page(
    req: HttpRequest,
    Staff { hub, caller }: Staff,
    query: web::Query<ReportQuery>,
) -> Page {
    let this_year = chrono::Datelike::year(&crate::clock::china_date(hub.clock.now()));
    // The report is written early in the next year: last year's is the one asked for.
    let asked = match query.year.as_deref().map(str::trim) {
        None | Some("") => Ok(this_year - 1),
        Some(raw) => raw
            .parse::<i32>()
            .map_err(|_| Error::validation("year", "must be a year, e.g. 2026")),
    };
    let outcome = match asked {
        Ok(year) => crate::annual_report::annual_report(&hub, &caller, year)
            .await
            .map(|report| (year, report)),
        Err(e) => Err(e),
    };
    let (status, year, report, problem) = match outcome {
        Ok((year, report)) => (StatusCode::OK, year, Some(report), None),
        Err(e) => {
            let (status, problem, _) = refusal(e)?;
            (status, this_year - 1, None, Some(problem))
        }
    };
    staff_page(&req, &hub, &caller, status, |frame| ReportPage {
        frame,
        year,
        years: (this_year - 9..=this_year).rev().collect(),
        report,
        problem,
    })
}
