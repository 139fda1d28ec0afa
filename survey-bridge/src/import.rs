//! `survey-bridge import`: a CSV export of an external survey, one response per row, with
//! a GUID column and question columns (mapped in `[import]`), reconciled row by row like
//! the webhook's results. Bad rows are reported by line number; the others are imported.
//!
//! A cell holds an option's id (`always`, `yes`, `7`) or its label in English or French
//! (`Always`, `Toujours`), in any case; an empty cell leaves the question unanswered.

use std::{collections::BTreeMap, io::Read};

use crate::{
    config::ImportConfig,
    questionnaire::{Lang, Questionnaire},
    results::{Reconciler, Refusal, Source},
};

/// The file cannot be imported at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The header row cannot be read.
    #[error("line 1: cannot read the header row: {0}")]
    Header(String),
    /// The GUID column is not in the header.
    #[error("line 1: no column {0:?} (import.guid_column)")]
    NoGuidColumn(String),
    /// A mapped column is not in the header.
    #[error("line 1: no column {0:?} (mapped in import.columns)")]
    NoColumn(String),
    /// A column is mapped to a question the questionnaire does not have.
    #[error("import.columns: {column:?} is mapped to unknown question {question:?}")]
    UnknownQuestion {
        /// The column.
        column: String,
        /// The question id it names.
        question: String,
    },
    /// No column maps to a question.
    #[error(
        "line 1: no column holds answers (name columns after question ids, or map them in import.columns)"
    )]
    NoAnswers,
    /// The database or the audit log failed; rows before `line` were imported.
    #[error("line {line}: stopped: {refusal}")]
    Stopped {
        /// The row at which the import stopped.
        line: u64,
        /// Why.
        refusal: Refusal,
    },
}

/// What an import did.
#[derive(Debug, Default)]
pub struct ImportReport {
    /// Rows counted.
    pub imported: usize,
    /// Rows refused: (line number, why).
    pub refused: Vec<(u64, String)>,
}

/// Imports the CSV in `input` through `reconciler`.
pub async fn import_csv(
    input: impl Read,
    mapping: &ImportConfig,
    reconciler: &Reconciler,
) -> Result<ImportReport, ImportError> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(input);
    let headers = reader.headers().map_err(|e| ImportError::Header(e.to_string()))?.clone();
    let position = |name: &str| headers.iter().position(|h| h.trim() == name);
    let guid_at = position(mapping.guid_column.trim())
        .ok_or_else(|| ImportError::NoGuidColumn(mapping.guid_column.clone()))?;
    let questionnaire = &reconciler.questionnaire;
    let columns: Vec<(usize, String)> = if mapping.columns.is_empty() {
        headers
            .iter()
            .enumerate()
            .filter(|(_, h)| questionnaire.question(h.trim()).is_some())
            .map(|(at, h)| (at, h.trim().to_string()))
            .collect()
    } else {
        let mut columns = Vec::new();
        for (column, question) in &mapping.columns {
            if questionnaire.question(question).is_none() {
                return Err(ImportError::UnknownQuestion {
                    column: column.clone(),
                    question: question.clone(),
                });
            }
            let at = position(column.trim()).ok_or_else(|| ImportError::NoColumn(column.clone()))?;
            columns.push((at, question.clone()));
        }
        columns
    };
    if columns.is_empty() {
        return Err(ImportError::NoAnswers);
    }
    let labels = option_labels(questionnaire);

    let mut report = ImportReport::default();
    let mut records = reader.records();
    loop {
        let record = match records.next() {
            None => break,
            Some(Ok(record)) => record,
            Some(Err(err)) => {
                let line = err.position().map_or(0, |p| p.line());
                report.refused.push((line, format!("unreadable row: {}", csv_reason(&err))));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        if record.iter().all(|cell| cell.trim().is_empty()) {
            continue;
        }
        let guid = record.get(guid_at).unwrap_or("");
        let mut answers = Vec::new();
        let mut bad = None;
        for (at, question) in &columns {
            let cell = record.get(*at).unwrap_or("").trim();
            if cell.is_empty() {
                continue;
            }
            match labels.get(&(question.as_str(), cell.to_lowercase())) {
                Some(option) => answers.push((question.clone(), (*option).to_string())),
                None => {
                    bad = Some(format!(
                        "column {:?}: question {question:?} has no option {:?}",
                        headers.get(*at).unwrap_or(""),
                        cell.chars().take(64).collect::<String>()
                    ));
                    break;
                }
            }
        }
        if let Some(reason) = bad {
            report.refused.push((line, reason));
            continue;
        }
        match reconciler.reconcile(guid, &answers, Source::Import).await {
            Ok(()) => report.imported += 1,
            Err(Refusal::Internal) => return Err(ImportError::Stopped { line, refusal: Refusal::Internal }),
            Err(refusal) => report.refused.push((line, refusal.to_string())),
        }
    }
    Ok(report)
}

/// (question id, lower-cased option id or label) -> option id.
fn option_labels(questionnaire: &Questionnaire) -> BTreeMap<(&str, String), &str> {
    let mut labels = BTreeMap::new();
    for question in &questionnaire.questions {
        for choice in &question.options {
            for name in [choice.id.as_str(), choice.label.get(Lang::En), choice.label.get(Lang::Fr)] {
                labels.insert((question.id.as_str(), name.trim().to_lowercase()), choice.id.as_str());
            }
        }
    }
    labels
}

/// A CSV error's reason without the data it may quote.
fn csv_reason(err: &csv::Error) -> &'static str {
    match err.kind() {
        csv::ErrorKind::Utf8 { .. } => "not UTF-8",
        csv::ErrorKind::UnequalLengths { .. } => "wrong number of fields",
        _ => "malformed CSV",
    }
}
