//! Errors in the words county staff read: every error answer carries `message_zh` beside the
//! English `message`, and `field_label`, the field as the form labels it (成文日期, not
//! `written_date`), with the expected format where there is one.

/// The form's label for an input field; an indexed field (`attachments[0].sha256`) is
/// labelled by its list and position.
pub fn field_label(field: &str) -> Option<String> {
    let (base, rest) = match field.find(['[', '.']) {
        Some(at) => field.split_at(at),
        None => (field, ""),
    };
    let label = LABELS.iter().find(|(name, _)| *name == base)?.1;
    let position = rest
        .strip_prefix('[')
        .and_then(|inner| inner.split(']').next())
        .and_then(|n| n.parse::<usize>().ok());
    Some(match position {
        Some(n) => format!("{label}（第{}项）", n + 1),
        None => label.to_owned(),
    })
}

/// What a field must look like, said in words, for the fields with a fixed form.
fn expected_form(field: &str) -> Option<&'static str> {
    let base = field.split(['[', '.']).next().unwrap_or(field);
    FORMS
        .iter()
        .find(|(name, _)| *name == base)
        .map(|(_, form)| *form)
}

/// The Chinese message for an error answer of `code` about `field`.
pub fn message_zh(code: &str, field: Option<&str>) -> String {
    let what = CODES
        .iter()
        .find(|(known, _)| *known == code)
        .map_or("操作未能完成", |(_, said)| said);
    let Some(field) = field else {
        return format!("{what}。");
    };
    let label = field_label(field).unwrap_or_else(|| field.to_owned());
    match expected_form(field) {
        Some(form) => format!("{label}：{what}。应为{form}。"),
        None => format!("{label}：{what}。"),
    }
}

/// Removes a parser's position ("at line 1 column 1791") from a message meant for people.
pub fn without_parser_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(at) if message[at..].contains(" column ") => {
            let after = &message[at + " at line ".len()..];
            let end = after
                .find(" column ")
                .map(|c| c + " column ".len())
                .map(|c| {
                    c + after[c..]
                        .find(|ch: char| !ch.is_ascii_digit())
                        .unwrap_or(after.len() - c)
                })
                .unwrap_or(after.len());
            format!("{}{}", &message[..at], &after[end..])
        }
        _ => message.to_owned(),
    }
}

const LABELS: [(&str, &str); 57] = [
    ("title", "标题"),
    ("body", "正文"),
    ("summary", "摘要"),
    ("disclosure", "公开属性"),
    ("redacted_body", "删减后正文"),
    ("legal_reason", "不予公开的理由"),
    ("index_no", "索引号"),
    ("issuers", "发文机关"),
    ("doc_no", "发文字号"),
    ("written_date", "成文日期"),
    ("topic", "主题分类"),
    ("validity", "有效性"),
    ("genre", "文种"),
    ("keywords", "关键词"),
    ("catalog", "所属栏目"),
    ("catalogs", "栏目"),
    ("area_code", "行政区划"),
    ("area", "行政区划"),
    ("tags", "标签"),
    ("attachments", "附件"),
    ("year", "年度"),
    ("page", "页码"),
    ("emergency", "紧急信息"),
    ("expires_on", "有效期至"),
    ("interprets", "所解读的政策"),
    ("correction_note", "更正说明"),
    ("confirm_duplicate_doc_no", "确认重复发文字号"),
    ("username", "用户名"),
    ("password", "密码"),
    ("current_password", "当前密码"),
    ("new_password", "新密码"),
    ("role", "角色"),
    ("display_name", "姓名"),
    ("comment", "审核意见"),
    ("reason", "理由"),
    ("version", "版本"),
    ("confirmed", "保密审查确认"),
    ("decision", "审核结论"),
    ("channel", "渠道"),
    ("channels", "渠道"),
    ("targets", "发布目标"),
    ("name", "名称"),
    ("config", "配置"),
    ("secrets", "密钥"),
    ("not_before", "定时发布时间"),
    ("not_after", "截止时间"),
    ("limit", "每页条数"),
    ("offset", "起始位置"),
    ("state", "状态"),
    ("q", "搜索词"),
    ("Content-Type", "内容类型"),
    ("Idempotency-Key", "请求幂等键"),
    ("device_id", "设备编号"),
    ("public_key", "设备公钥"),
    ("group", "设备分组"),
    ("aliases", "别名"),
    ("retired", "停用"),
];

