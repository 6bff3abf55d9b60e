//! argon2id password hashing.
//!
//! Hashing is deliberately slow (tens of milliseconds with OWASP parameters), so it runs on
//! tokio's blocking pool, never on the async workers, and a semaphore bounds how many hashes run
//! at once: a burst of logins then queues instead of exhausting memory (19 MiB each) or starving
//! the booking path of CPU.

use std::sync::Arc;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::config::PasswordParams;
use crate::error::AuthError;

/// Hashes and verifies passwords with fixed argon2id parameters.
#[derive(Clone)]
pub struct Passwords {
    argon: Argon2<'static>,
    permits: Arc<Semaphore>,
    /// A hash of a random password, verified against when a login names no account, so that an
    /// unknown login costs as much time as a wrong password (no account enumeration by timing).
    dummy_hash: Arc<str>,
}

impl Passwords {
    pub fn new(params: PasswordParams) -> anyhow::Result<Self> {
        let argon_params = Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            None,
        )
        .map_err(|error| anyhow::anyhow!("invalid argon2 parameters: {error}"))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, argon_params);
        let dummy_hash = argon
            .hash_password(uuid::Uuid::new_v4().as_bytes())
            .map_err(|error| anyhow::anyhow!("argon2 self-test failed: {error}"))?
            .to_string();
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Self {
            argon,
            permits: Arc::new(Semaphore::new(workers * 2)),
            dummy_hash: dummy_hash.into(),
        })
    }

    /// A PHC string (`$argon2id$v=19$m=…`) for `password`, with a fresh random salt.
    pub async fn hash(&self, password: &str) -> Result<String, AuthError> {
        let password = zeroizing(password);
        let argon = self.argon.clone();
        self.run(move || {
            argon
                .hash_password(password.as_bytes())
                .map(|hash| hash.to_string())
                .map_err(|error| AuthError::Hashing(error.to_string()))
        })
        .await
    }

    /// Whether `password` matches `hash`. The parameters stored in the hash are used, so hashes
    /// made with older parameters keep verifying.
    pub async fn verify(&self, password: &str, hash: &str) -> Result<bool, AuthError> {
        let password = zeroizing(password);
        let hash = hash.to_owned();
        let argon = self.argon.clone();
        self.run(move || {
            let parsed =
                PasswordHash::new(&hash).map_err(|error| AuthError::Hashing(error.to_string()))?;
            Ok(argon.verify_password(password.as_bytes(), &parsed).is_ok())
        })
        .await
    }

    /// Spends the time of one verification and always fails: see `dummy_hash`.
    pub async fn verify_nothing(&self, password: &str) -> Result<bool, AuthError> {
        let hash = Arc::clone(&self.dummy_hash);
        self.verify(password, &hash).await.map(|_| false)
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, AuthError> + Send + 'static,
    ) -> Result<T, AuthError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| AuthError::Hashing("hasher closed".to_owned()))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|error| AuthError::Hashing(error.to_string()))?
    }
}

fn zeroizing(password: &str) -> secrecy::SecretString {
    secrecy::SecretString::from(password.to_owned())
}

trait ExposeBytes {
    fn as_bytes(&self) -> &[u8];
}

impl ExposeBytes for secrecy::SecretString {
    fn as_bytes(&self) -> &[u8] {
        use secrecy::ExposeSecret;
        self.expose_secret().as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: PasswordParams = PasswordParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    #[tokio::test]
    async fn hashes_verify_and_are_salted() {
        let passwords = Passwords::new(CHEAP).unwrap();
        let first = passwords.hash("correct horse").await.unwrap();
        let second = passwords.hash("correct horse").await.unwrap();
        assert!(first.starts_with("$argon2id$"));
        assert_ne!(first, second, "each hash has its own salt");
        assert!(passwords.verify("correct horse", &first).await.unwrap());
        assert!(!passwords.verify("wrong horse", &first).await.unwrap());
        assert!(!passwords.verify_nothing("correct horse").await.unwrap());
    }

    #[tokio::test]
    async fn hashes_made_with_other_parameters_still_verify() {
        let old = Passwords::new(PasswordParams {
            memory_kib: 128,
            ..CHEAP
        })
        .unwrap();
        let hash = old.hash("correct horse").await.unwrap();
        let new = Passwords::new(CHEAP).unwrap();
        assert!(new.verify("correct horse", &hash).await.unwrap());
    }
}
