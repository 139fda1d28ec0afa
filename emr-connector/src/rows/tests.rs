use std::path::PathBuf;

use super::*;

const HEADER: &str =
    "row_id,site_id,provider_id,campaign_id,phone,email,language,time_zone,appointment_at,channel\n";
const GOOD: &str = "R1,site-1001,prov-a1,pcpe-2026q4,+16139990101,p1@example.org,en,America/Toronto,2026-11-20T09:00:00-05:00,sms\n";

fn now() -> Timestamp {
    "2026-11-24T15:00:00Z".parse().unwrap()
}

fn timing() -> Timing {
    Timing::new(2, now())
}

fn read_str(text: &str) -> Result<Input, ReadError> {
    read(text.as_bytes(), &timing(), &HashSet::new())
}

fn testdata(name: &str) -> Vec<u8> {
    std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata").join(name)).unwrap()
}

#[test]
fn every_sample_row_is_good() {
    let input = read(&testdata("contacts.csv")[..], &timing(), &HashSet::new()).unwrap();
    assert_eq!(input.refused, vec![]);
    assert_eq!(input.rows.len(), 240);
    assert_eq!(input.skipped, 0);
    let first = &input.rows[0];
    assert_eq!((first.line, first.row_id.as_str()), (2, "R00001"));
    assert_eq!(first.contact.site_id, "site-1003");
    // The phone of the file's first data row, read from the file itself.
    let sample = String::from_utf8(testdata("contacts.csv")).unwrap();
    let phone = sample.lines().nth(1).and_then(|l| l.split(',').nth(4)).unwrap();
    assert_eq!(first.contact.phone, phone);
    assert_eq!(first.contact.channel(), Channel::Any);
    assert_eq!(input.rows[239].line, 241);
}

#[test]
fn each_bad_sample_row_is_refused_by_line_and_field() {
    let input = read(&testdata("contacts-bad.csv")[..], &timing(), &HashSet::new()).unwrap();
    // B001's phone is written as EMRs export them, without +1: bad for the cache, which takes
    // only E.164, and read by the connector as a number of its default region, CA.
    let rows: Vec<_> =
        input.rows.iter().map(|r| (r.line, r.row_id.as_str(), r.contact.phone.as_str())).collect();
    assert_eq!(rows, vec![(2, "B001", "+16135550101")]);
    let got: Vec<_> = input
        .refused
        .iter()
        .map(|r| (r.line, r.row_id.clone().unwrap_or_default(), r.field.as_str()))
        .collect();
    // B009's email holds a line break, so the records after it start one line later.
    let want = [
        (3, "B002", "contact.email"),
        (4, "B003", "contact"),
        (5, "B004", "contact.language"),
        (6, "B005", "contact.time_zone"),
        (7, "B006", "contact.site_id"),
        (8, "B007", "contact.provider_id"),
        (9, "B008", "contact.phone"),
        (10, "B009", "contact.email"),
        (12, "B010", "appointment_at"),
        (13, "B011", "contact.channel"),
        (14, "B012", "contact.provider_id"),
    ];
    let want: Vec<_> = want.iter().map(|(l, id, f)| (*l, id.to_string(), *f)).collect();
    assert_eq!(got, want);

    let shown: String = input.refused.iter().map(|r| format!("{r}\n")).collect();
    for value in [
        "613-555",
        "not-an-email",
        "Mars",
        "xxxxxxxx",
        "99999999",
        "Bcc",
        "everyone",
        "yesterday",
        "pigeon",
        "\"de\"",
        "5550104",
        "a@b.c",
        "\0",
    ] {
        assert!(!shown.contains(value), "{value:?} echoed in:\n{shown}");
    }
}

#[test]
fn columns_are_found_by_name_in_any_order_and_others_are_ignored() {
    let text = "Channel , patient_name,appointment_at,time_zone,language,email,phone,campaign_id,provider_id,site_id,ROW_ID\n\
                sms,Jane Doe,2026-11-20T09:00:00-05:00,America/Toronto,fr,,+16139990101,c1,p1,site-1001,R9\n";
    let input = read_str(text).unwrap();
    assert_eq!(input.refused, vec![]);
    let row = &input.rows[0];
    assert_eq!(row.row_id, "R9");
    assert_eq!(row.contact.language, "fr");
    assert_eq!(row.contact.channel(), Channel::Sms);
    assert!(!format!("{row:?}").contains("Jane"));
}

#[test]
fn a_byte_order_mark_is_not_part_of_the_first_column() {
    let text = format!("\u{feff}{HEADER}{GOOD}");
    let input = read_str(&text).unwrap();
    assert_eq!(input.rows.len(), 1);
}

