//! The intruder test: each role signs in over HTTPS, downloads every report table it can
//! fetch (every released month, quarter and year; its own, its site's or all sites'
//! populations; the comparisons; the usage export) and solves, with linear programming
//! ([`intruder`]), for every suppressed count: the values consistent with everything it was
//! shown, with the counts' own structure (responses and opt-outs within invitations, each
//! question's answers within the responses), must span at least k consecutive integers.
//!
//! The data are random but seeded: two sites, five providers from busy to nearly empty, two
//! campaigns (one of them for half a year, with three of the providers), 24 months of
//! invitations, answers (to a three-question survey: a frequency, a yes/no and a 0-10
//! rating) and declines, answered month by month through the real pool and fold. Each
//! role's unknowns are the finest counts its tables add up: a provider's month for providers
//! and site administrators, a site's month for analysts. A control shows that the same
//! solver pins small cells in the reports as they were before released periods (free month
//! ranges: Jan-May beside Jan-Jun).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::{Bridge, reader::Reader, sqlite, start_at};
use intruder::{Constraint, Problem};
use rand::{RngExt, SeedableRng, rngs::StdRng};
use serde_json::Value;
use survey_bridge::{
    db::{Db, Invitation},
    questionnaire::Questionnaire,
    report::{self, Level, ReportRequest},
};

const K: u64 = 5;
/// The campaigns: one all along, one for half a year (counted together in the usage export).
const CAMPAIGNS: [&str; 2] = ["pcpe-ongoing", "flu-2026"];
const FIRST_YEAR: i32 = 2025;
const MONTHS: usize = 24;

/// The survey of this test: fewer cells than the built-in one, the same kinds of question.
const SURVEY: &str = r#"
id = "intruder-v1"
[title]
en = "Your visit"
fr = "Votre visite"
[intro]
en = "Three questions."
fr = "Trois questions."
[[questions]]
id = "listened"
kind = "frequency"
top_box = ["always", "often"]
required = true
[questions.text]
en = "Did the provider listen?"
fr = "Vous a-t-on écouté?"
[[questions]]
id = "next_steps"
kind = "yes_no"
top_box = ["yes"]
required = true
[questions.text]
en = "Did you know what to do next?"
fr = "Saviez-vous quoi faire ensuite?"
[[questions]]
id = "overall"
kind = "rating"
top_box = ["9", "10"]
required = true
[questions.text]
en = "Overall?"
fr = "Dans l'ensemble?"
"#;

/// Site, provider, and how busy it is (most invitations a month).
const PROVIDERS: [(&str, &str, usize); 5] = [
    ("site-1001", "prov-a", 30),
    ("site-1001", "prov-b", 14),
    ("site-1001", "prov-c", 6),
    ("site-2002", "prov-d", 16),
    ("site-2002", "prov-e", 5),
];

fn month_label(m: usize) -> String {
    format!("{:04}-{:02}", FIRST_YEAR + (m / 12) as i32, m % 12 + 1)
}

/// The true counts of one provider's month.
#[derive(Debug, Clone, Default)]
struct Truth {
    invitations: u64,
    responses: u64,
    opt_outs: u64,
    /// Per question, per option.
    answers: Vec<Vec<u64>>,
}

/// What the reports are about, and the truth behind them.
struct World {
    q: Questionnaire,
    /// (campaign, provider, month) -> truth, for units that exist.
    truth: BTreeMap<(usize, usize, usize), Truth>,
}

impl World {
    /// The same truth with the providers of each site added up: an analyst's finest counts,
    /// the site standing for its first provider.
    fn by_site(&self) -> World {
        let mut truth: BTreeMap<(usize, usize, usize), Truth> = BTreeMap::new();
        for (&(c, p, m), unit) in &self.truth {
            let first = (0..PROVIDERS.len()).find(|&f| PROVIDERS[f].0 == PROVIDERS[p].0).unwrap();
            let sum = truth.entry((c, first, m)).or_insert_with(|| Truth {
                answers: unit.answers.iter().map(|options| vec![0; options.len()]).collect(),
                ..Truth::default()
            });
            sum.invitations += unit.invitations;
            sum.responses += unit.responses;
            sum.opt_outs += unit.opt_outs;
            for (total, part) in sum.answers.iter_mut().zip(&unit.answers) {
                for (t, p) in total.iter_mut().zip(part) {
                    *t += p;
                }
            }
        }
        World { q: self.q.clone(), truth }
    }
}

