//! The behaviour every [`Queue`] must have, as test functions each
//! implementation's tests run against a fresh, empty queue of its own (see
//! the `conformance!` macro at the bottom).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::{JOBS, NOTIFY, Queue, Work};

fn run(id: &str) -> Work {
    Work::RunExecution {
        execution_id: id.to_owned(),
        trace: None,
    }
}

const LONG: Duration = Duration::from_secs(30);

async fn take(queue: &dyn Queue, lease: Duration) -> super::Delivery {
    let cancel = CancellationToken::new();
    tokio::time::timeout(Duration::from_secs(5), queue.dequeue(JOBS, lease, &cancel))
        .await
        .expect("a message within 5 s")
        .expect("dequeue")
        .expect("a message")
}

/// FIFO, each message once, and an id already queued is not added again.
pub async fn messages_come_out_in_the_order_they_went_in_and_once(queue: Arc<dyn Queue>) {
    for id in ["a", "b", "c"] {
        assert!(queue.enqueue(JOBS, &run(id), None).await.expect("enqueue"));
    }
    assert!(
        !queue.enqueue(JOBS, &run("a"), None).await.expect("enqueue"),
        "an id already queued is not added again"
    );
    let mut seen = Vec::new();
    for _ in 0..3 {
        let delivery = take(queue.as_ref(), LONG).await;
        seen.push(delivery.work.clone());
        queue.ack(&delivery).await.expect("ack");
    }
    assert_eq!(seen, [run("a"), run("b"), run("c")]);
    assert_eq!(queue.lengths().await.expect("lengths")[JOBS], 0);
}

/// A lease that lapses delivers the message again; the old holder can
/// neither ack nor extend it any more.
pub async fn a_lapsed_lease_delivers_the_message_again(queue: Arc<dyn Queue>) {
    queue.enqueue(JOBS, &run("x"), None).await.expect("enqueue");
    let first = take(queue.as_ref(), Duration::from_millis(50)).await;
    let second = take(queue.as_ref(), LONG).await;
    assert_eq!(second.id, first.id);
    assert_eq!(second.attempts, 2);
    queue.ack(&first).await.expect("ack");
    assert_eq!(
        queue.lengths().await.expect("lengths")[JOBS],
        1,
        "an ack by a lost lease removes nothing"
    );
    assert!(queue.extend(&first, Duration::from_secs(1)).await.is_err());
    queue.ack(&second).await.expect("ack");
    assert_eq!(queue.lengths().await.expect("lengths")[JOBS], 0);
}

/// A held lease, extended, keeps the message from everyone else.
pub async fn an_extended_lease_keeps_the_message(queue: Arc<dyn Queue>) {
    queue
        .enqueue(JOBS, &run("held"), None)
        .await
        .expect("enqueue");
    // Held past its first lease by extensions a third of a lease apart,
    // which leaves a busy machine a second of slack at each.
    let held = take(queue.as_ref(), Duration::from_millis(1500)).await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        queue
            .extend(&held, Duration::from_millis(1500))
            .await
            .expect("extend");
    }
    let cancel = CancellationToken::new();
    let other = tokio::time::timeout(
        Duration::from_millis(300),
        queue.dequeue(JOBS, LONG, &cancel),
    )
    .await;
    assert!(other.is_err(), "nobody else got the held message");
    queue.ack(&held).await.expect("ack");
}

/// A message given back comes out again after the delay, not before.
pub async fn a_message_given_back_comes_again_after_its_delay(queue: Arc<dyn Queue>) {
    queue
        .enqueue(JOBS, &run("later"), None)
        .await
        .expect("enqueue");
    let first = take(queue.as_ref(), LONG).await;
    let given_back = Utc::now();
    queue
        .retry_later(&first, Duration::from_millis(400))
        .await
        .expect("retry later");
    let again = take(queue.as_ref(), LONG).await;
    assert!(
        Utc::now() - given_back >= chrono::Duration::milliseconds(390),
        "delivered before its delay"
    );
    assert_eq!(again.attempts, 2);
    queue.ack(&again).await.expect("ack");
}