#[test]
fn a_missing_or_repeated_column_is_a_header_error() {
    let e =
        read_str("row_id,site_id,provider_id,campaign_id,email,language,time_zone,channel\n").unwrap_err();
    assert!(matches!(&e, ReadError::Header(HeaderError::Missing(m)) if m == &["phone", "appointment_at"]));
    assert!(e.to_string().contains("missing column(s) phone, appointment_at"), "{e}");

    let e = read_str(&format!("{},phone\n", HEADER.trim_end())).unwrap_err();
    assert!(matches!(e, ReadError::Header(HeaderError::Repeated("phone"))), "{e}");

    let e = read_str("").unwrap_err();
    assert!(matches!(e, ReadError::Header(HeaderError::Missing(m)) if m.len() == 10));
}

#[test]
fn send_after_is_the_appointment_plus_the_delay_but_never_before_now() {
    let soon = "R1,site-1001,p,c,+16139990101,,en,America/Toronto,2026-11-25T09:00:00-05:00,sms\n";
    let past = "R2,site-1001,p,c,+16139990101,,en,America/Toronto,2026-11-20T09:00:00-05:00,sms\n";
    let input = read_str(&format!("{HEADER}{soon}{past}")).unwrap();
    let at = |i: usize| input.rows[i].contact.send_after.unwrap().seconds;
    let want: Timestamp = "2026-11-25T16:00:00Z".parse().unwrap();
    assert_eq!(at(0), want.as_second());
    assert_eq!(at(1), now().as_second());

    let zero = Timing::new(0, now());
    let input = read(format!("{HEADER}{soon}").as_bytes(), &zero, &HashSet::new()).unwrap();
    let want: Timestamp = "2026-11-25T14:00:00Z".parse().unwrap();
    assert_eq!(input.rows[0].contact.send_after.unwrap().seconds, want.as_second());
}

#[test]
fn an_appointment_past_any_retention_is_refused() {
    let late = "R1,site-1001,p,c,+16139990101,,en,America/Toronto,2027-01-20T09:00:00-05:00,sms\n";
    let input = read_str(&format!("{HEADER}{late}")).unwrap();
    assert_eq!(input.refused[0].field, "contact.send_after");
}

#[test]
fn an_empty_channel_means_any() {
    let row = "R1,site-1001,p,c,,p@example.org,en,America/Toronto,2026-11-20T09:00:00-05:00,\n";
    let input = read_str(&format!("{HEADER}{row}")).unwrap();
    assert_eq!(input.rows[0].contact.channel(), Channel::Any);
}

#[test]
fn a_repeated_row_id_is_refused_and_pushed_ones_are_skipped() {
    let mut already = HashSet::new();
    already.insert("R1".to_string());
    let r2 = GOOD.replacen("R1", "R2", 1);
    let text = format!("{HEADER}{GOOD}{r2}{r2}{GOOD}");
    let input = read(text.as_bytes(), &timing(), &already).unwrap();
    assert_eq!(input.skipped, 1);
    assert_eq!(input.rows.len(), 1);
    assert_eq!(input.rows[0].row_id, "R2");
    let refused: Vec<_> =
        input.refused.iter().map(|r| (r.line, r.field.as_str(), r.message.as_str())).collect();
    assert_eq!(
        refused,
        vec![(4, "row_id", "repeats the row id of line 3"), (5, "row_id", "repeats the row id of line 2")]
    );
}

#[test]
fn an_unusable_row_id_is_not_shown() {
    let text = format!("{HEADER}{}", GOOD.replacen("R1", "Jane Doe", 1));
    let input = read_str(&text).unwrap();
    let refusal = &input.refused[0];
    assert_eq!(refusal.row_id, None);
    assert_eq!(refusal.to_string(), "2: row ?: row_id: may hold only letters, digits and . _ : -");
}

#[test]
fn short_lines_and_bad_bytes_are_refused_alone() {
    let mut text = format!("{HEADER}R1,site-1001,p\n").into_bytes();
    text.extend_from_slice(
        b"R2,site-1001,p,c,,p\xff@example.org,en,America/Toronto,2026-11-20T09:00:00-05:00,email\n",
    );
    text.extend_from_slice(GOOD.replacen("R1", "R3", 1).as_bytes());
    let input = read(&text[..], &timing(), &HashSet::new()).unwrap();
    let refused: Vec<_> = input.refused.iter().map(|r| (r.line, r.field.as_str())).collect();
    assert_eq!(refused, vec![(2, "record"), (3, "contact.email")]);
    assert_eq!(input.refused[1].message, "is not UTF-8 text");
    assert_eq!(input.rows.len(), 1);
}

