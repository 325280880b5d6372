//! 发文机关: the organs whose documents are published, each under one full name (the name its
//! items and its portal page carry) with the other spellings in use as aliases, so 峨山县水务局
//! and 峨山彝族自治县水务局 are one organ. Pure: the list is read from the seed file here and
//! from the database by the `organs` module; an item's issuers are resolved against it.

use std::collections::HashMap;

use serde::Deserialize;

use super::{
    area::{AreaCode, AreaTree},
    text::{MAX_NAME_CHARS, single_line},
};
use crate::error::Error;

/// At most this many aliases an organ.
pub const MAX_ALIASES: usize = 20;

/// An organ of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organ {
    pub name: String,
    pub aliases: Vec<String>,
    /// Where it sits in the area tree; `None` counts as the whole tree.
    pub area_code: Option<AreaCode>,
    /// No longer exists (机构改革): its published items stay, new items cannot name it.
    pub retired: bool,
}

impl Organ {
    /// The name and every alias.
    pub fn spellings(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.name.as_str()).chain(self.aliases.iter().map(String::as_str))
    }
}

/// What a name is compared by: without any white space, so 峨山县 水务局 is 峨山县水务局.
pub fn spelling_key(spelling: &str) -> String {
    spelling.chars().filter(|c| !c.is_whitespace()).collect()
}

/// A name or alias as it is kept: one line, at most 100 characters, with no white space
/// inside (what `spelling_key` compares by).
pub fn checked_spelling(field: &str, raw: &str) -> Result<String, Error> {
    let text = single_line(field, raw, MAX_NAME_CHARS, true)?;
    Ok(spelling_key(&text))
}

/// Why a list cannot stand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrganListError {
    /// `spelling` (the name or an alias of organ `of`) is already the name or an alias of
    /// organ `by`.
    #[error("`{spelling}` of organ `{of}` is already a name or alias of organ `{by}`")]
    Taken {
        spelling: String,
        of: String,
        by: String,
    },
}

/// The organ list: every name and alias resolves to one organ.
#[derive(Debug, Clone, Default)]
pub struct OrganList {
    organs: Vec<Organ>,
    /// Spelling key → position in `organs`.
    by_spelling: HashMap<String, usize>,
}

impl OrganList {
    /// Refuses a list in which two organs share a name or alias (an organ repeating its own
    /// name as an alias only drops the repetition).
    pub fn new(organs: Vec<Organ>) -> Result<Self, OrganListError> {
        let mut by_spelling: HashMap<String, usize> = HashMap::new();
        for (at, organ) in organs.iter().enumerate() {
            for spelling in organ.spellings() {
                match by_spelling.insert(spelling_key(spelling), at) {
                    Some(other) if other != at => {
                        return Err(OrganListError::Taken {
                            spelling: spelling.to_owned(),
                            of: organ.name.clone(),
                            by: organs[other].name.clone(),
                        });
                    }
                    _ => {}
                }
            }
        }
        Ok(Self { organs, by_spelling })
    }

    pub fn iter(&self) -> impl Iterator<Item = &Organ> {
        self.organs.iter()
    }

    /// The organ a name or alias names, retired or not.
    pub fn find(&self, spelling: &str) -> Option<&Organ> {
        self.by_spelling
            .get(&spelling_key(spelling))
            .and_then(|at| self.organs.get(*at))
    }

    /// The full name for a stored spelling: items written before the list, or under an alias
    /// since made one, are filed under the organ's name; a spelling the list does not know
    /// stays as it is.
    pub fn canonical<'a>(&'a self, spelling: &'a str) -> &'a str {
        self.find(spelling).map_or(spelling, |organ| organ.name.as_str())
    }

    /// Up to three organs a spelling the list does not know may have meant: those whose name
    /// or alias holds it, or is held in it.
    fn suggestions(&self, spelling: &str) -> Vec<&str> {
        let key = spelling_key(spelling);
        self.organs
            .iter()
            .filter(|o| !o.retired)
            .filter(|o| {
                o.spellings()
                    .map(spelling_key)
                    .any(|s| s.contains(&key) || key.contains(&s))
            })
            .map(|o| o.name.as_str())
            .take(3)
            .collect()
    }

