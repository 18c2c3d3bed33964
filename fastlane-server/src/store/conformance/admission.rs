//! The admission line in the store: slots and places kept across calls
//! and processes, paused gates, rate limits' buckets and priorities.

use std::sync::Arc;

use chrono::Utc;

use fastlane_sdk::{Execution, ExecutionStatus, Job};

use super::stored;
use crate::store::{Admission, Ask, Gate, Order, Policy, Rate, Store, Submission};

fn gate(key: &str, limit: u32) -> Gate {
    Gate::new(key, limit)
}

/// An ask of these choices and nothing else.
fn ask(choices: &[Vec<Gate>]) -> Ask {
    Ask::plain(choices.to_vec(), Utc::now())
}

const FIFO: Policy = Policy {
    order: Order::Fifo,
    aging_seconds: 60,
};

/// Up to its limit a gate admits; then executions wait in line, and the
/// first in line goes when a final status frees a slot.
pub async fn a_gate_admits_up_to_its_limit_then_lines_up(store: Arc<dyn Store>) {
    let pool = [vec![gate("pool:docker:farm", 2)]];
    let mut executions = Vec::new();
    for i in 0..4 {
        executions.push(stored(store.as_ref(), "limited", i).await.1);
    }
    let admitted = || Admission::Admitted {
        gates: vec!["pool:docker:farm".to_owned()],
    };
    let admit = |e: &Execution| {
        let id = e.execution_id.clone();
        let (store, pool) = (&store, &pool);
        async move { store.admit(&id, &ask(pool), &FIFO).await.expect("admit") }
    };
    let [a, b, c, d] = &executions[..] else {
        panic!("four executions")
    };
    assert_eq!(admit(a).await, admitted());
    assert_eq!(admit(b).await, admitted());
    assert_eq!(admit(c).await, Admission::Waiting { ahead: 0 });
    assert_eq!(admit(d).await, Admission::Waiting { ahead: 1 });
    assert_eq!(admit(a).await, admitted(), "asking again changes nothing");
    assert_eq!(admit(d).await, Admission::Waiting { ahead: 1 });
    assert!(
        store
            .admissible(&FIFO)
            .await
            .expect("admissible")
            .0
            .is_empty()
    );
    assert_eq!(
        store.waiting().await.expect("waiting"),
        [c.execution_id.as_str(), d.execution_id.as_str()]
    );

    let mut done = a.clone();
    done.status = ExecutionStatus::Done;
    store.save_execution(&done, None).await.expect("save");
    assert_eq!(
        store.admissible(&FIFO).await.expect("admissible").0,
        std::slice::from_ref(&c.execution_id)
    );
    assert_eq!(admit(d).await, Admission::Waiting { ahead: 1 });
    assert_eq!(admit(c).await, admitted());
    assert_eq!(
        store.waiting().await.expect("waiting"),
        std::slice::from_ref(&d.execution_id)
    );
    let usage = store.gate_usage().await.expect("usage");
    let usage: Vec<_> = usage
        .iter()
        .map(|u| (u.key.as_str(), u.running, u.waiting, u.paused))
        .collect();
    assert_eq!(usage, [("pool:docker:farm", 2, 1, false)]);
}

/// With a choice of gates, an execution takes the first with room and is
/// told which.
pub async fn an_execution_takes_the_first_choice_with_room(store: Arc<dyn Store>) {
    let choices = [vec![gate("pool:a", 1)], vec![gate("pool:b", 1)]];
    let (_, first) = stored(store.as_ref(), "spill", 0).await;
    let (_, second) = stored(store.as_ref(), "spill", 1).await;
    let admitted = |key: &str| Admission::Admitted {
        gates: vec![key.to_owned()],
    };
    let admit = |e: &Execution| {
        let id = e.execution_id.clone();
        let (store, choices) = (&store, &choices);
        async move { store.admit(&id, &ask(choices), &FIFO).await.expect("admit") }
    };
    assert_eq!(admit(&first).await, admitted("pool:a"));
    assert_eq!(admit(&second).await, admitted("pool:b"));
    assert_eq!(
        admit(&second).await,
        admitted("pool:b"),
        "it keeps what it holds"
    );
    let unlimited = stored(store.as_ref(), "free", 2).await.1;
    assert_eq!(
        store
            .admit(&unlimited.execution_id, &ask(&[]), &FIFO)
            .await
            .expect("admit"),
        Admission::Admitted { gates: Vec::new() }
    );
}

