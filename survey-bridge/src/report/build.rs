//! From raw counts to a [`Report`]: add the rows up on the questionnaire's and the period's
//! grid, apply the rules of [`suppress`], and keep only what may be published.

use std::collections::HashMap;

use super::model::{
    Body, Cell, Figures, Level, MonthFigures, OptionFigures, QuestionFigures, RawCounts, Report,
    ReportRequest, RequestError, Summary, months, share,
};
use super::suppress::{self, is_small};
use crate::questionnaire::{Question, Questionnaire};

/// One population's counts, added up by month and by question and option.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tally {
    invitations: Vec<u64>,
    responses: Vec<u64>,
    opt_outs: Vec<u64>,
    /// Top-box answers per month, across the questions that have a top box.
    month_top: Vec<u64>,
    /// The other answers to those questions, per month.
    month_rest: Vec<u64>,
    /// Per question, per option, over the period.
    options: Vec<Vec<u64>>,
}

fn top_flags(question: &Question) -> Vec<bool> {
    question.options.iter().map(|c| question.top_box.contains(&c.id)).collect()
}

fn total(values: &[u64]) -> u64 {
    values.iter().fold(0, |sum, &v| sum.saturating_add(v))
}

/// The top-box count and the rest.
fn split(counts: &[u64], top: &[bool]) -> (u64, u64) {
    counts.iter().zip(top).fold((0, 0), |(t, r), (&c, &is_top)| {
        if is_top { (t.saturating_add(c), r) } else { (t, r.saturating_add(c)) }
    })
}

impl Tally {
    fn new(q: &Questionnaire, months: &[String], raw: &RawCounts) -> Tally {
        let month_at: HashMap<&str, usize> =
            months.iter().enumerate().map(|(i, m)| (m.as_str(), i)).collect();
        let option_at: HashMap<(&str, &str), (usize, usize, bool)> = q
            .questions
            .iter()
            .enumerate()
            .flat_map(|(qi, question)| {
                let top = top_flags(question);
                let has_top_box = top.iter().any(|&t| t);
                question.options.iter().enumerate().map(move |(oi, choice)| {
                    ((question.id.as_str(), choice.id.as_str()), (qi, oi, has_top_box && top[oi]))
                })
            })
            .collect();
        let tb_question: Vec<bool> =
            q.questions.iter().map(|question| !question.top_box.is_empty()).collect();
        let n = months.len();
        let mut tally = Tally {
            invitations: vec![0; n],
            responses: vec![0; n],
            opt_outs: vec![0; n],
            month_top: vec![0; n],
            month_rest: vec![0; n],
            options: q.questions.iter().map(|question| vec![0; question.options.len()]).collect(),
        };
        for row in &raw.periods {
            if let Some(&m) = month_at.get(row.month.as_str()) {
                tally.invitations[m] = tally.invitations[m].saturating_add(row.invitations);
                tally.responses[m] = tally.responses[m].saturating_add(row.responses);
                tally.opt_outs[m] = tally.opt_outs[m].saturating_add(row.opt_outs);
            }
        }
        for row in &raw.answers {
            let (Some(&m), Some(&(qi, oi, is_top))) = (
                month_at.get(row.month.as_str()),
                option_at.get(&(row.question.as_str(), row.answer.as_str())),
            ) else {
                continue;
            };
            tally.options[qi][oi] = tally.options[qi][oi].saturating_add(row.count);
            if tb_question[qi] {
                let side = if is_top { &mut tally.month_top[m] } else { &mut tally.month_rest[m] };
                *side = side.saturating_add(row.count);
            }
        }
        tally
    }

    /// Whether every count of `inner` is at most the same count here.
    fn contains(&self, inner: &Tally) -> bool {
        let le = |a: &[u64], b: &[u64]| a.iter().zip(b).all(|(x, y)| x <= y);
        le(&inner.invitations, &self.invitations)
            && le(&inner.responses, &self.responses)
            && le(&inner.opt_outs, &self.opt_outs)
            && le(&inner.month_top, &self.month_top)
            && le(&inner.month_rest, &self.month_rest)
            && inner.options.iter().zip(&self.options).all(|(a, b)| le(a, b))
    }
}

fn count_cell(value: u64, hidden: bool) -> Cell<u64> {
    if hidden { Cell::Suppressed } else { Cell::Shown(value) }
}

