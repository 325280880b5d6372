//! MQTT topic names. Device ids and area codes are single topic levels (no `/`, `+`, `#`),
//! which the id checks guarantee.
//!
//! ```text
//! herald/v1/d/{device}/cmd      hub → one device          QoS 1
//! herald/v1/a/{area}/cmd        hub → devices in an area  QoS 1
//! herald/v1/d/{device}/status   device → hub, retained    QoS 1 (also the will)
//! herald/v1/d/{device}/birth    device → hub              QoS 1
//! herald/v1/d/{device}/ack      device → hub              QoS 1
//! herald/v1/d/{device}/health   device → hub              QoS 1
//! herald/v1/d/{device}/proof    device → hub              QoS 1
//! ```

use alloc::{format, string::String, vec::Vec};

use crate::command::Audience;

/// The first two levels of every topic; the version changes only with an incompatible frame.
pub const PREFIX: &str = "herald/v1";

/// Where the hub sends commands for one device.
pub fn device_commands(device: &str) -> String {
    format!("{PREFIX}/d/{device}/cmd")
}

/// Where the hub sends commands for every device in an area (6, 9 or 12 digits).
pub fn area_commands(area: &str) -> String {
    format!("{PREFIX}/a/{area}/cmd")
}

/// Where a device publishes reports of `kind` (`status`, `birth`, `ack`, `health`, `proof`).
pub fn report(device: &str, kind: &str) -> String {
    format!("{PREFIX}/d/{device}/{kind}")
}

/// The report kinds a device publishes, each its own topic level.
pub const REPORT_KINDS: [&str; 6] = ["status", "birth", "ack", "health", "proof", "bundle"];

/// The filters the hub subscribes to, one per report kind (`herald/v1/d/+/status`, …). Not
/// `herald/v1/d/+/+`: that also matches `…/cmd`, and MQTT 3.1.1 has no "no local", so the
/// broker would send the hub back every command it publishes, doubling a fan-out's traffic.
pub fn hub_report_filters() -> impl Iterator<Item = String> {
    REPORT_KINDS.iter().map(|kind| report("+", kind))
}

/// The filter hubs subscribed to before `hub_report_filters`; a hub whose broker kept its
/// session unsubscribes from it.
pub const OLD_HUB_FILTER: &str = "herald/v1/d/+/+";

/// Whether a device's broker account may publish to `topic` (PROTOCOL.md §2.2): its own
/// report topics only.
pub fn device_may_publish(device: &str, topic: &str) -> bool {
    parse_report(topic).is_some_and(|(owner, kind)| owner == device && REPORT_KINDS.contains(&kind))
}

/// Whether a device's broker account may subscribe to `filter` (PROTOCOL.md §2.2): its own
/// command topic and area command topics, no wildcard but the area level's `+`.
pub fn device_may_subscribe(device: &str, filter: &str) -> bool {
    if filter == device_commands(device) {
        return true;
    }
    let Some(area) = filter
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.strip_prefix("/a/"))
        .and_then(|rest| rest.strip_suffix("/cmd"))
    else {
        return false;
    };
    area == "+" || (!area.is_empty() && area.bytes().all(|b| b.is_ascii_digit()))
}

/// The topics a device subscribes to: its own, and its county, township and village areas.
pub fn subscriptions(device: &str, area: Option<&str>) -> Vec<String> {
    let mut topics = alloc::vec![device_commands(device)];
    if let Some(area) = area {
        for digits in [6, 9, 12] {
            if let Some(prefix) = area.get(..digits) {
                topics.push(area_commands(prefix));
            }
        }
    }
    topics
}

/// The topics one command goes to.
pub fn for_audience(audience: &Audience) -> Vec<String> {
    match audience {
        Audience::Devices(devices) => devices.iter().map(|d| device_commands(d)).collect(),
        Audience::Areas(areas) => areas.iter().map(|a| area_commands(a)).collect(),
    }
}

/// `(device, kind)` of a report topic (what `hub_report_filters` match).
pub fn parse_report(topic: &str) -> Option<(&str, &str)> {
    let rest = topic.strip_prefix(PREFIX)?.strip_prefix("/d/")?;
    let (device, kind) = rest.split_once('/')?;
    if device.is_empty() || kind.contains('/') || kind == "cmd" {
        return None;
    }
    Some((device, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_may_use_its_own_topics_only() {
        assert!(device_may_publish("spk-1", "herald/v1/d/spk-1/ack"));
        assert!(device_may_publish("spk-1", "herald/v1/d/spk-1/status"));
        assert!(
            !device_may_publish("spk-1", "herald/v1/d/spk-2/ack"),
            "another device's report"
        );
        assert!(!device_may_publish("spk-1", "herald/v1/d/spk-1/cmd"), "a command");
        assert!(!device_may_publish("spk-1", "herald/v1/a/411421/cmd"));
        assert!(!device_may_publish("spk-1", "herald/v1/d/spk-1/ack/x"));
        assert!(device_may_subscribe("spk-1", "herald/v1/d/spk-1/cmd"));
        assert!(device_may_subscribe("spk-1", "herald/v1/a/411421103/cmd"));
        assert!(device_may_subscribe("spk-1", "herald/v1/a/+/cmd"));
        assert!(
            !device_may_subscribe("spk-1", "herald/v1/d/spk-2/cmd"),
            "another device's commands"
        );
        assert!(!device_may_subscribe("spk-1", "herald/v1/d/+/cmd"));
        assert!(!device_may_subscribe("spk-1", "herald/v1/d/spk-2/ack"));
        assert!(!device_may_subscribe("spk-1", "#"));
        assert!(!device_may_subscribe("spk-1", "herald/v1/a/#"));
    }

    #[test]
    fn subscriptions_cover_the_device_and_each_area_level() {
        assert_eq!(
            subscriptions("spk-1", Some("411421103201")),
            [
                "herald/v1/d/spk-1/cmd",
                "herald/v1/a/411421/cmd",
                "herald/v1/a/411421103/cmd",
                "herald/v1/a/411421103201/cmd",
            ]
        );
        assert_eq!(parse_report("herald/v1/d/spk-1/ack"), Some(("spk-1", "ack")));
        assert_eq!(parse_report("herald/v1/d/spk-1/cmd"), None);
        assert_eq!(parse_report("herald/v1/d/spk-1/a/b"), None);
    }
}
