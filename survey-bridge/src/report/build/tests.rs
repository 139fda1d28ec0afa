use super::super::fixtures::{self, questionnaire, raw, request};
use super::*;

use Cell::{Shown, Suppressed};

fn question<'a>(report: &'a Report, id: &str) -> &'a QuestionFigures {
    report.figures().unwrap().questions.iter().find(|q| q.id == id).unwrap()
}

fn counts(q: &QuestionFigures) -> Vec<Cell<u64>> {
    q.options.iter().map(|o| o.count).collect()
}

#[test]
fn the_sample_report_shows_and_withholds_what_the_rules_say() {
    let report = fixtures::sample_report();
    let figures = report.figures().unwrap();
    let s = &figures.summary;
    assert_eq!((s.invitations, s.responses, s.opt_outs), (Shown(85), Shown(37), Suppressed));
    assert_eq!(s.response_rate, Shown(0.4353));
    assert_eq!(s.top_box, Shown(0.7973), "59 of 74 answers");
    let listened = question(&report, "listened");
    assert_eq!(listened.answered, Shown(37));
    // sometimes 5 hides with rarely 1 and never 0, whose sum alone (1) would be small.
    assert_eq!(counts(listened), [Shown(20), Shown(11), Suppressed, Suppressed, Suppressed]);
    assert_eq!(listened.options[0].share, Shown(0.5405));
    assert_eq!(listened.options[2].share, Suppressed);
    assert_eq!(listened.top_box, Some(Shown(0.8378)));
    let overall = question(&report, "overall");
    assert_eq!(overall.top_box, None);
    assert_eq!((overall.site_top_box, overall.all_top_box), (None, None));
    let shown: Vec<(usize, u64)> =
        counts(overall).iter().enumerate().filter_map(|(i, c)| c.shown().map(|v| (i, v))).collect();
    assert_eq!(shown, [(8, 8), (9, 12), (10, 11)], "0 to 6 are empty; 7 (6) hides with them");
}

#[test]
fn comparisons_are_shown_unless_the_difference_is_small() {
    let report = fixtures::sample_report();
    assert_eq!(report.compared_with, [Level::Site, Level::All]);
    let listened = question(&report, "listened");
    assert_eq!(listened.site_top_box, Some(Shown(0.7011)), "61 of 87");
    // All sites add only 3 top-box answers and no others to the site: withheld.
    assert_eq!(listened.all_top_box, Some(Suppressed));
    let next_steps = question(&report, "next_steps");
    assert_eq!(next_steps.top_box, Some(Shown(0.7568)));
    assert_eq!(next_steps.site_top_box, Some(Shown(0.6667)), "58 of 87");
    assert_eq!(next_steps.all_top_box, Some(Shown(0.6667)), "158 of 237");
}

#[test]
fn comparisons_follow_the_level() {
    let (q, scope, site, all) = fixtures::sample_counts();
    let mut req = request(Level::Site, 5);
    req.provider_id = Some("ignored".into());
    let report = build(&q, &req, &site, Some(&site), Some(&all)).unwrap();
    assert_eq!(report.compared_with, [Level::All]);
    assert_eq!(report.provider_id, None);
    assert!(question(&report, "listened").site_top_box.is_none());
    assert!(question(&report, "listened").all_top_box.is_some());
    let report = build(&q, &request(Level::All, 5), &all, Some(&site), Some(&all)).unwrap();
    assert!(report.compared_with.is_empty() && report.site_id.is_none());
    let report = build(&q, &request(Level::Provider, 5), &scope, None, None).unwrap();
    assert!(report.compared_with.is_empty());
    assert!(question(&report, "listened").site_top_box.is_none());
}

#[test]
fn a_population_under_k_shows_nothing_and_at_k_shows_figures() {
    let q = questionnaire();
    let answers = [("2026-01", "overall", "9", 5)];
    let at = |responses| raw(&[("2026-01", 50, responses, 0)], &answers);
    let report = build(&q, &request(Level::Provider, 6), &at(5), None, None).unwrap();
    assert!(report.too_few_responses() && report.figures().is_none());
    let report = build(&q, &request(Level::Provider, 5), &at(5), None, None).unwrap();
    assert!(!report.too_few_responses());
    assert_eq!(report.figures().unwrap().summary.responses, Shown(5));
}

