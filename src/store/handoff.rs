//! Deliveries a publish wrote already leased to this process's worker, handed to its claim
//! loops in memory.
//!
//! A claim reads a channel's due rows and rewrites each under a lease: on SQLite about 65 ms
//! of every 5,000, all of it between the publish and the first send. The publish knows every
//! row it writes. So while a claim loop of the channel waits idle in this process (its last
//! pass found nothing due), the publish writes the deliveries `sending` under that worker's
//! lease, and once its transaction commits it hands them over here; the loop sends them
//! without a claim.
//!
//! Nothing is lost when the handing over is: the deliveries keep their queue rows, so if
//! this process ends before recording them, their lease lapses and any worker's claim takes
//! them, as after a crash in the middle of a batch.

use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use chrono::{DateTime, Utc};
use herald_channels::ChannelKind;

use crate::domain::delivery::DeliveryKind;

/// What the worker reads of a delivery it claimed (or was handed), in `CLAIMED_COLUMNS`
/// order.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Claimed {
    pub id: String,
    pub item_id: String,
    pub channel: ChannelKind,
    pub kind: DeliveryKind,
    /// Counting the attempt now under way (the claim adds it to what it read).
    pub attempts: i32,
    pub target_id: String,
    pub rendition_id: String,
    pub idempotency_key: String,
    pub not_after: Option<DateTime<Utc>>,
    pub withdraws_id: Option<String>,
    /// What the previous attempt of a multi-step send kept (JSON), for this one to resume from.
    pub checkpoint: Option<String>,
}

/// The columns of `deliveries` that `Claimed` reads, in its fields' order.
pub const CLAIMED_COLUMNS: [&str; 11] = [
    "id",
    "item_id",
    "channel",
    "kind",
    "attempts",
    "target_id",
    "rendition_id",
    "idempotency_key",
    "not_after",
    "withdraws_id",
    "checkpoint",
];

/// Deliveries of one channel that one publish leased to `worker_id`.
#[derive(Debug)]
pub struct Handed {
    pub worker_id: String,
    pub priority: i32,
    /// When the lease began: the publish's time.
    pub leased_at: DateTime<Utc>,
    pub lease_until: DateTime<Utc>,
    pub rows: Vec<Claimed>,
}

/// Handed deliveries waiting for this process's claim loops, and which loops wait idle.
#[derive(Default)]
pub struct Handoff {
    desks: Mutex<HashMap<ChannelKind, Desk>>,
}

#[derive(Default)]
struct Desk {
    /// Idle loops of the channel, by worker id.
    idle: HashMap<String, usize>,
    /// Highest priority first; in the order handed within one priority.
    waiting: Vec<Handed>,
    /// Rows promised to a worker by publishes not yet committed (`Promise`), by worker id.
    promised: HashMap<String, usize>,
}

impl Desk {
    /// What the worker's idle loops are to take: handed, or promised and on the way.
    fn rows_for(&self, worker_id: &str) -> usize {
        let handed: usize = self
            .waiting
            .iter()
            .filter(|h| h.worker_id == worker_id)
            .map(|h| h.rows.len())
            .sum();
        handed + self.promised.get(worker_id).copied().unwrap_or(0)
    }
}

