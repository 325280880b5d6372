//! Herald's channels: the vocabulary every part of the hub shares, and (as they arrive) one
//! adapter module per channel behind a single trait.
//!
//! **Architecture Invariant:** only this crate knows third-party channel APIs (WeChat, media
//! centers, device payloads). The hub speaks in [`ChannelKind`] and renditions.

use serde::{Deserialize, Serialize};

/// Every kind of destination Herald delivers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// The government portal Herald serves itself (政府信息公开 column).
    Portal,
    /// WeChat official accounts (微信公众号).
    Wechat,
    /// The county convergence media center (融媒体中心).
    MediaCenter,
    /// Village notice-board displays (信息公示屏), over MQTT.
    NoticeBoard,
    /// Village loudspeaker controllers (大喇叭), over MQTT.
    Loudspeaker,
}

impl ChannelKind {
    pub const ALL: [ChannelKind; 5] = [
        ChannelKind::Portal,
        ChannelKind::Wechat,
        ChannelKind::MediaCenter,
        ChannelKind::NoticeBoard,
        ChannelKind::Loudspeaker,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Portal => "portal",
            ChannelKind::Wechat => "wechat",
            ChannelKind::MediaCenter => "media_center",
            ChannelKind::NoticeBoard => "notice_board",
            ChannelKind::Loudspeaker => "loudspeaker",
        }
    }

    /// The name staff see in the console.
    pub fn label_zh(self) -> &'static str {
        match self {
            ChannelKind::Portal => "政府门户网站",
            ChannelKind::Wechat => "微信公众号",
            ChannelKind::MediaCenter => "融媒体中心",
            ChannelKind::NoticeBoard => "村务公开屏",
            ChannelKind::Loudspeaker => "村村通大喇叭",
        }
    }

    /// Devices report back as they receive, verify, start and finish an item.
    pub fn is_device(self) -> bool {
        matches!(self, ChannelKind::NoticeBoard | ChannelKind::Loudspeaker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_serde() {
        for kind in ChannelKind::ALL {
            let json = serde_json::to_string(&kind).expect("serialises");
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
    }
}
