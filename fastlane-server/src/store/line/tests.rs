//! The line's rules, one story each.

use super::*;

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap_or_default()
}

fn gate(key: &str, limit: u32) -> Gate {
    Gate::new(key, limit)
}

/// A waiter of `task` through a pool of `pool` slots.
fn waiter(id: &str, task: &str, pool: u32, since: i64) -> (String, Ask) {
    let task_gate = format!("task:{task}");
    let ask = Ask {
        choices: vec![vec![gate("pool", pool), gate(&task_gate, u32::MAX)]],
        priority: 0,
        flow: task_gate,
        weight: 1,
        since: at(since),
    };
    (id.to_owned(), ask)
}

fn line(held: &[(&str, u32)], waiters: Vec<(String, Ask)>) -> LineState {
    LineState {
        held: held.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect(),
        ..Default::default()
    }
    .with_waiters(waiters)
}

/// The class and rank of `id`.
fn place(state: &LineState, id: &str) -> (usize, u64) {
    for (c, class) in state.classes.iter().enumerate() {
        if let Some(rank) = class.members.iter().position(|m| m.execution_id == id) {
            return (c, rank as u64);
        }
    }
    panic!("{id} is not in line");
}

fn hold_of(state: &LineState, id: &str, policy: &Policy, now: DateTime<Utc>) -> Option<Hold> {
    let (class, rank) = place(state, id);
    why(state, class, rank, policy, now)
}

const FIFO: Policy = Policy {
    order: Order::Fifo,
    aging_seconds: 60,
};

#[test]
fn an_execution_held_back_by_its_task_does_not_hold_back_other_tasks() {
    let plain = |id: &str, gates: Vec<Gate>| (id.to_owned(), Ask::plain(vec![gates], at(0)));
    let waiters = vec![
        plain("a1", vec![gate("pool", 3), gate("task:a", 1)]),
        plain("a2", vec![gate("pool", 3), gate("task:a", 1)]),
        plain("b1", vec![gate("pool", 3), gate("task:b", 5)]),
        plain("c1", vec![gate("pool", 3)]),
    ];
    let state = line(&[("task:a", 1)], waiters.clone());
    // The two of task a wait for a's slot; b and the unlimited one go.
    assert_eq!(decide(&state, &FIFO, at(1)).ids(&state), ["b1", "c1"]);
    let state = line(&[("pool", 2)], waiters);
    // One pool slot left: the first in line takes it.
    assert_eq!(decide(&state, &FIFO, at(1)).ids(&state), ["a1"]);
}

#[test]
fn work_falls_through_to_the_next_pool_only_when_the_first_is_full() {
    let spill = vec![vec![gate("pool:a", 1)], vec![gate("pool:b", 1)]];
    let state = line(
        &[],
        (0..3)
            .map(|i| (format!("w{i}"), Ask::plain(spill.clone(), at(0))))
            .collect(),
    );
    assert_eq!(
        decide(&state, &FIFO, at(0)).admitted,
        [(0, 0, 0), (0, 1, 1)],
        "the first takes a, the second falls through to b, the third waits"
    );
    assert_eq!(room(&state, &state.classes[0].ask, at(0)), 2);
}

#[test]
fn a_higher_priority_goes_before_everyone_who_waited_longer() {
    let mut waiters: Vec<(String, Ask)> = (0..50)
        .map(|i| waiter(&format!("low{i}"), "bulk", 10, i))
        .collect();
    let mut urgent = waiter("urgent", "bulk", 10, 50);
    urgent.1.priority = 10;
    waiters.push(urgent);
    let state = line(&[("pool", 9)], waiters);
    for policy in [FIFO, Policy::default()] {
        assert_eq!(decide(&state, &policy, at(51)).ids(&state), ["urgent"]);
    }
    assert_eq!(hold_of(&state, "urgent", &FIFO, at(51)), None);
    assert_eq!(
        hold_of(&state, "low0", &FIFO, at(51)),
        Some(Hold {
            gate: "pool".into(),
            reason: "full",
            ahead: 1
        }),
        "the first of the low waits behind the urgent one"
    );
    assert_eq!(
        hold_of(&state, "low7", &FIFO, at(51)).map(|h| h.ahead),
        Some(8)
    );
}

