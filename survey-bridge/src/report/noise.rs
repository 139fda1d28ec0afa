//! Differential privacy for the released units, an option (`reports.noise_epsilon`).
//!
//! Suppression protects against an intruder who only reads. It cannot protect against one
//! who *writes*: a provider who colludes with the clinic's EMR plants patients of its own,
//! `k` answering each option, in a month with one real patient; every count is then at least
//! `k`, shown, and the one count above its planted value is the real patient's answer. The
//! known defence is noise: each unit's counts are released with discrete Laplace noise
//! (OpenDP's geometric mechanism), calibrated so that whether any one patient is in the unit
//! at all, and what they answered, changes the probability of any release by at most a
//! factor of `e^epsilon`.
//!
//! One patient adds at most `questions + 2` to a unit's counts in total (an invitation, a
//! response or an opt-out, and one option per question), so that is the L1 sensitivity of
//! the vector of every count of the unit's grid (every option of every question, absent ones
//! as 0). The noise is drawn once, when the unit is released, and stored with it: the same
//! request always gets the same numbers, and averaging many downloads gains nothing.
//! Everything after the noise (clamping at zero, the small-cell rules, the sums of units)
//! only post-processes it, which costs no privacy.

use std::collections::BTreeMap;

use opendp::{
    core::Measurement,
    domains::{AtomDomain, VectorDomain},
    measurements::make_geometric,
    measures::MaxDivergence,
    metrics::L1Distance,
};

use super::model::{AnswerRow, PeriodRow, RawCounts};
use crate::questionnaire::Questionnaire;

/// The noise cannot be set up: the message says why.
#[derive(Debug, thiserror::Error)]
#[error("reports.noise_epsilon: {0}")]
pub struct NoiseError(String);

/// The geometric mechanism over one unit's grid of counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Noise {
    epsilon: f64,
    scale: f64,
}

type Mechanism = Measurement<VectorDomain<AtomDomain<i64>>, L1Distance<i64>, MaxDivergence, Vec<i64>>;

/// OpenDP's geometric mechanism at `scale` over vectors of counts. (Built for each use:
/// OpenDP's measurements are not `Send`.)
fn mechanism(scale: f64) -> Result<Mechanism, NoiseError> {
    make_geometric(VectorDomain::new(AtomDomain::default()), L1Distance::default(), scale, None)
        .map_err(|err| NoiseError(err.to_string()))
}

/// How much one patient can change a unit's counts in total: an invitation, a response or
/// an opt-out, and one option of each question.
pub fn sensitivity(q: &Questionnaire) -> i64 {
    i64::try_from(q.questions.len()).unwrap_or(i64::MAX - 2).saturating_add(2)
}

impl Noise {
    /// Noise that spends `epsilon` per patient per unit, for `q`'s units.
    pub fn new(q: &Questionnaire, epsilon: f64) -> Result<Noise, NoiseError> {
        if !(epsilon.is_finite() && epsilon > 0.0) {
            return Err(NoiseError(format!("must be a positive number, not {epsilon}")));
        }
        let d_in = sensitivity(q);
        let scale = d_in as f64 / epsilon;
        // OpenDP's own privacy map says what the mechanism spends for that sensitivity.
        let spent = mechanism(scale)?.map(&d_in).map_err(|err| NoiseError(err.to_string()))?;
        if spent > epsilon * (1.0 + 1e-9) {
            return Err(NoiseError(format!("the mechanism would spend {spent}, more than {epsilon}")));
        }
        Ok(Noise { epsilon, scale })
    }

    /// The privacy loss per patient per unit.
    pub fn epsilon(&self) -> f64 {
        self.epsilon
    }

    /// The noise's scale (its standard deviation is about `scale * 1.41`).
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// `raw`'s counts for `month` with noise on every cell of the unit's grid, clamped at
    /// zero. Rows for other months, and answers to options the questionnaire does not have,
    /// are left out.
    pub fn apply(&self, q: &Questionnaire, raw: &RawCounts, month: &str) -> Result<RawCounts, NoiseError> {
        let (mut invitations, mut responses, mut opt_outs) = (0u64, 0u64, 0u64);
        for row in raw.periods.iter().filter(|row| row.month == month) {
            invitations = invitations.saturating_add(row.invitations);
            responses = responses.saturating_add(row.responses);
            opt_outs = opt_outs.saturating_add(row.opt_outs);
        }
        let mut answers: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for row in raw.answers.iter().filter(|row| row.month == month) {
            let slot = answers.entry((row.question.as_str(), row.answer.as_str())).or_default();
            *slot = slot.saturating_add(row.count);
        }
        let grid: Vec<(&str, &str)> = q
            .questions
            .iter()
            .flat_map(|question| question.options.iter().map(|o| (question.id.as_str(), o.id.as_str())))
            .collect();
        let exact: Vec<i64> = [invitations, responses, opt_outs]
            .into_iter()
            .chain(grid.iter().map(|key| answers.get(key).copied().unwrap_or(0)))
            .map(|count| i64::try_from(count).unwrap_or(i64::MAX))
            .collect();
        let noisy = mechanism(self.scale)?.invoke(&exact).map_err(|err| NoiseError(err.to_string()))?;
        let count = |i: usize| noisy.get(i).map_or(0, |&v| u64::try_from(v.max(0)).unwrap_or(0));
        Ok(RawCounts {
            periods: vec![PeriodRow {
                month: month.to_string(),
                invitations: count(0),
                responses: count(1),
                opt_outs: count(2),
            }],
            answers: grid
                .iter()
                .enumerate()
                .map(|(i, (question, answer))| AnswerRow {
                    month: month.to_string(),
                    question: (*question).to_string(),
                    answer: (*answer).to_string(),
                    count: count(3 + i),
                })
                .filter(|row| row.count > 0)
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests;
