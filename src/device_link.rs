//! The hub's MQTT session with the broker village devices use, and the signing the device
//! adapters (`herald_channels::devices`) do through it: the issuer key derived from the
//! secrets key, a command sequence every instance shares in the store, the hub's clock. The
//! hub keeps two sessions with the broker: one that hears device reports and one that sends
//! commands. Both event loops are polled by `delivery::gateway`.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use herald_channels::devices::{Abilities, DeviceLink, IssueError, IssuedCommand};
use herald_firmware_protocol::{Audience, Command, CommandBody, Issuer};
use rumqttc::{AsyncClient, EventLoop, MqttOptions, QoS};
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect, Set};

use crate::{
    clock::Clock,
    config::MqttSettings,
    error::Result,
    secrets::SecretsKey,
    store::{
        among,
        entities::{device, device_command},
    },
};

/// Requests the client may queue before a publish waits: a device batch of 10,000.
const CLIENT_QUEUE: usize = 20_000;
/// Largest packet either way: room for a command naming the protocol's most devices (1,000)
/// with 2,000 characters of text.
const MAX_PACKET: usize = 256 * 1024;

/// Signs commands and hands them to the broker, for the device adapters.
pub struct MqttLink {
    /// The session that hears reports: the gateway subscribes and acknowledges through it.
    client: AsyncClient,
    /// The session commands go out on. Apart from the reports, a fan-out is not queued behind
    /// the acks it sets off (every device acknowledges up to four times, each report an
    /// incoming packet and an outgoing acknowledgement on the hearing session). Measured with
    /// `herald bench fanout --devices 10000` (medians of interleaved runs, one 2-core machine
    /// also running the devices): on Mosquitto the last device 2.7 s after publishing instead
    /// of 3.4 s; on the in-process broker 99 % of acks stored after 4.7 s instead of 5.3 s,
    /// the last device 2.2 s instead of 2.0 s (the broker shares the hub's runtime, and the
    /// reports no longer wait behind the commands).
    commands: AsyncClient,
    issuer: Issuer,
    clock: Clock,
    db: DatabaseConnection,
    /// Whether the broker has confirmed the hub's subscription to device reports in the
    /// current connection: until it has, a device's birth goes unheard.
    listening: std::sync::atomic::AtomicBool,
}

/// How long a signed command is kept after its validity ended: past `not_after` no device acts
/// on it and the hub never sends it again, but the frame is the record of exactly what was
/// signed and sent (asked about after a false alarm), so it stays for a month.
pub const COMMANDS_KEPT_AFTER_END: chrono::Duration = chrono::Duration::days(30);

/// Deletes the commands whose validity ended more than [`COMMANDS_KEPT_AFTER_END`] before
/// `now`; returns how many.
pub async fn prune_commands(db: &DatabaseConnection, now: chrono::DateTime<chrono::Utc>) -> Result<u64> {
    let ended_before = now - COMMANDS_KEPT_AFTER_END;
    let pruned = device_command::Entity::delete_many()
        .filter(device_command::Column::NotAfter.lt(ended_before))
        .exec(db)
        .await?;
    Ok(pruned.rows_affected)
}

/// The event loops of the hub's two MQTT sessions, until the gateway takes them.
#[derive(Default)]
pub struct DeviceEvents(Mutex<Option<SessionLoops>>);

/// What the gateway polls: each session's event loop.
pub struct SessionLoops {
    pub reports: EventLoop,
    pub commands: EventLoop,
}

impl DeviceEvents {
    /// The event loops, once: whoever polls them owns the sessions.
    pub fn take(&self) -> Option<SessionLoops> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// `mqtt://HOST:PORT` → host and port.
pub fn broker_address(url: &str) -> anyhow::Result<(String, u16)> {
    let rest = url
        .strip_prefix("mqtt://")
        .ok_or_else(|| anyhow::anyhow!("mqtt.url must start with mqtt:// (got `{url}`)"))?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (
            host,
            port.parse()
                .map_err(|_| anyhow::anyhow!("mqtt.url has no valid port: `{url}`"))?,
        ),
        None => (rest, 1883),
    };
    anyhow::ensure!(!host.is_empty(), "mqtt.url names no host: `{url}`");
    Ok((host.to_owned(), port))
}

