//! The alert rules (`deploy/prometheus/`) use only metrics and label values the daemons
//! export, every alert has its severity, summary, description and runbook, and
//! OPERATIONS.md describes it. With promtool on PATH (required with
//! DEPLOY_REQUIRE_PROMTOOL=1): `promtool check rules`, `promtool test rules` and `promtool
//! check config`.
#![allow(clippy::unwrap_used)]

mod deploy;

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use deploy::{DAEMONS, deploy, have, read, repo, run};

// ---------------------------------------------------------------------------------------
// Prometheus rules
// ---------------------------------------------------------------------------------------

/// Metric names the daemons register: the first string literal after `counter!(`,
/// `gauge!(` or `histogram!(` in their sources.
fn exported_metrics() -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    for crate_dir in ["cache-server/src", "outreach-worker/src", "survey-bridge/src"] {
        walk(&repo().join(crate_dir), &mut files);
    }
    let mut names = BTreeSet::new();
    for file in files {
        let text = read(&file);
        for macro_name in ["counter!(", "gauge!(", "histogram!("] {
            for (at, _) in text.match_indices(macro_name) {
                let rest = text[at + macro_name.len()..].trim_start();
                if let Some(rest) = rest.strip_prefix('"') {
                    names.insert(rest.split('"').next().unwrap().to_string());
                }
            }
        }
    }
    names
}

/// Words of `text` that look like metric names of the tier (`cache_...`, `outreach_...`,
/// `bridge_...`).
fn tier_metric_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| ["cache_", "outreach_", "bridge_"].iter().any(|p| w.starts_with(p)))
        .map(String::from)
        .collect()
}

/// The source file under the repository that holds `"value"` as a string literal.
fn has_literal(crate_src: &str, value: &str) -> bool {
    fn search(dir: &Path, needle: &str) -> bool {
        fs::read_dir(dir).unwrap().any(|entry| {
            let path = entry.unwrap().path();
            if path.is_dir() {
                search(&path, needle)
            } else {
                path.extension().is_some_and(|e| e == "rs") && read(&path).contains(needle)
            }
        })
    }
    search(&repo().join(crate_src), &format!("\"{value}\""))
}

#[test]
fn alert_rules_use_only_exported_metrics_and_label_values() {
    let rules = read(&deploy("prometheus/alerts.yml"));
    let exported = exported_metrics();
    let used = tier_metric_names(&rules);
    assert!(used.contains("cache_memory_locked") && used.contains("cache_last_sweep_timestamp_seconds"));
    assert!(used.contains("bridge_opt_outs_waiting") && used.contains("bridge_reloads_total"));
    let missing: Vec<&String> = used.iter().filter(|name| !exported.contains(*name)).collect();
    assert!(missing.is_empty(), "alerts.yml uses metrics no daemon exports: {missing:?}");

    // Label values the rules select on, and where the daemons spell them.
    for (value, src) in [
        ("DeleteContact", "cache-server/src"),
        ("OptOut", "cache-server/src"),
        ("PutContact", "cache-server/src"),
        ("permission_denied", "cache-server/src"),
        ("unauthenticated", "cache-server/src"),
        ("unavailable", "cache-server/src"),
        ("resource_exhausted", "cache-server/src"),
        ("not_acked", "outreach-worker/src"),
        ("failed_permanent", "outreach-worker/src"),
        ("sent", "outreach-worker/src"),
        ("retry", "outreach-worker/src"),
    ] {
        assert!(rules.contains(value), "alerts.yml no longer uses {value}: update this list");
        assert!(has_literal(src, value), "{src} no longer spells the label value {value:?}");
    }
    for job in DAEMONS.iter().map(|d| d.unit) {
        assert!(rules.contains(&format!("job=\"{job}\"")), "alerts.yml: job {job}");
    }
}

#[test]
fn every_alert_has_severity_summary_description_runbook_and_a_line_in_operations() {
    let rules = read(&deploy("prometheus/alerts.yml"));
    let operations = read(&deploy("OPERATIONS.md"));
    let mut count = 0;
    for block in rules.split("- alert: ").skip(1) {
        let name = block.split_whitespace().next().unwrap();
        for field in ["expr:", "severity:", "summary:", "description:", "runbook:"] {
            assert!(block.contains(field), "alert {name} has no {field}");
        }
        assert!(
            block.contains("severity: critical") || block.contains("severity: warning"),
            "alert {name}: severity critical or warning"
        );
        assert!(operations.contains(&format!("`{name}`")), "OPERATIONS.md does not describe alert {name}");
        count += 1;
    }
    assert!(count >= 10, "only {count} alerts found");
}

#[test]
fn promtool_checks_and_tests_the_rules() {
    if !have("promtool", "DEPLOY_REQUIRE_PROMTOOL") {
        return;
    }
    let dir = deploy("prometheus");
    run(Command::new("promtool").args(["check", "rules", "alerts.yml"]).current_dir(&dir));
    run(Command::new("promtool").args(["test", "rules", "alerts_test.yml"]).current_dir(&dir));
    run(Command::new("promtool").args(["check", "config", "prometheus.example.yml"]).current_dir(&dir));
}
