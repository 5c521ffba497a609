//! The examples and normative statements of MQTT 3.1.1 §4.7 and MQTT 5.0
//! §4.7 and §4.8.2, one test per statement. The two versions number these
//! statements the same way and give the same examples.
#![allow(clippy::unwrap_used)]

use mqtt_topic::{
    RetainedIndex, SharedFilter, Subscription, SubscriptionTrie, TopicError, TopicFilter,
    TopicName, matches,
};

fn name(s: &str) -> TopicName {
    TopicName::new(s).unwrap()
}

fn filter(s: &str) -> TopicFilter {
    TopicFilter::new(s).unwrap()
}

/// Checks a matching case with every matcher of the crate: the naive
/// function, `TopicFilter::matches`, the trie and the retained index.
fn check_match(f: &str, t: &str, expected: bool) {
    assert_eq!(matches(f, t), expected, "matches({f:?}, {t:?})");
    assert_eq!(
        filter(f).matches(&name(t)),
        expected,
        "{f:?}.matches({t:?})"
    );

    let mut trie = SubscriptionTrie::new();
    trie.insert(&filter(f), (), ());
    let mut hits = 0;
    trie.match_topic(&name(t), |_, _| hits += 1);
    assert_eq!(hits, usize::from(expected), "trie: {f:?} against {t:?}");

    let mut retained = RetainedIndex::new();
    retained.insert(name(t), ());
    let mut hits = 0;
    retained.match_filter(&filter(f), |_, _| hits += 1);
    assert_eq!(hits, usize::from(expected), "retained: {f:?} against {t:?}");
}

// ---- §4.7.1.2 Multi-level wildcard -------------------------------------

/// "sport/tennis/player1/#" matches the player's topic and every topic below
/// it; "sport/#" matches "sport" because `#` includes the parent level.
#[test]
fn multi_level_wildcard_examples() {
    for (f, t, expected) in [
        ("sport/tennis/player1/#", "sport/tennis/player1", true),
        (
            "sport/tennis/player1/#",
            "sport/tennis/player1/ranking",
            true,
        ),
        (
            "sport/tennis/player1/#",
            "sport/tennis/player1/score/wimbledon",
            true,
        ),
        ("sport/tennis/player1/#", "sport/tennis/player2", false),
        ("sport/tennis/player1/#", "sport/tennis", false),
        ("sport/#", "sport", true),
        ("sport/#", "sport/", true),
        ("sport/#", "sports", false),
        ("#", "sport/tennis", true),
        ("#", "/", true),
    ] {
        check_match(f, t, expected);
    }
}

/// [MQTT-4.7.1-2]: `#` must be a level on its own and the last one.
#[test]
fn mqtt_4_7_1_2_multi_level_wildcard_placement() {
    for valid in ["sport/tennis/#", "sport/#", "#", "/#", "+/#", "sport//#"] {
        assert!(TopicFilter::new(valid).is_ok(), "{valid:?}");
    }
    assert_eq!(
        TopicFilter::new("sport/tennis#"),
        Err(TopicError::MultiLevelWildcardNotAlone {
            offset: 12,
            level: 1
        })
    );
    assert_eq!(
        TopicFilter::new("sport/tennis/#/ranking"),
        Err(TopicError::MultiLevelWildcardNotLast {
            offset: 13,
            level: 2
        })
    );
    assert_eq!(
        TopicFilter::new("#/"),
        Err(TopicError::MultiLevelWildcardNotLast {
            offset: 0,
            level: 0
        })
    );
    assert_eq!(
        TopicFilter::new("##"),
        Err(TopicError::MultiLevelWildcardNotAlone {
            offset: 0,
            level: 0
        })
    );
}

// ---- §4.7.1.3 Single-level wildcard ------------------------------------

