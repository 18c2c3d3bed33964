//! The conformance of what a store keeps for others: the outbox's queue
//! messages, the deliveries owed, and idempotency keys.

use std::sync::Arc;

use chrono::Utc;

use super::{execution, job};
use crate::store::{IdempotencyRecord, Outgoing, Store, Submission};

fn message(id: &str, due_ms: i64) -> Outgoing {
    Outgoing {
        queue: "jobs".to_owned(),
        id: id.to_owned(),
        payload: format!("{{\"id\":\"{id}\"}}"),
        due_ms,
    }
}

/// A job's messages are stored with it, handed to one publisher at a time
/// for the lease, oldest first, and kept until removed.
pub async fn the_outbox_keeps_messages_with_their_job_until_published(store: Arc<dyn Store>) {
    let job = job("outbox", 0);
    let first = execution(&job, 0);
    let (a, b) = (message("a", 2_000), message("b", 1_000));
    store
        .submit(Submission {
            executions: std::slice::from_ref(&first),
            outgoing: &[a.clone(), b.clone()],
            ..Submission::job(&job)
        })
        .await
        .expect("create");
    store
        .submit(Submission {
            outgoing: std::slice::from_ref(&a),
            ..Submission::job(&job)
        })
        .await
        .expect("the same message again");
    let lease = std::time::Duration::from_secs(60);

    let taken = store.take_outbox(10, lease).await.expect("take");
    let mut ids: Vec<_> = taken.iter().map(|m| m.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["a", "b"], "each message once: {taken:?}");
    assert!(taken.contains(&a) && taken.contains(&b), "{taken:?}");
    assert_eq!(
        store.take_outbox(10, lease).await.expect("take"),
        [],
        "taken messages wait for their lease"
    );

    // A publisher that let its lease lapse: the messages are free again.
    let job = self::job("outbox", 1);
    let c = message("c", 3_000);
    store
        .submit(Submission {
            outgoing: std::slice::from_ref(&c),
            ..Submission::job(&job)
        })
        .await
        .expect("create");
    let taken = store
        .take_outbox(1, std::time::Duration::ZERO)
        .await
        .expect("take");
    assert_eq!(
        taken,
        std::slice::from_ref(&c),
        "one at most, the only free one"
    );
    store
        .remove_outbox(&["a".to_owned()])
        .await
        .expect("remove");
    let taken = store.take_outbox(10, lease).await.expect("take");
    assert_eq!(taken, [c], "removed messages are gone for good");
}

/// Owed deliveries are published like any outbox message, and kept,
/// listed in pages by id, until settled; owing one twice keeps it once.
pub async fn owed_deliveries_stay_until_settled(store: Arc<dyn Store>) {
    let (b, a, c) = (
        message("b", 1_000),
        message("a", 2_000),
        message("c", 3_000),
    );
    let owe = |owed: Vec<Outgoing>| {
        let store = Arc::clone(&store);
        async move {
            store
                .submit(Submission {
                    owed: &owed,
                    ..Submission::default()
                })
                .await
                .expect("owe")
        }
    };
    owe(vec![b.clone(), a.clone()]).await;
    owe(vec![a.clone(), c.clone()]).await;

    let lease = std::time::Duration::from_secs(60);
    let taken = store.take_outbox(10, lease).await.expect("take");
    let mut ids: Vec<_> = taken.iter().map(|m| m.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["a", "b", "c"], "published like the others: {taken:?}");
    store
        .remove_outbox(&["a".to_owned(), "b".to_owned(), "c".to_owned()])
        .await
        .expect("published");

    let first = store.owed_deliveries("", 2).await.expect("owed");
    assert_eq!(first, [a, b.clone()], "in order of id, a page at most");
    let rest = store.owed_deliveries("b", 2).await.expect("owed");
    assert_eq!(rest, std::slice::from_ref(&c), "after the last one seen");

    store
        .settle_deliveries(&["a".to_owned(), "c".to_owned()])
        .await
        .expect("settle");
    assert_eq!(store.owed_deliveries("", 10).await.expect("owed"), [b]);
}

