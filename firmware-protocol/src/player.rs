//! What a device does with the plays and displays it accepted (PROTOCOL.md §7.3): priority,
//! preemption, cancel, expiry, and the acks and proofs that report them.
//!
//! Sans-IO like the rest of the crate: the firmware (or the fleet simulator) hands in accepted
//! commands and the time, and wakes the player at [`Player::next_wake`]; the player says which
//! lifecycle acks and proofs to sign and send. Audio and screen are separate: a loudspeaker
//! with a screen plays one item and shows another.

use alloc::vec::Vec;

use crate::{
    command::{CommandBody, QuietHours},
    device::Accepted,
    report::{AckStage, Medium, Proof},
};

/// One thing the player reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Happening {
    /// Sign and send this lifecycle ack for the command ([`crate::device::DeviceSession::progress`]).
    Ack(Accepted, AckStage),
    /// Sign and send this proof ([`crate::device::DeviceSession::report`]).
    Proof(Proof),
}

#[derive(Clone, Debug)]
struct Item {
    accepted: Accepted,
    medium: Medium,
    priority: u8,
    /// Seconds one run takes: every repeat of a play, one cycle through a display's pages.
    length: u64,
    not_after: u64,
    /// A display stops showing here (its `until`).
    until: Option<u64>,
    start_at: Option<u64>,
    /// Audio that may start inside quiet hours (an emergency, by hub policy).
    through_quiet_hours: bool,
    started: Option<u64>,
    /// A display that has shown every page once is `finished`, and stays on screen.
    finished: bool,
}

impl Item {
    fn id(&self) -> &str {
        &self.accepted.command.id
    }

    /// When a running item next changes by itself.
    fn wake(&self) -> Option<u64> {
        let started = self.started?;
        let run_ends = started.saturating_add(self.length);
        match self.medium {
            Medium::Audio => Some(run_ends.min(self.not_after.saturating_add(1))),
            Medium::Display => {
                let stops = self
                    .until
                    .unwrap_or(u64::MAX)
                    .min(self.not_after.saturating_add(1));
                Some(if self.finished { stops } else { run_ends.min(stops) })
            }
        }
    }

    fn proof(&self, now: u64, completed: bool) -> Proof {
        let start = self.started.unwrap_or(now);
        Proof {
            item: self.accepted.command.id.clone(),
            medium: self.medium,
            start,
            end: now.max(start),
            duration_ms: now.saturating_sub(start).saturating_mul(1000),
            completed,
        }
    }
}

/// The device's items: at most one running per medium, the rest waiting in priority order,
/// first in first out within a priority.
#[derive(Clone, Debug, Default)]
pub struct Player {
    running: Vec<Item>,
    waiting: Vec<Item>,
    /// From `config`: no audio starts inside, unless its command overrides them.
    quiet_hours: Option<QuietHours>,
    /// From `config`: local time for the quiet hours, minutes east of UTC.
    utc_offset_minutes: i16,
}