/// Seeds 24 months through the bridge's own database calls, month by month on its clock.
async fn seed(bridge: &Bridge, db: &Db, rng: &mut StdRng) -> World {
    let q = Questionnaire::from_toml(SURVEY).unwrap();
    let mut truth = BTreeMap::new();
    for m in 0..MONTHS {
        let mid = format!("{}-15T12:00:00Z", month_label(m)).parse::<jiff::Timestamp>().unwrap();
        bridge.clock.advance(mid.duration_since(bridge.clock.now()));
        let now = bridge.clock.now();
        for (c, p) in (0..CAMPAIGNS.len()).flat_map(|c| (0..PROVIDERS.len()).map(move |p| (c, p))) {
            let (site, provider, busy) = PROVIDERS[p];
            // The second campaign runs for half a year, at three providers.
            if c == 1 && !((12..18).contains(&m) && [0, 1, 3].contains(&p)) {
                continue;
            }
            // Some months a provider sends nothing; some months very little.
            if rng.random_bool(0.12) {
                continue;
            }
            let invitations = rng.random_range(1..=busy);
            let responses = rng.random_range(0..=invitations);
            let opt_outs = rng.random_range(0..=(invitations - responses).min(3));
            let mut unit = Truth {
                invitations: invitations as u64,
                responses: responses as u64,
                opt_outs: opt_outs as u64,
                answers: q.questions.iter().map(|question| vec![0; question.options.len()]).collect(),
            };
            for i in 0..invitations {
                let hmac = format!("{provider}-{m}-{i}-{}", uuid::Uuid::new_v4());
                let inv = Invitation {
                    guid_hmac: hmac.clone(),
                    site_id: site.into(),
                    provider_id: provider.into(),
                    campaign_id: CAMPAIGNS[c].into(),
                    channel: "sms".into(),
                    language: "en".into(),
                    month: month_label(m),
                    expires_at: now.as_second() + 86_400,
                };
                db.record_invitation(&inv).await.unwrap();
                if i < responses {
                    let mut answers = Vec::new();
                    for (qi, question) in q.questions.iter().enumerate() {
                        // Top-box options are likelier, as in life; some never come up.
                        let weights: Vec<u32> = question
                            .options
                            .iter()
                            .map(|o| if question.top_box.contains(&o.id) { 6 } else { 1 })
                            .collect();
                        let mut pick = rng.random_range(0..weights.iter().sum::<u32>());
                        let oi = weights
                            .iter()
                            .position(|&w| {
                                if pick < w {
                                    true
                                } else {
                                    pick -= w;
                                    false
                                }
                            })
                            .unwrap();
                        unit.answers[qi][oi] += 1;
                        answers.push((question.id.clone(), question.options[oi].id.clone()));
                    }
                    common::respond(db, bridge, &hmac, &answers).await;
                } else if i < responses + opt_outs {
                    db.decline(&hmac, &hmac, now).await.unwrap();
                }
            }
            truth.insert((c, p, m), unit);
        }
        // The month's answers are counted in it (the bridge folds them before it ends).
        bridge.fold().await;
    }
    World { q, truth }
}

/// A count of the tables, over some providers and months.
#[derive(Debug, Clone, Copy)]
enum Measure {
    Invitations,
    Responses,
    OptOuts,
    /// One option of one question.
    Option(usize, usize),
    /// Every answer to one question.
    Answered(usize),
    /// The top-box answers to one question.
    Top(usize),
    /// The top-box answers to every question that has a top box.
    PooledTop,
    /// Every answer to every question that has a top box.
    PooledAnswered,
}

/// The LP's unknowns: every count of every unit that exists.
struct Unknowns {
    base: BTreeMap<(usize, usize, usize), usize>,
    offsets: Vec<usize>,
    len: usize,
}

