//! The built-in survey's form (`POST /s/{guid}/survey`): the urlencoded body is decoded as
//! axum's `Form` decodes it, sorted into token, language and answers
//! (`survey_bridge::pages::SurveyForm`), the token checked (never accepted unless it is the
//! link's own) and the answers checked against the questionnaire.
//!
//! Input: a flags byte (1: put the link's right token first, 2: then change one character
//! of it), then the form body.
#![no_main]

#[path = "common/mod.rs"]
mod common;

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use survey_bridge::{keys::Keys, pages::SurveyForm, questionnaire::Questionnaire};
use zeroize::Zeroizing;

static QUESTIONNAIRE: LazyLock<Questionnaire> = LazyLock::new(Questionnaire::builtin);
static KEYS: LazyLock<Keys> = LazyLock::new(|| Keys::derive(&Zeroizing::new([7u8; 32])));
const LINK: &str = "00000000000000000000000000000000000000000000000000000000000000aa";

fuzz_target!(|data: &[u8]| {
    let Some((&flags, body)) = data.split_first() else { return };
    let Ok(mut fields) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(body) else { return };
    let right = KEYS.csrf(LINK, "survey");
    if flags & 1 != 0 {
        let mut token = right.clone();
        if flags & 2 != 0 {
            let at = usize::from(flags >> 2) % token.len();
            let changed = if &token[at..=at] == "0" { "1" } else { "0" };
            token.replace_range(at..=at, changed);
        }
        fields.insert(0, ("csrf".into(), token));
    }
    let form = SurveyForm::from_fields(fields.clone());

    let last = |name: &str| fields.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    assert_eq!(form.csrf, last("csrf").unwrap_or_default(), "the last token counts");
    assert_eq!(form.lang, last("lang"), "the last language counts");
    assert_eq!(form.switch, last("switch"), "the last switch counts");
    let rest: Vec<_> =
        fields.iter().filter(|(n, _)| !matches!(n.as_str(), "csrf" | "lang" | "switch")).cloned().collect();
    assert_eq!(form.answers, rest, "every other field is an answer, in order");

    let accepted = KEYS.csrf_ok(LINK, "survey", &form.csrf);
    assert_eq!(accepted, form.csrf.eq_ignore_ascii_case(&right), "only the link's own token");
    assert!(!(accepted && KEYS.csrf_ok(LINK, "consent", &form.csrf)), "a token has one purpose");

    common::check_answers(&QUESTIONNAIRE, &form.answers);
});