#[test]
fn waiting_raises_a_low_priority_to_the_top_band_but_never_past_it() {
    let mut old = waiter("old-low", "a", 1, 0);
    old.1.priority = -5;
    let mut fresh = waiter("fresh-high", "b", 1, 590);
    fresh.1.priority = 5;
    let state = line(&[], vec![old, fresh]);
    // After 5 minutes the low one has only reached 0: the high goes.
    assert_eq!(decide(&state, &FIFO, at(300)).ids(&state), ["fresh-high"]);
    // After 10 it is in the top band, and came first.
    assert_eq!(decide(&state, &FIFO, at(600)).ids(&state), ["old-low"]);
    // Equal priorities are never reordered by age.
    let state = line(
        &[],
        vec![waiter("first", "a", 1, 100), waiter("second", "b", 1, 0)],
    );
    assert_eq!(decide(&state, &FIFO, at(9000)).ids(&state), ["first"]);
    // Without ageing, a low priority waits for as long as higher ones come.
    let no_aging = Policy {
        aging_seconds: 0,
        ..FIFO
    };
    let mut high = waiter("high", "b", 1, 9000);
    high.1.priority = 1;
    let state = line(&[], vec![waiter("low", "a", 1, 0), high]);
    assert_eq!(decide(&state, &no_aging, at(99_000)).ids(&state), ["high"]);
}

#[test]
fn fair_shares_give_a_free_slot_to_the_tenant_holding_the_fewest() {
    // The big tenant holds 3 of 4 slots and has 100 more waiting, all
    // older than the small tenant's one.
    let mut waiters: Vec<(String, Ask)> = (0..100)
        .map(|i| waiter(&format!("big{i}"), "big", 4, i))
        .collect();
    waiters.push(waiter("small", "small", 4, 200));
    let state = line(&[("pool", 3), ("task:big", 3)], waiters);
    assert_eq!(state.classes.len(), 2, "a class per distinct ask");
    assert_eq!(decide(&state, &FIFO, at(300)).ids(&state), ["big0"]);
    assert_eq!(
        decide(&state, &Policy::default(), at(300)).ids(&state),
        ["small"]
    );
}

#[test]
fn fair_shares_follow_the_weights() {
    // 8 free slots, three flows of weights 2, 1 and 1: the heavy one gets
    // twice the slots of each other.
    let mut waiters = Vec::new();
    for i in 0..10 {
        for (task, weight) in [("heavy", 2), ("a", 1), ("b", 1)] {
            let mut w = waiter(&format!("{task}{i}"), task, 8, i);
            w.1.weight = weight;
            waiters.push(w);
        }
    }
    let state = line(&[], waiters);
    let went = decide(&state, &Policy::default(), at(100)).ids(&state);
    let count = |task: &str| went.iter().filter(|id| id.starts_with(task)).count();
    assert_eq!((count("heavy"), count("a"), count("b")), (4, 2, 2));
}

