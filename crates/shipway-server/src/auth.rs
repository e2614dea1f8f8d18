//! Identities, their roles and their bearer tokens. A user (`shipway user add`) is who writes,
//! as the audit trail shows it; a token (`shipway token create --user`) is how a client proves
//! to be that user, until it expires or is revoked. Tokens are handed out once (by the API, or
//! the admin token in a file only its owner can read) and stored as SHA-256 hashes.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The file, in the data directory, that holds the admin token in clear for local clients.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// The file, in the data directory, that holds the users and the hashes of every issued token.
const TOKENS_FILE: &str = "tokens.json";
/// The identity `shipway up` creates, with the token of [`ADMIN_TOKEN_FILE`].
pub const ADMIN: &str = "admin";
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
    /// A viewer that may also apply and delete objects, sync, approve and promote.
    Deployer,
    /// Everything, users, tokens and secrets included.
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
            Role::Deployer => {
                "may read, apply and delete objects, sync, approve and promote, not manage users, tokens or secrets"
            }
            Role::Admin => "may do everything",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user as `tokens.json` holds it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserRecord {
    pub name: String,
    pub role: String,
}

/// A token as `tokens.json` holds it: whose it is, and until when.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenRecord {
    pub name: String,
    pub user: String,
    /// Hex SHA-256 of the token. Tokens are 256-bit random, so a plain hash is enough: there is
    /// nothing to brute-force that a salt would protect.
    pub sha256: String,
    /// RFC 3339; none: until revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

/// `tokens.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct TokenFile {
    users: Vec<UserRecord>,
    tokens: Vec<TokenRecord>,
}

/// `tokens.json` before users existed: each token was its own identity.
#[derive(Deserialize)]
struct LegacyToken {
    name: String,
    role: String,
    sha256: String,
}

/// Why a user or a token could not be created or deleted.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{resource} {name:?} already exists: {hint}")]
    AlreadyExists {
        resource: &'static str,
        name: String,
        hint: &'static str,
    },
    #[error("{resource} {name:?} not found; {hint}")]
    NotFound {
        resource: &'static str,
        name: String,
        hint: &'static str,
    },
    #[error("{resource} {name:?} is invalid: {field}: {message}")]
    Invalid {
        resource: &'static str,
        name: String,
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    Store(#[from] AuthError),
}

/// Who presented a valid token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The user: the actor of everything written with the token.
    pub user: String,
    pub role: Role,
    /// The token's name, for revoking it.
    pub token: String,
}

/// A token as listed: never its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    pub name: String,
    pub user: String,
    pub role: Role,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    pub expired: bool,
}

/// What to issue: a token of `user` (who must exist), or, as before users existed, a token
/// `name` whose user of the same name is created with `role` when it does not exist yet.
#[derive(Clone, Debug, Default)]
pub struct TokenRequest {
    pub name: Option<String>,
    pub user: Option<String>,
    pub role: Option<Role>,
    /// How long the token works; none: until revoked.
    pub expires_in: Option<Duration>,
}

#[derive(Clone, Debug)]
struct Token {
    record: TokenRecord,
    expires: Option<OffsetDateTime>,
}

#[derive(Clone, Debug, Default)]
struct State {
    users: Vec<(String, Role)>,
    tokens: Vec<Token>,
    /// Tokens of workflow runs: in memory only, so a restart (which ends every run) voids them.
    runs: Vec<RunToken>,
}

/// The token a workflow run's steps get as `SHIPWAY_TOKEN`.
#[derive(Clone, Debug)]
struct RunToken {
    sha256: String,
    /// `run:NAME`.
    user: String,
    expires: OffsetDateTime,
}

/// The prefix of a run token's user, reserved: no user or token name may start with it, so a
/// run is never mistaken for a person.
pub const RUN_USER_PREFIX: &str = "run:";

/// How long a run token works at most if its run never revokes it: GitHub's limit for a
/// job's `GITHUB_TOKEN`.
const RUN_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

