//! Who may connect (authentication), what they may do (the ACL, see
//! [`crate::acl`]), and how failed logins are slowed down.
//!
//! # Deciding on a CONNECT
//!
//! 1. An address that failed to log in [`Config::max_auth_failures`]
//!    times within [`Config::auth_failure_window`] seconds is refused
//!    (CONNACK 0x9F, connection rate exceeded; 3.1.1: 3, server
//!    unavailable) for the next window, whatever credentials it sends. IPv6
//!    addresses count per /64. At most [`MAX_TRACKED_ADDRESSES`] addresses
//!    are tracked; beyond that, new addresses go untracked until old
//!    entries expire.
//! 2. A client without a user name is accepted only if `allow_anonymous`
//!    is true (otherwise CONNACK 0x87 not authorized; 3.1.1: 5).
//! 3. A client with a user name is checked by the listener's
//!    [`Authenticator`] (a `password_file` by default); with no
//!    authenticator it is accepted, as mosquitto does. A wrong password or
//!    unknown user gets 0x86 bad user name or password (3.1.1: 4).
//! 4. With an ACL, a will whose topic the client may not publish to is
//!    refused with 0x87.
//!
//! # Per listener
//!
//! `allow_anonymous`, `password_file` and `acl_file` are top-level keys
//! and can be overridden per listener: the listener code asks
//! [`Security::listener_auth`] for a [`ListenerAuth`] with its values
//! (files are loaded once and shared by every listener naming them) and
//! passes it to each connection in a [`ConnAuth`], with the user name taken
//! from the client's TLS certificate if the listener uses it.
//!
//! # Reload
//!
//! [`Security::reload`] (SIGHUP, or [`crate::ReloadHandle`]) reads every
//! password and ACL file again. Connections stay; new CONNECTs, and every
//! ACL check, use the new rules. A file that fails to load is reported
//! (file and line) and its old contents stay in force.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use mqtt_codec::{Connect, ReasonCode};

use crate::acl::{AclFile, AclSubject};
use crate::config::Config;
use crate::handle::lock;
use crate::passwd::{PasswordFile, PasswordHash};
use crate::stats::Stats;

/// Most source addresses whose failed logins are remembered at once.
pub const MAX_TRACKED_ADDRESSES: usize = 10_000;
/// Hashes costlier than this many PBKDF2 iterations are checked on the
/// blocking thread pool, so that no CONNECT stalls other connections.
const BLOCKING_ITERATIONS: u32 = 10_000;

/// A password or ACL file that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SecurityFileError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A line is malformed.
    #[error("{path}, line {line}: {problem}")]
    Line {
        /// The file.
        path: String,
        /// 1-based.
        line: usize,
        /// What is wrong.
        problem: String,
    },
}

impl SecurityFileError {
    /// Reads `path` and parses it with `parse`, whose error is a 1-based
    /// line number and the problem; either failure names the file.
    pub(crate) fn load<T>(
        path: &std::path::Path,
        parse: impl FnOnce(&str) -> Result<T, (usize, String)>,
    ) -> Result<T, Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Self::Read {
            path: path.display().to_string(),
            source,
        })?;
        parse(&text).map_err(|(line, problem)| Self::Line {
            path: path.display().to_string(),
            line,
            problem,
        })
    }
}

/// What an [`Authenticator`] is asked.
#[derive(Debug, Clone, Copy)]
pub struct AuthRequest<'a> {
    /// The client identifier of the CONNECT (empty if the broker will
    /// assign one).
    pub client_id: &'a str,
    /// The user name (never `None` when an authenticator is asked: clients
    /// without one are decided by `allow_anonymous`).
    pub username: Option<&'a str>,
    /// The password, if the CONNECT has one.
    pub password: Option<&'a [u8]>,
    /// The client's address.
    pub peer: SocketAddr,
}

/// An [`Authenticator`]'s answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthDecision {
    /// Let the client in.
    Allow,
    /// Unknown user or wrong password: CONNACK 0x86 (3.1.1: 4).
    BadCredentials,
    /// Known, but not allowed to connect: CONNACK 0x87 (3.1.1: 5).
    NotAuthorized,
}

impl AuthDecision {
    /// The CONNACK reason code of a refusal.
    pub fn reason_code(self) -> ReasonCode {
        match self {
            Self::Allow => ReasonCode::Success,
            Self::BadCredentials => ReasonCode::BadUserNameOrPassword,
            Self::NotAuthorized => ReasonCode::NotAuthorized,
        }
    }
}

