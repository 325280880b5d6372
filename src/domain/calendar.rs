//! Working days in mainland China: Monday–Friday, less public holidays, plus the weekend
//! make-up workdays (调休) the State Council announces each year.

use std::collections::BTreeSet;

use chrono::{Datelike, NaiveDate, Weekday};
use serde::Deserialize;

#[derive(Debug, Clone, Default)]
pub struct WorkCalendar {
    holidays: BTreeSet<NaiveDate>,
    makeup_workdays: BTreeSet<NaiveDate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CalendarFile {
    #[serde(default)]
    holidays: Vec<NaiveDate>,
    #[serde(default)]
    makeup_workdays: Vec<NaiveDate>,
}

#[derive(Debug, thiserror::Error)]
pub enum CalendarError {
    #[error("calendar file is not valid: {0}")]
    Syntax(#[from] toml::de::Error),
    #[error("{0} is listed both as a holiday and as a make-up workday")]
    Contradiction(NaiveDate),
}

pub const DEFAULT_CALENDAR: &str = include_str!("../../config/calendar.toml");

impl WorkCalendar {
    pub fn from_toml(text: &str) -> Result<Self, CalendarError> {
        let file: CalendarFile = toml::from_str(text)?;
        let holidays: BTreeSet<_> = file.holidays.into_iter().collect();
        let makeup_workdays: BTreeSet<_> = file.makeup_workdays.into_iter().collect();
        if let Some(day) = holidays.intersection(&makeup_workdays).next() {
            return Err(CalendarError::Contradiction(*day));
        }
        Ok(Self {
            holidays,
            makeup_workdays,
        })
    }

    pub fn is_working_day(&self, day: NaiveDate) -> bool {
        if self.makeup_workdays.contains(&day) {
            return true;
        }
        let weekend = matches!(day.weekday(), Weekday::Sat | Weekday::Sun);
        !weekend && !self.holidays.contains(&day)
    }

    /// The `n`th working day after `start`, `start` itself not counted.
    pub fn add_working_days(&self, start: NaiveDate, n: u32) -> NaiveDate {
        let mut day = start;
        let mut counted = 0;
        while counted < n {
            day = day.succ_opt().unwrap_or(day);
            if self.is_working_day(day) {
                counted += 1;
            }
        }
        day
    }

    /// Working days strictly after `from` up to and including `to`; 0 when `to` is not later.
    pub fn working_days_between(&self, from: NaiveDate, to: NaiveDate) -> u32 {
        from.iter_days()
            .skip(1)
            .take_while(|day| *day <= to)
            .filter(|day| self.is_working_day(*day))
            .count() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> NaiveDate {
        s.parse().expect("date")
    }

    fn national_day_2026() -> WorkCalendar {
        WorkCalendar::from_toml(
            "holidays = [\"2026-10-01\", \"2026-10-02\", \"2026-10-05\", \"2026-10-06\", \"2026-10-07\"]\n\
             makeup_workdays = [\"2026-10-10\"]\n",
        )
        .expect("calendar")
    }

    #[test]
    fn plain_weeks_skip_the_weekend() {
        let calendar = WorkCalendar::default();
        // Friday + 3 working days = Wednesday.
        assert_eq!(
            calendar.add_working_days(date("2026-11-20"), 3),
            date("2026-11-25")
        );
    }

    #[test]
    fn holidays_are_skipped_and_makeup_workdays_count() {
        let calendar = national_day_2026();
        // Wednesday 30 Sep: 1–7 Oct are off, Thu 8 and Fri 9 count, Saturday 10 is worked.
        assert_eq!(
            calendar.add_working_days(date("2026-09-30"), 3),
            date("2026-10-10")
        );
        assert_eq!(
            calendar.working_days_between(date("2026-09-30"), date("2026-10-10")),
            3
        );
    }

    #[test]
    fn a_day_cannot_be_both() {
        let text = "holidays = [\"2026-10-10\"]\nmakeup_workdays = [\"2026-10-10\"]\n";
        assert!(matches!(
            WorkCalendar::from_toml(text),
            Err(CalendarError::Contradiction(_))
        ));
    }
}
