//! Access control lists in mosquitto's `acl_file` format.
//!
//! ```text
//! # Lines before the first `user` apply to clients without a user name.
//! topic read public/#
//!
//! user alice
//! topic readwrite alice/#
//! topic deny alice/secret/#
//!
//! # Patterns apply to every client, wherever they stand in the file.
//! pattern write devices/%c/status     %c: the client identifier
//! pattern read users/%u/inbox/#       %u: the user name
//! ```
//!
//! - `topic [read|write|readwrite|deny] FILTER` (no access word:
//!   `readwrite`) grants or denies the topics FILTER matches, with `+` and
//!   `#` as in subscriptions, to the user of the section it is in.
//! - `pattern [read|write|readwrite|deny] FILTER` does the same for every
//!   client, after replacing `%c` and `%u` in FILTER. A client identifier or
//!   user name that contains `+`, `#` or `/` (which would widen the pattern)
//!   makes an allowing pattern not apply and a denying one apply to any
//!   value; so does a missing user name for `%u`.
//! - A filter starting with a wildcard does not match topics starting with
//!   `$` (as in subscriptions): `$SYS/#` must be granted by name.
//!
//! Decisions:
//!
//! - **Deny wins**: a topic is refused if any `deny` rule of the client's
//!   section or any denying pattern matches it, whatever grants it. (In
//!   mosquitto a user's grant can beat a denying pattern; here it cannot.)
//! - Otherwise it is allowed if a rule of the client's section or a pattern
//!   grants the access, and refused if none does.
//! - **Publish** (`write`) is checked against the topic of each PUBLISH
//!   and of the will.
//! - **Read** is checked for each message at delivery, so a client may
//!   subscribe to `#` and receives only what it may read.
//! - **Subscribe** is refused only when no granted topic could ever match
//!   the filter, or a deny rule covers every topic it matches.
//!
//! Rules are scanned in order; an ACL of a few hundred rules costs
//! microseconds per check. The check runs only when an ACL file is
//! configured.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use mqtt_topic::TopicFilter;

use crate::auth::SecurityFileError;

const READ: u8 = 1;
const WRITE: u8 = 2;
/// An explicit `deny`.
const NONE: u8 = 0;

/// Who is asking: the substitutions of `%c` and `%u`, and which section
/// applies.
#[derive(Debug, Clone, Copy)]
pub struct AclSubject<'a> {
    /// The client identifier (`%c`).
    pub client_id: &'a str,
    /// The user name (`%u`); `None` for anonymous clients, whose rules are
    /// the lines before the first `user`.
    pub username: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    filter: String,
    /// `READ | WRITE` bits; [`NONE`] for a deny rule.
    access: u8,
    /// A `pattern`: `%c` and `%u` are substituted.
    pattern: bool,
}

/// The rules of one ACL file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclRules {
    anonymous: Vec<Rule>,
    users: HashMap<String, Vec<Rule>>,
    patterns: Vec<Rule>,
}

impl AclRules {
    /// Reads and parses a file.
    ///
    /// # Errors
    /// If it cannot be read, or a line is malformed (the error names the
    /// file and line).
    pub fn load(path: &Path) -> Result<Self, SecurityFileError> {
        SecurityFileError::load(path, Self::parse)
    }

