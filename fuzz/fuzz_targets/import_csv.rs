//! The CSV import (`survey_bridge::import::Rows`): the header is refused or the columns
//! found; each row is refused with a reason that repeats at most 64 characters of a cell, or
//! read into answers that are options of the questions their columns map to, and that the
//! questionnaire then checks as the import does; rows come in file order.
//!
//! Input: a byte choosing the mapping (even: columns named after question ids; odd: the
//! mapping below, GUID column `Response ID`), then the CSV file.
#![no_main]

#[path = "common/mod.rs"]
mod common;

use std::{collections::BTreeMap, sync::LazyLock};

use libfuzzer_sys::fuzz_target;
use survey_bridge::{config::ImportConfig, import::Rows, questionnaire::Questionnaire};

static QUESTIONNAIRE: LazyLock<Questionnaire> = LazyLock::new(Questionnaire::builtin);

static MAPPED: LazyLock<ImportConfig> = LazyLock::new(|| ImportConfig {
    guid_column: "Response ID".into(),
    columns: BTreeMap::from([
        ("Q1".to_string(), "overall".to_string()),
        ("Q2 listened".to_string(), "listened".to_string()),
        ("Q3".to_string(), "timely".to_string()),
    ]),
});

fuzz_target!(|data: &[u8]| {
    let Some((&choice, csv)) = data.split_first() else { return };
    let default = ImportConfig::default();
    let mapping = if choice % 2 == 0 { &default } else { &*MAPPED };
    let questionnaire = &*QUESTIONNAIRE;
    let Ok(rows) = Rows::new(csv, mapping, questionnaire) else { return };
    let allowed: Vec<&str> = if mapping.columns.is_empty() {
        questionnaire.questions.iter().map(|q| q.id.as_str()).collect()
    } else {
        mapping.columns.values().map(String::as_str).collect()
    };
    let mut last = 0;
    for (line, row) in rows {
        assert!(line >= 2, "a row is after the header (line {line})");
        assert!(line >= last, "rows in file order");
        last = line;
        match row {
            Ok((_guid, answers)) => {
                for (question, option) in &answers {
                    assert!(allowed.contains(&question.as_str()), "a mapped question");
                    let question = questionnaire.question(question).expect("exists");
                    assert!(question.options.iter().any(|c| c.id == *option), "an option id");
                }
                common::check_answers(questionnaire, &answers);
            }
            Err(reason) => {
                // `column "H": question "Q" has no option "CELL"`, or a fixed reason.
                if let Some((_, cell)) = reason.rsplit_once(" has no option ") {
                    let cell: String = cell.trim_matches('"').to_string();
                    // Debug-escaped, so up to 10 bytes a character; 64 characters at most.
                    assert!(cell.len() <= 64 * 10, "{reason}");
                } else {
                    assert!(reason.starts_with("unreadable row: "), "{reason}");
                }
            }
        }
    }
});
