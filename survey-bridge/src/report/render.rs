//! A report as a full HTML page, in English or French: server-rendered, no JavaScript, no
//! inline styles, every chart also given as a table. Every piece of text that is not a
//! literal here is escaped.

use std::fmt::Write;

use super::model::{Body, Cell, Figures, Level, Report};
use super::svg::{self, Point};
use crate::html::escape;
use crate::questionnaire::{Lang, Questionnaire};

/// Where the page's links lead: the same report as CSV and as JSON, and in the other
/// language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportLinks {
    /// The CSV download.
    pub csv: String,
    /// The JSON download.
    pub json: String,
    /// The page in the other language.
    pub switch_lang: String,
}

fn tr(lang: Lang, en: &'static str, fr: &'static str) -> &'static str {
    match lang {
        Lang::En => en,
        Lang::Fr => fr,
    }
}

/// A count with thousands grouped: `1,234` or `1 234`.
pub(super) fn count(lang: Lang, n: u64) -> String {
    let digits = n.to_string();
    let sep = tr(lang, ",", "\u{202f}");
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push_str(sep);
        }
        out.push(c);
    }
    out
}

/// A share as a whole percentage: `42%` or `42 %`.
pub(super) fn percent(lang: Lang, share: f64) -> String {
    let p = (share * 100.0).round();
    format!("{p}{}", tr(lang, "%", "\u{a0}%"))
}

fn suppressed(lang: Lang) -> &'static str {
    tr(lang, "suppressed", "supprimé")
}

fn count_text(lang: Lang, cell: Cell<u64>) -> String {
    cell.shown().map_or_else(|| suppressed(lang).to_string(), |n| count(lang, n))
}

fn share_text(lang: Lang, cell: Cell<f64>) -> String {
    cell.shown().map_or_else(|| suppressed(lang).to_string(), |s| percent(lang, s))
}

/// A table cell for a number: right-aligned, marked when withheld.
fn td(text: &str, withheld: bool) -> String {
    let class = if withheld { "num suppressed" } else { "num" };
    format!("<td class=\"{class}\">{}</td>", escape(text))
}

fn td_count(lang: Lang, cell: Cell<u64>) -> String {
    td(&count_text(lang, cell), cell.is_suppressed())
}

fn td_share(lang: Lang, cell: Cell<f64>) -> String {
    td(&share_text(lang, cell), cell.is_suppressed())
}

fn population(lang: Lang, level: Level, ours: bool) -> &'static str {
    match (level, ours) {
        (Level::Provider, _) => tr(lang, "This provider", "Ce professionnel"),
        (Level::Site, true) => tr(lang, "This site", "Ce site"),
        (Level::Site, false) => tr(lang, "Whole site", "Tout le site"),
        (Level::All, _) => tr(lang, "All sites", "Tous les sites"),
    }
}

/// The page for `report`, with the questionnaire's texts in `lang`.
pub fn render_html(report: &Report, q: &Questionnaire, lang: Lang, links: &ReportLinks) -> String {
    let heading = tr(lang, "Patient experience report", "Rapport sur l'expérience des patients");
    let mut page = format!(
        "<!doctype html>\n<html lang=\"{}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"referrer\" content=\"same-origin\">\n<title>{heading}: {}</title>\n\
         <link rel=\"stylesheet\" href=\"/assets/site.css\">\n</head>\n<body>\n<main class=\"report\">\n",
        lang.as_str(),
        escape(q.title.get(lang)),
    );
    let other = lang.other();
    let _ = write!(
        page,
        "<p class=\"lang\"><a href=\"{}\" hreflang=\"{o}\" lang=\"{o}\">{}</a></p>\n<h1>{heading}</h1>\n\
         <p class=\"subtitle\">{}</p>\n",
        escape(&links.switch_lang),
        tr(lang, "Français", "English"),
        escape(q.title.get(lang)),
        o = other.as_str(),
    );
    scope(&mut page, report, lang);
    let _ = writeln!(
        page,
        "<p class=\"downloads\">{} <a href=\"{}\" download>CSV</a> <a href=\"{}\" download>JSON</a></p>",
        tr(lang, "Download these numbers:", "Télécharger ces données\u{a0}:"),
        escape(&links.csv),
        escape(&links.json),
    );
    match &report.body {
        Body::TooFewResponses => {
            let _ = writeln!(
                page,
                "<p class=\"notice\">{}</p>",
                match lang {
                    Lang::En => format!(
                        "Fewer than {} responses: no numbers are shown, so that no patient can be singled out.",
                        report.k
                    ),
                    Lang::Fr => format!(
                        "Moins de {} réponses\u{a0}: aucun nombre n'est affiché, afin qu'aucun patient ne puisse être identifié.",
                        report.k
                    ),
                }
            );
        }
        Body::Figures(figures) => body(&mut page, report, figures, q, lang),
    }
    page.push_str("</main>\n</body>\n</html>\n");
    page
}

