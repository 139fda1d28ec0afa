//! The per-question parts of the page: the top boxes compared across populations, then
//! each question's distribution.

use std::fmt::Write;

use super::super::model::{Cell, Figures, Level, QuestionFigures, Report};
use super::super::svg::{self, Bar, Group};
use super::{population, share_text, table_open, td_count, td_share, tr};
use crate::html::escape;
use crate::questionnaire::{Lang, Question, Questionnaire};

fn question_text(question: Option<&Question>, id: &str, lang: Lang) -> String {
    question.map_or_else(|| id.to_string(), |q| q.text.get(lang).to_string())
}

pub(super) fn comparison(
    page: &mut String,
    report: &Report,
    figures: &Figures,
    q: &Questionnaire,
    lang: Lang,
    top_h: &str,
) {
    let with_top_box: Vec<(usize, &QuestionFigures)> =
        figures.questions.iter().enumerate().filter(|(_, f)| f.top_box.is_some()).collect();
    if with_top_box.is_empty() {
        return;
    }
    let mut populations = vec![(report.level, true)];
    populations.extend(report.compared_with.iter().map(|&level| (level, false)));
    let cells = |f: &QuestionFigures| -> Vec<Cell<f64>> {
        populations
            .iter()
            .filter_map(|&(level, ours)| match (ours, level) {
                (true, _) => f.top_box,
                (false, Level::Site) => f.site_top_box,
                (false, _) => f.all_top_box,
            })
            .collect()
    };
    let _ = writeln!(
        page,
        "<section>\n<h2>{}</h2>",
        tr(lang, "Top box by question", "Réponses favorables par question")
    );
    let classes = ["top", "site", "all"];
    let groups: Vec<Group> = with_top_box
        .iter()
        .map(|&(i, f)| Group {
            heading: Some(format!("{}. {}", i + 1, question_text(q.question(&f.id), &f.id, lang))),
            bars: populations
                .iter()
                .zip(cells(f))
                .zip(classes)
                .map(|((&(level, ours), cell), class)| Bar {
                    label: population(lang, level, ours).to_string(),
                    share: cell.shown(),
                    class,
                    text: share_text(lang, cell),
                })
                .collect(),
        })
        .collect();
    let desc: Vec<String> = groups
        .iter()
        .map(|g| {
            let bars: Vec<String> = g.bars.iter().map(|b| format!("{} {}", b.label, b.text)).collect();
            format!("{}: {}", g.heading.as_deref().unwrap_or_default(), bars.join(", "))
        })
        .collect();
    page.push_str(&svg::bar_chart("chart-compare", top_h, &desc.join("; "), &groups));
    let mut columns = vec![tr(lang, "Question", "Question"), tr(lang, "Answered", "Ont répondu")];
    columns.extend(populations.iter().map(|&(level, ours)| population(lang, level, ours)));
    table_open(page, top_h, &columns);
    for &(i, f) in &with_top_box {
        let _ = write!(
            page,
            "<tr><th scope=\"row\" class=\"question\">{}. {}</th>{}",
            i + 1,
            escape(&question_text(q.question(&f.id), &f.id, lang)),
            td_count(lang, f.answered)
        );
        for cell in cells(f) {
            page.push_str(&td_share(lang, cell));
        }
        page.push_str("</tr>\n");
    }
    page.push_str("</tbody>\n</table>\n</div>\n</section>\n");
}

pub(super) fn question(
    page: &mut String,
    i: usize,
    f: &QuestionFigures,
    question: Option<&Question>,
    lang: Lang,
    top_h: &str,
) {
    let text = format!("{}. {}", i + 1, question_text(question, &f.id, lang));
    let _ = writeln!(page, "<article class=\"question\">\n<h3>{}</h3>", escape(&text));
    let label = |id: &str| {
        question
            .and_then(|q| q.options.iter().find(|c| c.id == id))
            .map_or_else(|| id.to_string(), |c| c.label.get(lang).to_string())
    };
    let bars: Vec<Bar> = f
        .options
        .iter()
        .map(|o| Bar {
            label: label(&o.id),
            share: o.share.shown(),
            class: if o.top_box { "top" } else { "rest" },
            text: share_text(lang, o.share),
        })
        .collect();
    let desc: Vec<String> = bars.iter().map(|b| format!("{} {}", b.label, b.text)).collect();
    let id = format!("chart-q{}", i + 1);
    page.push_str(&svg::bar_chart(&id, &text, &desc.join(", "), &[Group { heading: None, bars }]));
    let columns =
        [tr(lang, "Answer", "Réponse"), tr(lang, "Count", "Nombre"), tr(lang, "Share", "Proportion")];
    table_open(page, &text, &columns);
    for o in &f.options {
        let mark = if o.top_box { " class=\"top\"" } else { "" };
        let _ = writeln!(
            page,
            "<tr{mark}><th scope=\"row\">{}</th>{}{}</tr>",
            escape(&label(&o.id)),
            td_count(lang, o.count),
            td_share(lang, o.share)
        );
    }
    let _ = write!(
        page,
        "</tbody>\n<tfoot><tr><th scope=\"row\">{}</th>{}<td></td></tr></tfoot>\n</table>\n</div>\n",
        tr(lang, "Answered", "Ont répondu"),
        td_count(lang, f.answered)
    );
    if let Some(cell) = f.top_box {
        let options: Vec<String> = f.options.iter().filter(|o| o.top_box).map(|o| label(&o.id)).collect();
        let _ = writeln!(
            page,
            "<p class=\"top-box\">{top_h} ({}){} <strong>{}</strong></p>",
            escape(&options.join(", ")),
            tr(lang, ":", "\u{a0}:"),
            escape(&share_text(lang, cell))
        );
    }
    page.push_str("</article>\n");
}