impl State {
    fn role_of(&self, user: &str) -> Option<Role> {
        self.users
            .iter()
            .find(|(name, _)| name == user)
            .map(|(_, role)| *role)
    }

    fn file(&self) -> TokenFile {
        TokenFile {
            users: self
                .users
                .iter()
                .map(|(name, role)| UserRecord {
                    name: name.clone(),
                    role: role.as_str().to_string(),
                })
                .collect(),
            tokens: self.tokens.iter().map(|t| t.record.clone()).collect(),
        }
    }
}

/// The users and tokens the server accepts, shared by every request; a change is written to
/// `tokens.json` before it takes effect.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    state: Arc<RwLock<State>>,
    /// `tokens.json`; `None` keeps changes in memory.
    path: Option<PathBuf>,
}

/// What `ensure_admin_token` did, so `shipway up` can tell the user.
#[derive(Debug, PartialEq, Eq)]
pub enum AdminToken {
    Created(PathBuf),
    Existing(PathBuf),
}

const USER_HINT: &str =
    "`shipway user list` lists the users, `shipway user add NAME --role ROLE` adds one";
const TOKEN_HINT: &str = "`shipway token list` lists what exists";

impl Tokens {
    /// Loads the users and token hashes of `data_dir`, issuing an admin token on first start (or
    /// when its file was removed, which is how an operator rotates it).
    pub fn load_or_init(data_dir: &Path) -> Result<(Tokens, AdminToken), AuthError> {
        let list_path = data_dir.join(TOKENS_FILE);
        let corrupt = |message: String| AuthError::Corrupt {
            path: list_path.clone(),
            message,
        };
        let file = match fs::read(&list_path) {
            Ok(bytes) => parse_file(&bytes).map_err(corrupt)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => TokenFile::default(),
            Err(source) => {
                return Err(AuthError::Io {
                    action: "read",
                    path: list_path,
                    source,
                });
            }
        };
        let mut state = check_file(&file).map_err(corrupt)?;
        let token_path = data_dir.join(ADMIN_TOKEN_FILE);
        let admin_present = state.tokens.iter().any(|t| t.record.name == ADMIN);
        let outcome = if admin_present && token_path.exists() {
            AdminToken::Existing(token_path)
        } else {
            let token = new_token();
            state.users.retain(|(name, _)| name != ADMIN);
            state.users.insert(0, (ADMIN.to_string(), Role::Admin));
            state.tokens.retain(|t| t.record.name != ADMIN);
            state.tokens.insert(
                0,
                Token {
                    record: TokenRecord {
                        name: ADMIN.into(),
                        user: ADMIN.into(),
                        sha256: hash(&token),
                        expires: None,
                    },
                    expires: None,
                },
            );
            // The hash list first: a crash between the two writes leaves a token file that does not
            // work yet, which the next start replaces, rather than a working token nobody can read.
            write_private(&list_path, &to_json(&state.file()))?;
            write_private(&token_path, format!("{token}\n").as_bytes())?;
            AdminToken::Created(token_path)
        };
        let tokens = Tokens {
            state: Arc::new(RwLock::new(state)),
            path: Some(list_path),
        };
        Ok((tokens, outcome))
    }

    /// Who a presented token belongs to, if it is valid now: compared in constant time against
    /// every stored hash.
    pub fn verify(&self, presented: &str) -> Option<Identity> {
        self.verify_at(presented, OffsetDateTime::now_utc())
    }

    /// [`Tokens::verify`] at `now`.
    pub fn verify_at(&self, presented: &str, now: OffsetDateTime) -> Option<Identity> {
        let digest = hash(presented.trim());
        let state = self.read();
        let mut found = None;
        for t in &state.tokens {
            if bool::from(t.record.sha256.as_bytes().ct_eq(digest.as_bytes())) {
                found = Some(t);
            }
        }
        let mut run = None;
        for t in &state.runs {
            if bool::from(t.sha256.as_bytes().ct_eq(digest.as_bytes())) {
                run = Some(t);
            }
        }
        if let Some(t) = run {
            // A run acts as a deployer: it may apply, sync and promote, not manage tokens.
            return (t.expires > now).then(|| Identity {
                user: t.user.clone(),
                role: Role::Deployer,
                token: t.user.clone(),
            });
        }
        let token = found?;
        if token.expires.is_some_and(|at| at <= now) {
            return None;
        }
        let role = state.role_of(&token.record.user)?;
        Some(Identity {
            user: token.record.user.clone(),
            role,
            token: token.record.name.clone(),
        })
    }

