//! The events WeChat pushes about a publish (wechat-api.md §A.5.1), read from the decrypted
//! XML, and what each says of the delivery that submitted it.

use serde::{Deserialize, Deserializer};

use crate::{Permanence, ReceiptStatus};

/// A `PUBLISHJOBFINISH` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishFinished {
    /// The account's `gh_` id.
    pub account: String,
    pub created: i64,
    pub publish_id: String,
    pub status: i64,
    pub article_id: Option<String>,
    /// The published articles' URLs, in order.
    pub article_urls: Vec<String>,
    /// 1-based numbers of the articles that failed (statuses 2 and 4).
    pub fail_idx: Vec<u32>,
}

/// `publish_id` is documented as a string and pushed as a bare number: either is taken, and
/// kept as text.
fn text_or_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let raw = String::deserialize(deserializer)?;
    Ok(raw.trim().to_owned())
}

/// A `MASSSENDJOBFINISH` event (§A.6.1): how a mass send to followers ended, with its counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MassSendFinished {
    pub msg_id: String,
    /// `send success`, `send fail` or `err(N)`.
    pub status: String,
    pub total: u64,
    pub filtered: u64,
    pub sent: u64,
    pub failed: u64,
}

/// A push about a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    Publish(PublishFinished),
    MassSend(MassSendFinished),
}

#[derive(Deserialize)]
struct Push {
    #[serde(rename = "ToUserName")]
    to: String,
    #[serde(rename = "CreateTime")]
    created: i64,
    #[serde(rename = "MsgType")]
    msg_type: String,
    #[serde(rename = "Event", default)]
    event: Option<String>,
    #[serde(rename = "PublishEventInfo", default)]
    publish: Option<PublishEventInfo>,
    /// Spelled `MsgID` in this event; some senders write `MsgId`.
    #[serde(rename = "MsgID", alias = "MsgId", default)]
    msg_id: Option<String>,
    #[serde(rename = "Status", default)]
    status: Option<String>,
    #[serde(rename = "TotalCount", default)]
    total: Option<u64>,
    #[serde(rename = "FilterCount", default)]
    filtered: Option<u64>,
    #[serde(rename = "SentCount", default)]
    sent: Option<u64>,
    #[serde(rename = "ErrorCount", default)]
    failed: Option<u64>,
}

#[derive(Deserialize)]
struct PublishEventInfo {
    #[serde(deserialize_with = "text_or_number")]
    publish_id: String,
    publish_status: i64,
    #[serde(default)]
    article_id: Option<String>,
    #[serde(default)]
    article_detail: Option<ArticleDetail>,
    #[serde(default)]
    fail_idx: Vec<u32>,
}

#[derive(Deserialize)]
struct ArticleDetail {
    #[serde(default)]
    item: Vec<ArticleItem>,
}

#[derive(Deserialize)]
struct ArticleItem {
    article_url: String,
}

/// The `PUBLISHJOBFINISH` event in `xml`; `Ok(None)` for any other push.
pub fn publish_finished(xml: &[u8]) -> Result<Option<PublishFinished>, String> {
    match finished(xml)? {
        Some(Finished::Publish(event)) => Ok(Some(event)),
        _ => Ok(None),
    }
}

/// The `PUBLISHJOBFINISH` or `MASSSENDJOBFINISH` event in `xml`; `Ok(None)` for any other
/// push (a follower's message, a menu click), which the hub acknowledges and ignores.
pub fn finished(xml: &[u8]) -> Result<Option<Finished>, String> {
    let text = std::str::from_utf8(xml).map_err(|_| "the message is not UTF-8".to_owned())?;
    let push: Push = quick_xml::de::from_str(text).map_err(|e| format!("unreadable message XML: {e}"))?;
    if push.msg_type != "event" {
        return Ok(None);
    }
    match push.event.as_deref() {
        Some("PUBLISHJOBFINISH") => publish_event(push).map(|e| Some(Finished::Publish(e))),
        Some("MASSSENDJOBFINISH") => {
            let msg_id = push
                .msg_id
                .map(|id| id.trim().to_owned())
                .filter(|id| !id.is_empty())
                .ok_or_else(|| "MASSSENDJOBFINISH without MsgID".to_owned())?;
            Ok(Some(Finished::MassSend(MassSendFinished {
                msg_id,
                status: push.status.unwrap_or_default(),
                total: push.total.unwrap_or_default(),
                filtered: push.filtered.unwrap_or_default(),
                sent: push.sent.unwrap_or_default(),
                failed: push.failed.unwrap_or_default(),
            })))
        }
        _ => Ok(None),
    }
}

