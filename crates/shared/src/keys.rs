//! Token key material: where the signing key comes from.
//!
//! In order of preference (API contract, "Running it"):
//! 1. an HMAC secret from configuration (`BOXOFFICE_JWT_SECRET`, at least 32 bytes) → HS256;
//! 2. an Ed25519 private key file in PKCS#8 PEM (`--jwt-key-file`) → EdDSA;
//! 3. otherwise an Ed25519 key generated on first start and kept in the data directory
//!    (`jwt-ed25519.pem`, mode 0600), so tokens survive restarts.
//!
//! The same two ways — a file given, or one generated into the data directory — keep Booking's
//! ticket key ([`ed25519_pem`]).
//!
//! There is no built-in default key. With an Ed25519 key, services that only verify tokens (every
//! service but Auth in a split deployment) hold the public half alone ([`load_public_key`],
//! `--jwt-public-key-file`): they can check a token, never mint one. `boxoffice keygen` writes a
//! fresh pair.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use secrecy::{ExposeSecret, SecretString};

use crate::token::TokenVerifier;

/// The file, inside the data directory, that holds a generated signing key.
pub const GENERATED_KEY_FILE: &str = "jwt-ed25519.pem";
/// The shortest HMAC secret accepted: 256 bits, as RFC 7518 §3.2 requires for HS256.
pub const MIN_SECRET_BYTES: usize = 32;

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";
const PUBLIC_PEM_BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
const PUBLIC_PEM_END: &str = "-----END PUBLIC KEY-----";
/// The DER prefix of an Ed25519 `SubjectPublicKeyInfo` (RFC 8410 §4): SEQUENCE, the algorithm
/// identifier 1.3.101.112, and the BIT STRING header of the 32-byte key that follows.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Where the signing key was taken from, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOrigin {
    ConfiguredSecret,
    KeyFile(PathBuf),
    Generated(PathBuf),
    Loaded(PathBuf),
}

impl std::fmt::Display for KeyOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyOrigin::ConfiguredSecret => f.write_str("configured secret"),
            KeyOrigin::KeyFile(path) => write!(f, "key file {}", path.display()),
            KeyOrigin::Generated(path) => write!(f, "key generated into {}", path.display()),
            KeyOrigin::Loaded(path) => write!(f, "generated key {}", path.display()),
        }
    }
}

/// An Ed25519 private key in PKCS#8 PEM: read from `key_file` when one is given, else from
/// `generated`, which is written (owner-only) with a new key on first use and read from then
/// on. `what` names the key in errors ("JWT key", "ticket key").
pub fn ed25519_pem(
    key_file: Option<&Path>,
    generated: &Path,
    what: &str,
) -> anyhow::Result<(String, KeyOrigin)> {
    if let Some(path) = key_file {
        let pem = fs::read_to_string(path)
            .with_context(|| format!("reading the {what} file {}", path.display()))?;
        return Ok((pem, KeyOrigin::KeyFile(path.to_owned())));
    }
    if generated.exists() {
        let pem = fs::read_to_string(generated)
            .with_context(|| format!("reading the generated {what} {}", generated.display()))?;
        return Ok((pem, KeyOrigin::Loaded(generated.to_owned())));
    }
    let pem = generate_ed25519_pem()?;
    write_private_file(generated, pem.as_bytes())?;
    Ok((pem, KeyOrigin::Generated(generated.to_owned())))
}

/// The key pair in a PKCS#8 PEM private key.
pub fn ed25519_pair(pem: &str) -> anyhow::Result<Ed25519KeyPair> {
    Ed25519KeyPair::from_pkcs8(&pem_to_der(pem)?)
        .map_err(|error| anyhow::anyhow!("not an Ed25519 PKCS#8 key: {error}"))
}

/// An Ed25519 public key as `SubjectPublicKeyInfo` PEM (`-----BEGIN PUBLIC KEY-----`), the form
/// `openssl pkey -pubin` and every JOSE library read.
pub fn public_key_pem(public_key: &[u8]) -> String {
    let mut spki = ED25519_SPKI_PREFIX.to_vec();
    spki.extend_from_slice(public_key);
    let body = base64::engine::general_purpose::STANDARD.encode(spki);
    format!("{PUBLIC_PEM_BEGIN}\n{body}\n{PUBLIC_PEM_END}\n")
}