fn share_cell(part: u64, whole: u64, hidden: bool) -> Cell<f64> {
    if hidden || whole == 0 { Cell::Suppressed } else { Cell::Shown(share(part, whole)) }
}

fn present(id: Option<&String>) -> bool {
    id.is_some_and(|s| !s.is_empty())
}

/// Builds a report from the scope's counts and, for comparison, its site's (provider
/// reports only) and all sites' (provider and site reports). Comparison counts that do not
/// apply to the level are ignored. Every number that a rule withholds is already
/// [`Cell::Suppressed`] in the result, so every rendering of it withholds the same.
pub fn build(
    q: &Questionnaire,
    req: &ReportRequest,
    scope: &RawCounts,
    site: Option<&RawCounts>,
    all: Option<&RawCounts>,
) -> Result<Report, RequestError> {
    if req.k == 0 {
        return Err(RequestError::ZeroK);
    }
    let months = months(&req.from, &req.to)?;
    if req.level != Level::All && !present(req.site_id.as_ref()) {
        return Err(RequestError::Missing { level: req.level, field: "site_id" });
    }
    if req.level == Level::Provider && !present(req.provider_id.as_ref()) {
        return Err(RequestError::Missing { level: req.level, field: "provider_id" });
    }
    let site = site.filter(|_| req.level == Level::Provider).map(|raw| Tally::new(q, &months, raw));
    let all = all.filter(|_| req.level != Level::All).map(|raw| Tally::new(q, &months, raw));
    let scope = Tally::new(q, &months, scope);
    if site.as_ref().is_some_and(|site| !site.contains(&scope)) {
        return Err(RequestError::NotNested(Level::Site));
    }
    if let Some(all) = &all
        && (!all.contains(&scope) || site.as_ref().is_some_and(|site| !all.contains(site)))
    {
        return Err(RequestError::NotNested(Level::All));
    }
    let compared_with = [site.as_ref().map(|_| Level::Site), all.as_ref().map(|_| Level::All)]
        .into_iter()
        .flatten()
        .collect();
    let body = if is_small(total(&scope.responses), req.k) {
        Body::TooFewResponses
    } else {
        Body::Figures(figures(q, &months, req.k, &scope, site.as_ref(), all.as_ref()))
    };
    Ok(Report {
        questionnaire: q.id.clone(),
        level: req.level,
        site_id: if req.level == Level::All { None } else { req.site_id.clone() },
        provider_id: if req.level == Level::Provider { req.provider_id.clone() } else { None },
        campaign_id: req.campaign_id.clone(),
        period: if req.from == req.to { req.from.clone() } else { format!("{}..{}", req.from, req.to) },
        from: req.from.clone(),
        to: req.to.clone(),
        k: req.k,
        compared_with,
        noise_epsilon: None,
        body,
    })
}

fn figures(
    q: &Questionnaire,
    months: &[String],
    k: u64,
    scope: &Tally,
    site: Option<&Tally>,
    all: Option<&Tally>,
) -> Figures {
    let questions: Vec<QuestionFigures> = q
        .questions
        .iter()
        .enumerate()
        .map(|(qi, question)| question_figures(question, qi, k, scope, site, all))
        .collect();
    let summary = summary(q, k, scope, &questions);
    let trend = trend(months, k, scope, summary.top_box.is_suppressed());
    Figures { summary, questions, trend }
}

/// Whether a comparison population may publish its top-box share for question `qi`: by its
/// own rules, and without its difference from any population inside it being small.
fn comparison(pop: &Tally, inner: &[&Tally], qi: usize, top: &[bool], k: u64) -> Cell<f64> {
    let (t, r) = split(&pop.options[qi], top);
    let shown = !is_small(total(&pop.responses), k)
        && !is_small(t, k)
        && !is_small(r, k)
        && inner.iter().all(|inner| suppress::difference_is_safe((t, r), split(&inner.options[qi], top), k));
    share_cell(t, t.saturating_add(r), !shown)
}

