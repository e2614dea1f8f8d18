//! Bearer tokens and their roles: issued into files only their owner can read (the admin token)
//! or handed out once by the API (`shipway token create`), stored as SHA-256 hashes.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rand::Rng;
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

/// What a token may do; each role may do everything the one before may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read-only: get, list, watch, events, logs, version, metrics.
    Viewer,
    /// A viewer that may also apply and delete objects.
    Deployer,
    /// Everything, token management included.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Deployer, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Deployer => "deployer",
            Role::Admin => "admin",
        }
    }

    /// A role by name; the error is Kubernetes' wording for a value outside an enum.
    pub fn parse(value: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == value)
            .ok_or_else(|| {
                format!(
                    "Unsupported value: {value:?}: supported values: \"viewer\", \"deployer\", \"admin\""
                )
            })
    }

    /// What a refused caller of this role may do, for the 403 message.
    pub fn scope(self) -> &'static str {
        match self {
            Role::Viewer => "may only read",
            Role::Deployer => "may read, apply and delete objects, not manage tokens",
            Role::Admin => "may do everything",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a token belongs to, as `tokens.json` holds it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenRecord {
    pub name: String,
    pub role: String,
    /// Hex SHA-256 of the token. Tokens are 256-bit random, so a plain hash is enough: there is
    /// nothing to brute-force that a salt would protect.
    pub sha256: String,
}

/// Why a token could not be created or deleted.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("tokens {0:?} already exists: delete it first to issue a new one")]
    AlreadyExists(String),
    #[error("tokens {0:?} not found; `shipway token list` lists what exists")]
    NotFound(String),
    #[error("tokens {name:?} is invalid: {field}: {message}")]
    Invalid {
        name: String,
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    Store(#[from] AuthError),
}

/// The tokens the server accepts, shared by every request; created and deleted tokens are
/// written to `tokens.json` before they take effect.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    records: Arc<RwLock<Vec<(TokenRecord, Role)>>>,
    /// `tokens.json`; `None` keeps changes in memory.
    path: Option<PathBuf>,
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
            if let Err(why) = Role::parse(&r.role) {
                return Err(AuthError::Corrupt {
                    path: list_path,
                    message: format!("[{i}].role: {why}"),
                });
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
        let records = records
            .into_iter()
            .filter_map(|r| Role::parse(&r.role).ok().map(|role| (r, role)))
            .collect();
        let tokens = Tokens {
            records: Arc::new(RwLock::new(records)),
            path: Some(list_path),
        };
        Ok((tokens, outcome))
    }

    /// The name and role of a presented token, compared in constant time against every stored
    /// hash.
    pub fn verify(&self, presented: &str) -> Option<(String, Role)> {
        let digest = hash(presented.trim());
        let mut found = None;
        for (r, role) in self.read().iter() {
            if bool::from(r.sha256.as_bytes().ct_eq(digest.as_bytes())) {
                found = Some((r.name.clone(), *role));
            }
        }
        found
    }

    /// Every token's name and role, by name; never the secrets.
    pub fn list(&self) -> Vec<(String, Role)> {
        let mut all: Vec<_> = self
            .read()
            .iter()
            .map(|(r, role)| (r.name.clone(), *role))
            .collect();
        all.sort();
        all
    }

    /// Issues a new token; the only time its secret is seen.
    pub fn create(&self, name: &str, role: Role) -> Result<String, TokenError> {
        check_word(name).map_err(|why| TokenError::Invalid {
            name: name.to_string(),
            field: "metadata.name",
            message: format!("Invalid value: {name:?}: {why}"),
        })?;
        let mut records = self.write();
        if records.iter().any(|(r, _)| r.name == name) {
            return Err(TokenError::AlreadyExists(name.to_string()));
        }
        let token = new_token();
        let mut next = records.clone();
        next.push((
            TokenRecord {
                name: name.to_string(),
                role: role.as_str().to_string(),
                sha256: hash(&token),
            },
            role,
        ));
        self.persist(&next)?;
        *records = next;
        Ok(token)
    }

    /// Revokes a token. The admin token is rotated by removing its file instead, so the data
    /// directory always holds one that works.
    pub fn delete(&self, name: &str) -> Result<(), TokenError> {
        if name == "admin" {
            return Err(TokenError::Invalid {
                name: name.to_string(),
                field: "metadata.name",
                message: format!(
                    "Forbidden: the admin token cannot be deleted; remove {ADMIN_TOKEN_FILE} from the data directory and restart to rotate it"
                ),
            });
        }
        let mut records = self.write();
        if !records.iter().any(|(r, _)| r.name == name) {
            return Err(TokenError::NotFound(name.to_string()));
        }
        let next: Vec<_> = records
            .iter()
            .filter(|(r, _)| r.name != name)
            .cloned()
            .collect();
        self.persist(&next)?;
        *records = next;
        Ok(())
    }

    fn persist(&self, records: &[(TokenRecord, Role)]) -> Result<(), AuthError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let plain: Vec<&TokenRecord> = records.iter().map(|(r, _)| r).collect();
        write_private(path, &serde_json::to_vec_pretty(&plain).unwrap_or_default())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<(TokenRecord, Role)>> {
        self.records.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<(TokenRecord, Role)>> {
        self.records.write().unwrap_or_else(|p| p.into_inner())
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
            tokens.verify(&token).map(|(_, role)| role),
            Some(Role::Admin)
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

        fs::write(
            &list,
            text.replace("\"role\": \"admin\"", "\"role\": \"root\""),
        )
        .unwrap();
        let e = Tokens::load_or_init(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains(r#"[0].role: Unsupported value: "root": supported values: "viewer", "deployer", "admin""#),
            "{e}"
        );
    }

    #[test]
    fn created_tokens_work_at_once_survive_a_restart_and_deleted_ones_stop_working() {
        let dir = tempfile::tempdir().unwrap();
        let (tokens, _) = Tokens::load_or_init(dir.path()).unwrap();
        let ci = tokens.create("ci", Role::Deployer).unwrap();
        assert_eq!(tokens.verify(&ci), Some(("ci".into(), Role::Deployer)));
        assert!(matches!(
            tokens.create("ci", Role::Viewer),
            Err(TokenError::AlreadyExists(_))
        ));
        let list = fs::read_to_string(dir.path().join(TOKENS_FILE)).unwrap();
        assert!(!list.contains(&ci), "only the hash is stored");

        let (again, _) = Tokens::load_or_init(dir.path()).unwrap();
        assert_eq!(
            again.list(),
            [("admin".into(), Role::Admin), ("ci".into(), Role::Deployer)]
        );
        again.delete("ci").unwrap();
        assert_eq!(again.verify(&ci), None);
        assert!(matches!(again.delete("ci"), Err(TokenError::NotFound(_))));
        assert!(matches!(
            again.delete("admin"),
            Err(TokenError::Invalid { .. })
        ));
        let (third, _) = Tokens::load_or_init(dir.path()).unwrap();
        assert_eq!(third.verify(&ci), None, "the deletion was written");
    }
}
