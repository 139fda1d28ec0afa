use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::*;

/// A table of counts published cell by cell except `hidden`, with row, column and grand totals.
/// Unknown `r * cols + c` is the cell in row `r`, column `c`; hidden cells are labelled `r{r}c{c}`.
fn table(values: &[Vec<u64>], hidden: &[(usize, usize)]) -> Problem {
    let (rows, cols) = (values.len(), values[0].len());
    let at = |r: usize, c: usize| r * cols + c;
    let mut problem = Problem::new(rows * cols);
    for (r, row) in values.iter().enumerate() {
        for (c, &value) in row.iter().enumerate() {
            if !hidden.contains(&(r, c)) {
                problem.publish(Constraint::sum([at(r, c)], value));
            }
        }
        problem.publish(Constraint::sum((0..cols).map(|c| at(r, c)), row.iter().sum()));
    }
    for c in 0..cols {
        problem.publish(Constraint::sum((0..rows).map(|r| at(r, c)), values.iter().map(|row| row[c]).sum()));
    }
    problem.publish(Constraint::sum(0..rows * cols, values.iter().flatten().sum()));
    for &(r, c) in hidden {
        problem.hide(format!("r{r}c{c}"), [at(r, c)]);
    }
    problem
}

fn range(label: &str, min: u64, max: u64) -> Range {
    Range { label: label.to_owned(), min, max: Some(max) }
}

/// Counts of one option for January to June, unknowns `at..at + 6`: January to May published
/// as one sum, the half year as another, June and May hidden.
fn half_year(problem: &mut Problem, at: usize) {
    problem.publish(Constraint::sum(at..at + 5, 12)).publish(Constraint::sum(at..at + 6, 14));
    problem.hide("june", [at + 5]).hide("may", [at + 4]);
}

/// A 2x2 table (6 7 / 8 9) over unknowns `at..at + 4` with its margins, all four cells hidden.
fn square(problem: &mut Problem, at: usize) {
    let (a, b, c, d) = (at, at + 1, at + 2, at + 3);
    problem
        .publish(Constraint::sum([a, b], 13))
        .publish(Constraint::sum([c, d], 17))
        .publish(Constraint::sum([a, c], 14))
        .publish(Constraint::sum([b, d], 16));
    problem.hide("a", [a]).hide("b", [b]).hide("c", [c]).hide("d", [d]);
}

#[test]
fn subtraction_attack_pins_june() {
    let mut problem = Problem::new(6);
    half_year(&mut problem, 0);

    let ranges = problem.solve().unwrap();
    assert_eq!(ranges, [range("june", 2, 2), range("may", 0, 12)]);
    assert!(ranges[0].pinned(5));
    assert!(!ranges[1].pinned(5));
    assert_eq!(problem.exposed(5).unwrap(), [range("june", 2, 2)]);
}

#[test]
fn two_by_two_with_margins_is_safe() {
    let mut problem = Problem::new(4);
    square(&mut problem, 0);

    let ranges = problem.solve().unwrap();
    // a in [max(0, 13 - 16, 14 - 17), min(13, 14)], and so on: the exact bounds of a 2x2 table.
    assert_eq!(ranges, [range("a", 0, 13), range("b", 0, 13), range("c", 1, 14), range("d", 3, 16)]);
    for (range, truth) in ranges.iter().zip([6, 7, 8, 9]) {
        assert!(range.contains(truth), "{range}");
        assert!(!range.pinned(5), "{range}");
    }
    assert!(problem.exposed(5).unwrap().is_empty());
}

#[test]
fn row_only_suppression_is_undone_by_column_totals() {
    let values = vec![vec![3, 10, 12], vec![9, 11, 14], vec![8, 13, 15]];

    // The small cell and a complement in its row: row 0 alone would hide it, column 0 does not.
    let row_only = table(&values, &[(0, 0), (0, 1)]).solve().unwrap();
    assert_eq!(row_only, [range("r0c0", 3, 3), range("r0c1", 10, 10)]);
    assert!(row_only[0].pinned(5));

    // A complementary rectangle: every hidden cell shares its row and its column with another.
    let rectangle = table(&values, &[(0, 0), (0, 1), (1, 0), (1, 1)]).solve().unwrap();
    assert_eq!(
        rectangle,
        [range("r0c0", 0, 12), range("r0c1", 1, 13), range("r1c0", 0, 12), range("r1c1", 8, 20)]
    );
    assert!(rectangle.iter().all(|range| !range.pinned(5)), "{rectangle:?}");
}

