//! Where time comes from. The only place that reads the wall clock; everything else asks the
//! hub's `Clock`, so tests cross deadlines by setting it. Ids come from here too: a v7 UUID
//! carries the hub time it was made at, so id order and hub time agree, under the test clock
//! as under the system one.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use uuid::{ContextV7, Timestamp, Uuid};

use crate::store;

/// Where time comes from: the system, or a hand-set instant so tests can cross deadlines
/// without sleeping.
#[derive(Clone, Debug)]
pub enum Clock {
    System,
    Manual(Arc<Mutex<ManualTime>>),
}

/// A hand-set instant, and the counter that orders the ids made within one of its milliseconds.
#[derive(Debug)]
pub struct ManualTime {
    at: DateTime<Utc>,
    ids: ContextV7,
}

/// Orders the ids the system clock makes within one millisecond, across every hub in the process.
static SYSTEM_IDS: Mutex<ContextV7> = Mutex::new(ContextV7::new());

impl Clock {
    pub fn manual(start: DateTime<Utc>) -> Self {
        Clock::Manual(Arc::new(Mutex::new(ManualTime {
            at: start,
            ids: ContextV7::new(),
        })))
    }

    pub fn now(&self) -> DateTime<Utc> {
        let now = match self {
            Clock::System => Utc::now(),
            Clock::Manual(time) => time.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).at,
        };
        store::store_time(now)
    }

    /// Moves a manual clock; the system clock cannot be set.
    pub fn set(&self, to: DateTime<Utc>) {
        if let Clock::Manual(time) = self {
            let mut time = time.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if to < time.at {
                // The counter never goes back in time: without a fresh one, ids made after
                // moving the clock back would carry the later time instead of the hub's.
                time.ids = ContextV7::new();
            }
            time.at = to;
        }
    }

    /// A new id: a v7 UUID of the hub's current time (to the millisecond), ordered after every
    /// id this clock made earlier in that millisecond.
    pub fn new_id(&self) -> Uuid {
        match self {
            Clock::System => {
                let now = self.now();
                let ids = SYSTEM_IDS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                v7_at(&ids, now)
            }
            Clock::Manual(time) => {
                let time = time.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                v7_at(&time.ids, store::store_time(time.at))
            }
        }
    }
}

fn v7_at(ids: &ContextV7, at: DateTime<Utc>) -> Uuid {
    // A UUIDv7 holds no time before 1970; no hub runs there, and its ids then start at 1970.
    let seconds = u64::try_from(at.timestamp()).unwrap_or(0);
    Uuid::new_v7(Timestamp::from_unix(ids, seconds, at.timestamp_subsec_nanos()))
}

/// Dates of publication and deadlines are Beijing time (UTC+8, no daylight saving).
pub fn china_offset() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).unwrap_or_else(|| unreachable!("+08:00 is a valid offset"))
}

pub fn china_date(t: DateTime<Utc>) -> NaiveDate {
    t.with_timezone(&china_offset()).date_naive()
}

/// The first instant after `day` ends in Beijing.
pub fn end_of_china_day(day: NaiveDate) -> DateTime<Utc> {
    let next = day.succ_opt().unwrap_or(day);
    next.and_hms_opt(0, 0, 0)
        .and_then(|midnight| midnight.and_local_timezone(china_offset()).single())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| unreachable!("midnight in a fixed offset always exists"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis_of(id: Uuid) -> u64 {
        let (seconds, nanos) = id.get_timestamp().expect("a v7 id has a timestamp").to_unix();
        seconds * 1000 + u64::from(nanos) / 1_000_000
    }

    fn hub_millis(clock: &Clock) -> u64 {
        u64::try_from(clock.now().timestamp_millis()).expect("after 1970")
    }

    #[test]
    fn ids_follow_the_hub_time_when_the_clock_moves_either_way() {
        let start: DateTime<Utc> = "2026-10-08T08:00:00.123456Z".parse().expect("time");
        let clock = Clock::manual(start);
        let mut made = Vec::new();
        for at in [
            start,
            start + chrono::Duration::hours(3),
            start - chrono::Duration::days(2),
            start + chrono::Duration::milliseconds(1),
            start - chrono::Duration::days(2) + chrono::Duration::milliseconds(5),
        ] {
            clock.set(at);
            // Several within the same millisecond, in the order they were made.
            let ids: Vec<Uuid> = (0..50).map(|_| clock.new_id()).collect();
            for id in &ids {
                assert_eq!(millis_of(*id), hub_millis(&clock), "the id carries the hub time");
                assert_eq!(id.get_version_num(), 7);
            }
            assert!(
                ids.windows(2).all(|w| w[0] < w[1]),
                "made in one millisecond, ordered"
            );
            made.push((clock.now(), ids));
        }
        // Sorted by hub time, the ids sort the same way, as text too (that is what the store sorts).
        made.sort_by_key(|(at, _)| *at);
        let in_hub_order: Vec<String> = made
            .iter()
            .flat_map(|(_, ids)| ids.iter().map(Uuid::to_string))
            .collect();
        let mut sorted = in_hub_order.clone();
        sorted.sort();
        assert_eq!(in_hub_order, sorted);
    }

    #[test]
    fn system_ids_are_ordered_and_carry_the_time() {
        let clock = Clock::System;
        let before = hub_millis(&clock);
        let ids: Vec<Uuid> = (0..200).map(|_| clock.new_id()).collect();
        let after = hub_millis(&clock);
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        for id in ids {
            // The shared counter may run ahead of the clock by a millisecond when it overflows.
            assert!((before..=after + 1).contains(&millis_of(id)));
        }
    }
}