/// A signing key and the matching verification key.
pub struct KeyMaterial {
    pub algorithm: Algorithm,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
    pub origin: KeyOrigin,
}

impl KeyMaterial {
    /// Picks the key as described in the module docs.
    pub fn load(
        secret: Option<&SecretString>,
        key_file: Option<&Path>,
        data_dir: &Path,
    ) -> anyhow::Result<Self> {
        if let Some(secret) = secret {
            if key_file.is_some() {
                bail!("give either BOXOFFICE_JWT_SECRET or --jwt-key-file, not both");
            }
            return Self::from_secret(secret);
        }
        let (pem, origin) = ed25519_pem(key_file, &data_dir.join(GENERATED_KEY_FILE), "JWT key")?;
        let context = format!("the {origin}");
        Self::from_ed25519_pem(&pem, origin).context(context)
    }

    /// HS256 with a configured secret.
    pub fn from_secret(secret: &SecretString) -> anyhow::Result<Self> {
        let bytes = secret.expose_secret().as_bytes();
        if bytes.len() < MIN_SECRET_BYTES {
            bail!(
                "BOXOFFICE_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes long \
                 (try: openssl rand -base64 48)"
            );
        }
        Ok(Self {
            algorithm: Algorithm::HS256,
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
            origin: KeyOrigin::ConfiguredSecret,
        })
    }

    /// EdDSA with an Ed25519 key in PKCS#8 PEM.
    pub fn from_ed25519_pem(pem: &str, origin: KeyOrigin) -> anyhow::Result<Self> {
        let der = pem_to_der(pem)?;
        let pair = ed25519_pair(pem)?;
        Ok(Self {
            algorithm: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_der(&der),
            decoding: DecodingKey::from_ed_der(pair.public_key().as_ref()),
            origin,
        })
    }

    /// A verifier for tokens signed with this key.
    pub fn verifier(&self) -> TokenVerifier {
        TokenVerifier::new(self.algorithm, self.decoding.clone())
    }
}

/// A verifier from an Ed25519 public key in `SubjectPublicKeyInfo` PEM (`-----BEGIN PUBLIC
/// KEY-----`, as `boxoffice keygen` and `openssl pkey -pubout` write it).
pub fn load_public_key(path: &Path) -> anyhow::Result<TokenVerifier> {
    let pem = fs::read_to_string(path)
        .with_context(|| format!("reading the JWT public key file {}", path.display()))?;
    public_key_from_pem(&pem).with_context(|| format!("the JWT public key file {}", path.display()))
}

/// See [`load_public_key`].
pub fn public_key_from_pem(pem: &str) -> anyhow::Result<TokenVerifier> {
    let der = pem_block(pem, PUBLIC_PEM_BEGIN, PUBLIC_PEM_END)?;
    let key = der
        .strip_prefix(&ED25519_SPKI_PREFIX[..])
        .filter(|key| key.len() == 32)
        .context("not an Ed25519 public key (expected a 44-byte SubjectPublicKeyInfo)")?;
    Ok(TokenVerifier::new(
        Algorithm::EdDSA,
        DecodingKey::from_ed_der(key),
    ))
}

/// A new Ed25519 key pair: the private key in PKCS#8 PEM and the public key in
/// `SubjectPublicKeyInfo` PEM.
pub fn generate_key_pair() -> anyhow::Result<(SecretString, String)> {
    let private = generate_ed25519_pem()?;
    let public = public_key_pem(ed25519_pair(&private)?.public_key().as_ref());
    Ok((SecretString::from(private), public))
}

