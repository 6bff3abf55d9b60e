//! Tickets: the code of a confirmed booking, signed with the deployment's ticket key, so that a
//! door can tell a real ticket from a forged one with nothing but the public key.
//!
//! A code is the unpadded base64url (RFC 4648 §5) of 97 bytes:
//!
//! | bytes  | what |
//! | ------ | ---- |
//! | 0      | the format version, `1` |
//! | 1–16   | the booking id (the UUID's 16 bytes) |
//! | 17–32  | the concert id |
//! | 33–96  | the Ed25519 signature (RFC 8032) of bytes 0–32 |
//!
//! 130 characters, URL-safe, the same for as long as the booking exists (Ed25519 signatures are
//! deterministic). The code says nothing about whether the booking still stands: a cancelled
//! booking's code verifies and is refused at the door by the store ([`crate::store`]).
//!
//! The key is kept like the token key: generated once into the data directory
//! (`ticket-ed25519.pem`), or given as a PKCS#8 PEM file (`--ticket-key-file`,
//! `BOXOFFICE_TICKET_KEY_FILE`), which every Booking instance of a split deployment must share.

use std::path::Path;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use boxoffice_shared::keys::{KeyOrigin, ed25519_pair, ed25519_pem, public_key_pem};
use uuid::Uuid;

/// The file, inside the data directory, that holds a generated ticket key.
pub const GENERATED_TICKET_KEY_FILE: &str = "ticket-ed25519.pem";

/// The format version, the code's first byte.
const VERSION: u8 = 1;
/// Version, booking id, concert id: what is signed.
const SIGNED_LEN: usize = 1 + 16 + 16;
const SIGNATURE_LEN: usize = 64;
const CODE_BYTES: usize = SIGNED_LEN + SIGNATURE_LEN;
/// The length of every code, in characters.
pub const CODE_LEN: usize = (CODE_BYTES * 4).div_ceil(3);

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

/// How many verified signatures are remembered (about 100 bytes each).
const VERIFIED_KEPT: usize = 100_000;

/// The deployment's ticket key: signs codes, verifies them, and publishes its public half.
pub struct TicketKeys {
    pair: Ed25519KeyPair,
    public_key_pem: String,
    origin: KeyOrigin,
    /// The signatures verified lately, by booking: a ticket is scanned more than once (a second
    /// door, a scanner's retry), and an Ed25519 verification costs far more than the rest of a
    /// scan. A code whose bytes are exactly those of a verified one is the same signed
    /// statement, so it is taken without verifying again; anything else is verified.
    verified: quick_cache::sync::Cache<Uuid, (Uuid, [u8; SIGNATURE_LEN])>,
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
        Self {
            pair,
            public_key_pem,
            origin,
            verified: quick_cache::sync::Cache::new(VERIFIED_KEPT),
        }
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
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// What `code` says, if this deployment's key signed it. Cheap checks first: a code of the
    /// wrong length is refused before it is decoded, and nothing is looked up before the
    /// signature verifies (or is one verified before, byte for byte).
    pub fn verify(&self, code: &str) -> Result<TicketClaim, NotATicket> {
        if code.len() != CODE_LEN {
            return Err(NotATicket::Malformed);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(code)
            .map_err(|_| NotATicket::Malformed)?;
        let (signed, signature) = bytes.split_at(SIGNED_LEN);
        if signed[0] != VERSION {
            return Err(NotATicket::UnknownVersion);
        }
        let id = |range: std::ops::Range<usize>| {
            Uuid::from_slice(&signed[range]).map_err(|_| NotATicket::Malformed)
        };
        let claim = TicketClaim {
            booking_id: id(1..17)?,
            concert_id: id(17..33)?,
        };
        let signature: [u8; SIGNATURE_LEN] =
            signature.try_into().map_err(|_| NotATicket::Malformed)?;
        let known = self.verified.get(&claim.booking_id);
        if known != Some((claim.concert_id, signature)) {
            // Ed25519 signatures are deterministic (RFC 8032 §5.1.6): this key's signature of
            // these 33 bytes is exactly one byte string, and signing it again costs about a
            // third of verifying. Only the holder of the private key can produce it, so a code
            // that carries it is genuine — the same verdict verification gives, cheaper. (A
            // scanner without the private key verifies with the public key instead.)
            let expected = self.pair.sign(signed);
            verify_slices_are_equal(expected.as_ref(), &signature)
                .map_err(|_| NotATicket::BadSignature)?;
            self.verified
                .insert(claim.booking_id, (claim.concert_id, signature));
        }
        Ok(claim)
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

    #[test]
    fn a_code_verified_before_passes_again_and_nothing_else_borrows_its_standing() {
        let keys = TicketKeys::ephemeral();
        let (booking_id, concert_id) = (Uuid::now_v7(), Uuid::now_v7());
        let code = keys.code(booking_id, concert_id);
        assert!(keys.verify(&code).is_ok());
        assert!(keys.verify(&code).is_ok(), "again, from what was verified");
        // The same booking with another concert, or another signature, is checked afresh.
        let other = TicketKeys::ephemeral().code(booking_id, concert_id);
        assert_eq!(keys.verify(&other), Err(NotATicket::BadSignature));
        let mut bytes = URL_SAFE_NO_PAD.decode(&code).unwrap();
        bytes[17] ^= 1;
        let moved = URL_SAFE_NO_PAD.encode(&bytes);
        assert_eq!(keys.verify(&moved), Err(NotATicket::BadSignature));
        assert!(keys.verify(&code).is_ok());
    }

    #[test]
    fn the_public_key_verifies_every_code_this_key_accepts() {
        use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
        let keys = TicketKeys::ephemeral();
        let public = UnparsedPublicKey::new(&ED25519, keys.pair.public_key().as_ref().to_vec());
        for _ in 0..20 {
            let code = keys.code(Uuid::now_v7(), Uuid::now_v7());
            let bytes = URL_SAFE_NO_PAD.decode(&code).unwrap();
            let (signed, signature) = bytes.split_at(SIGNED_LEN);
            assert!(public.verify(signed, signature).is_ok());
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
