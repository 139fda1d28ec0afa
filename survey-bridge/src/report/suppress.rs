//! The small-cell rules, as pure functions over counts. [`super::build()`] applies them; the
//! rules themselves are stated in the [module documentation](super).
//!
//! A "row" is a list of cells whose total is published (a question's options and its n; the
//! months of a trend column and the period total). Whatever is hidden in such a row, its sum
//! can always be worked out as `total - shown`, so that sum is treated as a published count
//! itself: a row is safe when nothing is hidden, or when at least two cells are hidden and
//! together they are at least `k`. One hidden cell would be that sum; hidden cells that sum
//! to less than `k` (zero included: a sum of 0 tells every one of them) would be a small
//! count.

/// Whether a count is small, i.e. under `k`. Zero is small too: "any count under k".
pub fn is_small(count: u64, k: u64) -> bool {
    count < k
}

/// Whether the hidden cells among `members` of a row with a published total are safe.
pub fn is_safe(values: &[u64], hidden: &[bool], members: &[usize], k: u64) -> bool {
    let (count, sum) = members
        .iter()
        .filter(|&&i| hidden[i])
        .fold((0usize, 0u64), |(count, sum), &i| (count + 1, sum.saturating_add(values[i])));
    count == 0 || (count >= 2 && sum >= k)
}

/// Complementary suppression: hides the smallest shown cell among `members` (the first of
/// equals) until [`is_safe`], or until nothing is left to hide. Returns whether it hid any.
pub fn protect(values: &[u64], hidden: &mut [bool], members: &[usize], k: u64) -> bool {
    let mut changed = false;
    while !is_safe(values, hidden, members, k) {
        let next = members.iter().copied().filter(|&i| !hidden[i]).min_by_key(|&i| (values[i], i));
        match next {
            Some(i) => {
                hidden[i] = true;
                changed = true;
            }
            None => break,
        }
    }
    changed
}

/// A trend column: small cells hidden, then [`protect`]ed against the period total.
pub fn column(values: &[u64], k: u64) -> Vec<bool> {
    let mut hidden: Vec<bool> = values.iter().map(|&v| is_small(v, k)).collect();
    let all: Vec<usize> = (0..values.len()).collect();
    protect(values, &mut hidden, &all, k);
    hidden
}

/// Cells that publish a top-box share: each hides its share when `top` or `rest` is small
/// (or `hidden` already says so); then the hidden ones are [`protect`]ed on both the top-box
/// and the rest counts, because both pooled totals can be worked out.
pub fn split_column(top: &[u64], rest: &[u64], hidden: &mut [bool], k: u64) {
    for (i, flag) in hidden.iter_mut().enumerate() {
        *flag = *flag || is_small(top[i], k) || is_small(rest[i], k);
    }
    let all: Vec<usize> = (0..hidden.len()).collect();
    while protect(top, hidden, &all, k) | protect(rest, hidden, &all, k) {}
}

/// What a question may publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuestionCells {
    /// Per option, whether its count (and share) is withheld.
    pub hidden: Vec<bool>,
    /// Whether n, the number who answered, is shown.
    pub answered: bool,
    /// Whether the top-box share is shown; none when the question has no top box.
    pub top_box: Option<bool>,
}

