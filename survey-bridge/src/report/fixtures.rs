//! Test data shared by the report's tests: a three-question questionnaire and a provider
//! whose counts exercise every rule.

use super::model::{AnswerRow, Level, PeriodRow, RawCounts, Report, ReportRequest};
use crate::questionnaire::Questionnaire;

pub fn questionnaire() -> Questionnaire {
    Questionnaire::from_toml(
        r#"
id = "test-v1"
title = { en = "Your recent visit", fr = "Votre visite récente" }
intro = { en = "Intro", fr = "Intro" }

[[questions]]
id = "listened"
kind = "frequency"
top_box = ["always", "often"]
text = { en = "Did the provider listen carefully to you?", fr = "Le professionnel vous a-t-il écouté attentivement?" }

[[questions]]
id = "next_steps"
kind = "yes_no"
top_box = ["yes"]
text = { en = "Did you know what to do next (tests & follow-up)?", fr = "Saviez-vous quoi faire ensuite (examens et suivi)?" }

[[questions]]
id = "overall"
kind = "rating"
text = { en = "Overall rating", fr = "Note globale" }
"#,
    )
    .unwrap()
}

pub fn raw(periods: &[(&str, u64, u64, u64)], answers: &[(&str, &str, &str, u64)]) -> RawCounts {
    RawCounts {
        periods: periods
            .iter()
            .map(|&(month, invitations, responses, opt_outs)| PeriodRow {
                month: month.into(),
                invitations,
                responses,
                opt_outs,
            })
            .collect(),
        answers: answers
            .iter()
            .map(|&(month, question, answer, count)| AnswerRow {
                month: month.into(),
                question: question.into(),
                answer: answer.into(),
                count,
            })
            .collect(),
    }
}

pub fn request(level: Level, k: u64) -> ReportRequest {
    ReportRequest {
        level,
        site_id: Some("north-clinic".into()),
        provider_id: Some("dr-lee".into()),
        campaign_id: "2026-q1".into(),
        from: "2026-01".into(),
        to: "2026-03".into(),
        k,
    }
}

const SCOPE_PERIODS: &[(&str, u64, u64, u64)] =
    &[("2026-01", 40, 20, 2), ("2026-02", 36, 14, 0), ("2026-03", 9, 3, 1)];

const SCOPE_ANSWERS: &[(&str, &str, &str, u64)] = &[
    ("2026-01", "listened", "always", 10),
    ("2026-01", "listened", "often", 6),
    ("2026-01", "listened", "sometimes", 3),
    ("2026-01", "listened", "rarely", 1),
    ("2026-02", "listened", "always", 8),
    ("2026-02", "listened", "often", 4),
    ("2026-02", "listened", "sometimes", 2),
    ("2026-03", "listened", "always", 2),
    ("2026-03", "listened", "often", 1),
    ("2026-01", "next_steps", "yes", 15),
    ("2026-01", "next_steps", "no", 5),
    ("2026-02", "next_steps", "yes", 10),
    ("2026-02", "next_steps", "no", 4),
    ("2026-03", "next_steps", "yes", 3),
    ("2026-01", "overall", "9", 12),
    ("2026-01", "overall", "10", 8),
    ("2026-02", "overall", "7", 6),
    ("2026-02", "overall", "8", 8),
    ("2026-03", "overall", "10", 3),
];

/// Another provider at the same site.
const COLLEAGUE_PERIODS: &[(&str, u64, u64, u64)] = &[("2026-01", 50, 25, 3), ("2026-02", 50, 25, 2)];

const COLLEAGUE_ANSWERS: &[(&str, &str, &str, u64)] = &[
    ("2026-01", "listened", "always", 20),
    ("2026-01", "listened", "often", 10),
    ("2026-01", "listened", "sometimes", 10),
    ("2026-01", "listened", "rarely", 5),
    ("2026-01", "listened", "never", 5),
    ("2026-02", "next_steps", "yes", 30),
    ("2026-02", "next_steps", "no", 20),
];

/// Another site: its "listened" adds only three top-box answers to the site's.
const OTHER_SITE_PERIODS: &[(&str, u64, u64, u64)] = &[("2026-01", 200, 153, 5)];

const OTHER_SITE_ANSWERS: &[(&str, &str, &str, u64)] = &[
    ("2026-01", "listened", "always", 2),
    ("2026-01", "listened", "often", 1),
    ("2026-01", "next_steps", "yes", 100),
    ("2026-01", "next_steps", "no", 50),
];

/// The questionnaire and the counts of the provider, its site and all sites.
pub fn sample_counts() -> (Questionnaire, RawCounts, RawCounts, RawCounts) {
    let scope = raw(SCOPE_PERIODS, SCOPE_ANSWERS);
    let mut site = scope.clone();
    let colleague = raw(COLLEAGUE_PERIODS, COLLEAGUE_ANSWERS);
    site.periods.extend(colleague.periods);
    site.answers.extend(colleague.answers);
    let mut all = site.clone();
    let other = raw(OTHER_SITE_PERIODS, OTHER_SITE_ANSWERS);
    all.periods.extend(other.periods);
    all.answers.extend(other.answers);
    (questionnaire(), scope, site, all)
}

/// The provider's report, compared with its site and all sites, k = 5.
pub fn sample_report() -> Report {
    let (q, scope, site, all) = sample_counts();
    super::build(&q, &request(Level::Provider, 5), &scope, Some(&site), Some(&all)).unwrap()
}

/// A provider with four responses: too few for k = 5.
pub fn too_few_report() -> Report {
    let counts = raw(
        &[("2026-01", 987, 4, 3)],
        &[("2026-01", "listened", "always", 4), ("2026-01", "next_steps", "no", 4)],
    );
    super::build(&questionnaire(), &request(Level::Provider, 5), &counts, None, None).unwrap()
}