#[test]
fn single_level_wildcard_examples() {
    for (f, t, expected) in [
        ("sport/tennis/+", "sport/tennis/player1", true),
        ("sport/tennis/+", "sport/tennis/player2", true),
        ("sport/tennis/+", "sport/tennis/player1/ranking", false),
        ("sport/+", "sport", false),
        ("sport/+", "sport/", true),
        ("sport/+/player1", "sport/tennis/player1", true),
        ("sport/+/player1", "sport/tennis/player2", false),
        ("+/+", "/finance", true),
        ("/+", "/finance", true),
        ("+", "/finance", false),
        ("+", "finance", true),
        ("+/tennis/#", "sport/tennis/player1", true),
        ("+/tennis/#", "sport/tennis", true),
    ] {
        check_match(f, t, expected);
    }
}

/// [MQTT-4.7.1-3]: `+` must occupy a whole level.
#[test]
fn mqtt_4_7_1_3_single_level_wildcard_placement() {
    for valid in ["+", "+/tennis/#", "sport/+/player1", "+/+", "/+", "+//+"] {
        assert!(TopicFilter::new(valid).is_ok(), "{valid:?}");
    }
    assert_eq!(
        TopicFilter::new("sport+"),
        Err(TopicError::SingleLevelWildcardNotAlone {
            offset: 5,
            level: 0
        })
    );
    assert_eq!(
        TopicFilter::new("sport/+tennis"),
        Err(TopicError::SingleLevelWildcardNotAlone {
            offset: 6,
            level: 1
        })
    );
    assert_eq!(
        TopicFilter::new("++"),
        Err(TopicError::SingleLevelWildcardNotAlone {
            offset: 0,
            level: 0
        })
    );
}

/// [MQTT-4.7.1-1] and [MQTT-3.3.2-2]: no wildcard in a topic name.
#[test]
fn mqtt_3_3_2_2_no_wildcards_in_topic_names() {
    assert_eq!(
        TopicName::new("sport/+/player1"),
        Err(TopicError::WildcardInName {
            wildcard: '+',
            offset: 6,
            level: 1
        })
    );
    assert_eq!(
        TopicName::new("sport/tennis/#"),
        Err(TopicError::WildcardInName {
            wildcard: '#',
            offset: 13,
            level: 2
        })
    );
    assert_eq!(
        TopicName::new("sport#"),
        Err(TopicError::WildcardInName {
            wildcard: '#',
            offset: 5,
            level: 0
        })
    );
    assert!(!matches("sport/+", "sport/+"), "a name with '+' is invalid");
}

// ---- §4.7.2 Topics beginning with $ ------------------------------------

/// [MQTT-4.7.2-1]: filters starting with a wildcard do not match topics
/// starting with `$`.
#[test]
fn mqtt_4_7_2_1_dollar_topics_not_matched_by_leading_wildcards() {
    for (f, t, expected) in [
        ("#", "$SYS/monitor/Clients", false),
        ("+/monitor/Clients", "$SYS/monitor/Clients", false),
        ("$SYS/#", "$SYS/monitor/Clients", true),
        ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
        ("+", "$SYS", false),
        ("+/#", "$SYS", false),
        ("$SYS/#", "$SYS", true),
        // Only the first character counts: `$` further on is ordinary.
        ("+/$SYS", "a/$SYS", true),
        ("#", "a/$SYS", true),
        ("sport/#", "sport/$tennis", true),
    ] {
        check_match(f, t, expected);
    }
}

// ---- §4.7.3 Topic semantic and usage -----------------------------------

/// [MQTT-4.7.3-1]: at least one character.
#[test]
fn mqtt_4_7_3_1_at_least_one_character() {
    assert_eq!(TopicName::new(""), Err(TopicError::Empty));
    assert_eq!(TopicFilter::new(""), Err(TopicError::Empty));
    assert_eq!(Subscription::new(""), Err(TopicError::Empty));
    // A lone separator is one character: two empty levels.
    assert_eq!(name("/").levels().collect::<Vec<_>>(), ["", ""]);
    assert!(TopicFilter::new("/").is_ok());
}

