//! HTTP Basic authentication on the REST/gRPC port: users from an Apache `htpasswd` file
//! of bcrypt hashes (`htpasswd -nbB NAME PASSWORD` makes a line), checked per request.
//!
//! bcrypt is slow on purpose, so a password it accepted is remembered (a keyed SHA-256 of
//! it, one per user) and later requests with it cost a hash, not a bcrypt run. Wrong
//! passwords always run bcrypt, at most [`BCRYPT_AT_ONCE`] at a time, and are counted per
//! client address: past the limit that address is refused without a check until its
//! window ends (`limiter.rs`).

mod limiter;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio::sync::Semaphore;

pub use limiter::{FailureLimits, Limiter};

/// A users file Brook cannot use. Messages name the file and line, never a hash.
#[derive(Debug, Error)]
pub enum AuthError {
    #[error("users file {}: cannot read it: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("users file {}, line {line}: {reason}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("users file {}: no users in it, so nobody could log in. Add a line with `htpasswd -nbB NAME PASSWORD >> {}`", path.display(), path.display())]
    Empty { path: PathBuf },
}

/// bcrypt runs at once at most: each takes a core for milliseconds to a second.
pub const BCRYPT_AT_ONCE: usize = 2;

/// The users and their bcrypt hashes.
#[derive(Clone)]
pub struct Users {
    hashes: HashMap<String, String>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.hashes.keys().collect();
        names.sort();
        f.debug_struct("Users").field("names", &names).finish()
    }
}

impl Users {
    pub fn load(path: &Path) -> Result<Users, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Users::parse(&text, path)
    }

    /// `htpasswd` lines: `NAME:HASH`; blank lines and `#` comments are skipped.
    pub fn parse(text: &str, path: &Path) -> Result<Users, AuthError> {
        let mut hashes = HashMap::new();
        let mut first_line = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |reason: String| AuthError::Line {
                path: path.to_path_buf(),
                line: i + 1,
                reason,
            };
            let (name, hash) = parse_line(line).map_err(at)?;
            if let Some(earlier) = first_line.insert(name.to_string(), i + 1) {
                return Err(at(format!("user `{name}` again (first on line {earlier})")));
            }
            hashes.insert(name.to_string(), hash.to_string());
        }
        if hashes.is_empty() {
            return Err(AuthError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(Users { hashes })
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }
}

/// One `NAME:HASH` line, the hash checked to be bcrypt's.
fn parse_line(line: &str) -> Result<(&str, &str), String> {
    let Some((name, hash)) = line.split_once(':') else {
        return Err("expected NAME:HASH, as `htpasswd -nbB NAME PASSWORD` writes it".into());
    };
    if name.is_empty() {
        return Err("the user name is empty".into());
    }
    // Apache's other hash formats, named so the fix is clear.
    let other = if hash.starts_with("$apr1$") {
        Some("Apache's MD5 ($apr1$)")
    } else if hash.starts_with("{SHA}") {
        Some("SHA-1 ({SHA})")
    } else if hash.starts_with("$5$") || hash.starts_with("$6$") {
        Some("SHA-crypt")
    } else {
        None
    };
    if let Some(kind) = other {
        return Err(format!(
            "user `{name}`: the hash is {kind}; Brook accepts bcrypt only: make the line with \
             `htpasswd -nbB {name} PASSWORD`"
        ));
    }
    if !is_bcrypt(hash) {
        return Err(format!(
            "user `{name}`: not a bcrypt hash ($2y$…, 60 characters); make the line with \
             `htpasswd -nbB {name} PASSWORD`"
        ));
    }
    Ok((name, hash))
}

/// `$2y$NN$` (or 2a, 2b) and 53 characters of bcrypt's base64: what bcrypt can verify.
fn is_bcrypt(hash: &str) -> bool {
    let b = hash.as_bytes();
    b.len() == 60
        && hash.starts_with("$2")
        && matches!(b[2], b'a' | b'b' | b'y')
        && b[3] == b'$'
        && b[4].is_ascii_digit()
        && b[5].is_ascii_digit()
        && b[6] == b'$'
        && b[7..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'.' || *c == b'/')
}

