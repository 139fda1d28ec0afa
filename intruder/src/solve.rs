//! How a [`Problem`] is solved: figures over one unknown become bounds, unknowns they fix are
//! replaced by their value, the rest splits into independent components, and each hidden cell
//! is minimised and maximised by an LP over its component only.
//!
//! Published tables mostly consist of cells shown as they are; reading those as bounds first
//! keeps every LP down to the suppressed cells, and splitting keeps a large report with many
//! unrelated tables fast.

use std::collections::{BTreeMap, HashMap};

use good_lp::{
    Expression, ProblemVariables, ResolutionError, Solution, SolverModel, Variable, microlp, variable,
};

use crate::{IntruderError, Problem, Range};

/// Slack when rounding an LP optimum to a whole count, or checking a figure over fixed unknowns.
const EPS: f64 = 1e-6;

/// A published figure over the unknowns left free: `lo <= sum(coef * unknown) <= hi`, with the
/// fixed unknowns' part already taken out of both bounds.
#[derive(Debug)]
struct Row {
    index: usize,
    terms: Vec<(usize, f64)>,
    lo: f64,
    hi: f64,
}

/// Whole-count bounds on every unknown; an unknown with `lo == hi` is fixed.
#[derive(Debug)]
struct Bounds {
    lo: Vec<f64>,
    hi: Vec<f64>,
}

impl Bounds {
    fn fixed(&self, var: usize) -> bool {
        self.lo[var] == self.hi[var]
    }

    fn free(&self, vars: &[usize]) -> Vec<usize> {
        vars.iter().copied().filter(|&v| !self.fixed(v)).collect()
    }
}

/// The rows and hidden cells over one set of linked unknowns.
#[derive(Debug, Default)]
struct Component<'a> {
    rows: Vec<&'a Row>,
    cells: Vec<usize>,
}

impl Problem {
    /// For each hidden cell, in the order hidden, the counts consistent with everything published.
    ///
    /// Fails when an unknown named does not exist, a number is NaN, or the figures are
    /// inconsistent ([`IntruderError::Infeasible`], [`IntruderError::NoWholeCount`]): the model of
    /// what was published is wrong then, and no range would mean anything.
    pub fn solve(&self) -> Result<Vec<Range>, IntruderError> {
        self.check()?;
        let bounds = self.bounds()?;
        let rows = self.rows(&bounds)?;

        // Two unknowns belong together when a figure or a hidden cell names both.
        let cells: Vec<Vec<usize>> = self.hidden.iter().map(|h| bounds.free(&h.vars)).collect();
        let mut sets = DisjointSets::new(self.unknowns);
        for row in &rows {
            sets.join_all(row.terms.iter().map(|&(v, _)| v));
        }
        for vars in &cells {
            sets.join_all(vars.iter().copied());
        }
        let mut by_root: BTreeMap<usize, Component<'_>> = BTreeMap::new();
        let mut ranges = vec![None; self.hidden.len()];
        for (cell, vars) in cells.iter().enumerate() {
            match vars.first() {
                Some(&var) => by_root.entry(sets.find(var)).or_default().cells.push(cell),
                // Every unknown it sums is published: the reader knows it exactly.
                None => ranges[cell] = Some(self.range(cell, &bounds, 0.0, Some(0.0))?),
            }
        }
        for row in &rows {
            by_root.entry(sets.find(row.terms[0].0)).or_default().rows.push(row);
        }

        // Tables repeat cells (a month's count is also a row of its quarter's trend): cells
        // over the same free unknowns share their LPs.
        let mut solved: HashMap<&[usize], (f64, Option<f64>)> = HashMap::new();
        for component in by_root.values() {
            for &cell in &component.cells {
                let vars = &cells[cell];
                if let Some(&(min, max)) = solved.get(vars.as_slice()) {
                    ranges[cell] = Some(self.range(cell, &bounds, min, max)?);
                    continue;
                }
                let (min, max) = if component.rows.is_empty() {
                    // Nothing but bounds on its unknowns: no LP needed.
                    let max = vars.iter().map(|&v| bounds.hi[v]).sum::<f64>();
                    (vars.iter().map(|&v| bounds.lo[v]).sum(), max.is_finite().then_some(max))
                } else {
                    let min = component.optimise(&bounds, vars, false)?;
                    (min.unwrap_or(0.0), component.optimise(&bounds, vars, true)?)
                };
                solved.insert(vars.as_slice(), (min, max));
                ranges[cell] = Some(self.range(cell, &bounds, min, max)?);
            }
            if component.cells.is_empty() {
                // Nothing hidden here, but inconsistent figures still mean a wrong model.
                component.optimise(&bounds, &[], false)?;
            }
        }
        Ok(ranges.into_iter().flatten().collect())
    }

