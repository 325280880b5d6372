//! Interpretations (解读) and their deadlines after the policy they interpret is published.

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use serde::Serialize;

use crate::{
    accounts::Caller, clock::china_date, domain::item::ItemState, error::Result, hub::Hub,
    store::entities::item,
};

pub(super) async fn interpretation_deadline(
    hub: &Hub,
    db: &impl ConnectionTrait,
    row: &item::Model,
) -> Result<Option<NaiveDate>> {
    let Some(policy_id) = &row.interprets_id else {
        return Ok(None);
    };
    let policy = item::Entity::find_by_id(policy_id).one(db).await?;
    Ok(policy
        .and_then(|p| p.published_at)
        .map(|at| deadline_after(hub, at)))
}

pub fn deadline_after(hub: &Hub, published_at: DateTime<Utc>) -> NaiveDate {
    hub.calendar.add_working_days(
        china_date(published_at),
        hub.settings.workflow.interpretation_working_days,
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DueStatus {
    Overdue,
    DueSoon,
    Pending,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DueInterpretation {
    pub interpretation_id: String,
    pub title: String,
    pub state: ItemState,
    pub policy_id: String,
    pub policy_title: String,
    pub policy_published_at: DateTime<Utc>,
    pub deadline: NaiveDate,
    pub status: DueStatus,
}

/// Unpublished interpretations of published policies, most urgent first.
pub async fn interpretations_due(hub: &Hub, caller: &Caller) -> Result<Vec<DueInterpretation>> {
    let open = item::Entity::find()
        .filter(item::Column::InterpretsId.is_not_null())
        .filter(item::Column::AreaCode.starts_with(caller.area.as_str()))
        .filter(item::Column::State.is_in([
            ItemState::Draft.as_str(),
            ItemState::InReview.as_str(),
            ItemState::Approved.as_str(),
        ]))
        .all(&hub.db)
        .await?;
    let today = china_date(hub.clock.now());
    let due_soon_days = hub.settings.workflow.due_soon_working_days;
    let mut due = Vec::new();
    for interpretation in open {
        let Some(policy_id) = interpretation.interprets_id.clone() else {
            continue;
        };
        let Some(policy) = item::Entity::find_by_id(&policy_id).one(&hub.db).await? else {
            continue;
        };
        let Some(published_at) = policy.published_at else {
            continue;
        };
        let deadline = deadline_after(hub, published_at);
        let status = if today > deadline {
            DueStatus::Overdue
        } else if hub.calendar.working_days_between(today, deadline) <= due_soon_days {
            DueStatus::DueSoon
        } else {
            DueStatus::Pending
        };
        due.push(DueInterpretation {
            state: interpretation.state,
            interpretation_id: interpretation.id,
            title: interpretation.title,
            policy_id,
            policy_title: policy.title,
            policy_published_at: published_at,
            deadline,
            status,
        });
    }
    due.sort_by_key(|d| (d.deadline, d.interpretation_id.clone()));
    Ok(due)
}
