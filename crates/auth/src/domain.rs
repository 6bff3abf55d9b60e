//! Account input, parsed once at the edge into types that cannot hold an invalid value
//! ("parse, don't validate"). Each `parse` returns a message fit for a `validation_failed` problem.

use secrecy::{ExposeSecret, SecretString};
use unicode_normalization::UnicodeNormalization;

/// A normalized email address, the identity of an account: two spellings that a person could
/// not tell apart must be one account. So the address is trimmed, put in Unicode NFKC (fullwidth
/// letters become ASCII, decomposed accents compose) and lower-cased (API contract: email is
/// case-insensitive and trimmed); its domain is in IDNA ASCII (punycode) form, so `bücher.example`
/// and `xn--bcher-kva.example` are one domain. Invisible characters and look-alikes that would
/// make a second account look like someone else's are refused: see `docs/security.md`, "Email
/// identity". A plain ASCII address normalizes as it always did: trimmed and lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

const NOT_AN_EMAIL: &str = "must be an email address like ada@example.com";

impl Email {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let raw = raw.trim();
        if raw.chars().any(is_invisible) {
            return Err("must not contain invisible or control characters");
        }
        // Lower-casing can leave a string that is no longer in NFKC (rarely), so normalize again.
        let email: String = raw
            .nfkc()
            .collect::<String>()
            .to_lowercase()
            .nfkc()
            .collect();
        let Some((local, domain)) = email.rsplit_once('@') else {
            return Err(NOT_AN_EMAIL);
        };
        let valid_local = !local.is_empty() && local.len() <= 64 && !local.contains('@');
        let no_spaces = !email.chars().any(|c| c.is_whitespace() || c.is_control());
        if !(valid_local && no_spaces) {
            return Err(NOT_AN_EMAIL);
        }
        if !is_single_script(local) {
            return Err(MIXED_SCRIPTS);
        }
        let domain = ascii_domain(domain)?;
        let email = format!("{local}@{domain}");
        if email.len() > 254 {
            return Err("must be at most 254 characters");
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

const MIXED_SCRIPTS: &str =
    "must not mix alphabets, like Latin letters with Cyrillic or Greek look-alikes";

/// Characters that show as nothing, or change how their neighbours show, and so would make two
/// addresses that look the same: controls (Cc), format characters (Cf: zero-width spaces and
/// joiners, the soft hyphen, bidirectional controls) and the other default-ignorable code points
/// (variation selectors, Hangul fillers).
fn is_invisible(c: char) -> bool {
    use icu_properties::props::{DefaultIgnorableCodePoint, GeneralCategory};
    use icu_properties::{CodePointMapData, CodePointSetData};
    matches!(
        CodePointMapData::<GeneralCategory>::new().get(c),
        GeneralCategory::Control | GeneralCategory::Format
    ) || CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c)
}

/// Whether `text` keeps to one script, as UTS 39 "Highly Restrictive" (section 5.2) defines
/// it: characters common to all scripts (digits, punctuation) and combining marks do not count,
/// and the CJK mixtures that writing Japanese, Chinese or Korean needs (with or without Latin)
/// count as one. Latin with Cyrillic or Greek does not, as those are where the look-alikes are.
fn is_single_script(text: &str) -> bool {
    use icu_properties::CodePointMapData;
    use icu_properties::props::Script;
    let scripts = CodePointMapData::<Script>::new();
    let mut used: Vec<Script> = Vec::new();
    for c in text.chars() {
        let script = scripts.get(c);
        if !matches!(script, Script::Common | Script::Inherited) && !used.contains(&script) {
            used.push(script);
        }
    }
    if used.len() <= 1 {
        return true;
    }
    let allowed_mixtures: [&[Script]; 3] = [
        &[
            Script::Latin,
            Script::Han,
            Script::Hiragana,
            Script::Katakana,
        ],
        &[Script::Latin, Script::Han, Script::Bopomofo],
        &[Script::Latin, Script::Han, Script::Hangul],
    ];
    allowed_mixtures
        .iter()
        .any(|mixture| used.iter().all(|script| mixture.contains(script)))
}

/// The domain in IDNA (UTS 46) ASCII form, lower-case, holding only letters, digits, hyphens and
/// dots, with at least two labels; each label must keep to one script once decoded, so that a
/// punycode spelling cannot bring in a look-alike the Unicode one would be refused for.
fn ascii_domain(domain: &str) -> Result<String, &'static str> {
    let ascii = idna::domain_to_ascii_cow(domain.as_bytes(), idna::AsciiDenyList::STD3)
        .map_err(|_| NOT_AN_EMAIL)?
        .to_ascii_lowercase();
    let valid = ascii.contains('.')
        && !ascii.starts_with(['.', '-'])
        && !ascii.ends_with(['.', '-'])
        && !ascii.contains("..")
        && ascii
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    if !valid {
        return Err(NOT_AN_EMAIL);
    }
    if ascii.split('.').any(|label| label.starts_with("xn--")) {
        let (unicode, decoded) = idna::domain_to_unicode(&ascii);
        if decoded.is_err() {
            return Err(NOT_AN_EMAIL);
        }
        if !unicode.split('.').all(is_single_script) {
            return Err(MIXED_SCRIPTS);
        }
    }
    Ok(ascii)
}