/// Writes a new key pair for `boxoffice keygen`: the private key readable by its owner only.
/// Refuses to overwrite either file, so that a typo cannot invalidate every token in circulation.
pub fn write_key_pair(private_path: &Path, public_path: &Path) -> anyhow::Result<()> {
    for path in [private_path, public_path] {
        if path.exists() {
            bail!("{} exists; keygen never overwrites a key", path.display());
        }
    }
    let (private, public) = generate_key_pair()?;
    write_private_file(private_path, private.expose_secret().as_bytes())?;
    fs::write(public_path, public).with_context(|| format!("writing {}", public_path.display()))?;
    Ok(())
}

fn generate_ed25519_pem() -> anyhow::Result<String> {
    let pair = Ed25519KeyPair::generate()
        .map_err(|_| anyhow::anyhow!("could not generate an Ed25519 key"))?;
    let document = pair
        .to_pkcs8()
        .map_err(|_| anyhow::anyhow!("could not encode the Ed25519 key"))?;
    let body = base64::engine::general_purpose::STANDARD.encode(document.as_ref());
    Ok(format!("{PEM_BEGIN}\n{body}\n{PEM_END}\n"))
}

fn pem_to_der(pem: &str) -> anyhow::Result<Vec<u8>> {
    pem_block(pem, PEM_BEGIN, PEM_END)
}

fn pem_block(pem: &str, begin: &str, end: &str) -> anyhow::Result<Vec<u8>> {
    let start = pem
        .find(begin)
        .with_context(|| format!("expected a PEM block starting with {begin}"))?
        + begin.len();
    let end = pem[start..]
        .find(end)
        .with_context(|| format!("the PEM block has no {end} line"))?
        + start;
    let body: String = pem[start..end].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .context("the PEM block is not valid base64")
}

/// Writes a file readable by its owner only, atomically (temporary file, then rename).
fn write_private_file(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(contents)?;
    file.sync_all()?;
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_secrets_are_refused() {
        let secret = SecretString::from("too short");
        assert!(KeyMaterial::from_secret(&secret).is_err());
    }

    #[test]
    fn a_generated_key_is_kept_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = KeyMaterial::load(None, None, dir.path()).unwrap();
        assert!(matches!(first.origin, KeyOrigin::Generated(_)));
        let second = KeyMaterial::load(None, None, dir.path()).unwrap();
        assert!(matches!(second.origin, KeyOrigin::Loaded(_)));
        assert_eq!(first.encoding.as_bytes(), second.encoding.as_bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(GENERATED_KEY_FILE))
                .unwrap()
                .permissions();
            assert_eq!(mode.mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn the_public_half_verifies_what_the_private_half_signs_and_nothing_else() {
        use crate::token::{AUDIENCE, AccessClaims, ISSUER, Role};
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = (dir.path().join("k.pem"), dir.path().join("k.pub.pem"));
        write_key_pair(&private, &public).unwrap();
        assert!(
            write_key_pair(&private, &public).is_err(),
            "never overwrites"
        );
        let signer = KeyMaterial::load(None, Some(&private), dir.path()).unwrap();
        let verifier = load_public_key(&public).unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = AccessClaims {
            sub: uuid::Uuid::now_v7(),
            sid: uuid::Uuid::now_v7(),
            role: Role::Customer,
            iat: now,
            exp: now + 60,
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            jti: uuid::Uuid::now_v7(),
        };
        let header = jsonwebtoken::Header::new(Algorithm::EdDSA);
        let token = jsonwebtoken::encode(&header, &claims, &signer.encoding).unwrap();
        assert_eq!(verifier.verify(&token).unwrap(), claims);

        let other = KeyMaterial::from_ed25519_pem(
            &generate_ed25519_pem().unwrap(),
            KeyOrigin::ConfiguredSecret,
        )
        .unwrap();
        let forged = jsonwebtoken::encode(&header, &claims, &other.encoding).unwrap();
        assert!(verifier.verify(&forged).is_err());
        // A private key where the public one belongs is refused, not silently used.
        assert!(load_public_key(&private).is_err());
    }

    #[test]
    fn secret_and_key_file_together_are_ambiguous() {
        let dir = tempfile::tempdir().unwrap();
        let secret = SecretString::from("x".repeat(40));
        let error = KeyMaterial::load(Some(&secret), Some(Path::new("k.pem")), dir.path());
        assert!(error.is_err());
    }
}