    /// A new token for the steps of workflow run `run`, of user `run:RUN` with the deployer
    /// role, valid until [`Tokens::revoke_run_token`] or a day at most; never written to disk.
    pub fn issue_run_token(&self, run: &str) -> String {
        let token = new_token();
        let expires = OffsetDateTime::now_utc() + RUN_TOKEN_TTL;
        self.write().runs.push(RunToken {
            sha256: hash(&token),
            user: format!("{RUN_USER_PREFIX}{run}"),
            expires,
        });
        token
    }

    /// Voids a token [`Tokens::issue_run_token`] gave (the run ended); unknown tokens are
    /// ignored. Expired ones are dropped on the way.
    pub fn revoke_run_token(&self, token: &str) {
        let digest = hash(token);
        let now = OffsetDateTime::now_utc();
        self.write()
            .runs
            .retain(|t| t.sha256 != digest && t.expires > now);
    }

    /// Every token by name, with its user, role and expiry; never the secrets.
    pub fn list(&self) -> Vec<TokenInfo> {
        let now = OffsetDateTime::now_utc();
        let state = self.read();
        let mut all: Vec<TokenInfo> = state
            .tokens
            .iter()
            .filter_map(|t| {
                Some(TokenInfo {
                    name: t.record.name.clone(),
                    user: t.record.user.clone(),
                    role: state.role_of(&t.record.user)?,
                    expires: t.record.expires.clone(),
                    expired: t.expires.is_some_and(|at| at <= now),
                })
            })
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Every user by name, with its role and how many tokens it has.
    pub fn users(&self) -> Vec<(String, Role, usize)> {
        let state = self.read();
        let mut all: Vec<_> = state
            .users
            .iter()
            .map(|(name, role)| {
                let tokens = state
                    .tokens
                    .iter()
                    .filter(|t| &t.record.user == name)
                    .count();
                (name.clone(), *role, tokens)
            })
            .collect();
        all.sort();
        all
    }

    /// Adds a user; it can do nothing until a token is issued for it.
    pub fn add_user(&self, name: &str, role: Role) -> Result<(), TokenError> {
        check_word(name).map_err(|why| invalid("users", name, "metadata.name", name, why))?;
        let mut state = self.write();
        if state.role_of(name).is_some() {
            return Err(TokenError::AlreadyExists {
                resource: "users",
                name: name.to_string(),
                hint: "delete it first to give it another role",
            });
        }
        let mut next = state.clone();
        next.users.push((name.to_string(), role));
        self.persist(&next)?;
        *state = next;
        Ok(())
    }

    /// Removes a user and revokes every token it has. The admin user stays, so the data directory
    /// always holds a token that works.
    pub fn delete_user(&self, name: &str) -> Result<usize, TokenError> {
        if name == ADMIN {
            return Err(TokenError::Invalid {
                resource: "users",
                name: name.to_string(),
                field: "metadata.name",
                message: "Forbidden: the admin user cannot be deleted".into(),
            });
        }
        let mut state = self.write();
        if state.role_of(name).is_none() {
            return Err(TokenError::NotFound {
                resource: "users",
                name: name.to_string(),
                hint: USER_HINT,
            });
        }
        let mut next = state.clone();
        next.users.retain(|(n, _)| n != name);
        next.tokens.retain(|t| t.record.user != name);
        let revoked = state.tokens.len() - next.tokens.len();
        self.persist(&next)?;
        *state = next;
        Ok(revoked)
    }

    /// Issues a token; the only time its secret is seen. Returns the token's name and secret.
    pub fn create(&self, request: &TokenRequest) -> Result<(TokenInfo, String), TokenError> {
        self.create_at(request, OffsetDateTime::now_utc())
    }

    /// [`Tokens::create`] at `now`.
    pub fn create_at(
        &self,
        request: &TokenRequest,
        now: OffsetDateTime,
    ) -> Result<(TokenInfo, String), TokenError> {
        let label = request
            .name
            .as_deref()
            .or(request.user.as_deref())
            .unwrap_or_default();
        let (user, explicit) = match (&request.user, &request.name) {
            (Some(user), _) => (user.clone(), true),
            (None, Some(name)) => (name.clone(), false),
            (None, None) => {
                return Err(TokenError::Invalid {
                    resource: "tokens",
                    name: String::new(),
                    field: "user",
                    message: "Required value: name the user the token is for (--user NAME)".into(),
                });
            }
        };
        for (field, value) in [
            ("user", Some(&user)),
            ("metadata.name", request.name.as_ref()),
        ] {
            if let Some(value) = value {
                check_word(value).map_err(|why| invalid("tokens", label, field, value, why))?;
            }
        }
        let expires = match request.expires_in {
            None => None,
            Some(d) if d.is_zero() => {
                return Err(TokenError::Invalid {
                    resource: "tokens",
                    name: label.to_string(),
                    field: "expires",
                    message: "Invalid value: 0s: must be longer than zero".into(),
                });
            }
            Some(d) => Some(now + d),
        };
        let mut state = self.write();
        let mut next = state.clone();
        let taken = |name: &str, tokens: &[Token]| {
            tokens
                .iter()
                .any(|t| t.record.name == name)
                .then(|| TokenError::AlreadyExists {
                    resource: "tokens",
                    name: name.to_string(),
                    hint: "delete it first to issue a new one",
                })
        };
        if let Some(e) = request.name.as_deref().and_then(|n| taken(n, &next.tokens)) {
            return Err(e);
        }
        let role = match (next.role_of(&user), request.role) {
            (Some(has), Some(asked)) if has != asked => {
                return Err(TokenError::Invalid {
                    resource: "tokens",
                    name: label.to_string(),
                    field: "role",
                    message: format!(
                        "Invalid value: {asked:?}: user {user:?} has role {has}, and a token has its user's role; add another user for another role"
                    ),
                });
            }
            (Some(has), _) => has,
            (None, _) if explicit => {
                return Err(TokenError::NotFound {
                    resource: "users",
                    name: user,
                    hint: USER_HINT,
                });
            }
            (None, asked) => {
                let role = asked.unwrap_or(Role::Viewer);
                next.users.push((user.clone(), role));
                role
            }
        };
        let name = match &request.name {
            Some(name) => name.clone(),
            None => (1..)
                .map(|n| format!("{user}-{n}"))
                .find(|n| !next.tokens.iter().any(|t| &t.record.name == n))
                .unwrap_or_default(),
        };
        if let Some(e) = taken(&name, &next.tokens) {
            return Err(e);
        }
        let secret = new_token();
        let expires_text = expires.and_then(|at| at.format(&Rfc3339).ok());
        next.tokens.push(Token {
            record: TokenRecord {
                name: name.clone(),
                user: user.clone(),
                sha256: hash(&secret),
                expires: expires_text.clone(),
            },
            expires,
        });
        self.persist(&next)?;
        *state = next;
        let info = TokenInfo {
            name,
            user,
            role,
            expires: expires_text,
            expired: false,
        };
        Ok((info, secret))
    }

    /// Revokes a token. The admin token is rotated by removing its file instead, so the data
    /// directory always holds one that works.
    pub fn delete(&self, name: &str) -> Result<(), TokenError> {
        if name == ADMIN {
            return Err(TokenError::Invalid {
                resource: "tokens",
                name: name.to_string(),
                field: "metadata.name",
                message: format!(
                    "Forbidden: the admin token cannot be deleted; remove {ADMIN_TOKEN_FILE} from the data directory and restart to rotate it"
                ),
            });
        }
        let mut state = self.write();
        if !state.tokens.iter().any(|t| t.record.name == name) {
            return Err(TokenError::NotFound {
                resource: "tokens",
                name: name.to_string(),
                hint: TOKEN_HINT,
            });
        }
        let mut next = state.clone();
        next.tokens.retain(|t| t.record.name != name);
        self.persist(&next)?;
        *state = next;
        Ok(())
    }

    fn persist(&self, state: &State) -> Result<(), AuthError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        write_private(path, &to_json(&state.file()))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }
}

