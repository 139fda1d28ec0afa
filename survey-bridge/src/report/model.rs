//! The report's inputs (raw counts and the request) and its output (the figures, every small
//! number already replaced by [`Cell::Suppressed`]).

use std::fmt;

use serde::{Serialize, Serializer};

/// The small-cell threshold when the configuration does not set one.
pub const DEFAULT_K: u64 = 5;

/// The longest period a report covers, in months.
pub const MAX_MONTHS: usize = 120;

/// One month of the invitation ledger for a population (a `period_counts` row, or a sum of
/// them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodRow {
    /// `YYYY-MM`.
    pub month: String,
    /// Invitations sent.
    pub invitations: u64,
    /// Surveys answered.
    pub responses: u64,
    /// Patients who declined.
    pub opt_outs: u64,
}

/// How many patients gave one answer to one question in one month (an `answer_counts` row,
/// or a sum of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerRow {
    /// `YYYY-MM`.
    pub month: String,
    /// The question id.
    pub question: String,
    /// The option id.
    pub answer: String,
    /// How many.
    pub count: u64,
}

/// Raw counts for one population (a provider, a site, or all sites) and one campaign.
///
/// Rows may come in any order and may repeat a key (they are added up); rows outside the
/// requested months, and answers to questions or options the questionnaire does not have,
/// are left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawCounts {
    /// The ledger, by month.
    pub periods: Vec<PeriodRow>,
    /// The answers, by month, question and option.
    pub answers: Vec<AnswerRow>,
}

/// Whose numbers a report shows; also names the comparison populations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// One provider at one site.
    Provider,
    /// One site.
    Site,
    /// All sites.
    All,
}

impl Level {
    /// `provider`, `site` or `all`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Provider => "provider",
            Level::Site => "site",
            Level::All => "all",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to report on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRequest {
    /// Whose numbers.
    pub level: Level,
    /// The site; needed for provider and site reports.
    pub site_id: Option<String>,
    /// The provider; needed for provider reports.
    pub provider_id: Option<String>,
    /// The campaign.
    pub campaign_id: String,
    /// The first month, `YYYY-MM`.
    pub from: String,
    /// The last month, `YYYY-MM`, inclusive.
    pub to: String,
    /// The small-cell threshold: counts under `k` are suppressed. At least 1.
    pub k: u64,
}

/// A request the report cannot be built for; each names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// `from` or `to` is not `YYYY-MM`.
    #[error("{0} must be a month written YYYY-MM")]
    BadMonth(&'static str),
    /// `from` is after `to`.
    #[error("from must not be after to")]
    Backwards,
    /// More than [`MAX_MONTHS`] months.
    #[error("a report covers at most {MAX_MONTHS} months")]
    TooLong,
    /// `k` is 0.
    #[error("k must be at least 1")]
    ZeroK,
    /// The level needs an id the request does not have.
    #[error("a {level} report needs {field}")]
    Missing {
        /// The report's level.
        level: Level,
        /// The missing field.
        field: &'static str,
    },
    /// A comparison population has fewer of some count than a population inside it: the
    /// rows do not come from the same campaign and months.
    #[error("the {0} counts do not contain the counts inside them")]
    NotNested(Level),
}

/// A published number, or the mark that it is withheld.
///
/// In JSON a shown cell is the number itself and a withheld one is the string
/// `"suppressed"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell<T> {
    /// The number.
    Shown(T),
    /// Withheld: small, or enough to work out a small one.
    Suppressed,
}

impl<T: Copy> Cell<T> {
    /// The number, if shown.
    pub fn shown(self) -> Option<T> {
        match self {
            Cell::Shown(value) => Some(value),
            Cell::Suppressed => None,
        }
    }

    /// Whether it is withheld.
    pub fn is_suppressed(self) -> bool {
        matches!(self, Cell::Suppressed)
    }
}

/// The word a withheld cell is written as in JSON and CSV.
pub const SUPPRESSED: &str = "suppressed";

impl<T: Serialize> Serialize for Cell<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Cell::Shown(value) => value.serialize(serializer),
            Cell::Suppressed => serializer.serialize_str(SUPPRESSED),
        }
    }
}

/// A report: who and what it covers, then either the figures or the statement that there
/// are too few responses to show any.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The questionnaire id.
    pub questionnaire: String,
    /// Whose numbers.
    pub level: Level,
    /// The site, for provider and site reports.
    pub site_id: Option<String>,
    /// The provider, for provider reports.
    pub provider_id: Option<String>,
    /// The campaign.
    pub campaign_id: String,
    /// The released period: a month (`2026-11`), a quarter (`2026-Q4`) or a year (`2026`).
    pub period: String,
    /// The first month.
    pub from: String,
    /// The last month, inclusive.
    pub to: String,
    /// The small-cell threshold the report was built with.
    pub k: u64,
    /// The populations the report compares with (site, all), in that order.
    pub compared_with: Vec<Level>,
    /// When the counts carry differential-privacy noise (`reports.noise_epsilon`): its
    /// privacy loss per patient per unit (the largest, if the units differ).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub noise_epsilon: Option<f64>,
    /// The figures, or none.
    #[serde(flatten)]
    pub body: Body,
}

impl Report {
    /// Whether the population had fewer than `k` responses, so the report shows no numbers.
    pub fn too_few_responses(&self) -> bool {
        matches!(self.body, Body::TooFewResponses)
    }

    /// The figures, unless there were too few responses.
    pub fn figures(&self) -> Option<&Figures> {
        match &self.body {
            Body::Figures(figures) => Some(figures),
            Body::TooFewResponses => None,
        }
    }
}

