//! Patient-experience reports for providers and clinic administrators: pure functions from
//! aggregate counts to a [`Report`], and from a report to JSON, CSV and an HTML page.
//!
//! What is published is built in two steps ([`release`]): [`build()`] protects each released
//! *unit* (one provider's or one site's month) on its own, by the rules below; every report,
//! comparison and usage row is then a sum of units, shown only when all its parts are, so
//! that no combination of tables tells more than the units' own tables.
//!
//! [`build()`] takes the counts of the report's population and, for comparison, of its site
//! and of all sites, and applies every small-cell rule once; [`to_json`], [`to_csv`] and
//! [`render_html`] only write out what the [`Report`] holds, so every format withholds
//! exactly the same numbers. Files: [`model`] (the types), [`suppress`] (the rules),
//! `build.rs`, `export.rs` (JSON, CSV), `svg.rs` (charts), `render.rs` and
//! `render/questions.rs` (the page).
//!
//! # What a report holds
//!
//! For the whole period: invitations, responses, opt-outs, response rate and the pooled top
//! box (top-box answers over all answers, across the questions that have a top box). Per
//! question: n answered, count and share per option in questionnaire order, the top-box
//! share, and the site's and all sites' top-box shares when compared. Per month, oldest
//! first, every month of the period included: invitations, responses, opt-outs, response
//! rate and the pooled top box of that month (the mean of the questions' top-box shares
//! weighted by how many answered each).
//!
//! # The small-cell rules ("reports never single out a patient")
//!
//! `k` comes from the request (at least 1; [`DEFAULT_K`] is 5). A withheld number is
//! [`Cell::Suppressed`].
//!
//! 1. **Too few responses.** If the population's responses over the period are under `k`,
//!    the report holds no numbers at all ([`Body::TooFewResponses`]); only `k` is kept, to
//!    say so.
//! 2. **Small counts.** Any count under `k` is withheld, zero included: "any count under k",
//!    read literally (a 0 tells every patient's answer as surely as a 1 tells one).
//! 3. **Shares.** A share is withheld when its count or its denominator is.
//! 4. **Complementary suppression.** Wherever a total is published (a question's n over its
//!    options; the period total over the months of each trend column; the pooled top box
//!    over the questions and over the months), the sum of the hidden cells is `total -
//!    shown`, so it is a published count too: the hidden cells of such a row must be none,
//!    or at least two that together make at least `k`. Until they do, the smallest shown
//!    cell (the first of equals) is hidden too.
//! 5. **Top box.** A question's top-box share is shown only when both the top-box count and
//!    the rest (n minus it) are at least `k`: 100% or 0% would tell every patient's answer.
//!    When it is shown, the top box and the rest are two more published totals, so rule 4
//!    also applies within the top-box options and within the others (always 10 shown, often
//!    3 hidden, top box 13 would tell often: always is hidden too).
//! 6. **Months.** A month's response rate is withheld with its invitations or responses; its
//!    top box with its responses, or when its top-box count or rest is under `k`. The
//!    months' top boxes and the questions' top boxes are two ways of adding up the same
//!    answers: the pooled top box is withheld unless the questions whose top box is
//!    withheld satisfy rule 4, and when it is withheld, so is at least one month's (then a
//!    second, by rule 4).
//! 7. **Comparisons.** The site's or all sites' top-box share is shown when that population
//!    passes rules 1 and 5 on its own, and its difference from each population inside it
//!    given to the report (the provider; the site) is empty or has at least `k` top-box
//!    answers and `k` others: otherwise comparing the two would reveal the few people in
//!    between.
//!
//! Not treated as cells: patients who skipped a question (responses minus n), patients who
//! neither answered nor declined (but withheld opt-outs among fewer than k of those withhold
//! the invitations: [`release::protect_unit`]). Differences between tables are [`release`]'s
//! concern.

mod build;
mod export;
pub mod model;
pub mod noise;
pub mod release;
mod render;
pub mod suppress;
mod svg;

#[cfg(test)]
mod fixtures;

pub use build::build;
pub use export::{to_csv, to_json};
pub use model::{
    AnswerRow, Body, Cell, DEFAULT_K, Figures, Level, MAX_MONTHS, MonthFigures, OptionFigures, PeriodRow,
    QuestionFigures, RawCounts, Report, ReportRequest, RequestError, SUPPRESSED, Summary,
};
pub use render::{ReportLinks, render_html};