/// [MQTT-4.7.3-2]: no U+0000.
#[test]
fn mqtt_4_7_3_2_no_null_character() {
    assert_eq!(
        TopicName::new("a\0b"),
        Err(TopicError::NullCharacter {
            offset: 1,
            level: 0
        })
    );
    assert_eq!(
        TopicFilter::new("a/+/\0"),
        Err(TopicError::NullCharacter {
            offset: 4,
            level: 2
        })
    );
    assert!(Subscription::new("$share/g\0/a").is_err());
}

/// [MQTT-4.7.3-3]: at most 65,535 bytes.
#[test]
fn mqtt_4_7_3_3_length_limit() {
    let longest = "a".repeat(65_535);
    assert!(TopicName::new(&longest).is_ok());
    assert!(TopicFilter::new(&longest).is_ok());
    let too_long = "a".repeat(65_536);
    assert_eq!(
        TopicName::new(&too_long),
        Err(TopicError::TooLong { len: 65_536 })
    );
    assert_eq!(
        TopicFilter::new(&too_long),
        Err(TopicError::TooLong { len: 65_536 })
    );
    // Bytes, not characters: 'é' is two bytes.
    let multibyte = "é".repeat(32_768);
    assert_eq!(
        TopicName::new(&multibyte),
        Err(TopicError::TooLong { len: 65_536 })
    );
}

/// Non-normative examples of §4.7.3: names are case-sensitive, may contain
/// spaces, and empty levels are levels.
#[test]
fn topic_semantics_examples() {
    check_match("ACCOUNTS", "Accounts", false);
    check_match("Accounts payable", "Accounts payable", true);
    check_match("/finance", "finance", false);
    check_match("a//b", "a//b", true);
    check_match("a/+/b", "a//b", true);
    check_match("a/b", "a/b/", false);
}

/// [MQTT-1.5.4-1]: the `Bytes` constructors check UTF-8.
#[test]
fn mqtt_1_5_4_1_utf8_from_bytes() {
    let bad = bytes::Bytes::from_static(b"ab\xffc");
    assert_eq!(
        TopicName::from_bytes(bad.clone()),
        Err(TopicError::InvalidUtf8 { offset: 2 })
    );
    assert_eq!(
        TopicFilter::from_bytes(bad.clone()),
        Err(TopicError::InvalidUtf8 { offset: 2 })
    );
    assert_eq!(
        Subscription::from_bytes(bad),
        Err(TopicError::InvalidUtf8 { offset: 2 })
    );
    let good = bytes::Bytes::from_static("sport/tennis/joueur1/é".as_bytes());
    assert_eq!(
        TopicName::from_bytes(good).unwrap(),
        "sport/tennis/joueur1/é"
    );
}

// ---- §4.8.2 Shared subscriptions (MQTT 5.0) -----------------------------

#[test]
fn shared_subscription_parts() {
    let sub = Subscription::new("$share/consumer1/sport/tennis/+").unwrap();
    assert!(sub.is_shared());
    assert_eq!(sub.group(), Some("consumer1"));
    assert_eq!(sub.filter(), "sport/tennis/+");
    assert_eq!(sub.to_string(), "$share/consumer1/sport/tennis/+");

    // The filter part may itself start with `/` or be a wildcard.
    let sub = Subscription::new("$share/consumer1//finance").unwrap();
    assert_eq!(sub.filter(), "/finance");
    let sub = Subscription::new("$share/g/#").unwrap();
    assert_eq!(sub.filter(), "#");

    // Not shared: no `$share/` prefix.
    for plain in [
        "sport/#",
        "$share",
        "$shared/g/a",
        "$SHARE/g/a",
        "a/$share/g/b",
    ] {
        let sub = Subscription::new(plain).unwrap();
        assert_eq!(sub, Subscription::Plain(filter(plain)), "{plain:?}");
    }
}

