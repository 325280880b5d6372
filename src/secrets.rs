//! Target secrets at rest: XChaCha20-Poly1305 under the key from `storage.secrets_key` (or,
//! on the embedded default, `<data_dir>/secrets.key`). Each value is sealed with a fresh random
//! 24-byte nonce and with `target_id || 0x00 || name` as associated data, so a ciphertext
//! copied onto another target or another name no longer opens.

use std::path::{Path, PathBuf};

use anyhow::Context;
use chacha20poly1305::{
    XChaCha20Poly1305, XNonce,
    aead::{Aead, KeyInit, Payload},
};

pub use herald_channels::SecretString;

/// At most this many secrets per target.
pub const MAX_SECRETS: usize = 16;
/// Secret names: `[a-z0-9_]`, at most this many characters.
pub const MAX_SECRET_NAME_CHARS: usize = 64;
/// A secret value: a token or a key, never a document.
pub const MAX_SECRET_BYTES: usize = 4096;
/// Where `herald serve` keeps a generated key on the embedded default.
pub const KEY_FILE: &str = "secrets.key";

const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 24;

/// The key target secrets are sealed with. Prints as `[redacted]`.
#[derive(Clone)]
pub struct SecretsKey([u8; KEY_BYTES]);

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsKey([redacted])")
    }
}

/// A sealed secret as stored: the nonce and the ciphertext (with its tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

fn associated_data(target_id: &str, name: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(target_id.len() + 1 + name.len());
    aad.extend_from_slice(target_id.as_bytes());
    aad.push(0);
    aad.extend_from_slice(name.as_bytes());
    aad
}

impl SecretsKey {
    /// Parses 64 hex characters; the message never repeats the input.
    pub fn from_hex(raw: &str) -> Result<Self, String> {
        let bytes =
            hex::decode(raw.trim()).map_err(|_| format!("must be {} hex characters", KEY_BYTES * 2))?;
        let key: [u8; KEY_BYTES] = bytes
            .try_into()
            .map_err(|_| format!("must be {} hex characters", KEY_BYTES * 2))?;
        Ok(Self(key))
    }

    pub fn generate() -> anyhow::Result<Self> {
        let mut key = [0u8; KEY_BYTES];
        getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("no randomness for a key: {e}"))?;
        Ok(Self(key))
    }

    fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&self.0.into())
    }

    /// A 32-byte key for `purpose`, derived from this one (SHA-256 over the key and the
    /// purpose): every instance that shares the secrets key derives the same, and nothing else
    /// needs distributing. The device issuer key is derived so.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        hasher.update(self.0);
        hasher.update([0x1f]);
        hasher.update(purpose.as_bytes());
        hasher.finalize().into()
    }

    pub fn seal(&self, target_id: &str, name: &str, value: &SecretString) -> anyhow::Result<Sealed> {
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).map_err(|e| anyhow::anyhow!("no randomness for a nonce: {e}"))?;
        let aad = associated_data(target_id, name);
        let ciphertext = self
            .cipher()
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: value.expose().as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| anyhow::anyhow!("sealing secret `{name}` of target {target_id} failed"))?;
        Ok(Sealed {
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    /// Fails when the key is not the one it was sealed with, the row was edited, or it belongs
    /// to another target or name.
    pub fn open(&self, target_id: &str, name: &str, sealed: &Sealed) -> anyhow::Result<SecretString> {
        let unreadable = || {
            anyhow::anyhow!(
                "secret `{name}` of target {target_id} does not decrypt: another storage.secrets_key, or the row was altered"
            )
        };
        let nonce: [u8; NONCE_BYTES] = sealed.nonce.as_slice().try_into().map_err(|_| unreadable())?;
        let aad = associated_data(target_id, name);
        let plain = self
            .cipher()
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| unreadable())?;
        String::from_utf8(plain)
            .map(SecretString::new)
            .map_err(|_| unreadable())
    }
}

pub fn key_file(data_dir: &Path) -> PathBuf {
    data_dir.join(KEY_FILE)
}