fn invalid(
    resource: &'static str,
    name: &str,
    field: &'static str,
    value: &str,
    why: &str,
) -> TokenError {
    TokenError::Invalid {
        resource,
        name: name.to_string(),
        field,
        message: format!("Invalid value: {value:?}: {why}"),
    }
}

fn to_json(file: &TokenFile) -> Vec<u8> {
    serde_json::to_vec_pretty(file).unwrap_or_default()
}

/// `tokens.json` in either format: `{users, tokens}`, or the list of tokens written before
/// users existed (each token its own user, of the token's role).
fn parse_file(bytes: &[u8]) -> Result<TokenFile, String> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if value.is_array() {
        let legacy: Vec<LegacyToken> = serde_json::from_value(value).map_err(|e| e.to_string())?;
        let mut file = TokenFile::default();
        for t in legacy {
            file.users.push(UserRecord {
                name: t.name.clone(),
                role: t.role,
            });
            file.tokens.push(TokenRecord {
                user: t.name.clone(),
                name: t.name,
                sha256: t.sha256,
                expires: None,
            });
        }
        return Ok(file);
    }
    serde_json::from_value(value).map_err(|e| e.to_string())
}

/// Checks every field: names and roles are shown on terminals and written into the audit log
/// as actors, so only plain words, none can carry an escape sequence.
fn check_file(file: &TokenFile) -> Result<State, String> {
    let mut state = State::default();
    for (i, u) in file.users.iter().enumerate() {
        for (field, value) in [("name", &u.name), ("role", &u.role)] {
            check_word(value)
                .map_err(|why| format!("users[{i}].{field}: Invalid value: {value:?}: {why}"))?;
        }
        let role = Role::parse(&u.role).map_err(|why| format!("users[{i}].role: {why}"))?;
        if state.role_of(&u.name).is_some() {
            return Err(format!("users[{i}].name: Duplicate value: {:?}", u.name));
        }
        state.users.push((u.name.clone(), role));
    }
    for (i, t) in file.tokens.iter().enumerate() {
        for (field, value) in [("name", &t.name), ("user", &t.user)] {
            check_word(value)
                .map_err(|why| format!("tokens[{i}].{field}: Invalid value: {value:?}: {why}"))?;
        }
        if state.role_of(&t.user).is_none() {
            return Err(format!(
                "tokens[{i}].user: Not found: {:?} is not in users",
                t.user
            ));
        }
        let expires = match &t.expires {
            None => None,
            Some(text) => Some(OffsetDateTime::parse(text, &Rfc3339).map_err(|e| {
                format!("tokens[{i}].expires: Invalid value: {text:?}: not RFC 3339: {e}")
            })?),
        };
        state.tokens.push(Token {
            record: t.clone(),
            expires,
        });
    }
    Ok(state)
}