#[test]
fn rounded_share_narrows_the_count() {
    // Unknown 0 answered top box, unknown 1 did not; 200 answered, 146 of them top box.
    let with_share = |decimals: Option<u32>| {
        let mut problem = Problem::new(2);
        problem.publish(Constraint::sum([0, 1], 200));
        if let Some(decimals) = decimals {
            problem.publish_all(Constraint::share([0], [0, 1], 73.0, decimals));
        }
        problem.hide("top box", [0]).hide("other", [1]);
        problem.solve().unwrap()
    };

    assert_eq!(with_share(None), [range("top box", 0, 200), range("other", 0, 200)]);
    // 73% means 72.5% to 73.5% of 200: 145 to 147.
    assert_eq!(with_share(Some(0)), [range("top box", 145, 147), range("other", 53, 55)]);
    // 73.0% means 72.95% to 73.05%: 145.9 to 146.1, so exactly 146.
    assert_eq!(with_share(Some(1)), [range("top box", 146, 146), range("other", 54, 54)]);

    // Large counts: 61.3% of 12345 is 7561.3125 to 7573.6575 top box.
    let mut problem = Problem::new(2);
    problem.publish(Constraint::sum([0, 1], 12345)).publish_all(Constraint::share([0], [0, 1], 61.3, 1));
    problem.hide("top box", [0]);
    assert_eq!(problem.solve().unwrap(), [range("top box", 7562, 7573)]);
}

#[test]
fn share_of_an_unknown_total_bounds_the_ratio_only() {
    // 50% of an unknown panel: top box equals the rest, give or take the rounding.
    let mut problem = Problem::new(2);
    problem.publish_all(Constraint::share([0], [0, 1], 50.0, 0)).publish(Constraint::sum([1], 30));
    problem.hide("top box", [0]);
    // 0.495 (t + 30) <= t <= 0.505 (t + 30): 29.4 <= t <= 30.6.
    assert_eq!(problem.solve().unwrap(), [range("top box", 30, 30)]);
}

#[test]
fn independent_parts_solve_as_if_alone() {
    let mut alone = (Problem::new(6), Problem::new(4));
    half_year(&mut alone.0, 0);
    square(&mut alone.1, 0);
    let mut expected = alone.0.solve().unwrap();
    expected.extend(alone.1.solve().unwrap());
    expected.push(Range { label: "free".to_owned(), min: 0, max: None });
    let [june, may] = [range("june", 2, 2), range("may", 0, 12)];
    let [a, b, c, d] = [range("a", 0, 13), range("b", 0, 13), range("c", 1, 14), range("d", 3, 16)];
    assert_eq!(expected[..6], [june, may, a, b, c, d]);

    let mut together = Problem::new(11);
    half_year(&mut together, 0);
    square(&mut together, 6);
    together.hide("free", [10]);
    assert_eq!(together.solve().unwrap(), expected);
}

#[test]
fn unconstrained_cell_is_unbounded_unless_capped() {
    let mut problem = Problem::new(3);
    problem.publish(Constraint::sum([0, 1], 4));
    problem.hide("free", [2]).hide("linked to free", [1, 2]);
    let ranges = problem.solve().unwrap();
    assert_eq!(ranges[0], Range { label: "free".to_owned(), min: 0, max: None });
    assert_eq!(ranges[1], Range { label: "linked to free".to_owned(), min: 0, max: None });
    assert!(!ranges[0].pinned(u64::MAX));

    problem.upper_bound(2, 3);
    assert_eq!(problem.solve().unwrap(), [range("free", 0, 3), range("linked to free", 0, 7)]);
}

#[test]
fn cell_made_of_published_cells_is_known() {
    let mut problem = Problem::new(3);
    problem
        .publish(Constraint::sum([0], 2))
        .publish(Constraint::sum([1], 5))
        .publish(Constraint::sum([0, 1, 2], 9));
    problem.hide("first two", [0, 1]).hide("nothing", []);
    assert_eq!(problem.solve().unwrap(), [range("first two", 7, 7), range("nothing", 0, 0)]);
}

#[test]
fn inconsistent_figures_are_an_error() {
    // Seen without an LP: one unknown published twice with two values.
    let mut twice = Problem::new(2);
    twice
        .publish(Constraint::sum([0, 1], 5))
        .publish(Constraint::sum([0], 3))
        .publish(Constraint::sum([0], 4));
    twice.hide("b", [1]);
    assert_eq!(twice.solve(), Err(IntruderError::Infeasible { constraints: vec![1, 2] }));

    // Seen by the LP: x0 + x1 = 5, x1 + x2 = 3 and x0 + x1 + x2 = 10 give x2 = 5 > 3.
    let mut sums = Problem::new(3);
    sums.publish(Constraint::sum([0, 1], 5))
        .publish(Constraint::sum([1, 2], 3))
        .publish(Constraint::sum([0, 1, 2], 10));
    sums.hide("x1", [1]);
    let err = sums.solve().unwrap_err();
    assert_eq!(err, IntruderError::Infeasible { constraints: vec![0, 1, 2] });
    assert_eq!(
        err.to_string(),
        "the published figures are inconsistent: no non-negative counts satisfy constraints [0, 1, 2]"
    );

    // Inconsistent figures with nothing hidden among them are still reported.
    sums.hidden.clear();
    assert!(matches!(sums.solve(), Err(IntruderError::Infeasible { .. })));

    // Counts are non-negative.
    let mut negative = Problem::new(2);
    negative.publish(Constraint::sum([0, 1], 5)).publish(Constraint::sum([0], 6));
    negative.hide("x1", [1]);
    assert!(matches!(negative.solve(), Err(IntruderError::Infeasible { .. })));
}

