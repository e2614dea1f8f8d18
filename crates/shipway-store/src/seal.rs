//! Encryption at rest: the server's 256-bit key (`SecretKey`) and the envelope every secret value
//! is stored in (`Sealer`), XChaCha20-Poly1305 with a random nonce per value.
//!
//! An envelope is `sw1:` followed by base64 of `version (1) | key id (4) | nonce (24) |
//! ciphertext+tag`. The version byte names the algorithm and layout, so a later key rotation can
//! add one; the key id says which key sealed it, so a wrong key is named as such rather than as
//! tampering. The associated data is the version, the key id and the row's context (the object
//! key, or the pipeline secret's scope and name): a ciphertext copied to another row does not open.

use std::io::Write as _;
use std::path::Path;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// What every envelope starts with, so a sealed value is told from a plain one at a glance.
pub const PREFIX: &str = "sw1:";
const VERSION: u8 = 1;
const KEY_ID_LEN: usize = 4;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// The environment variable that carries the key (base64 of 32 bytes) instead of the key file.
pub const KEY_ENV: &str = "SHIPWAY_SECRET_KEY";

/// Why a key could not be had, or a sealed value not opened. Never carries a value or a key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("{source_name}: {why}")]
    BadKey { source_name: String, why: String },
    #[error("{context}: sealed value is malformed ({why}): the database is damaged")]
    Malformed { context: String, why: String },
    #[error(
        "{context}: sealed with envelope version {version}, which this Shipway does not know: upgrade Shipway"
    )]
    UnknownVersion { context: String, version: u8 },
    #[error(
        "{context}: sealed with another key (key id {sealed}, this server's is {ours}): start the server with the key the data was written with ({KEY_ENV} or secret.key)"
    )]
    WrongKey {
        context: String,
        sealed: String,
        ours: String,
    },
    #[error(
        "{context}: sealed value does not authenticate: it was altered, or copied from another record"
    )]
    Tampered { context: String },
}

/// A 256-bit key. Its `Debug` shows the key id only.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey(id {})", hex_id(&self.id()))
    }
}

impl SecretKey {
    /// A fresh random key from the operating system's generator.
    pub fn generate() -> SecretKey {
        SecretKey(chacha20poly1305::Key::generate().into())
    }

    /// Base64 (standard, padding optional) of exactly 32 bytes. `source_name` names where the
    /// text came from, for the error.
    pub fn from_base64(text: &str, source_name: &str) -> Result<SecretKey, SealError> {
        let bad = |why: String| SealError::BadKey {
            source_name: source_name.to_string(),
            why,
        };
        let text = text.trim();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
            .map_err(|e| {
                bad(format!(
                    "not base64 ({e}): give base64 of 32 random bytes, e.g. `head -c32 /dev/urandom | base64`"
                ))
            })?;
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            bad(format!(
                "decodes to {} bytes, a key is 32: give base64 of 32 random bytes",
                bytes.len()
            ))
        })?;
        Ok(SecretKey(key))
    }

    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    /// The key in `path`, created (32 random bytes as base64, mode 0600, written to a temporary
    /// file and renamed into place, so a crash leaves no half key) when the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<SecretKey, SealError> {
        let name = path.display().to_string();
        let bad = |why: String| SealError::BadKey {
            source_name: name.clone(),
            why,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => return SecretKey::from_base64(&text, &name),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(bad(format!("cannot read: {e}"))),
        }
        let key = SecretKey::generate();
        let dir = path.parent().unwrap_or(Path::new("."));
        let tmp = dir.join(format!(
            ".{}.tmp-{}",
            path.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
            std::process::id()
        ));
        let write = || -> std::io::Result<()> {
            let mut file = open_private(&tmp)?;
            file.write_all(key.to_base64().as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            // hard_link fails if another process made the key meanwhile: theirs wins, read it.
            std::fs::hard_link(&tmp, path)
        };
        let res = write();
        let _ = std::fs::remove_file(&tmp);
        match res {
            Ok(()) => {
                if let Ok(d) = std::fs::File::open(dir) {
                    let _ = d.sync_all();
                }
                Ok(key)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text =
                    std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read: {e}")))?;
                SecretKey::from_base64(&text, &name)
            }
            Err(e) => Err(bad(format!("cannot create: {e}"))),
        }
    }

    /// The key named by [`KEY_ENV`] when set, else the one in `path` (created if missing).
    pub fn from_env_or_file(path: &Path) -> Result<SecretKey, SealError> {
        match std::env::var(KEY_ENV) {
            Ok(text) => SecretKey::from_base64(&text, KEY_ENV),
            Err(std::env::VarError::NotUnicode(_)) => Err(SealError::BadKey {
                source_name: KEY_ENV.to_string(),
                why: "is not UTF-8: give base64 of 32 random bytes".into(),
            }),
            Err(std::env::VarError::NotPresent) => SecretKey::load_or_create(path),
        }
    }

    /// A short public name of the key: the first bytes of its SHA-256 under a label, which says
    /// nothing of the key but tells two keys apart.
    fn id(&self) -> [u8; KEY_ID_LEN] {
        use sha2::Digest as _;
        let digest = sha2::Sha256::new()
            .chain_update(b"shipway secret key id\0")
            .chain_update(self.0)
            .finalize();
        let mut id = [0; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        id
    }
}

#[cfg(unix)]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

fn hex_id(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// Seals and opens values with one key. Cheap to clone; `Debug` shows the key id only.
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
    id: [u8; KEY_ID_LEN],
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealer(key id {})", hex_id(&self.id))
    }
}

