//! Administrative divisions: county (6 digits) → township (9) → village (12). A code's parent is
//! the code with its last three digits removed, so "within a subtree" is a prefix test.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AreaLevel {
    County,
    Township,
    Village,
}

impl AreaLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            AreaLevel::County => "county",
            AreaLevel::Township => "township",
            AreaLevel::Village => "village",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AreaCode(String);

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("area code `{0}` is not 6, 9 or 12 digits")]
pub struct MalformedAreaCode(String);

impl AreaCode {
    pub fn parse(raw: &str) -> Result<Self, MalformedAreaCode> {
        let well_formed = matches!(raw.len(), 6 | 9 | 12) && raw.bytes().all(|b| b.is_ascii_digit());
        if well_formed {
            Ok(Self(raw.to_owned()))
        } else {
            Err(MalformedAreaCode(raw.to_owned()))
        }
    }

    pub fn level(&self) -> AreaLevel {
        match self.0.len() {
            6 => AreaLevel::County,
            9 => AreaLevel::Township,
            _ => AreaLevel::Village,
        }
    }

    pub fn parent(&self) -> Option<AreaCode> {
        (self.0.len() > 6).then(|| AreaCode(self.0[..self.0.len() - 3].to_owned()))
    }

    /// True when `self` is `scope` or lies below it.
    pub fn is_within(&self, scope: &AreaCode) -> bool {
        self.0.starts_with(&scope.0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for AreaCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone)]
pub struct Area {
    pub code: AreaCode,
    pub name: String,
    /// Where the area's seat (村委会, 乡镇政府) stands, WGS 84, when the file gives it: an
    /// alert drawn as a polygon or circle reaches the areas whose seat lies inside.
    pub seat: Option<Point>,
}

/// A WGS 84 position in degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub lat: f64,
    pub lon: f64,
}

#[derive(Debug, Clone)]
pub struct AreaTree {
    areas: BTreeMap<AreaCode, Area>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AreaFile {
    areas: Vec<AreaRow>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AreaRow {
    code: String,
    name: String,
    #[serde(default)]
    lat: Option<f64>,
    #[serde(default)]
    lon: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum AreaTreeError {
    #[error("area file is not valid TOML: {0}")]
    Syntax(#[from] toml::de::Error),
    #[error(transparent)]
    Malformed(#[from] MalformedAreaCode),
    #[error("area {0} appears twice")]
    Duplicate(String),
    #[error("area {code} has no parent {parent} in the file")]
    Orphan { code: String, parent: String },
    #[error("area {0} has an empty name")]
    Unnamed(String),
    #[error("the area file lists no county")]
    NoCounty,
    #[error("area {0}: give both lat and lon, within -90..90 and -180..180, or neither")]
    BadSeat(String),
}

pub const DEMO_AREAS: &str = include_str!("../../config/areas.toml");

impl AreaTree {
    pub fn from_toml(text: &str) -> Result<Self, AreaTreeError> {
        let file: AreaFile = toml::from_str(text)?;
        let mut areas = BTreeMap::new();
        for row in file.areas {
            let code = AreaCode::parse(&row.code)?;
            if row.name.trim().is_empty() {
                return Err(AreaTreeError::Unnamed(row.code));
            }
            let seat = match (row.lat, row.lon) {
                (None, None) => None,
                (Some(lat), Some(lon))
                    if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) =>
                {
                    Some(Point { lat, lon })
                }
                _ => return Err(AreaTreeError::BadSeat(row.code)),
            };
            let area = Area {
                code: code.clone(),
                name: row.name.trim().to_owned(),
                seat,
            };
            if areas.insert(code, area).is_some() {
                return Err(AreaTreeError::Duplicate(row.code));
            }
        }
        for code in areas.keys() {
            if let Some(parent) = code.parent().filter(|parent| !areas.contains_key(parent)) {
                return Err(AreaTreeError::Orphan {
                    code: code.to_string(),
                    parent: parent.to_string(),
                });
            }
        }
        if !areas.keys().any(|code| code.level() == AreaLevel::County) {
            return Err(AreaTreeError::NoCounty);
        }
        Ok(Self { areas })
    }

    pub fn get(&self, code: &AreaCode) -> Option<&Area> {
        self.areas.get(code)
    }

    /// Parses a code and checks it names an area of this tree.
    pub fn resolve(&self, raw: &str) -> Result<AreaCode, String> {
        let code = AreaCode::parse(raw).map_err(|e| e.to_string())?;
        if self.areas.contains_key(&code) {
            Ok(code)
        } else {
            Err(format!("area code `{raw}` is not in the configured area tree"))
        }
    }

    /// The first county: where a fresh installation's first administrator is scoped.
    pub fn root(&self) -> &Area {
        // `from_toml` guarantees a county exists; counties sort before their descendants.
        self.areas
            .values()
            .find(|area| area.code.level() == AreaLevel::County)
            .unwrap_or_else(|| unreachable!("AreaTree always holds a county"))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Area> {
        self.areas.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_tree_loads() {
        let tree = AreaTree::from_toml(DEMO_AREAS).expect("demo areas load");
        assert_eq!(tree.root().code.level(), AreaLevel::County);
        assert!(tree.iter().any(|a| a.code.level() == AreaLevel::Village));
    }

    #[test]
    fn subtree_membership_is_by_prefix() {
        let village = AreaCode::parse("530426001001").expect("valid");
        let township = AreaCode::parse("530426001").expect("valid");
        let other = AreaCode::parse("530426002").expect("valid");
        assert!(village.is_within(&township));
        assert!(!village.is_within(&other));
        assert_eq!(village.parent(), Some(township));
    }

    #[test]
    fn malformed_codes_and_orphans_are_refused() {
        assert!(AreaCode::parse("53042").is_err());
        assert!(AreaCode::parse("5304260a1").is_err());
        let orphan = "[[areas]]\ncode = \"530426\"\nname = \"县\"\n[[areas]]\ncode = \"530426009001\"\nname = \"村\"\n";
        assert!(matches!(
            AreaTree::from_toml(orphan),
            Err(AreaTreeError::Orphan { .. })
        ));
    }
}
