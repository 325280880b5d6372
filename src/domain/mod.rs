//! Domain types, parsed at the edge: once a value of these types exists, it is valid.

pub mod area;
pub mod audio;
pub mod calendar;
pub mod cap;
pub mod catalog;
pub mod delivery;
pub mod document;
pub mod ids;
pub mod item;
pub mod organ;
pub mod page;
pub mod review;
pub mod search;
pub mod text;
pub mod topic;
pub mod user;

/// For tests of the stored enums: serde, `Display` (what the store writes), `as_str` and
/// `parse` agree on every variant's wire name.
#[cfg(test)]
#[track_caller]
pub(crate) fn assert_wire_names_agree<T>(
    all: &[T],
    as_str: fn(T) -> &'static str,
    parse: fn(&str) -> Option<T>,
) where
    T: Copy + PartialEq + std::fmt::Debug + std::fmt::Display + serde::Serialize,
{
    for &value in all {
        let json = serde_json::to_string(&value).expect("serialises");
        assert_eq!(json, format!("\"{}\"", as_str(value)));
        assert_eq!(value.to_string(), as_str(value));
        assert_eq!(parse(as_str(value)), Some(value));
    }
}