/// A token's lifetime as `--expires` takes it: Go's units plus days and weeks (`90m`,
/// `1h30m`, `7d`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    shipway_model::types::repository::parse_long_duration(text).ok_or_else(|| {
        format!("Invalid value: {text:?}: expected a duration such as 30m, 12h, 7d or 1h30m")
    })
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
    if value.starts_with(RUN_USER_PREFIX) {
        return Err("the prefix 'run:' is reserved for the tokens of workflow runs");
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

/// The scheduler gives runs' steps tokens of this list.
impl shipway_ci::scheduler::RunTokens for Tokens {
    fn issue(&self, run: &str) -> String {
        self.issue_run_token(run)
    }

    fn revoke(&self, token: &str) {
        self.revoke_run_token(token);
    }
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
        assert_eq!(tokens.verify(&token).map(|i| i.role), Some(Role::Admin));
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
            text.replacen("\"role\": \"admin\"", "\"role\": \"\\u001b[31madmin\"", 1),
        )
        .unwrap();
        let e = Tokens::load_or_init(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains(
                "users[0].role: Invalid value: \"\\u{1b}[31madmin\": must be lower-case letters"
            ),
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
            e.contains(r#"users[0].role: Unsupported value: "root": supported values: "viewer", "deployer", "admin""#),
            "{e}"
        );
    }

    fn legacy(name: &str, role: Role) -> TokenRequest {
        TokenRequest {
            name: Some(name.into()),
            role: Some(role),
            ..TokenRequest::default()
        }
    }

    #[test]
    fn created_tokens_work_at_once_survive_a_restart_and_deleted_ones_stop_working() {
        let dir = tempfile::tempdir().unwrap();
        let (tokens, _) = Tokens::load_or_init(dir.path()).unwrap();
        let (_, ci) = tokens.create(&legacy("ci", Role::Deployer)).unwrap();
        let identity = tokens.verify(&ci).unwrap();
        assert_eq!(
            (identity.user.as_str(), identity.role),
            ("ci", Role::Deployer)
        );
        assert!(matches!(
            tokens.create(&legacy("ci", Role::Deployer)),
            Err(TokenError::AlreadyExists { .. })
        ));
        let list = fs::read_to_string(dir.path().join(TOKENS_FILE)).unwrap();
        assert!(!list.contains(&ci), "only the hash is stored");

        let (again, _) = Tokens::load_or_init(dir.path()).unwrap();
        let names: Vec<_> = again.list().into_iter().map(|t| (t.name, t.role)).collect();
        assert_eq!(
            names,
            [("admin".into(), Role::Admin), ("ci".into(), Role::Deployer)]
        );
        again.delete("ci").unwrap();
        assert_eq!(again.verify(&ci), None);
        assert!(matches!(
            again.delete("ci"),
            Err(TokenError::NotFound { .. })
        ));
        assert!(matches!(
            again.delete("admin"),
            Err(TokenError::Invalid { .. })
        ));
        let (third, _) = Tokens::load_or_init(dir.path()).unwrap();
        assert_eq!(third.verify(&ci), None, "the deletion was written");
    }

    #[test]
    fn a_token_is_its_users_identity_and_role_until_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        let (tokens, _) = Tokens::load_or_init(dir.path()).unwrap();
        let e = tokens
            .create(&TokenRequest {
                user: Some("alice".into()),
                ..TokenRequest::default()
            })
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("users \"alice\" not found; `shipway user list`"),
            "{e}"
        );
        tokens.add_user("alice", Role::Deployer).unwrap();
        assert!(matches!(
            tokens.add_user("alice", Role::Viewer),
            Err(TokenError::AlreadyExists { .. })
        ));
        let now = OffsetDateTime::now_utc();
        let day = TokenRequest {
            user: Some("alice".into()),
            expires_in: Some(Duration::from_secs(86_400)),
            ..TokenRequest::default()
        };
        let (first, secret) = tokens.create_at(&day, now).unwrap();
        assert_eq!(first.name, "alice-1");
        let (second, other) = tokens.create_at(&day, now).unwrap();
        assert_eq!(second.name, "alice-2", "names are numbered per user");
        let alice = tokens.verify_at(&secret, now).unwrap();
        assert_eq!(
            alice,
            Identity {
                user: "alice".into(),
                role: Role::Deployer,
                token: "alice-1".into()
            }
        );
        let later = now + Duration::from_secs(86_399);
        assert!(tokens.verify_at(&secret, later).is_some());
        let expired = now + Duration::from_secs(86_400);
        assert!(tokens.verify_at(&secret, expired).is_none(), "expired");
        assert!(tokens.verify_at(&other, expired).is_none());

        // A token of a user has the user's role; asking another is refused.
        let e = tokens
            .create(&TokenRequest {
                user: Some("alice".into()),
                role: Some(Role::Admin),
                ..TokenRequest::default()
            })
            .unwrap_err()
            .to_string();
        assert!(e.contains("user \"alice\" has role deployer"), "{e}");

        // The expiry survives a restart; deleting the user revokes its tokens.
        let (again, _) = Tokens::load_or_init(dir.path()).unwrap();
        assert!(again.verify_at(&secret, expired).is_none());
        assert!(again.verify_at(&secret, later).is_some());
        assert_eq!(again.delete_user("alice").unwrap(), 2);
        assert!(again.verify_at(&secret, later).is_none());
        assert!(matches!(
            again.delete_user("admin"),
            Err(TokenError::Invalid { .. })
        ));
    }

    #[test]
    fn a_token_list_written_before_users_existed_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let (tokens, _) = Tokens::load_or_init(dir.path()).unwrap();
        let admin = fs::read_to_string(dir.path().join(ADMIN_TOKEN_FILE)).unwrap();
        let ci = "shipway_legacy_ci";
        let old = serde_json::json!([
            {"name": "admin", "role": "admin", "sha256": hash(admin.trim())},
            {"name": "ci", "role": "deployer", "sha256": hash(ci)},
        ]);
        fs::write(dir.path().join(TOKENS_FILE), old.to_string()).unwrap();
        drop(tokens);
        let (tokens, outcome) = Tokens::load_or_init(dir.path()).unwrap();
        assert!(matches!(outcome, AdminToken::Existing(_)));
        assert_eq!(tokens.verify(&admin).unwrap().role, Role::Admin);
        let identity = tokens.verify(ci).unwrap();
        assert_eq!(
            (identity.user.as_str(), identity.role),
            ("ci", Role::Deployer)
        );
    }

    #[test]
    fn durations_parse_as_the_cli_writes_them() {
        for (text, secs) in [
            ("30s", 30),
            ("90m", 5400),
            ("1h30m", 5400),
            ("7d", 604_800),
            ("2w", 1_209_600),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
        for bad in [
            "",
            "7",
            "d",
            "0s",
            "1.5h",
            "-1h",
            "1y",
            "99999999999999999999w",
        ] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains("expected a duration such as 30m"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_run_token_acts_as_a_deployer_named_after_its_run_until_revoked_and_never_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let (tokens, _) = Tokens::load_or_init(dir.path()).unwrap();
        let token = tokens.issue_run_token("app-ci-7");
        let other = tokens.issue_run_token("app-ci-8");
        let now = OffsetDateTime::now_utc();
        assert_eq!(
            tokens.verify_at(&token, now),
            Some(Identity {
                user: "run:app-ci-7".into(),
                role: Role::Deployer,
                token: "run:app-ci-7".into(),
            })
        );
        assert!(
            tokens.verify_at(&token, now + RUN_TOKEN_TTL).is_none(),
            "a day at most"
        );
        let on_disk = fs::read_to_string(dir.path().join(TOKENS_FILE)).unwrap();
        assert!(!on_disk.contains(&hash(&token)), "{on_disk}");
        let (restarted, _) = Tokens::load_or_init(dir.path()).unwrap();
        assert!(restarted.verify(&token).is_none(), "a restart voids it");
        tokens.revoke_run_token(&token);
        assert!(tokens.verify(&token).is_none());
        assert!(tokens.verify(&other).is_some(), "only that run's");
        assert!(!tokens.list().iter().any(|t| t.user.starts_with("run:")));
        // Nobody can pose as a run.
        let e = tokens.add_user("run:app-ci-8", Role::Admin).unwrap_err();
        assert!(e.to_string().contains("reserved"), "{e}");
    }
}
