//! `mqtt passwd`: manage a password file, like mosquitto_passwd, in the
//! same format (PBKDF2-SHA512, `$7$`), so either tool reads the other's
//! files.
//!
//! ```text
//! mqtt passwd -c FILE USER              create FILE with USER, prompting for the password
//! mqtt passwd FILE USER                 add USER or change their password
//! mqtt passwd -b FILE USER PASSWORD     the same, password on the command line
//! mqtt passwd -D FILE USER              delete USER
//! ```
//!
//! Lines for other users, comments and blank lines are kept as they are.
//! The file is replaced atomically (written beside it, then renamed) and,
//! when created, readable by its owner only. Send the broker SIGHUP to
//! make it read the new file.

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use mqtt_server::{DEFAULT_ITERATIONS, MAX_ITERATIONS, PasswordHash};

/// Arguments of `mqtt passwd`.
#[derive(Debug, Args)]
pub(crate) struct PasswdArgs {
    /// Create the password file, overwriting it if it exists.
    #[arg(short = 'c', conflicts_with = "delete")]
    create: bool,

    /// Delete USER from the file.
    #[arg(short = 'D', conflicts_with = "batch")]
    delete: bool,

    /// Batch mode: the password is the third argument instead of being
    /// prompted for (it is then visible to other users of the machine).
    #[arg(short = 'b')]
    batch: bool,

    /// PBKDF2 iterations of the new hash (mosquitto_passwd's -I).
    #[arg(short = 'I', value_name = "N", default_value_t = DEFAULT_ITERATIONS,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_ITERATIONS)))]
    iterations: u32,

    /// The password file.
    #[arg(value_name = "FILE")]
    file: PathBuf,

    /// The user name.
    #[arg(value_name = "USER")]
    username: String,

    /// The password (with -b only).
    #[arg(value_name = "PASSWORD", requires = "batch")]
    password: Option<String>,
}

/// Runs `mqtt passwd`.
pub(crate) fn run(args: PasswdArgs) -> Result<ExitCode, String> {
    if args.username.is_empty() || args.username.contains(':') {
        return Err("the user name must be non-empty and must not contain ':'".into());
    }
    if args.username.contains(['\n', '\r']) {
        return Err("the user name must be one line".into());
    }
    let existing = if args.create {
        String::new()
    } else {
        std::fs::read_to_string(&args.file)
            .map_err(|e| format!("cannot read {}: {e}", args.file.display()))?
    };
    let text = if args.delete {
        let (text, found) = remove_user(&existing, &args.username);
        if !found {
            return Err(format!(
                "user {:?} not found in {}",
                args.username,
                args.file.display()
            ));
        }
        text
    } else {
        let password = match (args.batch, args.password) {
            (true, Some(p)) => p,
            (true, None) => return Err("-b needs the password as the third argument".into()),
            (false, _) => prompt()?,
        };
        let mut salt = [0u8; mqtt_server::SALT_LEN];
        getrandom::fill(&mut salt).map_err(|e| format!("no random bytes for the salt: {e}"))?;
        let hash = PasswordHash::with_salt(password.as_bytes(), &salt, args.iterations);
        set_user(&existing, &args.username, &hash)
    };
    write_atomically(&args.file, &text)
        .map_err(|e| format!("cannot write {}: {e}", args.file.display()))?;
    Ok(ExitCode::SUCCESS)
}

fn prompt() -> Result<String, String> {
    let first = rpassword::prompt_password("Password: ")
        .map_err(|e| format!("cannot read the password: {e}"))?;
    let second = rpassword::prompt_password("Reenter password: ")
        .map_err(|e| format!("cannot read the password: {e}"))?;
    if first != second {
        return Err("passwords do not match".into());
    }
    Ok(first)
}

fn is_user_line(line: &str, user: &str) -> bool {
    line.strip_prefix(user)
        .is_some_and(|rest| rest.starts_with(':'))
}

/// The file with `user`'s line replaced, or appended if there was none.
fn set_user(text: &str, user: &str, hash: &PasswordHash) -> String {
    let new_line = format!("{user}:{hash}");
    let mut out = String::with_capacity(text.len() + new_line.len() + 1);
    let mut found = false;
    for line in text.lines() {
        if is_user_line(line, user) {
            if !found {
                out.push_str(&new_line);
                out.push('\n');
            }
            found = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !found {
        out.push_str(&new_line);
        out.push('\n');
    }
    out
}

/// The file without `user`'s line, and whether there was one.
fn remove_user(text: &str, user: &str) -> (String, bool) {
    let mut found = false;
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if is_user_line(line, user) {
            found = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    (out, found)
}

fn write_atomically(path: &Path, text: &str) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
    let mut tmp_name = name.to_owned();
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // A new file is the owner's only; an existing one keeps its mode.
        let mode = std::fs::metadata(path).map_or(0o600, |m| {
            use std::os::unix::fs::PermissionsExt;
            m.permissions().mode() & 0o7777
        });
        options.mode(mode);
    }
    let result = (|| {
        use std::io::Write;
        let mut file = options.open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use mqtt_server::PasswordFile;

    #[test]
    fn set_replaces_the_users_line_and_keeps_the_rest() {
        let old = PasswordHash::new(b"old").unwrap();
        let text = format!("# ops\nalice:{old}\nalice2:{old}\n\n");
        let new = PasswordHash::new(b"new").unwrap();
        let out = set_user(&text, "alice", &new);
        assert_eq!(out, format!("# ops\nalice:{new}\nalice2:{old}\n\n"));
        let file = PasswordFile::parse(&out).unwrap();
        assert!(file.get("alice").unwrap().verify(b"new"));
        assert!(file.get("alice2").unwrap().verify(b"old"));
    }

    #[test]
    fn set_appends_a_new_user() {
        let h = PasswordHash::new(b"pw").unwrap();
        assert_eq!(set_user("", "bob", &h), format!("bob:{h}\n"));
        assert_eq!(
            set_user("a:x", "bob", &h),
            format!("a:x\nbob:{h}\n"),
            "a last line without newline"
        );
    }

    #[test]
    fn remove_deletes_only_that_user() {
        let (out, found) = remove_user("alice:1\nalicia:2\n# c\n", "alice");
        assert!(found);
        assert_eq!(out, "alicia:2\n# c\n");
        assert!(!remove_user(&out, "alice").1);
    }

    #[test]
    fn the_file_is_replaced_whole() {
        let dir = std::env::temp_dir().join(format!("mqtt-passwd-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("passwd");
        write_atomically(&path, "a\n").unwrap();
        write_atomically(&path, "b\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "b\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