/// Admissions from several processes at once (`stores`: two handles on the
/// same data) never give out more slots than a gate has, and the rest wait
/// in one line. For the networked stores, whose handles are separate pools.
pub async fn concurrent_admissions_keep_the_limit(stores: [Arc<dyn Store>; 2]) {
    let now = Utc::now();
    let job = Job::new(
        "crowd",
        "j".to_owned(),
        fastlane_sdk::JobSpec::new("busybox", "true"),
        now,
    );
    stores[0]
        .submit(Submission::job(&job))
        .await
        .expect("create");
    let mut ids = Vec::new();
    for i in 0..12 {
        let id = format!("e{i}");
        let execution = Execution::enqueued(&job, "busybox", "true", None, now, id.clone());
        stores[0]
            .insert_execution(&execution)
            .await
            .expect("insert");
        ids.push(id);
    }
    let choices = ask(&[vec![gate("pool:docker:farm", 3)]]);
    let mut asks = tokio::task::JoinSet::new();
    for (i, id) in ids.into_iter().enumerate() {
        let store = stores[i % 2].clone();
        let choices = choices.clone();
        asks.spawn(async move { store.admit(&id, &choices, &FIFO).await.expect("admit") });
    }
    let mut admitted = 0;
    let mut ahead = Vec::new();
    while let Some(answer) = asks.join_next().await {
        match answer.expect("join") {
            Admission::Admitted { .. } => admitted += 1,
            Admission::Waiting { ahead: n } => ahead.push(n),
        }
    }
    ahead.sort_unstable();
    assert_eq!(admitted, 3);
    assert_eq!(ahead, (0..9).collect::<Vec<u64>>(), "one line, no ties");
    let usage = stores[1].gate_usage().await.expect("usage");
    let usage: Vec<_> = usage
        .iter()
        .map(|u| (u.key.as_str(), u.running, u.waiting))
        .collect();
    assert_eq!(usage, [("pool:docker:farm", 3, 9)]);
}

/// What the flow rules need of a store: a pause that holds until resumed
/// and is listed; a rate limit's tokens spent across calls (the bucket is
/// kept); and a higher priority that goes first when a slot frees.
pub async fn paused_gates_rates_and_priorities_hold_in_the_store(store: Arc<dyn Store>) {
    assert!(store.set_paused("task:held", true).await.expect("pause"));
    assert!(
        !store.set_paused("task:held", true).await.expect("again"),
        "no change"
    );
    assert_eq!(store.paused().await.expect("paused"), ["task:held"]);
    let (_, held) = stored(store.as_ref(), "held", 0).await;
    let held_ask = ask(&[vec![gate("pool:p", 5), gate("task:held", u32::MAX)]]);
    let admit = |id: String, ask: Ask| {
        let store = &store;
        async move { store.admit(&id, &ask, &FIFO).await.expect("admit") }
    };
    assert_eq!(
        admit(held.execution_id.clone(), held_ask.clone()).await,
        Admission::Waiting { ahead: 0 }
    );
    let hold = store.hold(&held.execution_id, &FIFO).await.expect("hold");
    assert_eq!(
        hold.map(|h| (h.gate, h.reason)),
        Some(("task:held".into(), "paused"))
    );
    assert!(store.set_paused("task:held", false).await.expect("resume"));
    assert!(store.paused().await.expect("paused").is_empty());
    assert_eq!(
        store.admissible(&FIFO).await.expect("admissible").0,
        std::slice::from_ref(&held.execution_id)
    );
    assert!(matches!(
        admit(held.execution_id.clone(), held_ask).await,
        Admission::Admitted { .. }
    ));

    // A burst of 2, then one token every 1,000 s: the third waits, and
    // says why.
    let rated = vec![vec![Gate {
        key: "task:rated".into(),
        limit: u32::MAX,
        rate: Some(Rate {
            per_second: 0.001,
            burst: 2,
        }),
    }]];
    let mut answers = Vec::new();
    let mut last = String::new();
    for i in 1..=3 {
        let (_, execution) = stored(store.as_ref(), "rated", i).await;
        answers.push(admit(execution.execution_id.clone(), ask(&rated)).await);
        last = execution.execution_id;
    }
    assert!(
        matches!(answers[1], Admission::Admitted { .. }),
        "{answers:?}"
    );
    assert_eq!(answers[2], Admission::Waiting { ahead: 0 });
    let hold = store.hold(&last, &FIFO).await.expect("hold");
    assert_eq!(hold.map(|h| h.reason), Some("rate"));
    let (_, decision) = store.admissible(&FIFO).await.expect("admissible");
    assert!(
        decision.retry_in.is_some_and(|d| d.as_secs() > 900),
        "the next token is 1,000 s away: {decision:?}"
    );

    // One slot, taken; a low and then a high priority wait; when the slot
    // frees the high one goes first.
    let one = vec![vec![gate("pool:one", 1)]];
    let mut ids = Vec::new();
    for (i, priority) in [(10, 0), (11, 0), (12, 7)] {
        let (_, execution) = stored(store.as_ref(), "ranked", i).await;
        let ask = Ask {
            priority,
            ..ask(&one)
        };
        admit(execution.execution_id.clone(), ask).await;
        ids.push(execution);
    }
    let mut done = ids[0].clone();
    done.status = ExecutionStatus::Done;
    store.save_execution(&done, None).await.expect("save");
    assert_eq!(
        store.admissible(&FIFO).await.expect("admissible").0,
        std::slice::from_ref(&ids[2].execution_id),
        "the priority 7 goes before the priority 0 that came first"
    );
}

