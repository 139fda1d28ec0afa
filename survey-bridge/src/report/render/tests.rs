use super::super::fixtures::{questionnaire, sample_report, too_few_report};
use super::*;

fn links() -> ReportLinks {
    ReportLinks {
        csv: "/reports/x.csv?from=2026-01&to=2026-03".into(),
        json: "/reports/x.json".into(),
        switch_lang: "?lang=fr".into(),
    }
}

fn page(lang: Lang) -> String {
    render_html(&sample_report(), &questionnaire(), lang, &links())
}

/// The first table after `start`.
fn table_after<'a>(page: &'a str, start: &str) -> &'a str {
    let after = page.find(start).unwrap_or_else(|| panic!("no {start:?}"));
    let from = after + page[after..].find("<table>").unwrap();
    let to = from + page[from..].find("</table>").unwrap();
    &page[from..to]
}

fn self_contained(page: &str) {
    assert!(page.starts_with("<!doctype html>"));
    assert!(page.contains("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"));
    assert!(page.contains("<link rel=\"stylesheet\" href=\"/assets/site.css\">"));
    assert!(!page.contains("<script") && !page.contains("style=") && !page.contains("<style"));
    assert!(!page.contains("http://") && !page.contains("https://"), "no outside resources");
    assert!(page.trim_end().ends_with("</html>"));
}

#[test]
fn the_page_is_whole_and_self_contained_in_both_languages() {
    for (lang, other) in [(Lang::En, "Français"), (Lang::Fr, "English")] {
        let page = page(lang);
        self_contained(&page);
        assert!(page.contains(&format!("<html lang=\"{}\">", lang.as_str())));
        assert!(page.contains(&format!("hreflang=\"{}\"", lang.other().as_str())) && page.contains(other));
        assert!(page.contains("href=\"/reports/x.csv?from=2026-01&amp;to=2026-03\" download>CSV</a>"));
        assert!(page.contains("href=\"/reports/x.json\" download>JSON</a>"));
        assert!(page.contains("<dd>dr-lee</dd>") && page.contains("<dd>north-clinic</dd>"));
    }
    assert!(page(Lang::Fr).contains("Rapport sur l'expérience des patients"));
    assert!(page(Lang::Fr).contains("Toujours"));
}

#[test]
fn the_tables_carry_the_numbers_and_mark_withheld_ones() {
    let en = page(Lang::En);
    let summary = table_after(&en, "<h2>Summary</h2>");
    for cell in ["<td class=\"num\">85</td>", "<td class=\"num\">37</td>", "<td class=\"num\">44%</td>"] {
        assert!(summary.contains(cell), "{cell} in {summary}");
    }
    assert!(summary.contains("<td class=\"num\">80%</td>"), "pooled top box 0.7973");
    assert!(summary.contains("<td class=\"num suppressed\">suppressed</td>"), "opt-outs");
    let listened = table_after(&en, "<h3>1. Did the provider listen");
    for cell in ["<td class=\"num\">20</td>", "<td class=\"num\">54%</td>", "<td class=\"num\">11</td>"] {
        assert!(listened.contains(cell), "{cell} in {listened}");
    }
    assert_eq!(listened.matches("suppressed</td>").count(), 6, "sometimes, rarely, never: count and share");
    assert!(listened.contains("<td class=\"num\">37</td>"), "n answered");
    assert!(en.contains("Top box (Always, Often): <strong>84%</strong>"));
    let fr = page(Lang::Fr);
    assert!(fr.contains("<td class=\"num suppressed\">supprimé</td>"));
    assert!(fr.contains("<td class=\"num\">54\u{a0}%</td>"));
    assert!(!fr.contains(">suppressed<"));
}

#[test]
fn the_comparison_table_has_a_column_per_population() {
    let en = page(Lang::En);
    let table = table_after(&en, "<h2>Top box by question</h2>");
    for header in ["This provider", "Whole site", "All sites"] {
        assert!(table.contains(&format!("<th scope=\"col\" class=\"num\">{header}</th>")), "{header}");
    }
    let row = |id: &str| {
        let from = table.find(id).unwrap();
        &table[from..from + table[from..].find("</tr>").unwrap()]
    };
    let listened = row("1. Did the provider listen");
    assert!(listened.contains(
        "<td class=\"num\">84%</td><td class=\"num\">70%</td><td class=\"num suppressed\">suppressed</td>"
    ));
    let next_steps = row("2. Did you know");
    assert!(
        next_steps.contains("<td class=\"num\">76%</td><td class=\"num\">67%</td><td class=\"num\">67%</td>")
    );
    assert!(!table.contains("3. Overall"), "no top box, no row");
}

