//! What several targets check: a set of answers against a questionnaire.

use survey_bridge::questionnaire::{AnswerError, Questionnaire};

/// The longest piece of input an answer error may repeat, in characters.
const MAX_ECHO: usize = 64;

/// Checks `given` against `questionnaire`, and what came back: an accepted set holds every
/// pair given, each a question's own option, once per question, in questionnaire order,
/// every required question answered, and is accepted again unchanged; a refusal names a
/// pair that is wrong and repeats at most 64 characters of it.
pub fn check_answers(questionnaire: &Questionnaire, given: &[(String, String)]) {
    let position = |id: &str| questionnaire.questions.iter().position(|q| q.id == id);
    match questionnaire.check_answers(given) {
        Ok(accepted) => {
            assert_eq!(accepted.len(), given.len(), "every pair given is kept");
            let mut last = None;
            for pair in &accepted {
                let at = position(&pair.0).expect("an accepted question exists");
                assert!(last.is_none_or(|last| last < at), "questionnaire order, each once");
                last = Some(at);
                assert!(questionnaire.questions[at].options.iter().any(|c| c.id == pair.1));
                assert!(given.contains(pair), "an accepted pair was given");
            }
            for question in questionnaire.questions.iter().filter(|q| q.required) {
                assert!(accepted.iter().any(|(id, _)| *id == question.id), "required {}", question.id);
            }
            assert_eq!(questionnaire.check_answers(&accepted).as_ref(), Ok(&accepted), "idempotent");
        }
        Err(AnswerError::UnknownQuestion(echo)) => {
            assert!(echo.chars().count() <= MAX_ECHO);
            assert!(given.iter().any(|(q, _)| q.starts_with(&echo) && position(q).is_none()));
        }
        Err(AnswerError::UnknownOption { question, option }) => {
            assert!(option.chars().count() <= MAX_ECHO);
            let at = position(&question).expect("the question exists");
            assert!(given.iter().any(|(q, o)| *q == question
                && o.starts_with(&option)
                && !questionnaire.questions[at].options.iter().any(|c| c.id == *o)));
        }
        Err(AnswerError::Duplicate(question)) => {
            assert!(given.iter().filter(|(q, _)| *q == question).count() >= 2);
        }
        Err(AnswerError::Missing(question)) => {
            let at = position(&question).expect("the question exists");
            assert!(questionnaire.questions[at].required);
            assert!(!given.iter().any(|(q, _)| *q == question));
        }
    }
}