    /// An item's 发文机关, each resolved through names and aliases to the organ's full name,
    /// repetitions dropped. An organ not in the list is refused, naming the entry
    /// (`issuers[1]`); so is a retired one, unless the item already names it (`kept`: a
    /// correction of an item its organ issued before it was retired keeps its issuer).
    pub fn resolve_issuers(&self, raw: &[String], kept: &[String]) -> Result<Vec<String>, Error> {
        let mut issuers: Vec<String> = Vec::with_capacity(raw.len());
        for (i, entry) in raw.iter().enumerate() {
            let field = format!("issuers[{i}]");
            let spelling = single_line(&field, entry, MAX_NAME_CHARS, true)?;
            let Some(organ) = self.find(&spelling) else {
                let suggestions = self.suggestions(&spelling);
                let hint = if suggestions.is_empty() {
                    String::new()
                } else {
                    format!(" (did you mean {}?)", suggestions.join(", "))
                };
                return Err(Error::Refused {
                    code: "unknown_organ",
                    field: Some(field),
                    message: format!(
                        "`{spelling}` is not in the organ list (发文机关名录){hint}; choose a listed organ, or ask an administrator to add it or the spelling as an alias (GET /api/v1/organs lists them)"
                    ),
                });
            };
            if organ.retired && !kept.iter().any(|k| self.canonical(k) == organ.name) {
                return Err(Error::Refused {
                    code: "retired_organ",
                    field: Some(field),
                    message: format!("organ `{}` is retired: it issues no new documents", organ.name),
                });
            }
            if !issuers.contains(&organ.name) {
                issuers.push(organ.name.clone());
            }
        }
        Ok(issuers)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrganFile {
    organs: Vec<OrganRow>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrganRow {
    name: String,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    area_code: Option<String>,
    #[serde(default)]
    retired: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum OrganFileError {
    #[error("organs file is not valid: {0}")]
    Syntax(#[from] toml::de::Error),
    #[error("organ `{organ}`: {problem}")]
    Entry { organ: String, problem: String },
    #[error(transparent)]
    Taken(#[from] OrganListError),
    #[error("the organs file lists no organ")]
    Empty,
}

pub const DEFAULT_ORGANS: &str = include_str!("../../config/organs.toml");

/// The organ list a file seeds, checked against the area tree.
pub fn organs_from_toml(text: &str, areas: &AreaTree) -> Result<OrganList, OrganFileError> {
    let file: OrganFile = toml::from_str(text)?;
    let mut organs = Vec::with_capacity(file.organs.len());
    for (n, row) in file.organs.into_iter().enumerate() {
        let entry = |problem: String| OrganFileError::Entry {
            organ: if row.name.trim().is_empty() {
                format!("#{}", n + 1)
            } else {
                row.name.clone()
            },
            problem,
        };
        let name = checked_spelling("name", &row.name).map_err(|e| entry(e.to_string()))?;
        if row.aliases.len() > MAX_ALIASES {
            return Err(entry(format!("more than {MAX_ALIASES} aliases")));
        }
        let mut aliases: Vec<String> = Vec::with_capacity(row.aliases.len());
        for (i, alias) in row.aliases.iter().enumerate() {
            let alias =
                checked_spelling(&format!("aliases[{i}]"), alias).map_err(|e| entry(e.to_string()))?;
            if alias != name && !aliases.contains(&alias) {
                aliases.push(alias);
            }
        }
        let area_code = row
            .area_code
            .as_deref()
            .map(|raw| areas.resolve(raw))
            .transpose()
            .map_err(|e| entry(format!("area_code: {e}")))?;
        organs.push(Organ {
            name,
            aliases,
            area_code,
            retired: row.retired,
        });
    }
    if organs.is_empty() {
        return Err(OrganFileError::Empty);
    }
    Ok(OrganList::new(organs)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::area::DEMO_AREAS;

    fn areas() -> AreaTree {
        AreaTree::from_toml(DEMO_AREAS).expect("demo areas")
    }

    fn demo() -> OrganList {
        organs_from_toml(DEFAULT_ORGANS, &areas()).expect("built-in organs load")
    }

    fn names(raw: &[&str]) -> Vec<String> {
        raw.iter().map(|s| (*s).to_owned()).collect()
    }

    fn refusal(result: Result<Vec<String>, Error>) -> (&'static str, Option<String>) {
        match result {
            Err(Error::Refused { code, field, .. }) => (code, field),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn the_built_in_list_is_a_county_and_its_townships() {
        let organs = demo();
        assert!(organs.iter().count() >= 30);
        assert!(organs.find("峨山彝族自治县人民政府办公室").is_some());
        for township in ["530426001", "530426101", "530426102", "530426202"] {
            assert!(
                organs
                    .iter()
                    .any(|o| o.area_code.as_ref().map(AreaCode::as_str) == Some(township)),
                "{township} has its government"
            );
        }
    }

    #[test]
    fn every_spelling_resolves_to_the_full_name_once() {
        let organs = demo();
        let resolved = organs
            .resolve_issuers(
                &names(&["峨山县水务局", "峨山彝族自治县水务局", " 县 财政局 "]),
                &[],
            )
            .expect("resolved");
        assert_eq!(resolved, names(&["峨山彝族自治县水务局", "峨山彝族自治县财政局"]));
        assert_eq!(organs.canonical("县水务局"), "峨山彝族自治县水务局");
        assert_eq!(organs.canonical("县水利局"), "县水利局");
    }

    #[test]
    fn unknown_and_retired_organs_are_refused_naming_the_entry() {
        let organs = demo();
        let unknown = organs.resolve_issuers(&names(&["峨山彝族自治县人民政府办公室", "县水利局"]), &[]);
        assert_eq!(refusal(unknown), ("unknown_organ", Some("issuers[1]".into())));
        let Err(Error::Refused { message, .. }) = organs.resolve_issuers(&names(&["水务局"]), &[]) else {
            panic!("refused")
        };
        assert!(
            message.contains("峨山彝族自治县水务局"),
            "a near name is suggested: {message}"
        );

        let mut retired: Vec<Organ> = organs.iter().cloned().collect();
        retired.push(Organ {
            name: "峨山彝族自治县农业局".into(),
            aliases: names(&["县农业局"]),
            area_code: None,
            retired: true,
        });
        let organs = OrganList::new(retired).expect("list");
        let refused = organs.resolve_issuers(&names(&["县农业局"]), &[]);
        assert_eq!(refusal(refused), ("retired_organ", Some("issuers[0]".into())));
        // An item that already names it keeps it.
        let kept = organs.resolve_issuers(&names(&["县农业局"]), &names(&["峨山彝族自治县农业局"]));
        assert_eq!(kept.expect("kept"), names(&["峨山彝族自治县农业局"]));
    }

    #[test]
    fn no_spelling_belongs_to_two_organs() {
        let organ = |name: &str, aliases: &[&str]| Organ {
            name: name.into(),
            aliases: names(aliases),
            area_code: None,
            retired: false,
        };
        let clash = OrganList::new(vec![
            organ("峨山彝族自治县水务局", &["县水务局"]),
            organ("峨山彝族自治县水利局", &["县 水务局"]),
        ]);
        assert_eq!(
            clash.expect_err("refused"),
            OrganListError::Taken {
                spelling: "县 水务局".into(),
                of: "峨山彝族自治县水利局".into(),
                by: "峨山彝族自治县水务局".into()
            }
        );
        let own = OrganList::new(vec![organ("县水务局", &["县水务局"])]);
        assert!(
            own.is_ok(),
            "an organ's own name as its alias is only a repetition"
        );
    }

    #[test]
    fn a_malformed_file_is_refused_naming_the_organ() {
        let clash = "[[organs]]\nname = \"县水务局\"\n[[organs]]\nname = \"峨山县水务局\"\naliases = [\"县水务局\"]\n";
        let error = organs_from_toml(clash, &areas())
            .expect_err("refused")
            .to_string();
        assert!(
            error.contains("峨山县水务局") && error.contains("县水务局"),
            "{error}"
        );
        let area = "[[organs]]\nname = \"某某局\"\narea_code = \"530499\"\n";
        let error = organs_from_toml(area, &areas()).expect_err("refused").to_string();
        assert!(error.contains("某某局") && error.contains("area_code"), "{error}");
        let blank = "[[organs]]\nname = \" \"\n";
        let error = organs_from_toml(blank, &areas())
            .expect_err("refused")
            .to_string();
        assert!(error.contains("#1"), "{error}");
        assert!(organs_from_toml("organs = []\n", &areas()).is_err());
        assert!(organs_from_toml("[[organs]]\nname = \"x\"\nshort = \"y\"\n", &areas()).is_err());
    }
}