fn publish_event(push: Push) -> Result<PublishFinished, String> {
    let info = push
        .publish
        .ok_or_else(|| "PUBLISHJOBFINISH without PublishEventInfo".to_owned())?;
    Ok(PublishFinished {
        account: push.to,
        created: push.created,
        publish_id: info.publish_id,
        status: info.publish_status,
        article_id: info.article_id,
        article_urls: info
            .article_detail
            .map(|detail| detail.item.into_iter().map(|i| i.article_url).collect())
            .unwrap_or_default(),
        fail_idx: info.fail_idx,
    })
}

/// What a mass send's end says of its delivery (`Status`, or `mass/get`'s `msg_status`).
pub fn mass_send_outcome(status: &str) -> Option<ReceiptStatus> {
    let failed = |code: &str, message: String| ReceiptStatus::Failed {
        permanence: Permanence::Permanent,
        code: code.into(),
        message,
    };
    match status {
        "send success" | "SEND_SUCCESS" => Some(ReceiptStatus::Delivered),
        "SENDING" => None,
        "DELETE" => Some(ReceiptStatus::Withdrawn),
        "send fail" | "SEND_FAIL" => Some(failed("wechat_mass_send_failed", "群发失败".into())),
        other => {
            let code = other
                .strip_prefix("err(")
                .and_then(|rest| rest.strip_suffix(')'))
                .unwrap_or(other);
            let reason = match code {
                "10001" => "涉嫌广告",
                "20001" => "涉嫌政治",
                "20002" => "涉嫌色情",
                "20004" => "涉嫌社会问题",
                "20006" => "涉嫌违法犯罪",
                "20008" => "涉嫌欺诈",
                "20013" => "涉嫌版权问题",
                "22000" => "涉嫌互推",
                "30001" | "30002" | "30003" => "原创校验未通过",
                _ => "其他原因",
            };
            Some(failed(
                "wechat_mass_send_rejected",
                format!("群发未通过审核：{reason}（{other}）"),
            ))
        }
    }
}