/// A phone number in E.164 form: `+` and 8 to 15 digits. Spaces, dashes, dots and parentheses
/// are accepted on input and dropped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Phone(String);

impl Phone {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let compact: String = raw
            .trim()
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
            .collect();
        let Some(digits) = compact.strip_prefix('+') else {
            return Err("must start with + and the country code, e.g. +84901234567");
        };
        if (8..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit()) {
            Ok(Self(compact))
        } else {
            Err("must be + followed by 8 to 15 digits")
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password of 8 to 128 characters, kept secret (never logged, zeroized on drop).
pub struct Password(SecretString);

impl Password {
    pub const MIN_CHARS: usize = 8;
    pub const MAX_CHARS: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let chars = raw.chars().count();
        if chars < Self::MIN_CHARS {
            Err("must be at least 8 characters")
        } else if chars > Self::MAX_CHARS {
            Err("must be at most 128 characters")
        } else {
            Ok(Self(SecretString::from(raw.to_owned())))
        }
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(**redacted**)")
    }
}

/// A person's name as they want it shown: 1 to 200 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullName(String);

impl FullName {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let name = raw.trim();
        if name.is_empty() {
            Err("must not be empty")
        } else if name.chars().count() > 200 {
            Err("must be at most 200 characters")
        } else if name.chars().any(char::is_control) {
            Err("must not contain control characters")
        } else {
            Ok(Self(name.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How a user identifies themselves at login: an email address or a phone number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    Email(Email),
    Phone(Phone),
}

impl Login {
    /// Anything starting with `+` is a phone number; everything else is an email address.
    /// Input that is neither is still a (never matching) identity: login answers
    /// `invalid_credentials` for it, without saying which part was wrong.
    pub fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        if raw.starts_with('+') {
            Phone::parse(raw).ok().map(Login::Phone)
        } else {
            Email::parse(raw).ok().map(Login::Email)
        }
    }

    /// The key that failed-login throttling counts under when the login names no account.
    pub fn throttle_key(&self) -> String {
        match self {
            Login::Email(email) => format!("login:{}", email.as_str()),
            Login::Phone(phone) => format!("login:{}", phone.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lowercased() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").unwrap().as_str(),
            "ada@example.com"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a da@example.com",
            "ada@.com",
            "ada@exa..mple.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    /// The one account `ada@bücher.example` is, however it is spelled.
    const ADA: &str = "ada@xn--bcher-kva.example";

    fn parsed(raw: &str) -> String {
        Email::parse(raw)
            .unwrap_or_else(|message| panic!("{raw:?} refused: {message}"))
            .as_str()
            .to_owned()
    }

    #[test]
    fn plain_ascii_emails_keep_their_old_normal_form() {
        // What the store holds for every account registered before NFKC and IDNA: trimmed and
        // lower-cased, nothing more. Logins by these must find the same rows.
        for (raw, stored) in [
            (
                "  Ada.Lovelace+tickets@Example.COM ",
                "ada.lovelace+tickets@example.com",
            ),
            (
                "o'neil_99@sub-domain.example.co.uk",
                "o'neil_99@sub-domain.example.co.uk",
            ),
            ("x@a--b.example", "x@a--b.example"),
            ("1@2.example", "1@2.example"),
        ] {
            assert_eq!(parsed(raw), stored);
        }
    }

    #[test]
    fn unicode_and_punycode_domains_are_one_domain() {
        assert_eq!(parsed("ada@bücher.example"), ADA);
        assert_eq!(parsed("ada@xn--bcher-kva.example"), ADA);
        assert_eq!(parsed("Ada@BÜCHER.Example"), ADA);
        assert_eq!(parsed("ADA@XN--BCHER-KVA.EXAMPLE"), ADA);
        // Broken punycode is no domain at all.
        assert!(Email::parse("ada@xn--zz--.example").is_err());
    }

    #[test]
    fn nfd_and_nfc_are_one_address() {
        let nfc = "jos\u{e9}@b\u{fc}cher.example";
        let nfd = "jose\u{301}@bu\u{308}cher.example";
        assert_ne!(nfc, nfd);
        assert_eq!(parsed(nfd), parsed(nfc));
        assert_eq!(parsed(nfc), "jos\u{e9}@xn--bcher-kva.example");
    }

    #[test]
    fn fullwidth_letters_are_their_ascii_selves() {
        assert_eq!(
            parsed("\u{ff41}\u{ff44}\u{ff41}@example.com"),
            "ada@example.com"
        );
        assert_eq!(parsed("ada\u{ff20}example\u{ff0e}com"), "ada@example.com");
        assert_eq!(parsed("ada@\u{ff25}xample.com"), "ada@example.com");
    }

    #[test]
    fn invisible_characters_are_refused() {
        for invisible in [
            '\u{200b}',  // zero-width space
            '\u{200c}',  // zero-width non-joiner
            '\u{200d}',  // zero-width joiner
            '\u{2060}',  // word joiner
            '\u{feff}',  // zero-width no-break space (BOM)
            '\u{ad}',    // soft hyphen
            '\u{202e}',  // right-to-left override
            '\u{2066}',  // left-to-right isolate
            '\u{200f}',  // right-to-left mark
            '\u{61c}',   // Arabic letter mark
            '\u{180e}',  // Mongolian vowel separator
            '\u{fe0f}',  // variation selector (default-ignorable, not Cf)
            '\u{3164}',  // Hangul filler (default-ignorable, shows as a blank)
            '\u{e0061}', // tag letter
            '\u{7}',     // bell (Cc)
            '\u{85}',    // next line (Cc)
        ] {
            for raw in [
                format!("a{invisible}da@example.com"),
                format!("ada@exa{invisible}mple.com"),
            ] {
                assert_eq!(
                    Email::parse(&raw),
                    Err("must not contain invisible or control characters"),
                    "{raw:?}"
                );
            }
        }
    }

    #[test]
    fn local_parts_mixing_latin_with_cyrillic_or_greek_are_refused() {
        for raw in [
            "\u{430}da@example.com",       // Cyrillic a, then Latin
            "ad\u{430}@example.com",       // Latin, then Cyrillic a
            "p\u{430}ypal@example.com",    // one look-alike in the middle
            "\u{3bf}liver@example.com",    // Greek omicron
            "ada.\u{3b1}@example.com",     // Greek alpha after a dot
            "ad\u{430}@ex\u{430}mple.com", // and in the domain
        ] {
            assert_eq!(Email::parse(raw), Err(MIXED_SCRIPTS), "{raw:?}");
        }
        // A domain label with a Cyrillic a, in Unicode or in punycode.
        let unicode = "ada@ex\u{430}mple.com";
        assert_eq!(Email::parse(unicode), Err(MIXED_SCRIPTS));
        let punycode = idna::domain_to_ascii("ex\u{430}mple.com").unwrap();
        assert_eq!(Email::parse(&format!("ada@{punycode}")), Err(MIXED_SCRIPTS));
    }

    #[test]
    fn one_script_and_the_cjk_mixtures_are_accepted() {
        for raw in [
            "\u{430}\u{434}\u{430}@example.com",              // all Cyrillic
            "\u{3b1}\u{3b8}\u{3b7}\u{3bd}\u{3ac}@example.gr", // all Greek
            "\u{5c71}\u{7530}\u{305f}\u{308d}\u{3046}@example.jp", // Han + Hiragana
            "tanaka.\u{30bf}\u{30ed}\u{30a6}@example.jp",     // Latin + Katakana
            "kim\u{d55c}@example.kr",                         // Latin + Hangul
            "ada-1990@example.com",                           // digits and punctuation
        ] {
            assert!(Email::parse(raw).is_ok(), "{raw:?} should be accepted");
        }
    }

    #[test]
    fn phones_are_e164_ish() {
        assert_eq!(
            Phone::parse("+84 90-123-4567").unwrap().as_str(),
            "+84901234567"
        );
        for bad in [
            "84901234567",
            "+1234567",
            "+1234567890123456",
            "+84abc1234567",
        ] {
            assert!(Phone::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn passwords_count_characters_not_bytes() {
        assert!(Password::parse("1234567").is_err());
        assert!(Password::parse("12345678").is_ok());
        assert!(Password::parse(&"é".repeat(128)).is_ok());
        assert!(Password::parse(&"x".repeat(129)).is_err());
        assert_eq!(
            format!("{:?}", Password::parse("hunter2hunter2").unwrap()),
            "Password(**redacted**)"
        );
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(FullName::parse("  Ada L ").unwrap().as_str(), "Ada L");
        assert!(FullName::parse("   ").is_err());
        assert!(FullName::parse(&"x".repeat(201)).is_err());
        assert!(FullName::parse("Ada\u{0}").is_err());
    }

    #[test]
    fn logins_are_phone_when_they_start_with_plus() {
        assert!(matches!(
            Login::parse("+84901234567"),
            Some(Login::Phone(_))
        ));
        assert!(matches!(
            Login::parse("Ada@example.com"),
            Some(Login::Email(_))
        ));
        assert_eq!(Login::parse("nobody"), None);
    }
}
