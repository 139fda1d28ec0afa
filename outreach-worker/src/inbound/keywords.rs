//! Which replies are opt-outs: the whole message, once trimmed, upper-cased, stripped of
//! accents and of the punctuation around it, is one of Twilio's default opt-out words or
//! one of their French counterparts. "Stop." and " arrêt " are; "STOP ALL", "START",
//! "HELP" and "please stop texting me" are not (a person reads those, not the worker).

/// Twilio's default opt-out keywords, then the French ones, folded as [`fold`] folds.
pub const OPT_OUT: [&str; 14] = [
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "OPTOUT",
    "REVOKE",
    "ARRET",
    "ARRETER",
    "ARRETEZ",
    "DESABONNER",
    "DESINSCRIRE",
    "DESABONNEMENT",
];

/// Whether `body` is an opt-out.
pub fn is_opt_out(body: &str) -> bool {
    let folded = fold(body);
    OPT_OUT.contains(&folded.as_str())
}

/// `text` upper-cased, without accents (precomposed or combining), without the white space
/// and punctuation around it.
pub fn fold(text: &str) -> String {
    let folded: String = text
        .chars()
        .flat_map(char::to_uppercase)
        .filter(|c| !('\u{300}'..='\u{36f}').contains(c))
        .map(unaccent)
        .collect();
    folded.trim_matches(|c: char| !c.is_alphanumeric()).to_string()
}

/// An upper-case Latin letter without its accent.
fn unaccent(c: char) -> char {
    match c {
        'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å' => 'A',
        'Ç' => 'C',
        'È' | 'É' | 'Ê' | 'Ë' => 'E',
        'Ì' | 'Í' | 'Î' | 'Ï' => 'I',
        'Ñ' => 'N',
        'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' => 'O',
        'Ù' | 'Ú' | 'Û' | 'Ü' => 'U',
        'Ý' | 'Ÿ' => 'Y',
        other => other,
    }
}
