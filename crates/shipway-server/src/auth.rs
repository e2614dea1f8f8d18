//! Bearer tokens: issued into files only their owner can read, stored as SHA-256 hashes.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The file, in the data directory, that holds the admin token in clear for local clients.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// The file, in the data directory, that holds the hashes of every issued token.
const TOKENS_FILE: &str = "tokens.json";

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not a valid token list ({message}); move it away to issue a new admin token"
    )]
    Corrupt { path: PathBuf, message: String },
}

/// Who a token belongs to. Roles other than admin come with multi-user support.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenRecord {
    pub name: String,
    pub role: String,
    /// Hex SHA-256 of the token. Tokens are 256-bit random, so a plain hash is enough: there is
    /// nothing to brute-force that a salt would protect.
    pub sha256: String,
}

/// The tokens the server accepts.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    records: Vec<TokenRecord>,
}

/// What `ensure_admin_token` did, so `shipway up` can tell the user.
#[derive(Debug, PartialEq, Eq)]
pub enum AdminToken {
    Created(PathBuf),
    Existing(PathBuf),
}

impl Tokens {
    /// Loads the token hashes of `data_dir`, issuing an admin token on first start (or when its file
    /// was removed, which is how an operator rotates it).
    pub fn load_or_init(data_dir: &Path) -> Result<(Tokens, AdminToken), AuthError> {
        let list_path = data_dir.join(TOKENS_FILE);
        let mut records: Vec<TokenRecord> = match fs::read(&list_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| AuthError::Corrupt {
                path: list_path.clone(),
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(AuthError::Io {
                    action: "read",
                    path: list_path,
                    source,
                });
            }
        };
        // Names and roles are shown on terminals and written into the audit log as actors: only
        // plain words, so none can carry an escape sequence.
        for (i, r) in records.iter().enumerate() {
            for (field, value) in [("name", &r.name), ("role", &r.role)] {
                if let Err(why) = check_word(value) {
                    return Err(AuthError::Corrupt {
                        path: list_path,
                        message: format!("[{i}].{field}: Invalid value: {value:?}: {why}"),
                    });
                }
            }
        }
        let token_path = data_dir.join(ADMIN_TOKEN_FILE);
        let admin_present = records.iter().any(|r| r.name == "admin");
        let outcome = if admin_present && token_path.exists() {
            AdminToken::Existing(token_path)
        } else {
            let token = new_token();
            records.retain(|r| r.name != "admin");
            records.push(TokenRecord {
                name: "admin".into(),
                role: "admin".into(),
                sha256: hash(&token),
            });
            // The hash list first: a crash between the two writes leaves a token file that does not
            // work yet, which the next start replaces, rather than a working token nobody can read.
            write_private(
                &list_path,
                &serde_json::to_vec_pretty(&records).unwrap_or_default(),
            )?;
            write_private(&token_path, format!("{token}\n").as_bytes())?;
            AdminToken::Created(token_path)
        };
        Ok((Tokens { records }, outcome))
    }

    /// The record of a presented token, compared in constant time against every stored hash.
    pub fn verify(&self, presented: &str) -> Option<&TokenRecord> {
        let digest = hash(presented.trim());
        let mut found = None;
        for r in &self.records {
            if bool::from(r.sha256.as_bytes().ct_eq(digest.as_bytes())) {
                found = Some(r);
            }
        }
        found
    }
}

/// A token's name or role: 1 to 63 lower-case letters, digits and `-._@:`, starting with a
/// letter or digit.
fn check_word(value: &str) -> Result<(), &'static str> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-._@:".contains(c);
    if value.is_empty() || value.len() > 63 {
        return Err("must be 1 to 63 characters");
    }
    if !value.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        || !value.chars().all(allowed)
    {
        return Err(
            "must be lower-case letters, digits and '-._@:', starting with a letter or digit",
        );
    }
    Ok(())
}

fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("shipway_{}", hex::encode(bytes))
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Writes a file readable by its owner only, atomically (temp file + rename) and durably.
fn write_private(path: &Path, contents: &[u8]) -> Result<(), AuthError> {
    let tmp = path.with_extension("tmp");
    let io = |action, source| AuthError::Io {
        action,
        path: path.to_path_buf(),
        source,
    };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io("create", e))?;
    // `mode` only applies to new files; a stale temp file may have other permissions.
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(|e| io("chmod", e))?;
    file.write_all(contents).map_err(|e| io("write", e))?;
    file.sync_all().map_err(|e| io("sync", e))?;
    fs::rename(&tmp, path).map_err(|e| io("rename", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_start_issues_a_private_admin_token_and_later_starts_keep_it() {
        let dir = tempfile::tempdir().unwrap();
        let (tokens, outcome) = Tokens::load_or_init(dir.path()).unwrap();
        let path = dir.path().join(ADMIN_TOKEN_FILE);
        assert_eq!(outcome, AdminToken::Created(path.clone()));
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let token = fs::read_to_string(&path).unwrap();
        assert_eq!(
            tokens.verify(&token).map(|r| r.role.as_str()),
            Some("admin")
        );
        assert!(tokens.verify("shipway_wrong").is_none());
        // Only the hash is stored.
        let list = fs::read_to_string(dir.path().join(TOKENS_FILE)).unwrap();
        assert!(!list.contains(token.trim()));

        let (again, outcome) = Tokens::load_or_init(dir.path()).unwrap();
        assert_eq!(outcome, AdminToken::Existing(path.clone()));
        assert!(again.verify(&token).is_some());

        fs::remove_file(&path).unwrap();
        let (rotated, _) = Tokens::load_or_init(dir.path()).unwrap();
        assert!(
            rotated.verify(&token).is_none(),
            "a removed token file rotates the token"
        );
    }

    #[test]
    fn a_token_name_or_role_with_control_characters_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        Tokens::load_or_init(dir.path()).unwrap();
        let list = dir.path().join(TOKENS_FILE);
        let text = fs::read_to_string(&list).unwrap();
        fs::write(
            &list,
            text.replace("\"role\": \"admin\"", "\"role\": \"\\u001b[31madmin\""),
        )
        .unwrap();
        let e = Tokens::load_or_init(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("[0].role: Invalid value: \"\\u{1b}[31madmin\": must be lower-case letters"),
            "{e}"
        );
        assert!(!e.contains('\u{1b}'), "{e}");
    }
}
