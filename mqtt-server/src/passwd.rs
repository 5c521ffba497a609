//! Password files in mosquitto_passwd's format, so that an operator can
//! move a mosquitto password file to this broker (and back) unchanged.
//!
//! One user a line, `name:hash`; blank lines and lines starting with `#` are
//! skipped. Two hash formats are read, the one mosquitto 2 writes and the
//! one mosquitto 1.x wrote:
//!
//! ```text
//! alice:$7$101$<base64 salt>$<base64 hash>   PBKDF2-HMAC-SHA512, 101 iterations,
//!                                            12-byte salt, 64-byte hash
//! bob:$6$<base64 salt>$<base64 hash>         SHA-512(password || salt)
//! ```
//!
//! Base64 is the standard alphabet, padded (as OpenSSL writes it). New
//! hashes are always `$7$` with [`DEFAULT_ITERATIONS`] and a random
//! [`SALT_LEN`]-byte salt, exactly as `mosquitto_passwd` makes them.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use sha2::{Digest, Sha512};

use crate::auth::SecurityFileError;

/// PBKDF2 iterations of a new hash: mosquitto_passwd's default.
pub const DEFAULT_ITERATIONS: u32 = 101;
/// Bytes of salt of a new hash: mosquitto_passwd's.
pub const SALT_LEN: usize = 12;
/// Bytes of a SHA-512 output.
const HASH_LEN: usize = 64;
/// Most PBKDF2 iterations accepted from a file: enough for any sane
/// setting, and a bound on what one CONNECT can cost.
pub const MAX_ITERATIONS: u32 = 10_000_000;

/// Standard alphabet; writes padding, reads with or without it.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A stored password hash.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordHash {
    /// `$7$`: PBKDF2-HMAC-SHA512 (mosquitto 2).
    Pbkdf2Sha512 {
        /// PBKDF2 iterations.
        iterations: u32,
        /// The salt.
        salt: Vec<u8>,
        /// The derived key.
        hash: [u8; HASH_LEN],
    },
    /// `$6$`: one SHA-512 of the password then the salt (mosquitto 1.x).
    Sha512 {
        /// The salt.
        salt: Vec<u8>,
        /// The digest.
        hash: [u8; HASH_LEN],
    },
}

impl fmt::Debug for PasswordHash {
    // The hash is not a secret the way a password is, but it has no place
    // in logs either.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pbkdf2Sha512 { iterations, .. } => {
                write!(
                    f,
                    "PasswordHash::Pbkdf2Sha512 {{ iterations: {iterations}, .. }}"
                )
            }
            Self::Sha512 { .. } => f.write_str("PasswordHash::Sha512 { .. }"),
        }
    }
}

impl PasswordHash {
    /// A `$7$` hash of `password` with a fresh random salt and
    /// [`DEFAULT_ITERATIONS`].
    ///
    /// # Errors
    /// If the operating system gives no random bytes.
    pub fn new(password: &[u8]) -> Result<Self, getrandom::Error> {
        let mut salt = [0u8; SALT_LEN];
        getrandom::fill(&mut salt)?;
        Ok(Self::with_salt(password, &salt, DEFAULT_ITERATIONS))
    }

    /// A `$7$` hash with the given salt and iteration count.
    pub fn with_salt(password: &[u8], salt: &[u8], iterations: u32) -> Self {
        Self::Pbkdf2Sha512 {
            iterations,
            salt: salt.to_vec(),
            hash: pbkdf2_sha512(password, salt, iterations),
        }
    }

