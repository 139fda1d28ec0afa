//! The built-in survey: a questionnaire read from TOML, and the check of a set of answers
//! against it.

use std::collections::HashSet;

use serde::Deserialize;

/// The two languages of the patient pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// English.
    En,
    /// French.
    Fr,
}

impl Lang {
    /// `en` or `fr`; anything else is none.
    pub fn parse(s: &str) -> Option<Lang> {
        match s {
            "en" => Some(Lang::En),
            "fr" => Some(Lang::Fr),
            _ => None,
        }
    }

    /// `en` or `fr`.
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Fr => "fr",
        }
    }

    /// The language a page's switch leads to.
    pub fn other(self) -> Lang {
        match self {
            Lang::En => Lang::Fr,
            Lang::Fr => Lang::En,
        }
    }
}

/// A text in both languages.
#[derive(Debug, Clone, Deserialize)]
pub struct Text {
    /// English.
    pub en: String,
    /// French.
    pub fr: String,
}

impl Text {
    /// The text in `lang`.
    pub fn get(&self, lang: Lang) -> &str {
        match lang {
            Lang::En => &self.en,
            Lang::Fr => &self.fr,
        }
    }

    fn plain(s: &str) -> Text {
        Text { en: s.to_string(), fr: s.to_string() }
    }
}

/// What kind of answer a question takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Always, often, sometimes, rarely, never.
    Frequency,
    /// Yes or no.
    YesNo,
    /// 0 to 10.
    Rating,
}

/// One option of a question.
#[derive(Debug, Clone, Deserialize)]
pub struct Choice {
    /// The id the answer is counted under.
    pub id: String,
    /// What the patient sees.
    pub label: Text,
}

/// One question.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Question {
    /// The id the answers are counted under.
    pub id: String,
    /// What kind of answer it takes.
    pub kind: Kind,
    /// The question.
    pub text: Text,
    /// Whether it must be answered.
    #[serde(default)]
    pub required: bool,
    /// The options in display order; generated from the kind when omitted.
    #[serde(default)]
    pub options: Vec<Choice>,
    /// The option ids that count as the "top box" in reports.
    #[serde(default)]
    pub top_box: Vec<String>,
}

/// A questionnaire.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Questionnaire {
    /// Its id, e.g. `primary-care-v1`.
    pub id: String,
    /// The page title.
    pub title: Text,
    /// The paragraph above the questions.
    pub intro: Text,
    /// The questions, in order.
    pub questions: Vec<Question>,
}

/// A questionnaire file is unusable; the message names the question or option.
#[derive(Debug, thiserror::Error)]
pub enum QuestionnaireError {
    /// Not TOML, or not of the expected shape.
    #[error("questionnaire does not parse: {0}")]
    Parse(String),
    /// Two questions share an id.
    #[error("question id {0:?} is used twice")]
    DuplicateQuestion(String),
    /// A question has two options with one id.
    #[error("question {question:?} has option {option:?} twice")]
    DuplicateOption {
        /// The question.
        question: String,
        /// The option.
        option: String,
    },
    /// An id is empty, too long, or has other characters than `[a-z0-9_-]`.
    #[error("id {0:?} must be 1-64 of a-z, 0-9, _ and -")]
    BadId(String),
    /// `top_box` names an option the question does not have.
    #[error("question {question:?}: top_box names unknown option {option:?}")]
    UnknownTopBox {
        /// The question.
        question: String,
        /// The option.
        option: String,
    },
    /// No questions at all.
    #[error("questionnaire has no questions")]
    Empty,
}

/// Why a set of answers was refused; each names the question (and option) at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// No such question.
    #[error("unknown question {0:?}")]
    UnknownQuestion(String),
    /// No such option for the question.
    #[error("question {question:?} has no option {option:?}")]
    UnknownOption {
        /// The question.
        question: String,
        /// The option given.
        option: String,
    },
    /// The question was answered twice.
    #[error("question {0:?} is answered more than once")]
    Duplicate(String),
    /// A required question was not answered.
    #[error("question {0:?} must be answered")]
    Missing(String),
}

