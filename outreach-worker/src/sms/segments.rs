//! How an SMS body is encoded and how many segments it takes (GSM 03.38).
//!
//! A body is GSM-7 when every character is in the basic set (one septet) or the extension
//! table (an escape and one septet: two); otherwise the whole body is UCS-2, counted in
//! UTF-16 code units. One segment holds 160 septets or 70 units; a concatenated message's
//! segments hold 153 or 67, and an escape pair or a surrogate pair is never split.

/// The encoding a body is sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The GSM 7-bit default alphabet.
    Gsm7,
    /// UCS-2 (UTF-16 on the wire).
    Ucs2,
}

/// The GSM 03.38 basic character set, in table order, without the escape (0x1B).
const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                     ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

/// The GSM 03.38 extension table: each costs two septets.
const EXTENSION: &str = "\u{0C}^{}\\[~]|€";

/// Septets `c` takes in GSM-7, or `None` when it is not in the alphabet.
fn septets(c: char) -> Option<usize> {
    if BASIC.contains(c) {
        Some(1)
    } else if EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// Packs units of the given sizes into segments: one of `single` when they all fit, else
/// as many of `multi` as needed, never splitting a unit. An empty body is one segment.
fn pack(sizes: impl Iterator<Item = usize> + Clone, single: usize, multi: usize) -> usize {
    if sizes.clone().sum::<usize>() <= single {
        return 1;
    }
    let (mut count, mut used) = (1, 0);
    for size in sizes {
        if used + size > multi {
            count += 1;
            used = 0;
        }
        used += size;
    }
    count
}

/// The encoding of `body` and how many segments it takes.
pub fn segments(body: &str) -> (Encoding, usize) {
    if body.chars().all(|c| septets(c).is_some()) {
        let sizes = body.chars().map(|c| septets(c).unwrap_or(1));
        (Encoding::Gsm7, pack(sizes, 160, 153))
    } else {
        (Encoding::Ucs2, pack(body.chars().map(char::len_utf16), 70, 67))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_set_has_128_characters_less_the_escape() {
        assert_eq!(BASIC.chars().count(), 127);
        assert_eq!(EXTENSION.chars().count(), 10);
    }

    #[test]
    fn english() {
        assert_eq!(segments(""), (Encoding::Gsm7, 1));
        assert_eq!(segments("Hi! Tell us about your visit: https://s.example/x"), (Encoding::Gsm7, 1));
        assert_eq!(segments(&"a".repeat(160)), (Encoding::Gsm7, 1));
        assert_eq!(segments(&"a".repeat(161)), (Encoding::Gsm7, 2));
        assert_eq!(segments(&"a".repeat(306)), (Encoding::Gsm7, 2));
        assert_eq!(segments(&"a".repeat(307)), (Encoding::Gsm7, 3));
    }

    #[test]
    fn extension_characters_count_two_and_are_not_split() {
        assert_eq!(segments(&"€".repeat(80)), (Encoding::Gsm7, 1));
        assert_eq!(segments(&"€".repeat(81)), (Encoding::Gsm7, 2));
        assert_eq!(segments(&format!("{}[", "a".repeat(159))), (Encoding::Gsm7, 2));
        // 152 septets, then a pair that would straddle the boundary: pushed to segment 2.
        let body = format!("{}{{{}", "a".repeat(152), "a".repeat(152));
        assert_eq!(segments(&body), (Encoding::Gsm7, 3));
        let body = format!("{}{{{}", "a".repeat(151), "a".repeat(151));
        assert_eq!(segments(&body), (Encoding::Gsm7, 2));
    }

    #[test]
    fn french_in_gsm7() {
        // é è à ù É Ç are in the basic set.
        let body =
            "Bonjour, votre visite s'est-elle bien passée ? Répondez ici : https://s.example/x À bientôt.";
        assert_eq!(segments(&body.replace("À bientôt", "Merci")), (Encoding::Gsm7, 1));
        assert_eq!(segments("Ça a été évalué à l'hôpital").0, Encoding::Ucs2, "ô is not GSM-7");
        assert_eq!(segments("Ça a été évalué où ?"), (Encoding::Gsm7, 1));
        assert_eq!(segments("ÉTÉ"), (Encoding::Gsm7, 1));
        // À (capital) is not in the basic set, only à.
        assert_eq!(segments(body).0, Encoding::Ucs2);
    }

    #[test]
    fn french_outside_gsm7() {
        for c in ['ê', 'â', 'î', 'ô', 'û', 'ë', 'ï', 'ç', 'œ', 'Œ', 'È', 'À', '«', '’'] {
            assert_eq!(segments(&format!("x{c}x")).0, Encoding::Ucs2, "{c}");
        }
    }

    #[test]
    fn ucs2_segments() {
        assert_eq!(segments(&"ê".repeat(70)), (Encoding::Ucs2, 1));
        assert_eq!(segments(&"ê".repeat(71)), (Encoding::Ucs2, 2));
        assert_eq!(segments(&"ê".repeat(134)), (Encoding::Ucs2, 2));
        assert_eq!(segments(&"ê".repeat(135)), (Encoding::Ucs2, 3));
        // An emoji is a surrogate pair: two units, never split.
        assert_eq!(segments(&"🙂".repeat(35)), (Encoding::Ucs2, 1));
        assert_eq!(segments(&format!("{}🙂", "ê".repeat(69))), (Encoding::Ucs2, 2));
        // 66 units, then a pair that would straddle the boundary: pushed to segment 2.
        assert_eq!(segments(&format!("{}🙂{}", "ê".repeat(66), "ê".repeat(66))), (Encoding::Ucs2, 3));
    }
}