#[test]
fn figures_without_a_whole_count_are_an_error() {
    // 3 answers, 50.0% top box: 1.4985 to 1.5015 of them.
    let mut problem = Problem::new(2);
    problem.publish(Constraint::sum([0, 1], 3)).publish_all(Constraint::share([0], [0, 1], 50.0, 1));
    problem.hide("top box", [0]);
    assert!(matches!(problem.solve(), Err(IntruderError::NoWholeCount { label, .. }) if label == "top box"));
}

#[test]
fn malformed_problems_are_errors() {
    let mut problem = Problem::new(2);
    problem.hide("beyond", [2]);
    assert_eq!(problem.solve(), Err(IntruderError::UnknownOutOfRange { index: 2, unknowns: 2 }));

    let mut problem = Problem::new(2);
    problem.publish(Constraint::new([(0, f64::NAN)], 0.0, 1.0));
    assert_eq!(problem.solve(), Err(IntruderError::NotANumber { index: 0 }));

    let mut problem = Problem::new(2);
    problem.publish(Constraint::sum([0, 1], 4)).publish(Constraint::sum_between([0, 1], 5, 3));
    assert_eq!(problem.solve(), Err(IntruderError::Infeasible { constraints: vec![1] }));
}

#[test]
fn large_table_finishes_with_sensible_ranges() {
    // 40 providers by 24 months of one option, every count under 5 hidden plus random
    // complements: a few hundred hidden cells in one table with its margins.
    let mut rng = StdRng::seed_from_u64(40);
    let values: Vec<Vec<u64>> =
        (0..40).map(|_| (0..24).map(|_| rng.random_range(0..=40)).collect()).collect();
    let hidden: Vec<(usize, usize)> = (0..40)
        .flat_map(|r| (0..24).map(move |c| (r, c)))
        .filter(|&(r, c)| values[r][c] < 5 || rng.random_bool(0.2))
        .collect();
    assert!((200..500).contains(&hidden.len()), "{} hidden", hidden.len());

    let ranges = table(&values, &hidden).solve().unwrap();
    assert_eq!(ranges.len(), hidden.len());
    for (range, &(r, c)) in ranges.iter().zip(&hidden) {
        assert_eq!(range.label, format!("r{r}c{c}"));
        assert!(range.contains(values[r][c]), "{range}, truth {}", values[r][c]);
    }
}