    /// Parses the text of a file; an error gives the 1-based line number
    /// and the problem.
    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut rules = Self::default();
        let mut user: Option<String> = None;
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (keyword, rest) = line
                .split_once(char::is_whitespace)
                .map_or((line, ""), |(k, r)| (k, r.trim_start()));
            match keyword {
                "user" => {
                    if rest.is_empty() {
                        return Err((n, "`user` needs a user name".into()));
                    }
                    user = Some(rest.to_owned());
                    rules.users.entry(rest.to_owned()).or_default();
                }
                "topic" | "pattern" => {
                    let (access, filter) = match rest.split_once(char::is_whitespace) {
                        Some((a, f)) => match access_word(a) {
                            Some(bits) => (bits, f.trim_start()),
                            None => (READ | WRITE, rest),
                        },
                        None => (READ | WRITE, rest),
                    };
                    if filter.is_empty() || access_word(filter).is_some() {
                        return Err((n, format!("`{keyword}` needs a topic filter")));
                    }
                    TopicFilter::new(filter)
                        .map_err(|e| (n, format!("invalid topic filter {filter:?}: {e}")))?;
                    let rule = Rule {
                        filter: filter.to_owned(),
                        access,
                        pattern: keyword == "pattern",
                    };
                    let list = match (&user, rule.pattern) {
                        (_, true) => &mut rules.patterns,
                        (None, false) => &mut rules.anonymous,
                        (Some(u), false) => rules.users.entry(u.clone()).or_default(),
                    };
                    list.push(rule);
                }
                other => {
                    return Err((
                        n,
                        format!("unknown keyword {other:?} (expected user, topic or pattern)"),
                    ));
                }
            }
        }
        Ok(rules)
    }

    fn section(&self, who: &AclSubject<'_>) -> &[Rule] {
        match who.username {
            None => &self.anonymous,
            Some(u) => self.users.get(u).map_or(&[], Vec::as_slice),
        }
    }

    fn rules<'a>(&'a self, who: &AclSubject<'_>) -> impl Iterator<Item = &'a Rule> + Clone {
        self.section(who).iter().chain(&self.patterns)
    }

    fn check(&self, who: &AclSubject<'_>, topic: &str, access: u8) -> bool {
        let rules = self.rules(who);
        if rules
            .clone()
            .any(|r| r.access == NONE && matches(r, who, topic))
        {
            return false;
        }
        rules
            .filter(|r| r.access & access != 0)
            .any(|r| matches(r, who, topic))
    }

    /// Whether the client may publish to `topic`.
    pub fn can_publish(&self, who: &AclSubject<'_>, topic: &str) -> bool {
        self.check(who, topic, WRITE)
    }

    /// Whether the client may receive a message on `topic`.
    pub fn can_read(&self, who: &AclSubject<'_>, topic: &str) -> bool {
        self.check(who, topic, READ)
    }

    /// Whether the client may subscribe to `filter` (a filter without a
    /// `$share/` prefix): some readable topic could match it, and no deny
    /// rule covers all of it.
    pub fn can_subscribe(&self, who: &AclSubject<'_>, filter: &str) -> bool {
        let rules = self.rules(who);
        if rules
            .clone()
            .any(|r| r.access == NONE && compare(r, who, filter, Relation::Covers))
        {
            return false;
        }
        rules
            .filter(|r| r.access & READ != 0)
            .any(|r| compare(r, who, filter, Relation::Overlaps))
    }
}

fn access_word(w: &str) -> Option<u8> {
    Some(match w {
        "read" => READ,
        "write" => WRITE,
        "readwrite" => READ | WRITE,
        "deny" => NONE,
        _ => return None,
    })
}

/// One level of a rule, once `%c` and `%u` are considered.
#[derive(Debug, Clone, Copy)]
enum Level<'a> {
    /// `+`
    One,
    /// `#`
    Rest,
    /// Text, with `%c`/`%u` still to substitute when the rule is a pattern.
    Text(&'a str),
    /// A pattern whose substitution is missing or unsafe: the rule does not
    /// apply.
    Never,
}

fn unsafe_value(v: &str) -> bool {
    v.contains(['+', '#', '/'])
}

fn rule_level<'a>(rule: &Rule, level: &'a str, who: &AclSubject<'_>) -> Level<'a> {
    match level {
        "+" => Level::One,
        "#" => Level::Rest,
        _ if rule.pattern && level.contains('%') => {
            let bad_c = level.contains("%c") && unsafe_value(who.client_id);
            let bad_u = level.contains("%u") && who.username.is_none_or(unsafe_value);
            match (bad_c || bad_u, rule.access == NONE) {
                (false, _) => Level::Text(level),
                // A deny rule errs towards denying more.
                (true, true) => Level::One,
                (true, false) => Level::Never,
            }
        }
        _ => Level::Text(level),
    }
}

/// Whether a rule's text level equals `value`, substituting `%c` and `%u`
/// in patterns, without allocating.
fn text_eq(pattern: bool, template: &str, value: &str, who: &AclSubject<'_>) -> bool {
    if !pattern {
        return template == value;
    }
    let mut rest = value;
    let mut t = template;
    while let Some(pos) = t.find('%') {
        let Some(r) = rest.strip_prefix(&t[..pos]) else {
            return false;
        };
        rest = r;
        let sub = match t.as_bytes().get(pos + 1) {
            Some(b'c') => Some(who.client_id),
            Some(b'u') => who.username,
            _ => None,
        };
        match sub {
            Some(s) => {
                let Some(r) = rest.strip_prefix(s) else {
                    return false;
                };
                rest = r;
                t = &t[pos + 2..];
            }
            None => {
                let Some(r) = rest.strip_prefix('%') else {
                    return false;
                };
                rest = r;
                t = &t[pos + 1..];
            }
        }
    }
    rest == t
}

fn starts_with_wildcard(s: &str) -> bool {
    s.starts_with(['+', '#'])
}

