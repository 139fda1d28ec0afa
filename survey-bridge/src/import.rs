//! `survey-bridge import`: a CSV export of an external survey, one response per row, with
//! a GUID column and question columns (mapped in `[import]`), reconciled row by row like
//! the webhook's results. Bad rows are reported by line number; the others are imported.
//!
//! A cell holds an option's id (`always`, `yes`, `7`) or its label in English or French
//! (`Always`, `Toujours`), in any case; an empty cell leaves the question unanswered.

use std::{
    collections::BTreeMap,
    io::{Cursor, Read},
    sync::Arc,
};

use crate::{
    config::ImportConfig,
    questionnaire::{Lang, Questionnaire},
    results::{Reconciler, Refusal, Source},
};

/// The file cannot be imported at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file cannot be read.
    #[error("cannot read the file: {0}")]
    Read(String),
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
    let mut report = ImportReport::default();
    for (line, row) in Rows::new(input, mapping, &reconciler.questionnaire)? {
        let (guid, answers) = match row {
            Ok(row) => row,
            Err(reason) => {
                report.refused.push((line, reason));
                continue;
            }
        };
        match reconciler.reconcile(&guid, &answers, Source::Import).await {
            Ok(()) => report.imported += 1,
            Err(Refusal::Internal) => return Err(ImportError::Stopped { line, refusal: Refusal::Internal }),
            Err(refusal) => report.refused.push((line, refusal.to_string())),
        }
    }
    Ok(report)
}

/// One row read: its GUID cell and its answers (question id, option id), or why it is
/// refused.
pub type RowResult = Result<(String, Vec<(String, String)>), String>;

/// The rows of a CSV export, read but not reconciled: each row that is not blank, with the
/// line it starts on. A refusal quotes at most 64 characters of a cell.
///
/// The file is read whole first: line numbers are counted from its bytes (a line ends at
/// LF, CRLF or a lone CR, as a record does), because the CSV reader's own count is one short
/// after CRLF line ends and drifts on blank lines.
pub struct Rows<'q> {
    records: csv::StringRecordsIntoIter<Cursor<Arc<[u8]>>>,
    lines: Lines,
    headers: csv::StringRecord,
    guid_at: usize,
    columns: Vec<(usize, String)>,
    labels: BTreeMap<(&'q str, String), &'q str>,
}

impl std::fmt::Debug for Rows<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rows").field("guid_at", &self.guid_at).finish_non_exhaustive()
    }
}

impl<'q> Rows<'q> {
    /// Reads `input`, then its header row, and finds the GUID column and the answer columns.
    pub fn new(
        mut input: impl Read,
        mapping: &ImportConfig,
        questionnaire: &'q Questionnaire,
    ) -> Result<Self, ImportError> {
        let mut data = Vec::new();
        input.read_to_end(&mut data).map_err(|e| ImportError::Read(e.to_string()))?;
        let data: Arc<[u8]> = data.into();
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(Cursor::new(data.clone()));
        let headers = reader.headers().map_err(|e| ImportError::Header(e.to_string()))?.clone();
        let position = |name: &str| headers.iter().position(|h| h.trim() == name);
        let guid_at = position(mapping.guid_column.trim())
            .ok_or_else(|| ImportError::NoGuidColumn(mapping.guid_column.clone()))?;
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
        Ok(Rows {
            records: reader.into_records(),
            lines: Lines { data, counted: 0, line: 1 },
            headers,
            guid_at,
            columns,
            labels: option_labels(questionnaire),
        })
    }

    fn row(&self, record: &csv::StringRecord) -> RowResult {
        let guid = record.get(self.guid_at).unwrap_or("");
        let mut answers = Vec::new();
        for (at, question) in &self.columns {
            let cell = record.get(*at).unwrap_or("").trim();
            if cell.is_empty() {
                continue;
            }
            match self.labels.get(&(question.as_str(), cell.to_lowercase())) {
                Some(option) => answers.push((question.clone(), (*option).to_string())),
                None => {
                    return Err(format!(
                        "column {:?}: question {question:?} has no option {:?}",
                        self.headers.get(*at).unwrap_or(""),
                        cell.chars().take(64).collect::<String>()
                    ));
                }
            }
        }
        Ok((guid.to_string(), answers))
    }
}

