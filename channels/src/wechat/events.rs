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

/// The `PUBLISHJOBFINISH` event in `xml`; `Ok(None)` for any other push (a follower's
/// message, a menu click), which the hub acknowledges and ignores.
pub fn publish_finished(xml: &[u8]) -> Result<Option<PublishFinished>, String> {
    let text = std::str::from_utf8(xml).map_err(|_| "the message is not UTF-8".to_owned())?;
    let push: Push = quick_xml::de::from_str(text).map_err(|e| format!("unreadable message XML: {e}"))?;
    if push.msg_type != "event" || push.event.as_deref() != Some("PUBLISHJOBFINISH") {
        return Ok(None);
    }
    let info = push
        .publish
        .ok_or_else(|| "PUBLISHJOBFINISH without PublishEventInfo".to_owned())?;
    Ok(Some(PublishFinished {
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
    }))
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
    fn other_pushes_are_not_publish_events_and_junk_is_an_error() {
        let text = "<xml><ToUserName>gh_x</ToUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>你好</Content></xml>";
        assert_eq!(publish_finished(text.as_bytes()), Ok(None));
        assert!(publish_finished(b"<xml><MsgType>event").is_err());
        assert!(publish_finished(&[0xff, 0xfe]).is_err());
    }
}