/// The hub's MQTT sessions (not yet connected: each event loop connects when polled) and its
/// signing link. The issuer key is derived from the secrets key.
pub fn connect(
    settings: &MqttSettings,
    secrets: &SecretsKey,
    db: DatabaseConnection,
    clock: Clock,
) -> anyhow::Result<(Arc<MqttLink>, DeviceEvents)> {
    let (host, port) = broker_address(&settings.url)?;
    let client_id = if settings.client_id.is_empty() {
        format!("herald-hub-{}", uuid::Uuid::new_v4().simple())
    } else {
        settings.client_id.clone()
    };
    let mut options = MqttOptions::new(client_id.clone(), host, port);
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(MAX_PACKET, MAX_PACKET)
        // Reports are acknowledged once stored, not on arrival.
        .set_manual_acks(true)
        // With a configured client id the broker keeps the session across a lost connection
        // (and a restart): reports not yet acknowledged come again, and commands in flight are
        // sent again. A made-up id is new at every start, so its session would only pile up
        // on the broker: it starts clean.
        .set_clean_session(settings.client_id.is_empty());
    if !settings.username.is_empty() {
        options.set_credentials(settings.username.clone(), settings.password.clone());
    }
    // The commands' session: its own client id, kept or clean as the reports' one is.
    let mut command_options = options.clone();
    command_options.set_client_id(format!("{client_id}-commands"));
    let (commands, command_events) = AsyncClient::new(command_options, CLIENT_QUEUE);
    let (client, events) = AsyncClient::new(options, CLIENT_QUEUE);
    let issuer = Issuer::new(settings.issuer_key_id, &secrets.derive("herald device issuer v1"));
    let link = MqttLink {
        client,
        commands,
        issuer,
        clock,
        db,
        listening: std::sync::atomic::AtomicBool::new(false),
    };
    let loops = SessionLoops {
        reports: events,
        commands: command_events,
    };
    Ok((Arc::new(link), DeviceEvents(Mutex::new(Some(loops)))))
}

impl MqttLink {
    /// Whether the hub hears device reports now (see `listening`).
    pub fn is_listening(&self) -> bool {
        self.listening.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The gateway's word on it: true when the broker confirmed the subscription, false when
    /// the connection is lost.
    pub fn set_listening(&self, listening: bool) {
        self.listening
            .store(listening, std::sync::atomic::Ordering::Release);
    }

    /// The reports' session: the gateway subscribes and acknowledges through it.
    pub fn client(&self) -> &AsyncClient {
        &self.client
    }

    /// The commands' session: every command goes out through it.
    pub fn commands(&self) -> &AsyncClient {
        &self.commands
    }

    /// The public key devices must trust (their factory root or a `trust` command).
    pub fn issuer_public_key(&self) -> [u8; 32] {
        self.issuer.public_key()
    }

    pub fn issuer_key_id(&self) -> u32 {
        self.issuer.key_id()
    }

    /// Reserves the next `count` sequences of the issuer key and returns the last: one UPDATE
    /// on a row every instance shares, so the sequence only grows whichever instance signs.
    async fn reserve_sequences(txn: &sea_orm::DatabaseTransaction, key_id: u32, count: u64) -> Result<u64> {
        let backend = txn.get_database_backend();
        let mut binds = crate::store::Binds::new(backend);
        let count = i64::try_from(count).map_err(anyhow::Error::new)?;
        let (key_id, first, step) = (binds.add(i64::from(key_id)), binds.add(count), binds.add(count));
        let sql = format!(
            "INSERT INTO issuer_sequences (key_id, last_seq) VALUES ({key_id}, {first}) \
             ON CONFLICT (key_id) DO UPDATE SET last_seq = issuer_sequences.last_seq + {step} \
             RETURNING last_seq"
        );
        let row = txn
            .query_one_raw(binds.statement(sql))
            .await?
            .ok_or_else(|| anyhow::anyhow!("the sequence update returned nothing"))?;
        let last: i64 = row.try_get_by_index(0)?;
        Ok(u64::try_from(last).map_err(anyhow::Error::new)?)
    }
}

/// Signed commands kept per INSERT: four binds each, well under either database's limit.
const COMMANDS_PER_INSERT: usize = 1_000;

#[async_trait::async_trait]
impl DeviceLink for MqttLink {
    async fn issue(
        &self,
        audiences: Vec<Audience>,
        body: CommandBody,
        lifetime: Duration,
        ends_by: Option<u64>,
    ) -> std::result::Result<Vec<IssuedCommand>, IssueError> {
        let failed = |e: &dyn std::fmt::Display| IssueError::Failed(e.to_string());
        let now = self.clock.now();
        let issued_at = u64::try_from(now.timestamp()).map_err(|e| failed(&e))?;
        // Checked before a sequence is spent on it: an expired item is never signed.
        if ends_by.is_some_and(|end| end <= issued_at) {
            return Err(IssueError::Expired);
        }
        if audiences.is_empty() {
            return Ok(Vec::new());
        }
        let not_after = issued_at
            .saturating_add(lifetime.as_secs())
            .min(ends_by.unwrap_or(u64::MAX));
        // The instant the signed field names, to the second, as a device reads it.
        let kept_until = i64::try_from(not_after)
            .ok()
            .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
            .ok_or_else(|| IssueError::Failed(format!("not_after {not_after} is out of range")))?;
        // The sequences and the commands signed with them commit together (PROTOCOL.md §8.1).
        let txn = crate::store::begin_write(&self.db)
            .await
            .map_err(|e| failed(&e))?;
        let count = audiences.len() as u64;
        let last = Self::reserve_sequences(&txn, self.issuer.key_id(), count)
            .await
            .map_err(|e| failed(&e))?;
        let mut issued = Vec::with_capacity(audiences.len());
        let mut kept = Vec::with_capacity(audiences.len());
        for (seq, to) in (last + 1 - count..=last).zip(audiences) {
            let command = Command {
                seq,
                issued_at,
                not_after,
                id: self.clock.new_id().to_string(),
                to,
                cmd: body.clone(),
            };
            let frame = self.issuer.sign(&command).map_err(|e| failed(&e))?;
            kept.push(device_command::ActiveModel {
                id: Set(command.id.clone()),
                frame: Set(frame.clone()),
                not_after: Set(crate::store::store_time(kept_until)),
                created_at: Set(now),
            });
            issued.push(IssuedCommand {
                id: command.id,
                frame,
            });
        }
        for chunk in kept.chunks(COMMANDS_PER_INSERT) {
            device_command::Entity::insert_many(chunk.to_vec())
                .exec_without_returning(&txn)
                .await
                .map_err(|e| failed(&e))?;
        }
        txn.commit().await.map_err(|e| failed(&e))?;
        Ok(issued)
    }