/// The key this installation uses: `configured_hex` (`storage.secrets_key`) when set;
/// otherwise, on the embedded default (`embedded_data_dir`), the key file `herald serve`
/// generated, if there is one. `None`: no secrets can be stored or read.
pub fn configured_key(
    configured_hex: &str,
    embedded_data_dir: Option<&Path>,
) -> anyhow::Result<Option<SecretsKey>> {
    if !configured_hex.is_empty() {
        return SecretsKey::from_hex(configured_hex)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("storage.secrets_key: {e}"));
    }
    let Some(data_dir) = embedded_data_dir else {
        return Ok(None);
    };
    let path = key_file(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(raw) => SecretsKey::from_hex(&raw)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot read {}", path.display()))),
    }
}

/// Generates `<data_dir>/secrets.key` (readable by its owner only) unless it exists.
/// Returns its path when it was created now.
pub fn ensure_key_file(data_dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    let path = key_file(data_dir);
    if path.exists() {
        return Ok(None);
    }
    std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
    let key = SecretsKey::generate()?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    std::io::Write::write_all(&mut file, format!("{}\n", key.to_hex()).as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.sync_all()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SecretsKey {
        SecretsKey([byte; KEY_BYTES])
    }

    fn secret() -> SecretString {
        SecretString::new("S3CR3T-app-secret")
    }

    #[test]
    fn a_sealed_secret_opens_with_the_same_key_target_and_name() {
        let sealed = key(1).seal("t1", "app_secret", &secret()).expect("seals");
        assert_eq!(sealed.nonce.len(), NONCE_BYTES);
        assert!(!sealed.ciphertext.windows(b"S3CR3T".len()).any(|w| w == b"S3CR3T"));
        let opened = key(1).open("t1", "app_secret", &sealed).expect("opens");
        assert_eq!(opened.expose(), "S3CR3T-app-secret");
    }

    #[test]
    fn two_seals_of_one_value_differ() {
        let a = key(1).seal("t1", "app_secret", &secret()).expect("seals");
        let b = key(1).seal("t1", "app_secret", &secret()).expect("seals");
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn another_key_does_not_open_it() {
        let sealed = key(1).seal("t1", "app_secret", &secret()).expect("seals");
        assert!(key(2).open("t1", "app_secret", &sealed).is_err());
    }

    #[test]
    fn a_ciphertext_moved_to_another_target_or_name_does_not_open() {
        let sealed = key(1).seal("t1", "app_secret", &secret()).expect("seals");
        assert!(key(1).open("t2", "app_secret", &sealed).is_err());
        assert!(key(1).open("t1", "signing_key", &sealed).is_err());
        // The separator keeps ("t1", "app_secret") apart from ("t1a", "pp_secret").
        assert!(key(1).open("t1a", "pp_secret", &sealed).is_err());
    }

    #[test]
    fn a_tampered_ciphertext_or_nonce_does_not_open() {
        let sealed = key(1).seal("t1", "app_secret", &secret()).expect("seals");
        let mut flipped = sealed.clone();
        flipped.ciphertext[0] ^= 1;
        assert!(key(1).open("t1", "app_secret", &flipped).is_err());
        let mut nonce = sealed.clone();
        nonce.nonce[0] ^= 1;
        assert!(key(1).open("t1", "app_secret", &nonce).is_err());
        let mut short = sealed;
        short.nonce.pop();
        assert!(key(1).open("t1", "app_secret", &short).is_err());
    }

    #[test]
    fn a_key_is_64_hex_characters_and_never_printed() {
        let raw = "ab".repeat(KEY_BYTES);
        let key = SecretsKey::from_hex(&raw).expect("parses");
        assert!(!format!("{key:?}").contains("ab"));
        assert!(SecretsKey::from_hex(&"ab".repeat(KEY_BYTES - 1)).is_err());
        let wrong = SecretsKey::from_hex(&"zz".repeat(KEY_BYTES)).expect_err("not hex");
        assert!(!wrong.contains("zz"));
    }

    #[test]
    fn the_generated_key_file_is_owner_only_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("data");
        let path = ensure_key_file(&data_dir).expect("creates").expect("new file");
        assert!(ensure_key_file(&data_dir).expect("exists").is_none());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("metadata").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let key = configured_key("", Some(&data_dir))
            .expect("reads")
            .expect("a key");
        let sealed = key.seal("t", "n", &secret()).expect("seals");
        let again = configured_key("", Some(&data_dir))
            .expect("reads")
            .expect("a key");
        assert_eq!(
            again.open("t", "n", &sealed).expect("opens").expose(),
            "S3CR3T-app-secret"
        );
    }
}