/// A job written with an idempotency key is the only one written with it
/// while the key lives; an expired key is free again, and forgotten.
pub async fn an_idempotency_key_writes_once_until_it_expires(store: Arc<dyn Store>) {
    let now = Utc::now().timestamp_millis();
    let record = |response: &str, expires_ms: i64| IdempotencyRecord {
        key: "retry-safe".to_owned(),
        fingerprint: "f1".to_owned(),
        response: response.to_owned(),
        expires_ms,
    };
    let first = job("keyed", 0);
    let live = record("first", now + 60_000);
    assert!(
        store
            .submit(Submission {
                outgoing: &[message("m1", 0)],
                idempotency: Some(&live),
                ..Submission::job(&first)
            })
            .await
            .expect("create")
    );
    let second = job("keyed", 1);
    assert!(
        !store
            .submit(Submission {
                outgoing: &[message("m2", 0)],
                idempotency: Some(&record("second", now + 60_000)),
                ..Submission::job(&second)
            })
            .await
            .expect("create"),
        "the key is taken"
    );
    assert_eq!(store.find_job(&second.job_id).await.expect("find"), None);
    let taken = store
        .take_outbox(10, std::time::Duration::from_secs(60))
        .await
        .expect("take");
    assert_eq!(taken, [message("m1", 0)], "nothing of the second request");
    assert_eq!(
        store.idempotency("retry-safe", now).await.expect("read"),
        Some(live.clone())
    );
    assert_eq!(
        store
            .idempotency("retry-safe", now + 60_000)
            .await
            .expect("read"),
        None,
        "expired"
    );

    // Once expired, the key stands for the next request.
    let expired = IdempotencyRecord {
        key: "old".to_owned(),
        ..record("old", now - 1)
    };
    let third = job("keyed", 2);
    assert!(
        store
            .submit(Submission {
                idempotency: Some(&expired),
                ..Submission::job(&third)
            })
            .await
            .expect("create")
    );
    let fourth = job("keyed", 3);
    let again = IdempotencyRecord {
        key: "old".to_owned(),
        ..record("new", now + 60_000)
    };
    assert!(
        store
            .submit(Submission {
                idempotency: Some(&again),
                ..Submission::job(&fourth)
            })
            .await
            .expect("create"),
        "an expired key is free"
    );
    assert_eq!(
        store.idempotency("old", now).await.expect("read"),
        Some(again)
    );
    assert_eq!(
        store
            .forget_expired_keys(now + 60_001)
            .await
            .expect("forget"),
        2
    );
    assert_eq!(
        store.idempotency("retry-safe", now).await.expect("read"),
        None
    );
}

/// Many submissions at once (new tasks among them, arriving in every
/// order) each land whole, with their queue message, and are each answered.
pub async fn concurrent_submissions_each_land_whole(store: Arc<dyn Store>) {
    const TASKS: usize = 5;
    const EACH: usize = 20;
    let submissions = (0..TASKS * EACH).map(|i| {
        let store = store.clone();
        // Neighbours go to different tasks, so commits that hold several
        // create them in different orders.
        let task = format!("crowd-{}", (i * 7) % TASKS);
        async move {
            let job = job(&task, 0);
            let first = execution(&job, 0);
            let sent = message(&first.execution_id, 1_000);
            store
                .submit(Submission {
                    executions: std::slice::from_ref(&first),
                    outgoing: std::slice::from_ref(&sent),
                    ..Submission::job(&job)
                })
                .await
        }
    });
    let answers = futures_util::future::join_all(submissions).await;
    for answer in &answers {
        assert!(matches!(answer, Ok(true)), "{answer:?}");
    }
    let (tasks, total) = store.tasks(0, 100).await.expect("tasks");
    assert_eq!(total, TASKS as u64);
    for task in tasks {
        assert_eq!(task.jobs_count, EACH as u64, "{}", task.task.task_id);
    }
    assert_eq!(
        store.counts().await.expect("counts"),
        (TASKS as u64, (TASKS * EACH) as u64)
    );
    let messages = store
        .take_outbox(1_000, std::time::Duration::from_secs(60))
        .await
        .expect("outbox");
    assert_eq!(messages.len(), TASKS * EACH, "one message each");

    // Saves of one job at once: each is answered, and one of them is what
    // the store holds.
    let saved = job("crowd-0", 0);
    let saves: Vec<_> = (0..20)
        .map(|i| {
            let mut save = saved.clone();
            save.spec.command = format!("echo {i}");
            save
        })
        .collect();
    let answers = futures_util::future::join_all(
        saves.iter().map(|save| store.submit(Submission::job(save))),
    )
    .await;
    for answer in &answers {
        assert!(matches!(answer, Ok(true)), "{answer:?}");
    }
    let stored = store.job("crowd-0", &saved.job_id).await.expect("job");
    assert!(
        stored.is_some_and(|stored| saves.contains(&stored)),
        "one of the saves"
    );
}