#[test]
fn the_trend_runs_over_every_month_oldest_first() {
    let q = questionnaire();
    let periods =
        [("2026-03", 30, 12, 0), ("2025-12", 99, 99, 99), ("2026-01", 20, 10, 0), ("2026-01", 20, 10, 0)];
    let answers = [("2026-03", "next_steps", "yes", 6), ("2026-03", "next_steps", "no", 6)];
    let report = build(&q, &request(Level::Provider, 5), &raw(&periods, &answers), None, None).unwrap();
    let trend = &report.figures().unwrap().trend;
    let months: Vec<&str> = trend.iter().map(|m| m.month.as_str()).collect();
    assert_eq!(months, ["2026-01", "2026-02", "2026-03"], "December is outside the period");
    assert_eq!(trend[0].invitations, Shown(40), "rows of one month add up");
    assert_eq!(trend[0].responses, Shown(20));
    assert_eq!(trend[0].response_rate, Shown(0.5));
    // February is empty, so small, and would be the total minus the others: March (12,
    // smaller than January's 20) is withheld with it.
    let responses: Vec<Cell<u64>> = trend.iter().map(|m| m.responses).collect();
    assert_eq!(responses, [Shown(20), Suppressed, Suppressed]);
    assert_eq!(trend[2].response_rate, Suppressed);
    assert_eq!(trend[2].top_box, Suppressed, "with its responses");
    assert_eq!(report.figures().unwrap().summary.responses, Shown(32));
}

#[test]
fn rows_for_unknown_questions_and_options_are_left_out() {
    let q = questionnaire();
    let answers = [
        ("2026-01", "next_steps", "yes", 10),
        ("2026-01", "next_steps", "maybe", 7),
        ("2026-01", "no_such_question", "yes", 7),
        ("2026-04", "next_steps", "no", 7),
        ("2026-01", "next_steps", "no", 10),
    ];
    let report =
        build(&q, &request(Level::Provider, 5), &raw(&[("2026-01", 40, 20, 0)], &answers), None, None)
            .unwrap();
    assert_eq!(question(&report, "next_steps").answered, Shown(20));
}

#[test]
fn the_pooled_top_box_is_withheld_when_it_would_reveal_one_question() {
    let q = questionnaire();
    let mut answers = vec![("2026-01", "next_steps", "yes", 3), ("2026-01", "next_steps", "no", 17)];
    answers.extend([("2026-01", "listened", "always", 12), ("2026-01", "listened", "sometimes", 8)]);
    let report =
        build(&q, &request(Level::Provider, 5), &raw(&[("2026-01", 40, 20, 0)], &answers), None, None)
            .unwrap();
    assert_eq!(question(&report, "next_steps").top_box, Some(Suppressed));
    assert_eq!(question(&report, "listened").top_box, Some(Shown(0.6)));
    // Pooled 15 of 40 with listened's 12 of 20 shown would tell next_steps' 3.
    let figures = report.figures().unwrap();
    assert_eq!(figures.summary.top_box, Suppressed);
    // The months add up to the pooled share, so they may not all show theirs.
    assert_eq!(
        figures.trend.iter().map(|m| m.top_box).collect::<Vec<_>>(),
        [Suppressed, Suppressed, Suppressed]
    );
    // With two good months, the smallest goes, and the other with it by protection.
    answers.extend([("2026-02", "listened", "always", 10), ("2026-02", "listened", "never", 10)]);
    let periods = [("2026-01", 40, 20, 0), ("2026-02", 40, 20, 0), ("2026-03", 40, 20, 0)];
    answers.extend([("2026-03", "listened", "always", 10), ("2026-03", "listened", "never", 10)]);
    let report = build(&q, &request(Level::Provider, 5), &raw(&periods, &answers), None, None).unwrap();
    let figures = report.figures().unwrap();
    assert_eq!(figures.summary.top_box, Suppressed);
    let hidden = figures.trend.iter().filter(|m| m.top_box.is_suppressed()).count();
    assert_eq!(hidden, 2, "{:?}", figures.trend);
}

#[test]
fn bad_requests_name_the_field() {
    let q = questionnaire();
    let empty = RawCounts::default();
    let mut req = request(Level::Provider, 0);
    assert_eq!(build(&q, &req, &empty, None, None), Err(RequestError::ZeroK));
    req.k = 5;
    req.from = "2026-1".into();
    assert_eq!(build(&q, &req, &empty, None, None), Err(RequestError::BadMonth("from")));
    let mut req = request(Level::Provider, 5);
    req.provider_id = Some(String::new());
    let missing = RequestError::Missing { level: Level::Provider, field: "provider_id" };
    assert_eq!(build(&q, &req, &empty, None, None), Err(missing));
    let mut req = request(Level::Site, 5);
    req.site_id = None;
    assert!(build(&q, &req, &empty, None, None).unwrap_err().to_string().contains("site_id"));
}

#[test]
fn comparison_counts_must_contain_the_scope() {
    let (q, scope, site, all) = fixtures::sample_counts();
    let req = request(Level::Provider, 5);
    assert_eq!(build(&q, &req, &site, Some(&scope), None), Err(RequestError::NotNested(Level::Site)));
    assert_eq!(build(&q, &req, &scope, Some(&all), Some(&site)), Err(RequestError::NotNested(Level::All)));
    assert!(build(&q, &req, &scope, Some(&site), Some(&all)).is_ok());
}