impl Iterator for Rows<'_> {
    type Item = (u64, RowResult);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let record = match self.records.next()? {
                Ok(record) => record,
                Err(err) => {
                    let line = self.lines.at(err.position().map_or(0, |p| p.byte()));
                    return Some((line, Err(format!("unreadable row: {}", csv_reason(&err)))));
                }
            };
            let line = self.lines.at(record.position().map_or(0, |p| p.byte()));
            if record.iter().all(|cell| cell.trim().is_empty()) {
                continue;
            }
            return Some((line, self.row(&record)));
        }
    }
}

/// Line numbers of byte offsets, counted forward (offsets only grow); the same count as the
/// EMR connector's reader.
struct Lines {
    data: Arc<[u8]>,
    counted: usize,
    line: u64,
}

impl Lines {
    /// The line of the record the reader placed at `offset`: the reader may place it on the
    /// line ends before it, so those are skipped first.
    fn at(&mut self, offset: u64) -> u64 {
        let mut start = usize::try_from(offset).unwrap_or(usize::MAX).min(self.data.len());
        while matches!(self.data.get(start), Some(b'\r' | b'\n')) {
            start += 1;
        }
        if start > self.counted {
            self.line += line_ends(&self.data[self.counted..start]);
            self.counted = start;
        }
        self.line
    }
}

/// The line ends in `bytes`: LF, CRLF and lone CR each count once.
fn line_ends(bytes: &[u8]) -> u64 {
    let ends = bytes
        .iter()
        .enumerate()
        .filter(|&(at, &b)| b == b'\n' || (b == b'\r' && bytes.get(at + 1) != Some(&b'\n')))
        .count();
    u64::try_from(ends).unwrap_or(u64::MAX)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(csv: impl AsRef<[u8]>) -> Vec<(u64, RowResult)> {
        let questionnaire = Questionnaire::builtin();
        Rows::new(csv.as_ref(), &ImportConfig::default(), &questionnaire).unwrap().collect()
    }

    fn line_numbers(csv: &str) -> Vec<u64> {
        lines_of(csv).into_iter().map(|(line, _)| line).collect()
    }

    // Found by the import_csv fuzz target: with CRLF line ends the CSV reader put the first
    // row on line 1, the header's.
    #[test]
    fn rows_are_numbered_by_the_line_they_start_on() {
        assert_eq!(line_numbers("guid,overall\r\na,9\r\nb,8\r\n"), [2, 3]);
        assert_eq!(line_numbers("guid,overall\na,9\nb,8\n"), [2, 3]);
        // Blank lines, a quoted line break, a lone CR (a line end to editors and to the
        // reader alike).
        assert_eq!(line_numbers("guid,overall\r\n\r\n\r\na,9\r\n\"b\r\nc\",8\r\nd,7\re,6\n"), [4, 5, 7, 8]);
        assert_eq!(line_numbers("\r\n\nguid,overall\n\n a , 9 \n"), [5]);
        // An unreadable row is numbered the same way.
        let rows = lines_of(b"guid,overall\r\n\r\na,\xff\r\n");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].0, 3);
        assert!(rows[0].1.as_ref().is_err_and(|reason| reason.starts_with("unreadable row")), "{rows:?}");
    }

    #[test]
    fn cells_are_read_as_options_or_refused() {
        let rows = lines_of("guid,overall,timely\na,9,Toujours\nb,,sideways\n");
        assert_eq!(
            rows[0].1,
            Ok(("a".into(), vec![("overall".into(), "9".into()), ("timely".into(), "always".into())]))
        );
        assert_eq!(
            rows[1].1,
            Err("column \"timely\": question \"timely\" has no option \"sideways\"".into())
        );
    }
}
