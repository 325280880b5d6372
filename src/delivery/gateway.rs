//! The device gateway: what the hub hears from village devices over its MQTT session
//! (`crate::device_link`, through which the device adapters sign and publish).
//!
//! [`run_until_stopped`] polls the session and hands every device report to a listener task,
//! which checks it (`open_report`: a registered, unrevoked key, the signature, the device named in
//! the topic and payload), drops stale statuses and wills, keeps what a device says about
//! itself on its row, and turns acks and proofs into receipts for the inbox, written in
//! batches. The broker's acknowledgement of a report waits for its batch to be stored, so a
//! crash loses no report: the broker delivers it again.

use std::{collections::HashMap, sync::Arc, time::Duration};

use herald_channels::{ChannelKind, ChannelReceipt, Correlation, Permanence, ReceiptStatus};
use herald_firmware_protocol::{
    Frame, Report, ReportBody,
    hub::{Freshness, ReportCursor, open_report},
    report::{AckStage, Bundled, Medium, RejectReason},
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
    device_link::SessionLoops,
    error::Result,
    hub::Hub,
    store::entities::{delivery, device_command},
};

/// Reports stored per inbox write, at most…
const FLUSH_ROWS: usize = 500;
/// …and at the latest this long after the first of a batch arrived.
const FLUSH_AFTER: Duration = Duration::from_millis(50);
/// Reports held for acknowledgement that make a batch due at once.
const HELD_ACKS: usize = 16;
/// How long a device's registered key is trusted from memory before it is read again.
const KEYS_KEPT: Duration = Duration::from_secs(60);

/// What an ack stage or a proof says of a delivery, as the inbox takes it.
fn receipt_status(channel: ChannelKind, body: &Bundled) -> Option<ReceiptStatus> {
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
        Bundled::Ack(ack) => Some(match ack.stage {
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
        Bundled::Proof(proof) if !proof.completed => None,
        Bundled::Proof(proof) => Some(match proof.medium {
            Medium::Display => ReceiptStatus::Displayed,
            Medium::Audio => ReceiptStatus::Played,
        }),
    }
}

/// The command a report is about.
fn command_id(body: &Bundled) -> Option<&str> {
    match body {
        Bundled::Ack(ack) => ack.id.as_deref(),
        Bundled::Proof(proof) => Some(proof.item.as_str()),
    }
}

/// The acks and proofs a report carries, each with the key the inbox stores it under once:
/// the device's own count, and a bundle's part by its place (PROTOCOL.md §8.2).
fn command_reports(report: &Report) -> Vec<(String, Bundled)> {
    let count = format!("{}:{}:{}", report.device, report.session, report.seq);
    match &report.msg {
        ReportBody::Ack(ack) => vec![(count, Bundled::Ack(ack.clone()))],
        ReportBody::Proof(proof) => vec![(count, Bundled::Proof(proof.clone()))],
        ReportBody::Bundle(bundle) => bundle
            .reports
            .iter()
            .enumerate()
            .map(|(i, part)| (format!("{count}/{i}"), part.clone()))
            .collect(),
        ReportBody::Status(_) | ReportBody::Birth(_) | ReportBody::Health(_) => Vec::new(),
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
    batch: Batch,
}

/// What waits for the next write: receipts, what devices said of themselves, the devices just
/// born, and the reports all that came in.
#[derive(Default)]
struct Batch {
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
            ReportBody::Ack(_) | ReportBody::Proof(_) | ReportBody::Bundle(_) => None,
        };
        if let Some(heard) = heard {
            // A whole village reconnecting is thousands of these at once: kept, latest over
            // earlier, and written together with the receipts.
            let entry = self
                .batch
                .heard
                .entry(report.device.clone())
                .or_insert_with(|| (now, Heard::default()));
            *entry = (now, std::mem::take(&mut entry.1).then(heard));
            if matches!(report.msg, ReportBody::Birth(_)) {
                self.batch.born.push(device);
            }
        } else {
            let source_time = chrono::DateTime::from_timestamp(i64::try_from(report.sent_at).unwrap_or(0), 0)
                .filter(|_| report.sent_at > 0);
            let bundled = matches!(report.msg, ReportBody::Bundle(_));
            let mut kept = false;
            for (i, (dedup, part)) in command_reports(&report).into_iter().enumerate() {
                let (Some(status), Some(command)) =
                    (receipt_status(device.channel, &part), command_id(&part))
                else {
                    continue;
                };
                let command = command.to_owned();
                // Kept as it came; a bundle's part as the report it stands for, with its place
                // in the bundle.
                let mut raw = serde_json::to_value(Report {
                    msg: ReportBody::from(part),
                    ..report.clone()
                })
                .map_err(anyhow::Error::new)?;
                if bundled && let Some(fields) = raw.as_object_mut() {
                    fields.insert("part".into(), i.into());
                }
                self.batch.pending.push(InboundReceipt {
                    channel: device.channel,
                    target_id: device.target_id.clone(),
                    receipt: ChannelReceipt {
                        correlation: Correlation::ExternalId(command),
                        // The device's own count: a redelivered report is the same receipt.
                        dedup,
                        source_time,
                        raw,
                        status,
                    },
                });
                kept = true;
            }
            if !kept {
                return Ok(false);
            }
        }
        self.batch
            .first_pending_at
            .get_or_insert_with(tokio::time::Instant::now);
        Ok(true)
    }
}