    /// Every unknown named exists, every number can be computed with, and no figure contradicts
    /// itself.
    fn check(&self) -> Result<(), IntruderError> {
        let exists = |index: usize| {
            (index < self.unknowns)
                .then_some(())
                .ok_or(IntruderError::UnknownOutOfRange { index, unknowns: self.unknowns })
        };
        for (index, c) in self.constraints.iter().enumerate() {
            if c.lo.is_nan() || c.hi.is_nan() || c.terms.iter().any(|(_, coef)| !coef.is_finite()) {
                return Err(IntruderError::NotANumber { index });
            }
            if c.lo > c.hi || c.lo == f64::INFINITY || c.hi == f64::NEG_INFINITY {
                return Err(IntruderError::Infeasible { constraints: vec![index] });
            }
            c.terms.iter().try_for_each(|&(var, _)| exists(var))?;
        }
        self.hidden.iter().flat_map(|h| &h.vars).try_for_each(|&var| exists(var))?;
        self.upper.iter().try_for_each(|&(var, _)| exists(var))
    }

    /// The bounds that the known maxima and the figures over a single unknown put on each.
    fn bounds(&self) -> Result<Bounds, IntruderError> {
        let mut bounds = Bounds { lo: vec![0.0; self.unknowns], hi: vec![f64::INFINITY; self.unknowns] };
        for &(var, max) in &self.upper {
            bounds.hi[var] = bounds.hi[var].min(max as f64);
        }
        for (index, c) in self.constraints.iter().enumerate() {
            match c.terms[..] {
                [] if c.lo > EPS || c.hi < -EPS => {
                    return Err(IntruderError::Infeasible { constraints: vec![index] });
                }
                [(var, coef)] => {
                    let (lo, hi) =
                        if coef > 0.0 { (c.lo / coef, c.hi / coef) } else { (c.hi / coef, c.lo / coef) };
                    // Counts are whole, so a bound rounds inwards.
                    bounds.lo[var] = bounds.lo[var].max((lo - EPS).ceil());
                    bounds.hi[var] = bounds.hi[var].min((hi + EPS).floor());
                }
                _ => {}
            }
        }
        match (0..self.unknowns).find(|&v| bounds.lo[v] > bounds.hi[v]) {
            Some(var) => {
                let on_var = |(_, c): &(usize, &crate::Constraint)| c.terms.len() == 1 && c.terms[0].0 == var;
                let constraints =
                    self.constraints.iter().enumerate().filter(on_var).map(|(i, _)| i).collect();
                Err(IntruderError::Infeasible { constraints })
            }
            None => Ok(bounds),
        }
    }

    /// The figures over two or more unknowns, with the fixed ones replaced by their value.
    fn rows(&self, bounds: &Bounds) -> Result<Vec<Row>, IntruderError> {
        let mut rows = Vec::new();
        for (index, c) in self.constraints.iter().enumerate().filter(|(_, c)| c.terms.len() > 1) {
            let known: f64 =
                c.terms.iter().filter(|&&(v, _)| bounds.fixed(v)).map(|&(v, coef)| coef * bounds.lo[v]).sum();
            let terms: Vec<_> = c.terms.iter().copied().filter(|&(v, _)| !bounds.fixed(v)).collect();
            let (lo, hi) = (c.lo - known, c.hi - known);
            if !terms.is_empty() {
                rows.push(Row { index, terms, lo, hi });
            } else if lo > EPS || hi < -EPS {
                return Err(IntruderError::Infeasible { constraints: vec![index] });
            }
        }
        Ok(rows)
    }