const FORMS: [(&str, &str); 7] = [
    (
        "written_date",
        "年-月-日，如 2026-09-28，不早于 1949-10-01、不晚于今天",
    ),
    ("expires_on", "年-月-日，如 2026-12-31"),
    ("index_no", "机构代码/年份-流水号，如 000014349/2026-00001"),
    ("doc_no", "机关代字〔年份〕序号号，如 峨政办发〔2026〕12号"),
    ("area_code", "6 位（县）、9 位（乡镇）或 12 位（村）行政区划代码"),
    ("not_before", "带时区的时间，如 2026-10-01T08:00:00+08:00"),
    ("new_password", "至少 10 个字符，含字母、数字、符号中的两类"),
];

const CODES: [(&str, &str); 30] = [
    ("invalid", "填写不符合要求"),
    ("malformed_request", "请求格式有误，无法读取"),
    ("unsupported_media_type", "请以 JSON 格式提交"),
    ("too_large", "内容超过大小限制"),
    ("not_found", "未找到该对象，或您无权查看"),
    ("no_route", "没有这个接口"),
    ("forbidden", "您没有执行此操作的权限"),
    ("unauthenticated", "请先登录或提供有效的接口令牌"),
    ("rate_limited", "尝试过于频繁，请稍后再试"),
    ("internal", "系统内部错误，已记录，请联系管理员"),
    ("invalid_state", "当前状态下不能执行此操作"),
    ("unchanged", "内容没有改动"),
    ("stale_version", "您审核的不是最新版本，请刷新后重新审核"),
    ("confidentiality_check_missing", "须先完成保密审查"),
    ("not_publishable", "依申请公开或不公开的信息不能发布"),
    ("expired", "有效期已过，不能发布"),
    ("policy_not_published", "政策解读须在所解读的政策发布之后发布"),
    (
        "duplicate_doc_no",
        "该发文字号已被本机关其他信息使用；如确属同号发文，请勾选确认后再提交",
    ),
    ("area_out_of_scope", "超出您所辖的行政区划"),
    ("password_change_required", "您使用的是初始密码，请先修改密码"),
    ("superseded", "该版本已被更正，不能再次发送"),
    ("not_retryable", "只有失败或待核实的投递可以重试"),
    ("replayed", "该请求已处理过"),
    ("stale", "请求时间与服务器时间相差过大"),
    ("alert_superseded", "该预警已被更新或解除"),
    ("unrenderable", "该信息无法转换为此渠道的格式"),
    (
        "unknown_organ",
        "不在发文机关名录中；请从名录中选择，或请管理员将该机关或这一写法（作为别名）加入名录",
    ),
    ("retired_organ", "该机关已停用（撤并），不能作为新信息的发文机关"),
    (
        "organ_name_taken",
        "该名称已是名录中另一机关的名称或别名，同一写法只能指向一个机关",
    ),
    (
        "unknown_topic",
        "不在主题分类表中；请选择一级分类，或“一级分类\\二级分类”，如 综合政务\\应急管理",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_named_as_the_form_labels_them_with_their_form() {
        assert_eq!(field_label("written_date").as_deref(), Some("成文日期"));
        assert_eq!(
            field_label("attachments[1].sha256").as_deref(),
            Some("附件（第2项）")
        );
        assert_eq!(field_label("nonsense"), None);
        let said = message_zh("invalid", Some("written_date"));
        assert!(
            said.starts_with("成文日期：填写不符合要求。应为年-月-日"),
            "{said}"
        );
        assert_eq!(message_zh("forbidden", None), "您没有执行此操作的权限。");
        assert_eq!(message_zh("some_new_code", Some("x")), "x：操作未能完成。");
    }

    #[test]
    fn a_parsers_position_is_not_shown() {
        assert_eq!(
            without_parser_position("the body is not one JSON value: expected `,` at line 1 column 1791"),
            "the body is not one JSON value: expected `,`"
        );
        assert_eq!(without_parser_position("nothing to strip"), "nothing to strip");
    }
}