/// The longest piece of input an error repeats.
const MAX_ECHO: usize = 64;

fn clip(s: &str) -> String {
    s.chars().take(MAX_ECHO).collect()
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn generated(kind: Kind) -> Vec<Choice> {
    let labelled =
        |id: &str, en: &str, fr: &str| Choice { id: id.into(), label: Text { en: en.into(), fr: fr.into() } };
    match kind {
        Kind::Frequency => vec![
            labelled("always", "Always", "Toujours"),
            labelled("often", "Often", "Souvent"),
            labelled("sometimes", "Sometimes", "Parfois"),
            labelled("rarely", "Rarely", "Rarement"),
            labelled("never", "Never", "Jamais"),
        ],
        Kind::YesNo => vec![labelled("yes", "Yes", "Oui"), labelled("no", "No", "Non")],
        Kind::Rating => {
            (0..=10).map(|n| Choice { id: n.to_string(), label: Text::plain(&n.to_string()) }).collect()
        }
    }
}

impl Questionnaire {
    /// Parses and checks a questionnaire; options omitted for a kind are generated.
    pub fn from_toml(text: &str) -> Result<Questionnaire, QuestionnaireError> {
        let mut q: Questionnaire =
            toml::from_str(text).map_err(|e| QuestionnaireError::Parse(e.to_string().replace('\n', " ")))?;
        if q.questions.is_empty() {
            return Err(QuestionnaireError::Empty);
        }
        let mut seen = HashSet::new();
        for question in &mut q.questions {
            if !valid_id(&question.id) {
                return Err(QuestionnaireError::BadId(clip(&question.id)));
            }
            if !seen.insert(question.id.clone()) {
                return Err(QuestionnaireError::DuplicateQuestion(question.id.clone()));
            }
            if question.options.is_empty() {
                question.options = generated(question.kind);
            }
            let mut options = HashSet::new();
            for choice in &question.options {
                if !valid_id(&choice.id) {
                    return Err(QuestionnaireError::BadId(clip(&choice.id)));
                }
                if !options.insert(choice.id.as_str()) {
                    return Err(QuestionnaireError::DuplicateOption {
                        question: question.id.clone(),
                        option: choice.id.clone(),
                    });
                }
            }
            if let Some(unknown) = question.top_box.iter().find(|id| !options.contains(id.as_str())) {
                return Err(QuestionnaireError::UnknownTopBox {
                    question: question.id.clone(),
                    option: unknown.clone(),
                });
            }
        }
        Ok(q)
    }

    /// The built-in primary-care questionnaire.
    pub fn builtin() -> Questionnaire {
        Questionnaire::from_toml(include_str!("../questionnaires/primary-care.toml"))
            .expect("the built-in questionnaire is tested to parse")
    }

    /// The question with this id.
    pub fn question(&self, id: &str) -> Option<&Question> {
        self.questions.iter().find(|q| q.id == id)
    }

    /// Checks answers given as (question id, option id) pairs; returns them in
    /// questionnaire order. Unanswered optional questions are fine.
    pub fn check_answers(&self, answers: &[(String, String)]) -> Result<Vec<(String, String)>, AnswerError> {
        let mut given: Vec<Option<&str>> = vec![None; self.questions.len()];
        for (question_id, option) in answers {
            let Some(at) = self.questions.iter().position(|q| q.id == *question_id) else {
                return Err(AnswerError::UnknownQuestion(clip(question_id)));
            };
            let question = &self.questions[at];
            if !question.options.iter().any(|c| c.id == *option) {
                return Err(AnswerError::UnknownOption {
                    question: question.id.clone(),
                    option: clip(option),
                });
            }
            if given[at].replace(option).is_some() {
                return Err(AnswerError::Duplicate(question.id.clone()));
            }
        }
        let mut accepted = Vec::new();
        for (question, answer) in self.questions.iter().zip(given) {
            match answer {
                Some(option) => accepted.push((question.id.clone(), option.to_string())),
                None if question.required => return Err(AnswerError::Missing(question.id.clone())),
                None => {}
            }
        }
        Ok(accepted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(q, o)| (q.to_string(), o.to_string())).collect()
    }

    #[test]
    fn the_builtin_questionnaire_is_complete() {
        let q = Questionnaire::builtin();
        assert!((7..=9).contains(&q.questions.len()));
        for question in &q.questions {
            assert!(!question.text.en.is_empty() && !question.text.fr.is_empty(), "{}", question.id);
            assert!(!question.top_box.is_empty(), "{}", question.id);
        }
        assert_eq!(q.question("overall").unwrap().options.len(), 11);
        assert!(q.questions.iter().any(|q| q.kind == Kind::YesNo));
        assert!(q.questions.iter().filter(|q| q.kind == Kind::Frequency).count() >= 4);
    }

    #[test]
    fn bad_questionnaires_name_the_fault() {
        let base = "id = \"x\"\ntitle = { en = \"t\", fr = \"t\" }\nintro = { en = \"i\", fr = \"i\" }\n";
        let question = |id: &str, top: &str| {
            format!(
                "[[questions]]\nid = \"{id}\"\nkind = \"yes_no\"\ntop_box = [\"{top}\"]\ntext = {{ en = \"q\", fr = \"q\" }}\n"
            )
        };
        let twice = format!("{base}{}{}", question("a", "yes"), question("a", "yes"));
        assert!(Questionnaire::from_toml(&twice).unwrap_err().to_string().contains("\"a\""));
        let unknown_top = format!("{base}{}", question("a", "maybe"));
        assert!(Questionnaire::from_toml(&unknown_top).unwrap_err().to_string().contains("maybe"));
        let bad_id = format!("{base}{}", question("A b", "yes"));
        assert!(Questionnaire::from_toml(&bad_id).unwrap_err().to_string().contains("A b"));
        assert!(matches!(Questionnaire::from_toml("id = "), Err(QuestionnaireError::Parse(_))));
        assert!(matches!(
            Questionnaire::from_toml(base),
            Err(QuestionnaireError::Parse(_) | QuestionnaireError::Empty)
        ));
    }

    #[test]
    fn answers_are_checked() {
        let q = Questionnaire::builtin();
        let ok = q.check_answers(&pairs(&[("overall", "9"), ("listened", "always")])).unwrap();
        assert_eq!(ok, pairs(&[("listened", "always"), ("overall", "9")]), "questionnaire order");
        assert_eq!(
            q.check_answers(&pairs(&[("nope", "yes"), ("overall", "9")])),
            Err(AnswerError::UnknownQuestion("nope".into()))
        );
        assert_eq!(
            q.check_answers(&pairs(&[("listened", "sideways"), ("overall", "9")])),
            Err(AnswerError::UnknownOption { question: "listened".into(), option: "sideways".into() })
        );
        assert_eq!(
            q.check_answers(&pairs(&[("overall", "9"), ("overall", "8")])),
            Err(AnswerError::Duplicate("overall".into()))
        );
        assert_eq!(
            q.check_answers(&pairs(&[("listened", "never")])),
            Err(AnswerError::Missing("overall".into()))
        );
    }

    #[test]
    fn odd_input_is_refused_without_echoing_it_whole() {
        let q = Questionnaire::builtin();
        let long = "q".repeat(10_000);
        match q.check_answers(&[(long, "x".into())]) {
            Err(AnswerError::UnknownQuestion(name)) => assert_eq!(name.len(), MAX_ECHO),
            other => panic!("{other:?}"),
        }
        for odd in ["", "\0", "über", "<script>", "1e9", "-1", " 9", "9 "] {
            assert!(q.check_answers(&[("overall".into(), odd.into())]).is_err(), "{odd:?}");
            assert!(q.check_answers(&[(odd.into(), "9".into())]).is_err(), "{odd:?}");
        }
    }
}