impl Batch {
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
    /// Runs beside the loop that polls the broker, which goes on meanwhile (commands keep
    /// going out, reports keep coming in for the next batch). On failure the batch comes back
    /// whole, to be merged into the next.
    async fn store(mut self, hub: Arc<Hub>, client: AsyncClient) -> StoreResult {
        if let Err(e) = self.write(&hub).await {
            return Err((self, e));
        }
        for device in std::mem::take(&mut self.born) {
            if let Err(e) = resend_valid(&hub, &device).await {
                tracing::warn!(device = %device.key.device_id, error.cause_chain = ?e, "sending a returning device what it missed failed");
            }
        }
        for publish in self.unacked {
            // Not queued: the broker sends it again after a reconnect, and the inbox stores it
            // once; meanwhile it holds one of the broker's few in-flight slots.
            if let Err(e) = client.try_ack(&publish) {
                tracing::warn!(error = %e, "acknowledging a stored report failed");
            }
        }
        Ok(())
    }

    async fn write(&mut self, hub: &Hub) -> Result<()> {
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
            hub.due.wake_appliers();
        }
        Ok(())
    }

    /// Takes back a batch whose write failed, ahead of what came since.
    fn absorb(&mut self, earlier: Batch) {
        let mut pending = earlier.pending;
        pending.append(&mut self.pending);
        self.pending = pending;
        for (device, (at, heard)) in earlier.heard {
            let later = self.heard.remove(&device);
            let merged = match later {
                Some((later_at, later_heard)) => (later_at, heard.then(later_heard)),
                None => (at, heard),
            };
            self.heard.insert(device, merged);
        }
        self.born.extend(earlier.born);
        self.unacked.extend(earlier.unacked);
        self.first_pending_at = match (earlier.first_pending_at, self.first_pending_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
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
            .commands()
            .try_publish(topic.clone(), QoS::AtLeastOnce, false, command.frame)
        {
            tracing::warn!(device = %device.key.device_id, error = %e, "sending a command again failed; it goes at the device's next birth");
        }
    }
    Ok(())
}

/// How a batch's write ended: on failure, the batch back, to be merged into the next.
type StoreResult = std::result::Result<(), (Batch, crate::error::Error)>;