/// What a publish status (the event's, or `freepublish/get`'s) says of the delivery: `None`
/// while it is still publishing (1) or for a status WeChat has not documented.
pub fn publish_outcome(status: i64, fail_idx: &[u32]) -> Option<ReceiptStatus> {
    let failed = |code: &str, message: String| ReceiptStatus::Failed {
        permanence: Permanence::Permanent,
        code: code.into(),
        message,
    };
    let articles = || fail_idx.iter().map(u32::to_string).collect::<Vec<_>>().join("、");
    match status {
        0 => Some(ReceiptStatus::Delivered),
        2 => Some(failed(
            "wechat_original_check",
            format!("原创声明校验未通过（第 {} 篇）", articles()),
        )),
        3 => Some(failed(
            "wechat_publish_failed",
            "微信发布失败（常规失败），可稍后重试".into(),
        )),
        4 => Some(failed(
            "wechat_review_rejected",
            format!("平台审核不通过（第 {} 篇）", articles()),
        )),
        // Out, then taken down on WeChat's side: by the account's own staff (5) or by the
        // platform (6).
        5 | 6 => Some(ReceiptStatus::Withdrawn),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_successful_publish_names_its_article_and_urls() {
        let xml = r#"<xml>
  <ToUserName><![CDATA[gh_4d00ed8d6399]]></ToUserName>
  <FromUserName><![CDATA[oV5CrjpxgaGXNHIQigzNlgLTnwic]]></FromUserName>
  <CreateTime>1481013459</CreateTime>
  <MsgType><![CDATA[event]]></MsgType>
  <Event><![CDATA[PUBLISHJOBFINISH]]></Event>
  <PublishEventInfo>
    <publish_id>2247503051</publish_id>
    <publish_status>0</publish_status>
    <article_id><![CDATA[b5O2OUs25HBxRceL7hfReg-U9QGeq9zQjiDvyWP4Hq4]]></article_id>
    <article_detail>
      <count>1</count>
      <item><idx>1</idx><article_url><![CDATA[ARTICLE_URL]]></article_url></item>
    </article_detail>
  </PublishEventInfo>
</xml>"#;
        let event = publish_finished(xml.as_bytes())
            .expect("reads")
            .expect("an event");
        assert_eq!(
            event,
            PublishFinished {
                account: "gh_4d00ed8d6399".into(),
                created: 1481013459,
                publish_id: "2247503051".into(),
                status: 0,
                article_id: Some("b5O2OUs25HBxRceL7hfReg-U9QGeq9zQjiDvyWP4Hq4".into()),
                article_urls: vec!["ARTICLE_URL".into()],
                fail_idx: Vec::new(),
            }
        );
        assert_eq!(
            publish_outcome(event.status, &event.fail_idx),
            Some(ReceiptStatus::Delivered)
        );
    }

    #[test]
    fn failed_articles_repeat_as_siblings_and_are_named_in_the_reason() {
        let xml = "<xml><ToUserName><![CDATA[gh_x]]></ToUserName><CreateTime>1</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[PUBLISHJOBFINISH]]></Event><PublishEventInfo><publish_id>2247503051</publish_id><publish_status>2</publish_status><fail_idx>1</fail_idx><fail_idx>2</fail_idx></PublishEventInfo></xml>";
        let event = publish_finished(xml.as_bytes())
            .expect("reads")
            .expect("an event");
        assert_eq!(event.fail_idx, [1, 2]);
        match publish_outcome(event.status, &event.fail_idx) {
            Some(ReceiptStatus::Failed { code, message, .. }) => {
                assert_eq!(code, "wechat_original_check");
                assert!(message.contains("1、2"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(publish_outcome(1, &[]), None, "still publishing");
        assert_eq!(publish_outcome(5, &[]), Some(ReceiptStatus::Withdrawn));
    }

    #[test]
    fn a_mass_send_event_gives_its_counts_and_its_outcome() {
        let xml = "<xml><ToUserName><![CDATA[gh_a96a4a619366]]></ToUserName><FromUserName><![CDATA[oR5G]]></FromUserName><CreateTime>1394524295</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[MASSSENDJOBFINISH]]></Event><MsgID>1988</MsgID><Status><![CDATA[send success]]></Status><TotalCount>100</TotalCount><FilterCount>80</FilterCount><SentCount>75</SentCount><ErrorCount>5</ErrorCount></xml>";
        let Some(Finished::MassSend(event)) = finished(xml.as_bytes()).expect("reads") else {
            panic!("not a mass send");
        };
        assert_eq!(
            (
                event.msg_id.as_str(),
                event.total,
                event.filtered,
                event.sent,
                event.failed
            ),
            ("1988", 100, 80, 75, 5)
        );
        assert_eq!(mass_send_outcome(&event.status), Some(ReceiptStatus::Delivered));
        assert_eq!(mass_send_outcome("SENDING"), None);
        match mass_send_outcome("err(20001)") {
            Some(ReceiptStatus::Failed { message, .. }) => assert!(message.contains("政治"), "{message}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn other_pushes_are_not_publish_events_and_junk_is_an_error() {
        let text = "<xml><ToUserName>gh_x</ToUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>你好</Content></xml>";
        assert_eq!(publish_finished(text.as_bytes()), Ok(None));
        assert!(publish_finished(b"<xml><MsgType>event").is_err());
        assert!(publish_finished(&[0xff, 0xfe]).is_err());
    }
}
