//! Text as it enters the hub: trimmed, bounded, and free of control characters. Every text
//! field of every request passes one of these with its documented limit, so nothing
//! unbounded reaches the store.

use crate::error::Error;

/// Names, titles of things, labels.
pub const MAX_NAME_CHARS: usize = 100;
/// Review comments (审核意见).
pub const MAX_COMMENT_CHARS: usize = 2000;
/// Why an item is withdrawn; shown on the public 清理结果 page.
pub const MAX_REASON_CHARS: usize = 500;
/// Ids of items, users, targets and tokens (UUIDs, 36 characters).
pub const MAX_ID_CHARS: usize = 64;

fn checked(
    field: &str,
    raw: &str,
    max_chars: usize,
    required: bool,
    allowed: fn(char) -> bool,
) -> Result<String, Error> {
    let text = raw.trim();
    if required && text.is_empty() {
        return Err(Error::validation(field, "must not be empty"));
    }
    if text.chars().count() > max_chars {
        return Err(Error::validation(
            field,
            format!("must be at most {max_chars} characters"),
        ));
    }
    if !text.chars().all(allowed) {
        return Err(Error::validation(field, "must not contain control characters"));
    }
    Ok(text.to_owned())
}

/// One line of plain text: no line breaks, no control characters.
pub fn single_line(field: &str, raw: &str, max_chars: usize, required: bool) -> Result<String, Error> {
    checked(field, raw, max_chars, required, |c| !c.is_control())
}

/// Plain text that may run over several lines (comments, reasons).
pub fn multi_line(field: &str, raw: &str, max_chars: usize, required: bool) -> Result<String, Error> {
    checked(field, raw, max_chars, required, |c| {
        !c.is_control() || matches!(c, '\n' | '\r' | '\t')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(result: Result<String, Error>) -> Option<String> {
        match result {
            Err(Error::Validation { field, .. }) => Some(field),
            _ => None,
        }
    }

    #[test]
    fn text_is_trimmed_bounded_and_free_of_control_characters() {
        assert_eq!(
            single_line("name", "  村委会  ", 10, true).ok().as_deref(),
            Some("村委会")
        );
        assert_eq!(
            field_of(single_line("name", "", 10, true)).as_deref(),
            Some("name")
        );
        assert_eq!(
            field_of(single_line("name", &"字".repeat(11), 10, true)).as_deref(),
            Some("name")
        );
        assert_eq!(
            field_of(single_line("name", "a\u{0}b", 10, true)).as_deref(),
            Some("name")
        );
        assert_eq!(
            field_of(single_line("name", "a\nb", 10, true)).as_deref(),
            Some("name")
        );
        assert_eq!(
            multi_line("comment", "第一行\n第二行", 10, true).ok().as_deref(),
            Some("第一行\n第二行")
        );
        assert_eq!(
            field_of(multi_line("comment", "a\u{7}b", 10, true)).as_deref(),
            Some("comment")
        );
        assert_eq!(multi_line("comment", "", 10, false).ok().as_deref(), Some(""));
    }
}