fn scope(page: &mut String, report: &Report, lang: Lang) {
    page.push_str("<dl class=\"scope\">\n");
    let mut item = |term: &str, value: &str| {
        let _ = writeln!(page, "<div><dt>{term}</dt><dd>{}</dd></div>", escape(value));
    };
    if report.level == Level::All {
        item(tr(lang, "Population", "Population"), tr(lang, "All sites", "Tous les sites"));
    }
    if let Some(provider) = &report.provider_id {
        item(tr(lang, "Provider", "Professionnel"), provider);
    }
    if let Some(site) = &report.site_id {
        item(tr(lang, "Site", "Site"), site);
    }
    item(tr(lang, "Campaign", "Campagne"), &report.campaign_id);
    item(tr(lang, "Period", "Période"), &report.period);
    let months = format!("{} {} {}", report.from, tr(lang, "to", "à"), report.to);
    item(tr(lang, "Months", "Mois"), &months);
    page.push_str("</dl>\n");
}

fn table_open(page: &mut String, caption: &str, headers: &[&str]) {
    let _ = write!(
        page,
        "<div class=\"table-wrap\">\n<table>\n<caption>{}</caption>\n<thead><tr>",
        escape(caption)
    );
    for (i, header) in headers.iter().enumerate() {
        let class = if i == 0 { "" } else { " class=\"num\"" };
        let _ = write!(page, "<th scope=\"col\"{class}>{}</th>", escape(header));
    }
    page.push_str("</tr></thead>\n<tbody>\n");
}

fn body(page: &mut String, report: &Report, figures: &Figures, q: &Questionnaire, lang: Lang) {
    let _ = writeln!(
        page,
        "<p class=\"note\">{}</p>",
        match lang {
            Lang::En => format!(
                "Counts under {}, and numbers from which one could be worked out, are shown as “suppressed”. \
                 Top box: the share of answers in the best options (for example “always” or “often”).",
                report.k
            ),
            Lang::Fr => format!(
                "Les nombres inférieurs à {}, et ceux qui permettraient d'en retrouver un, sont indiqués «\u{a0}supprimé\u{a0}». \
                 Réponses favorables\u{a0}: la part des réponses dans les meilleures options (par exemple «\u{a0}toujours\u{a0}» ou «\u{a0}souvent\u{a0}»).",
                report.k
            ),
        }
    );
    if let Some(epsilon) = report.noise_epsilon {
        let _ = writeln!(
            page,
            "<p class=\"note\">{}</p>",
            match lang {
                Lang::En => format!(
                    "Every count carries random noise (differential privacy, ε\u{a0}=\u{a0}{epsilon}): a number may be \
                     off by a few, so that no patient can be singled out, even by someone who knows the other patients' answers."
                ),
                Lang::Fr => format!(
                    "Chaque nombre comporte un bruit aléatoire (confidentialité différentielle, ε\u{a0}=\u{a0}{epsilon})\u{a0}: \
                     un nombre peut s'écarter de quelques unités, afin qu'aucun patient ne puisse être identifié, \
                     même par qui connaît les réponses des autres."
                ),
            }
        );
    }
    let (rate_h, top_h) =
        (tr(lang, "Response rate", "Taux de réponse"), tr(lang, "Top box", "Réponses favorables"));
    let (invitations_h, responses_h) =
        (tr(lang, "Invitations sent", "Invitations envoyées"), tr(lang, "Responses", "Réponses"));
    let opt_outs_h = tr(lang, "Declined", "Refus");
    let s = &figures.summary;
    let _ = writeln!(page, "<section>\n<h2>{}</h2>", tr(lang, "Summary", "Résumé"));
    table_open(
        page,
        tr(lang, "The whole period", "Toute la période"),
        &[tr(lang, "Measure", "Mesure"), tr(lang, "Value", "Valeur")],
    );
    for (label, value) in [
        (invitations_h, td_count(lang, s.invitations)),
        (responses_h, td_count(lang, s.responses)),
        (rate_h, td_share(lang, s.response_rate)),
        (opt_outs_h, td_count(lang, s.opt_outs)),
        (
            tr(lang, "Top box, all questions", "Réponses favorables, toutes questions"),
            td_share(lang, s.top_box),
        ),
    ] {
        let _ = writeln!(page, "<tr><th scope=\"row\">{label}</th>{value}</tr>");
    }
    page.push_str("</tbody>\n</table>\n</div>\n</section>\n");

    trend(page, figures, lang, [invitations_h, responses_h, rate_h, opt_outs_h, top_h]);
    questions::comparison(page, report, figures, q, lang, top_h);

    let _ =
        writeln!(page, "<section>\n<h2>{}</h2>", tr(lang, "Answers by question", "Réponses par question"));
    for (i, figures) in figures.questions.iter().enumerate() {
        questions::question(page, i, figures, q.question(&figures.id), lang, top_h);
    }
    page.push_str("</section>\n");
}