    async fn command_expired(&self, command_id: &str) -> std::result::Result<bool, String> {
        let kept = device_command::Entity::find_by_id(command_id)
            .one(&self.db)
            .await
            .map_err(|e| e.to_string())?;
        Ok(kept.is_none_or(|c| c.not_after <= self.clock.now()))
    }

    async fn abilities(
        &self,
        device_ids: &[&str],
    ) -> std::result::Result<HashMap<String, Abilities>, String> {
        let backend = self.db.get_database_backend();
        let births: Vec<(String, Option<String>)> = device::Entity::find()
            .select_only()
            .column(device::Column::DeviceId)
            .column(device::Column::Capabilities)
            .filter(among(
                backend,
                device::Column::DeviceId,
                device_ids.iter().copied(),
            ))
            .into_tuple()
            .all(&self.db)
            .await
            .map_err(|e| e.to_string())?;
        let mut heard = HashMap::with_capacity(births.len());
        for (device_id, birth) in births {
            if let Some(birth) = birth {
                // Kept from a birth the gateway decoded: one that does not read is a bug.
                let abilities = serde_json::from_str(&birth)
                    .map_err(|e| format!("device {device_id}: stored capabilities unreadable: {e}"))?;
                heard.insert(device_id, abilities);
            }
        }
        Ok(heard)
    }

    async fn publish(&self, topic: String, frame: Vec<u8>) -> std::result::Result<(), String> {
        self.commands
            .publish(topic, QoS::AtLeastOnce, false, frame)
            .await
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_parse() {
        assert_eq!(
            broker_address("mqtt://127.0.0.1:1883").ok(),
            Some(("127.0.0.1".into(), 1883))
        );
        assert_eq!(
            broker_address("mqtt://broker").ok(),
            Some(("broker".into(), 1883))
        );
        assert!(broker_address("tcp://broker:1883").is_err());
        assert!(broker_address("mqtt://:1883").is_err());
    }
}
