//! The EMR connector's CSV reader (`emr_connector::rows::read`): good rows carry unique row
//! ids and contacts the cache accepts unchanged, on lines of the file, in file order; no
//! refusal repeats a phone number or an email from the file.
//!
//! Input: the CSV file.
#![no_main]

use std::collections::HashSet;

use cache_server::validate;
use emr_connector::rows::{self, Timing};
use jiff::Timestamp;
use libfuzzer_sys::fuzz_target;
use proto::v1::Channel;

/// The time of the run: 2026-11-20.
const NOW: i64 = 1_795_600_000;

/// Whether a cell looks like contact data: it holds an `@`, or a `+` then a digit.
fn contact_like(cell: &str) -> bool {
    cell.len() >= 5
        && (cell.contains('@') || cell.as_bytes().windows(2).any(|w| w[0] == b'+' && w[1].is_ascii_digit()))
}

fuzz_target!(|data: &[u8]| {
    let timing = Timing::new(2, Timestamp::from_second(NOW).expect("in range"));
    let pushed: HashSet<String> = ["pushed-1".to_string()].into();
    let Ok(input) = rows::read(data, &timing, &pushed) else {
        return;
    };
    // Lines end at LF, CRLF or a lone CR, as records do.
    let lines = 1 + data
        .iter()
        .enumerate()
        .filter(|&(at, &b)| b == b'\n' || (b == b'\r' && data.get(at + 1) != Some(&b'\n')))
        .count();
    let on_a_line = |line: u64| {
        let at = usize::try_from(line).expect("small");
        assert!(at >= 2 && at <= lines, "line {line} of {lines}: a row is after the header");
    };

    let mut ids = HashSet::new();
    let mut last = 0;
    for row in &input.rows {
        on_a_line(row.line);
        assert!(row.line > last, "good rows in file order, one per line at most");
        last = row.line;
        assert!(validate::id("row_id", &row.row_id).is_ok());
        assert!(ids.insert(row.row_id.clone()), "a row id once");
        assert!(!pushed.contains(&row.row_id), "pushed rows are skipped");
        let mut again = row.contact.clone();
        assert_eq!(validate::contact(&mut again, timing.latest_send_after()), Ok(()));
        assert_eq!(again, row.contact, "the cache would accept it unchanged");
        assert_ne!(row.contact.channel(), Channel::Unspecified);
        let at = row.contact.send_after.as_ref().expect("a send-after time");
        let at = validate::timestamp("t", at).expect("valid");
        assert!(at >= timing.now, "never before the run");
    }
    let mut last = 0;
    for refusal in &input.refused {
        on_a_line(refusal.line);
        assert!(refusal.line >= last, "refusals in file order");
        last = refusal.line;
        if let Some(id) = &refusal.row_id {
            assert!(validate::id("row_id", id).is_ok(), "only a usable row id is named");
        }
    }

    // Every cell as the connector reads it (trimmed), to look for contact data in messages.
    let mut reader =
        csv::ReaderBuilder::new().flexible(true).has_headers(false).trim(csv::Trim::All).from_reader(data);
    for record in reader.byte_records().map_while(Result::ok) {
        for cell in record.iter() {
            let cell = String::from_utf8_lossy(cell);
            if !contact_like(&cell) {
                continue;
            }
            for refusal in &input.refused {
                let shown = refusal.to_string();
                assert!(!shown.contains(cell.as_ref()), "a refusal repeats contact data: {shown}");
            }
        }
    }
});
