//! The wrappers [`register_guarded`] puts around every factory and plugin a
//! library registers. They run inside the library, with its copies of `std`
//! and tokio: they enter the library's own runtime and catch its panics.

use std::any::Any;
use std::collections::BTreeMap;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use tokio::runtime::{Handle, Runtime};

use super::Host;
use crate::error::PluginError;
use crate::error_handler::{ErrorHandler, ErrorHandlerFactory, ErrorReport};
use crate::executor::{
    ExecutionSpec, Executor, ExecutorFactory, ExecutorStatus, ExitStatus, HostHealth, LogSink,
    Placement, Pool, Progress, Resources, RunHandle, RunOutput,
};
use crate::metrics::{Metric, MetricsSink, MetricsSinkFactory};
use crate::notifier::{Delivery, DeliveryReport, Notifier, NotifierFactory};
use crate::registry::Registry;

/// Registers a library's factories into the server's `registry`, each
/// wrapped so that it runs on the library's own runtime and its panics
/// become errors. [`declare_plugin!`](crate::declare_plugin) calls this;
/// plugins do not.
pub fn register_guarded(
    registry: &mut Registry,
    host: &Host,
    register: fn(&mut Registry) -> Result<(), PluginError>,
) -> Result<(), PluginError> {
    // Both only affect this library's copies of tracing and std. The first
    // fails when the library was registered before; it is then already set.
    let _ = tracing::dispatcher::set_global_default(host.dispatch.clone());
    // The dispatcher was registered with the server's callsites when it was
    // made, not with this library's: have this library's level filter and
    // callsite interest computed against it.
    tracing::callsite::rebuild_interest_cache();
    std::panic::set_hook(Box::new(|info| {
        tracing::error!(panic = %info, "a plugin panicked");
    }));
    let runtime = own_runtime()?;
    let _entered = runtime.enter();
    let mut own = Registry::new();
    catch("registering the plugin", || register(&mut own))?;
    for factory in guarded(&mut own.executors, runtime) {
        registry.register_executor(Box::new(factory))?;
    }
    for factory in guarded(&mut own.notifiers, runtime) {
        registry.register_notifier(Box::new(factory))?;
    }
    for factory in guarded(&mut own.error_handlers, runtime) {
        registry.register_error_handler(Box::new(factory))?;
    }
    for factory in guarded(&mut own.metrics_sinks, runtime) {
        registry.register_metrics_sink(Box::new(factory))?;
    }
    Ok(())
}

/// How many threads drive a library's runtime. Plugins wait on I/O far more
/// than they compute; the server's runtime does the rest.
const WORKER_THREADS: usize = 2;

/// The library's runtime, started on first use and kept until the process
/// exits (a library is never unloaded). In a library this is the library's
/// copy of tokio, so the timers, sockets and tasks its plugins make live in
/// one runtime that drives them.
fn own_runtime() -> Result<&'static Handle, PluginError> {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime.handle());
    }
    let built = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .thread_name("fastlane-plugin")
        .enable_all()
        .build()
        .map_err(|err| {
            PluginError::permanent(format!("cannot start the plugin library's runtime: {err}"))
        })?;
    // Another registration may have won the race; its runtime is kept and
    // this one dropped. Dropping a runtime inside an async context panics,
    // so it is shut down in the background.
    if let Err(spare) = RUNTIME.set(built) {
        spare.shutdown_background();
    }
    RUNTIME
        .get()
        .map(Runtime::handle)
        .ok_or_else(|| PluginError::permanent("the plugin library's runtime is gone"))
}

/// Takes every factory out of one of a registry's maps, each guarded.
fn guarded<F: ?Sized>(
    factories: &mut BTreeMap<&'static str, Box<F>>,
    runtime: &Handle,
) -> Vec<Guarded<Box<F>>> {
    std::mem::take(factories)
        .into_iter()
        .map(|(kind, inner)| Guarded {
            kind,
            inner,
            runtime: runtime.clone(),
        })
        .collect()
}

/// A factory or plugin of a library, with the library's runtime.
struct Guarded<T> {
    kind: &'static str,
    inner: T,
    runtime: Handle,
}