/// The future an [`Authenticator`] returns.
pub type AuthFuture<'a> = Pin<Box<dyn Future<Output = AuthDecision> + Send + 'a>>;

/// Checks the credentials of a CONNECT that carries a user name.
///
/// Asynchronous, so that a backend may ask another service (HTTP, LDAP) or
/// verify a token (JWT) without blocking: the connection task awaits it,
/// and other connections go on meanwhile. A backend doing heavy CPU work
/// should move it to `tokio::task::spawn_blocking`, as the password file
/// does for costly hashes. The password file ([`PasswordFileAuthenticator`])
/// is one implementation; install another with
/// [`crate::Server::set_authenticator`].
pub trait Authenticator: Send + Sync + fmt::Debug {
    /// Decides on one CONNECT.
    fn authenticate<'a>(&'a self, request: AuthRequest<'a>) -> AuthFuture<'a>;

    /// Re-reads whatever the backend loaded (SIGHUP). On error the backend
    /// keeps what it had. The default does nothing.
    ///
    /// # Errors
    /// What could not be loaded.
    fn reload(&self) -> Result<(), SecurityFileError> {
        Ok(())
    }
}

/// The users of a mosquitto_passwd file, reloadable.
#[derive(Debug)]
pub struct PasswordFileAuthenticator {
    path: PathBuf,
    file: RwLock<Arc<PasswordFile>>,
}

impl PasswordFileAuthenticator {
    /// Loads the file.
    ///
    /// # Errors
    /// If it cannot be read or a line is malformed.
    pub fn load(path: &Path) -> Result<Self, SecurityFileError> {
        Ok(Self {
            file: RwLock::new(Arc::new(PasswordFile::load(path)?)),
            path: path.to_owned(),
        })
    }

    fn current(&self) -> Arc<PasswordFile> {
        self.file.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Compared against when the user is unknown, so that the answer takes as
/// long as for a known user and does not tell which names exist.
fn decoy() -> &'static PasswordHash {
    static DECOY: std::sync::OnceLock<PasswordHash> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        PasswordHash::with_salt(b"decoy", b"mqtt-rs-salt", crate::passwd::DEFAULT_ITERATIONS)
    })
}

impl Authenticator for PasswordFileAuthenticator {
    fn authenticate<'a>(&'a self, request: AuthRequest<'a>) -> AuthFuture<'a> {
        let file = self.current();
        let password = request.password.unwrap_or_default().to_vec();
        let hash = request.username.and_then(|u| file.get(u)).cloned();
        Box::pin(async move {
            let known = hash.is_some();
            let hash = hash.unwrap_or_else(|| decoy().clone());
            let ok = if hash.iterations() > BLOCKING_ITERATIONS {
                tokio::task::spawn_blocking(move || hash.verify(&password))
                    .await
                    .unwrap_or(false)
            } else {
                hash.verify(&password)
            };
            if ok && known && request.password.is_some() {
                AuthDecision::Allow
            } else {
                AuthDecision::BadCredentials
            }
        })
    }

    fn reload(&self) -> Result<(), SecurityFileError> {
        let file = Arc::new(PasswordFile::load(&self.path)?);
        *self.file.write().unwrap_or_else(|p| p.into_inner()) = file;
        Ok(())
    }
}

/// The authentication and authorisation settings of one listener.
#[derive(Debug, Clone)]
pub(crate) struct ListenerAuth {
    /// Whether clients without a user name may connect.
    pub(crate) allow_anonymous: bool,
    /// Checks clients with a user name; `None` accepts them all.
    pub(crate) authenticator: Option<Arc<dyn Authenticator>>,
    /// The ACL; `None` allows everything.
    pub(crate) acl: Option<Arc<AclFile>>,
}

/// What a connection task knows about its listener and transport, for
/// authentication. `ConnAuth::default()` means: the top-level settings,
/// no TLS identity.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnAuth {
    /// The listener's settings; `None` for the top-level ones.
    pub(crate) listener: Option<Arc<ListenerAuth>>,
    /// The user name taken from the client's certificate (mosquitto's
    /// `use_identity_as_username`): it replaces the CONNECT's user name and
    /// no password is checked.
    pub(crate) cert_username: Option<String>,
    /// The listener's own subscription limits (`None`: the top-level
    /// ones); a matching `[[client_limits]]` table comes first.
    pub(crate) rules: Option<Arc<mqtt_router::SubscribeRules>>,
    /// The listener's position in `Server::listeners`, which the admin
    /// API shows.
    pub(crate) listener_index: u16,
}

