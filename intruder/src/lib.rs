//! A disclosure intruder for published report tables (a dev-dependency only).
//!
//! It plays a report reader who downloads every aggregate an account can fetch and tries to
//! recover the cells that were suppressed because they count fewer than k respondents. The
//! counts the reader does not know are non-negative integer unknowns; every published figure
//! is a linear [`Constraint`] over them (an exact count, a share rounded to some decimals of a
//! percent, an inequality); every suppressed cell is a [`Hidden`] sum of unknowns. For each
//! hidden cell, [`Problem::solve`] minimises and maximises its sum with a linear program
//! (good_lp and the pure-Rust microlp solver) and returns the [`Range`] of counts consistent
//! with everything published. A cell is exposed when that range holds fewer than k counts.
//!
//! Where to look: this file holds the model ([`Problem`], [`Constraint`], [`Hidden`],
//! [`Range`], [`IntruderError`]); `solve.rs` reads single-unknown figures as bounds, splits
//! the rest into independent components and runs the LPs.
//!
//! The ranges come from the LP relaxation, so they can only be wider than what an intruder
//! reasoning about whole numbers learns, never narrower: a range never excludes a consistent
//! count. For two-way tables with their margins (and nested totals) the relaxation is exact;
//! with rounded shares, or three-way tables, a cell reported as safe may still be narrower for
//! an integer-programming intruder.

mod solve;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;

/// Why a [`Problem`] could not be solved.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IntruderError {
    /// A constraint, hidden cell or bound names an unknown the problem does not have.
    #[error("unknown {index} does not exist: the problem has {unknowns} unknowns")]
    UnknownOutOfRange {
        /// The unknown named.
        index: usize,
        /// How many unknowns the problem has.
        unknowns: usize,
    },
    /// A constraint has a coefficient that is not finite, or a bound that is not a number.
    #[error("constraint {index} has a coefficient or bound that is not a number")]
    NotANumber {
        /// The constraint, by order of publication.
        index: usize,
    },
    /// No non-negative counts satisfy the published figures: the model of them is wrong.
    #[error(
        "the published figures are inconsistent: no non-negative counts satisfy constraints {constraints:?}"
    )]
    Infeasible {
        /// The constraints (by order of publication) of the inconsistent component.
        constraints: Vec<usize>,
    },
    /// The published figures allow fractional values of a hidden cell but no whole count.
    #[error("the published figures allow no whole count for hidden cell {label:?} (between {min} and {max})")]
    NoWholeCount {
        /// The hidden cell.
        label: String,
        /// Its least value in the LP relaxation.
        min: f64,
        /// Its greatest value in the LP relaxation.
        max: f64,
    },
    /// The LP solver failed for a reason other than infeasibility.
    #[error("the lp solver failed: {0}")]
    Solver(String),
}

/// A published figure: `lo <= sum(coef * unknown) <= hi`.
#[derive(Debug, Clone, PartialEq)]
pub struct Constraint {
    /// Unknown and coefficient, sorted by unknown, one term per unknown, no zero coefficient.
    terms: Vec<(usize, f64)>,
    lo: f64,
    hi: f64,
}

impl Constraint {
    /// `lo <= sum(coef * unknown) <= hi`; repeated unknowns add up, infinite bounds are one-sided.
    pub fn new(terms: impl IntoIterator<Item = (usize, f64)>, lo: f64, hi: f64) -> Self {
        let mut merged = BTreeMap::new();
        for (var, coef) in terms {
            *merged.entry(var).or_insert(0.0) += coef;
        }
        let terms = merged.into_iter().filter(|&(_, coef)| coef != 0.0).collect();
        Constraint { terms, lo, hi }
    }

    /// An exactly published count: `sum(vars) = value`.
    pub fn sum(vars: impl IntoIterator<Item = usize>, value: u64) -> Self {
        Self::sum_between(vars, value, value)
    }

    /// A count known to lie in `lo..=hi` (a rounded count, or a "fewer than 5" marker).
    pub fn sum_between(vars: impl IntoIterator<Item = usize>, lo: u64, hi: u64) -> Self {
        Self::new(vars.into_iter().map(|v| (v, 1.0)), lo as f64, hi as f64)
    }

    /// `sum(a) <= sum(b)`, e.g. a sub-group never larger than its group.
    pub fn at_most(a: impl IntoIterator<Item = usize>, b: impl IntoIterator<Item = usize>) -> Self {
        let terms = a.into_iter().map(|v| (v, 1.0)).chain(b.into_iter().map(|v| (v, -1.0)));
        Self::new(terms, f64::NEG_INFINITY, 0.0)
    }

