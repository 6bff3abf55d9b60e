//! Access tokens as every service sees them: claims, verification and revocation.
//!
//! Only the Auth service mints tokens (it holds the signing key); every other service verifies
//! them with a [`TokenVerifier`], which pins the one algorithm the deployment uses, so a token
//! signed with another key or algorithm — including `alg: none` — is rejected. A verified token is
//! still refused when its session has been revoked (logout, refresh-token reuse): the
//! [`RevokedSessions`] list is consulted on every request, in memory, so that revocation takes
//! effect at once without a database round trip on the hot path.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::clock::SharedClock;
use crate::problem::{ErrorCode, Problem};

/// The `iss` of every boxoffice token.
pub const ISSUER: &str = "boxoffice";
/// The `aud` of access tokens: the boxoffice HTTP API.
pub const AUDIENCE: &str = "boxoffice-api";

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Customer,
    /// Door staff: checks tickets in and reads check-in counts, nothing else a customer may not.
    Staff,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Staff => "staff",
            Role::Admin => "admin",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "customer" => Some(Role::Customer),
            "staff" => Some(Role::Staff),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user's id.
    pub sub: Uuid,
    /// The session the token belongs to; revoking the session kills the token.
    pub sid: Uuid,
    pub role: Role,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Expires at, seconds since the epoch.
    pub exp: i64,
    pub iss: String,
    pub aud: String,
    /// A unique id per token, so that two tokens minted in the same second differ.
    pub jti: Uuid,
}

/// How many verified tokens a [`TokenVerifier`] remembers (about 6 MiB at most).
const VERIFIED_TOKENS: usize = 16_384;

/// How far past `exp` a token is still accepted: small clock differences between the processes
/// of a deployment, no more.
const LEEWAY_SECONDS: i64 = 5;

/// Verifies access tokens with one pinned algorithm and key.
///
/// A token is accepted when it has exactly three parts, its header names the pinned algorithm
/// (so `alg: none` and a token signed for another algorithm are refused before anything else),
/// its signature verifies with the key (jsonwebtoken's `crypto::verify`, on aws-lc-rs), and its
/// claims — parsed once, only after the signature held — carry every field of
/// [`AccessClaims`], our issuer and audience, and an `exp` not more than [`LEEWAY_SECONDS`] in the
/// past. These are the checks `jsonwebtoken::decode` makes with a `Validation` of the same
/// rules; done here, the header is parsed once instead of twice and the claims once instead of
/// twice (a booking's token is usually seen for the first time, so this is on the path of every
/// booking of an on-sale).
///
/// Tokens it has verified are remembered until they expire (the most recently useful
/// [`VERIFIED_TOKENS`] of them), keyed by the whole token: a client that sends the same token
/// again — a retry in an on-sale, a poll — costs a lookup instead of a signature check and a
/// JSON parse, a sixth of the server's work on a sold-out answer. Only what verification
/// accepted is remembered, expiry is checked again on every hit with the same leeway, and
/// revocation is not cached at all: [`Authenticator::authenticate`] asks the revocation list on
/// every request.
pub struct TokenVerifier {
    algorithm: Algorithm,
    key: DecodingKey,
    verified: quick_cache::sync::Cache<Box<str>, VerifiedToken>,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not three base64url parts separated by dots")]
    Malformed,
    #[error("the token is not signed with the algorithm this deployment uses")]
    Algorithm,
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token's claims are missing, malformed or not for this API")]
    Claims,
    #[error("the token has expired")]
    Expired,
}

/// What a request needs of a verified access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedToken {
    pub sub: Uuid,
    pub sid: Uuid,
    pub role: Role,
    /// Expires at, seconds since the epoch.
    pub exp: i64,
}

/// The only header field a verifier reads; the others (`typ`, `kid`…) are ignored, as
/// `jsonwebtoken::decode` ignores them.
#[derive(Deserialize)]
struct TokenHeader {
    alg: Algorithm,
}