#[test]
fn a_rate_limit_lets_its_burst_go_then_one_per_token() {
    let limited = |id: String| {
        let ask = Ask::plain(
            vec![vec![Gate {
                key: "task:t".into(),
                limit: u32::MAX,
                rate: Some(Rate {
                    per_second: 5.0,
                    burst: 2,
                }),
            }]],
            at(0),
        );
        (id, ask)
    };
    let waiters: Vec<(String, Ask)> = (0..5).map(|i| limited(format!("w{i}"))).collect();
    let mut state = line(&[], waiters.clone());
    let decision = decide(&state, &FIFO, at(0));
    assert_eq!(decision.ids(&state), ["w0", "w1"]);
    let retry_ms = decision.retry_in.map(|d| d.as_millis());
    assert_eq!(
        retry_ms,
        Some(200),
        "an empty bucket has its next token in 1/5 s"
    );
    assert_eq!(room(&state, &state.classes[0].ask, at(0)), 2);
    // w0 asks and takes a token.
    let Plan::Take { buckets, .. } = plan(&state, 0, 0, "w0", &FIFO, at(0)) else {
        panic!("w0 should go");
    };
    assert_eq!(
        buckets,
        [(
            "task:t".to_owned(),
            Bucket {
                tokens: 1.0,
                at: at(0)
            }
        )]
    );
    let buckets: HashMap<String, Bucket> = buckets.into_iter().collect();
    state = LineState {
        buckets: buckets.clone(),
        ..Default::default()
    }
    .with_waiters(waiters[1..].to_vec());
    assert_eq!(decide(&state, &FIFO, at(0)).ids(&state), ["w1"]);
    // A second later the bucket is full again (burst 2), not 6.
    assert_eq!(decide(&state, &FIFO, at(1)).ids(&state), ["w1", "w2"]);
    assert_eq!(
        hold_of(&state, "w2", &FIFO, at(0)).map(|h| h.reason),
        Some("rate")
    );
}

#[test]
fn a_paused_gate_holds_back_what_goes_through_it_and_nothing_else() {
    let waiters = vec![waiter("a1", "a", 10, 0), waiter("b1", "b", 10, 1)];
    let mut state = line(&[], waiters);
    state.paused = ["task:a".to_owned()].into();
    assert_eq!(decide(&state, &FIFO, at(2)).ids(&state), ["b1"]);
    assert_eq!(
        hold_of(&state, "a1", &FIFO, at(2)),
        Some(Hold {
            gate: "task:a".into(),
            reason: "paused",
            ahead: 0
        })
    );
    assert_eq!(room(&state, &state.classes[0].ask, at(2)), 0);
    state.paused = ["pool".to_owned()].into();
    assert!(decide(&state, &FIFO, at(2)).admitted.is_empty());
    let usage = usage_of(&state);
    let pool = usage.iter().find(|u| u.key == "pool");
    assert_eq!(
        pool.map(|u| (u.waiting, u.paused, u.oldest)),
        Some((2, true, Some(at(0))))
    );
}

#[test]
fn a_line_entry_stored_before_flow_control_still_reads() {
    let stored = r#"[[{"key":"pool:docker:default","limit":3},{"key":"task:t","limit":1}]]"#;
    let ask: Ask = serde_json::from_str(stored).expect("old entry reads");
    assert_eq!(ask.choices[0][1], gate("task:t", 1));
    assert_eq!((ask.priority, ask.weight), (0, 1));
    let (_, ask) = waiter("x", "t", 2, 5);
    let round: Ask = serde_json::to_string(&ask)
        .and_then(|s| serde_json::from_str(&s))
        .expect("round trip");
    assert_eq!(round, ask);
    assert_eq!(
        class_key(&round),
        class_key(&Ask {
            since: at(99),
            ..ask
        })
    );
}

#[test]
fn each_waiter_ages_on_its_own_not_with_the_oldest_of_its_class() {
    // The oldest low waiter has waited 10 minutes; the 49 others of its
    // class came a few seconds ago, just before the urgent one.
    let mut waiters = vec![waiter("low0", "bulk", 2, 0)];
    waiters.extend((1..50).map(|i| waiter(&format!("low{i}"), "bulk", 2, 590 + i / 10)));
    let mut urgent = waiter("urgent", "bulk", 2, 599);
    urgent.1.priority = 10;
    waiters.push(urgent);
    let state = line(&[], waiters);
    assert_eq!(state.classes.len(), 2);
    assert_eq!(
        decide(&state, &FIFO, at(600)).ids(&state),
        ["low0", "urgent"],
        "only the old one has caught up with the urgent one"
    );
}
