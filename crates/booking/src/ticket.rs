//! Tickets: the code of a confirmed booking, signed with the deployment's ticket key, so that a
//! door can tell a real ticket from a forged one with nothing but the public key.
//!
//! A code is the unpadded base64url (RFC 4648 §5) of 113 bytes:
//!
//! | bytes   | what |
//! | ------- | ---- |
//! | 0       | the format version, `2` |
//! | 1–16    | the booking id (the UUID's 16 bytes) |
//! | 17–32   | the concert id |
//! | 33–96   | the Ed25519 signature (RFC 8032) of bytes 0–32 |
//! | 97–112  | the first 16 bytes of HMAC-SHA-256 of bytes 0–96, keyed by the deployment |
//!
//! 151 characters, URL-safe, the same for as long as the booking exists (Ed25519 signatures are
//! deterministic). A scanner that holds only the public key verifies the signature (bytes 0–96)
//! and ignores the rest; the deployment itself checks the tag, which only it can make — a
//! microsecond against the tens of an Ed25519 operation, at the door's busiest moment. The tag
//! key is derived from the ticket key (the key's deterministic signature of a fixed label), so
//! every instance that shares the key file shares it, and nothing else need be kept.
//!
//! Codes of the first format (version `1`: the 97 bytes above without the tag, 130 characters)
//! stay tickets: the deployment signs their 33 bytes again and compares.
//!
//! The code says nothing about whether the booking still stands: a cancelled booking's code
//! verifies and is refused at the door by the store ([`crate::store`]).
//!
//! The key is kept like the token key: generated once into the data directory
//! (`ticket-ed25519.pem`), or given as a PKCS#8 PEM file (`--ticket-key-file`,
//! `BOXOFFICE_TICKET_KEY_FILE`), which every Booking instance of a split deployment must share.

use std::path::Path;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::hmac;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use boxoffice_shared::keys::{KeyOrigin, ed25519_pair, ed25519_pem, public_key_pem};
use uuid::Uuid;

/// The file, inside the data directory, that holds a generated ticket key.
pub const GENERATED_TICKET_KEY_FILE: &str = "ticket-ed25519.pem";

/// The format version, the code's first byte.
const VERSION: u8 = 2;
/// The first format's version: signed, without the tag.
const VERSION_1: u8 = 1;
/// Version, booking id, concert id: what is signed.
const SIGNED_LEN: usize = 1 + 16 + 16;
const SIGNATURE_LEN: usize = 64;
/// What the tag covers: the signed bytes and the signature.
const TAGGED_LEN: usize = SIGNED_LEN + SIGNATURE_LEN;
const TAG_LEN: usize = 16;
const CODE_BYTES: usize = TAGGED_LEN + TAG_LEN;
/// The length of every code, in characters.
pub const CODE_LEN: usize = (CODE_BYTES * 4).div_ceil(3);
/// The length of a code of the first format.
const CODE_1_LEN: usize = (TAGGED_LEN * 4).div_ceil(3);
/// What the ticket key signs to make the tag key.
const TAG_KEY_LABEL: &[u8] = b"boxoffice ticket code tag key, version 2";

/// What a genuine code says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TicketClaim {
    pub booking_id: Uuid,
    pub concert_id: Uuid,
}

/// Why a code is not a ticket of this deployment (all of them are `invalid_ticket` to a client,
/// whose problem's detail is [`NotATicket::reason`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.reason())]
pub enum NotATicket {
    Malformed,
    UnknownVersion,
    BadSignature,
}

impl NotATicket {
    /// Why, in words a door can show.
    pub fn reason(self) -> &'static str {
        match self {
            NotATicket::Malformed => "not a ticket code",
            NotATicket::UnknownVersion => "a ticket code of an unknown format",
            NotATicket::BadSignature => "the signature does not verify (forged or altered)",
        }
    }
}

/// The deployment's ticket key: signs codes, checks them, and publishes its public half.
pub struct TicketKeys {
    pair: Ed25519KeyPair,
    /// Keys the tag of a code (see the module's documentation).
    tag_key: hmac::Key,
    public_key_pem: String,
    origin: KeyOrigin,
}

