use super::*;
use crate::report::release::{UnitCells, protect_unit};

const K: u64 = 5;
const MONTH: &str = "2026-06";

/// One yes/no question: the smallest survey the planted-patients attack works on.
fn survey() -> Questionnaire {
    Questionnaire::from_toml(
        "id = \"x\"\ntitle = { en = \"t\", fr = \"t\" }\nintro = { en = \"i\", fr = \"i\" }\n\
         [[questions]]\nid = \"next_steps\"\nkind = \"yes_no\"\ntop_box = [\"yes\"]\n\
         text = { en = \"q\", fr = \"q\" }\n",
    )
    .unwrap()
}

/// A unit with `K` planted patients answering yes, `K` answering no, and one real patient.
fn planted(real_says_yes: bool) -> RawCounts {
    let (yes, no) = if real_says_yes { (K + 1, K) } else { (K, K + 1) };
    let row = |answer: &str, count| AnswerRow {
        month: MONTH.into(),
        question: "next_steps".into(),
        answer: answer.into(),
        count,
    };
    RawCounts {
        periods: vec![PeriodRow {
            month: MONTH.into(),
            invitations: 2 * K + 1,
            responses: 2 * K + 1,
            opt_outs: 0,
        }],
        answers: vec![row("yes", yes), row("no", no)],
    }
}

/// The colluding provider's guess: the option shown above what it planted (yes on a tie,
/// or when nothing tells).
fn guess(cells: &UnitCells) -> bool {
    let over = |count: Option<u64>| count.map_or(0, |c| c as i64 - K as i64);
    let options = &cells.questions[0].options;
    over(options[0]) >= over(options[1])
}

fn coin(state: &mut u64) -> bool {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state & 1 == 1
}

#[test]
fn without_noise_planted_patients_give_the_real_one_away() {
    let q = survey();
    for real in [true, false] {
        let cells = protect_unit(&q, &planted(real), MONTH, K);
        assert!(cells.questions[0].options.iter().all(Option::is_some), "every count is at least k: shown");
        assert_eq!(guess(&cells), real, "the one count above its planted value is the real answer");
    }
}

#[test]
fn with_noise_the_planted_patients_attack_does_no_better_than_epsilon_allows() {
    // Whatever an intruder does with a release, epsilon-differential privacy bounds its
    // chance of telling two neighbouring worlds apart (equal odds) by e^eps / (1 + e^eps):
    // 0.73 at eps = 1 (here the two worlds differ by one changed answer, two thirds of the
    // sensitivity, so the true bound is lower still, 0.66; this attack gets about 0.56).
    // 4,000 trials put the measured rate within 0.04 (five standard deviations) of the true
    // one; without noise it is 1.
    let q = survey();
    let epsilon = 1.0;
    let noise = Noise::new(&q, epsilon).unwrap();
    let trials = 4_000;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut right = 0;
    for _ in 0..trials {
        let real = coin(&mut state);
        let released = noise.apply(&q, &planted(real), MONTH).unwrap();
        // Small cells left in (k = 1, only zeros withheld): the noise alone is on trial,
        // not the suppression that the real reports add after it.
        if guess(&protect_unit(&q, &released, MONTH, 1)) == real {
            right += 1;
        }
    }
    let rate = f64::from(right) / f64::from(trials);
    let bound = epsilon.exp() / (1.0 + epsilon.exp());
    assert!(rate < bound + 0.04, "the attack guessed {rate} of the real answers; epsilon allows {bound}");
}

#[test]
fn every_cell_of_the_grid_is_noised_and_none_is_negative() {
    let q = survey();
    let noise = Noise::new(&q, 0.5).unwrap();
    assert_eq!(sensitivity(&q), 3, "an invitation, a response, one option");
    assert!((noise.scale() - 6.0).abs() < 1e-9, "scale = sensitivity / epsilon");
    // Nothing at all in the month: the absent cells are noised too, so an empty unit does
    // not always read as empty. Over 50 draws of 5 cells at scale 6, some come out above 0.
    let empty = RawCounts { periods: vec![], answers: vec![] };
    let mut nonzero = 0;
    for _ in 0..50 {
        let released = noise.apply(&q, &empty, MONTH).unwrap();
        assert_eq!(released.periods.len(), 1);
        let row = &released.periods[0];
        nonzero += usize::from(row.invitations > 0) + usize::from(row.responses > 0);
        nonzero += released.answers.iter().filter(|a| a.count > 0).count();
        assert!(released.answers.iter().all(|a| a.month == MONTH && a.question == "next_steps"));
    }
    assert!(nonzero > 0, "absent cells are noised");
    // Rows of other months are not this unit's.
    let other = RawCounts {
        periods: vec![PeriodRow {
            month: "2026-05".into(),
            invitations: 1_000,
            responses: 1_000,
            opt_outs: 0,
        }],
        answers: vec![],
    };
    let released = noise.apply(&q, &other, MONTH).unwrap();
    assert!(released.periods[0].invitations < 500, "May's 1,000 invitations are not June's");
}

#[test]
fn the_noise_has_the_scale_that_epsilon_calls_for() {
    // Discrete Laplace noise of scale t: P(x) proportional to exp(-|x| / t), so the mean of
    // |x| is 2 r / (1 - r^2) with r = exp(-1 / t). Too little noise would spend more than
    // epsilon; 20,000 draws put the measured mean within 3% of the true one (over ten
    // standard errors), and this checks it within 10%.
    let q = survey();
    let noise = Noise::new(&q, 1.0).unwrap();
    let r = (-1.0 / noise.scale()).exp();
    let expected = 2.0 * r / (1.0 - r * r);
    // Counts far from zero, so that clamping never touches the noise.
    let busy = RawCounts {
        periods: vec![PeriodRow {
            month: MONTH.into(),
            invitations: 1_000,
            responses: 1_000,
            opt_outs: 1_000,
        }],
        answers: ["yes", "no"]
            .iter()
            .map(|answer| AnswerRow {
                month: MONTH.into(),
                question: "next_steps".into(),
                answer: (*answer).into(),
                count: 1_000,
            })
            .collect(),
    };
    let mut total = 0.0;
    let mut draws = 0u32;
    for _ in 0..4_000 {
        let released = noise.apply(&q, &busy, MONTH).unwrap();
        let row = &released.periods[0];
        let cells = [row.invitations, row.responses, row.opt_outs]
            .into_iter()
            .chain(released.answers.iter().map(|a| a.count));
        for cell in cells {
            total += (cell as f64 - 1_000.0).abs();
            draws += 1;
        }
    }
    assert_eq!(draws, 20_000);
    let mean = total / f64::from(draws);
    assert!((mean / expected - 1.0).abs() < 0.1, "mean |noise| {mean}, expected {expected}");
}

#[test]
fn epsilon_must_be_a_positive_number() {
    let q = survey();
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let err = Noise::new(&q, bad).unwrap_err().to_string();
        assert!(err.contains("reports.noise_epsilon"), "{err}");
    }
    assert_eq!(Noise::new(&q, 2.0).unwrap().epsilon(), 2.0);
}
