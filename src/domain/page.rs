//! How much of a listing a request asks for, bounded before it reaches a query.

use crate::error::Error;

/// Larger offsets are refused: no listing is paged that deep, and every bound value must fit
/// the databases' signed 64-bit integers.
pub const MAX_OFFSET: u64 = 100_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: u64,
    pub offset: u64,
}

impl Page {
    /// `limit` defaults to `default_limit` and must be 1..=`max_limit`; `offset` defaults to 0
    /// and must be at most `MAX_OFFSET`.
    pub fn parse(
        limit: Option<u64>,
        offset: Option<u64>,
        default_limit: u64,
        max_limit: u64,
    ) -> Result<Self, Error> {
        let limit = limit.unwrap_or(default_limit);
        if limit == 0 || limit > max_limit {
            return Err(Error::validation("limit", format!("must be 1–{max_limit}")));
        }
        let offset = offset.unwrap_or(0);
        if offset > MAX_OFFSET {
            return Err(Error::validation("offset", format!("must be 0–{MAX_OFFSET}")));
        }
        Ok(Self { limit, offset })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_offsets_outside_their_bounds_name_the_parameter() {
        assert_eq!(
            Page::parse(None, None, 50, 200).ok(),
            Some(Page { limit: 50, offset: 0 })
        );
        for (limit, offset, field) in [
            (Some(0), None, "limit"),
            (Some(201), None, "limit"),
            (Some(u64::MAX), None, "limit"),
            (None, Some(MAX_OFFSET + 1), "offset"),
            (None, Some(u64::MAX), "offset"),
            (None, Some(1 << 63), "offset"),
        ] {
            match Page::parse(limit, offset, 50, 200) {
                Err(Error::Validation { field: named, .. }) => assert_eq!(named, field),
                other => panic!("{limit:?}/{offset:?} gave {other:?}"),
            }
        }
    }
}
