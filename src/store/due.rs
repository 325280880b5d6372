//! Wakes this process's claim loops when a transaction it committed made deliveries due, and
//! its receipt appliers when it stored receipts.
//!
//! An idle loop sleeps for `delivery.poll_interval_ms` (500 ms by default) between empty
//! passes. Without a wake-up, an emergency published while every loop slept waited up to that
//! long before its first claim, and a device's ack as long before it moved its delivery. Other
//! hub instances on the same database still find the rows at their next poll; the instance
//! that wrote them acts at once.

use std::{pin::Pin, time::Duration};

use herald_channels::ChannelKind;
use tokio::sync::{Notify, futures::Notified};

/// A wake-up armed before a loop's pass (see `DueSignal::armed`).
pub type Armed<'a> = Pin<Box<Notified<'a>>>;

/// One signal per channel, so a publish wakes only the loops that have something to claim,
/// and one for the loops that apply stored receipts.
#[derive(Default)]
pub struct DueSignal {
    portal: Notify,
    wechat: Notify,
    media_center: Notify,
    notice_board: Notify,
    loudspeaker: Notify,
    receipts: Notify,
}

impl DueSignal {
    fn of(&self, channel: ChannelKind) -> &Notify {
        match channel {
            ChannelKind::Portal => &self.portal,
            ChannelKind::Wechat => &self.wechat,
            ChannelKind::MediaCenter => &self.media_center,
            ChannelKind::NoticeBoard => &self.notice_board,
            ChannelKind::Loudspeaker => &self.loudspeaker,
        }
    }

    /// Called once the transaction that made deliveries of `channel` due has committed: every
    /// loop of the channel waiting in `idle` claims at once.
    pub fn wake(&self, channel: ChannelKind) {
        self.of(channel).notify_waiters();
    }

    /// As `wake`, for a change that may touch any channel (a withdrawal reaches every one).
    pub fn wake_all(&self) {
        for &channel in ChannelKind::ALL {
            self.wake(channel);
        }
    }

    /// Called once receipts are stored (committed): the appliers waiting in `idle` apply them.
    pub fn wake_appliers(&self) {
        self.receipts.notify_waiters();
    }

    /// A wake-up of `channel`'s loops, armed now: one that comes while the loop is still
    /// claiming is kept, so a commit between a claim's read and the loop's sleep is not missed.
    pub fn armed(&self, channel: ChannelKind) -> Armed<'_> {
        arm(self.of(channel))
    }

    /// As `armed`, for the loops that apply receipts.
    pub fn armed_appliers(&self) -> Armed<'_> {
        arm(&self.receipts)
    }
}

fn arm(notify: &Notify) -> Armed<'_> {
    let mut notified = Box::pin(notify.notified());
    notified.as_mut().enable();
    notified
}

/// The longest pause after a failed pass (a busy database, a batch rolled back to be applied
/// again): however long the poll interval, a transient failure holds a loop up this long.
const AFTER_ERROR: Duration = Duration::from_secs(1);

/// A worker loop: runs `pass` until the process ends. After a pass that did something, the
/// next comes at once; after one that found nothing, `poll` later or at a wake-up `arm` armed
/// before it; after one that failed (`failed` reports it), at most `AFTER_ERROR` later.
pub async fn run_passes<'a, Fut>(
    poll: Duration,
    arm: impl Fn() -> Option<Armed<'a>>,
    pass: impl Fn() -> Fut,
    failed: impl Fn(&crate::error::Error),
) where
    Fut: std::future::Future<Output = crate::error::Result<usize>>,
{
    loop {
        // Armed before the pass, so a commit that lands while it reads still wakes the loop.
        let woken = arm();
        match pass().await {
            Ok(0) => idle(poll, woken).await,
            Ok(_) => {}
            Err(e) => {
                failed(&e);
                idle(poll.min(AFTER_ERROR), woken).await;
            }
        }
    }
}

/// An idle loop's pause: `poll` long, or until `woken` (when the loop has a wake-up).
async fn idle(poll: Duration, woken: Option<Armed<'_>>) {
    match woken {
        Some(woken) => {
            tokio::select! {
                () = woken => {}
                () = tokio::time::sleep(poll) => {}
            }
        }
        None => tokio::time::sleep(poll).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wake_after_arming_is_kept_until_awaited() {
        let signal = DueSignal::default();
        let armed = signal.armed(ChannelKind::Loudspeaker);
        signal.wake(ChannelKind::Loudspeaker);
        tokio::time::timeout(Duration::from_secs(5), armed)
            .await
            .expect("the wake that came before the wait is not lost");
    }

    #[tokio::test]
    async fn a_wake_reaches_only_its_own_channel() {
        let signal = DueSignal::default();
        let other = signal.armed(ChannelKind::Wechat);
        signal.wake(ChannelKind::Loudspeaker);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), other)
                .await
                .is_err(),
            "WeChat's loops sleep on"
        );
        let any = signal.armed(ChannelKind::Wechat);
        let appliers = signal.armed_appliers();
        signal.wake_all();
        tokio::time::timeout(Duration::from_secs(5), any)
            .await
            .expect("wake_all reaches every channel");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), appliers)
                .await
                .is_err(),
            "a channel's wake-up is not the appliers'"
        );
    }
}
