//! 主题分类: the national two-level subject classification of government information, loaded
//! from an editable file. An item's 主题分类 is one class, or one class and one of its entries
//! (`["综合政务", "应急管理"]`, shown as 综合政务\应急管理).

use serde::{Deserialize, Serialize};

use super::text::{MAX_NAME_CHARS, single_line};
use crate::error::Error;

/// One first-level class and its second-level entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TopicClass)]
pub struct TopicClass {
    /// The first-level name, e.g. 综合政务.
    pub name: String,
    /// Its second-level entries, e.g. 政务公开, 应急管理; may be empty.
    #[serde(default)]
    pub entries: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct TopicVocabulary {
    classes: Vec<TopicClass>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicFile {
    classes: Vec<TopicClass>,
}

#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("topics file is not valid: {0}")]
    Syntax(#[from] toml::de::Error),
    #[error("topic class `{0}` appears twice")]
    DuplicateClass(String),
    #[error("topic class `{class}` lists entry `{entry}` twice")]
    DuplicateEntry { class: String, entry: String },
    #[error("topic class `{class}`: {problem}")]
    BadName { class: String, problem: String },
    #[error("the topics file lists no class")]
    Empty,
}

pub const DEFAULT_TOPICS: &str = include_str!("../../config/topics.toml");

/// What separates the two levels when written as one entry: 综合政务\应急管理 (also with a
/// full-width backslash or a slash).
const SEPARATORS: [char; 3] = ['\\', '＼', '/'];

/// A name of the vocabulary as it must be: one line, not blank, no level separator.
fn checked_name(class: &str, raw: &str) -> Result<String, TopicError> {
    let bad = |problem: String| TopicError::BadName {
        class: class.to_owned(),
        problem,
    };
    let name = single_line("name", raw, MAX_NAME_CHARS, true).map_err(|e| bad(e.to_string()))?;
    if name.contains(SEPARATORS) {
        return Err(bad(format!("`{name}` holds a level separator (\\ or /)")));
    }
    Ok(name)
}

impl TopicVocabulary {
    pub fn from_toml(text: &str) -> Result<Self, TopicError> {
        let file: TopicFile = toml::from_str(text)?;
        let mut classes: Vec<TopicClass> = Vec::with_capacity(file.classes.len());
        for raw in file.classes {
            let name = checked_name(&raw.name, &raw.name)?;
            if classes.iter().any(|c| c.name == name) {
                return Err(TopicError::DuplicateClass(name));
            }
            let mut entries: Vec<String> = Vec::with_capacity(raw.entries.len());
            for entry in &raw.entries {
                let entry = checked_name(&name, entry)?;
                if entries.contains(&entry) {
                    return Err(TopicError::DuplicateEntry { class: name, entry });
                }
                entries.push(entry);
            }
            classes.push(TopicClass { name, entries });
        }
        if classes.is_empty() {
            return Err(TopicError::Empty);
        }
        Ok(Self { classes })
    }

    pub fn classes(&self) -> &[TopicClass] {
        &self.classes
    }

    fn class(&self, name: &str) -> Option<&TopicClass> {
        self.classes.iter().find(|c| c.name == name)
    }

    /// An item's 主题分类 as it is stored: `[class]` or `[class, entry]`, from what a
    /// publisher sent: nothing; a class (`["综合政务"]`); a class and its entry, as two
    /// entries (`["综合政务", "应急管理"]`) or one (`["综合政务\应急管理"]`); or an entry
    /// alone whose class is unambiguous (`["应急管理"]`). Anything else is refused, naming the
    /// entry (`topic[1]`).
    pub fn resolve(&self, raw: &[String]) -> Result<Vec<String>, Error> {
        // Each level with the position of the entry it was written in.
        let mut levels: Vec<(usize, String)> = Vec::new();
        for (i, entry) in raw.iter().enumerate() {
            let entry = single_line(&format!("topic[{i}]"), entry, MAX_NAME_CHARS, true)?;
            for part in entry.split(SEPARATORS).map(str::trim).filter(|p| !p.is_empty()) {
                levels.push((i, part.to_owned()));
            }
        }
        let unknown = |i: usize, message: String| Error::Refused {
            code: "unknown_topic",
            field: Some(format!("topic[{i}]")),
            message,
        };
        match levels.as_slice() {
            [] => Ok(Vec::new()),
            [(i, only)] => {
                if self.class(only).is_some() {
                    return Ok(vec![only.clone()]);
                }
                let holders: Vec<&TopicClass> = self
                    .classes
                    .iter()
                    .filter(|c| c.entries.contains(only))
                    .collect();
                match holders.as_slice() {
                    [class] => Ok(vec![class.name.clone(), only.clone()]),
                    [] => Err(unknown(
                        *i,
                        format!(
                            "`{only}` is not in the 主题分类 vocabulary (GET /api/v1/topics lists it)"
                        ),
                    )),
                    several => Err(unknown(
                        *i,
                        format!(
                            "`{only}` is an entry of {} classes; write it with its class, e.g. {}\\{only}",
                            several.len(),
                            several[0].name
                        ),
                    )),
                }
            }
            [(i, first), (j, second)] => {
                let Some(class) = self.class(first) else {
                    return Err(unknown(
                        *i,
                        format!(
                            "`{first}` is not a first-level 主题分类 (GET /api/v1/topics lists them)"
                        ),
                    ));
                };
                if class.entries.contains(second) {
                    Ok(vec![class.name.clone(), second.clone()])
                } else if class.entries.is_empty() {
                    Err(unknown(
                        *j,
                        format!("主题分类 `{first}` has no second-level entries"),
                    ))
                } else {
                    Err(unknown(
                        *j,
                        format!(
                            "`{second}` is not an entry of 主题分类 `{first}`; its entries are {}",
                            class.entries.join("、")
                        ),
                    ))
                }
            }
            [.., (k, _)] => Err(unknown(
                *k,
                "主题分类 is one classification: a first-level class, or a class and one of its entries (一级\\二级)"
                    .to_owned(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocabulary() -> TopicVocabulary {
        TopicVocabulary::from_toml(DEFAULT_TOPICS).expect("built-in topics load")
    }

    fn resolved(raw: &[&str]) -> Result<Vec<String>, Error> {
        let raw: Vec<String> = raw.iter().map(|s| (*s).to_owned()).collect();
        vocabulary().resolve(&raw)
    }

    fn refused_field(result: Result<Vec<String>, Error>) -> Option<String> {
        match result {
            Err(Error::Refused { field, .. }) => field,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn the_built_in_vocabulary_is_the_national_one() {
        let topics = vocabulary();
        assert_eq!(topics.classes().len(), 21);
        assert_eq!(topics.classes()[0].name, "综合政务");
        assert!(topics.classes()[0].entries.contains(&"应急管理".to_owned()));
    }

    #[test]
    fn a_class_and_its_entry_however_written_is_one_path() {
        let path = vec!["综合政务".to_owned(), "应急管理".to_owned()];
        assert_eq!(resolved(&["综合政务", "应急管理"]).ok(), Some(path.clone()));
        assert_eq!(resolved(&["综合政务\\应急管理"]).ok(), Some(path.clone()));
        assert_eq!(resolved(&[" 综合政务 / 应急管理 "]).ok(), Some(path.clone()));
        // An entry alone finds its class when only one class has it.
        assert_eq!(resolved(&["应急管理"]).ok(), Some(path));
        assert_eq!(
            resolved(&["农业、林业、水利"]).ok(),
            Some(vec!["农业、林业、水利".to_owned()])
        );
        assert_eq!(resolved(&[]).ok(), Some(Vec::new()));
        // 其他 is a class of its own before it is anyone's entry.
        assert_eq!(resolved(&["其他"]).ok(), Some(vec!["其他".to_owned()]));
    }

    #[test]
    fn anything_else_is_refused_naming_the_entry() {
        assert_eq!(
            refused_field(resolved(&["森林防火"])).as_deref(),
            Some("topic[0]")
        );
        assert_eq!(
            refused_field(resolved(&["综合政务", "水利"])).as_deref(),
            Some("topic[1]")
        );
        assert_eq!(
            refused_field(resolved(&["应急管理", "综合政务"])).as_deref(),
            Some("topic[0]")
        );
        assert_eq!(
            refused_field(resolved(&["综合政务", "应急管理", "其他"])).as_deref(),
            Some("topic[2]")
        );
        assert_eq!(
            refused_field(resolved(&["国防", "其他"])).as_deref(),
            Some("topic[1]")
        );
        let Err(Error::Refused { message, .. }) = resolved(&["综合政务", "水利"]) else {
            panic!("refused")
        };
        assert!(message.contains("政务公开、政务督查、应急管理"), "{message}");
    }

    #[test]
    fn a_malformed_file_is_refused_naming_the_entry() {
        let twice = "[[classes]]\nname = \"综合政务\"\nentries = [\"政务公开\", \"政务公开\"]\n";
        let error = TopicVocabulary::from_toml(twice)
            .expect_err("refused")
            .to_string();
        assert!(error.contains("政务公开") && error.contains("twice"), "{error}");
        let separator = "[[classes]]\nname = \"综合政务\\\\其他\"\n";
        let error = TopicVocabulary::from_toml(separator)
            .expect_err("refused")
            .to_string();
        assert!(error.contains("separator"), "{error}");
        assert!(TopicVocabulary::from_toml("classes = []\n").is_err());
        assert!(TopicVocabulary::from_toml("[[classes]]\nname = \"x\"\nlabel = 1\n").is_err());
    }
}
