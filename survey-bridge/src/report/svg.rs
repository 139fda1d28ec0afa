//! Inline SVG charts, drawn on the server. No script and no `style` attribute (the content
//! security policy forbids inline styles): colours come from classes in the site
//! stylesheet, geometry from presentation attributes. Each chart is an image with a title
//! and a description; the page also gives its numbers in a table. Withheld values draw
//! nothing but a word.

use std::fmt::Write;

use crate::html::escape;

/// The drawing's width in user units; it scales to the page's width.
const WIDTH: f64 = 320.0;
/// Where bars start, after their labels.
const BAR_X: f64 = 112.0;
/// The longest bar.
const BAR_MAX: f64 = 150.0;
/// The height of one bar's row.
const ROW: f64 = 20.0;

/// One bar: a label, a share between 0 and 1 (none when withheld), a class for its colour,
/// and the text written beside it.
#[derive(Debug, Clone)]
pub struct Bar {
    /// What the bar stands for.
    pub label: String,
    /// Its length, between 0 and 1; none when withheld.
    pub share: Option<f64>,
    /// Its colour, a class of the site stylesheet.
    pub class: &'static str,
    /// The number (or "suppressed") written beside it.
    pub text: String,
}

/// Bars under an optional heading.
#[derive(Debug, Clone)]
pub struct Group {
    /// The heading, if any.
    pub heading: Option<String>,
    /// The bars.
    pub bars: Vec<Bar>,
}

/// One month of the trend chart: its axis label (a second line for the year, when shown),
/// and two shares between 0 and 1, none when withheld.
#[derive(Debug, Clone)]
pub struct Point {
    /// The month, e.g. `03`.
    pub label: String,
    /// The year under it, on the first month and in January.
    pub year: Option<String>,
    /// The response rate.
    pub rate: Option<f64>,
    /// The top box.
    pub top_box: Option<f64>,
}

fn open(out: &mut String, id: &str, height: f64, title: &str, desc: &str) {
    let _ = write!(
        out,
        "<svg class=\"chart\" role=\"img\" aria-labelledby=\"{id}-t\" aria-describedby=\"{id}-d\" viewBox=\"0 0 {WIDTH} {height:.0}\" \
         width=\"100%\" preserveAspectRatio=\"xMinYMin meet\">\n\
         <title id=\"{id}-t\">{}</title>\n<desc id=\"{id}-d\">{}</desc>\n",
        escape(title),
        escape(desc)
    );
}