/// What a request's credentials came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The user they name.
    User(String),
    /// No `Authorization: Basic …` header.
    Missing,
    /// A Basic header that is not base64 of `NAME:PASSWORD`.
    Malformed,
    /// Unknown user or wrong password; `failures`: from this address in its window so far
    /// (0 when the address is unknown).
    Refused { user: String, failures: u32 },
    /// Too many refusals from this address lately: not checked.
    Blocked { retry_after: Duration },
}

/// Checks Basic credentials against the users file.
pub struct Authenticator {
    users: Users,
    /// A user's last password that bcrypt accepted, as [`Authenticator::digest`].
    verified: Mutex<HashMap<String, [u8; 32]>>,
    /// Random per process, so a remembered digest is useless outside it.
    key: [u8; 32],
    bcrypt_slots: Semaphore,
    pub limiter: Limiter,
}

impl Authenticator {
    pub fn new(users: Users, limits: FailureLimits) -> Authenticator {
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        Authenticator {
            users,
            verified: Mutex::default(),
            key,
            bcrypt_slots: Semaphore::new(BCRYPT_AT_ONCE),
            limiter: Limiter::new(limits),
        }
    }

    /// Checks an `Authorization` header's value from `peer` (no peer: not rate-limited).
    pub async fn check(&self, header: Option<&[u8]>, peer: Option<IpAddr>) -> Outcome {
        // Another scheme (Bearer, …) is no credentials here, as in ksqlDB: 401.
        let Some(header) = header.filter(|h| is_basic(h)) else {
            return Outcome::Missing;
        };
        let Some((user, password)) = basic_credentials(header) else {
            return Outcome::Malformed;
        };
        if let Some(retry_after) = peer.and_then(|ip| self.limiter.blocked(ip)) {
            return Outcome::Blocked { retry_after };
        }
        if self.verify(&user, &password).await {
            if let Some(ip) = peer {
                self.limiter.forget(ip);
            }
            Outcome::User(user)
        } else {
            let failures = peer.map_or(0, |ip| self.limiter.record_failure(ip));
            Outcome::Refused { user, failures }
        }
    }

    async fn verify(&self, user: &str, password: &str) -> bool {
        let digest = self.digest(user, password);
        if self.remembered(user, &digest) {
            return true;
        }
        // An unknown user costs the same bcrypt run as a known one, so timing does not
        // tell which names exist; the answer is no either way.
        let (hash, known) = match self.users.hashes.get(user) {
            Some(h) => (h.clone(), true),
            None => match self.users.hashes.values().next() {
                Some(h) => (h.clone(), false),
                None => return false,
            },
        };
        let Ok(_slot) = self.bcrypt_slots.acquire().await else {
            return false;
        };
        let password = password.to_string();
        let matched = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false);
        if matched && known {
            self.lock_verified().insert(user.to_string(), digest);
        }
        matched && known
    }

    fn lock_verified(&self) -> std::sync::MutexGuard<'_, HashMap<String, [u8; 32]>> {
        self.verified
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn remembered(&self, user: &str, digest: &[u8; 32]) -> bool {
        self.lock_verified()
            .get(user)
            .is_some_and(|d| constant_time_eq(d, digest))
    }

    fn digest(&self, user: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update((user.len() as u64).to_be_bytes());
        h.update(user.as_bytes());
        h.update(password.as_bytes());
        h.finalize().into()
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn is_basic(header: &[u8]) -> bool {
    header.trim_ascii_start().len() > 6
        && header.trim_ascii_start()[..6].eq_ignore_ascii_case(b"basic ")
}

/// `Basic base64(NAME:PASSWORD)` (the scheme in any case), as RFC 7617 has it.
pub fn basic_credentials(header: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(header).ok()?.trim();
    let (scheme, encoded) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests;