fn unix_now() -> i64 {
    i64::try_from(jsonwebtoken::get_current_timestamp()).unwrap_or(i64::MAX)
}

/// Expired once `exp` is more than the leeway in the past.
fn expired(exp: i64, now: i64) -> bool {
    exp.saturating_add(LEEWAY_SECONDS) < now
}

impl TokenVerifier {
    pub fn new(algorithm: Algorithm, key: DecodingKey) -> Self {
        Self {
            algorithm,
            key,
            verified: quick_cache::sync::Cache::new(VERIFIED_TOKENS),
        }
    }

    /// A verifier that accepts no token: HMAC with a random secret that exists only in this
    /// process and is never used to sign. For a process that serves no user-facing route.
    pub fn refusing_all() -> Self {
        let mut secret = [0u8; 64];
        // With no randomness at all, an all-zero secret would be guessable: refuse to start.
        aws_lc_rs::rand::fill(&mut secret).expect("the system random number generator works");
        Self::new(Algorithm::HS512, DecodingKey::from_secret(&secret))
    }

    /// Checks form, algorithm, signature, issuer, audience and expiry.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        use base64::Engine as _;
        let decode = |part: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| TokenError::Malformed)
        };
        let (message, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let (header, claims) = message.split_once('.').ok_or(TokenError::Malformed)?;
        if claims.contains('.') {
            return Err(TokenError::Malformed);
        }
        let header: TokenHeader =
            serde_json::from_slice(&decode(header)?).map_err(|_| TokenError::Malformed)?;
        if header.alg != self.algorithm {
            return Err(TokenError::Algorithm);
        }
        let signed =
            jsonwebtoken::crypto::verify(signature, message.as_bytes(), &self.key, self.algorithm);
        if !matches!(signed, Ok(true)) {
            return Err(TokenError::Signature);
        }
        let claims: AccessClaims =
            serde_json::from_slice(&decode(claims)?).map_err(|_| TokenError::Claims)?;
        if claims.iss != ISSUER || claims.aud != AUDIENCE {
            return Err(TokenError::Claims);
        }
        if expired(claims.exp, unix_now()) {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }

    /// [`Self::verify`], answered from the tokens verified before while they have not expired.
    pub fn verify_remembered(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        if let Some(known) = self.verified.get(token) {
            if !expired(known.exp, unix_now()) {
                return Ok(known);
            }
            self.verified.remove(token);
        }
        let claims = self.verify(token)?;
        let verified = VerifiedToken {
            sub: claims.sub,
            sid: claims.sid,
            role: claims.role,
            exp: claims.exp,
        };
        self.verified.insert(token.into(), verified);
        Ok(verified)
    }
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// How long past the access-token lifetime a revoked session is still remembered: more than the
/// verifier's clock leeway, so that no token of the session outlives its entry.
pub const REVOCATION_MARGIN: Duration = Duration::from_secs(60);

/// When a session revoked at `revoked_at_unix` may be forgotten: once every access token it may
/// still hold has expired, `access_ttl` plus [`REVOCATION_MARGIN`] later.
pub fn forget_revoked_after(revoked_at_unix: i64, access_ttl: Duration) -> i64 {
    let keep = access_ttl.saturating_add(REVOCATION_MARGIN).as_secs();
    revoked_at_unix.saturating_add(i64::try_from(keep).unwrap_or(i64::MAX))
}

/// Sessions that were ended before their access tokens expired.
///
/// An entry only needs to outlive the longest-lived access token of its session, so entries carry
/// the instant after which they can be forgotten and are pruned as new ones arrive.
#[derive(Debug, Clone, Default)]
pub struct RevokedSessions {
    inner: Arc<RwLock<HashMap<Uuid, i64>>>,
}

impl RevokedSessions {
    /// Records that `session` is revoked; `forget_after_unix` is when its last access token expires.
    pub fn revoke(&self, session: Uuid, forget_after_unix: i64, now_unix: i64) {
        let mut map = self
            .inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if map.len() >= 1024 && map.len().is_power_of_two() {
            map.retain(|_, until| *until >= now_unix);
        }
        map.insert(session, forget_after_unix);
    }

    /// Records that `session` was revoked at `now_unix`, to be remembered until every access
    /// token it may still hold has expired: `access_ttl` plus [`REVOCATION_MARGIN`].
    pub fn revoke_now(&self, session: Uuid, now_unix: i64, access_ttl: Duration) {
        self.revoke(
            session,
            forget_revoked_after(now_unix, access_ttl),
            now_unix,
        );
    }

    pub fn is_revoked(&self, session: &Uuid) -> bool {
        self.inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains_key(session)
    }

    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a service needs to authenticate a request: the verifier, the revocation list and a clock.
#[derive(Clone)]
pub struct Authenticator {
    pub verifier: Arc<TokenVerifier>,
    pub revoked: RevokedSessions,
    pub clock: SharedClock,
}

impl Authenticator {
    /// Authenticates a bearer token: valid signature and claims, and a session still alive.
    pub fn authenticate(&self, token: &str) -> Result<AuthUser, Problem> {
        let claims = self.verifier.verify_remembered(token).map_err(|error| {
            let detail = match error {
                TokenError::Expired => "the access token has expired",
                _ => "the access token is not valid",
            };
            Problem::new(ErrorCode::Unauthenticated, detail)
        })?;
        if self.revoked.is_revoked(&claims.sid) {
            return Err(Problem::new(
                ErrorCode::Unauthenticated,
                "the session of this access token has ended",
            ));
        }
        Ok(AuthUser {
            user_id: claims.sub,
            session_id: claims.sid,
            role: claims.role,
        })
    }
}

/// The caller of a request that carried a valid bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthUser {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub role: Role,
}

impl AuthUser {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Door staff or an admin: who may check tickets in and read check-in counts.
    pub fn is_door_staff(&self) -> bool {
        matches!(self.role, Role::Staff | Role::Admin)
    }

    /// `Ok` for admins, 403 `forbidden` for everyone else.
    pub fn require_admin(&self) -> Result<(), Problem> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(Problem::new(
                ErrorCode::Forbidden,
                "this action needs the admin role",
            ))
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme matched case-insensitively).
pub fn bearer_token(parts: &Parts) -> Result<&str, Problem> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| Problem::new(ErrorCode::Unauthenticated, "an access token is required"))?;
    let value = value.to_str().map_err(|_| {
        Problem::new(
            ErrorCode::Unauthenticated,
            "the Authorization header is malformed",
        )
    })?;
    let (scheme, token) = value.split_once(' ').ok_or_else(|| {
        Problem::new(
            ErrorCode::Unauthenticated,
            "the Authorization header is malformed",
        )
    })?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(Problem::new(
            ErrorCode::Unauthenticated,
            "the Authorization header must use the Bearer scheme",
        ));
    }
    Ok(token.trim())
}