impl Player {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes an accepted command ([`crate::device::Output::Execute`]). `length` is how many
    /// seconds one run takes on this device: the audio or speech times its repeats, or one
    /// cycle through a display's pages. Other commands (cancel, schedule sync, config) start
    /// and finish at once.
    pub fn execute(&mut self, now: u64, accepted: Accepted, length: u64) -> Vec<Happening> {
        let not_after = accepted.command.not_after;
        let (medium, priority, start_at, until, through_quiet_hours) = match &accepted.command.cmd {
            CommandBody::Play(play) => (
                Medium::Audio,
                play.priority,
                play.start_at,
                None,
                play.override_quiet_hours,
            ),
            CommandBody::Display(display) => (
                Medium::Display,
                display.priority,
                display.start_at,
                display.until,
                true,
            ),
            CommandBody::Config(config) => {
                if let Some(quiet) = &config.quiet_hours {
                    self.quiet_hours = Some(*quiet);
                }
                if let Some(offset) = config.utc_offset_minutes {
                    self.utc_offset_minutes = offset;
                }
                let mut happenings = alloc::vec![
                    Happening::Ack(accepted.clone(), AckStage::Started),
                    Happening::Ack(accepted, AckStage::Finished),
                ];
                happenings.extend(self.advance(now));
                return happenings;
            }
            CommandBody::Cancel(cancel) => {
                let mut happenings = self.cancel(now, cancel.target.as_deref());
                happenings.push(Happening::Ack(accepted.clone(), AckStage::Started));
                happenings.push(Happening::Ack(accepted, AckStage::Finished));
                happenings.extend(self.advance(now));
                return happenings;
            }
            _ => {
                return alloc::vec![
                    Happening::Ack(accepted.clone(), AckStage::Started),
                    Happening::Ack(accepted, AckStage::Finished),
                ];
            }
        };
        let id = accepted.command.id.clone();
        let item = Item {
            accepted,
            medium,
            priority,
            length,
            not_after,
            until,
            start_at,
            through_quiet_hours,
            started: None,
            finished: false,
        };
        // Stable: equal priorities keep their order of arrival.
        let at = self
            .waiting
            .iter()
            .position(|w| w.priority > item.priority)
            .unwrap_or(self.waiting.len());
        self.waiting.insert(at, item);
        let mut happenings = self.advance(now);
        if let Some(waiting) = self.waiting.iter().find(|w| w.id() == id) {
            happenings.push(Happening::Ack(waiting.accepted.clone(), AckStage::Queued));
        }
        happenings
    }

    /// Stops `target` (a command id), or everything when `None`: running items are
    /// `preempted` with a proof, waiting ones `preempted` without.
    pub fn cancel(&mut self, now: u64, target: Option<&str>) -> Vec<Happening> {
        let hit = |item: &Item| target.is_none_or(|t| item.id() == t);
        let mut happenings = Vec::new();
        let (stopped, kept): (Vec<Item>, Vec<Item>) = self.running.drain(..).partition(|i| hit(i));
        self.running = kept;
        for item in stopped {
            happenings.push(Happening::Proof(item.proof(now, item.finished)));
            // A display already `finished` has ended its life cycle; its proof says it left
            // the screen.
            if !item.finished {
                happenings.push(Happening::Ack(item.accepted, AckStage::Preempted));
            }
        }
        let (dropped, kept): (Vec<Item>, Vec<Item>) = self.waiting.drain(..).partition(|i| hit(i));
        self.waiting = kept;
        for item in dropped {
            happenings.push(Happening::Ack(item.accepted, AckStage::Preempted));
        }
        happenings
    }