/// Polls the hub's MQTT sessions until the process ends (reconnecting after a lost connection):
/// the commands' one, which sends what the adapters queued, on a task of its own; and the
/// reports' one, handing every report to a listener task that hears and stores them. Without
/// a device link (no `mqtt.url`) there is nothing to hear, and it returns at once.
pub async fn run_until_stopped(hub: Arc<Hub>) -> anyhow::Result<()> {
    let Some(link) = hub.device_link.clone() else {
        return Ok(());
    };
    let Some(SessionLoops {
        reports: mut events,
        commands,
    }) = hub.device_events.take()
    else {
        anyhow::bail!("the device link's event loops are already running");
    };
    // This loop only moves packets, so commands go out while reports are checked: hearing a
    // report (an Ed25519 verification, a decode) took 65-180 µs, and done here it held back
    // every command queued behind it. The listener hears and stores them on its own task.
    let (to_listener, inbound) = tokio::sync::mpsc::channel(INBOUND_QUEUE);
    // A set, so the listener and the commands' loop end with this loop (its tasks are
    // aborted when it drops).
    let mut listening = tokio::task::JoinSet::new();
    listening.spawn(listen(hub.clone(), link.clone(), inbound));
    listening.spawn(send_commands(commands));
    loop {
        let inbound = match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(connack))) => {
                // A session the broker kept may still hold the filter hubs used before,
                // which matched their own command topics: dropped, or the broker goes on
                // sending every command back (and every report twice).
                if connack.session_present
                    && let Err(e) = link.client().try_unsubscribe(topic::OLD_HUB_FILTER)
                {
                    tracing::error!(error = %e, "dropping the hub's old report filter failed");
                }
                // A new session (clean): subscribe again.
                let filters = topic::hub_report_filters()
                    .map(|filter| rumqttc::SubscribeFilter::new(filter, QoS::AtLeastOnce));
                if let Err(e) = link.client().try_subscribe_many(filters) {
                    tracing::error!(error = %e, "subscribing to device reports failed");
                }
                (!connack.session_present).then_some(Inbound::NewSession)
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => Some(Inbound::Report(publish)),
            Ok(Event::Incoming(Packet::SubAck(suback))) => {
                let granted = suback
                    .return_codes
                    .iter()
                    .all(|code| matches!(code, rumqttc::SubscribeReasonCode::Success(_)));
                if !granted {
                    tracing::error!("the broker refused the hub's subscription to device reports");
                }
                link.set_listening(granted);
                None
            }
            Ok(_) => None,
            Err(e) => {
                link.set_listening(false);
                tracing::warn!(error = %e, "the device link lost the broker; reconnecting");
                tokio::time::sleep(Duration::from_secs(1)).await;
                None
            }
        };
        if let Some(inbound) = inbound
            && to_listener.send(inbound).await.is_err()
        {
            // The listener ended: its own error says why.
            return match listening.join_next().await {
                Some(Ok(Err(e))) => Err(e),
                Some(Err(e)) => Err(anyhow::Error::new(e)),
                Some(Ok(Ok(()))) | None => Err(anyhow::anyhow!("the device report listener stopped")),
            };
        }
    }
}