    /// The whole counts of hidden cell `cell` from the extremes of its free part.
    fn range(
        &self,
        cell: usize,
        bounds: &Bounds,
        min: f64,
        max: Option<f64>,
    ) -> Result<Range, IntruderError> {
        let hidden = &self.hidden[cell];
        let known: f64 = hidden.vars.iter().filter(|&&v| bounds.fixed(v)).map(|&v| bounds.lo[v]).sum();
        let (min, max) = (known + min, max.map(|max| known + max));
        let whole_min = (min - EPS).ceil().max(0.0);
        let whole_max = max.map(|max| (max + EPS).floor());
        if let Some(whole_max) = whole_max
            && whole_max < whole_min
        {
            let max = max.unwrap_or(f64::INFINITY);
            return Err(IntruderError::NoWholeCount { label: hidden.label.clone(), min, max });
        }
        Ok(Range { label: hidden.label.clone(), min: whole_min as u64, max: whole_max.map(|max| max as u64) })
    }
}

impl Component<'_> {
    /// The least or greatest sum of `objective` over this component; `None` when unbounded.
    fn optimise(
        &self,
        bounds: &Bounds,
        objective: &[usize],
        maximise: bool,
    ) -> Result<Option<f64>, IntruderError> {
        // An LP variable for each unknown named, made on first use.
        let mut vars = ProblemVariables::new();
        let mut made = HashMap::new();
        let mut x = |v: usize| -> Variable {
            *made.entry(v).or_insert_with(|| vars.add(variable().min(bounds.lo[v]).max(bounds.hi[v])))
        };
        let goal: Expression = objective.iter().map(|&v| x(v)).sum();
        let rows: Vec<(&Row, Expression)> = self
            .rows
            .iter()
            .map(|&row| (row, row.terms.iter().map(|&(v, coef)| coef * x(v)).sum()))
            .collect();

        let unsolved = if maximise { vars.maximise(goal.clone()) } else { vars.minimise(goal.clone()) };
        let mut model = unsolved.using(microlp);
        for (row, expr) in rows {
            if row.lo == row.hi {
                model.add_constraint(expr.eq(row.lo));
                continue;
            }
            if row.lo.is_finite() {
                model.add_constraint(expr.clone().geq(row.lo));
            }
            if row.hi.is_finite() {
                model.add_constraint(expr.leq(row.hi));
            }
        }
        match model.solve() {
            Ok(solution) => Ok(Some(solution.eval(&goal))),
            Err(ResolutionError::Unbounded) if maximise => Ok(None),
            Err(ResolutionError::Infeasible) => Err(IntruderError::Infeasible {
                constraints: self.rows.iter().map(|row| row.index).collect(),
            }),
            Err(e) => Err(IntruderError::Solver(e.to_string())),
        }
    }
}

/// Union-find over unknowns: two are in one set when a figure or a hidden cell links them.
#[derive(Debug)]
struct DisjointSets {
    parent: Vec<usize>,
}

impl DisjointSets {
    fn new(n: usize) -> Self {
        DisjointSets { parent: (0..n).collect() }
    }

    fn find(&mut self, mut v: usize) -> usize {
        while self.parent[v] != v {
            // Path halving keeps later finds short.
            self.parent[v] = self.parent[self.parent[v]];
            v = self.parent[v];
        }
        v
    }

    /// Puts all of `vars` in one set.
    fn join_all(&mut self, vars: impl IntoIterator<Item = usize>) {
        let mut vars = vars.into_iter();
        let Some(first) = vars.next() else { return };
        let root = self.find(first);
        for var in vars {
            let other = self.find(var);
            self.parent[other] = root;
        }
    }
}