    /// Moves the player to `now`: runs end, displays stop, waiting items expire or start, and
    /// a higher priority preempts a lower one.
    pub fn advance(&mut self, now: u64) -> Vec<Happening> {
        let mut happenings = Vec::new();
        let mut still = Vec::new();
        for mut item in self.running.drain(..) {
            let ran = now >= item.started.unwrap_or(now).saturating_add(item.length);
            match item.medium {
                Medium::Audio if ran => {
                    happenings.push(Happening::Ack(item.accepted.clone(), AckStage::Finished));
                    happenings.push(Happening::Proof(item.proof(now, true)));
                }
                Medium::Audio if now > item.not_after => {
                    happenings.push(Happening::Proof(item.proof(now, false)));
                    happenings.push(Happening::Ack(item.accepted, AckStage::Expired));
                }
                Medium::Audio => still.push(item),
                Medium::Display => {
                    if ran && !item.finished {
                        item.finished = true;
                        happenings.push(Happening::Ack(item.accepted.clone(), AckStage::Finished));
                    }
                    let until_passed = item.until.is_some_and(|until| now >= until);
                    if until_passed || now > item.not_after {
                        let completed = item.finished;
                        happenings.push(Happening::Proof(item.proof(now, completed)));
                        if !completed {
                            happenings.push(Happening::Ack(item.accepted, AckStage::Expired));
                        }
                    } else {
                        still.push(item);
                    }
                }
            }
        }
        self.running = still;
        // An item that expired while it waited never starts (`expired`, not `preempted`).
        let (expired, waiting): (Vec<Item>, Vec<Item>) = self
            .waiting
            .drain(..)
            .partition(|i| now > i.not_after || i.until.is_some_and(|until| now >= until));
        self.waiting = waiting;
        for item in expired {
            happenings.push(Happening::Ack(item.accepted, AckStage::Expired));
        }
        // The best waiting item of each medium starts when its time has come and nothing of
        // higher or equal priority runs; a lower one running is preempted.
        for medium in [Medium::Audio, Medium::Display] {
            let Some(at) = self.waiting.iter().position(|i| {
                i.medium == medium
                    && i.start_at.is_none_or(|s| s <= now)
                    && (i.through_quiet_hours || !self.is_quiet(now))
            }) else {
                continue;
            };
            let candidate = self.waiting[at].priority;
            if let Some(run) = self.running.iter().position(|r| r.medium == medium) {
                let running = &self.running[run];
                // A display that has shown every page gives way to the next of its priority,
                // as a notice board turns to its next notice; its proof says it ran to its end.
                let gives_way = running.finished && running.priority == candidate;
                if running.priority <= candidate && !gives_way {
                    continue;
                }
                let item = self.running.remove(run);
                happenings.push(Happening::Proof(item.proof(now, item.finished)));
                if !item.finished {
                    happenings.push(Happening::Ack(item.accepted, AckStage::Preempted));
                }
            }
            let mut item = self.waiting.remove(at);
            item.started = Some(now);
            happenings.push(Happening::Ack(item.accepted.clone(), AckStage::Started));
            self.running.push(item);
        }
        // A zero-length run (an instant simulator) ends in this same call, so the next item
        // of its medium starts now rather than at a wake that would never come.
        if self
            .running
            .iter()
            .any(|i| i.started == Some(now) && i.length == 0 && !i.finished)
        {
            happenings.extend(self.advance(now));
        }
        happenings
    }

    /// Local minute of the day at `now`, by the configured offset.
    fn local_minute(&self, now: u64) -> i64 {
        let local = i64::try_from(now).unwrap_or(i64::MAX) + i64::from(self.utc_offset_minutes) * 60;
        local.rem_euclid(86_400) / 60
    }

    /// Whether `now` is inside the configured quiet hours (`from > to` spans midnight).
    fn is_quiet(&self, now: u64) -> bool {
        let Some(quiet) = &self.quiet_hours else {
            return false;
        };
        let (from, to, minute) = (
            i64::from(quiet.from_minute),
            i64::from(quiet.to_minute),
            self.local_minute(now),
        );
        if from <= to {
            from <= minute && minute < to
        } else {
            minute >= from || minute < to
        }
    }

    /// When the quiet hours around `now` end (the next `to_minute`, on the minute).
    fn quiet_ends(&self, now: u64) -> Option<u64> {
        let quiet = self.quiet_hours.as_ref().filter(|_| self.is_quiet(now))?;
        let minutes = (i64::from(quiet.to_minute) - self.local_minute(now)).rem_euclid(1440);
        let into_minute = now % 60;
        let ahead = u64::try_from(minutes).ok()?.saturating_mul(60);
        Some(now.saturating_sub(into_minute).saturating_add(ahead))
    }

    /// The earliest time after `now` at which [`Player::advance`] has something to do, if
    /// any. A waiting item whose start time has come waits for the running one to end, whose
    /// own time is already counted, or for the quiet hours to end; so nothing returned is in
    /// the past.
    pub fn next_wake(&self, now: u64) -> Option<u64> {
        let held_by_quiet = self.waiting.iter().any(|i| !i.through_quiet_hours);
        let quiet_end = self.quiet_ends(now).filter(|_| held_by_quiet);
        let running = self.running.iter().filter_map(Item::wake).chain(quiet_end);
        let waiting = self.waiting.iter().flat_map(|i| {
            [
                Some(i.not_after.saturating_add(1)),
                i.until,
                i.start_at.filter(|s| *s > now),
            ]
            .into_iter()
            .flatten()
        });
        running.chain(waiting).filter(|at| *at > now).min()
    }