/// Cuts a label to `max` characters, marking the cut.
fn clip(label: &str, max: usize) -> String {
    if label.chars().count() <= max {
        return label.to_string();
    }
    let mut cut: String = label.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

fn clamp(share: f64) -> f64 {
    if share.is_finite() { share.clamp(0.0, 1.0) } else { 0.0 }
}

/// Horizontal bars, one row each, in groups.
pub fn bar_chart(id: &str, title: &str, desc: &str, groups: &[Group]) -> String {
    let rows: usize = groups.iter().map(|g| g.bars.len() + usize::from(g.heading.is_some())).sum();
    let gaps = groups.len().saturating_sub(1);
    let height = rows as f64 * ROW + gaps as f64 * ROW / 2.0 + 4.0;
    let mut out = String::new();
    open(&mut out, id, height, title, desc);
    let mut y = 2.0;
    for (i, group) in groups.iter().enumerate() {
        if i > 0 {
            y += ROW / 2.0;
        }
        if let Some(heading) = &group.heading {
            let _ = writeln!(
                out,
                "<text class=\"heading\" x=\"0\" y=\"{:.1}\" font-size=\"11\" font-weight=\"600\">{}</text>",
                y + 14.0,
                escape(&clip(heading, 50))
            );
            y += ROW;
        }
        for bar in &group.bars {
            let _ = writeln!(
                out,
                "<text x=\"0\" y=\"{:.1}\" font-size=\"11\">{}</text>",
                y + 14.0,
                escape(&clip(&bar.label, 20))
            );
            let _ = writeln!(
                out,
                "<rect class=\"track\" x=\"{BAR_X}\" y=\"{:.1}\" width=\"{BAR_MAX}\" height=\"14\" rx=\"2\"/>",
                y + 3.0
            );
            if let Some(share) = bar.share {
                let _ = writeln!(
                    out,
                    "<rect class=\"bar {}\" x=\"{BAR_X}\" y=\"{:.1}\" width=\"{:.1}\" height=\"14\" rx=\"2\"/>",
                    bar.class,
                    y + 3.0,
                    clamp(share) * BAR_MAX
                );
            }
            let class = if bar.share.is_some() { "value" } else { "value muted" };
            let _ = writeln!(
                out,
                "<text class=\"{class}\" x=\"{:.0}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text>",
                WIDTH - 2.0,
                y + 14.0,
                escape(&bar.text)
            );
            y += ROW;
        }
    }
    out.push_str("</svg>\n");
    out
}

/// Months along the bottom: a bar for the response rate, a line with dots for the top box,
/// on one 0-100% scale. `ticks` labels 0%, 50% and 100%.
pub fn trend_chart(id: &str, title: &str, desc: &str, points: &[Point], ticks: [&str; 3]) -> String {
    const LEFT: f64 = 34.0;
    const TOP: f64 = 8.0;
    const PLOT: f64 = 110.0;
    let height = TOP + PLOT + 30.0;
    let mut out = String::new();
    open(&mut out, id, height, title, desc);
    let y_of = |share: f64| TOP + PLOT * (1.0 - clamp(share));
    for (tick, share) in ticks.iter().zip([0.0, 0.5, 1.0]) {
        let y = y_of(share);
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{WIDTH}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>\n\
             <text x=\"{:.0}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\">{}</text>",
            LEFT - 4.0,
            y + 3.0,
            escape(tick)
        );
    }
    let band = (WIDTH - LEFT) / points.len().max(1) as f64;
    let centre = |i: usize| LEFT + band * (i as f64 + 0.5);
    let mut line: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    for (i, point) in points.iter().enumerate() {
        let x = centre(i);
        if let Some(rate) = point.rate {
            let y = y_of(rate);
            let _ = writeln!(
                out,
                "<rect class=\"bar rate\" x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\"/>",
                x - band * 0.3,
                band * 0.6,
                TOP + PLOT - y
            );
        }
        match point.top_box {
            Some(share) => line.last_mut().into_iter().for_each(|run| run.push((x, y_of(share)))),
            None => line.push(Vec::new()),
        }
        let _ = writeln!(
            out,
            "<text x=\"{x:.1}\" y=\"{:.0}\" font-size=\"10\" text-anchor=\"middle\">{}</text>",
            TOP + PLOT + 12.0,
            escape(&point.label)
        );
        if let Some(year) = &point.year {
            let _ = writeln!(
                out,
                "<text class=\"muted\" x=\"{x:.1}\" y=\"{:.0}\" font-size=\"10\" text-anchor=\"middle\">{}</text>",
                TOP + PLOT + 24.0,
                escape(year)
            );
        }
    }
    for run in line.iter().filter(|run| !run.is_empty()) {
        if run.len() > 1 {
            let coords: Vec<String> = run.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
            let _ =
                writeln!(out, "<polyline class=\"line top\" fill=\"none\" points=\"{}\"/>", coords.join(" "));
        }
        for (x, y) in run {
            let _ = writeln!(out, "<circle class=\"dot top\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\"/>");
        }
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(label: &str, share: Option<f64>, text: &str) -> Bar {
        Bar { label: label.into(), share, class: "top", text: text.into() }
    }

    #[test]
    fn bars_are_labelled_scaled_and_escaped() {
        let groups = [Group {
            heading: Some("Q <1>".into()),
            bars: vec![bar("Always", Some(0.5), "50%"), bar("Often & more", None, "suppressed")],
        }];
        let svg = bar_chart("c1", "Title & co", "Desc <x>", &groups);
        assert!(
            svg.contains("role=\"img\"")
                && svg.contains("aria-labelledby=\"c1-t\" aria-describedby=\"c1-d\"")
        );
        assert!(svg.contains("<title id=\"c1-t\">Title &amp; co</title>"));
        assert!(svg.contains("<desc id=\"c1-d\">Desc &lt;x&gt;</desc>"));
        assert!(svg.contains("Q &lt;1&gt;") && svg.contains("Often &amp; more"));
        assert!(svg.contains("width=\"75.0\""), "half of {BAR_MAX}: {svg}");
        assert_eq!(svg.matches("class=\"bar ").count(), 1, "nothing drawn for a withheld value");
        assert!(svg.contains(">suppressed</text>"));
        assert!(svg.contains("viewBox=\"0 0 320 ") && svg.contains("width=\"100%\""));
        assert!(!svg.contains("style"));
    }

    #[test]
    fn long_labels_are_clipped() {
        assert_eq!(clip("short", 20), "short");
        assert_eq!(clip("abcdefghij", 5), "abcd…");
    }

    #[test]
    fn the_trend_line_breaks_at_withheld_months() {
        let point = |label: &str, rate, top_box| Point { label: label.into(), year: None, rate, top_box };
        let points = [
            point("01", Some(0.5), Some(0.8)),
            point("02", Some(0.4), Some(0.7)),
            point("03", None, None),
            point("04", Some(0.3), Some(0.6)),
        ];
        let svg = trend_chart("t", "Trend", "d", &points, ["0%", "50%", "100%"]);
        assert_eq!(svg.matches("class=\"bar rate\"").count(), 3);
        assert_eq!(svg.matches("<polyline").count(), 1, "01-02 joined; 04 alone");
        assert_eq!(svg.matches("<circle").count(), 3);
        let months: Vec<usize> =
            ["01", "02", "03", "04"].iter().map(|m| svg.find(&format!(">{m}<")).unwrap()).collect();
        assert!(months.windows(2).all(|w| w[0] < w[1]), "left to right");
        assert!(svg.contains(">100%</text>"));
    }
}