impl<S> FromRequestParts<S> for AuthUser
where
    Authenticator: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let authenticator = Authenticator::from_ref(state);
        let token = bearer_token(parts)?;
        authenticator.authenticate(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs256_token(secret: &[u8], exp: i64) -> String {
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let claims = AccessClaims {
            sub: Uuid::now_v7(),
            sid: Uuid::now_v7(),
            role: Role::Customer,
            iat: now,
            exp,
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            jti: Uuid::now_v7(),
        };
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    #[test]
    fn a_remembered_token_still_expires_and_a_forged_one_is_never_remembered() {
        let secret = b"a-secret-of-the-deployment-long-enough-for-hs256";
        let verifier = TokenVerifier::new(Algorithm::HS256, DecodingKey::from_secret(secret));
        let now = jsonwebtoken::get_current_timestamp() as i64;

        let fresh = hs256_token(secret, now + 600);
        let first = verifier.verify_remembered(&fresh).unwrap();
        assert_eq!(verifier.verify_remembered(&fresh).unwrap(), first);
        assert_eq!(first.sub, verifier.verify(&fresh).unwrap().sub);

        // Valid for about one more second thanks to the 5 s leeway, then expired: the second
        // answer must come from the expiry check, not from what was remembered.
        let expiring = hs256_token(secret, now - 4);
        assert!(verifier.verify_remembered(&expiring).is_ok());
        std::thread::sleep(Duration::from_millis(2_100));
        let error = verifier.verify_remembered(&expiring).unwrap_err();
        assert_eq!(error, TokenError::Expired);

        // Signed with another key: refused, and refused again (nothing was remembered).
        let forged = hs256_token(b"another-secret-that-nobody-here-should-accept", now + 600);
        assert!(verifier.verify_remembered(&forged).is_err());
        assert!(verifier.verify_remembered(&forged).is_err());
    }

    /// A token of `header` and `claims` (any bytes), signed with `secret` over exactly the bytes
    /// it carries, so that only the part under test is wrong.
    fn signed_bytes(secret: &[u8], header: &[u8], claims: &[u8]) -> String {
        use base64::Engine as _;
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let message = format!("{}.{}", b64(header), b64(claims));
        let signature = jsonwebtoken::crypto::sign(
            message.as_bytes(),
            &jsonwebtoken::EncodingKey::from_secret(secret),
            Algorithm::HS256,
        )
        .unwrap();
        format!("{message}.{signature}")
    }

    fn signed(secret: &[u8], header: &serde_json::Value, claims: &serde_json::Value) -> String {
        let json = |value: &serde_json::Value| serde_json::to_vec(value).unwrap();
        signed_bytes(secret, &json(header), &json(claims))
    }

    #[test]
    fn every_check_of_a_token_refuses_what_it_should_and_only_that() {
        let secret = b"a-secret-of-the-deployment-long-enough-for-hs256";
        let verifier = TokenVerifier::new(Algorithm::HS256, DecodingKey::from_secret(secret));
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let hs256 = serde_json::json!({"alg": "HS256", "typ": "JWT"});
        let claims = serde_json::json!({
            "sub": Uuid::now_v7(), "sid": Uuid::now_v7(), "role": "customer",
            "iat": now, "exp": now + 600, "iss": ISSUER, "aud": AUDIENCE, "jti": Uuid::now_v7(),
        });
        let with = |field: &str, value: serde_json::Value| {
            let mut changed = claims.clone();
            changed[field] = value;
            changed
        };
        let without = |field: &str| {
            let mut changed = claims.clone();
            changed.as_object_mut().unwrap().remove(field);
            changed
        };

        let good = signed(secret, &hs256, &claims);
        assert_eq!(verifier.verify(&good).unwrap().exp, now + 600);
        // Within the leeway is still good; past it is expired.
        let late = signed(secret, &hs256, &with("exp", (now - 3).into()));
        assert!(verifier.verify(&late).is_ok());
        let expired = signed(secret, &hs256, &with("exp", (now - 60).into()));
        assert_eq!(verifier.verify(&expired), Err(TokenError::Expired));

        for field in ["sub", "sid", "role", "iat", "exp", "iss", "aud", "jti"] {
            let token = signed(secret, &hs256, &without(field));
            assert_eq!(verifier.verify(&token), Err(TokenError::Claims), "{field}");
        }
        for (field, value) in [
            ("iss", serde_json::json!("someone-else")),
            ("aud", serde_json::json!("boxoffice-admin")),
            ("aud", serde_json::json!([AUDIENCE])),
            ("role", serde_json::json!("root")),
            ("exp", serde_json::json!("tomorrow")),
        ] {
            let token = signed(secret, &hs256, &with(field, value.clone()));
            assert_eq!(
                verifier.verify(&token),
                Err(TokenError::Claims),
                "{field}: {value}"
            );
        }

        // The header must name the pinned algorithm, and `none` is not an algorithm.
        let hs512 = signed(secret, &serde_json::json!({"alg": "HS512"}), &claims);
        assert_eq!(verifier.verify(&hs512), Err(TokenError::Algorithm));
        let none = signed(secret, &serde_json::json!({"alg": "none"}), &claims);
        assert_eq!(verifier.verify(&none), Err(TokenError::Malformed));
        let (unsigned, _) = good.rsplit_once('.').unwrap();
        assert_eq!(
            verifier.verify(&format!("{unsigned}.")),
            Err(TokenError::Signature)
        );

        // Claims swapped under a valid signature, a fourth part, missing parts, bad base64.
        let (header_part, rest) = good.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let other = signed(secret, &hs256, &with("role", "admin".into()));
        let admin_claims = other.split('.').nth(1).unwrap();
        let swapped = format!("{header_part}.{admin_claims}.{signature}");
        assert_eq!(verifier.verify(&swapped), Err(TokenError::Signature));
        assert_eq!(
            verifier.verify(&format!("{good}.x")),
            Err(TokenError::Malformed)
        );
        assert_eq!(verifier.verify(unsigned), Err(TokenError::Malformed));
        assert_eq!(verifier.verify("not-a-token"), Err(TokenError::Malformed));
        assert_eq!(
            verifier.verify(&format!("{header_part}.!!!.{signature}")),
            Err(TokenError::Signature)
        );
        let signed_garbage = signed_bytes(secret, br#"{"alg":"HS256"}"#, b"not json");
        assert_eq!(verifier.verify(&signed_garbage), Err(TokenError::Claims));

        // Another key's signature over the same bytes.
        let forged = signed(
            b"another-secret-that-nobody-here-should-accept",
            &hs256,
            &claims,
        );
        assert_eq!(verifier.verify(&forged), Err(TokenError::Signature));
    }

    #[test]
    fn revoked_sessions_are_remembered_and_pruned_after_their_tokens_expire() {
        let revoked = RevokedSessions::default();
        let old = Uuid::now_v7();
        revoked.revoke(old, 100, 0);
        assert!(revoked.is_revoked(&old));
        // Fill up to the pruning point: entries whose tokens expired long ago go away.
        for _ in 0..1023 {
            revoked.revoke(Uuid::now_v7(), 10_000, 0);
        }
        let fresh = Uuid::now_v7();
        revoked.revoke(fresh, 10_000, 5_000);
        assert!(!revoked.is_revoked(&old));
        assert!(revoked.is_revoked(&fresh));
    }

    #[test]
    fn a_revoked_session_outlives_every_token_it_may_hold() {
        let ttl = Duration::from_secs(900);
        let revoked_at = 1_800_000_000;
        // The last token the session may hold was issued at `revoked_at` and is accepted until
        // its expiry plus the verifier's leeway; the entry must be kept past that.
        let last_accepted = revoked_at + 900 + 5;
        assert!(forget_revoked_after(revoked_at, ttl) > last_accepted);
    }

    #[test]
    fn roles_round_trip() {
        for role in [Role::Customer, Role::Staff, Role::Admin] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }

    proptest::proptest! {
        /// Access tokens face the internet: whatever bytes arrive, verification answers with a
        /// refusal, never a panic. Three dot-separated parts of base64url-ish text reach the
        /// header, signature and claims parsers; arbitrary strings cover the rest.
        #[test]
        fn verification_never_panics_on_arbitrary_input(
            raw in proptest::prelude::any::<String>(),
            parts in proptest::collection::vec("[A-Za-z0-9_=+/-]{0,80}", 0..5),
        ) {
            let verifier = TokenVerifier::new(Algorithm::HS256, DecodingKey::from_secret(b"k"));
            proptest::prop_assert!(verifier.verify(&raw).is_err());
            let dotted = parts.join(".");
            proptest::prop_assert!(verifier.verify(&dotted).is_err());
            let _ = verifier.verify_remembered(&dotted);
        }
    }
}