impl<T> std::fmt::Debug for Guarded<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl<T> Guarded<T> {
    /// `inner`, built by this factory, guarded the same way.
    fn wrap<U>(&self, inner: U) -> Guarded<U> {
        Guarded {
            kind: self.kind,
            inner,
            runtime: self.runtime.clone(),
        }
    }

    /// Runs `f` inside the library's runtime, turning a panic into an error.
    fn call<'s, R>(
        &'s self,
        what: &str,
        f: impl FnOnce(&'s T) -> Result<R, PluginError>,
    ) -> Result<R, PluginError> {
        let _entered = self.runtime.enter();
        catch(what, || f(&self.inner))
    }

    /// Like [`Guarded::call`] for calls that cannot fail: a panic gives `fallback`.
    fn call_infallible<'s, R>(&'s self, what: &str, fallback: R, f: impl FnOnce(&'s T) -> R) -> R {
        self.call(what, |inner| Ok(f(inner))).unwrap_or(fallback)
    }

    /// Polls the future `make` returns inside the library's runtime, turning a
    /// panic (in `make` or in any poll) into an error.
    fn future<'a, R: 'a>(
        &'a self,
        what: &'static str,
        make: impl FnOnce(&'a T) -> BoxFuture<'a, Result<R, PluginError>>,
    ) -> GuardedFuture<'a, R> {
        let state = match self.call(what, |inner| Ok(make(inner))) {
            Ok(future) => State::Pending(future),
            Err(err) => State::Failed(Some(err)),
        };
        GuardedFuture {
            what,
            runtime: self.runtime.clone(),
            state,
        }
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

enum State<'a, R> {
    Pending(BoxFuture<'a, Result<R, PluginError>>),
    Failed(Option<PluginError>),
}

/// A plugin's future, polled inside the library's runtime with its panics
/// caught.
struct GuardedFuture<'a, R> {
    what: &'static str,
    runtime: Handle,
    state: State<'a, R>,
}

impl<R> Future for GuardedFuture<'_, R> {
    type Output = Result<R, PluginError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let future = match &mut this.state {
            State::Pending(future) => future,
            State::Failed(err) => {
                return Poll::Ready(Err(err.take().unwrap_or_else(|| {
                    PluginError::permanent(format!("{}: polled after it ended", this.what))
                })));
            }
        };
        let _entered = this.runtime.enter();
        match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(poll) => poll,
            Err(payload) => {
                let err = panicked(this.what, payload.as_ref());
                // A future that panicked may panic again when dropped; it is
                // leaked instead.
                if let State::Pending(future) =
                    std::mem::replace(&mut this.state, State::Failed(None))
                {
                    std::mem::forget(future);
                }
                Poll::Ready(Err(err))
            }
        }
    }
}

impl<R> Drop for GuardedFuture<'_, R> {
    fn drop(&mut self) {
        if let State::Pending(future) = std::mem::replace(&mut self.state, State::Failed(None)) {
            let _entered = self.runtime.enter();
            let _ = catch_unwind(AssertUnwindSafe(move || drop(future)));
        }
    }
}

/// Runs `f`, turning a panic into a [`crate::ErrorKind::Permanent`] error.
fn catch<R>(what: &str, f: impl FnOnce() -> Result<R, PluginError>) -> Result<R, PluginError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => Err(panicked(what, payload.as_ref())),
    }
}

fn panicked(what: &str, payload: &(dyn Any + Send)) -> PluginError {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned());
    PluginError::permanent(format!("the plugin panicked while {what}: {message}"))
}

impl ExecutorFactory for Guarded<Box<dyn ExecutorFactory>> {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn build(&self, config: serde_json::Value) -> Result<Arc<dyn Executor>, PluginError> {
        let inner = self.call("building an executor", |f| f.build(config))?;
        Ok(Arc::new(self.wrap(inner)))
    }
}

#[async_trait]
impl Executor for Guarded<Arc<dyn Executor>> {
    fn name(&self) -> &str {
        self.call_infallible("naming itself", self.kind, |e| e.name())
    }

    fn accepts(&self, task_id: &str) -> Result<(), PluginError> {
        self.call("checking a task id", |e| e.accepts(task_id))
    }