/// Polls the commands' session for as long as the gateway runs. Nothing comes in on it but
/// the broker's acknowledgements, which the client keeps to itself.
async fn send_commands(mut events: rumqttc::EventLoop) -> anyhow::Result<()> {
    loop {
        if let Err(e) = events.poll().await {
            tracing::warn!(error = %e, "the device link's command session lost the broker; reconnecting");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Packets the polling loop hands the listener, in the order they came.
enum Inbound {
    Report(Publish),
    /// The broker started a clean session: reports held for acknowledgement belong to one it
    /// no longer has, and their packet ids mean nothing in the new one.
    NewSession,
}

/// Reports the polling loop may hand on before it waits for the listener. The broker sends
/// only so many unacknowledged reports at once (the hub acknowledges them once stored), so
/// this bounds the queue only against a broker that does not keep to that.
const INBOUND_QUEUE: usize = 4_096;

/// Hears the reports the polling loop hands on and stores them in batches: each batch is
/// written beside the hearing, which goes on into the next one meanwhile.
async fn listen(
    hub: Arc<Hub>,
    link: Arc<crate::device_link::MqttLink>,
    mut inbound: tokio::sync::mpsc::Receiver<Inbound>,
) -> anyhow::Result<()> {
    let mut listener = Listener::default();
    let mut storing: Option<std::pin::Pin<Box<dyn std::future::Future<Output = StoreResult> + Send>>> = None;
    loop {
        // Woken by the clock only to start a write: while one runs, its end wakes the loop.
        let wait = match listener.batch.first_pending_at {
            Some(at) if storing.is_none() => FLUSH_AFTER.saturating_sub(at.elapsed()),
            _ => Duration::from_secs(3600),
        };
        tokio::select! {
            received = inbound.recv() => match received {
                Some(Inbound::Report(publish)) => match listener.hear(&hub, &publish).await {
                    Ok(true) => listener.batch.unacked.push(publish),
                    Ok(false) => {
                        let _ = link.client().try_ack(&publish);
                    }
                    // Not acknowledged: the broker sends it again after a reconnect.
                    Err(e) => tracing::error!(error.cause_chain = ?e, "hearing a device report failed"),
                },
                Some(Inbound::NewSession) => listener.batch.unacked.clear(),
                None => return Ok(()),
            },
            stored = async { match storing.as_mut() { Some(write) => write.await, None => std::future::pending().await } } => {
                storing = None;
                if let Err((batch, e)) = stored {
                    tracing::error!(error.cause_chain = ?e, "storing device reports failed; retrying");
                    listener.batch.absorb(batch);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            () = tokio::time::sleep(wait) => {}
        }
        if storing.is_none() && listener.batch.due() {
            let batch = std::mem::take(&mut listener.batch);
            storing = Some(Box::pin(batch.store(hub.clone(), link.client().clone())));
        }
    }
}

#[cfg(test)]
mod tests {
    use herald_firmware_protocol::{report::Ack, topic};

    use super::*;

    #[test]
    fn the_hub_hears_every_report_and_none_of_its_own_commands() {
        let filters: Vec<String> = topic::hub_report_filters().collect();
        for kind in topic::REPORT_KINDS {
            let report = topic::report("spk-0001", kind);
            assert!(filters.iter().any(|f| rumqttc::matches(&report, f)), "{report}");
        }
        let command = topic::device_commands("spk-0001");
        assert!(
            !filters.iter().any(|f| rumqttc::matches(&command, f)),
            "{filters:?}"
        );
    }

    fn ack(stage: AckStage, reason: Option<RejectReason>) -> Bundled {
        Bundled::Ack(Ack {
            key_id: Some(1),
            cmd_seq: Some(1),
            id: Some("command".into()),
            stage,
            reason,
        })
    }

    #[test]
    fn each_part_of_a_bundle_is_filed_under_its_place_in_the_report() {
        let report = |msg| Report {
            device: "spk-0001".into(),
            session: 3,
            seq: 8,
            sent_at: 0,
            msg,
        };
        let started = ack(AckStage::Started, None);
        let finished = ack(AckStage::Finished, None);
        let alone = command_reports(&report(ReportBody::from(started.clone())));
        assert_eq!(alone, vec![("spk-0001:3:8".to_owned(), started.clone())]);
        let bundle = report(ReportBody::Bundle(herald_firmware_protocol::report::Bundle {
            reports: vec![started.clone(), finished.clone()],
        }));
        assert_eq!(
            command_reports(&bundle),
            vec![
                ("spk-0001:3:8/0".to_owned(), started),
                ("spk-0001:3:8/1".to_owned(), finished)
            ]
        );
        let status = report(ReportBody::Status(herald_firmware_protocol::report::Status {
            online: true,
        }));
        assert!(command_reports(&status).is_empty());
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