    /// The command ids playing or showing now.
    pub fn running(&self) -> impl Iterator<Item = &str> {
        self.running.iter().map(Item::id)
    }
}

#[cfg(test)]
mod tests {
    use alloc::{string::String, vec, vec::Vec};

    use super::*;
    use crate::command::{Audience, Cancel, Command, Display, Play, PlaySource, TtsText};

    const NOW: u64 = 1_790_000_000;

    fn accepted(id: &str, cmd: CommandBody) -> Accepted {
        Accepted {
            key_id: 1,
            command: Command {
                seq: 1,
                issued_at: NOW,
                not_after: NOW + 600,
                id: id.into(),
                to: Audience::Devices(vec!["d".into()]),
                cmd,
            },
        }
    }

    fn play(id: &str, priority: u8) -> Accepted {
        accepted(
            id,
            CommandBody::Play(Play {
                priority,
                source: PlaySource::Tts(TtsText {
                    text: "通知".into(),
                    lang: "zh-CN".into(),
                }),
                repeat: 1,
                start_at: None,
                override_quiet_hours: false,
            }),
        )
    }

    fn display(id: &str, priority: u8, until: Option<u64>) -> Accepted {
        accepted(
            id,
            CommandBody::Display(Display {
                priority,
                pages: vec!["通知".into()],
                page_seconds: 10,
                qr: None,
                start_at: None,
                until,
            }),
        )
    }

    fn cancel(id: &str, target: Option<&str>) -> Accepted {
        accepted(
            id,
            CommandBody::Cancel(Cancel {
                target: target.map(Into::into),
            }),
        )
    }

    /// The acks as (command id, stage), proofs as (item, "proof", completed).
    fn acks(happenings: &[Happening]) -> Vec<(String, AckStage)> {
        happenings
            .iter()
            .filter_map(|h| match h {
                Happening::Ack(a, stage) => Some((a.command.id.clone(), *stage)),
                Happening::Proof(_) => None,
            })
            .collect()
    }

    fn proofs(happenings: &[Happening]) -> Vec<(String, bool)> {
        happenings
            .iter()
            .filter_map(|h| match h {
                Happening::Proof(p) => Some((p.item.clone(), p.completed)),
                Happening::Ack(..) => None,
            })
            .collect()
    }

    #[test]
    fn a_play_starts_runs_its_length_then_finishes_with_a_proof() {
        let mut player = Player::new();
        let h = player.execute(NOW, play("a", 5), 30);
        assert_eq!(acks(&h), vec![("a".into(), AckStage::Started)]);
        assert_eq!(player.next_wake(NOW), Some(NOW + 30));
        assert!(player.advance(NOW + 29).is_empty());
        let h = player.advance(NOW + 30);
        assert_eq!(acks(&h), vec![("a".into(), AckStage::Finished)]);
        assert_eq!(proofs(&h), vec![("a".into(), true)]);
        assert_eq!(player.running().count(), 0);
    }

    #[test]
    fn a_zero_length_play_finishes_at_once() {
        let mut player = Player::new();
        let h = player.execute(NOW, play("a", 5), 0);
        let want = vec![("a".into(), AckStage::Started), ("a".into(), AckStage::Finished)];
        assert_eq!(acks(&h), want);
        assert_eq!(proofs(&h), vec![("a".into(), true)]);
    }

    #[test]
    fn a_higher_priority_preempts_and_the_preempted_item_never_resumes() {
        let mut player = Player::new();
        player.execute(NOW, play("routine", 5), 60);
        let h = player.execute(NOW + 5, play("alarm", 2), 30);
        let want = vec![
            ("routine".into(), AckStage::Preempted),
            ("alarm".into(), AckStage::Started),
        ];
        assert_eq!(acks(&h), want);
        assert_eq!(proofs(&h), vec![("routine".into(), false)]);
        let h = player.advance(NOW + 35);
        assert_eq!(acks(&h), vec![("alarm".into(), AckStage::Finished)]);
        assert_eq!(player.running().count(), 0, "the routine item does not come back");
    }