/// The rules for one question's distribution: `counts` per option, `top` marks the top-box
/// options.
///
/// 1. n under `k`: nothing is shown (every option is then under `k` too).
/// 2. Each option under `k` is hidden.
/// 3. The top-box share is shown only when both the top-box count and the rest (n minus the
///    top box) are at least `k`. When it is shown, the top box and the rest are two more
///    published totals, so each is [`protect`]ed on its own options.
/// 4. The whole row is [`protect`]ed against n.
pub fn question(counts: &[u64], top: &[bool], k: u64) -> QuestionCells {
    let n = counts.iter().fold(0u64, |sum, &c| sum.saturating_add(c));
    let has_top_box = top.iter().any(|&t| t);
    let mut hidden: Vec<bool> = counts.iter().map(|&c| is_small(c, k)).collect();
    if is_small(n, k) {
        return QuestionCells {
            hidden: vec![true; counts.len()],
            answered: false,
            top_box: has_top_box.then_some(false),
        };
    }
    let in_top: Vec<usize> = (0..counts.len()).filter(|&i| top[i]).collect();
    let in_rest: Vec<usize> = (0..counts.len()).filter(|&i| !top[i]).collect();
    let top_count: u64 = in_top.iter().map(|&i| counts[i]).sum();
    let top_box_shown = has_top_box && !is_small(top_count, k) && !is_small(n - top_count, k);
    if top_box_shown {
        protect(counts, &mut hidden, &in_top, k);
        protect(counts, &mut hidden, &in_rest, k);
    }
    let all: Vec<usize> = (0..counts.len()).collect();
    protect(counts, &mut hidden, &all, k);
    QuestionCells { hidden, answered: true, top_box: has_top_box.then_some(top_box_shown) }
}

