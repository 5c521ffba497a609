//! The subscription trie and the retained index: their API, and the cases
//! the random tests are unlikely to reach (wide nodes, crowded filters,
//! very deep filters).
#![allow(clippy::unwrap_used)]

use mqtt_topic::{RetainedIndex, SubscriptionTrie, TopicFilter, TopicName};

fn name(s: &str) -> TopicName {
    TopicName::new(s).unwrap()
}

fn filter(s: &str) -> TopicFilter {
    TopicFilter::new(s).unwrap()
}

fn matched<V: Clone + Ord>(trie: &SubscriptionTrie<u32, V>, topic: &str) -> Vec<(u32, V)> {
    let mut got = Vec::new();
    trie.match_topic(&name(topic), |k, v| got.push((*k, v.clone())));
    got.sort();
    got
}

#[test]
fn insert_get_update_remove() {
    let mut trie = SubscriptionTrie::new();
    assert!(trie.is_empty());
    assert_eq!(trie.insert(&filter("a/+"), 1, "qos0"), None);
    assert_eq!(trie.insert(&filter("a/+"), 1, "qos1"), Some("qos0"));
    assert_eq!(trie.len(), 1);
    assert_eq!(trie.get(&filter("a/+"), &1), Some(&"qos1"));
    assert_eq!(trie.get(&filter("a/#"), &1), None);
    assert_eq!(trie.get(&filter("a/b"), &1), None);
    *trie.get_mut(&filter("a/+"), &1).unwrap() = "qos2";
    assert!(trie.contains(&filter("a/+"), &1));
    assert_eq!(matched(&trie, "a/x"), [(1, "qos2")]);
    assert_eq!(trie.remove(&filter("a/+"), &2), None);
    assert_eq!(trie.remove(&filter("a/#"), &1), None);
    assert_eq!(trie.remove(&filter("a/+"), &1), Some("qos2"));
    assert_eq!(trie.remove(&filter("a/+"), &1), None);
    assert!(trie.is_empty());
    assert_eq!(trie.node_count(), 1);
}

/// A client's overlapping subscriptions are separate entries, and the
/// visitor sees each one.
#[test]
fn overlapping_filters_of_one_key_are_each_visited() {
    let mut trie = SubscriptionTrie::new();
    for (i, f) in ["sport/#", "sport/+", "sport/tennis", "#", "+/tennis"]
        .iter()
        .enumerate()
    {
        trie.insert(&filter(f), 7, i);
    }
    assert_eq!(trie.len(), 5);
    assert_eq!(
        matched(&trie, "sport/tennis"),
        [(7, 0), (7, 1), (7, 2), (7, 3), (7, 4)]
    );
    assert_eq!(matched(&trie, "sport"), [(7, 0), (7, 3)]);
}

#[test]
fn iteration_rebuilds_every_filter() {
    let filters = [
        "#", "+", "/", "/#", "a", "a/#", "a/+/b", "+/+", "$SYS/#", "a//", "a/b/c/#",
    ];
    let mut trie = SubscriptionTrie::new();
    for (i, f) in filters.iter().enumerate() {
        trie.insert(&filter(f), i as u32, ());
        trie.insert(&filter(f), 100 + i as u32, ());
    }
    let mut got: Vec<(String, u32)> = trie.iter().map(|(f, k, _)| (f.to_string(), *k)).collect();
    got.sort();
    let mut expected: Vec<(String, u32)> = filters
        .iter()
        .enumerate()
        .flat_map(|(i, f)| [(f.to_string(), i as u32), (f.to_string(), 100 + i as u32)])
        .collect();
    expected.sort();
    assert_eq!(got, expected);
    assert_eq!(trie.iter().len(), filters.len() * 2);
    assert_eq!(format!("{:?}", SubscriptionTrie::<u8, u8>::new()), "[]");
}

/// A node with many children switches to a hash map and back; a filter with
/// many keys too. Both must keep matching and free everything at the end.
#[test]
fn wide_nodes_and_crowded_filters() {
    let mut trie = SubscriptionTrie::new();
    for i in 0..1000u32 {
        trie.insert(&filter(&format!("devices/{i}/cmd")), i, ());
        trie.insert(&filter("devices/+/cmd"), i, ());
    }
    assert_eq!(trie.len(), 2000);
    let mut hits = 0;
    trie.match_topic(&name("devices/500/cmd"), |_, _| hits += 1);
    assert_eq!(hits, 1001);
    for i in (0..1000u32).rev() {
        assert_eq!(
            trie.remove(&filter(&format!("devices/{i}/cmd")), &i),
            Some(())
        );
        assert_eq!(trie.remove(&filter("devices/+/cmd"), &i), Some(()));
        if i == 3 {
            // Back to a short vector: still found.
            assert_eq!(
                matched(&trie, "devices/1/cmd"),
                [(0, ()), (1, ()), (1, ()), (2, ())]
            );
        }
    }
    assert!(trie.is_empty());
    assert_eq!(trie.node_count(), 1);
}