/// [MQTT-4.8.2-1]: the share name is at least one character and has no
/// `/`, `+` or `#`.
#[test]
fn mqtt_4_8_2_1_share_name() {
    assert_eq!(
        Subscription::new("$share//sport"),
        Err(TopicError::EmptyShareName { offset: 7 })
    );
    assert_eq!(
        Subscription::new("$share/"),
        Err(TopicError::EmptyShareName { offset: 7 })
    );
    assert_eq!(
        Subscription::new("$share/a+b/sport"),
        Err(TopicError::InvalidShareName {
            character: '+',
            offset: 8
        })
    );
    assert_eq!(
        Subscription::new("$share/#/sport"),
        Err(TopicError::InvalidShareName {
            character: '#',
            offset: 7
        })
    );
    assert_eq!(
        SharedFilter::new("a/b", filter("sport")),
        Err(TopicError::InvalidShareName {
            character: '/',
            offset: 8
        })
    );
    let shared = SharedFilter::new("g", filter("sport/+")).unwrap();
    assert_eq!(shared.to_string(), "$share/g/sport/+");
}

/// [MQTT-4.8.2-2]: the share name is followed by `/` and a topic filter,
/// which obeys the rules of any filter.
#[test]
fn mqtt_4_8_2_2_shared_filter() {
    assert_eq!(
        Subscription::new("$share/g"),
        Err(TopicError::MissingSharedFilter { offset: 8 })
    );
    assert_eq!(
        Subscription::new("$share/g/"),
        Err(TopicError::MissingSharedFilter { offset: 9 })
    );
    // Offsets and levels count from the start of the whole string.
    assert_eq!(
        Subscription::new("$share/g/sport/tennis#"),
        Err(TopicError::MultiLevelWildcardNotAlone {
            offset: 21,
            level: 3
        })
    );
    assert_eq!(
        Subscription::new("$share/g/sport+"),
        Err(TopicError::SingleLevelWildcardNotAlone {
            offset: 14,
            level: 2
        })
    );
}

/// Every error names its normative statement in its message.
#[test]
fn errors_cite_the_specification() {
    let errors = [
        TopicName::new("").unwrap_err(),
        TopicName::new(&"a".repeat(70_000)).unwrap_err(),
        TopicName::new("a\0").unwrap_err(),
        TopicName::from_bytes(bytes::Bytes::from_static(b"\xff")).unwrap_err(),
        TopicName::new("a/+").unwrap_err(),
        TopicFilter::new("a+").unwrap_err(),
        TopicFilter::new("a#").unwrap_err(),
        TopicFilter::new("#/a").unwrap_err(),
        Subscription::new("$share//a").unwrap_err(),
        Subscription::new("$share/+/a").unwrap_err(),
        Subscription::new("$share/g").unwrap_err(),
    ];
    for error in errors {
        let message = error.to_string();
        assert!(
            message.contains(&format!("[{}]", error.statement())),
            "{message}"
        );
    }
}

// ---- Types --------------------------------------------------------------

#[test]
fn levels_and_conversions() {
    let f = filter("+/tennis/#");
    assert_eq!(f.levels().collect::<Vec<_>>(), ["+", "tennis", "#"]);
    assert!(f.has_wildcards());
    assert!(!filter("a/b").has_wildcards());
    assert_eq!(
        name("/finance").levels().collect::<Vec<_>>(),
        ["", "finance"]
    );
    assert_eq!(
        name("a/b/c").levels().rev().collect::<Vec<_>>(),
        ["c", "b", "a"]
    );
    assert!(name("$SYS/x").is_dollar());
    assert!(!name("a/$SYS").is_dollar());

    let from_string = TopicName::try_from(String::from("a/b")).unwrap();
    let from_static = TopicName::from_static("a/b").unwrap();
    let parsed: TopicName = "a/b".parse().unwrap();
    assert_eq!(from_string, from_static);
    assert_eq!(from_string, parsed);
    assert_eq!(format!("{parsed} {parsed:?}"), "a/b \"a/b\"");
    assert_eq!(TopicFilter::from(parsed), filter("a/b"));
    assert!(TopicFilter::try_from(String::from("a/#")).is_ok());
    assert!(TopicFilter::from_static("a#").is_err());
}
