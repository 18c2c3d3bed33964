//! Timers and tasks for plugin code: [`sleep`], [`timeout`] and [`spawn`].
//!
//! Use these instead of `tokio::time::sleep`, `tokio::time::timeout` and
//! `tokio::spawn` in plugins. Statically linked, they are exactly those.
//! In a plugin loaded from a library they go to the server's runtime
//! through functions the server hands over at registration: the library's
//! own copy of tokio cannot reliably register timers with the server's
//! runtime (a `tokio::time::sleep` there may never wake), and a panic in a
//! task must not unwind into the server's copy of `std`.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

/// A boxed future, as the runtime services take and return them.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What the server's runtime does for a plugin library. The server builds
/// it ([`RuntimeServices::tokio`]), so its code is the server's.
pub trait RuntimeServices: Send + Sync {
    /// A future that completes after `duration`.
    fn sleep(&self, duration: Duration) -> BoxFuture<()>;
    /// Runs `future` as a task of its own.
    fn spawn(&self, future: BoxFuture<()>);
}

impl std::fmt::Debug for dyn RuntimeServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RuntimeServices")
    }
}

impl dyn RuntimeServices {
    /// The services of the calling thread's tokio runtime.
    pub fn tokio() -> Arc<dyn RuntimeServices> {
        Arc::new(Tokio(tokio::runtime::Handle::current()))
    }
}

struct Tokio(tokio::runtime::Handle);

impl RuntimeServices for Tokio {
    fn sleep(&self, duration: Duration) -> BoxFuture<()> {
        Box::pin(tokio::time::sleep(duration))
    }

    fn spawn(&self, future: BoxFuture<()>) {
        self.0.spawn(future);
    }
}

/// Set in a library when the server registers it; unset when linked
/// statically.
static SERVICES: OnceLock<Arc<dyn RuntimeServices>> = OnceLock::new();

pub(crate) fn install(services: Arc<dyn RuntimeServices>) {
    let _ = SERVICES.set(services);
}

/// Waits for `duration`.
pub async fn sleep(duration: Duration) {
    match SERVICES.get() {
        Some(services) => services.sleep(duration).await,
        None => tokio::time::sleep(duration).await,
    }
}

/// The error of a [`timeout`] that ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline has elapsed")]
pub struct Elapsed;

/// Runs `future` for at most `duration`.
pub async fn timeout<F: Future>(duration: Duration, future: F) -> Result<F::Output, Elapsed> {
    let mut future = std::pin::pin!(future);
    let mut deadline = std::pin::pin!(sleep(duration));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Ok(output));
        }
        deadline.as_mut().poll(cx).map(|()| Err(Elapsed))
    })
    .await
}

/// Runs `future` as a task of its own on the server's runtime. A panic in
/// it ends the task and is logged; it does not reach the server.
pub fn spawn<F>(future: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let task = Caught {
        runtime: tokio::runtime::Handle::try_current().ok(),
        future: Box::pin(future),
    };
    match SERVICES.get() {
        Some(services) => services.spawn(Box::pin(task)),
        None => {
            tokio::spawn(task);
        }
    }
}

/// A task's future, polled with this copy of tokio's runtime entered and
/// its panics caught on this side.
struct Caught<F> {
    runtime: Option<tokio::runtime::Handle>,
    future: Pin<Box<F>>,
}

impl<F: Future<Output = ()>> Future for Caught<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let _entered = self.runtime.as_ref().map(tokio::runtime::Handle::enter);
        let future = &mut self.future;
        match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(poll) => poll,
            Err(_) => {
                tracing::error!("a task spawned by a plugin panicked");
                Poll::Ready(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn timeout_gives_up_on_a_slow_future_and_passes_a_quick_one() {
        let slow = timeout(Duration::from_millis(10), sleep(Duration::from_secs(5))).await;
        assert_eq!(slow, Err(Elapsed));
        let quick = timeout(Duration::from_secs(5), async { 7 }).await;
        assert_eq!(quick, Ok(7));
    }

    #[tokio::test]
    async fn a_panicking_task_ends_alone() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        spawn(async { panic!("task panic") });
        spawn(async move {
            let _ = tx.send(1);
        });
        assert_eq!(rx.await, Ok(1));
    }
}