impl Sealer {
    pub fn new(key: &SecretKey) -> Sealer {
        Sealer {
            cipher: XChaCha20Poly1305::new(&key.0.into()),
            id: key.id(),
        }
    }

    fn aad(version: u8, id: &[u8], context: &str) -> Vec<u8> {
        let mut aad = Vec::with_capacity(1 + id.len() + context.len());
        aad.push(version);
        aad.extend_from_slice(id);
        aad.extend_from_slice(context.as_bytes());
        aad
    }

    /// `plaintext` sealed for the row `context` names.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> String {
        let nonce = XNonce::generate();
        let aad = Sealer::aad(VERSION, &self.id, context);
        let ciphertext = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any message shorter than 256 GiB");
        let mut raw = Vec::with_capacity(1 + KEY_ID_LEN + NONCE_LEN + ciphertext.len());
        raw.push(VERSION);
        raw.extend_from_slice(&self.id);
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&ciphertext);
        format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(raw)
        )
    }

    /// The plaintext of `envelope`, which must have been sealed for `context` with this key.
    pub fn open(&self, context: &str, envelope: &str) -> Result<Vec<u8>, SealError> {
        let malformed = |why: &str| SealError::Malformed {
            context: context.to_string(),
            why: why.to_string(),
        };
        let body = envelope
            .strip_prefix(PREFIX)
            .ok_or_else(|| malformed("no envelope prefix"))?;
        let raw = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(body)
            .map_err(|_| malformed("not base64"))?;
        let (&version, rest) = raw.split_first().ok_or_else(|| malformed("empty"))?;
        if version != VERSION {
            return Err(SealError::UnknownVersion {
                context: context.to_string(),
                version,
            });
        }
        if rest.len() < KEY_ID_LEN + NONCE_LEN + TAG_LEN {
            return Err(malformed("too short"));
        }
        let (id, rest) = rest.split_at(KEY_ID_LEN);
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        if id != self.id {
            return Err(SealError::WrongKey {
                context: context.to_string(),
                sealed: hex_id(id),
                ours: hex_id(&self.id),
            });
        }
        let nonce = XNonce::try_from(nonce).map_err(|_| malformed("bad nonce"))?;
        let aad = Sealer::aad(version, id, context);
        self.cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Tampered {
                context: context.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> Sealer {
        Sealer::new(&SecretKey::generate())
    }

    #[test]
    fn a_sealed_value_opens_with_its_key_and_context_and_hides_the_plaintext() {
        let s = sealer();
        let env = s.seal("Secret/default/db", b"hunter2-plaintext");
        assert!(env.starts_with(PREFIX));
        assert!(!env.contains("hunter2"));
        assert_eq!(
            s.open("Secret/default/db", &env).unwrap(),
            b"hunter2-plaintext"
        );
        // A random nonce per value: the same plaintext never seals the same way twice.
        assert_ne!(env, s.seal("Secret/default/db", b"hunter2-plaintext"));
    }

    #[test]
    fn a_wrong_key_is_named_as_such() {
        let env = sealer().seal("ctx", b"v");
        let err = sealer().open("ctx", &env).unwrap_err();
        assert!(matches!(err, SealError::WrongKey { .. }), "{err:?}");
        assert!(err.to_string().contains("another key"), "{err}");
    }

    #[test]
    fn a_tampered_ciphertext_is_refused() {
        let s = sealer();
        let env = s.seal("ctx", b"some value");
        let mut raw = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(&env[PREFIX.len()..])
            .unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        let tampered = format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(&raw)
        );
        let err = s.open("ctx", &tampered).unwrap_err();
        assert_eq!(
            err,
            SealError::Tampered {
                context: "ctx".into()
            }
        );
    }

    #[test]
    fn a_ciphertext_moved_to_another_row_is_refused() {
        let s = sealer();
        let env = s.seal("Secret/default/a", b"value of a");
        let err = s.open("Secret/default/b", &env).unwrap_err();
        assert!(matches!(err, SealError::Tampered { .. }), "{err:?}");
        assert!(err.to_string().contains("Secret/default/b"), "{err}");
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let s = sealer();
        for bad in ["", "sw1:", "sw1:!!!", "plain", "sw1:AQ", "sw1:AQIDBA"] {
            let err = s.open("ctx", bad).unwrap_err();
            assert!(
                matches!(err, SealError::Malformed { .. }),
                "{bad:?}: {err:?}"
            );
        }
        let future = format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode([9u8; 64])
        );
        assert!(matches!(
            s.open("ctx", &future).unwrap_err(),
            SealError::UnknownVersion { version: 9, .. }
        ));
    }

    #[test]
    fn keys_from_base64_check_their_length() {
        let key = SecretKey::generate();
        let back = SecretKey::from_base64(&key.to_base64(), "test").unwrap();
        assert_eq!(back.0, key.0);
        let err = SecretKey::from_base64("c2hvcnQ=", KEY_ENV).unwrap_err();
        assert!(err.to_string().starts_with(KEY_ENV), "{err}");
        assert!(err.to_string().contains("decodes to 5 bytes"), "{err}");
        let err = SecretKey::from_base64("not base64!", KEY_ENV).unwrap_err();
        assert!(err.to_string().contains("not base64"), "{err}");
    }

    #[test]
    fn the_key_file_is_created_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        let first = SecretKey::load_or_create(&path).unwrap();
        let second = SecretKey::load_or_create(&path).unwrap();
        assert_eq!(first.0, second.0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // No temporary file left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        std::fs::write(&path, "garbage").unwrap();
        let err = SecretKey::load_or_create(&path).unwrap_err();
        assert!(err.to_string().contains("secret.key"), "{err}");
    }
}