fn trend(page: &mut String, figures: &Figures, lang: Lang, headers: [&str; 5]) {
    let _ = writeln!(page, "<section>\n<h2>{}</h2>", tr(lang, "Trend by month", "Évolution par mois"));
    let points: Vec<Point> = figures
        .trend
        .iter()
        .enumerate()
        .map(|(i, m)| Point {
            label: m.month.get(5..).unwrap_or(&m.month).to_string(),
            year: (i == 0 || m.month.ends_with("-01"))
                .then(|| m.month.get(..4).unwrap_or_default().to_string()),
            rate: m.response_rate.shown(),
            top_box: m.top_box.shown(),
        })
        .collect();
    let desc: Vec<String> = figures
        .trend
        .iter()
        .map(|m| {
            format!(
                "{}: {} {}, {} {}",
                m.month,
                headers[2],
                share_text(lang, m.response_rate),
                headers[4],
                share_text(lang, m.top_box)
            )
        })
        .collect();
    let ticks = [percent(lang, 0.0), percent(lang, 0.5), percent(lang, 1.0)];
    let title = tr(
        lang,
        "Response rate (bars) and top box (line) by month",
        "Taux de réponse (barres) et réponses favorables (ligne) par mois",
    );
    page.push_str(&svg::trend_chart(
        "chart-trend",
        title,
        &desc.join("; "),
        &points,
        ticks.each_ref().map(String::as_str),
    ));
    let _ = writeln!(
        page,
        "<p class=\"legend\"><span class=\"key rate\"></span> {} <span class=\"key top\"></span> {}</p>",
        headers[2], headers[4]
    );
    let mut columns = vec![tr(lang, "Month", "Mois")];
    columns.extend(headers);
    table_open(page, tr(lang, "By month", "Par mois"), &columns);
    for m in &figures.trend {
        let _ = writeln!(
            page,
            "<tr><th scope=\"row\" class=\"month\">{}</th>{}{}{}{}{}</tr>",
            escape(&m.month),
            td_count(lang, m.invitations),
            td_count(lang, m.responses),
            td_share(lang, m.response_rate),
            td_count(lang, m.opt_outs),
            td_share(lang, m.top_box)
        );
    }
    let s = &figures.summary;
    let _ = write!(
        page,
        "</tbody>\n<tfoot><tr><th scope=\"row\">{}</th>{}{}{}{}{}</tr></tfoot>\n</table>\n</div>\n</section>\n",
        tr(lang, "Total", "Total"),
        td_count(lang, s.invitations),
        td_count(lang, s.responses),
        td_share(lang, s.response_rate),
        td_count(lang, s.opt_outs),
        td_share(lang, s.top_box)
    );
}

mod questions;

#[cfg(test)]
mod tests;
