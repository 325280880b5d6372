//! The device gateway: what the hub hears from village devices over its MQTT session
//! (`crate::device_link`, through which the device adapters sign and publish).
//!
//! [`run_until_stopped`] hears every device report,
//! checks it (`open_report`: a registered, unrevoked key, the signature, the device named in
//! the topic and payload), drops stale statuses and wills, keeps what a device says about
//! itself on its row, and turns acks and proofs into receipts for the inbox, written in
//! batches. The broker's acknowledgement of a report waits for its batch to be stored, so a
//! crash loses no report: the broker delivers it again.

use std::{collections::HashMap, sync::Arc, time::Duration};

use herald_channels::{ChannelKind, ChannelReceipt, Correlation, Permanence, ReceiptStatus};
use herald_firmware_protocol::{
    Frame, Report, ReportBody,
    hub::{Freshness, ReportCursor, open_report},
    report::{AckStage, Medium, RejectReason},
    topic,
};
use rumqttc::{AsyncClient, Event, Packet, Publish, QoS};

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::{
    DeliveryState,
    devices::{self, Heard, ReportingDevice},
    inbox::{self, InboundReceipt},
};
use crate::{
    error::Result,
    hub::Hub,
    store::entities::{delivery, device_command},
};

/// Every device report topic (`herald/v1/d/{device}/{kind}`).
const REPORTS: &str = "herald/v1/d/+/+";
/// Reports stored per inbox write, at most…
const FLUSH_ROWS: usize = 500;
/// …and at the latest this long after the first of a batch arrived.
const FLUSH_AFTER: Duration = Duration::from_millis(50);
/// Reports held for acknowledgement that make a batch due at once.
const HELD_ACKS: usize = 16;
/// How long a device's registered key is trusted from memory before it is read again.
const KEYS_KEPT: Duration = Duration::from_secs(60);

/// What an ack stage or a proof says of a delivery, as the inbox takes it.
fn receipt_status(channel: ChannelKind, body: &ReportBody) -> Option<ReceiptStatus> {
    let done = || match channel {
        ChannelKind::NoticeBoard => ReceiptStatus::Displayed,
        _ => ReceiptStatus::Played,
    };
    let failed = |code: String, message: &str| ReceiptStatus::Failed {
        permanence: Permanence::Permanent,
        code,
        message: message.to_owned(),
    };
    match body {
        ReportBody::Ack(ack) => Some(match ack.stage {
            AckStage::Received | AckStage::Verified | AckStage::Queued => ReceiptStatus::Accepted,
            AckStage::Started => ReceiptStatus::Delivered,
            AckStage::Finished => done(),
            // A refusal before the signature checked out names the command its frame claims:
            // anyone on the broker can send a device a tampered copy of a real command, so it
            // must not end the genuine delivery. It is kept as it came (the report, reason
            // and all), and moves nothing. So is a replay: the device holds the command already
            // (a frame sent again on its return, or replayed by someone else).
            AckStage::Rejected
                if matches!(
                    ack.reason,
                    Some(
                        RejectReason::Malformed
                            | RejectReason::UnsupportedFormat
                            | RejectReason::UnknownKey
                            | RejectReason::BadSignature
                            | RejectReason::Replay
                    )
                ) =>
            {
                ReceiptStatus::Accepted
            }
            AckStage::Expired => ReceiptStatus::Expired,
            AckStage::Rejected if ack.reason == Some(RejectReason::Expired) => ReceiptStatus::Expired,
            AckStage::Rejected => {
                let reason = ack
                    .reason
                    .and_then(|r| serde_json::to_value(r).ok())
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_else(|| "unknown".into());
                failed(format!("rejected_{reason}"), "the device refused the command")
            }
            AckStage::Preempted => failed("preempted".into(), "a higher priority or a cancel stopped it"),
        }),
        // A proof of an item cut short is no proof of it: the acks say what became of it.
        ReportBody::Proof(proof) if !proof.completed => None,
        ReportBody::Proof(proof) => Some(match proof.medium {
            Medium::Display => ReceiptStatus::Displayed,
            Medium::Audio => ReceiptStatus::Played,
        }),
        _ => None,
    }
}

