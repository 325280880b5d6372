//! Search: what a searcher types, and the folded form both it and the searched text take, so
//! that `国办发[2017]47号` finds `国办发〔2017〕47号` and `ＡＢＣ` finds `abc`.
//!
//! Matching is by substring (Chinese needs no word segmentation). On PostgreSQL a GIN index of
//! each text's one- and two-character pieces (`grams`, computed by the `herald_search_grams`
//! SQL function of migration 000017 with the same rule as `word_grams`) narrows the candidates
//! first; every candidate is then checked for each word whole.

/// Words a search may take, and characters in all: a search box, not a document.
pub const MAX_WORDS: usize = 8;
pub const MAX_CHARS: usize = 100;

/// Brackets people type around a 发文字号's year or an item number, all folded to the pair
/// Herald stores (GB/T 9704's hexagonal brackets).
const OPENING: &[char] = &['[', '［', '(', '（', '【', '〔', '〖', '｛', '{'];
const CLOSING: &[char] = &[']', '］', ')', '）', '】', '〕', '〗', '｝', '}'];

/// The form text is searched in: full-width ASCII as ASCII, every bracket variant as 〔〕,
/// ASCII letters in lower case, any run of white space as one space.
pub fn fold(text: &str) -> String {
    let mut folded = String::with_capacity(text.len());
    let mut in_space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            if !in_space && !folded.is_empty() {
                folded.push(' ');
            }
            in_space = true;
            continue;
        }
        in_space = false;
        let c = match c {
            c if OPENING.contains(&c) => '〔',
            c if CLOSING.contains(&c) => '〕',
            // U+FF01..=U+FF5E are the full-width forms of U+0021..=U+007E.
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(u32::from(c) - 0xFEE0).unwrap_or(c),
            c => c,
        };
        folded.push(c.to_ascii_lowercase());
    }
    if folded.ends_with(' ') {
        folded.pop();
    }
    folded
}

/// The words of a search, folded: all of them must occur in what it finds. `%` and `_` are
/// characters like any other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchTerms(Vec<String>);

impl SearchTerms {
    /// `None` for a search with no words.
    pub fn parse(raw: &str) -> Result<Option<Self>, String> {
        if raw.chars().count() > MAX_CHARS {
            return Err(format!("a search is at most {MAX_CHARS} characters"));
        }
        let mut words: Vec<String> = Vec::new();
        for word in fold(raw).split(' ').filter(|w| !w.is_empty()) {
            if !words.iter().any(|w| w == word) {
                words.push(word.to_owned());
            }
        }
        if words.len() > MAX_WORDS {
            return Err(format!("a search is at most {MAX_WORDS} words"));
        }
        Ok((!words.is_empty()).then_some(Self(words)))
    }

    pub fn words(&self) -> &[String] {
        &self.0
    }

    /// Whether folded `text` holds every word.
    pub fn all_in(&self, folded: &str) -> bool {
        self.0.iter().all(|word| folded.contains(word.as_str()))
    }

    /// A PostgreSQL `tsquery` asking for every piece of every word: a text holding all the
    /// words holds all their pieces, so nothing it should find is left out.
    pub fn grams_query(&self) -> String {
        let mut grams: Vec<String> = self.0.iter().flat_map(|w| word_grams(w)).collect();
        grams.sort();
        grams.dedup();
        grams
            .iter()
            .map(|g| format!("'{}'", g.replace('\\', "\\\\").replace('\'', "''")))
            .collect::<Vec<_>>()
            .join(" & ")
    }
}

/// The pieces a word is looked up by: its two-character pieces, or the one character of a
/// one-character word. The stored side keeps every one- and two-character piece of its text.
fn word_grams(word: &str) -> Vec<String> {
    let chars: Vec<char> = word.chars().collect();
    if chars.len() == 1 {
        return vec![word.to_owned()];
    }
    chars.windows(2).map(|pair| pair.iter().collect()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bracket_variants_and_full_width_forms_fold_alike() {
        let stored = fold("峨政发〔2026〕12号 关于ＡＢＣ的通知");
        for typed in [
            "峨政发[2026]12号",
            "峨政发［2026］12号",
            "峨政发(2026)12号",
            "峨政发（2026）12号",
            "abc",
        ] {
            let terms = SearchTerms::parse(typed).unwrap().unwrap();
            assert!(terms.all_in(&stored), "{typed}");
        }
    }

    #[test]
    fn every_word_must_occur_and_wildcards_are_plain() {
        let stored = fold("县水务局  关于 防汛 的通知 100%");
        let terms = SearchTerms::parse("  水务  防汛 ").unwrap().unwrap();
        assert_eq!(terms.words(), ["水务", "防汛"]);
        assert!(terms.all_in(&stored));
        assert!(!SearchTerms::parse("水务 抗旱").unwrap().unwrap().all_in(&stored));
        assert!(SearchTerms::parse("100%").unwrap().unwrap().all_in(&stored));
        assert!(!SearchTerms::parse("1_0").unwrap().unwrap().all_in(&stored));
    }

    #[test]
    fn empty_and_oversized_searches() {
        assert_eq!(SearchTerms::parse(" \u{3000} ").unwrap(), None);
        assert!(SearchTerms::parse(&"字".repeat(MAX_CHARS + 1)).is_err());
        assert!(SearchTerms::parse("a b c d e f g h i").is_err());
    }

    #[test]
    fn the_grams_query_names_each_piece_once_and_quotes_them() {
        let terms = SearchTerms::parse("水务局 县 it's").unwrap().unwrap();
        assert_eq!(
            terms.grams_query(),
            "'''s' & 'it' & 't''' & '务局' & '县' & '水务'"
        );
    }
}