    /// A share `sum(num) / sum(den)` published as `percent`, rounded to `decimals` decimals.
    ///
    /// 73% to no decimals says the share lies in [72.5%, 73.5%], that is
    /// `num - 0.725 den >= 0` and `num - 0.735 den <= 0`: two constraints, both kept
    /// inclusive so that either rounding rule at the boundary is covered. `num` may be part
    /// of `den` (a top-box count among all answers); repeated unknowns add up.
    pub fn share(
        num: impl IntoIterator<Item = usize> + Clone,
        den: impl IntoIterator<Item = usize> + Clone,
        percent: f64,
        decimals: u32,
    ) -> [Self; 2] {
        let half = 0.5 / 10f64.powf(f64::from(decimals));
        let side = |fraction: f64, lo: f64, hi: f64| {
            let num = num.clone().into_iter().map(|v| (v, 1.0));
            let den = den.clone().into_iter().map(move |v| (v, -fraction));
            Self::new(num.chain(den), lo, hi)
        };
        [
            side((percent - half) / 100.0, 0.0, f64::INFINITY),
            side((percent + half) / 100.0, f64::NEG_INFINITY, 0.0),
        ]
    }
}

/// A suppressed cell: a label and the unknowns whose sum it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hidden {
    /// How the cell is named in results and errors.
    pub label: String,
    /// The unknowns it sums, sorted, each once.
    pub vars: Vec<usize>,
}

/// Everything a reader knows: the unknowns, the published figures and the suppressed cells.
#[derive(Debug, Clone, Default)]
pub struct Problem {
    unknowns: usize,
    upper: Vec<(usize, u64)>,
    constraints: Vec<Constraint>,
    hidden: Vec<Hidden>,
}

impl Problem {
    /// A problem over the unknowns `0..unknowns`, each a non-negative count.
    pub fn new(unknowns: usize) -> Self {
        Problem { unknowns, ..Problem::default() }
    }

    /// Records a known upper bound on one unknown (a capacity, a panel size).
    pub fn upper_bound(&mut self, var: usize, max: u64) -> &mut Self {
        self.upper.push((var, max));
        self
    }

    /// Adds a published figure.
    pub fn publish(&mut self, constraint: Constraint) -> &mut Self {
        self.constraints.push(constraint);
        self
    }

    /// Adds several published figures (e.g. the two sides of [`Constraint::share`]).
    pub fn publish_all(&mut self, constraints: impl IntoIterator<Item = Constraint>) -> &mut Self {
        self.constraints.extend(constraints);
        self
    }

    /// Adds a suppressed cell, the sum of `vars`.
    pub fn hide(&mut self, label: impl Into<String>, vars: impl IntoIterator<Item = usize>) -> &mut Self {
        let mut vars: Vec<usize> = vars.into_iter().collect();
        vars.sort_unstable();
        vars.dedup();
        self.hidden.push(Hidden { label: label.into(), vars });
        self
    }

    /// The suppressed cells, in the order they were hidden.
    pub fn hidden(&self) -> &[Hidden] {
        &self.hidden
    }

    /// The ranges of the hidden cells that break a k-threshold (see [`Range::pinned`]).
    pub fn exposed(&self, k: u64) -> Result<Vec<Range>, IntruderError> {
        Ok(self.solve()?.into_iter().filter(|range| range.pinned(k)).collect())
    }
}

/// The counts a hidden cell can hold, given everything published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// The hidden cell's label.
    pub label: String,
    /// The least count.
    pub min: u64,
    /// The greatest count, `None` when nothing published bounds it.
    pub max: Option<u64>,
}

impl Range {
    /// Whether fewer than `k` consecutive counts remain, which exposes a cell under threshold `k`.
    ///
    /// This covers a cell recovered exactly and one shown to lie in `1..k`; an unbounded cell
    /// is never pinned.
    pub fn pinned(&self, k: u64) -> bool {
        self.max.is_some_and(|max| max.saturating_sub(self.min).saturating_add(1) < k)
    }

    /// Whether `value` is one of the counts in the range.
    pub fn contains(&self, value: u64) -> bool {
        self.min <= value && self.max.is_none_or(|max| value <= max)
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.max {
            Some(max) => write!(f, "{} in {}..={}", self.label, self.min, max),
            None => write!(f, "{} in {}.. (unbounded)", self.label, self.min),
        }
    }
}