impl std::fmt::Debug for TicketKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketKeys")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl TicketKeys {
    /// The key of `key_file` when given, else the one generated into `data_dir`.
    pub fn load(key_file: Option<&Path>, data_dir: &Path) -> anyhow::Result<Self> {
        let generated = data_dir.join(GENERATED_TICKET_KEY_FILE);
        let (pem, origin) = ed25519_pem(key_file, &generated, "ticket key")?;
        let pair = ed25519_pair(&pem).map_err(|error| error.context(format!("the {origin}")))?;
        Ok(Self::from_pair(pair, origin))
    }

    /// A fresh key that lives as long as the process: for tests and benchmarks.
    pub fn ephemeral() -> Self {
        let pair = Ed25519KeyPair::generate().expect("the system's random source works");
        Self::from_pair(pair, KeyOrigin::ConfiguredSecret)
    }

    fn from_pair(pair: Ed25519KeyPair, origin: KeyOrigin) -> Self {
        let public_key_pem = public_key_pem(pair.public_key().as_ref());
        // Deterministic, and only the private key's holder can compute it.
        let tag_key = hmac::Key::new(hmac::HMAC_SHA256, pair.sign(TAG_KEY_LABEL).as_ref());
        Self {
            pair,
            tag_key,
            public_key_pem,
            origin,
        }
    }

    /// A secret of this deployment for `label`: the key's deterministic signature of it, the
    /// same on every instance that shares the key and unknown to anyone without it.
    pub fn derived_secret(&self, label: &[u8]) -> Vec<u8> {
        self.pair.sign(label).as_ref().to_vec()
    }

    /// Where the key came from, for the start-up log.
    pub fn origin(&self) -> &KeyOrigin {
        &self.origin
    }

    /// The public key as `SubjectPublicKeyInfo` PEM (`GET /api/v1/tickets/key`).
    pub fn public_key_pem(&self) -> &str {
        &self.public_key_pem
    }

    /// The code of the ticket of `booking_id`, a booking of `concert_id`.
    pub fn code(&self, booking_id: Uuid, concert_id: Uuid) -> String {
        let mut bytes = Vec::with_capacity(CODE_BYTES);
        bytes.push(VERSION);
        bytes.extend_from_slice(booking_id.as_bytes());
        bytes.extend_from_slice(concert_id.as_bytes());
        let signature = self.pair.sign(&bytes);
        bytes.extend_from_slice(signature.as_ref());
        let tag = hmac::sign(&self.tag_key, &bytes);
        bytes.extend_from_slice(&tag.as_ref()[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// What `code` says, if this deployment made it. Cheap checks first: a code of neither
    /// format's length is refused before it is decoded, and nothing is looked up before the
    /// tag (or, for a code of the first format, the signature) matches.
    pub fn verify(&self, code: &str) -> Result<TicketClaim, NotATicket> {
        let (version, bytes_len) = match code.len() {
            CODE_LEN => (VERSION, CODE_BYTES),
            CODE_1_LEN => (VERSION_1, TAGGED_LEN),
            _ => return Err(NotATicket::Malformed),
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(code)
            .map_err(|_| NotATicket::Malformed)?;
        if bytes.len() != bytes_len {
            return Err(NotATicket::Malformed);
        }
        match (bytes[0], version) {
            (VERSION, VERSION) => {
                let (tagged, tag) = bytes.split_at(TAGGED_LEN);
                let expected = hmac::sign(&self.tag_key, tagged);
                verify_slices_are_equal(&expected.as_ref()[..TAG_LEN], tag)
                    .map_err(|_| NotATicket::BadSignature)?;
            }
            (VERSION_1, VERSION_1) => {
                // Ed25519 signatures are deterministic (RFC 8032 §5.1.6): this key's signature
                // of these 33 bytes is exactly one byte string, and only the holder of the
                // private key can produce it — signing again and comparing gives the verdict
                // verification gives, for a third of its cost.
                let (signed, signature) = bytes.split_at(SIGNED_LEN);
                let expected = self.pair.sign(signed);
                verify_slices_are_equal(expected.as_ref(), signature)
                    .map_err(|_| NotATicket::BadSignature)?;
            }
            // A code the length of the first format is one, or nothing.
            (_, VERSION_1) => return Err(NotATicket::Malformed),
            _ => return Err(NotATicket::UnknownVersion),
        }
        let id = |range: std::ops::Range<usize>| {
            Uuid::from_slice(&bytes[range]).map_err(|_| NotATicket::Malformed)
        };
        Ok(TicketClaim {
            booking_id: id(1..17)?,
            concert_id: id(17..33)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn keys() -> &'static TicketKeys {
        static KEYS: std::sync::OnceLock<TicketKeys> = std::sync::OnceLock::new();
        KEYS.get_or_init(TicketKeys::ephemeral)
    }

    #[test]
    fn a_code_says_its_booking_and_concert_and_is_always_the_same() {
        let (booking_id, concert_id) = (Uuid::now_v7(), Uuid::now_v7());
        let code = keys().code(booking_id, concert_id);
        assert_eq!(code.len(), CODE_LEN);
        assert!(code.len() <= 256);
        assert!(
            code.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "URL-safe: {code}"
        );
        assert_eq!(code, keys().code(booking_id, concert_id));
        assert_eq!(
            keys().verify(&code),
            Ok(TicketClaim {
                booking_id,
                concert_id
            })
        );
    }

    /// A code of the first format (no tag), as earlier builds made them.
    fn first_format_code(keys: &TicketKeys, booking_id: Uuid, concert_id: Uuid) -> String {
        let mut bytes = vec![VERSION_1];
        bytes.extend_from_slice(booking_id.as_bytes());
        bytes.extend_from_slice(concert_id.as_bytes());
        let signature = keys.pair.sign(&bytes);
        bytes.extend_from_slice(signature.as_ref());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn a_code_of_the_first_format_is_still_a_ticket_and_checked_as_strictly() {
        let keys = TicketKeys::ephemeral();
        let (booking_id, concert_id) = (Uuid::now_v7(), Uuid::now_v7());
        let code = first_format_code(&keys, booking_id, concert_id);
        assert_eq!(code.len(), CODE_1_LEN);
        assert_eq!(
            keys.verify(&code),
            Ok(TicketClaim {
                booking_id,
                concert_id
            })
        );
        let other = first_format_code(&TicketKeys::ephemeral(), booking_id, concert_id);
        assert_eq!(keys.verify(&other), Err(NotATicket::BadSignature));
        let mut bytes = URL_SAFE_NO_PAD.decode(&code).unwrap();
        bytes[17] ^= 1;
        assert_eq!(
            keys.verify(&URL_SAFE_NO_PAD.encode(&bytes)),
            Err(NotATicket::BadSignature)
        );
    }

    #[test]
    fn the_tag_binds_the_signature_and_a_version_is_its_length() {
        let keys = TicketKeys::ephemeral();
        let code = keys.code(Uuid::now_v7(), Uuid::now_v7());
        let mut bytes = URL_SAFE_NO_PAD.decode(&code).unwrap();
        // Another signature under the same tag: refused, though the ids are genuine.
        bytes[40] ^= 1;
        assert_eq!(
            keys.verify(&URL_SAFE_NO_PAD.encode(&bytes)),
            Err(NotATicket::BadSignature)
        );
        bytes[40] ^= 1;
        bytes[0] = 3;
        assert_eq!(
            keys.verify(&URL_SAFE_NO_PAD.encode(&bytes)),
            Err(NotATicket::UnknownVersion)
        );
        // The first 97 bytes alone pass for a first-format code only if they say version 1.
        bytes[0] = VERSION;
        assert_eq!(
            keys.verify(&URL_SAFE_NO_PAD.encode(&bytes[..TAGGED_LEN])),
            Err(NotATicket::Malformed)
        );
    }

    #[test]
    fn the_public_key_verifies_every_code_this_key_accepts() {
        use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
        let keys = TicketKeys::ephemeral();
        let public = UnparsedPublicKey::new(&ED25519, keys.pair.public_key().as_ref().to_vec());
        for _ in 0..20 {
            let code = keys.code(Uuid::now_v7(), Uuid::now_v7());
            let bytes = URL_SAFE_NO_PAD.decode(&code).unwrap();
            let (signed, rest) = bytes.split_at(SIGNED_LEN);
            assert!(public.verify(signed, &rest[..SIGNATURE_LEN]).is_ok());
            assert!(keys.verify(&code).is_ok());
        }
    }

    #[test]
    fn another_deployments_code_is_forged_here() {
        let other = TicketKeys::ephemeral();
        let code = other.code(Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(keys().verify(&code), Err(NotATicket::BadSignature));
    }

    #[test]
    fn a_generated_key_is_kept_and_a_key_file_is_used_as_given() {
        let dir = tempfile::tempdir().unwrap();
        let first = TicketKeys::load(None, dir.path()).unwrap();
        assert!(matches!(first.origin(), KeyOrigin::Generated(_)));
        let again = TicketKeys::load(None, dir.path()).unwrap();
        assert!(matches!(again.origin(), KeyOrigin::Loaded(_)));
        let (booking, concert) = (Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(first.code(booking, concert), again.code(booking, concert));
        assert_eq!(first.public_key_pem(), again.public_key_pem());

        // Two instances given the same file sign alike: a split deployment's instances agree.
        let file = dir.path().join(GENERATED_TICKET_KEY_FILE);
        let elsewhere = tempfile::tempdir().unwrap();
        let given = TicketKeys::load(Some(&file), elsewhere.path()).unwrap();
        assert!(matches!(given.origin(), KeyOrigin::KeyFile(_)));
        assert_eq!(given.code(booking, concert), first.code(booking, concert));
        assert!(!elsewhere.path().join(GENERATED_TICKET_KEY_FILE).exists());

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a key").unwrap();
        assert!(TicketKeys::load(Some(&garbage), dir.path()).is_err());
    }

    #[test]
    fn the_public_key_is_spki_pem() {
        let pem = keys().public_key_pem();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
        assert!(pem.trim_end().ends_with("-----END PUBLIC KEY-----"));
    }

    proptest! {
        /// The parser never panics, and nothing but a code this key signed passes.
        #[test]
        fn arbitrary_input_is_never_a_ticket(input in proptest::collection::vec(any::<u8>(), 0..300)) {
            let text = String::from_utf8_lossy(&input);
            prop_assert!(keys().verify(&text).is_err());
            // The same bytes as base64url, so that the length and alphabet checks pass and the
            // signature check is what refuses them.
            let encoded = URL_SAFE_NO_PAD.encode(&input);
            prop_assert!(keys().verify(&encoded).is_err());
        }

        /// Changing any one character of a genuine code makes it invalid.
        #[test]
        fn an_altered_code_is_refused(position in 0..CODE_LEN, replacement in "[A-Za-z0-9_-]") {
            let code = keys().code(Uuid::now_v7(), Uuid::now_v7());
            let mut altered: Vec<char> = code.chars().collect();
            let replacement = replacement.chars().next().unwrap();
            prop_assume!(altered[position] != replacement);
            altered[position] = replacement;
            let altered: String = altered.into_iter().collect();
            prop_assert!(keys().verify(&altered).is_err());
        }

        /// Any prefix or extension of a genuine code is refused.
        #[test]
        fn a_truncated_or_extended_code_is_refused(cut in 0..CODE_LEN, extra in "[A-Za-z0-9_-]{1,8}") {
            let code = keys().code(Uuid::now_v7(), Uuid::now_v7());
            prop_assert_eq!(keys().verify(&code[..cut]), Err(NotATicket::Malformed));
            prop_assert_eq!(keys().verify(&format!("{code}{extra}")), Err(NotATicket::Malformed));
        }
    }
}