impl Handoff {
    fn desks(&self) -> std::sync::MutexGuard<'_, HashMap<ChannelKind, Desk>> {
        self.desks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One claim loop of `channel` run by `worker_id`, busy until it says it is idle.
    pub fn listen<'a>(&'a self, channel: ChannelKind, worker_id: &str) -> Listener<'a> {
        Listener {
            handoff: self,
            channel,
            worker_id: worker_id.to_owned(),
            idle: AtomicBool::new(false),
        }
    }

    /// Promises `n` new deliveries of `channel` to a worker whose loops of the channel wait
    /// idle now (so nothing older is due for them), enough of them to take at once what
    /// already waits for the worker, what other publishes promised it, and these `n`,
    /// `batch_size` each. So a handed batch never waits in memory behind a busy loop, even
    /// when publishes race. None: the publish leaves them `pending` for a claim.
    pub fn promise(&self, channel: ChannelKind, n: usize, batch_size: usize) -> Option<Promise<'_>> {
        let mut desks = self.desks();
        let desk = desks.get_mut(&channel)?;
        let worker_id = desk
            .idle
            .iter()
            .filter(|&(worker, &loops)| desk.rows_for(worker) + n <= loops * batch_size.max(1))
            .map(|(worker, _)| worker.clone())
            .min()?;
        *desk.promised.entry(worker_id.clone()).or_insert(0) += n;
        Some(Promise {
            handoff: self,
            channel,
            worker_id,
            rows: n,
        })
    }

    /// Hands over deliveries a committed publish leased (`promise`; the publish then wakes
    /// the channel's loops), or gives back a batch a loop could not send yet.
    pub fn give(&self, channel: ChannelKind, handed: Handed) {
        let mut desks = self.desks();
        let desk = desks.entry(channel).or_default();
        let at = desk
            .waiting
            .iter()
            .position(|waiting| waiting.priority < handed.priority)
            .unwrap_or(desk.waiting.len());
        desk.waiting.insert(at, handed);
    }

    /// Up to `limit` of the deliveries handed to `worker_id` on `channel`, from the first
    /// handing over of the highest priority; the rest of it waits for the next take.
    pub fn take(&self, channel: ChannelKind, worker_id: &str, limit: usize) -> Option<Handed> {
        let mut desks = self.desks();
        let desk = desks.get_mut(&channel)?;
        let at = desk.waiting.iter().position(|h| h.worker_id == worker_id)?;
        let first = desk.waiting.get_mut(at)?;
        if first.rows.len() > limit.max(1) {
            let rest = first.rows.split_off(limit.max(1));
            let taken = std::mem::replace(&mut first.rows, rest);
            return Some(Handed {
                worker_id: first.worker_id.clone(),
                priority: first.priority,
                leased_at: first.leased_at,
                lease_until: first.lease_until,
                rows: taken,
            });
        }
        Some(desk.waiting.remove(at))
    }
}

/// Deliveries a publish is writing for a worker's idle loops (`Handoff::promise`): counted
/// against their room until dropped, so racing publishes do not overfill it. Kept once the
/// publish has committed (`keep`); dropped unkept when it did not.
pub struct Promise<'a> {
    handoff: &'a Handoff,
    channel: ChannelKind,
    worker_id: String,
    rows: usize,
}

impl Promise<'_> {
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// Hands over what the committed publish leased under this promise.
    pub fn keep(self, handed: Handed) {
        self.handoff.give(self.channel, handed);
    }
}

impl Drop for Promise<'_> {
    fn drop(&mut self) {
        let mut desks = self.handoff.desks();
        if let Some(promised) = desks
            .get_mut(&self.channel)
            .and_then(|desk| desk.promised.get_mut(&self.worker_id))
        {
            *promised = promised.saturating_sub(self.rows);
        }
    }
}

/// One claim loop, as the handoff knows it: idle or busy. Dropped, it no longer counts.
pub struct Listener<'a> {
    handoff: &'a Handoff,
    channel: ChannelKind,
    worker_id: String,
    idle: AtomicBool,
}

impl Listener<'_> {
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    pub fn channel(&self) -> ChannelKind {
        self.channel
    }

    /// Marks the loop idle (its pass found nothing) or busy (a pass is under way).
    pub fn set_idle(&self, idle: bool) {
        if self.idle.swap(idle, Ordering::SeqCst) == idle {
            return;
        }
        let mut desks = self.handoff.desks();
        let loops = desks
            .entry(self.channel)
            .or_default()
            .idle
            .entry(self.worker_id.clone())
            .or_insert(0);
        if idle {
            *loops += 1;
        } else {
            *loops = loops.saturating_sub(1);
        }
    }
}