impl Unknowns {
    fn new(world: &World) -> Unknowns {
        let mut offsets = Vec::new();
        let mut per_unit = 3;
        for question in &world.q.questions {
            offsets.push(per_unit);
            per_unit += question.options.len();
        }
        let mut base = BTreeMap::new();
        for (i, key) in world.truth.keys().enumerate() {
            base.insert(*key, i * per_unit);
        }
        Unknowns { base, offsets, len: world.truth.len() * per_unit }
    }

    fn unit(&self, q: &Questionnaire, base: usize, measure: Measure) -> Vec<usize> {
        let option = |qi: usize, oi: usize| base + self.offsets[qi] + oi;
        let top = |qi: usize| -> Vec<usize> {
            let question = &q.questions[qi];
            (0..question.options.len())
                .filter(|&oi| question.top_box.contains(&question.options[oi].id))
                .map(|oi| option(qi, oi))
                .collect()
        };
        let with_top = || (0..q.questions.len()).filter(|&qi| !q.questions[qi].top_box.is_empty());
        match measure {
            Measure::Invitations => vec![base],
            Measure::Responses => vec![base + 1],
            Measure::OptOuts => vec![base + 2],
            Measure::Option(qi, oi) => vec![option(qi, oi)],
            Measure::Answered(qi) => (0..q.questions[qi].options.len()).map(|oi| option(qi, oi)).collect(),
            Measure::Top(qi) => top(qi),
            Measure::PooledTop => with_top().flat_map(top).collect(),
            Measure::PooledAnswered => with_top()
                .flat_map(|qi| (0..q.questions[qi].options.len()).map(move |oi| option(qi, oi)))
                .collect(),
        }
    }

    /// The unknowns a count over `campaigns`, `providers` and `months` sums.
    fn of(
        &self,
        q: &Questionnaire,
        campaigns: &[usize],
        providers: &[usize],
        months: &[usize],
        measure: Measure,
    ) -> Vec<usize> {
        let mut vars = Vec::new();
        for &c in campaigns {
            for &p in providers {
                for &m in months {
                    if let Some(&base) = self.base.get(&(c, p, m)) {
                        vars.extend(self.unit(q, base, measure));
                    }
                }
            }
        }
        vars
    }

    /// The true value of a sum of unknowns.
    fn truth(&self, world: &World, vars: &[usize]) -> u64 {
        let mut values = vec![0u64; self.len];
        for (key, unit) in &world.truth {
            let base = self.base[key];
            values[base] = unit.invitations;
            values[base + 1] = unit.responses;
            values[base + 2] = unit.opt_outs;
            for (qi, options) in unit.answers.iter().enumerate() {
                for (oi, &count) in options.iter().enumerate() {
                    values[base + self.offsets[qi] + oi] = count;
                }
            }
        }
        vars.iter().map(|&v| values[v]).sum()
    }
}

/// Everything one role was shown, as constraints and hidden cells.
struct Intruder<'w> {
    world: &'w World,
    unknowns: Unknowns,
    problem: Problem,
    published: usize,
    /// The campaigns of the tables being read: a report's one, or all for the usage export.
    campaigns: Vec<usize>,
}