    #[test]
    fn equal_or_lower_priority_waits_and_starts_after() {
        let mut player = Player::new();
        player.execute(NOW, play("first", 5), 10);
        let h = player.execute(NOW + 1, play("second", 5), 10);
        assert_eq!(acks(&h), vec![("second".into(), AckStage::Queued)]);
        let h = player.execute(NOW + 2, play("lower", 6), 10);
        assert_eq!(acks(&h), vec![("lower".into(), AckStage::Queued)]);
        let h = player.advance(NOW + 10);
        let want = vec![
            ("first".into(), AckStage::Finished),
            ("second".into(), AckStage::Started),
        ];
        assert_eq!(acks(&h), want);
        let h = player.advance(NOW + 20);
        let want = vec![
            ("second".into(), AckStage::Finished),
            ("lower".into(), AckStage::Started),
        ];
        assert_eq!(acks(&h), want);
    }

    #[test]
    fn a_cancel_stops_its_target_and_the_next_item_starts() {
        let mut player = Player::new();
        player.execute(NOW, display("alert", 2, None), 0);
        player.execute(NOW, display("notice", 5, None), 0);
        assert_eq!(player.running().collect::<Vec<_>>(), vec!["alert"]);
        let h = player.execute(NOW + 5, cancel("c", Some("alert")), 0);
        let want = vec![
            ("c".into(), AckStage::Started),
            ("c".into(), AckStage::Finished),
            ("notice".into(), AckStage::Started),
            ("notice".into(), AckStage::Finished),
        ];
        assert_eq!(acks(&h), want);
        assert_eq!(
            proofs(&h),
            vec![("alert".into(), true)],
            "the alert had shown every page"
        );
        assert_eq!(player.running().collect::<Vec<_>>(), vec!["notice"]);
    }

    #[test]
    fn a_cancel_of_everything_stops_running_and_waiting_items() {
        let mut player = Player::new();
        player.execute(NOW, play("a", 5), 60);
        player.execute(NOW, play("b", 5), 60);
        let h = player.execute(NOW + 1, cancel("c", None), 0);
        let want = vec![
            ("a".into(), AckStage::Preempted),
            ("b".into(), AckStage::Preempted),
            ("c".into(), AckStage::Started),
            ("c".into(), AckStage::Finished),
        ];
        assert_eq!(acks(&h), want);
        assert_eq!(player.next_wake(NOW + 1), None);
    }

    #[test]
    fn a_display_shows_until_its_until_then_proves_it() {
        let mut player = Player::new();
        let h = player.execute(NOW, display("alert", 2, Some(NOW + 100)), 20);
        assert_eq!(acks(&h), vec![("alert".into(), AckStage::Started)]);
        let h = player.advance(NOW + 20);
        assert_eq!(acks(&h), vec![("alert".into(), AckStage::Finished)]);
        assert_eq!(
            player.running().collect::<Vec<_>>(),
            vec!["alert"],
            "still on screen"
        );
        assert_eq!(player.next_wake(NOW + 20), Some(NOW + 100));
        let h = player.advance(NOW + 100);
        assert_eq!(proofs(&h), vec![("alert".into(), true)]);
        assert_eq!(player.running().count(), 0);
    }

    #[test]
    fn a_shown_display_gives_way_to_the_next_of_its_priority_but_not_to_a_lower_one() {
        let mut player = Player::new();
        player.execute(NOW, display("first", 5, None), 0);
        let h = player.execute(NOW + 1, display("lower", 6, None), 0);
        assert_eq!(acks(&h), vec![("lower".into(), AckStage::Queued)]);
        let h = player.execute(NOW + 2, display("second", 5, None), 0);
        let want = vec![
            ("second".into(), AckStage::Started),
            ("second".into(), AckStage::Finished),
        ];
        assert_eq!(acks(&h), want);
        assert_eq!(proofs(&h), vec![("first".into(), true)]);
    }

