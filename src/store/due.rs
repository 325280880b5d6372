//! Wakes this process's claim loops when a transaction it committed made deliveries due.
//!
//! An idle claim loop sleeps for `delivery.poll_interval_ms` (500 ms by default) between
//! empty claims. Without a wake-up, an emergency published while every loop slept waited up
//! to that long before its first claim. Other hub instances on the same database still find
//! the deliveries at their next poll; the instance that wrote them starts at once.

use herald_channels::ChannelKind;
use tokio::sync::{Notify, futures::Notified};

/// One signal per channel, so a publish wakes only the loops that have something to claim.
#[derive(Default)]
pub struct DueSignal {
    portal: Notify,
    wechat: Notify,
    media_center: Notify,
    notice_board: Notify,
    loudspeaker: Notify,
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

    /// A wake-up of `channel`'s loops, armed now: one that comes while the loop is still
    /// claiming is kept, so a commit between a claim's read and the loop's sleep is not missed.
    pub fn armed(&self, channel: ChannelKind) -> std::pin::Pin<Box<Notified<'_>>> {
        let mut notified = Box::pin(self.of(channel).notified());
        notified.as_mut().enable();
        notified
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
        signal.wake_all();
        tokio::time::timeout(Duration::from_secs(5), any)
            .await
            .expect("wake_all reaches every channel");
    }
}
