//! Admission tokens: what a waiting room gives the people it admits, and what a booking or a
//! hold for the room's concert must carry (`Boxoffice-Admission`).
//!
//! A token is the unpadded base64url of 65 bytes:
//!
//! | bytes | what |
//! | ----- | ---- |
//! | 0     | the format version, `1` |
//! | 1–16  | the concert id |
//! | 17–32 | the user id |
//! | 33–40 | the admission time, milliseconds since the epoch, big-endian |
//! | 41–48 | the end of its validity, the same way |
//! | 49–64 | the first 16 bytes of HMAC-SHA-256 of bytes 0–48 |
//!
//! The key is derived from the deployment's ticket key ([`crate::ticket::TicketKeys`]), which
//! every Booking instance shares, so any instance checks a token another gave, with no lookup.
//! The token is the same for as long as the admission lasts (it holds nothing random). Whether
//! it was used up is not in the token: the store answers that (a booking or hold of the user
//! for the concert made since the admission time).

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use boxoffice_shared::clock::{from_millis, to_millis};
use time::OffsetDateTime;
use uuid::Uuid;

const VERSION: u8 = 1;
const SIGNED: usize = 49;
const TAG: usize = 16;

/// What a valid token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    pub concert_id: Uuid,
    pub user_id: Uuid,
    pub admitted_at: OffsetDateTime,
    pub until: OffsetDateTime,
}

/// Why a token does not admit: each is the same `admission_required` to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Malformed,
    Forged,
    OtherUser,
    OtherConcert,
    Expired,
}

/// Signs and checks admission tokens.
#[derive(Clone)]
pub struct AdmissionKey(hmac::Key);

impl std::fmt::Debug for AdmissionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdmissionKey")
    }
}

impl AdmissionKey {
    /// A key of these secret bytes.
    pub fn new(secret: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// The token of `admission`.
    pub fn sign(&self, admission: &Admission) -> String {
        let mut bytes = Vec::with_capacity(SIGNED + TAG);
        bytes.push(VERSION);
        bytes.extend_from_slice(admission.concert_id.as_bytes());
        bytes.extend_from_slice(admission.user_id.as_bytes());
        bytes.extend_from_slice(&to_millis(admission.admitted_at).to_be_bytes());
        bytes.extend_from_slice(&to_millis(admission.until).to_be_bytes());
        let tag = hmac::sign(&self.0, &bytes);
        bytes.extend_from_slice(&tag.as_ref()[..TAG]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// What `token` admits, if it admits `user_id` to `concert_id` at `now`.
    pub fn check(
        &self,
        token: &str,
        user_id: Uuid,
        concert_id: Uuid,
        now: OffsetDateTime,
    ) -> Result<Admission, Refused> {
        let admission = self.open(token)?;
        if admission.concert_id != concert_id {
            return Err(Refused::OtherConcert);
        }
        if admission.user_id != user_id {
            return Err(Refused::OtherUser);
        }
        if now >= admission.until {
            return Err(Refused::Expired);
        }
        Ok(admission)
    }

    /// The admission `token` carries, if this key signed it.
    fn open(&self, token: &str) -> Result<Admission, Refused> {
        if token.len() > 100 {
            return Err(Refused::Malformed);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| Refused::Malformed)?;
        if bytes.len() != SIGNED + TAG || bytes[0] != VERSION {
            return Err(Refused::Malformed);
        }
        let (signed, tag) = bytes.split_at(SIGNED);
        let expected = hmac::sign(&self.0, signed);
        aws_lc_rs::constant_time::verify_slices_are_equal(&expected.as_ref()[..TAG], tag)
            .map_err(|_| Refused::Forged)?;
        let id = |at: usize| Uuid::from_slice(&signed[at..at + 16]).map_err(|_| Refused::Malformed);
        let millis = |at: usize| {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&signed[at..at + 8]);
            from_millis(i64::from_be_bytes(raw))
        };
        Ok(Admission {
            concert_id: id(1)?,
            user_id: id(17)?,
            admitted_at: millis(33),
            until: millis(41),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn admission() -> Admission {
        Admission {
            concert_id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            admitted_at: datetime!(2027-01-01 10:00 UTC),
            until: datetime!(2027-01-01 10:10 UTC),
        }
    }

    #[test]
    fn a_token_admits_its_user_to_its_concert_until_it_expires() {
        let key = AdmissionKey::new(b"key");
        let made = admission();
        let token = key.sign(&made);
        let during = datetime!(2027-01-01 10:05 UTC);
        assert_eq!(
            key.check(&token, made.user_id, made.concert_id, during),
            Ok(made)
        );
        assert_eq!(
            key.check(&token, Uuid::now_v7(), made.concert_id, during),
            Err(Refused::OtherUser)
        );
        assert_eq!(
            key.check(&token, made.user_id, Uuid::now_v7(), during),
            Err(Refused::OtherConcert)
        );
        assert_eq!(
            key.check(&token, made.user_id, made.concert_id, made.until),
            Err(Refused::Expired)
        );
    }

    #[test]
    fn a_token_of_another_key_or_altered_is_refused() {
        let made = admission();
        let token = AdmissionKey::new(b"other").sign(&made);
        let key = AdmissionKey::new(b"key");
        let during = datetime!(2027-01-01 10:05 UTC);
        assert_eq!(
            key.check(&token, made.user_id, made.concert_id, during),
            Err(Refused::Forged)
        );
        let mut longer = made;
        longer.until = datetime!(2027-01-02 10:00 UTC);
        let genuine = key.sign(&made);
        let forged = format!("{}{}", &key.sign(&longer)[..66], &genuine[66..]);
        assert_eq!(
            key.check(&forged, made.user_id, made.concert_id, during),
            Err(Refused::Forged)
        );
        for junk in ["", "abc", "!!!!", &"A".repeat(200)] {
            assert_eq!(
                key.check(junk, made.user_id, made.concert_id, during),
                Err(Refused::Malformed)
            );
        }
    }
}