#[test]
fn the_trend_table_runs_oldest_first_with_a_total() {
    let en = page(Lang::En);
    let table = table_after(&en, "<h2>Trend by month</h2>");
    let at: Vec<usize> =
        ["2026-01", "2026-02", "2026-03", ">Total<"].iter().map(|m| table.find(m).unwrap()).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{at:?}");
    assert!(table.contains("<th scope=\"row\" class=\"month\">2026-01</th><td class=\"num\">40</td><td class=\"num\">20</td><td class=\"num\">50%</td>"));
}

#[test]
fn every_chart_is_labelled_and_scales() {
    let en = page(Lang::En);
    let charts = en.matches("<svg ").count();
    assert_eq!(charts, 1 + 1 + 3, "trend, comparison, three questions");
    assert_eq!(en.matches("role=\"img\"").count(), charts);
    assert_eq!(en.matches("<title id=\"chart-").count(), charts);
    assert_eq!(en.matches("<desc id=\"chart-").count(), charts);
    assert_eq!(en.matches("width=\"100%\"").count(), charts);
    assert!(en.contains("<desc id=\"chart-q1-d\">Always 54%, Often 30%, Sometimes suppressed"));
    assert_eq!(en.matches("<div class=\"table-wrap\">").count(), en.matches("<table>").count());
}

#[test]
fn too_few_responses_shows_the_notice_and_no_numbers() {
    let report = too_few_report();
    let en = render_html(&report, &questionnaire(), Lang::En, &links());
    self_contained(&en);
    assert!(en.contains(
        "<p class=\"notice\">Fewer than 5 responses: no numbers are shown, so that no patient can be singled out.</p>"
    ));
    let fr = render_html(&report, &questionnaire(), Lang::Fr, &links());
    assert!(fr.contains("Moins de 5 réponses\u{a0}: aucun nombre n'est affiché, afin qu'aucun patient ne puisse être identifié."));
    for page in [&en, &fr] {
        assert!(!page.contains("<table") && !page.contains("<svg"));
        assert!(!page.contains("987") && !page.contains(">4<") && !page.contains(">3<"));
        // The text a reader sees, tags left out.
        let mut text = String::new();
        let mut in_tag = false;
        for c in page[page.find("<main").unwrap()..].chars() {
            match c {
                '<' => in_tag = true,
                '>' => in_tag = false,
                c if !in_tag => text.push(c),
                _ => {}
            }
        }
        for known in ["2026-q1", "2026-01", "2026-03"] {
            text = text.replace(known, "");
        }
        let digits: String = text.chars().filter(char::is_ascii_digit).collect();
        assert_eq!(digits, "5", "campaign, months and k only: {text}");
    }
}

#[test]
fn everything_from_outside_is_escaped() {
    let mut report = sample_report();
    report.provider_id = Some("<b>dr</b>".into());
    report.campaign_id = "a\"b".into();
    let mut q = questionnaire();
    q.questions[0].options[0].label.en = "<script>x</script>".into();
    q.title.en = "T & <i>".into();
    let evil = ReportLinks { csv: "\"><script>".into(), json: "'".into(), switch_lang: "<".into() };
    let page = render_html(&report, &q, Lang::En, &evil);
    assert!(!page.contains("<script") && !page.contains("<b>") && !page.contains("<i>"));
    assert!(page.contains("&lt;b&gt;dr&lt;/b&gt;") && page.contains("a&quot;b"));
    assert!(page.contains("&lt;script&gt;x&lt;/script&gt;"));
    assert!(page.contains("T &amp; &lt;i&gt;"));
    assert!(page.contains("(tests &amp; follow-up)"));
}

#[test]
fn numbers_are_written_the_local_way() {
    assert_eq!(count(Lang::En, 1_234_567), "1,234,567");
    assert_eq!(count(Lang::Fr, 1_234), "1\u{202f}234");
    assert_eq!(count(Lang::En, 999), "999");
    assert_eq!(percent(Lang::En, 0.4353), "44%");
    assert_eq!(percent(Lang::Fr, 1.0), "100\u{a0}%");
}
