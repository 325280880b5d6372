//! WeChat-safe article HTML: only the tags and inline styles an official account's article
//! keeps (wechat-api.md §A.4: scripts are stripped, images must be WeChat's own, links lead
//! nowhere but WeChat), so the preview shows what readers will see and nothing WeChat would
//! drop or refuse is sent.

use std::collections::{HashMap, HashSet};

/// The elements an article keeps.
const TAGS: [&str; 30] = [
    "p",
    "br",
    "span",
    "strong",
    "b",
    "em",
    "i",
    "u",
    "sub",
    "sup",
    "section",
    "blockquote",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "ul",
    "ol",
    "li",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "img",
    "a",
    "hr",
];

/// The inline style properties kept: layout and type, never anything that loads (`url(…)`).
const STYLES: [&str; 14] = [
    "text-align",
    "text-indent",
    "color",
    "background-color",
    "font-size",
    "font-weight",
    "font-style",
    "line-height",
    "letter-spacing",
    "margin",
    "margin-top",
    "margin-bottom",
    "padding",
    "text-decoration",
];

/// Where an article's links may lead: WeChat's own articles.
const LINK_PREFIX: &str = "https://mp.weixin.qq.com/";

/// `html` as WeChat keeps it.
pub fn wechat_safe(html: &str) -> String {
    let tag_attributes = HashMap::from([
        ("img", HashSet::from(["src", "alt"])),
        ("a", HashSet::from(["href"])),
        ("td", HashSet::from(["colspan", "rowspan"])),
        ("th", HashSet::from(["colspan", "rowspan"])),
    ]);
    ammonia::Builder::default()
        .tags(HashSet::from(TAGS))
        .tag_attributes(tag_attributes)
        .generic_attributes(HashSet::from(["style"]))
        .link_rel(None)
        .attribute_filter(|_, attribute, value| match attribute {
            "style" => Some(kept_styles(value))
                .filter(|kept| !kept.is_empty())
                .map(Into::into),
            // Another site's link stays as its text.
            "href" if !value.starts_with(LINK_PREFIX) => None,
            _ => Some(value.into()),
        })
        .clean(html)
        .to_string()
}

/// The declarations of `style` WeChat keeps, in order.
fn kept_styles(style: &str) -> String {
    style
        .split(';')
        .filter_map(|declaration| {
            let (name, value) = declaration.split_once(':')?;
            let name = name.trim().to_ascii_lowercase();
            let value = value.trim();
            let loads = value.to_ascii_lowercase().contains("url(") || value.contains("expression");
            (STYLES.contains(&name.as_str()) && !loads && !value.is_empty())
                .then(|| format!("{name}:{value}"))
        })
        .collect::<Vec<_>>()
        .join(";")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_wechat_keeps_is_sent() {
        let html = r#"<p style="text-align:right;position:fixed;background:url(x.png)">峨山县人民政府</p><script>alert(1)</script><iframe src="https://v.qq.com"></iframe><p><a href="https://example.com/a">外部链接</a> <a href="https://mp.weixin.qq.com/s/abc">往期</a></p><img src="/xxgk/attachments/ab" onerror="x()"><table><tr><td colspan="2" class="c">表格</td></tr></table>"#;
        let safe = wechat_safe(html);
        for kept in [
            r#"<p style="text-align:right">峨山县人民政府</p>"#,
            "<a>外部链接</a>",
            r#"<a href="https://mp.weixin.qq.com/s/abc">往期</a>"#,
            r#"<img src="/xxgk/attachments/ab">"#,
            r#"<td colspan="2">表格</td>"#,
        ] {
            assert!(safe.contains(kept), "{kept} missing from {safe}");
        }
        for dropped in [
            "script",
            "iframe",
            "position",
            "url(",
            "onerror",
            "class",
            "example.com",
        ] {
            assert!(!safe.contains(dropped), "{dropped} survived in {safe}");
        }
    }
}