/// Random small problems over exact sums, inequalities and rounded shares: no range excludes the
/// truth, nor any other assignment consistent with the figures (found by enumeration).
#[test]
fn ranges_hold_every_consistent_count() {
    let mut rng = StdRng::seed_from_u64(1);
    for case in 0..300 {
        let n = rng.random_range(1..=4);
        let truth: Vec<u64> = (0..n).map(|_| rng.random_range(0..=4)).collect();
        let total = |vars: &[usize]| vars.iter().map(|&v| truth[v]).sum::<u64>();
        let subset = |rng: &mut StdRng| -> Vec<usize> {
            let vars: Vec<usize> = (0..n).filter(|_| rng.random_bool(0.5)).collect();
            if vars.is_empty() { vec![rng.random_range(0..n)] } else { vars }
        };

        let mut figures = vec![Constraint::sum(0..n, total(&(0..n).collect::<Vec<_>>()))];
        for _ in 0..rng.random_range(0..=4) {
            let (a, b) = (subset(&mut rng), subset(&mut rng));
            match rng.random_range(0..3) {
                0 => figures.push(Constraint::sum(a.clone(), total(&a))),
                1 if total(&a) <= total(&b) => figures.push(Constraint::at_most(a, b)),
                1 => figures.push(Constraint::at_most(b, a)),
                _ => {
                    let den: Vec<usize> = a.iter().chain(&b).copied().collect();
                    let decimals = rng.random_range(0..=1);
                    let scale = 10f64.powf(f64::from(decimals));
                    let percent =
                        (100.0 * total(&a) as f64 / total(&den).max(1) as f64 * scale).round() / scale;
                    figures.extend(Constraint::share(a, den, percent, decimals));
                }
            }
        }
        let mut problem = Problem::new(n);
        problem.publish_all(figures.clone());
        for cell in 0..rng.random_range(1..=3) {
            problem.hide(format!("cell {cell}"), subset(&mut rng));
        }

        let ranges = problem.solve().unwrap_or_else(|e| panic!("case {case}: {e}"));
        // Each unknown is at most the least exact sum it is part of (the grand total at worst).
        let exact = |f: &&Constraint| f.lo == f.hi && f.terms.iter().all(|&(_, coef)| coef == 1.0);
        let cap: Vec<u64> = (0..n)
            .map(|v| {
                let sums = figures.iter().filter(exact).filter(|f| f.terms.iter().any(|&(u, _)| u == v));
                sums.map(|f| f.hi as u64).min().unwrap_or(0)
            })
            .collect();
        let holds = |x: &[u64]| {
            figures.iter().all(|f| {
                let value: f64 = f.terms.iter().map(|&(v, coef)| coef * x[v] as f64).sum();
                f.lo - 1e-9 <= value && value <= f.hi + 1e-9
            })
        };
        let mut x = vec![0u64; n];
        loop {
            if holds(&x) {
                for (range, hidden) in ranges.iter().zip(problem.hidden()) {
                    let value = total_of(&x, &hidden.vars);
                    assert!(
                        range.contains(value),
                        "case {case}: {range} excludes {value} ({x:?}, truth {truth:?})"
                    );
                }
            }
            // The next assignment, odometer style.
            match (0..n).find(|&v| x[v] < cap[v]) {
                Some(i) => {
                    x[i] += 1;
                    x[..i].fill(0);
                }
                None => break,
            }
        }
    }
}

fn total_of(x: &[u64], vars: &[usize]) -> u64 {
    vars.iter().map(|&v| x[v]).sum()
}

/// Random small two-way tables with their margins: the LP bounds are exactly the least and
/// greatest whole counts that fit (the relaxation is exact for such tables).
#[test]
fn two_way_table_bounds_are_exact() {
    let mut rng = StdRng::seed_from_u64(2);
    for case in 0..200 {
        let (rows, cols) = (rng.random_range(2..=4), rng.random_range(2..=4));
        let values: Vec<Vec<u64>> =
            (0..rows).map(|_| (0..cols).map(|_| rng.random_range(0..=6)).collect()).collect();
        let (mut hidden, want): (Vec<(usize, usize)>, usize) = (Vec::new(), rng.random_range(1..=4));
        while hidden.len() < want {
            let cell = (rng.random_range(0..rows), rng.random_range(0..cols));
            if !hidden.contains(&cell) {
                hidden.push(cell);
            }
        }
        let ranges = table(&values, &hidden).solve().unwrap_or_else(|e| panic!("case {case}: {e}"));

        // Enumerate the hidden cells against what the margins leave for them in each row and column.
        let mut row_left: Vec<u64> = values.iter().map(|row| row.iter().sum()).collect();
        let mut col_left: Vec<u64> = (0..cols).map(|c| values.iter().map(|row| row[c]).sum()).collect();
        for (r, row) in values.iter().enumerate() {
            for (c, &v) in row.iter().enumerate().filter(|&(c, _)| !hidden.contains(&(r, c))) {
                row_left[r] -= v;
                col_left[c] -= v;
            }
        }
        let cap: Vec<u64> = hidden.iter().map(|&(r, c)| row_left[r].min(col_left[c])).collect();
        let mut seen: Vec<Option<(u64, u64)>> = vec![None; hidden.len()];
        let mut x = vec![0u64; hidden.len()];
        loop {
            let in_row =
                |r: usize| hidden.iter().zip(&x).filter(|((hr, _), _)| *hr == r).map(|(_, v)| v).sum::<u64>();
            let in_col =
                |c: usize| hidden.iter().zip(&x).filter(|((_, hc), _)| *hc == c).map(|(_, v)| v).sum::<u64>();
            if (0..rows).all(|r| in_row(r) == row_left[r]) && (0..cols).all(|c| in_col(c) == col_left[c]) {
                for (bounds, &v) in seen.iter_mut().zip(&x) {
                    *bounds = Some(bounds.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v))));
                }
            }
            match (0..x.len()).find(|&i| x[i] < cap[i]) {
                Some(i) => {
                    x[i] += 1;
                    x[..i].fill(0);
                }
                None => break,
            }
        }
        for (range, bounds) in ranges.iter().zip(seen) {
            let (lo, hi) = bounds.unwrap_or_else(|| panic!("case {case}: the truth does not fit"));
            assert_eq!((range.min, range.max), (lo, Some(hi)), "case {case}: {values:?} hiding {hidden:?}");
        }
    }
}
