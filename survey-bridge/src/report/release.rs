//! Reports that cannot be subtracted: every published number is a sum of the shown cells of
//! released *units*, and a sum is shown only when every cell in it is.
//!
//! A unit is one population's month: one provider at one site (the *provider* structure,
//! which providers and site administrators read), or one site (the *site* structure, which
//! analysts read). When its month is released, each unit's table is protected on its own by
//! the small-cell rules of [`super::suppress`] (through [`build()`]) and stored as
//! [`UnitCells`]; it never changes afterwards. A report for a provider, a site or all sites
//! over a month, a quarter or a year, its trend of months, and its comparisons are then
//! *derived*: each count is the sum of the units' cells, shown only when all of them are
//! shown, and each share only when its two counts are.
//!
//! Why that holds against an intruder who downloads every table and combines them: a shown
//! derived number is a sum of shown unit cells, which the intruder could add up anyway, and
//! a withheld unit cell never enters a shown number. So everything an account can fetch
//! tells no more than the shown cells of the units behind it, and units are disjoint: what
//! can be learnt about a withheld cell is only what its own unit's table tells, which the
//! in-table rules protect. Subtracting Jan-May from Jan-Jun, a site from its providers, or a
//! quarter from its months gives back shown cells only.
//!
//! That needs every table one account reads to cut populations into the *same* units: all
//! sites beside a provider's or a site administrator's report are the reader's site by
//! provider and the other sites whole (`portal::reports`), never the reader's site whole
//! beside its providers.
//!
//! The price: a sum with one withheld part is withheld, so a rare option may be shown for
//! a provider's busy months and withheld for the quarter.

use serde::{Deserialize, Serialize};

use super::{
    build,
    model::{
        Body, Cell, Figures, Level, MonthFigures, OptionFigures, QuestionFigures, RawCounts, Report,
        ReportRequest, Summary, share,
    },
};
use crate::questionnaire::Questionnaire;

/// The released, protected cells of one unit (a population's month); `None` is withheld.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitCells {
    /// Invitations sent.
    pub invitations: Option<u64>,
    /// Surveys answered.
    pub responses: Option<u64>,
    /// Patients who declined.
    pub opt_outs: Option<u64>,
    /// Per question, in questionnaire order.
    pub questions: Vec<QuestionCells>,
    /// Top-box answers across the questions that have a top box.
    pub pooled_top: Option<u64>,
    /// All answers to those questions.
    pub pooled_answered: Option<u64>,
    /// The privacy loss of the noise on the counts ([`super::noise`]), when the unit was
    /// released with noise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise_epsilon: Option<f64>,
}

/// One question's protected cells in a unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuestionCells {
    /// Patients who answered it.
    pub answered: Option<u64>,
    /// Per option, in questionnaire order.
    pub options: Vec<Option<u64>>,
    /// Top-box answers; `None` when withheld or when the question has no top box.
    pub top: Option<u64>,
}

/// The count behind a published share of `whole`, when both are shown (shares carry four
/// decimals, which pin the count for any unit-sized whole).
fn count_of(share: Cell<f64>, whole: Cell<u64>) -> Option<u64> {
    let (share, whole) = (share.shown()?, whole.shown()?);
    Some((share * whole as f64).round() as u64)
}

/// Protects one unit: its month's counts through the in-table rules, nothing compared.
pub fn protect_unit(q: &Questionnaire, raw: &RawCounts, month: &str, k: u64) -> UnitCells {
    let request = ReportRequest {
        level: Level::All,
        site_id: None,
        provider_id: None,
        campaign_id: String::new(),
        from: month.to_string(),
        to: month.to_string(),
        k,
    };
    let figures = match build(q, &request, raw, None, None).map(|report| report.body) {
        Ok(Body::Figures(figures)) => figures,
        // Too few responses (or a month that cannot be read): nothing shown.
        _ => return withheld(q),
    };
    let questions: Vec<QuestionCells> = figures
        .questions
        .iter()
        .map(|question| QuestionCells {
            answered: question.answered.shown(),
            options: question.options.iter().map(|option| option.count.shown()).collect(),
            top: question.top_box.and_then(|top| count_of(top, question.answered)),
        })
        .collect();
    let with_top: Vec<&QuestionCells> = q
        .questions
        .iter()
        .zip(&questions)
        .filter(|(question, _)| !question.top_box.is_empty())
        .map(|(_, cells)| cells)
        .collect();
    let pooled_answered = sum(with_top.iter().map(|cells| cells.answered), 0);
    let pooled_top = pooled_answered.and_then(|n| count_of(figures.summary.top_box, Cell::Shown(n)));
    let (responses, opt_outs) = (figures.summary.responses.shown(), figures.summary.opt_outs.shown());
    // Responses and opt-outs are among the invitations: a withheld opt-out count lies
    // between 0 and invitations minus responses, so with fewer than k of those it would be
    // pinned. Then the invitations are withheld too.
    let invitations = figures.summary.invitations.shown().filter(|&invitations| {
        let room = invitations.saturating_sub(responses.unwrap_or(0));
        opt_outs.is_some() || responses.is_none() || room.saturating_add(1) >= k
    });
    UnitCells {
        invitations,
        responses,
        opt_outs,
        questions,
        pooled_top,
        pooled_answered: pooled_top.and(pooled_answered),
        noise_epsilon: None,
    }
}