fn question_figures(
    question: &Question,
    qi: usize,
    k: u64,
    scope: &Tally,
    site: Option<&Tally>,
    all: Option<&Tally>,
) -> QuestionFigures {
    let top = top_flags(question);
    let counts = &scope.options[qi];
    let n = total(counts);
    let cells = suppress::question(counts, &top, k);
    let options = question
        .options
        .iter()
        .enumerate()
        .map(|(oi, choice)| OptionFigures {
            id: choice.id.clone(),
            top_box: top[oi],
            count: count_cell(counts[oi], cells.hidden[oi]),
            share: share_cell(counts[oi], n, cells.hidden[oi] || !cells.answered),
        })
        .collect();
    let has_top_box = cells.top_box.is_some();
    let (t, _) = split(counts, &top);
    let inner_of_all: Vec<&Tally> = [Some(scope), site].into_iter().flatten().collect();
    QuestionFigures {
        id: question.id.clone(),
        answered: count_cell(n, !cells.answered),
        options,
        top_box: cells.top_box.map(|shown| share_cell(t, n, !shown)),
        site_top_box: site.filter(|_| has_top_box).map(|site| comparison(site, &[scope], qi, &top, k)),
        all_top_box: all.filter(|_| has_top_box).map(|all| comparison(all, &inner_of_all, qi, &top, k)),
    }
}

/// The period's totals. The pooled top box is a total over the questions' top boxes, so it
/// is withheld unless the questions whose top box is withheld are safe against it.
fn summary(q: &Questionnaire, k: u64, scope: &Tally, questions: &[QuestionFigures]) -> Summary {
    let (invitations, responses, opt_outs) =
        (total(&scope.invitations), total(&scope.responses), total(&scope.opt_outs));
    let mut tops = Vec::new();
    let mut rests = Vec::new();
    let mut hidden = Vec::new();
    for (qi, (question, figures)) in q.questions.iter().zip(questions).enumerate() {
        if let Some(top_box) = figures.top_box {
            let (t, r) = split(&scope.options[qi], &top_flags(question));
            tops.push(t);
            rests.push(r);
            hidden.push(top_box.is_suppressed());
        }
    }
    let members: Vec<usize> = (0..tops.len()).collect();
    let (t, r) = (total(&tops), total(&rests));
    let pooled_shown = !is_small(t, k)
        && !is_small(r, k)
        && suppress::is_safe(&tops, &hidden, &members, k)
        && suppress::is_safe(&rests, &hidden, &members, k);
    let rate_hidden = is_small(invitations, k) || is_small(responses, k);
    Summary {
        invitations: count_cell(invitations, is_small(invitations, k)),
        responses: count_cell(responses, is_small(responses, k)),
        opt_outs: count_cell(opt_outs, is_small(opt_outs, k)),
        response_rate: share_cell(responses, invitations, rate_hidden),
        top_box: share_cell(t, t.saturating_add(r), !pooled_shown),
    }
}

/// The months, oldest first. Each column is protected against the period total; a month's
/// rate is withheld with either of its counts, and its top box with its responses. The
/// months' top boxes add up to the pooled one: when that is withheld, at least one month's
/// is too (and then, by protection, a second).
fn trend(months: &[String], k: u64, scope: &Tally, pooled_withheld: bool) -> Vec<MonthFigures> {
    let invitations = suppress::column(&scope.invitations, k);
    let responses = suppress::column(&scope.responses, k);
    let opt_outs = suppress::column(&scope.opt_outs, k);
    let mut top_box = responses.clone();
    suppress::split_column(&scope.month_top, &scope.month_rest, &mut top_box, k);
    if pooled_withheld
        && !top_box.contains(&true)
        && let Some(m) = (0..months.len()).min_by_key(|&m| (scope.month_top[m], m))
    {
        top_box[m] = true;
        suppress::split_column(&scope.month_top, &scope.month_rest, &mut top_box, k);
    }
    months
        .iter()
        .enumerate()
        .map(|(m, month)| MonthFigures {
            month: month.clone(),
            invitations: count_cell(scope.invitations[m], invitations[m]),
            responses: count_cell(scope.responses[m], responses[m]),
            opt_outs: count_cell(scope.opt_outs[m], opt_outs[m]),
            response_rate: share_cell(
                scope.responses[m],
                scope.invitations[m],
                invitations[m] || responses[m],
            ),
            top_box: share_cell(
                scope.month_top[m],
                scope.month_top[m].saturating_add(scope.month_rest[m]),
                top_box[m],
            ),
        })
        .collect()
}

#[cfg(test)]
mod tests;