    fn accepts_resources(&self, task_id: &str, resources: &Resources) -> Result<(), PluginError> {
        self.call("checking a job's resources", |e| {
            e.accepts_resources(task_id, resources)
        })
    }

    fn pools(&self, task_id: &str) -> Vec<Pool> {
        self.call_infallible("naming pools", Vec::new(), |e| e.pools(task_id))
    }

    fn host_health(&self) -> Vec<HostHealth> {
        self.call_infallible("reporting host health", Vec::new(), |e| e.host_health())
    }

    fn share_host_health(&self, shared: &[HostHealth]) {
        self.call_infallible("taking shared host health", (), |e| {
            e.share_host_health(shared)
        });
    }

    fn set_blacklist(&self, hosts: &[String]) {
        self.call_infallible("taking a blacklist", (), |e| e.set_blacklist(hosts));
    }

    async fn place(&self, spec: &ExecutionSpec) -> Result<Placement, PluginError> {
        self.future("placing an execution", |e| e.place(spec)).await
    }

    async fn prepare(
        &self,
        spec: &ExecutionSpec,
        placement: &Placement,
        progress: &dyn Progress,
    ) -> Result<(), PluginError> {
        self.future("preparing an execution", |e| {
            e.prepare(spec, placement, progress)
        })
        .await
    }

    async fn start(
        &self,
        spec: &ExecutionSpec,
        placement: &Placement,
    ) -> Result<RunHandle, PluginError> {
        self.future("starting an execution", |e| e.start(spec, placement))
            .await
    }

    async fn wait(&self, handle: &RunHandle) -> Result<ExitStatus, PluginError> {
        self.future("waiting for an execution", |e| e.wait(handle))
            .await
    }

    async fn output(&self, handle: &RunHandle, limit: u64) -> Result<RunOutput, PluginError> {
        self.future("reading output", |e| e.output(handle, limit))
            .await
    }

    async fn follow(&self, handle: &RunHandle, sink: &dyn LogSink) -> Result<(), PluginError> {
        self.future("following output", |e| e.follow(handle, sink))
            .await
    }

    async fn stop(&self, handle: &RunHandle, grace: Duration) -> Result<(), PluginError> {
        self.future("stopping an execution", |e| e.stop(handle, grace))
            .await
    }

    async fn release(&self, handle: &RunHandle) -> Result<(), PluginError> {
        self.future("releasing an execution", |e| e.release(handle))
            .await
    }

    async fn status(&self) -> ExecutorStatus {
        self.future("reporting status", |e| {
            let status = e.status();
            Box::pin(async move { Ok(status.await) })
        })
        .await
        .unwrap_or_default()
    }
}

impl NotifierFactory for Guarded<Box<dyn NotifierFactory>> {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn build(&self, config: serde_json::Value) -> Result<Arc<dyn Notifier>, PluginError> {
        let inner = self.call("building a notifier", |f| f.build(config))?;
        Ok(Arc::new(self.wrap(inner)))
    }
}

#[async_trait]
impl Notifier for Guarded<Arc<dyn Notifier>> {
    fn name(&self) -> &str {
        self.call_infallible("naming itself", self.kind, |n| n.name())
    }

    async fn deliver(&self, delivery: &Delivery) -> Result<DeliveryReport, PluginError> {
        self.future("delivering a notification", |n| n.deliver(delivery))
            .await
    }
}

impl ErrorHandlerFactory for Guarded<Box<dyn ErrorHandlerFactory>> {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn build(&self, config: serde_json::Value) -> Result<Arc<dyn ErrorHandler>, PluginError> {
        let inner = self.call("building an error handler", |f| f.build(config))?;
        Ok(Arc::new(self.wrap(inner)))
    }
}

impl ErrorHandler for Guarded<Arc<dyn ErrorHandler>> {
    fn name(&self) -> &str {
        self.call_infallible("naming itself", self.kind, |h| h.name())
    }

    fn report(&self, report: &ErrorReport) {
        self.call_infallible("reporting an error", (), |h| h.report(report));
    }
}

impl MetricsSinkFactory for Guarded<Box<dyn MetricsSinkFactory>> {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn build(&self, config: serde_json::Value) -> Result<Arc<dyn MetricsSink>, PluginError> {
        let inner = self.call("building a metrics sink", |f| f.build(config))?;
        Ok(Arc::new(self.wrap(inner)))
    }
}