/// A connected client as the ACL sees it; kept with the session so that
/// deliveries to it are checked too.
#[derive(Debug)]
pub(crate) struct ClientAccess {
    acl: Arc<AclFile>,
    client_id: String,
    username: Option<String>,
}

impl ClientAccess {
    fn subject(&self) -> AclSubject<'_> {
        AclSubject {
            client_id: &self.client_id,
            username: self.username.as_deref(),
        }
    }

    pub(crate) fn can_publish(&self, topic: &str) -> bool {
        self.acl.rules().can_publish(&self.subject(), topic)
    }

    pub(crate) fn can_read(&self, topic: &str) -> bool {
        self.acl.rules().can_read(&self.subject(), topic)
    }

    pub(crate) fn can_subscribe(&self, filter: &str) -> bool {
        self.acl.rules().can_subscribe(&self.subject(), filter)
    }
}

/// An authenticated client, before its client identifier is final.
#[derive(Debug)]
pub(crate) struct Identity {
    acl: Option<Arc<AclFile>>,
    username: Option<String>,
}

impl Identity {
    /// The user name the client authenticated with, if any.
    pub(crate) fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// The client's ACL view, once the client identifier is known; `None`
    /// when no ACL applies.
    pub(crate) fn access(&self, client_id: &str) -> Option<Arc<ClientAccess>> {
        self.acl.as_ref().map(|acl| {
            Arc::new(ClientAccess {
                acl: acl.clone(),
                client_id: client_id.to_owned(),
                username: self.username.clone(),
            })
        })
    }
}

/// Failed logins by source address.
#[derive(Debug)]
pub(crate) struct FailureTable {
    limit: u32,
    window: Duration,
    entries: Mutex<HashMap<IpAddr, Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    since: Instant,
    blocked_until: Option<Instant>,
}

impl Failures {
    fn expired(&self, now: Instant, window: Duration) -> bool {
        match self.blocked_until {
            Some(until) => until <= now,
            None => self.since + window <= now,
        }
    }
}

/// IPv6 clients usually hold a whole /64: count them as one.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0])
            }
        },
    }
}

impl FailureTable {
    pub(crate) fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `ip` is refused now.
    pub(crate) fn is_blocked(&self, ip: IpAddr, now: Instant) -> bool {
        if self.limit == 0 {
            return false;
        }
        let entries = lock(&self.entries);
        entries
            .get(&address_key(ip))
            .and_then(|f| f.blocked_until)
            .is_some_and(|until| until > now)
    }

    /// Counts a failed login; returns true if the address is now refused.
    pub(crate) fn record_failure(&self, ip: IpAddr, now: Instant) -> bool {
        if self.limit == 0 {
            return false;
        }
        let key = address_key(ip);
        let mut entries = lock(&self.entries);
        if entries.len() >= MAX_TRACKED_ADDRESSES && !entries.contains_key(&key) {
            let window = self.window;
            entries.retain(|_, f| !f.expired(now, window));
            if entries.len() >= MAX_TRACKED_ADDRESSES {
                return false;
            }
        }
        let f = entries.entry(key).or_insert(Failures {
            count: 0,
            since: now,
            blocked_until: None,
        });
        if f.expired(now, self.window) {
            *f = Failures {
                count: 0,
                since: now,
                blocked_until: None,
            };
        }
        f.count += 1;
        if f.count >= self.limit && f.blocked_until.is_none() {
            f.blocked_until = Some(now + self.window);
            return true;
        }
        false
    }
}

/// Counts a refused CONNECT by its reason code.
pub(crate) fn count_refusal(stats: &Stats, code: ReasonCode) {
    let counter = match code {
        ReasonCode::BadUserNameOrPassword => &stats.auth_bad_credentials,
        ReasonCode::NotAuthorized => &stats.auth_not_authorized,
        ReasonCode::ConnectionRateExceeded => &stats.auth_blocked,
        _ => return,
    };
    Stats::add(counter, 1);
}

/// Everything about authentication and authorisation the broker holds.
#[derive(Debug)]
pub(crate) struct Security {
    /// The top-level settings, for connections of listeners without their
    /// own.
    default: RwLock<Arc<ListenerAuth>>,
    /// Loaded files, by path: listeners naming the same file share it, and
    /// a reload reads each once.
    password_files: Mutex<HashMap<PathBuf, Arc<PasswordFileAuthenticator>>>,
    acl_files: Mutex<HashMap<PathBuf, Arc<AclFile>>>,
    /// Other backends, reloaded too.
    others: Mutex<Vec<Arc<dyn Authenticator>>>,
    /// Whether any listener has an ACL: deliveries are checked only then.
    acl_in_use: AtomicBool,
    pub(crate) failures: FailureTable,
}