#[test]
fn debug_of_a_row_hides_phone_and_email() {
    let input = read_str(&format!("{HEADER}{GOOD}")).unwrap();
    let shown = format!("{:?} {:#?}", input.rows[0], input.rows);
    assert!(shown.contains("R1") && shown.contains("<redacted>"), "{shown}");
    assert!(!shown.contains("5550101") && !shown.contains("p1@"), "{shown}");
}

#[test]
fn the_refusal_line_format() {
    let r = Refusal {
        line: 7,
        row_id: Some("R7".into()),
        field: "contact.phone".into(),
        message: "is bad".into(),
    };
    assert_eq!(r.to_string(), "7: row R7: contact.phone: is bad");
}

#[test]
fn line_numbers_hold_with_crlf_blank_lines_and_quoted_line_breaks() {
    let good = |id: &str| GOOD.replacen("R1", id, 1);
    let text = format!(
        "\r\n{}\r\n{}\r\n\r\n{}{}",
        HEADER.trim_end(),
        good("R2").trim_end(),
        good("R4").replacen("p1@example.org", "\"p1@exa\r\nmple.org\"", 1),
        good("R6").replacen("site-1001", "", 1),
    );
    let input = read_str(&text).unwrap();
    let lines: Vec<_> = input.rows.iter().map(|r| (r.row_id.as_str(), r.line)).collect();
    assert_eq!(lines, vec![("R2", 3)]);
    let refused: Vec<_> = input.refused.iter().map(|r| (r.row_id.as_deref(), r.line)).collect();
    assert_eq!(refused, vec![(Some("R4"), 5), (Some("R6"), 7)]);
}

// Found by the emr_rows fuzz target: a header ended by a lone CR put the first row on
// line 1, the header's; a lone CR ends a record for the CSV reader, and a line for editors.
#[test]
fn a_lone_cr_ends_a_line() {
    let good = |id: &str| GOOD.replacen("R1", id, 1).trim_end().to_string();
    let text = format!("{}\r{}\r{}\r\n\r{}\n", HEADER.trim_end(), good("R2"), good("R3"), good("R5"));
    let input = read_str(&text).unwrap();
    let lines: Vec<_> = input.rows.iter().map(|r| (r.row_id.as_str(), r.line)).collect();
    assert_eq!(lines, vec![("R2", 2), ("R3", 3), ("R5", 5)]);
}

/// `GOOD` with row id `id` and phone `phone` (quoted: an export may hold commas there too).
fn with_phone(id: &str, phone: &str) -> String {
    GOOD.replacen("R1", id, 1).replacen("+16139990101", &format!("\"{phone}\""), 1)
}

#[test]
fn phone_numbers_as_emrs_write_them_are_sent_in_e164() {
    let formats = ["613-555-0101", "(613) 555-0101", "1 613 555 0101", "+1 613 555 0101", "+16135550101"];
    let text: String = std::iter::once(HEADER.to_string())
        .chain(formats.iter().enumerate().map(|(i, phone)| with_phone(&format!("R{i}"), phone)))
        .collect();
    let input = read_str(&text).unwrap();
    assert_eq!(input.refused, vec![]);
    let phones: Vec<_> = input.rows.iter().map(|r| r.contact.phone.as_str()).collect();
    assert_eq!(phones, ["+16135550101"; 5]);
}

#[test]
fn a_phone_that_cannot_be_read_is_refused_by_line_and_field_without_its_digits() {
    let text = format!(
        "{HEADER}{}{}{}{}",
        with_phone("R1", "613-555-0101"),
        with_phone("R2", "555-0101"),
        with_phone("R3", "613-555-0101 ext. 42"),
        with_phone("R4", "+999 613 555 0101"),
    );
    let input = read_str(&text).unwrap();
    assert_eq!(input.rows.len(), 1);
    let refused: Vec<_> = input.refused.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        refused,
        [
            "3: row R2: contact.phone: is not a valid number of CA: check its digits, or write a number \
             of another country with its country code (+...)",
            "4: row R3: contact.phone: has an extension: an invitation cannot reach one",
            "5: row R4: contact.phone: has an unknown country code",
        ]
    );
}

#[test]
fn national_numbers_are_read_in_the_region_given() {
    let text = format!("{HEADER}{}", with_phone("R1", "020 7946 0958"));
    let input = read_in(text.as_bytes(), &timing(), "GB".parse().unwrap(), &HashSet::new()).unwrap();
    assert_eq!(input.rows[0].contact.phone, "+442079460958");
    // The same line in the default region, CA, is no number.
    let input = read_str(&text).unwrap();
    assert_eq!((input.refused[0].line, input.refused[0].field.as_str()), (2, "contact.phone"));
}
