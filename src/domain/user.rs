//! Accounts: roles and names.

use serde::{Deserialize, Serialize};

use super::area::{AreaCode, AreaLevel};

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    clap::ValueEnum,
    utoipa::ToSchema,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
    strum::Display,
    sea_orm::DeriveValueType,
)]
#[sea_orm(value_type = "String")]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Role {
    /// Drafts, submits and publishes items.
    Publisher,
    /// Reviews items, including the confidentiality check (保密审查).
    Reviewer,
    /// A village committee's operator: drafts village items and announcements.
    VillageOperator,
    /// Manages accounts and may do everything within their area.
    Admin,
}

herald_channels::wire_names!(Role);

impl Role {
    /// A village operator works for exactly one village.
    pub fn check_scope(self, area: &AreaCode) -> Result<(), String> {
        if self == Role::VillageOperator && area.level() != AreaLevel::Village {
            return Err(format!(
                "a village_operator must be scoped to a village (12 digits), not {area}"
            ));
        }
        Ok(())
    }

    pub fn may_author(self) -> bool {
        matches!(self, Role::Publisher | Role::VillageOperator | Role::Admin)
    }

    pub fn may_review(self) -> bool {
        matches!(self, Role::Reviewer | Role::Admin)
    }

    pub fn may_publish(self) -> bool {
        matches!(self, Role::Publisher | Role::VillageOperator | Role::Admin)
    }

    pub fn may_withdraw(self) -> bool {
        matches!(self, Role::Publisher | Role::Reviewer | Role::Admin)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let valid_len = (2..=Self::MAX_CHARS).contains(&raw.chars().count());
        let valid_chars = raw
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if valid_len && valid_chars {
            Ok(Self(raw.to_owned()))
        } else {
            Err("must be 2–64 letters, digits, '.', '_' or '-'".into())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Passwords chosen by people must be long enough to resist guessing at the login rate limit.
pub const MIN_PASSWORD_CHARS: usize = 10;

/// Longer passwords are refused before hashing: hashing megabytes per attempt would let anyone
/// keep the server busy.
pub const MAX_PASSWORD_BYTES: usize = 1024;

pub fn check_password_length(password: &str) -> Result<(), String> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!("must be at most {MAX_PASSWORD_BYTES} bytes"));
    }
    Ok(())
}

pub fn check_password_strength(password: &str) -> Result<(), String> {
    check_password_length(password)?;
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!("must be at least {MIN_PASSWORD_CHARS} characters"));
    }
    // Two kinds of character at least (letters, digits, others), and not one repeated or
    // counted up: what a guesser tries first.
    let kinds = [
        password.chars().any(char::is_alphabetic),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(|c| !c.is_alphanumeric()),
    ];
    if kinds.iter().filter(|k| **k).count() < 2 {
        return Err("must mix at least two of letters, digits and other characters".into());
    }
    let lower = password.to_lowercase();
    let distinct: std::collections::HashSet<char> = lower.chars().collect();
    if distinct.len() < 4 || COMMON_PASSWORDS.iter().any(|common| lower.contains(common)) {
        return Err("is too easy to guess".into());
    }
    Ok(())
}

/// Fragments of passwords guessers try first.
const COMMON_PASSWORDS: [&str; 6] = [
    "password1",
    "12345678",
    "qwerty123",
    "admin123",
    "abc12345",
    "87654321",
];

#[cfg(test)]
mod wire_name_tests {
    use super::*;
    use crate::domain::assert_wire_names_agree;

    #[test]
    fn wire_names_match_serde() {
        assert_eq!(Role::ALL.len(), 4);
        assert_wire_names_agree(Role::ALL, Role::as_str, Role::parse);
        assert_eq!(Role::VillageOperator.as_str(), "village_operator");
        assert_eq!(Role::parse("Admin"), None);
    }
}