    /// Parses the part of a line after `name:`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let decode_hash = |b64: &str| -> Result<[u8; HASH_LEN], String> {
            let bytes = BASE64
                .decode(b64)
                .map_err(|e| format!("hash is not base64: {e}"))?;
            bytes
                .try_into()
                .map_err(|b: Vec<u8>| format!("hash is {} bytes, not {HASH_LEN}", b.len()))
        };
        let decode_salt = |b64: &str| {
            BASE64
                .decode(b64)
                .map_err(|e| format!("salt is not base64: {e}"))
        };
        let parts: Vec<&str> = s.split('$').collect();
        match parts.as_slice() {
            ["", "7", iterations, salt, hash] => {
                let iterations: u32 = iterations
                    .parse()
                    .ok()
                    .filter(|i| (1..=MAX_ITERATIONS).contains(i))
                    .ok_or_else(|| {
                        format!(
                            "iteration count {iterations:?} is not between 1 and {MAX_ITERATIONS}"
                        )
                    })?;
                Ok(Self::Pbkdf2Sha512 {
                    iterations,
                    salt: decode_salt(salt)?,
                    hash: decode_hash(hash)?,
                })
            }
            ["", "6", salt, hash] => Ok(Self::Sha512 {
                salt: decode_salt(salt)?,
                hash: decode_hash(hash)?,
            }),
            _ => Err(
                "not a mosquitto_passwd hash ($7$iterations$salt$hash or $6$salt$hash); \
                 plain-text passwords are not accepted"
                    .into(),
            ),
        }
    }

    /// Whether `password` is the one hashed. Takes the same time whatever
    /// bytes of the hash differ.
    pub fn verify(&self, password: &[u8]) -> bool {
        let (expected, got) = match self {
            Self::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            } => (hash, pbkdf2_sha512(password, salt, *iterations)),
            Self::Sha512 { salt, hash } => {
                let mut d = Sha512::new();
                d.update(password);
                d.update(salt);
                (hash, d.finalize().into())
            }
        };
        constant_time_eq(expected, &got)
    }

    /// PBKDF2 iterations (1 for `$6$`): what one verification costs.
    pub fn iterations(&self) -> u32 {
        match self {
            Self::Pbkdf2Sha512 { iterations, .. } => *iterations,
            Self::Sha512 { .. } => 1,
        }
    }
}

/// The file form: `$7$101$salt$hash`.
impl fmt::Display for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            } => write!(
                f,
                "$7${iterations}${}${}",
                BASE64.encode(salt),
                BASE64.encode(hash)
            ),
            Self::Sha512 { salt, hash } => {
                write!(f, "$6${}${}", BASE64.encode(salt), BASE64.encode(hash))
            }
        }
    }
}

fn pbkdf2_sha512(password: &[u8], salt: &[u8], iterations: u32) -> [u8; HASH_LEN] {
    let mut out = [0u8; HASH_LEN];
    pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
    out
}