/// The command a report is about.
fn command_id(body: &ReportBody) -> Option<&str> {
    match body {
        ReportBody::Ack(ack) => ack.id.as_deref(),
        ReportBody::Proof(proof) => Some(proof.item.as_str()),
        _ => None,
    }
}

/// What the loop keeps between reports: the devices heard (by key id) and each one's newest
/// report; and, until the next write, the receipts and what devices said of themselves, the
/// devices just born, and the reports all that came in (acknowledged once it is stored).
#[derive(Default)]
struct Listener {
    /// By key id, with when it was read: re-read after `KEYS_KEPT`, so a revoked device or a
    /// replaced key stops being heard without a restart.
    devices: HashMap<u32, (ReportingDevice, tokio::time::Instant)>,
    cursors: HashMap<String, ReportCursor>,
    pending: Vec<InboundReceipt>,
    heard: HashMap<String, (chrono::DateTime<chrono::Utc>, Heard)>,
    born: Vec<ReportingDevice>,
    unacked: Vec<Publish>,
    first_pending_at: Option<tokio::time::Instant>,
}

impl Listener {
    async fn device(&mut self, hub: &Hub, key_id: u32) -> Result<Option<ReportingDevice>> {
        if let Some((device, read)) = self.devices.get(&key_id)
            && read.elapsed() < KEYS_KEPT
        {
            return Ok(Some(device.clone()));
        }
        let found = devices::report_key(hub, key_id).await?;
        if let Some(device) = &found {
            self.devices
                .insert(key_id, (device.clone(), tokio::time::Instant::now()));
        }
        Ok(found)
    }

    /// Handles one report; returns whether it waits in the batch (acknowledged once stored).
    async fn hear(&mut self, hub: &Hub, publish: &Publish) -> Result<bool> {
        let Ok(frame) = Frame::parse(&publish.payload) else {
            tracing::warn!(topic = %publish.topic, "a report that is not a frame; dropped");
            return Ok(false);
        };
        let Some(device) = self.device(hub, frame.key_id).await? else {
            tracing::warn!(topic = %publish.topic, key_id = frame.key_id, "a report under a key no device holds; dropped");
            return Ok(false);
        };
        let report: Report = match open_report(&publish.topic, &publish.payload, |_| Some(device.key.clone()))
        {
            Ok(report) => report,
            Err(rejection) => {
                tracing::warn!(topic = %publish.topic, ?rejection, "a report that does not check out; dropped");
                return Ok(false);
            }
        };
        // What a device says of itself counts only if newer than what was heard (a stale will
        // never marks a live device offline). Acks and proofs are never dropped here: one that
        // comes late or twice is still the same receipt, which the inbox stores once by its
        // `device:session:seq`.
        let about_itself = matches!(
            report.msg,
            ReportBody::Status(_) | ReportBody::Birth(_) | ReportBody::Health(_)
        );
        let cursor = self.cursors.entry(report.device.clone()).or_default();
        if cursor.admit(&report) != Freshness::Fresh && about_itself {
            return Ok(false);
        }
        let now = hub.clock.now();
        let heard = match &report.msg {
            ReportBody::Status(status) => Some(Heard {
                online: Some(status.online),
                ..Heard::default()
            }),
            ReportBody::Birth(birth) => Some(Heard {
                online: Some(true),
                capabilities: serde_json::to_value(birth).ok(),
                firmware_version: Some(birth.firmware.clone()),
                ..Heard::default()
            }),
            ReportBody::Health(health) => Some(Heard {
                health: serde_json::to_value(health).ok(),
                ..Heard::default()
            }),
            ReportBody::Ack(_) | ReportBody::Proof(_) => None,
        };
        if let Some(heard) = heard {
            // A whole village reconnecting is thousands of these at once: kept, latest over
            // earlier, and written together with the receipts.
            let entry = self
                .heard
                .entry(report.device.clone())
                .or_insert_with(|| (now, Heard::default()));
            *entry = (now, std::mem::take(&mut entry.1).then(heard));
            if matches!(report.msg, ReportBody::Birth(_)) {
                self.born.push(device);
            }
            self.first_pending_at
                .get_or_insert_with(tokio::time::Instant::now);
            return Ok(true);
        }
        let (Some(status), Some(command)) = (
            receipt_status(device.channel, &report.msg),
            command_id(&report.msg),
        ) else {
            return Ok(false);
        };
        let raw = serde_json::to_value(&report).map_err(anyhow::Error::new)?;
        self.pending.push(InboundReceipt {
            channel: device.channel,
            target_id: device.target_id.clone(),
            receipt: ChannelReceipt {
                correlation: Correlation::ExternalId(command.to_owned()),
                // The device's own count: a redelivered report is the same receipt.
                dedup: format!("{}:{}:{}", report.device, report.session, report.seq),
                source_time: chrono::DateTime::from_timestamp(i64::try_from(report.sent_at).unwrap_or(0), 0)
                    .filter(|_| report.sent_at > 0),
                raw,
                status,
            },
        });
        self.first_pending_at
            .get_or_insert_with(tokio::time::Instant::now);
        Ok(true)
    }

