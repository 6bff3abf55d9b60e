//! Minting tokens. Access tokens are short-lived JWTs (claims in
//! [`boxoffice_shared::token::AccessClaims`]); refresh tokens are opaque random strings whose
//! SHA-256 alone is stored, so a copy of the database yields no usable refresh token.

use base64::Engine;
use boxoffice_shared::token::{AUDIENCE, AccessClaims, ISSUER, Role};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::RngCore;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

/// Signs access tokens. Only the Auth service holds one.
pub struct TokenIssuer {
    algorithm: Algorithm,
    key: EncodingKey,
}

impl TokenIssuer {
    pub fn new(algorithm: Algorithm, key: EncodingKey) -> Self {
        Self { algorithm, key }
    }

    /// An access token for `user` in `session`, valid from `now` for `ttl`.
    pub fn access_token(
        &self,
        user: Uuid,
        session: Uuid,
        role: Role,
        now: OffsetDateTime,
        ttl: std::time::Duration,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let iat = now.unix_timestamp();
        let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        let claims = AccessClaims {
            sub: user,
            sid: session,
            role,
            iat,
            exp: iat.saturating_add(ttl),
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            jti: Uuid::now_v7(),
        };
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, &self.key)
    }
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// A new refresh-token value (256 random bits, URL-safe base64) and the hash to store.
pub fn new_refresh_token() -> (String, [u8; 32]) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_refresh_token(&token);
    (token, hash)
}

/// The stored form of a refresh token.
pub fn hash_refresh_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_are_unique_and_hash_stably() {
        let (a, hash_a) = new_refresh_token();
        let (b, _) = new_refresh_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(hash_refresh_token(&a), hash_a);
    }
}
