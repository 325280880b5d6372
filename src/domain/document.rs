//! Document identifiers: 索引号 (index number) and 发文字号 (document number).

use std::sync::LazyLock;

use regex::Regex;

/// 索引号: unique and never changed once assigned; its shape is set per site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexNumber(String);

impl IndexNumber {
    pub fn parse(raw: &str, pattern: &Regex) -> Result<Self, String> {
        let raw = raw.trim();
        if pattern.is_match(raw) {
            Ok(Self(raw.to_owned()))
        } else {
            // Said in words (the default form's): a clerk does not read regular expressions.
            Err(format!(
                "索引号 `{raw}` is not in the county's form: the organ's code (9 characters, or its 18-character unified social credit code), a slash, the year, a hyphen and a 5- or 6-digit serial number, e.g. 000014349/2026-00001"
            ))
        }
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

static YEAR_IN_BRACKETS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[\[［（(【〔]\s*(\d{4})\s*[\]］）)】〕]")
        .unwrap_or_else(|e| unreachable!("static regex: {e}"))
});
static NORMALISED_DOC_NO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(\S+?)〔(\d{4})〕第?0*([1-9]\d*)号$").unwrap_or_else(|e| unreachable!("static regex: {e}"))
});

/// 发文字号 in the GB/T 9704-2012 form `<机关代字>〔YYYY〕N号`: hexagonal brackets, no
/// leading zeros, no 第. Common variants (`[2017]`, `（2017）`, `【2017】`, `第47号`, `047号`)
/// are normalised rather than refused, since they are how staff usually type them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocNumber(String);

impl DocNumber {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let compact: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
        let bracketed = YEAR_IN_BRACKETS.replace(&compact, "〔$1〕");
        match NORMALISED_DOC_NO.captures(&bracketed) {
            Some(parts) => Ok(Self(format!("{}〔{}〕{}号", &parts[1], &parts[2], &parts[3]))),
            None => Err(format!(
                "发文字号 `{raw}` is not of the form 机关代字〔年份〕序号号, e.g. 国办发〔2017〕47号"
            )),
        }
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doc_numbers_are_normalised_to_hexagonal_brackets() {
        for raw in [
            "国办发〔2017〕47号",
            "国办发[2017]47号",
            "国办发（2017）47号",
            "国办发【2017】第047号",
            "国办发 (2017) 47 号",
        ] {
            assert_eq!(
                DocNumber::parse(raw).expect(raw).into_string(),
                "国办发〔2017〕47号",
                "{raw}"
            );
        }
    }

    #[test]
    fn malformed_doc_numbers_are_refused() {
        for raw in [
            "国办发2017年47号",
            "〔2017〕47号",
            "国办发〔17〕47号",
            "国办发〔2017〕0号",
            "",
        ] {
            assert!(DocNumber::parse(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn index_numbers_follow_the_pattern() {
        let pattern = Regex::new(r"^([0-9A-Z]{9}|[0-9A-HJ-NPQRTUWXY]{18})/\d{4}-\d{5,6}$").expect("regex");
        assert!(IndexNumber::parse("000014349/2017-00110", &pattern).is_ok());
        assert!(IndexNumber::parse("11530426MB0000000X/2026-000001", &pattern).is_ok());
        assert!(IndexNumber::parse("000014349-2017-00110", &pattern).is_err());
        assert!(IndexNumber::parse("000014349/17-110", &pattern).is_err());
    }
}