    fn due(&self) -> bool {
        self.pending.len() + self.heard.len() >= FLUSH_ROWS
            // The broker sends only so many reports before it has their acks (Mosquitto: 20,
            // unless max_inflight_messages says otherwise): waiting out the clock with all of
            // them held would stall the flow.
            || self.unacked.len() >= HELD_ACKS
            || self
                .first_pending_at
                .is_some_and(|at| at.elapsed() >= FLUSH_AFTER)
    }

    /// Stores what devices said of themselves and the waiting receipts, each in one write; sends
    /// the devices just born what they missed; then acknowledges the reports to the broker.
    async fn flush(&mut self, hub: &Hub, client: &AsyncClient) -> Result<()> {
        if !self.heard.is_empty() {
            let txn = crate::store::begin_write(&hub.db).await?;
            for (device, (at, heard)) in &self.heard {
                devices::record_heard(&txn, device, *at, heard.clone()).await?;
            }
            txn.commit().await?;
            self.heard.clear();
        }
        if !self.pending.is_empty() {
            inbox::intake_batch(&hub.db, &self.pending, hub.clock.now()).await?;
            self.pending.clear();
        }
        for device in std::mem::take(&mut self.born) {
            resend_valid(hub, &device).await?;
        }
        // An ack that cannot be queued now is tried again at the next flush: left unacked, the
        // report would hold one of the few slots the broker sends through.
        let stored = std::mem::take(&mut self.unacked);
        for publish in stored {
            if let Err(e) = client.try_ack(&publish) {
                tracing::warn!(error = %e, "acknowledging a stored report failed; trying again");
                self.unacked.push(publish);
            }
        }
        self.first_pending_at = None;
        Ok(())
    }
}

/// On a device's birth (it connected, perhaps after an offline spell): every command still
/// valid that it has not carried out, sent again as the same signed frame. The hub does not
/// count on the broker having kept them; a device that has one already refuses it as a replay.
async fn resend_valid(hub: &Hub, device: &ReportingDevice) -> Result<()> {
    let Some(link) = &hub.device_link else {
        return Ok(());
    };
    let now = hub.clock.now();
    // Withdrawn since (a withdrawal delivery follows it) or past its own end: not again.
    let withdrawn = sea_orm::sea_query::Query::select()
        .column(delivery::Column::WithdrawsId)
        .from(delivery::Entity)
        .and_where(delivery::Column::TargetId.eq(device.target_id.as_str()))
        .and_where(delivery::Column::WithdrawsId.is_not_null())
        .to_owned();
    let waiting: Vec<String> = delivery::Entity::find()
        .select_only()
        .column(delivery::Column::ExternalId)
        .filter(delivery::Column::TargetId.eq(device.target_id.as_str()))
        .filter(delivery::Column::State.eq(DeliveryState::Accepted))
        .filter(delivery::Column::Kind.eq(super::DeliveryKind::Publish))
        .filter(delivery::Column::ExternalId.is_not_null())
        .filter(delivery::Column::Id.not_in_subquery(withdrawn))
        .filter(
            sea_orm::Condition::any()
                .add(delivery::Column::NotAfter.is_null())
                .add(delivery::Column::NotAfter.gt(now)),
        )
        .into_tuple::<Option<String>>()
        .all(&hub.db)
        .await?
        .into_iter()
        .flatten()
        .collect();
    if waiting.is_empty() {
        return Ok(());
    }
    let commands = device_command::Entity::find()
        .filter(device_command::Column::Id.is_in(waiting))
        .filter(device_command::Column::NotAfter.gt(now))
        .order_by_asc(device_command::Column::CreatedAt)
        .all(&hub.db)
        .await?;
    let topic = topic::device_commands(&device.key.device_id);
    for command in commands {
        // Queued, not awaited: this task is the one that drains the queue.
        if let Err(e) = link
            .client()
            .try_publish(topic.clone(), QoS::AtLeastOnce, false, command.frame)
        {
            tracing::warn!(device = %device.key.device_id, error = %e, "sending a command again failed; it goes at the device's next birth");
        }
    }
    Ok(())
}

