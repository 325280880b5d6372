//! Catalog entries an item is filed under: the 政府信息公开 sub-columns, the 条例 Art. 20/21
//! statutory categories and the standard-directory domains. Loaded from an editable file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CatalogGroup {
    Guide,
    Rules,
    AnnualReport,
    StatutoryArt20,
    StatutoryArt21,
    StatutoryTownship,
    StandardDomain,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CatalogEntry {
    pub code: String,
    pub group: CatalogGroup,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct Catalog {
    entries: BTreeMap<String, CatalogEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    entries: Vec<CatalogEntry>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog file is not valid: {0}")]
    Syntax(#[from] toml::de::Error),
    #[error("catalog entry `{0}` appears twice")]
    Duplicate(String),
    #[error("catalog entry `{0}` has an empty code or name")]
    Blank(String),
}

pub const DEFAULT_CATALOG: &str = include_str!("../../config/catalog.toml");

impl Catalog {
    pub fn from_toml(text: &str) -> Result<Self, CatalogError> {
        let file: CatalogFile = toml::from_str(text)?;
        let mut entries = BTreeMap::new();
        for entry in file.entries {
            if entry.code.trim().is_empty() || entry.name.trim().is_empty() {
                return Err(CatalogError::Blank(entry.code));
            }
            let code = entry.code.clone();
            if entries.insert(code.clone(), entry).is_some() {
                return Err(CatalogError::Duplicate(code));
            }
        }
        Ok(Self { entries })
    }

    pub fn get(&self, code: &str) -> Option<&CatalogEntry> {
        self.entries.get(code)
    }

    pub fn iter(&self) -> impl Iterator<Item = &CatalogEntry> {
        self.entries.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_catalog_has_all_fifteen_article_20_categories() {
        let catalog = Catalog::from_toml(DEFAULT_CATALOG).expect("loads");
        let art20 = catalog
            .iter()
            .filter(|e| e.group == CatalogGroup::StatutoryArt20)
            .count();
        assert_eq!(art20, 15);
    }

    #[test]
    fn duplicates_are_refused() {
        let text = "[[entries]]\ncode=\"a\"\ngroup=\"guide\"\nname=\"x\"\n[[entries]]\ncode=\"a\"\ngroup=\"rules\"\nname=\"y\"\n";
        assert!(matches!(
            Catalog::from_toml(text),
            Err(CatalogError::Duplicate(_))
        ));
    }
}
