use proptest::prelude::*;

use super::{
    Params,
    keywords::{OPT_OUT, fold, is_opt_out},
    signature::{sign, verify},
};

fn pairs(params: &[(&str, &str)]) -> Vec<(String, String)> {
    params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Twilio's published example: this URL and these parameters, auth token 12345.
const EXAMPLE_URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

fn example(caller: &str) -> Vec<(String, String)> {
    pairs(&[
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", caller),
        ("Digits", "1234"),
        ("From", caller),
        ("To", "+18005551212"),
    ])
}

#[test]
fn twilios_published_examples_verify() {
    // The example as Twilio's security page gives it today, and as its helper libraries'
    // documentation gave it before.
    let cases =
        [("+12349013030", "0/KCTR6DLpKmkAf8muzZqo1nDgQ="), ("+14158675309", "RSOYDt4T1cUTdK1PDd93/VVr8B8=")];
    for (caller, expected) in cases {
        let params = example(caller);
        assert_eq!(sign("12345", EXAMPLE_URL, &params), expected);
        assert!(verify("12345", EXAMPLE_URL, &params, expected));
        // The order the parameters come in does not matter: they are sorted.
        let mut reversed = params.clone();
        reversed.reverse();
        assert!(verify("12345", EXAMPLE_URL, &reversed, expected));
    }
}

#[test]
fn anything_changed_breaks_the_signature() {
    let params = example("+12349013030");
    let good = "0/KCTR6DLpKmkAf8muzZqo1nDgQ=";
    assert!(!verify("12346", EXAMPLE_URL, &params, good), "another token");
    assert!(!verify("12345", "https://mycompany.com/myapp.php?foo=1&bar=3", &params, good), "another query");
    assert!(!verify("12345", "https://mycompany.com/myapp.php", &params, good), "no query");
    let mut other = params.clone();
    other[3].1 = "+12349013031".into();
    assert!(!verify("12345", EXAMPLE_URL, &other, good), "another From");
    let mut more = params.clone();
    more.push(("Body".into(), "STOP".into()));
    assert!(!verify("12345", EXAMPLE_URL, &more, good), "a parameter added");
    assert!(!verify("12345", EXAMPLE_URL, &params[1..], good), "a parameter left out");
    for bad in ["", "0/KCTR6DLpKmkAf8muzZqo1nDgQ", "not base64!", "0/KCTR6DLpKmkAf8muzZqo1nDgQ=0/KC"] {
        assert!(!verify("12345", EXAMPLE_URL, &params, bad), "{bad:?}");
    }
}

#[test]
fn repeated_parameters_are_signed_in_value_order() {
    let url = "https://worker.example/sms";
    let a = pairs(&[("MediaUrl", "b"), ("From", "+16139990100"), ("MediaUrl", "a")]);
    let b = pairs(&[("MediaUrl", "a"), ("MediaUrl", "b"), ("From", "+16139990100")]);
    assert_eq!(sign("t", url, &a), sign("t", url, &b));
    // Name then value, no delimiters: "From+16139990100MediaUrlaMediaUrlb".
    let swapped = pairs(&[("MediaUrl", "a"), ("MediaUrl", "c"), ("From", "+16139990100")]);
    assert_ne!(sign("t", url, &a), sign("t", url, &swapped));
}

#[test]
fn opt_out_words_in_english_and_french() {
    for word in OPT_OUT {
        assert!(is_opt_out(word), "{word}");
        assert!(is_opt_out(&word.to_lowercase()), "{word}");
    }
    for reply in [
        "Stop",
        " STOP\n",
        "stop.",
        "\"Stop!\"",
        "Arrêt.",
        "ARRÊT ",
        "arrêtez!",
        "Arre\u{302}ter",
        "Désabonner",
        "DÉSINSCRIRE",
        "désabonnement",
        "Unsubscribe",
        "optout?",
        "\u{a0}Quit\u{a0}",
    ] {
        assert!(is_opt_out(reply), "{reply:?}");
    }
    for reply in [
        "",
        "START",
        "HELP",
        "UNSTOP",
        "STOP ALL",
        "OPT OUT",
        "opt-out",
        "stopp",
        "please stop texting me",
        "Stop it, I'm at work",
        "Arrêt du traitement?",
        "s t o p",
        "STOP2",
    ] {
        assert!(!is_opt_out(reply), "{reply:?}");
    }
}

#[test]
fn folding_removes_case_accents_and_surrounding_punctuation_only() {
    assert_eq!(fold("  Désabonner!! "), "DESABONNER");
    assert_eq!(fold("«arrêtez»"), "ARRETEZ");
    assert_eq!(fold("opt-out"), "OPT-OUT");
    assert_eq!(fold("Ça va"), "CA VA");
}

#[test]
fn params_show_their_names_only() {
    let params = Params::new(pairs(&[("From", "+16139990141"), ("Body", "I have a rash")]));
    let shown = format!("{params:?}");
    assert_eq!(shown, r#"Params(["From", "Body"])"#);
}

proptest! {
    #[test]
    fn every_keyword_in_any_case_with_any_surrounding_punctuation_is_an_opt_out(
        index in 0..OPT_OUT.len(),
        upper in proptest::collection::vec(any::<bool>(), 16),
        before in "[ \t\n.,!?\"'()*-]{0,4}",
        after in "[ \t\n.,!?\"'()*-]{0,4}",
    ) {
        let word: String = OPT_OUT[index]
            .chars()
            .zip(upper.iter().cycle())
            .map(|(c, &up)| if up { c } else { c.to_ascii_lowercase() })
            .collect();
        let reply = format!("{before}{word}{after}");
        prop_assert!(is_opt_out(&reply), "{:?}", reply);
    }

    #[test]
    fn a_keyword_with_another_word_is_not_an_opt_out(
        index in 0..OPT_OUT.len(),
        other in "[A-Za-z0-9]{1,8}",
        first in any::<bool>(),
    ) {
        let word = OPT_OUT[index];
        let reply = if first { format!("{word} {other}") } else { format!("{other} {word}") };
        prop_assert!(!is_opt_out(&reply));
    }

    #[test]
    fn folding_never_panics(text in "\\PC{0,64}") {
        let _ = is_opt_out(&text);
    }
}