/// What a pass over the line writes for the waiters it lets go: their ids
/// as the message, their traces as its payload (so the test reads both).
fn run_message(execution_id: &str, trace: Option<&str>) -> Option<crate::store::Outgoing> {
    Some(crate::store::Outgoing {
        queue: "jobs".to_owned(),
        id: execution_id.to_owned(),
        payload: trace.unwrap_or("-").to_owned(),
        due_ms: 0,
    })
}

/// For stores that line up on submit: executions join the line in their
/// submission's transaction, in order; a pass lets go as many as the gates
/// have room for, each holding its slots and with its message (and trace)
/// written; a firing delivered again does not put a run that went back in
/// line; rate limits spend their tokens across a pass.
pub async fn executions_line_up_on_submit_and_a_pass_lets_them_go(store: Arc<dyn Store>) {
    assert!(store.lines_up_on_submit());
    let farm = [vec![gate("pool:farm", 1)]];
    let job = Job::new(
        "lined",
        "j".to_owned(),
        fastlane_sdk::JobSpec::new("busybox", "true"),
        Utc::now(),
    );
    let waiter = |id: &str, ask: Ask| crate::store::Waiter {
        execution_id: id.to_owned(),
        ask,
        trace: Some(format!("trace-{id}")),
    };
    // Runs of `job` with these ids, each in line with `choices`.
    let lined = |ids: [&str; 3], choices: &[Vec<Gate>]| {
        let runs: Vec<Execution> = ids
            .iter()
            .map(|id| {
                Execution::enqueued(&job, "busybox", "true", None, Utc::now(), id.to_string())
            })
            .collect();
        let waiting: Vec<_> = ids.iter().map(|id| waiter(id, ask(choices))).collect();
        (runs, waiting)
    };
    let (runs, waiting) = lined(["a", "b", "c"], &farm);
    store
        .submit(Submission {
            executions: &runs,
            waiting: &waiting,
            ..Submission::job(&job)
        })
        .await
        .expect("submit");
    assert_eq!(store.waiting().await.expect("line"), ["a", "b", "c"]);
    let lease = std::time::Duration::from_secs(30);

    let granted = store.grant(&FIFO, run_message).await.expect("pass");
    assert_eq!(
        (granted.ids.as_slice(), granted.queued),
        (&["a".to_owned()][..], true)
    );
    let sent = store.take_outbox(10, lease).await.expect("outbox");
    let sent: Vec<_> = sent
        .iter()
        .map(|m| (m.id.as_str(), m.payload.as_str()))
        .collect();
    assert_eq!(
        sent,
        [("a", "trace-a")],
        "its message, continuing its trace"
    );
    assert_eq!(store.waiting().await.expect("line"), ["b", "c"]);
    assert_eq!(
        store.admit("a", &ask(&farm), &FIFO).await.expect("admit"),
        Admission::Admitted {
            gates: vec!["pool:farm".to_owned()]
        },
        "the worker finds its slot taken for it"
    );
    assert!(
        store
            .grant(&FIFO, run_message)
            .await
            .expect("pass")
            .ids
            .is_empty()
    );

    let mut done = runs[0].clone();
    done.status = ExecutionStatus::Done;
    store.save_execution(&done, None).await.expect("save");
    let granted = store.grant(&FIFO, run_message).await.expect("pass");
    assert_eq!(granted.ids, ["b"]);
    // `b`'s firing delivered again: it holds its slot, it does not rejoin.
    store
        .submit(Submission {
            executions: std::slice::from_ref(&runs[1]),
            waiting: &[waiter("b", ask(&farm))],
            keep_existing: true,
            ..Submission::default()
        })
        .await
        .expect("again");
    assert_eq!(store.waiting().await.expect("line"), ["c"]);

    // A burst of 2, then a token every 1,000 s: one pass lets two go.
    let rated = vec![vec![Gate {
        key: "task:rated".into(),
        limit: u32::MAX,
        rate: Some(Rate {
            per_second: 0.001,
            burst: 2,
        }),
    }]];
    let (more, waiting) = lined(["d", "e", "f"], &rated);
    store
        .submit(Submission {
            executions: &more,
            waiting: &waiting,
            ..Submission::default()
        })
        .await
        .expect("submit");
    let granted = store.grant(&FIFO, run_message).await.expect("pass");
    assert_eq!(granted.ids, ["d", "e"]);
    assert!(
        granted.retry_in.is_some_and(|d| d.as_secs() > 900),
        "the next token is 1,000 s away: {granted:?}"
    );
    assert!(
        store
            .grant(&FIFO, run_message)
            .await
            .expect("pass")
            .ids
            .is_empty()
    );
    assert_eq!(store.waiting().await.expect("line"), ["c", "f"]);
}