/// Either no numbers at all, or the figures. In JSON: `"status": "too_few_responses"` alone,
/// or `"status": "figures"` beside the figures' fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Body {
    /// The population had fewer than `k` responses: nothing is shown.
    TooFewResponses,
    /// The numbers.
    Figures(Figures),
}

/// Every number of a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    /// The whole period.
    pub summary: Summary,
    /// One entry per question, in questionnaire order.
    pub questions: Vec<QuestionFigures>,
    /// One entry per month of the period, oldest first, months without data included.
    pub trend: Vec<MonthFigures>,
}

/// The whole period at a glance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Invitations sent.
    pub invitations: Cell<u64>,
    /// Surveys answered.
    pub responses: Cell<u64>,
    /// Patients who declined.
    pub opt_outs: Cell<u64>,
    /// Responses over invitations.
    pub response_rate: Cell<f64>,
    /// Top-box answers over all answers, pooled across the questions that have a top box.
    pub top_box: Cell<f64>,
}

/// One question over the whole period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuestionFigures {
    /// The question id.
    pub id: String,
    /// How many patients answered it.
    pub answered: Cell<u64>,
    /// The distribution, in questionnaire order.
    pub options: Vec<OptionFigures>,
    /// The share of answers in the top box; absent when the question has no top box.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_box: Option<Cell<f64>>,
    /// The same share for the provider's site; absent when not compared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site_top_box: Option<Cell<f64>>,
    /// The same share for all sites; absent when not compared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub all_top_box: Option<Cell<f64>>,
}

/// One option of a question.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OptionFigures {
    /// The option id.
    pub id: String,
    /// Whether it counts in the top box.
    pub top_box: bool,
    /// How many patients chose it.
    pub count: Cell<u64>,
    /// Its share of the patients who answered the question.
    pub share: Cell<f64>,
}

/// One month of the trend.
///
/// `top_box` is the month's top-box answers over all its answers, pooled across the
/// questions that have a top box (the mean of the questions' top-box shares, weighted by
/// how many answered each).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonthFigures {
    /// `YYYY-MM`.
    pub month: String,
    /// Invitations sent.
    pub invitations: Cell<u64>,
    /// Surveys answered.
    pub responses: Cell<u64>,
    /// Patients who declined.
    pub opt_outs: Cell<u64>,
    /// Responses over invitations.
    pub response_rate: Cell<f64>,
    /// Top-box answers over all answers, across questions.
    pub top_box: Cell<f64>,
}

/// A month as a number: `year * 12 + month - 1`.
pub(crate) fn parse_month(s: &str) -> Option<u32> {
    let b = s.as_bytes();
    if b.len() != 7 || b[4] != b'-' || !b[..4].iter().chain(&b[5..]).all(u8::is_ascii_digit) {
        return None;
    }
    let year: u32 = s[..4].parse().ok()?;
    let month: u32 = s[5..].parse().ok()?;
    (year >= 1 && (1..=12).contains(&month)).then_some(year * 12 + month - 1)
}

/// `YYYY-MM` of a month number.
pub(crate) fn month_label(m: u32) -> String {
    format!("{:04}-{:02}", m / 12, m % 12 + 1)
}

/// The months of a request, oldest first.
pub(crate) fn months(from: &str, to: &str) -> Result<Vec<String>, RequestError> {
    let first = parse_month(from).ok_or(RequestError::BadMonth("from"))?;
    let last = parse_month(to).ok_or(RequestError::BadMonth("to"))?;
    if first > last {
        return Err(RequestError::Backwards);
    }
    if (last - first) as usize >= MAX_MONTHS {
        return Err(RequestError::TooLong);
    }
    Ok((first..=last).map(month_label).collect())
}

/// A share rounded to four decimals, as all formats publish it.
pub(crate) fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    ((part as f64 / whole as f64) * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_run_oldest_first_across_a_year_end() {
        assert_eq!(months("2025-11", "2026-02").unwrap(), ["2025-11", "2025-12", "2026-01", "2026-02"]);
        assert_eq!(months("2026-03", "2026-03").unwrap(), ["2026-03"]);
    }

    #[test]
    fn bad_months_are_refused_by_field() {
        for bad in ["2026-13", "2026-00", "2026-1", "26-01", "2026/01", "0000-01", "２０２６-01", "2026-01 "]
        {
            assert_eq!(months(bad, "2026-03"), Err(RequestError::BadMonth("from")), "{bad:?}");
            assert_eq!(months("2026-01", bad), Err(RequestError::BadMonth("to")), "{bad:?}");
        }
        assert_eq!(months("2026-02", "2026-01"), Err(RequestError::Backwards));
        assert_eq!(months("2000-01", "2009-12").map(|m| m.len()), Ok(MAX_MONTHS));
        assert_eq!(months("2000-01", "2010-01"), Err(RequestError::TooLong));
    }

    #[test]
    fn cells_serialize_as_number_or_word() {
        assert_eq!(serde_json::to_string(&Cell::Shown(7u64)).unwrap(), "7");
        assert_eq!(serde_json::to_string(&Cell::Shown(0.25f64)).unwrap(), "0.25");
        assert_eq!(serde_json::to_string(&Cell::<u64>::Suppressed).unwrap(), "\"suppressed\"");
    }

    #[test]
    fn shares_are_rounded_to_four_decimals() {
        assert_eq!(share(1, 3), 0.3333);
        assert_eq!(share(2, 3), 0.6667);
        assert_eq!(share(5, 5), 1.0);
        assert_eq!(share(1, 0), 0.0);
    }
}