/// Whether publishing both an outer population's top-box share and an inner one's (the
/// inner inside the outer) is safe: their difference, the people in the outer but not the
/// inner, must be empty or have at least `k` in the top box and `k` outside it.
pub fn difference_is_safe(outer: (u64, u64), inner: (u64, u64), k: u64) -> bool {
    let top = outer.0.saturating_sub(inner.0);
    let rest = outer.1.saturating_sub(inner.1);
    (top == 0 && rest == 0) || (!is_small(top, k) && !is_small(rest, k))
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: u64 = 5;
    const FREQ_TOP: [bool; 5] = [true, true, false, false, false];

    fn hidden_of(counts: &[u64], top: &[bool]) -> Vec<usize> {
        let cells = question(counts, top, K);
        (0..counts.len()).filter(|&i| cells.hidden[i]).collect()
    }

    /// What an attacker can work out: every assignment of the hidden cells consistent with
    /// the published n (and top-box count, when shown). Returns, per option, whether its
    /// value is the same in every assignment, and whether the top-box count is.
    fn determined(counts: &[u64], top: &[bool], cells: &QuestionCells) -> (Vec<bool>, bool) {
        let n: u64 = counts.iter().sum();
        let hidden: Vec<usize> = (0..counts.len()).filter(|&i| cells.hidden[i]).collect();
        let shown_sum: u64 = (0..counts.len()).filter(|&i| !cells.hidden[i]).map(|i| counts[i]).sum();
        let top_total: u64 = (0..counts.len()).filter(|&i| top[i]).map(|i| counts[i]).sum();
        let shown_top: u64 =
            (0..counts.len()).filter(|&i| top[i] && !cells.hidden[i]).map(|i| counts[i]).sum();
        let hidden_top = (cells.top_box == Some(true)).then(|| top_total - shown_top);
        let mut seen: Vec<Option<(u64, bool)>> = vec![None; counts.len()];
        let mut seen_top: Option<(u64, bool)> = None;
        let mut values = vec![0u64; counts.len()];
        #[allow(clippy::too_many_arguments)]
        fn walk(
            at: usize,
            left: u64,
            hidden: &[usize],
            top: &[bool],
            hidden_top: Option<u64>,
            values: &mut [u64],
            seen: &mut [Option<(u64, bool)>],
            seen_top: &mut Option<(u64, bool)>,
            counts: &[u64],
        ) {
            if at + 1 >= hidden.len() {
                if let Some(&last) = hidden.last() {
                    values[last] = left;
                }
                let top_sum: u64 = (0..counts.len())
                    .filter(|&i| top[i])
                    .map(|i| if hidden.contains(&i) { values[i] } else { counts[i] })
                    .sum();
                let hidden_top_sum: u64 = hidden.iter().filter(|&&i| top[i]).map(|&i| values[i]).sum();
                if hidden_top.is_some_and(|t| t != hidden_top_sum) {
                    return;
                }
                for &i in hidden {
                    seen[i] = Some(match seen[i] {
                        None => (values[i], false),
                        Some((v, many)) => (v, many || v != values[i]),
                    });
                }
                *seen_top = Some(match *seen_top {
                    None => (top_sum, false),
                    Some((v, many)) => (v, many || v != top_sum),
                });
                return;
            }
            for v in 0..=left {
                values[hidden[at]] = v;
                walk(at + 1, left - v, hidden, top, hidden_top, values, seen, seen_top, counts);
            }
        }
        if !hidden.is_empty() {
            walk(0, n - shown_sum, &hidden, top, hidden_top, &mut values, &mut seen, &mut seen_top, counts);
        }
        let per_cell =
            (0..counts.len()).map(|i| !cells.hidden[i] || seen[i].is_some_and(|(_, many)| !many)).collect();
        (per_cell, seen_top.is_none_or(|(_, many)| !many))
    }

    /// Every promise about one question's cells, checked by brute force.
    fn assert_private(counts: &[u64], top: &[bool]) {
        let cells = question(counts, top, K);
        let n: u64 = counts.iter().sum();
        for (i, &c) in counts.iter().enumerate() {
            assert!(!is_small(c, K) || cells.hidden[i], "small cell shown: {counts:?}");
        }
        if !cells.answered {
            assert!(cells.hidden.iter().all(|&h| h) && cells.top_box != Some(true), "{counts:?}");
            return;
        }
        assert!(n >= K);
        let (fixed, top_fixed) = determined(counts, top, &cells);
        for (i, &hidden) in cells.hidden.iter().enumerate() {
            assert!(!hidden || !fixed[i], "hidden option {i} can be worked out: {counts:?} {cells:?}");
        }
        let hidden_sum: u64 = (0..counts.len()).filter(|&i| cells.hidden[i]).map(|i| counts[i]).sum();
        assert!(
            cells.hidden.iter().all(|&h| !h) || hidden_sum >= K,
            "hidden sum is small: {counts:?} {cells:?}"
        );
        if cells.top_box == Some(false) {
            assert!(!top_fixed, "a withheld top-box count can be worked out: {counts:?} {cells:?}");
        }
    }

    #[test]
    fn small_is_under_k_zero_included() {
        assert!(is_small(K - 1, K));
        assert!(!is_small(K, K));
        assert!(is_small(0, K));
        assert!(is_small(0, 1) && !is_small(1, 1));
    }

    #[test]
    fn a_cell_at_k_minus_one_is_hidden_and_at_k_shown() {
        // Two small cells (4 and 4, 8 together) keep each other safe; 5 is shown.
        assert_eq!(hidden_of(&[20, 5, 4, 4, 10], &[false; 5]), [2, 3]);
        assert_eq!(hidden_of(&[20, 5, 5, 5, 10], &[false; 5]), Vec::<usize>::new());
    }

    #[test]
    fn a_lone_hidden_cell_takes_the_next_smallest_with_it() {
        // 3 alone would be n - 51; the smallest shown cell (9) goes too.
        let counts = [20, 12, 3, 10, 9];
        assert_eq!(hidden_of(&counts, &[false; 5]), [2, 4]);
        assert_private(&counts, &[false; 5]);
    }

    #[test]
    fn hidden_cells_that_sum_under_k_take_another_with_them() {
        // 1 and 0 hidden: their sum, 1, would be n minus the shown cells.
        let counts = [20, 20, 1, 0, 10];
        assert_eq!(hidden_of(&counts, &[false; 5]), [2, 3, 4]);
        // Two zeros: a sum of 0 would tell both.
        assert_eq!(hidden_of(&[20, 20, 0, 0, 10], &[false; 5]), [2, 3, 4]);
        assert_private(&counts, &[false; 5]);
    }

    #[test]
    fn the_top_box_cannot_reveal_a_hidden_option() {
        // always 10, often 3: a top box of 13 with always shown would tell often.
        let counts = [10, 3, 8, 6, 7];
        let cells = question(&counts, &FREQ_TOP, K);
        assert_eq!(cells.top_box, Some(true));
        assert_eq!(hidden_of(&counts, &FREQ_TOP), [0, 1], "always hides with often");
        assert_private(&counts, &FREQ_TOP);
        // The same on the other side of the split: sometimes 3 alone among the rest.
        let counts = [10, 8, 3, 6, 7];
        assert_eq!(hidden_of(&counts, &FREQ_TOP), [2, 3]);
        assert_private(&counts, &FREQ_TOP);
    }

    #[test]
    fn the_top_box_is_withheld_when_either_side_of_it_is_small() {
        // Everyone in the top box: 100% would tell every patient's answer.
        let cells = question(&[30, 10, 0, 0, 0], &FREQ_TOP, K);
        assert_eq!(cells.top_box, Some(false));
        // Top box 4 of 44.
        assert_eq!(question(&[2, 2, 20, 10, 10], &FREQ_TOP, K).top_box, Some(false));
        // Yes 30, no 3: "no" is hidden, so "yes" is too, and so is the top box.
        let cells = question(&[30, 3], &[true, false], K);
        assert_eq!(
            (cells.hidden.clone(), cells.top_box, cells.answered),
            (vec![true, true], Some(false), true)
        );
        assert_private(&[30, 3], &[true, false]);
        // At the edges: top box exactly k and rest exactly k is shown.
        assert_eq!(question(&[5, 5], &[true, false], K).top_box, Some(true));
        assert_eq!(question(&[5, 4], &[true, false], K).top_box, Some(false));
    }

    #[test]
    fn a_question_without_a_top_box_has_no_top_box_cell() {
        assert_eq!(question(&[10, 10], &[false, false], K).top_box, None);
    }

    #[test]
    fn fewer_than_k_answers_show_nothing() {
        let cells = question(&[4, 0, 0, 0, 0], &FREQ_TOP, K);
        assert!(!cells.answered && cells.hidden.iter().all(|&h| h));
        assert_eq!(cells.top_box, Some(false));
        assert!(question(&[5, 0, 0, 0, 0], &FREQ_TOP, K).answered);
    }

    #[test]
    fn random_questions_never_give_a_patient_away() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        };
        let shapes: [&[bool]; 3] = [&FREQ_TOP, &[true, false], &[false, true, false]];
        for round in 0..600 {
            let top = shapes[round % shapes.len()];
            // Mostly small counts, sometimes a large one, so that all the rules fire.
            let counts: Vec<u64> =
                top.iter().map(|_| if next(4) == 0 { 5 + next(12) } else { next(9) }).collect();
            assert_private(&counts, top);
        }
    }

    #[test]
    fn trend_columns_protect_a_lone_small_month() {
        assert_eq!(column(&[20, 30, 3], K), [true, false, true]);
        assert_eq!(column(&[20, 30, 40], K), [false, false, false]);
        // An empty month is small too, and cannot stand alone against the total.
        assert_eq!(column(&[0, 30, 40], K), [true, true, false]);
        // Every month small: all hidden, nothing left to hide.
        assert_eq!(column(&[1, 2], K), [true, true]);
    }

    #[test]
    fn split_columns_protect_both_sides() {
        // Month 2's top box is small; month 1's (20) goes with it, being smaller than month 3's.
        let mut hidden = vec![false; 3];
        split_column(&[20, 2, 30], &[6, 10, 9], &mut hidden, K);
        assert_eq!(hidden, [true, true, false]);
        let (top, rest) = ([20u64, 2, 30], [6u64, 10, 9]);
        let all = [0, 1, 2];
        assert!(is_safe(&top, &hidden, &all, K) && is_safe(&rest, &hidden, &all, K));
        // An already hidden month (its responses are suppressed) counts as hidden.
        let mut hidden = vec![false, false, true];
        split_column(&[20, 20, 30], &[10, 10, 10], &mut hidden, K);
        assert_eq!(hidden, [true, false, true]);
    }

    #[test]
    fn differences_between_populations() {
        assert!(difference_is_safe((50, 20), (50, 20), K), "the same people");
        assert!(difference_is_safe((60, 30), (50, 20), K));
        assert!(!difference_is_safe((54, 30), (50, 20), K), "4 others in the top box");
        assert!(!difference_is_safe((60, 20), (50, 20), K), "0 others outside it");
    }
}
