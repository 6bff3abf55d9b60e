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
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
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
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Admin => "admin",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "customer" => Some(Role::Customer),
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

/// Verifies access tokens with one pinned algorithm and key.
///
/// Tokens it has verified are remembered until they expire (the most recently useful
/// [`VERIFIED_TOKENS`] of them), keyed by the whole token: a client that sends the same token
/// again — a retry in an on-sale, a poll — costs a lookup instead of a signature check and two
/// JSON parses, a sixth of the server's work on a sold-out answer. Only what verification
/// accepted is remembered, expiry is checked again on every hit with the same leeway, and
/// revocation is not cached at all: [`Authenticator::authenticate`] asks the revocation list on
/// every request.
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
    verified: quick_cache::sync::Cache<Box<str>, VerifiedToken>,
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

impl TokenVerifier {
    pub fn new(algorithm: Algorithm, key: DecodingKey) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.algorithms = vec![algorithm];
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "iss", "aud"]);
        // Tolerates small clock differences between the processes of a deployment, no more.
        validation.leeway = 5;
        validation.validate_exp = true;
        Self {
            key,
            validation,
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

    /// Checks signature, algorithm, issuer, audience and expiry.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, jsonwebtoken::errors::Error> {
        jsonwebtoken::decode::<AccessClaims>(token, &self.key, &self.validation)
            .map(|data| data.claims)
    }

    /// [`Self::verify`], answered from the tokens verified before while they have not expired.
    pub fn verify_remembered(
        &self,
        token: &str,
    ) -> Result<VerifiedToken, jsonwebtoken::errors::Error> {
        if let Some(known) = self.verified.get(token) {
            // The rule `verify` applies: expired once `exp` is more than the leeway in the past.
            let leeway = i64::try_from(self.validation.leeway).unwrap_or(0);
            let now = i64::try_from(jsonwebtoken::get_current_timestamp()).unwrap_or(i64::MAX);
            if known.exp.saturating_add(leeway) >= now {
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
            .field("algorithms", &self.validation.algorithms)
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
            use jsonwebtoken::errors::ErrorKind;
            let detail = match error.kind() {
                ErrorKind::ExpiredSignature => "the access token has expired",
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
        assert_eq!(
            error.kind(),
            &jsonwebtoken::errors::ErrorKind::ExpiredSignature
        );

        // Signed with another key: refused, and refused again (nothing was remembered).
        let forged = hs256_token(b"another-secret-that-nobody-here-should-accept", now + 600);
        assert!(verifier.verify_remembered(&forged).is_err());
        assert!(verifier.verify_remembered(&forged).is_err());
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
        for role in [Role::Customer, Role::Admin] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