/// A unit with every cell withheld.
fn withheld(q: &Questionnaire) -> UnitCells {
    UnitCells {
        invitations: None,
        responses: None,
        opt_outs: None,
        questions: q
            .questions
            .iter()
            .map(|question| QuestionCells {
                answered: None,
                options: vec![None; question.options.len()],
                top: None,
            })
            .collect(),
        pooled_top: None,
        pooled_answered: None,
        noise_epsilon: None,
    }
}

/// The sum of `cells`, shown only if every one is (so it is at least `k`: shown unit cells
/// are). The sum of no cells at all, a population with no unit in the period, is 0: nobody
/// is in it, and the sums around it would tell as much.
fn sum(cells: impl IntoIterator<Item = Option<u64>>, k: u64) -> Option<u64> {
    let mut cells = cells.into_iter().peekable();
    if cells.peek().is_none() {
        return Some(0);
    }
    let total = cells.try_fold(0u64, |total, cell| cell.map(|v| total.saturating_add(v)))?;
    (total >= k).then_some(total)
}

fn cell(value: Option<u64>) -> Cell<u64> {
    value.map_or(Cell::Suppressed, Cell::Shown)
}

fn share_cell(part: Option<u64>, whole: Option<u64>) -> Cell<f64> {
    match (part, whole) {
        (Some(part), Some(whole)) if whole > 0 => Cell::Shown(share(part, whole)),
        _ => Cell::Suppressed,
    }
}

/// The derived totals of some units; `None` is withheld.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Invitations sent.
    pub invitations: Option<u64>,
    /// Surveys answered.
    pub responses: Option<u64>,
    /// Patients who declined.
    pub opt_outs: Option<u64>,
    /// Top-box answers across the questions that have a top box.
    pub pooled_top: Option<u64>,
    /// All answers to those questions.
    pub pooled_answered: Option<u64>,
}

/// The sums of `units`' cells, each shown only when every part is.
pub fn totals(units: &[&UnitCells], k: u64) -> Totals {
    Totals {
        invitations: sum(units.iter().map(|u| u.invitations), k),
        responses: sum(units.iter().map(|u| u.responses), k),
        opt_outs: sum(units.iter().map(|u| u.opt_outs), k),
        pooled_top: sum(units.iter().map(|u| u.pooled_top), k),
        pooled_answered: sum(units.iter().map(|u| u.pooled_answered), k),
    }
}

/// The top-box share of question `qi` over `units`, or withheld.
pub fn top_box_share(units: &[&UnitCells], qi: usize, k: u64) -> Cell<f64> {
    let top = sum(units.iter().map(|u| u.questions.get(qi).and_then(|q| q.top)), k);
    let answered = sum(units.iter().map(|u| u.questions.get(qi).and_then(|q| q.answered)), k);
    share_cell(top, answered)
}

/// What a derived report is about.
#[derive(Debug, Clone)]
pub struct Derived<'a> {
    /// Whose numbers, with the site and provider where they apply.
    pub level: Level,
    /// The site, for provider and site reports.
    pub site_id: Option<String>,
    /// The provider, for provider reports.
    pub provider_id: Option<String>,
    /// The campaign.
    pub campaign_id: String,
    /// The period's label (`2026-11`, `2026-Q4`, `2026`).
    pub period: String,
    /// The small-cell threshold the units were protected with.
    pub k: u64,
    /// The population's units, by month, oldest first: every month of the period.
    pub months: Vec<(String, Vec<&'a UnitCells>)>,
    /// Per question, the site's top-box share over the period (provider reports).
    pub site: Option<Vec<Cell<f64>>>,
    /// Per question, all sites' top-box share over the period (provider and site reports).
    pub all: Option<Vec<Cell<f64>>>,
}