impl Security {
    /// The settings of `config` without loading any file (see
    /// [`Security::from_config`]).
    pub(crate) fn new(config: &Config) -> Self {
        Self {
            default: RwLock::new(Arc::new(ListenerAuth {
                allow_anonymous: config.allow_anonymous,
                authenticator: None,
                acl: None,
            })),
            password_files: Mutex::new(HashMap::new()),
            acl_files: Mutex::new(HashMap::new()),
            others: Mutex::new(Vec::new()),
            acl_in_use: AtomicBool::new(false),
            failures: FailureTable::new(
                config.max_auth_failures,
                Duration::from_secs(config.auth_failure_window),
            ),
        }
    }

    /// The top-level settings of `config`, with its files loaded.
    ///
    /// # Errors
    /// A file that cannot be loaded.
    pub(crate) fn from_config(config: &Config) -> Result<Self, SecurityFileError> {
        let security = Self::new(config);
        let auth = security.listener_auth(
            config.allow_anonymous,
            config.password_file.as_deref(),
            config.acl_file.as_deref(),
        )?;
        *security.default.write().unwrap_or_else(|p| p.into_inner()) = auth;
        Ok(security)
    }

    /// The settings of a listener: its own `allow_anonymous`,
    /// `password_file` and `acl_file`, or the top-level ones where it has
    /// none (the caller merges). Each file is loaded once, however many
    /// listeners name it, and reloaded with the others.
    ///
    /// # Errors
    /// A file that cannot be loaded.
    pub(crate) fn listener_auth(
        &self,
        allow_anonymous: bool,
        password_file: Option<&Path>,
        acl_file: Option<&Path>,
    ) -> Result<Arc<ListenerAuth>, SecurityFileError> {
        let authenticator = match password_file {
            Some(path) => {
                let mut files = lock(&self.password_files);
                let file = match files.get(path) {
                    Some(f) => f.clone(),
                    None => {
                        let f = Arc::new(PasswordFileAuthenticator::load(path)?);
                        files.insert(path.to_owned(), f.clone());
                        f
                    }
                };
                Some(file as Arc<dyn Authenticator>)
            }
            None => None,
        };
        let acl = match acl_file {
            Some(path) => {
                let mut files = lock(&self.acl_files);
                let file = match files.get(path) {
                    Some(f) => f.clone(),
                    None => {
                        let f = Arc::new(AclFile::load(path)?);
                        files.insert(path.to_owned(), f.clone());
                        f
                    }
                };
                self.acl_in_use.store(true, Ordering::Release);
                Some(file)
            }
            None => None,
        };
        Ok(Arc::new(ListenerAuth {
            allow_anonymous,
            authenticator,
            acl,
        }))
    }