    #[test]
    fn audio_and_screen_run_side_by_side() {
        let mut player = Player::new();
        player.execute(NOW, play("spoken", 5), 60);
        let h = player.execute(NOW, display("shown", 5, None), 60);
        assert_eq!(acks(&h), vec![("shown".into(), AckStage::Started)]);
        assert_eq!(player.running().count(), 2);
    }

    #[test]
    fn a_waiting_item_past_not_after_expires_without_starting() {
        let mut player = Player::new();
        player.execute(NOW, play("long", 2), 10_000);
        player.execute(NOW, play("later", 5), 10);
        let h = player.advance(NOW + 601);
        assert!(acks(&h).contains(&("later".into(), AckStage::Expired)));
    }

    #[test]
    fn the_next_wake_is_never_in_the_past() {
        let mut player = Player::new();
        player.execute(NOW, play("long", 2), 100);
        let mut due = play("due", 5);
        if let CommandBody::Play(p) = &mut due.command.cmd {
            p.start_at = Some(NOW + 10);
        }
        player.execute(NOW, due, 10);
        // Past its start time it waits for the long one, which ends at NOW + 100.
        assert_eq!(player.next_wake(NOW + 50), Some(NOW + 100));
    }

    fn config(quiet: (u16, u16)) -> Accepted {
        accepted(
            "config",
            CommandBody::Config(crate::command::Config {
                volume: None,
                quiet_hours: Some(QuietHours {
                    from_minute: quiet.0,
                    to_minute: quiet.1,
                }),
                utc_offset_minutes: Some(480),
                area: None,
                health_interval_s: None,
            }),
        )
    }

    #[test]
    fn quiet_hours_hold_routine_audio_until_they_end_but_not_an_override_or_a_display() {
        // NOW is 2026-09-21 14:13:20 UTC: 22:13:20 Beijing time, inside 22:00–22:20.
        let mut player = Player::new();
        player.execute(NOW, config((1320, 1340)), 0);
        let h = player.execute(NOW, play("routine", 5), 10);
        assert_eq!(acks(&h), vec![("routine".into(), AckStage::Queued)]);
        // 22:20 is 6 min 40 s on, before the command's not_after.
        let end = NOW + 6 * 60 + 40;
        assert_eq!(player.next_wake(NOW), Some(end));
        assert!(player.advance(end - 1).is_empty());
        assert_eq!(
            acks(&player.advance(end)),
            vec![("routine".into(), AckStage::Started)]
        );

        // 22:00–06:00, across midnight.
        let mut player = Player::new();
        player.execute(NOW, config((1320, 360)), 0);
        let mut alarm = play("alarm", 2);
        if let CommandBody::Play(p) = &mut alarm.command.cmd {
            p.override_quiet_hours = true;
        }
        assert_eq!(
            acks(&player.execute(NOW, alarm, 10)),
            vec![("alarm".into(), AckStage::Started)]
        );
        let shown = player.execute(NOW, display("notice", 5, None), 10);
        assert_eq!(acks(&shown), vec![("notice".into(), AckStage::Started)]);
    }

    #[test]
    fn outside_quiet_hours_audio_starts_at_once() {
        let mut player = Player::new();
        // 23:00–05:00 Beijing time; NOW is 22:13.
        player.execute(NOW, config((1380, 300)), 0);
        assert_eq!(
            acks(&player.execute(NOW, play("routine", 5), 10)),
            vec![("routine".into(), AckStage::Started)]
        );
    }

    #[test]
    fn a_start_time_holds_an_item_back() {
        let mut player = Player::new();
        let mut timed = play("timed", 5);
        if let CommandBody::Play(p) = &mut timed.command.cmd {
            p.start_at = Some(NOW + 50);
        }
        let h = player.execute(NOW, timed, 10);
        assert_eq!(acks(&h), vec![("timed".into(), AckStage::Queued)]);
        assert_eq!(player.next_wake(NOW), Some(NOW + 50));
        let h = player.advance(NOW + 50);
        assert_eq!(acks(&h), vec![("timed".into(), AckStage::Started)]);
    }
}