/// The report derived from released units: sums shown only where all their parts are.
pub fn derive(q: &Questionnaire, d: &Derived<'_>) -> Report {
    let k = d.k;
    let every: Vec<&UnitCells> = d.months.iter().flat_map(|(_, units)| units.iter().copied()).collect();
    let whole = totals(&every, k);
    let compared_with: Vec<Level> =
        [d.site.as_ref().map(|_| Level::Site), d.all.as_ref().map(|_| Level::All)]
            .into_iter()
            .flatten()
            .collect();
    // Nothing to show at all: no unit with its responses shown.
    let body = if every.iter().all(|u| u.responses.is_none()) {
        Body::TooFewResponses
    } else {
        let questions = q
            .questions
            .iter()
            .enumerate()
            .map(|(qi, question)| {
                let answered = sum(every.iter().map(|u| u.questions.get(qi).and_then(|c| c.answered)), k);
                let options = question
                    .options
                    .iter()
                    .enumerate()
                    .map(|(oi, choice)| {
                        let count = sum(
                            every.iter().map(|u| {
                                u.questions.get(qi).and_then(|c| c.options.get(oi).copied().flatten())
                            }),
                            k,
                        );
                        OptionFigures {
                            id: choice.id.clone(),
                            top_box: question.top_box.contains(&choice.id),
                            count: cell(count),
                            share: share_cell(count, answered),
                        }
                    })
                    .collect();
                let has_top = !question.top_box.is_empty();
                QuestionFigures {
                    id: question.id.clone(),
                    answered: cell(answered),
                    options,
                    top_box: has_top.then(|| top_box_share(&every, qi, k)),
                    site_top_box: d
                        .site
                        .as_ref()
                        .filter(|_| has_top)
                        .map(|site| site.get(qi).copied().unwrap_or(Cell::Suppressed)),
                    all_top_box: d
                        .all
                        .as_ref()
                        .filter(|_| has_top)
                        .map(|all| all.get(qi).copied().unwrap_or(Cell::Suppressed)),
                }
            })
            .collect();
        let trend = d
            .months
            .iter()
            .map(|(month, units)| {
                let t = totals(units, k);
                MonthFigures {
                    month: month.clone(),
                    invitations: cell(t.invitations),
                    responses: cell(t.responses),
                    opt_outs: cell(t.opt_outs),
                    response_rate: share_cell(t.responses, t.invitations),
                    top_box: share_cell(t.pooled_top, t.pooled_answered),
                }
            })
            .collect();
        Body::Figures(Figures {
            summary: Summary {
                invitations: cell(whole.invitations),
                responses: cell(whole.responses),
                opt_outs: cell(whole.opt_outs),
                response_rate: share_cell(whole.responses, whole.invitations),
                top_box: share_cell(whole.pooled_top, whole.pooled_answered),
            },
            questions,
            trend,
        })
    };
    let first = d.months.first().map(|(m, _)| m.clone()).unwrap_or_default();
    let last = d.months.last().map(|(m, _)| m.clone()).unwrap_or_default();
    Report {
        questionnaire: q.id.clone(),
        level: d.level,
        site_id: d.site_id.clone(),
        provider_id: d.provider_id.clone(),
        campaign_id: d.campaign_id.clone(),
        period: d.period.clone(),
        from: first,
        to: last,
        k,
        compared_with,
        noise_epsilon: every.iter().filter_map(|u| u.noise_epsilon).reduce(f64::max),
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::model::{AnswerRow, PeriodRow};

    fn unit(q: &Questionnaire, month: &str, responses: u64, overall: &[(&str, u64)]) -> UnitCells {
        let raw = RawCounts {
            periods: vec![PeriodRow { month: month.into(), invitations: 40, responses, opt_outs: 6 }],
            answers: overall
                .iter()
                .map(|(answer, count)| AnswerRow {
                    month: month.into(),
                    question: "overall".into(),
                    answer: (*answer).into(),
                    count: *count,
                })
                .collect(),
        };
        protect_unit(q, &raw, month, 5)
    }

    fn overall_index(q: &Questionnaire) -> usize {
        q.questions.iter().position(|question| question.id == "overall").unwrap()
    }

    #[test]
    fn a_sum_is_shown_only_when_every_part_is() {
        assert_eq!(sum([Some(5), Some(7)], 5), Some(12));
        assert_eq!(sum([Some(5), None], 5), None);
        assert_eq!(sum([Some(3)], 5), None, "a unit cell is never under k; a sum never");
        assert_eq!(sum([], 5), Some(0), "nobody: nothing to hide");
    }

    #[test]
    fn units_keep_what_their_own_table_shows_and_no_more() {
        let q = Questionnaire::builtin();
        let qi = overall_index(&q);
        let busy = unit(&q, "2026-04", 30, &[("10", 12), ("9", 8), ("8", 7), ("3", 3)]);
        let cells = &busy.questions[qi];
        assert_eq!(cells.answered, Some(30));
        let at = |id: &str| q.questions[qi].options.iter().position(|o| o.id == id).unwrap();
        assert_eq!(cells.options[at("10")], Some(12));
        assert_eq!(cells.options[at("3")], None, "3 answers: under k");
        assert_eq!(cells.top, Some(20), "top box 9-10: 20 of 30, the rest 10");
        assert_eq!(busy.invitations, Some(40));
        let quiet = unit(&q, "2026-05", 3, &[("10", 3)]);
        assert_eq!(quiet, withheld(&q), "too few responses: nothing shown");
    }

    #[test]
    fn a_withheld_opt_out_count_is_not_pinned_by_the_invitations() {
        let q = Questionnaire::builtin();
        let raw = |invitations, responses, opt_outs| RawCounts {
            periods: vec![PeriodRow { month: "2026-04".into(), invitations, responses, opt_outs }],
            answers: vec![AnswerRow {
                month: "2026-04".into(),
                question: "overall".into(),
                answer: "9".into(),
                count: responses,
            }],
        };
        // 2 opt-outs withheld among 12 - 9 = 3 others: 0..=3 would pin them.
        let tight = protect_unit(&q, &raw(12, 9, 2), "2026-04", 5);
        assert_eq!((tight.invitations, tight.responses, tight.opt_outs), (None, Some(9), None));
        // Among 20 - 9 = 11 others, 0..=11 pins nothing.
        let loose = protect_unit(&q, &raw(20, 9, 2), "2026-04", 5);
        assert_eq!((loose.invitations, loose.responses, loose.opt_outs), (Some(20), Some(9), None));
        // Shown opt-outs need no room.
        let shown = protect_unit(&q, &raw(15, 9, 5), "2026-04", 5);
        assert_eq!((shown.invitations, shown.opt_outs), (Some(15), Some(5)));
    }

    #[test]
    fn subtracting_periods_gives_back_only_shown_cells() {
        // The review's attack: June's small counts from (April..June) minus (April, May).
        let q = Questionnaire::builtin();
        let qi = overall_index(&q);
        let at = |id: &str| q.questions[qi].options.iter().position(|o| o.id == id).unwrap();
        let april = unit(&q, "2026-04", 30, &[("10", 12), ("9", 8), ("8", 10)]);
        let may = unit(&q, "2026-05", 30, &[("10", 12), ("9", 8), ("8", 10)]);
        let june = unit(&q, "2026-06", 30, &[("10", 12), ("9", 8), ("8", 7), ("3", 3)]);
        let months = vec![
            ("2026-04".to_string(), vec![&april]),
            ("2026-05".to_string(), vec![&may]),
            ("2026-06".to_string(), vec![&june]),
        ];
        let derived = |months: Vec<(String, Vec<&UnitCells>)>| {
            derive(
                &q,
                &Derived {
                    level: Level::Provider,
                    site_id: Some("s".into()),
                    provider_id: Some("p".into()),
                    campaign_id: "c".into(),
                    period: "2026-Q2".into(),
                    k: 5,
                    months,
                    site: None,
                    all: None,
                },
            )
        };
        let quarter = derived(months.clone());
        let figures = quarter.figures().unwrap();
        let overall = &figures.questions[qi];
        // Each option of the quarter is the sum of its months, shown only when all three
        // are: June hides "3" (under k), so the quarter does too, and the quarter minus
        // April and May gives back nothing that June withholds.
        assert_eq!(june.questions[qi].options[at("3")], None);
        assert_eq!(overall.options[at("3")].count, Cell::Suppressed);
        for (oi, option) in overall.options.iter().enumerate() {
            let parts: Option<Vec<u64>> =
                [&april, &may, &june].iter().map(|u| u.questions[qi].options[oi]).collect();
            let expected = parts.map_or(Cell::Suppressed, |parts| Cell::Shown(parts.iter().sum()));
            assert_eq!(option.count, expected, "{}", option.id);
        }
        assert!(overall.options.iter().any(|o| o.count.shown().is_some()), "something is shown");
        assert_eq!(overall.answered, Cell::Shown(90));
        assert_eq!(figures.summary.responses, Cell::Shown(90));
        assert_eq!(figures.trend.len(), 3);
        // A period with a unit that shows nothing withholds every sum it enters.
        let quiet = unit(&q, "2026-06", 3, &[("10", 3)]);
        let with_quiet =
            derived(vec![("2026-05".to_string(), vec![&may]), ("2026-06".to_string(), vec![&quiet])]);
        let figures = with_quiet.figures().unwrap();
        assert_eq!(figures.summary.responses, Cell::Suppressed);
        assert_eq!(figures.questions[qi].options[at("10")].count, Cell::Suppressed);
        assert_eq!(figures.trend[0].responses, Cell::Shown(30), "May alone is shown");
        assert_eq!(figures.trend[1].responses, Cell::Suppressed);
        // Nothing shown anywhere: too few responses.
        assert!(derived(vec![("2026-06".to_string(), vec![&quiet])]).too_few_responses());
    }
}
