//! 版本比较: what changed between two versions of an item, field by field and in the text,
//! for the reviewer deciding on the newer one.

use herald_channels::portal::plain_text;
use similar::{ChangeTag, TextDiff};

use super::*;
use crate::domain::item::ItemContent;

/// One field that differs between the versions.
pub(super) struct FieldChange {
    pub label: &'static str,
    pub before: String,
    pub after: String,
}

/// A run of the text: kept, removed or added.
pub(super) struct Segment {
    pub kind: &'static str,
    pub text: String,
}

pub(super) struct Comparison {
    pub from: i32,
    pub to: i32,
    pub fields: Vec<FieldChange>,
    /// The body's text with what was removed and added marked; empty: the body is unchanged.
    pub body: Vec<Segment>,
}

/// The version a reviewer compares the current one with: the one the public has, for a
/// correction; else the one before it.
pub(super) fn baseline(published_version: Option<i32>, current: i32) -> Option<i32> {
    match published_version {
        Some(published) if published < current => Some(published),
        _ => (current > 1).then(|| current - 1),
    }
}

pub(super) async fn compare(
    hub: &Hub,
    caller: &Caller,
    id: &str,
    from: i32,
    to: i32,
) -> Result<Comparison, Error> {
    let before = workflow::get_version(hub, caller, id, from).await?.content;
    let after = workflow::get_version(hub, caller, id, to).await?.content;
    let (Some(before), Some(after)) = (before, after) else {
        return Err(Error::from(anyhow::anyhow!(
            "item {id}: a version without content"
        )));
    };
    Ok(Comparison {
        from,
        to,
        fields: field_changes(&before, &after),
        body: text_changes(&paragraphs(&before.body), &paragraphs(&after.body)),
    })
}

fn field_changes(before: &ItemContent, after: &ItemContent) -> Vec<FieldChange> {
    let shown = |content: &ItemContent| -> Vec<(&'static str, String)> {
        vec![
            ("标题", content.title.clone()),
            ("摘要", content.summary.clone()),
            ("索引号", content.index_no.clone()),
            ("发文字号", content.doc_no.clone().unwrap_or_default()),
            ("成文日期", content.written_date.format("%Y-%m-%d").to_string()),
            ("发文机关", content.issuers.join("、")),
            ("主题分类", content.topic.join("\\")),
            ("公开目录", content.catalog.clone()),
            ("公开属性", disclosure_label(content.disclosure).to_owned()),
            (
                "不公开或删减的依据",
                content.legal_reason.clone().unwrap_or_default(),
            ),
            (
                "有效性",
                content
                    .validity
                    .map(|v| v.label_zh().to_owned())
                    .unwrap_or_default(),
            ),
            (
                "失效日期",
                content
                    .expires_on
                    .map(|d| d.format("%Y-%m-%d").to_string())
                    .unwrap_or_default(),
            ),
            ("紧急信息", if content.emergency { "是" } else { "否" }.to_owned()),
            (
                "附件",
                content
                    .attachments
                    .iter()
                    .map(|a| a.filename.clone())
                    .collect::<Vec<_>>()
                    .join("、"),
            ),
        ]
    };
    shown(before)
        .into_iter()
        .zip(shown(after))
        .filter(|((_, old), (_, new))| old != new)
        .map(|((label, before), (_, after))| FieldChange { label, before, after })
        .collect()
}

/// The body as its paragraphs' text, one a line.
fn paragraphs(html: &str) -> String {
    html.split("</p>")
        .flat_map(|block| block.split("<br>"))
        .map(|block| plain_text(block).trim().to_owned())
        .filter(|text| !text.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The text's changes, character by character, in runs; none when it is the same.
fn text_changes(before: &str, after: &str) -> Vec<Segment> {
    if before == after {
        return Vec::new();
    }
    let diff = TextDiff::from_chars(before, after);
    let mut segments: Vec<Segment> = Vec::new();
    for change in diff.iter_all_changes() {
        let kind = match change.tag() {
            ChangeTag::Equal => "same",
            ChangeTag::Delete => "removed",
            ChangeTag::Insert => "added",
        };
        match segments.last_mut() {
            Some(last) if last.kind == kind => last.text.push_str(change.value()),
            _ => segments.push(Segment {
                kind,
                text: change.value().to_owned(),
            }),
        }
    }
    segments
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_word_is_marked_where_it_changed() {
        let (old, new) = ("报名截止到十月十日。", "报名截止到十月二十日。");
        let segments = text_changes(old, new);
        assert_eq!(
            segments.first().map(|s| (s.kind, s.text.as_str())),
            Some(("same", "报名截止到十月"))
        );
        // The runs rebuild each version: kept and removed the old, kept and added the new.
        let rebuilt = |skipped: &str| -> String {
            segments
                .iter()
                .filter(|s| s.kind != skipped)
                .map(|s| s.text.as_str())
                .collect()
        };
        assert_eq!(rebuilt("added"), old);
        assert_eq!(rebuilt("removed"), new);
        assert!(
            segments
                .iter()
                .any(|s| s.kind == "added" && s.text.contains('二'))
        );
        assert!(text_changes("同", "同").is_empty());
    }

    #[test]
    fn paragraphs_are_lines() {
        assert_eq!(
            paragraphs("<p>第一段</p><p>第二段<br>续行</p>"),
            "第一段\n第二段\n续行"
        );
    }
}