/// A waiting consumer gets a message enqueued while it waits, once due.
pub async fn a_waiting_consumer_gets_work_that_arrives_or_falls_due(queue: Arc<dyn Queue>) {
    let cancel = CancellationToken::new();
    let consumer = {
        let queue = Arc::clone(&queue);
        let cancel = cancel.clone();
        tokio::spawn(async move { queue.dequeue(JOBS, LONG, &cancel).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let due = Utc::now() + chrono::Duration::milliseconds(300);
    queue
        .enqueue(JOBS, &run("soon"), Some(due))
        .await
        .expect("enqueue");
    let delivered = tokio::time::timeout(Duration::from_secs(3), consumer)
        .await
        .expect("in time")
        .expect("task")
        .expect("dequeue")
        .expect("message");
    assert_eq!(delivered.work, run("soon"));
    assert!(Utc::now() >= due, "delivered before it was due");
    // And a cancelled wait returns nothing.
    cancel.cancel();
    let nothing = queue.dequeue(JOBS, LONG, &cancel).await.expect("dequeue");
    assert!(nothing.is_none());
}

/// Queues are apart, and each is counted.
pub async fn queues_are_apart_and_counted(queue: Arc<dyn Queue>) {
    queue
        .enqueue(JOBS, &run("job"), None)
        .await
        .expect("enqueue");
    let delivery = Work::Deliver {
        execution_id: "e".to_owned(),
        task_id: "t".to_owned(),
        job_id: "j".to_owned(),
        notifier: "webhook".to_owned(),
        event: fastlane_sdk::NotificationEvent::Finishes,
        index: 0,
    };
    queue
        .enqueue(NOTIFY, &delivery, None)
        .await
        .expect("enqueue");
    let lengths = queue.lengths().await.expect("lengths");
    assert_eq!((lengths[JOBS], lengths[NOTIFY]), (1, 1));
    let taken = take(queue.as_ref(), LONG).await;
    assert_eq!(taken.work, run("job"), "the jobs queue gives only its own");
}

/// The epoch stays the same while the queue keeps its messages, whoever
/// asks.
pub async fn the_epoch_stays_while_the_messages_do(queue: Arc<dyn Queue>) {
    let first = queue.epoch().await.expect("epoch");
    queue.enqueue(JOBS, &run("e"), None).await.expect("enqueue");
    assert_eq!(queue.epoch().await.expect("epoch"), first);
}

/// Runs every conformance function against fresh queues, in one of two ways:
///
/// - `queue_conformance!(make)`: each function as its own test, against a
///   queue from `make` (an async block);
/// - `queue_conformance!(one test NAME, setup, |s| make)`: one test, `NAME`,
///   that awaits `setup` once (say, servers the test starts and stops) and
///   runs every function in turn against a queue from `make`, which sees the
///   set-up as `s` (a reference).
#[macro_export]
macro_rules! queue_conformance {
    (one test $test:ident, $setup:expr, |$s:ident| $make:expr) => {
        $crate::queue_conformance!(@names @one $test, $setup, $s, $make);
    };
    ($make:expr) => {
        $crate::queue_conformance!(@names @each $make);
    };
    (@names $($how:tt)*) => {
        $crate::queue_conformance!($($how)*;
            messages_come_out_in_the_order_they_went_in_and_once,
            a_lapsed_lease_delivers_the_message_again,
            an_extended_lease_keeps_the_message,
            a_message_given_back_comes_again_after_its_delay,
            a_waiting_consumer_gets_work_that_arrives_or_falls_due,
            queues_are_apart_and_counted,
            the_epoch_stays_while_the_messages_do,
        );
    };
    (@each $make:expr; $($name:ident,)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                let queue: std::sync::Arc<dyn $crate::queue::Queue> = $make.await;
                $crate::queue::conformance::$name(queue).await;
            }
        )*
    };
    (@one $test:ident, $setup:expr, $s:ident, $make:expr; $($name:ident,)*) => {
        #[tokio::test]
        async fn $test() {
            let set_up = $setup.await;
            let $s = &set_up;
            $(
                eprintln!("conformance: {}", stringify!($name));
                let queue: std::sync::Arc<dyn $crate::queue::Queue> = $make.await;
                $crate::queue::conformance::$name(queue).await;
            )*
            drop(set_up);
        }
    };
}