/// Hears device reports until the process ends; reconnects after a lost connection. Without
/// a device link (no `mqtt.url`) there is nothing to hear, and it returns at once.
pub async fn run_until_stopped(hub: Arc<Hub>) -> anyhow::Result<()> {
    let Some(link) = hub.device_link.clone() else {
        return Ok(());
    };
    let Some(mut events) = hub.device_events.take() else {
        anyhow::bail!("the device link's event loop is already running");
    };
    let mut listener = Listener::default();
    loop {
        let wait = match listener.first_pending_at {
            Some(at) => FLUSH_AFTER.saturating_sub(at.elapsed()),
            None => Duration::from_secs(3600),
        };
        let event = tokio::select! {
            event = events.poll() => Some(event),
            () = tokio::time::sleep(wait) => None,
        };
        match event {
            Some(Ok(Event::Incoming(Packet::ConnAck(connack)))) => {
                // Reports held for acknowledgement belong to a session the broker no longer
                // has: their packet ids mean nothing in the new one.
                if !connack.session_present {
                    listener.unacked.clear();
                }
                // A new session (clean): subscribe again.
                if let Err(e) = link.client().try_subscribe(REPORTS, QoS::AtLeastOnce) {
                    tracing::error!(error = %e, "subscribing to device reports failed");
                }
            }
            Some(Ok(Event::Incoming(Packet::Publish(publish)))) => {
                match listener.hear(&hub, &publish).await {
                    Ok(true) => listener.unacked.push(publish),
                    Ok(false) => {
                        let _ = link.client().try_ack(&publish);
                    }
                    // Not acknowledged: the broker sends it again after a reconnect.
                    Err(e) => tracing::error!(error.cause_chain = ?e, "hearing a device report failed"),
                }
            }
            Some(Ok(_)) | None => {}
            Some(Err(e)) => {
                tracing::warn!(error = %e, "the device link lost the broker; reconnecting");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        if listener.due()
            && let Err(e) = listener.flush(&hub, link.client()).await
        {
            tracing::error!(error.cause_chain = ?e, "storing device receipts failed; retrying");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use herald_firmware_protocol::report::Ack;

    use super::*;

    fn ack(stage: AckStage, reason: Option<RejectReason>) -> ReportBody {
        ReportBody::Ack(Ack {
            key_id: Some(1),
            cmd_seq: Some(1),
            id: Some("command".into()),
            stage,
            reason,
        })
    }

    #[test]
    fn a_refusal_before_the_signature_checks_out_moves_nothing() {
        for reason in [
            RejectReason::Malformed,
            RejectReason::UnsupportedFormat,
            RejectReason::UnknownKey,
            RejectReason::BadSignature,
            RejectReason::Replay,
        ] {
            assert_eq!(
                receipt_status(ChannelKind::Loudspeaker, &ack(AckStage::Rejected, Some(reason))),
                Some(ReceiptStatus::Accepted),
                "{reason:?}"
            );
        }
    }

    #[test]
    fn a_verified_command_ends_as_the_device_says() {
        let status = |stage, reason| receipt_status(ChannelKind::NoticeBoard, &ack(stage, reason));
        assert_eq!(status(AckStage::Finished, None), Some(ReceiptStatus::Displayed));
        assert_eq!(status(AckStage::Started, None), Some(ReceiptStatus::Delivered));
        assert_eq!(status(AckStage::Expired, None), Some(ReceiptStatus::Expired));
        assert_eq!(
            status(AckStage::Rejected, Some(RejectReason::Expired)),
            Some(ReceiptStatus::Expired)
        );
        assert!(matches!(
            status(AckStage::Rejected, Some(RejectReason::NotForMe)),
            Some(ReceiptStatus::Failed { code, .. }) if code == "rejected_not_for_me"
        ));
    }
}
