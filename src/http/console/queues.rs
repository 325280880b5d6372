//! 发送异常: the deliveries of the caller's area that need a person — failed, sent but never
//! confirmed, or still waiting — with 重新发送 and 取消发送.

use super::*;
use crate::delivery::DeliveryView;

/// Rows shown per queue, most recently changed first.
const QUEUE_ROWS: u64 = 100;

#[derive(Template)]
#[template(path = "console/queues.html")]
struct QueuesPage {
    frame: Frame,
    queues: Vec<Queue>,
    notice: Option<&'static str>,
    problem: Option<String>,
}

struct Queue {
    heading: &'static str,
    explanation: &'static str,
    rows: Vec<QueueRow>,
}

struct QueueRow {
    id: String,
    item_id: String,
    item_title: String,
    channel: &'static str,
    target: String,
    state: &'static str,
    state_class: &'static str,
    attempts: i32,
    updated: String,
    error: String,
    may_retry: bool,
    /// Unconfirmed: the channel can be asked whether it arrived.
    may_reconcile: bool,
    may_cancel: bool,
}

pub(super) async fn queues_page(
    req: HttpRequest,
    Staff { hub, caller }: Staff,
    query: web::Query<DoneQuery>,
) -> Page {
    let notice = done_notice(query.done.as_deref());
    show_queues(&req, &hub, &caller, StatusCode::OK, notice, None).await
}

async fn show_queues(
    req: &HttpRequest,
    hub: &Hub,
    caller: &Caller,
    status: StatusCode,
    notice: Option<&'static str>,
    problem: Option<String>,
) -> Page {
    let queues = [
        (
            "发送失败",
            "渠道拒收或多次尝试后仍未送达。核对说明中的原因，处理后重新发送。",
            &[DeliveryState::Failed][..],
        ),
        (
            "待核实",
            "已发出，但渠道在规定时间内没有回报结果。可向渠道核实，或重新发送。",
            &[DeliveryState::Unconfirmed][..],
        ),
        (
            "等待发送",
            "尚未发出（排队、定时或等待重试）。不再需要的可以取消。",
            &[DeliveryState::Pending, DeliveryState::Retrying][..],
        ),
    ];
    let mut titles: Vec<(String, String)> = Vec::new();
    let mut shown = Vec::new();
    for (heading, explanation, states) in queues {
        let mut rows = Vec::new();
        for state in states {
            let filter = delivery::DeliveryFilter {
                state: Some(*state),
                limit: Some(QUEUE_ROWS),
                ..delivery::DeliveryFilter::default()
            };
            for found in delivery::list_deliveries(hub, caller, filter).await? {
                rows.push(queue_row(hub, caller, &mut titles, found).await?);
            }
        }
        shown.push(Queue {
            heading,
            explanation,
            rows,
        });
    }
    staff_page(req, hub, caller, status, |frame| QueuesPage {
        frame,
        queues: shown,
        notice,
        problem,
    })
}

/// A delivery as its queue lists it, with its item's title (read once per item).
async fn queue_row(
    hub: &Hub,
    caller: &Caller,
    titles: &mut Vec<(String, String)>,
    found: DeliveryView,
) -> Result<QueueRow, Error> {
    let item_title = match titles.iter().find(|(id, _)| *id == found.item_id) {
        Some((_, title)) => title.clone(),
        None => {
            let title = workflow::get_item(hub, caller, &found.item_id)
                .await?
                .content
                .title;
            titles.push((found.item_id.clone(), title.clone()));
            title
        }
    };
    let operator = matches!(caller.role, Role::Admin | Role::Publisher);
    Ok(QueueRow {
        may_retry: operator && matches!(found.state, DeliveryState::Failed | DeliveryState::Unconfirmed),
        may_reconcile: operator && found.state == DeliveryState::Unconfirmed,
        may_cancel: (operator || caller.role == Role::VillageOperator) && found.state.not_yet_sent(),
        id: found.id,
        item_id: found.item_id,
        item_title,
        channel: found.channel.label_zh(),
        target: found.target_name,
        state: found.state.label_zh(),
        state_class: found.state.as_str(),
        attempts: found.attempts,
        updated: shown_time(found.updated_at),
        error: found.last_error.unwrap_or_default(),
    })
}

#[derive(Deserialize)]
pub(super) struct DeliveryForm {
    #[serde(default)]
    pub(super) csrf: String,
    /// The item whose page the button is on, to go back to; empty: the queues page.
    #[serde(default)]
    item: String,
}

pub(super) async fn retry(req: HttpRequest, posted: StaffForm<DeliveryForm>, id: web::Path<String>) -> Page {
    act(&req, posted, &id, Act::Retry).await
}

pub(super) async fn reconcile(
    req: HttpRequest,
    posted: StaffForm<DeliveryForm>,
    id: web::Path<String>,
) -> Page {
    act(&req, posted, &id, Act::Reconcile).await
}

pub(super) async fn cancel(req: HttpRequest, posted: StaffForm<DeliveryForm>, id: web::Path<String>) -> Page {
    act(&req, posted, &id, Act::Cancel).await
}

enum Act {
    Retry,
    Reconcile,
    Cancel,
}

async fn act(
    req: &HttpRequest,
    StaffForm { hub, caller, form }: StaffForm<DeliveryForm>,
    id: &str,
    act: Act,
) -> Page {
    let (done, outcome) = match act {
        Act::Retry => ("retried", delivery::retry(&hub, &caller, id).await),
        Act::Reconcile => ("reconciling", delivery::reconcile(&hub, &caller, id).await),
        Act::Cancel => ("cancelled", delivery::cancel(&hub, &caller, id).await),
    };
    match (outcome, form.item.is_empty()) {
        (Ok(_), true) => Ok(see_other(&format!("/console/deliveries?done={done}"))),
        (Ok(acted), false) => Ok(see_other(&format!(
            "/console/items/{}?done={done}",
            acted.item_id
        ))),
        (Err(Error::NotFound(_)), _) => message(
            &hub,
            StatusCode::NOT_FOUND,
            "发送记录不存在",
            "没有找到这条发送记录，或它不在您的管辖范围内。",
        ),
        (Err(e), true) => {
            let (status, problem, _) = refusal(e)?;
            show_queues(req, &hub, &caller, status, None, Some(problem)).await
        }
        (Err(e), false) => item_refusal(req, &hub, &caller, &form.item, e).await,
    }
}