impl MetricsSink for Guarded<Arc<dyn MetricsSink>> {
    fn name(&self) -> &str {
        self.call_infallible("naming itself", self.kind, |s| s.name())
    }

    fn record(&self, metric: &Metric) {
        self.call_infallible("recording a metric", (), |s| s.record(metric));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[derive(Debug)]
    struct Panicky;

    #[async_trait]
    impl Notifier for Panicky {
        fn name(&self) -> &str {
            "panicky"
        }
        async fn deliver(&self, _: &Delivery) -> Result<DeliveryReport, PluginError> {
            tokio::time::sleep(Duration::from_millis(1)).await;
            panic!("boom at delivery");
        }
    }

    struct PanickyFactory;

    impl NotifierFactory for PanickyFactory {
        fn kind(&self) -> &'static str {
            "panicky"
        }
        fn build(&self, config: serde_json::Value) -> Result<Arc<dyn Notifier>, PluginError> {
            if config.is_null() {
                panic!("boom at build");
            }
            Ok(Arc::new(Panicky))
        }
    }

    /// Delivers by spawning a task that sleeps, then says which thread it
    /// ran on.
    #[derive(Debug)]
    struct Spawning;

    #[async_trait]
    impl Notifier for Spawning {
        fn name(&self) -> &str {
            "spawning"
        }
        async fn deliver(&self, _: &Delivery) -> Result<DeliveryReport, PluginError> {
            let task = tokio::spawn(async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                std::thread::current().name().map(str::to_owned)
            });
            let thread = task
                .await
                .map_err(|err| PluginError::permanent(err.to_string()))?;
            Err(PluginError::permanent(thread.unwrap_or_default()))
        }
    }

    struct SpawningFactory;

    impl NotifierFactory for SpawningFactory {
        fn kind(&self) -> &'static str {
            "spawning"
        }
        fn build(&self, _: serde_json::Value) -> Result<Arc<dyn Notifier>, PluginError> {
            Ok(Arc::new(Spawning))
        }
    }

    fn registry() -> Registry {
        fn register(registry: &mut Registry) -> Result<(), PluginError> {
            registry.register_notifier(Box::new(PanickyFactory))?;
            registry.register_notifier(Box::new(SpawningFactory))
        }
        let mut registry = Registry::new();
        register_guarded(&mut registry, &Host::current(), register).expect("registers");
        registry
    }

    #[tokio::test]
    async fn a_panic_while_building_is_a_permanent_error() {
        let err = registry()
            .build_notifier("panicky", serde_json::Value::Null)
            .expect_err("panics");
        assert_eq!(err.kind(), ErrorKind::Permanent);
        assert_eq!(
            err.message(),
            "the plugin panicked while building a notifier: boom at build"
        );
    }

    fn delivery() -> Delivery {
        let now = chrono::Utc::now();
        let job = crate::Job::new("t", "j", crate::JobSpec::new("busybox", "true"), now);
        let execution = crate::Execution::enqueued(&job, "busybox", "true", None, now, "e".into());
        Delivery {
            event: crate::NotificationEvent::Starts,
            job,
            execution,
            target: serde_json::Value::Null,
            task_url: String::new(),
            job_url: String::new(),
            attempt: 1,
        }
    }

    #[tokio::test]
    async fn a_panic_inside_a_future_is_a_permanent_error() {
        let notifier = registry()
            .build_notifier("panicky", serde_json::json!({}))
            .expect("builds");
        let err = notifier.deliver(&delivery()).await.expect_err("panics");
        assert_eq!(err.kind(), ErrorKind::Permanent);
        assert!(err.message().contains("boom at delivery"), "{err}");
        assert_eq!(notifier.name(), "panicky");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_plugin_spawns_and_sleeps_on_the_library_runtime() {
        let notifier = registry()
            .build_notifier("spawning", serde_json::json!({}))
            .expect("builds");
        let err = notifier.deliver(&delivery()).await.expect_err("reports");
        assert_eq!(err.message(), "fastlane-plugin", "{err}");
    }
}