impl Drop for Listener<'_> {
    fn drop(&mut self) {
        self.set_idle(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handed(worker: &str, priority: i32, rows: usize) -> Handed {
        let at = DateTime::<Utc>::UNIX_EPOCH;
        Handed {
            worker_id: worker.into(),
            priority,
            leased_at: at,
            lease_until: at,
            rows: (0..rows)
                .map(|i| Claimed {
                    id: format!("{priority}-{i}"),
                    item_id: "item".into(),
                    channel: ChannelKind::Loudspeaker,
                    kind: DeliveryKind::Publish,
                    attempts: 1,
                    target_id: format!("t{i}"),
                    rendition_id: "r".into(),
                    idempotency_key: format!("k{i}"),
                    not_after: None,
                    withdraws_id: None,
                    checkpoint: None,
                })
                .collect(),
        }
    }

    #[test]
    fn only_idle_loops_are_promised_anything_and_only_what_they_take_at_once() {
        let handoff = Handoff::default();
        let speakers = ChannelKind::Loudspeaker;
        let worker = |p: Option<Promise<'_>>| p.map(|p| p.worker_id().to_owned());
        assert_eq!(worker(handoff.promise(speakers, 1, 10)), None, "no loop listens");
        let listener = handoff.listen(speakers, "w1");
        assert_eq!(worker(handoff.promise(speakers, 1, 10)), None, "the loop is busy");
        listener.set_idle(true);
        assert_eq!(worker(handoff.promise(speakers, 10, 10)).as_deref(), Some("w1"));
        assert_eq!(worker(handoff.promise(ChannelKind::Wechat, 1, 10)), None);
        assert_eq!(
            worker(handoff.promise(speakers, 11, 10)),
            None,
            "more than one idle loop takes"
        );
        let second = handoff.listen(speakers, "w1");
        second.set_idle(true);
        assert_eq!(
            worker(handoff.promise(speakers, 20, 10)).as_deref(),
            Some("w1"),
            "two loops take 20"
        );
        drop(second);

        // A publish that did not commit drops its promise unkept: the room is free again.
        let failed = handoff.promise(speakers, 10, 10).expect("room for 10");
        assert_eq!(worker(handoff.promise(speakers, 1, 10)), None, "10 promised");
        drop(failed);
        assert_eq!(worker(handoff.promise(speakers, 10, 10)).as_deref(), Some("w1"));
        // A promise counts until dropped, so a racing publish finds no room...
        let racing = handoff.promise(speakers, 6, 10).expect("room for 6");
        assert_eq!(
            worker(handoff.promise(speakers, 5, 10)),
            None,
            "6 promised, 5 more exceed 10"
        );
        // ...and once kept, what it handed counts instead.
        racing.keep(handed("w1", 0, 6));
        assert_eq!(
            worker(handoff.promise(speakers, 5, 10)),
            None,
            "6 wait, 5 more exceed 10"
        );
        assert_eq!(worker(handoff.promise(speakers, 4, 10)).as_deref(), Some("w1"));
        assert!(handoff.take(speakers, "w1", 10).is_some());
        assert_eq!(
            worker(handoff.promise(speakers, 10, 10)).as_deref(),
            Some("w1"),
            "taken, room again"
        );
        drop(listener);
        assert_eq!(worker(handoff.promise(speakers, 1, 10)), None, "the loop ended");
    }

    #[test]
    fn takes_come_highest_priority_first_in_batches() {
        let handoff = Handoff::default();
        let speakers = ChannelKind::Loudspeaker;
        handoff.give(speakers, handed("w1", 0, 3));
        handoff.give(speakers, handed("w1", 100, 5));
        handoff.give(speakers, handed("w1", 0, 1));
        assert!(
            handoff.take(speakers, "w2", 10).is_none(),
            "nothing for another worker"
        );
        let ids = |h: Option<Handed>| -> Vec<String> {
            h.expect("something waits")
                .rows
                .into_iter()
                .map(|r| r.id)
                .collect()
        };
        assert_eq!(
            ids(handoff.take(speakers, "w1", 4)),
            ["100-0", "100-1", "100-2", "100-3"]
        );
        assert_eq!(ids(handoff.take(speakers, "w1", 4)), ["100-4"]);
        assert_eq!(ids(handoff.take(speakers, "w1", 4)), ["0-0", "0-1", "0-2"]);
        assert_eq!(ids(handoff.take(speakers, "w1", 4)), ["0-0"]);
        assert!(handoff.take(speakers, "w1", 4).is_none());
    }
}