    /// The top-level settings.
    pub(crate) fn default_auth(&self) -> Arc<ListenerAuth> {
        self.default
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the top-level authenticator.
    pub(crate) fn set_authenticator(&self, authenticator: Arc<dyn Authenticator>) {
        lock(&self.others).push(authenticator.clone());
        let mut default = self.default.write().unwrap_or_else(|p| p.into_inner());
        let mut auth = ListenerAuth::clone(&default);
        auth.authenticator = Some(authenticator);
        *default = Arc::new(auth);
    }

    /// Whether deliveries must be checked against an ACL.
    pub(crate) fn acl_in_use(&self) -> bool {
        self.acl_in_use.load(Ordering::Relaxed)
    }

    /// Reads every password and ACL file again. Files that fail keep their
    /// old contents; their errors are logged and returned.
    pub(crate) fn reload(&self) -> Vec<SecurityFileError> {
        let passwords: Vec<Arc<PasswordFileAuthenticator>> =
            lock(&self.password_files).values().cloned().collect();
        let acls: Vec<Arc<AclFile>> = lock(&self.acl_files).values().cloned().collect();
        let others: Vec<Arc<dyn Authenticator>> = lock(&self.others).clone();
        let mut errors = Vec::new();
        for p in passwords {
            match p.reload() {
                Ok(()) => tracing::info!(file = %p.path.display(), "password file reloaded"),
                Err(e) => errors.push(e),
            }
        }
        for a in acls {
            match a.reload() {
                Ok(()) => tracing::info!(file = %a.path().display(), "ACL file reloaded"),
                Err(e) => errors.push(e),
            }
        }
        for o in others {
            if let Err(e) = o.reload() {
                errors.push(e);
            }
        }
        for e in &errors {
            tracing::error!(error = %e, "reload failed; the previous rules stay in force");
        }
        errors
    }

    /// Decides on a CONNECT (see the module documentation). `Err` is the
    /// CONNACK reason code of a refusal.
    pub(crate) async fn authenticate(
        &self,
        conn: &ConnAuth,
        peer: SocketAddr,
        connect: &Connect,
        now: Instant,
    ) -> Result<Identity, ReasonCode> {
        let ip = peer.ip();
        if self.failures.is_blocked(ip, now) {
            tracing::info!(%peer, "CONNECT refused: too many failed logins from this address");
            return Err(ReasonCode::ConnectionRateExceeded);
        }
        let listener = conn.listener.clone().unwrap_or_else(|| self.default_auth());
        let username = conn
            .cert_username
            .clone()
            .or_else(|| connect.username.as_ref().map(|u| u.as_str().to_owned()));
        let decision = match (&username, &listener.authenticator) {
            (None, _) if listener.allow_anonymous => AuthDecision::Allow,
            (None, _) => AuthDecision::NotAuthorized,
            // The certificate vouches for the user.
            (Some(_), _) if conn.cert_username.is_some() => AuthDecision::Allow,
            (Some(_), None) => AuthDecision::Allow,
            (Some(user), Some(a)) => {
                a.authenticate(AuthRequest {
                    client_id: connect.client_id.as_str(),
                    username: Some(user),
                    password: connect.password.as_deref(),
                    peer,
                })
                .await
            }
        };
        if decision != AuthDecision::Allow {
            let blocked = self.failures.record_failure(ip, now);
            tracing::info!(
                %peer,
                username = username.as_deref().unwrap_or(""),
                ?decision,
                blocked,
                "CONNECT refused"
            );
            return Err(decision.reason_code());
        }
        Ok(Identity {
            acl: listener.acl.clone(),
            username,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_refused_after_the_limit_then_let_in_again() {
        let t = FailureTable::new(3, Duration::from_secs(60));
        let ip: IpAddr = [10, 0, 0, 1].into();
        let now = Instant::now();
        assert!(!t.record_failure(ip, now));
        assert!(!t.record_failure(ip, now));
        assert!(!t.is_blocked(ip, now));
        assert!(t.record_failure(ip, now));
        assert!(t.is_blocked(ip, now + Duration::from_secs(59)));
        assert!(!t.is_blocked([10, 0, 0, 2].into(), now));
        assert!(!t.is_blocked(ip, now + Duration::from_secs(60)));
        // A fresh window after the block.
        assert!(!t.record_failure(ip, now + Duration::from_secs(61)));
    }

    #[test]
    fn failures_spread_beyond_the_window_are_forgiven() {
        let t = FailureTable::new(2, Duration::from_secs(10));
        let ip: IpAddr = [10, 0, 0, 1].into();
        let now = Instant::now();
        assert!(!t.record_failure(ip, now));
        assert!(!t.record_failure(ip, now + Duration::from_secs(11)));
        assert!(t.record_failure(ip, now + Duration::from_secs(12)));
    }

    #[test]
    fn ipv6_addresses_count_per_64() {
        let t = FailureTable::new(2, Duration::from_secs(60));
        let now = Instant::now();
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::2".parse().unwrap();
        t.record_failure(a, now);
        t.record_failure(b, now);
        assert!(t.is_blocked("2001:db8::99".parse().unwrap(), now));
        assert!(!t.is_blocked("2001:db8:1::1".parse().unwrap(), now));
    }

    #[test]
    fn zero_limit_never_blocks() {
        let t = FailureTable::new(0, Duration::from_secs(60));
        let ip: IpAddr = [10, 0, 0, 1].into();
        for _ in 0..100 {
            assert!(!t.record_failure(ip, Instant::now()));
        }
        assert!(!t.is_blocked(ip, Instant::now()));
    }

    #[test]
    fn the_table_is_bounded() {
        let t = FailureTable::new(5, Duration::from_secs(60));
        let now = Instant::now();
        for i in 0..(MAX_TRACKED_ADDRESSES as u32 + 10) {
            t.record_failure(IpAddr::from(i.to_be_bytes()), now);
        }
        assert_eq!(lock(&t.entries).len(), MAX_TRACKED_ADDRESSES);
    }
}
