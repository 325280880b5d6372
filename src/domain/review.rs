//! What a review row records.

/// Stored in `reviews.kind`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
    strum::Display,
    sea_orm::DeriveValueType,
)]
#[sea_orm(value_type = "String")]
#[strum(serialize_all = "snake_case")]
pub enum ReviewKind {
    ConfidentialityCheck,
    Approve,
    Reject,
}

herald_channels::wire_names!(ReviewKind);

#[cfg(test)]
mod wire_name_tests {
    use super::*;

    #[test]
    fn review_kinds_keep_their_stored_names() {
        let names: Vec<&str> = ReviewKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names, ["confidentiality_check", "approve", "reject"]);
        for &kind in ReviewKind::ALL {
            assert_eq!(kind.to_string(), kind.as_str());
        }
    }
}
