//! Account input, parsed once at the edge into types that cannot hold an invalid value
//! ("parse, don't validate"). Each `parse` returns a message fit for a `validation_failed` problem.

use secrecy::{ExposeSecret, SecretString};

/// A normalized email address: trimmed and lower-cased, so that `Ada@Example.com` and
/// `ada@example.com ` are one account (API contract: email is case-insensitive and trimmed).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let email = raw.trim().to_lowercase();
        if email.len() > 254 {
            return Err("must be at most 254 characters");
        }
        let Some((local, domain)) = email.rsplit_once('@') else {
            return Err("must be an email address like ada@example.com");
        };
        let valid_local = !local.is_empty() && local.len() <= 64 && !local.contains('@');
        let valid_domain = domain.contains('.')
            && !domain.starts_with(['.', '-'])
            && !domain.ends_with(['.', '-'])
            && !domain.contains("..")
            && domain
                .chars()
                .all(|c| c.is_alphanumeric() || c == '.' || c == '-');
        let no_spaces = !email.chars().any(|c| c.is_whitespace() || c.is_control());
        if valid_local && valid_domain && no_spaces {
            Ok(Self(email))
        } else {
            Err("must be an email address like ada@example.com")
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
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