/// A valid filter can have 32,768 levels; nothing may recurse per level
/// (the test thread has a 2 MiB stack).
#[test]
fn very_deep_filters_do_not_overflow_the_stack() {
    const LEVELS: usize = 32_000; // room left for a `/#` within 65,535 bytes
    let deep = vec!["a"; LEVELS].join("/");
    let mut trie = SubscriptionTrie::new();
    trie.insert(&filter(&deep), 1u32, ());
    trie.insert(&filter(&format!("{deep}/#")), 2, ());
    trie.insert(&filter(&vec!["+"; LEVELS].join("/")), 3, ());
    assert_eq!(matched(&trie, &deep), [(1, ()), (2, ()), (3, ())]);
    assert_eq!(trie.iter().count(), 3);
    assert_eq!(trie.remove(&filter(&deep), &1), Some(()));
    // The other deep branches are dropped with the trie.
    drop(trie);

    let mut retained = RetainedIndex::new();
    retained.insert(name(&deep), 1);
    let mut hits = 0;
    retained.match_filter(&filter("#"), |_, _| hits += 1);
    retained.match_filter(&filter(&vec!["+"; LEVELS].join("/")), |_, _| hits += 1);
    assert_eq!(hits, 2);
    assert_eq!(retained.iter().count(), 1);
    drop(retained);

    let mut trie = SubscriptionTrie::new();
    trie.insert(&filter(&deep), 1u32, ());
    assert_eq!(trie.remove(&filter(&deep), &1), Some(()));
    assert_eq!(trie.node_count(), 1);
}

#[test]
fn retained_insert_get_remove() {
    let mut retained = RetainedIndex::new();
    assert_eq!(retained.insert(name("a/b"), 1), None);
    assert_eq!(retained.insert(name("a/b"), 2), Some(1));
    assert_eq!(retained.insert(name("a"), 3), None);
    assert_eq!(retained.len(), 2);
    assert_eq!(retained.get(&name("a/b")), Some(&2));
    assert_eq!(retained.get(&name("a/c")), None);
    *retained.get_mut(&name("a")).unwrap() += 10;
    assert!(retained.contains(&name("a")));
    let mut all: Vec<(String, i32)> = retained.iter().map(|(t, v)| (t.to_string(), *v)).collect();
    all.sort();
    assert_eq!(all, [("a".to_string(), 13), ("a/b".to_string(), 2)]);

    // `a` keeps its node while `a/b` is there, and the other way round.
    assert_eq!(retained.remove(&name("a")), Some(13));
    assert_eq!(retained.get(&name("a/b")), Some(&2));
    assert_eq!(retained.node_count(), 3);
    assert_eq!(retained.remove(&name("a")), None);
    assert_eq!(retained.remove(&name("a/b")), Some(2));
    assert!(retained.is_empty());
    assert_eq!(retained.node_count(), 1);
}

#[test]
fn retained_wide_levels() {
    let mut retained = RetainedIndex::new();
    for i in 0..1000 {
        retained.insert(name(&format!("sensors/{i}/temp")), i);
        retained.insert(name(&format!("sensors/{i}/hum")), i);
    }
    let mut hits = 0;
    retained.match_filter(&filter("sensors/+/temp"), |_, _| hits += 1);
    assert_eq!(hits, 1000);
    hits = 0;
    retained.match_filter(&filter("sensors/42/#"), |_, _| hits += 1);
    assert_eq!(hits, 2);
    hits = 0;
    retained.match_filter(&filter("#"), |_, _| hits += 1);
    assert_eq!(hits, 2000);
    for i in 0..1000 {
        assert_eq!(
            retained.remove(&name(&format!("sensors/{i}/temp"))),
            Some(i)
        );
        assert_eq!(retained.remove(&name(&format!("sensors/{i}/hum"))), Some(i));
    }
    assert_eq!(retained.node_count(), 1);
}
