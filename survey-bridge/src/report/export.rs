//! A report as JSON and as long-format CSV. Both write out the [`Report`] as it is: what
//! [`super::build()`] withheld is `"suppressed"` in both, and a report with too few responses
//! has no numbers in either.

use std::borrow::Cow;
use std::fmt::Display;

use super::model::{Body, Cell, Report, SUPPRESSED};

/// The report as pretty-printed JSON (see [`Report`] for the shape).
pub fn to_json(report: &Report) -> String {
    serde_json::to_string_pretty(report).expect("a report holds only strings, integers and finite numbers")
}

/// The CSV header.
const HEADER: [&str; 7] = ["section", "question", "option", "month", "population", "measure", "value"];

/// The report as CSV, one number per row:
/// `section,question,option,month,population,measure,value`.
///
/// `section` is `summary`, `question` or `trend`; `population` is the report's level for
/// its own numbers, `site` or `all` for comparisons; `measure` is `invitations`,
/// `responses`, `opt_outs`, `response_rate`, `top_box`, `answered`, `count` or `share`;
/// `value` is the number (shares between 0 and 1) or `suppressed`. A report with too few
/// responses has one row, `report,,,,<level>,status,too_few_responses`, and no numbers.
/// When the counts carry differential-privacy noise, a first row
/// `report,,,,<level>,noise_epsilon,<epsilon>` says so.
pub fn to_csv(report: &Report) -> String {
    let mut out = Csv::default();
    out.row(HEADER);
    let us = report.level.as_str();
    if let Some(epsilon) = report.noise_epsilon {
        out.row(["report", "", "", "", us, "noise_epsilon", &epsilon.to_string()]);
    }
    let figures = match &report.body {
        Body::TooFewResponses => {
            out.row(["report", "", "", "", us, "status", "too_few_responses"]);
            return out.0;
        }
        Body::Figures(figures) => figures,
    };
    let s = &figures.summary;
    out.row(["summary", "", "", "", us, "invitations", &value(s.invitations)]);
    out.row(["summary", "", "", "", us, "responses", &value(s.responses)]);
    out.row(["summary", "", "", "", us, "opt_outs", &value(s.opt_outs)]);
    out.row(["summary", "", "", "", us, "response_rate", &value(s.response_rate)]);
    out.row(["summary", "", "", "", us, "top_box", &value(s.top_box)]);
    for q in &figures.questions {
        out.row(["question", &q.id, "", "", us, "answered", &value(q.answered)]);
        for option in &q.options {
            out.row(["question", &q.id, &option.id, "", us, "count", &value(option.count)]);
            out.row(["question", &q.id, &option.id, "", us, "share", &value(option.share)]);
        }
        for (population, cell) in [(us, q.top_box), ("site", q.site_top_box), ("all", q.all_top_box)] {
            if let Some(cell) = cell {
                out.row(["question", &q.id, "", "", population, "top_box", &value(cell)]);
            }
        }
    }
    for m in &figures.trend {
        out.row(["trend", "", "", &m.month, us, "invitations", &value(m.invitations)]);
        out.row(["trend", "", "", &m.month, us, "responses", &value(m.responses)]);
        out.row(["trend", "", "", &m.month, us, "opt_outs", &value(m.opt_outs)]);
        out.row(["trend", "", "", &m.month, us, "response_rate", &value(m.response_rate)]);
        out.row(["trend", "", "", &m.month, us, "top_box", &value(m.top_box)]);
    }
    out.0
}

fn value<T: Display + Copy>(cell: Cell<T>) -> String {
    match cell {
        Cell::Shown(v) => v.to_string(),
        Cell::Suppressed => SUPPRESSED.to_string(),
    }
}

/// RFC 4180 lines with CRLF endings.
#[derive(Default)]
struct Csv(String);

impl Csv {
    fn row<const N: usize>(&mut self, fields: [&str; N]) {
        for (i, field) in fields.iter().enumerate() {
            if i > 0 {
                self.0.push(',');
            }
            self.0.push_str(&quote(field));
        }
        self.0.push_str("\r\n");
    }
}