fn constant_time_eq(a: &[u8; HASH_LEN], b: &[u8; HASH_LEN]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The users of a password file, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PasswordFile {
    users: Vec<(String, PasswordHash)>,
    index: HashMap<String, usize>,
}

impl PasswordFile {
    /// An empty file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads and parses a file.
    ///
    /// # Errors
    /// If it cannot be read, or a line is malformed (the error names the
    /// file and the line).
    pub fn load(path: &Path) -> Result<Self, SecurityFileError> {
        SecurityFileError::load(path, Self::parse)
    }

    /// Parses the text of a file; an error gives the 1-based line number
    /// and the problem.
    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut file = Self::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err((i + 1, "expected `username:hash`".into()));
            };
            if user.is_empty() {
                return Err((i + 1, "empty user name".into()));
            }
            let hash = PasswordHash::parse(hash).map_err(|p| (i + 1, p))?;
            if file.index.contains_key(user) {
                return Err((i + 1, format!("user {user:?} appears twice")));
            }
            file.set(user, hash);
        }
        Ok(file)
    }

    /// The hash of `user`'s password.
    pub fn get(&self, user: &str) -> Option<&PasswordHash> {
        self.index.get(user).map(|&i| &self.users[i].1)
    }

    /// Adds `user`, or replaces their hash.
    pub fn set(&mut self, user: &str, hash: PasswordHash) {
        match self.index.get(user) {
            Some(&i) => self.users[i].1 = hash,
            None => {
                self.index.insert(user.to_owned(), self.users.len());
                self.users.push((user.to_owned(), hash));
            }
        }
    }

    /// Removes `user`; false if there was no such user.
    pub fn remove(&mut self, user: &str) -> bool {
        let Some(i) = self.index.remove(user) else {
            return false;
        };
        self.users.remove(i);
        for v in self.index.values_mut() {
            if *v > i {
                *v -= 1;
            }
        }
        true
    }

    /// The user names, in file order.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.users.iter().map(|(u, _)| u.as_str())
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there is no user.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The file's text: one `name:hash` line per user.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for (user, hash) in &self.users {
            s.push_str(user);
            s.push(':');
            s.push_str(&hash.to_string());
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Written by mosquitto_passwd 2.0.11: `mosquitto_passwd -c -b f alice secret`.
    const MOSQUITTO_LINE: &str = "alice:$7$101$ELjRyZSmSnWyZrtk$CylQyexVUAJwQ/y5JnNs71npG5bj+Xf4gVuZePhKN0DjnPpjnkQJJsNGvK4HsNSXIM5NfCO3NiNqqXMk9tOQqg==";

    #[test]
    fn a_mosquitto_passwd_hash_verifies() {
        let file = PasswordFile::parse(MOSQUITTO_LINE).unwrap();
        let hash = file.get("alice").unwrap();
        assert!(hash.verify(b"secret"));
        assert!(!hash.verify(b"Secret"));
        assert!(!hash.verify(b""));
    }

    #[test]
    fn the_same_salt_gives_mosquittos_bytes() {
        let (_, stored) = MOSQUITTO_LINE.split_once(':').unwrap();
        let PasswordHash::Pbkdf2Sha512 { salt, .. } = PasswordHash::parse(stored).unwrap() else {
            panic!("a $7$ hash");
        };
        let ours = PasswordHash::with_salt(b"secret", &salt, DEFAULT_ITERATIONS);
        assert_eq!(ours.to_string(), stored);
    }

    #[test]
    fn new_hashes_have_mosquittos_shape() {
        let h = PasswordHash::new(b"pw").unwrap();
        let text = h.to_string();
        let parts: Vec<&str> = text.split('$').collect();
        assert_eq!(parts[..3], ["", "7", "101"]);
        assert_eq!(parts[3].len(), 16, "12 bytes of salt in base64");
        assert_eq!(parts[4].len(), 88, "64 bytes of hash in base64");
        assert!(PasswordHash::parse(&text).unwrap().verify(b"pw"));
        assert_ne!(PasswordHash::new(b"pw").unwrap(), h, "salts are random");
    }

    #[test]
    fn sha512_hashes_of_mosquitto_1_verify() {
        let salt = b"0123456789ab";
        let mut d = Sha512::new();
        d.update(b"pw");
        d.update(salt);
        let hash: [u8; 64] = d.finalize().into();
        let line = format!("u:$6${}${}", BASE64.encode(salt), BASE64.encode(hash));
        let file = PasswordFile::parse(&line).unwrap();
        assert!(file.get("u").unwrap().verify(b"pw"));
        assert!(!file.get("u").unwrap().verify(b"px"));
    }

    #[test]
    fn bad_lines_are_named() {
        let text = format!("# users\n\n{MOSQUITTO_LINE}\nbob:plain\n");
        let (line, problem) = PasswordFile::parse(&text).unwrap_err();
        assert_eq!(line, 4);
        assert!(problem.contains("plain-text"), "{problem}");
        assert_eq!(PasswordFile::parse("nocolon").unwrap_err().0, 1);
        assert_eq!(
            PasswordFile::parse("u:$7$0$AAAA$AAAA").unwrap_err().0,
            1,
            "zero iterations"
        );
    }

    #[test]
    fn set_remove_and_text_round_trip() {
        let mut f = PasswordFile::parse(MOSQUITTO_LINE).unwrap();
        f.set("bob", PasswordHash::new(b"b").unwrap());
        f.set("carol", PasswordHash::new(b"c").unwrap());
        assert!(f.remove("bob"));
        assert!(!f.remove("bob"));
        assert_eq!(f.users().collect::<Vec<_>>(), ["alice", "carol"]);
        let again = PasswordFile::parse(&f.to_text()).unwrap();
        assert_eq!(again, f);
        assert!(again.get("carol").unwrap().verify(b"c"));
    }
}
