//! Phone numbers as EMRs export them, end to end: the real binary reads each format, the
//! real cache (which takes E.164 only) stores it in E.164, a number it cannot read is
//! refused by line and field, and no number shows in what the connector prints.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Cache, connector, map_lines, push_args};
use proto::v1::GetContactRequest;

const HEADER: &str =
    "row_id,site_id,provider_id,campaign_id,phone,email,language,time_zone,appointment_at,channel\n";

/// A site-1001 row of `id` with `phone` (quoted, as exports quote what has spaces).
fn row(id: &str, phone: &str) -> String {
    format!(
        "{id},site-1001,prov-a1,pcpe-2026q4,\"{phone}\",,en,America/Toronto,2026-11-20T09:00:00-05:00,sms\n"
    )
}

/// What the cache holds as the phone of each GUID of the map, read as the outreach worker.
async fn stored_phones(cache: &Cache, map: &std::path::Path) -> Vec<(String, String)> {
    let mut outreach = cache.client_as("outreach").await;
    let mut phones = Vec::new();
    for line in map_lines(map) {
        let contact =
            outreach.get_contact(GetContactRequest { guid: line[1].clone() }).await.unwrap().into_inner();
        phones.push((line[0].clone(), contact.phone.clone()));
    }
    phones
}

/// Fails if `text` holds any of `numbers`, or their digits in any grouping.
fn assert_no_number(text: &str, numbers: &[&str]) {
    let digits_of_text: String = text.chars().filter(char::is_ascii_digit).collect();
    for number in numbers {
        assert!(!text.contains(number), "{number:?} shown:\n{text}");
        let digits: String = number.chars().filter(char::is_ascii_digit).collect();
        assert!(!digits_of_text.contains(&digits[digits.len() - 7..]), "{number:?} shown:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_export_format_is_stored_in_e164_and_a_bad_number_is_refused_by_line() {
    let cache = Cache::start().await;
    let formats = ["613-555-0101", "(613) 555-0102", "1 613 555 0103", "+1 613 555 0104"];
    let bad = "555-0105";
    let mut text = HEADER.to_string();
    for (i, phone) in formats.iter().enumerate() {
        text.push_str(&row(&format!("P{i}"), phone));
    }
    text.push_str(&row("P9", bad));
    let csv = cache.pki.write("formats.csv", &text);

    let run = connector(&push_args(cache.flags("site-1001"), &[], &csv)).await;
    assert_eq!(run.code, 65, "{run:?}");
    assert_eq!(run.stdout, "pushed 4, skipped 0 (already in the map), refused 1 (see above)\n");
    assert_eq!(
        run.stderr,
        format!(
            "{}:6: row P9: contact.phone: is not a valid number of CA: check its digits, or write a \
             number of another country with its country code (+...)\n",
            csv.display()
        )
    );
    let mut numbers = formats.to_vec();
    numbers.push(bad);
    assert_no_number(&format!("{}{}", run.stdout, run.stderr), &numbers);

    let phones = stored_phones(&cache, &cache.pki.path("formats.csv.guids.csv")).await;
    let want: Vec<_> = (1..=4).map(|i| (format!("P{}", i - 1), format!("+161355501{i:02}"))).collect();
    assert_eq!(phones, want);
    assert_eq!(cache.entries().await, 4);
    cache.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_region_flag_reads_national_numbers_of_another_country() {
    let cache = Cache::start().await;
    let text = format!("{HEADER}{}{}", row("G1", "020 7946 0958"), row("G2", "+1 613 555 0101"));
    let csv = cache.pki.write("gb.csv", &text);

    // In Canada (the default), a British national number is no number.
    let run = connector(&push_args(cache.flags("site-1001"), &["--dry-run"], &csv)).await;
    assert_eq!(run.code, 65, "{run:?}");
    assert!(run.stderr.contains(":2: row G1: contact.phone: is not a valid number of CA"), "{run:?}");

    let run = connector(&push_args(cache.flags("site-1001"), &["--default-region", "gb"], &csv)).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_no_number(&format!("{}{}", run.stdout, run.stderr), &["020 7946 0958", "+1 613 555 0101"]);
    let phones = stored_phones(&cache, &cache.pki.path("gb.csv.guids.csv")).await;
    assert_eq!(
        phones,
        [("G1".to_string(), "+442079460958".to_string()), ("G2".into(), "+16135550101".into())]
    );

    let run = connector(&push_args(cache.flags("site-1001"), &["--default-region", "Canada"], &csv)).await;
    assert_eq!(run.code, 64, "{run:?}");
    assert!(run.stderr.contains("default_region") && run.stderr.contains("is not a region"), "{run:?}");
    cache.stop().await;
}