impl<'w> Intruder<'w> {
    fn new(world: &'w World) -> Intruder<'w> {
        let unknowns = Unknowns::new(world);
        let mut problem = Problem::new(unknowns.len);
        // What anyone knows of such counts: responses and opt-outs are among the
        // invitations, and a question's answers among the responses.
        for &base in unknowns.base.values() {
            problem.publish(Constraint::new(
                [(base + 1, 1.0), (base + 2, 1.0), (base, -1.0)],
                f64::NEG_INFINITY,
                0.0,
            ));
            for qi in 0..world.q.questions.len() {
                let answered =
                    unknowns.unit(&world.q, base, Measure::Answered(qi)).into_iter().map(|v| (v, 1.0));
                problem.publish(Constraint::new(answered.chain([(base + 1, -1.0)]), f64::NEG_INFINITY, 0.0));
            }
        }
        Intruder { world, unknowns, problem, published: 0, campaigns: vec![0] }
    }

    fn count(
        &mut self,
        label: String,
        cell: &Value,
        providers: &[usize],
        months: &[usize],
        measure: Measure,
    ) {
        let vars = self.unknowns.of(&self.world.q, &self.campaigns, providers, months, measure);
        match cell {
            Value::Number(n) => {
                self.problem.publish(Constraint::sum(vars, n.as_u64().unwrap()));
                self.published += 1;
            }
            Value::String(s) if s == "suppressed" => {
                self.problem.hide(label, vars);
            }
            other => panic!("{label}: {other}"),
        }
    }

    fn share(&mut self, cell: &Value, providers: &[usize], months: &[usize], num: Measure, den: Measure) {
        if let Value::Number(n) = cell {
            let num = self.unknowns.of(&self.world.q, &self.campaigns, providers, months, num);
            let den = self.unknowns.of(&self.world.q, &self.campaigns, providers, months, den);
            // Four decimals of a fraction: two of a percent.
            self.problem.publish_all(Constraint::share(num, den, n.as_f64().unwrap() * 100.0, 2));
            self.published += 1;
        }
    }

    /// Reads one report: its population's providers, its months, everything in it.
    fn report(&mut self, json: &Value, providers: &[usize], site: &[usize], months: &[usize], name: &str) {
        if json["status"] != "figures" {
            return;
        }
        let all: Vec<usize> = (0..PROVIDERS.len()).collect();
        // (In a world added up by site, the other providers have no unknowns: `all` holds.)
        let s = &json["summary"];
        self.count(format!("{name} invitations"), &s["invitations"], providers, months, Measure::Invitations);
        self.count(format!("{name} responses"), &s["responses"], providers, months, Measure::Responses);
        self.count(format!("{name} opt-outs"), &s["opt_outs"], providers, months, Measure::OptOuts);
        // Response rates and option shares are shown only beside both their counts: they add
        // nothing, and are left out to keep the LPs small. Top boxes may stand alone.
        self.share(&s["top_box"], providers, months, Measure::PooledTop, Measure::PooledAnswered);
        for (qi, question) in json["questions"].as_array().unwrap().iter().enumerate() {
            let id = question["id"].as_str().unwrap();
            self.count(
                format!("{name} {id} answered"),
                &question["answered"],
                providers,
                months,
                Measure::Answered(qi),
            );
            for (oi, option) in question["options"].as_array().unwrap().iter().enumerate() {
                let label = format!("{name} {id}={}", option["id"].as_str().unwrap());
                self.count(label, &option["count"], providers, months, Measure::Option(qi, oi));
            }
            self.share(&question["top_box"], providers, months, Measure::Top(qi), Measure::Answered(qi));
            self.share(&question["site_top_box"], site, months, Measure::Top(qi), Measure::Answered(qi));
            self.share(&question["all_top_box"], &all, months, Measure::Top(qi), Measure::Answered(qi));
        }
        for month in json["trend"].as_array().unwrap() {
            let label = month["month"].as_str().unwrap();
            let m = (0..MONTHS).find(|&m| month_label(m) == label).unwrap();
            let one = [m];
            self.count(
                format!("{name} {label} invitations"),
                &month["invitations"],
                providers,
                &one,
                Measure::Invitations,
            );
            self.count(
                format!("{name} {label} responses"),
                &month["responses"],
                providers,
                &one,
                Measure::Responses,
            );
            self.count(
                format!("{name} {label} opt-outs"),
                &month["opt_outs"],
                providers,
                &one,
                Measure::OptOuts,
            );
            self.share(&month["top_box"], providers, &one, Measure::PooledTop, Measure::PooledAnswered);
        }
    }

    /// Reads the usage export: per site and month, invitations, responses, opt-outs, all
    /// campaigns together.
    fn usage(&mut self, csv: &str) {
        self.campaigns = (0..CAMPAIGNS.len()).collect();
        for line in csv.lines().skip(1) {
            let cells: Vec<&str> = line.split(',').collect();
            let providers: Vec<usize> =
                (0..PROVIDERS.len()).filter(|&p| PROVIDERS[p].0 == cells[0]).collect();
            let m = (0..MONTHS).find(|&m| month_label(m) == cells[1]).unwrap();
            let value = |text: &str| text.parse::<u64>().map_or(Value::from("suppressed"), Value::from);
            let name = format!("usage {} {}", cells[0], cells[1]);
            self.count(
                format!("{name} invitations"),
                &value(cells[2]),
                &providers,
                &[m],
                Measure::Invitations,
            );
            self.count(format!("{name} responses"), &value(cells[3]), &providers, &[m], Measure::Responses);
            self.count(format!("{name} opt-outs"), &value(cells[4]), &providers, &[m], Measure::OptOuts);
        }
    }

    /// Solves for every hidden cell: each range must hold the truth (the model is right) and
    /// span at least k integers (nothing is pinned). Returns the pinned ones.
    fn solve(&self) -> Vec<String> {
        let started = std::time::Instant::now();
        let ranges = self.problem.solve().unwrap();
        eprintln!(
            "{} figures, {} hidden cells solved in {:?}",
            self.published,
            self.problem.hidden().len(),
            started.elapsed()
        );
        let mut pinned = Vec::new();
        for (range, hidden) in ranges.iter().zip(self.problem.hidden()) {
            let truth = self.unknowns.truth(self.world, &hidden.vars);
            assert!(range.contains(truth), "{range} excludes the truth {truth}");
            if range.pinned(K) {
                pinned.push(format!("{range} (truly {truth})"));
            }
        }
        pinned
    }
}

/// Every released period of the 24 months: months, quarters, years.
fn periods() -> Vec<(String, Vec<usize>)> {
    let mut periods: Vec<(String, Vec<usize>)> = (0..MONTHS).map(|m| (month_label(m), vec![m])).collect();
    for quarter in 0..MONTHS / 3 {
        let year = FIRST_YEAR + (quarter / 4) as i32;
        periods.push((format!("{year}-Q{}", quarter % 4 + 1), (quarter * 3..quarter * 3 + 3).collect()));
    }
    for year in 0..MONTHS / 12 {
        periods.push(((FIRST_YEAR + year as i32).to_string(), (year * 12..year * 12 + 12).collect()));
    }
    periods
}

/// Downloads every report `reader` may read for `populations` (query, providers, their
/// site's providers) over every period of every campaign, into `intruder`.
async fn download(
    reader: &mut Reader<'_>,
    intruder: &mut Intruder<'_>,
    populations: &[(String, Vec<usize>, Vec<usize>)],
) {
    for (c, campaign) in CAMPAIGNS.iter().enumerate() {
        intruder.campaigns = vec![c];
        for (query, providers, site) in populations {
            for (period, months) in periods() {
                let (status, json) =
                    reader.json(&format!("?campaign={campaign}&period={period}{query}")).await;
                assert_eq!(status, reqwest::StatusCode::OK, "{query} {period}: {json}");
                intruder.report(&json, providers, site, &months, &format!("{campaign} {period}{query}"));
            }
        }
    }
}

fn at_site(site: &str) -> Vec<usize> {
    (0..PROVIDERS.len()).filter(|&p| PROVIDERS[p].0 == site).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_role_can_pin_a_suppressed_cell_from_everything_it_can_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite(dir.path());
    let survey = dir.path().join("survey.toml");
    std::fs::write(&survey, SURVEY).unwrap();
    let bridge = start_at(&url, "2025-01-02T12:00:00Z", |config| config.questionnaire = Some(survey)).await;
    assert_eq!(bridge.http().get(bridge.url("/login")).send().await.unwrap().status(), 200);
    let db = Db::connect(&url).await.unwrap();
    let mut rng = StdRng::seed_from_u64(20);
    let world = seed(&bridge, &db, &mut rng).await;
    // Everything released: a week into 2027.
    let later = "2027-01-09T12:00:00Z".parse::<jiff::Timestamp>().unwrap();
    bridge.clock.advance(later.duration_since(bridge.clock.now()));

    let site_1001 = at_site("site-1001");
    let provider_password = common::reader::add(
        &bridge,
        &["dr.a", "--role", "provider", "--site", "site-1001", "--provider", "prov-a"],
    );
    let admin_password =
        common::reader::add(&bridge, &["admin.1001", "--role", "site_admin", "--site", "site-1001"]);
    let analyst_password = common::reader::add(&bridge, &["analyst", "--role", "analyst"]);

    // The provider: their own reports, with the site's and all sites' top boxes beside.
    let mut provider = Reader::new(&bridge);
    provider.first_sign_in("dr.a", &provider_password).await;
    let mut intruder = Intruder::new(&world);
    download(&mut provider, &mut intruder, &[(String::new(), vec![0], site_1001.clone())]).await;
    let pinned = intruder.solve();
    assert!(intruder.published > 100, "the provider was shown something");
    assert!(pinned.is_empty(), "the provider pins {} cells: {pinned:#?}", pinned.len());

    // The site administrator: the site and each of its providers, and the usage export.
    let mut admin = Reader::new(&bridge);
    admin.first_sign_in("admin.1001", &admin_password).await;
    let mut intruder = Intruder::new(&world);
    let mut populations = vec![(String::new(), site_1001.clone(), site_1001.clone())];
    for &p in &site_1001 {
        populations.push((format!("&provider={}", PROVIDERS[p].1), vec![p], site_1001.clone()));
    }
    download(&mut admin, &mut intruder, &populations).await;
    intruder.usage(&admin.get("/reports/usage.csv").await.text().await.unwrap());
    let pinned = intruder.solve();
    assert!(pinned.is_empty(), "the site administrator pins {} cells: {pinned:#?}", pinned.len());

    // The analyst: all sites and each site, and the usage export.
    let mut analyst = Reader::new(&bridge);
    analyst.first_sign_in("analyst", &analyst_password).await;
    let sites = world.by_site();
    let mut intruder = Intruder::new(&sites);
    let firsts: Vec<usize> = ["site-1001", "site-2002"].iter().map(|site| at_site(site)[0]).collect();
    let mut populations = vec![(String::new(), firsts.clone(), firsts.clone())];
    for (site, &first) in ["site-1001", "site-2002"].iter().zip(&firsts) {
        populations.push((format!("&site={site}"), vec![first], vec![first]));
    }
    download(&mut analyst, &mut intruder, &populations).await;
    intruder.usage(&analyst.get("/reports/usage.csv").await.text().await.unwrap());
    let pinned = intruder.solve();
    assert!(intruder.published > 100, "the analyst was shown something");
    assert!(pinned.is_empty(), "the analyst pins {} cells: {pinned:#?}", pinned.len());

    // The control: the same world, read as reports were before released periods (any range
    // of months, each protected on its own). Jan-May beside Jan-Jun, and so on for every
    // month: the solver pins small cells.
    let mut intruder = Intruder::new(&world);
    for last in 1..12 {
        for first in [0, last] {
            let months: Vec<usize> = (first..=last).collect();
            let json = old_style(&world, &db, 0, &months).await;
            intruder.report(&json, &[0], &site_1001, &months, &format!("{first}..{last}"));
        }
    }
    let pinned = intruder.solve();
    assert!(!pinned.is_empty(), "free ranges should have given small cells away");
    bridge.stop().await.unwrap();
}

/// Provider `p`'s report over `months` as it was built before released periods: one table
/// over a free range of months, protected on its own.
async fn old_style(world: &World, db: &Db, p: usize, months: &[usize]) -> Value {
    let (site, provider, _) = PROVIDERS[p];
    let (from, to) = (month_label(months[0]), month_label(*months.last().unwrap()));
    let raw =
        survey_bridge::portal::reports::raw_counts(db, CAMPAIGNS[0], &from, &to, Some(site), Some(provider))
            .await
            .unwrap();
    let request = ReportRequest {
        level: Level::Provider,
        site_id: Some(site.into()),
        provider_id: Some(provider.into()),
        campaign_id: CAMPAIGNS[0].into(),
        from,
        to,
        k: K,
    };
    let built = report::build(&world.q, &request, &raw, None, None).unwrap();
    serde_json::from_str(&report::to_json(&built)).unwrap()
}