/// Whether `rule` matches topic name `topic`.
fn matches(rule: &Rule, who: &AclSubject<'_>, topic: &str) -> bool {
    if topic.starts_with('$') && starts_with_wildcard(&rule.filter) {
        return false;
    }
    let mut levels = rule.filter.split('/');
    let mut topic_levels = topic.split('/');
    loop {
        let level = levels.next().map(|l| rule_level(rule, l, who));
        match (level, topic_levels.next()) {
            (Some(Level::Rest), _) => return true,
            (Some(Level::One), Some(_)) => {}
            (Some(Level::Text(t)), Some(v)) if text_eq(rule.pattern, t, v, who) => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Relation {
    /// Every topic the filter matches, the rule matches.
    Covers,
    /// Some topic matches both.
    Overlaps,
}

/// How a rule's filter relates to a subscription's filter.
fn compare(rule: &Rule, who: &AclSubject<'_>, filter: &str, relation: Relation) -> bool {
    let rule_wild = starts_with_wildcard(&rule.filter);
    let filter_wild = starts_with_wildcard(filter);
    // Wildcards in the first level never reach `$` topics.
    if (filter.starts_with('$') && rule_wild) || (rule.filter.starts_with('$') && filter_wild) {
        return false;
    }
    let mut levels = rule.filter.split('/');
    let mut filter_levels = filter.split('/');
    loop {
        let level = levels.next().map(|l| rule_level(rule, l, who));
        let f = filter_levels.next();
        match relation {
            Relation::Covers => match (level, f) {
                (Some(Level::Rest), _) => return true,
                (Some(Level::One), Some(f)) if f != "#" => {}
                (Some(Level::Text(t)), Some(f))
                    if f != "+" && f != "#" && text_eq(rule.pattern, t, f, who) => {}
                (None, None) => return true,
                _ => return false,
            },
            Relation::Overlaps => match (level, f) {
                (Some(Level::Never), _) => return false,
                (Some(Level::Rest), _) | (_, Some("#")) => return true,
                (Some(Level::One), Some(_)) | (Some(_), Some("+")) => {}
                (Some(Level::Text(t)), Some(f)) if text_eq(rule.pattern, t, f, who) => {}
                (None, None) => return true,
                _ => return false,
            },
        }
    }
}

/// An ACL file and its current rules, replaced whole on reload.
#[derive(Debug)]
pub(crate) struct AclFile {
    path: PathBuf,
    rules: RwLock<Arc<AclRules>>,
}

impl AclFile {
    /// Loads the file.
    ///
    /// # Errors
    /// As [`AclRules::load`].
    pub(crate) fn load(path: &Path) -> Result<Self, SecurityFileError> {
        Ok(Self {
            rules: RwLock::new(Arc::new(AclRules::load(path)?)),
            path: path.to_owned(),
        })
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The rules now in force.
    pub(crate) fn rules(&self) -> Arc<AclRules> {
        self.rules.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Reads the file again; on error the rules in force stay.
    ///
    /// # Errors
    /// As [`AclRules::load`].
    pub(crate) fn reload(&self) -> Result<(), SecurityFileError> {
        let rules = Arc::new(AclRules::load(&self.path)?);
        *self.rules.write().unwrap_or_else(|p| p.into_inner()) = rules;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const ANON: AclSubject<'static> = AclSubject {
        client_id: "anon-1",
        username: None,
    };

    fn user(name: &'static str, client_id: &'static str) -> AclSubject<'static> {
        AclSubject {
            client_id,
            username: Some(name),
        }
    }

    fn acl(text: &str) -> AclRules {
        AclRules::parse(text).unwrap()
    }

    #[test]
    fn lines_before_the_first_user_are_for_anonymous_clients() {
        let a = acl("topic read public/#\nuser alice\ntopic alice/#\n");
        assert!(a.can_read(&ANON, "public/news"));
        assert!(!a.can_publish(&ANON, "public/news"));
        assert!(!a.can_read(&ANON, "alice/x"));
        let alice = user("alice", "c1");
        assert!(a.can_read(&alice, "alice/x") && a.can_publish(&alice, "alice/x"));
        assert!(
            !a.can_read(&alice, "public/news"),
            "anonymous rules are not hers"
        );
        assert!(!a.can_read(&user("bob", "c2"), "alice/x"));
    }

    #[test]
    fn access_words() {
        let a = acl("topic read r\ntopic write w\ntopic readwrite rw\ntopic both\n");
        assert!(a.can_read(&ANON, "r") && !a.can_publish(&ANON, "r"));
        assert!(!a.can_read(&ANON, "w") && a.can_publish(&ANON, "w"));
        assert!(a.can_read(&ANON, "rw") && a.can_publish(&ANON, "rw"));
        assert!(a.can_read(&ANON, "both") && a.can_publish(&ANON, "both"));
        assert!(!a.can_read(&ANON, "other"));
    }

    #[test]
    fn topics_with_spaces_and_user_names_with_spaces() {
        let a = acl("user john smith\ntopic read a b/#\n");
        assert!(a.can_read(&user("john smith", "c"), "a b/c"));
    }

    #[test]
    fn patterns_substitute_client_id_and_user_name() {
        let a =
            acl("pattern write devices/%c/status\npattern read users/%u/#\npattern read x/%u-%c\n");
        let alice = user("alice", "dev7");
        assert!(a.can_publish(&alice, "devices/dev7/status"));
        assert!(!a.can_publish(&alice, "devices/dev8/status"));
        assert!(a.can_read(&alice, "users/alice/inbox"));
        assert!(!a.can_read(&alice, "users/bob/inbox"));
        assert!(a.can_read(&alice, "x/alice-dev7"));
        assert!(!a.can_read(&alice, "x/alice-dev8"));
        // %u never matches an anonymous client.
        assert!(!a.can_read(&ANON, "users//inbox"));
        // Patterns apply to anonymous clients too (for %c).
        assert!(a.can_publish(&ANON, "devices/anon-1/status"));
    }

    #[test]
    fn wildcards_in_names_do_not_widen_patterns() {
        let a = acl("pattern read users/%u/#\npattern deny secret/%c\ntopic read secret/#\n");
        assert!(!a.can_read(&user("+", "c"), "users/bob/x"));
        assert!(!a.can_read(&user("#", "c"), "users/bob/x"));
        let sneaky = AclSubject {
            client_id: "a/b",
            username: None,
        };
        assert!(
            !a.can_read(&sneaky, "secret/anything"),
            "the deny applies to any level"
        );
        assert!(a.can_read(&ANON, "secret/other"));
        assert!(!a.can_read(&ANON, "secret/anon-1"));
    }

    #[test]
    fn deny_wins_over_any_grant() {
        let a = acl(
            "user alice\ntopic readwrite home/#\ntopic deny home/secret/#\npattern deny home/%u\n",
        );
        let alice = user("alice", "c");
        assert!(a.can_read(&alice, "home/kitchen"));
        assert!(!a.can_read(&alice, "home/secret/x"));
        assert!(!a.can_publish(&alice, "home/secret"));
        assert!(
            !a.can_publish(&alice, "home/alice"),
            "a denying pattern beats her grant"
        );
    }

    #[test]
    fn dollar_topics_are_not_matched_by_leading_wildcards() {
        let a = acl("topic read #\ntopic read $SYS/broker/#\n");
        assert!(a.can_read(&ANON, "a/b"));
        assert!(!a.can_read(&ANON, "$internal/x"));
        assert!(a.can_read(&ANON, "$SYS/broker/uptime"));
    }

    #[test]
    fn subscribe_is_refused_only_when_nothing_could_be_read() {
        let a = acl("topic read a/#\ntopic write w/#\ntopic read d/#\ntopic deny d/secret/#\n");
        assert!(
            a.can_subscribe(&ANON, "#"),
            "overlaps a/#: filtered at delivery"
        );
        assert!(a.can_subscribe(&ANON, "+/x"));
        assert!(a.can_subscribe(&ANON, "a"), "a/# matches a");
        assert!(a.can_subscribe(&ANON, "a/b/c"));
        assert!(!a.can_subscribe(&ANON, "w/x"), "write only");
        assert!(!a.can_subscribe(&ANON, "b/#"));
        assert!(a.can_subscribe(&ANON, "d/+"));
        assert!(!a.can_subscribe(&ANON, "d/secret/#"), "covered by a deny");
        assert!(!a.can_subscribe(&ANON, "d/secret/+/y"));
        assert!(!a.can_subscribe(&ANON, "$SYS/#"));
    }

    #[test]
    fn bad_lines_are_named() {
        assert_eq!(AclRules::parse("topic read a\nfoo bar\n").unwrap_err().0, 2);
        assert_eq!(AclRules::parse("user\n").unwrap_err().0, 1);
        assert_eq!(AclRules::parse("# c\ntopic read\n").unwrap_err().0, 2);
        assert_eq!(AclRules::parse("\n\ntopic read a/#/b\n").unwrap_err().0, 3);
    }

    #[test]
    fn an_empty_file_allows_nothing() {
        let a = acl("# nothing\n");
        assert!(!a.can_read(&ANON, "a"));
        assert!(!a.can_publish(&ANON, "a"));
        assert!(!a.can_subscribe(&ANON, "#"));
    }
}