fn quote(field: &str) -> Cow<'_, str> {
    if field.contains([',', '"', '\r', '\n']) {
        Cow::Owned(format!("\"{}\"", field.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(field)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::Value;

    use super::super::fixtures::{sample_report, too_few_report};
    use super::*;

    type Key = (String, String, String, String, String, String);

    fn key(parts: [&str; 6]) -> Key {
        let [a, b, c, d, e, f] = parts.map(String::from);
        (a, b, c, d, e, f)
    }

    /// A number in one canonical text, or `suppressed`.
    fn canonical_json(v: &Value) -> String {
        match v {
            Value::Number(n) => n.as_f64().unwrap().to_string(),
            Value::String(s) if s == SUPPRESSED => s.clone(),
            other => panic!("not a cell: {other}"),
        }
    }

    fn from_json(json: &str) -> BTreeMap<Key, String> {
        let v: Value = serde_json::from_str(json).unwrap();
        let us = v["level"].as_str().unwrap();
        let mut out = BTreeMap::new();
        for (measure, cell) in v["summary"].as_object().unwrap() {
            out.insert(key(["summary", "", "", "", us, measure]), canonical_json(cell));
        }
        for q in v["questions"].as_array().unwrap() {
            let id = q["id"].as_str().unwrap();
            out.insert(key(["question", id, "", "", us, "answered"]), canonical_json(&q["answered"]));
            for o in q["options"].as_array().unwrap() {
                let option = o["id"].as_str().unwrap();
                for measure in ["count", "share"] {
                    out.insert(key(["question", id, option, "", us, measure]), canonical_json(&o[measure]));
                }
            }
            for (field, population) in [("top_box", us), ("site_top_box", "site"), ("all_top_box", "all")] {
                if let Some(cell) = q.get(field) {
                    out.insert(key(["question", id, "", "", population, "top_box"]), canonical_json(cell));
                }
            }
        }
        for m in v["trend"].as_array().unwrap() {
            let month = m["month"].as_str().unwrap();
            for (measure, cell) in m.as_object().unwrap().iter().filter(|(k, _)| *k != "month") {
                out.insert(key(["trend", "", "", month, us, measure]), canonical_json(cell));
            }
        }
        out
    }

    fn from_csv(text: &str) -> BTreeMap<Key, String> {
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        assert_eq!(reader.headers().unwrap(), HEADER.as_slice());
        let mut out = BTreeMap::new();
        for record in reader.records() {
            let r = record.unwrap();
            let v =
                if &r[6] == SUPPRESSED { r[6].to_string() } else { r[6].parse::<f64>().unwrap().to_string() };
            let previous = out.insert(key([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]]), v);
            assert!(previous.is_none(), "one row per number: {r:?}");
        }
        out
    }

    #[test]
    fn csv_and_json_carry_the_same_numbers() {
        let report = sample_report();
        let json = from_json(&to_json(&report));
        let csv = from_csv(&to_csv(&report));
        assert_eq!(json, csv);
        // Not two empty maps: the sample's known numbers are there, in both.
        let at = |parts| csv.get(&key(parts)).map(String::as_str);
        assert_eq!(at(["summary", "", "", "", "provider", "invitations"]), Some("85"));
        assert_eq!(at(["question", "listened", "always", "", "provider", "count"]), Some("20"));
        assert_eq!(at(["question", "listened", "often", "", "provider", "share"]), Some("0.2973"));
        assert_eq!(at(["question", "listened", "never", "", "provider", "count"]), Some(SUPPRESSED));
        assert_eq!(at(["question", "next_steps", "", "", "site", "top_box"]), Some("0.6667"));
        assert_eq!(at(["question", "listened", "", "", "all", "top_box"]), Some(SUPPRESSED));
        assert_eq!(at(["trend", "", "", "2026-02", "provider", "responses"]), Some(SUPPRESSED));
        assert_eq!(at(["question", "overall", "", "", "provider", "top_box"]), None, "no top box");
        // 5 summary + 3 answered + 2 * 18 options + 2 * 3 top boxes + 3 months * 5.
        assert_eq!(csv.len(), 5 + 3 + 36 + 6 + 15);
    }

    #[test]
    fn the_json_has_the_documented_shape() {
        let v: Value = serde_json::from_str(&to_json(&sample_report())).unwrap();
        assert_eq!(v["status"], "figures");
        assert_eq!(v["level"], "provider");
        assert_eq!(v["provider_id"], "dr-lee");
        assert_eq!(v["compared_with"], serde_json::json!(["site", "all"]));
        assert_eq!(v["summary"]["opt_outs"], "suppressed");
        let listened = &v["questions"][0];
        assert_eq!(
            listened["options"][0],
            serde_json::json!({"id": "always", "top_box": true, "count": 20, "share": 0.5405})
        );
        assert_eq!(listened["top_box"], 0.8378);
        assert!(v["questions"][2].get("top_box").is_none());
        assert_eq!(v["trend"][0]["month"], "2026-01");
    }

    #[test]
    fn too_few_responses_means_no_numbers_in_json_or_csv() {
        let report = too_few_report();
        let v: Value = serde_json::from_str(&to_json(&report)).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        let expected = [
            "campaign_id",
            "compared_with",
            "from",
            "k",
            "level",
            "period",
            "provider_id",
            "questionnaire",
            "site_id",
            "status",
            "to",
        ];
        assert_eq!(keys, expected);
        assert_eq!(v["status"], "too_few_responses");
        let numbers: Vec<&str> =
            v.as_object().unwrap().iter().filter(|(_, v)| v.is_number()).map(|(k, _)| k.as_str()).collect();
        assert_eq!(numbers, ["k"], "the threshold is the only number");
        let csv = to_csv(&report);
        assert!(!csv.contains(|c: char| c.is_ascii_digit()), "{csv}");
        assert_eq!(csv.lines().count(), 2);
        assert!(csv.contains("too_few_responses"));
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(quote("plain"), "plain");
        assert_eq!(quote("a,b"), "\"a,b\"");
        assert_eq!(quote("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(quote("two\nlines"), "\"two\nlines\"");
    }
}
