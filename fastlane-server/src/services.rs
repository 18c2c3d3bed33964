//! [`Services`]: everything the API and the worker share, built once at
//! start-up from the configuration.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use fastlane_sdk::Notifier;

use crate::config::{Config, StoreLocation};
use crate::embedded::Db;
use crate::executors::{self, Executors};
use crate::plugins;
use crate::queue::Queue;
use crate::queue::sqlite::SqliteQueue;
use crate::store::Store;
use crate::store::sqlite::SqliteStore;

/// The shared parts of a running fastlane process.
#[derive(Debug, Clone)]
pub struct Services {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// Tasks, jobs and executions.
    pub store: Arc<dyn Store>,
    /// Work waiting for a worker.
    pub queue: Arc<dyn Queue>,
    /// Runs executions: the executor of each task.
    pub executors: Executors,
    /// Delivers notifications, by the kind of target they serve (`webhook`).
    pub notifiers: BTreeMap<String, Arc<dyn Notifier>>,
    /// What the process measures.
    pub metrics: crate::metrics::Metrics,
    /// Where unhandled failures are reported.
    pub reporter: crate::reporting::Reporter,
    /// The `PLUGINS` libraries and what became of them.
    pub libraries: Arc<Vec<crate::plugins::LibraryStatus>>,
    /// Where submissions' queue messages wait to be published.
    pub outbox: crate::outbox::Outbox,
    /// Nudges this process's passes over the admission line.
    pub line: crate::admission::Line,
}

impl Services {
    /// Builds the services from the configuration: the plugins (built-in
    /// and `PLUGINS` libraries), the store and the queue (embedded in
    /// `FASTLANE_DATA_DIR` unless `STORE_URL` / `REDIS_URL` name networked
    /// ones).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        // Opened only when the store or the queue is embedded.
        let db = if config.store.is_none() || config.redis_url.is_none() {
            Some(Db::open(&config.data_dir)?)
        } else {
            None
        };
        let embedded = || db.clone().context("the embedded database was not opened");
        let mut registry = plugins::builtin()?;
        let libraries = plugins::load_libraries(&mut registry, &config.plugins);
        let executors = build_executors(&registry, &libraries, &config)?;
        let mut notifiers = std::collections::BTreeMap::new();
        let webhook = registry
            .build_notifier("webhook", config.webhook_notifier.clone())
            .context("configuring webhooks")?;
        notifiers.insert("webhook".to_owned(), webhook);
        for subscription in &config.notifier_subscriptions {
            let kind = subscription.notifier.as_str();
            if notifiers.contains_key(kind) {
                continue;
            }
            let plugin_config = plugins::library_config(&libraries, "notifier", kind)
                .cloned()
                .unwrap_or_default();
            let notifier = registry
                .build_notifier(kind, plugin_config)
                .with_context(|| format!("configuring notifier {kind:?} (NOTIFIERS)"))?;
            notifiers.insert(kind.to_owned(), notifier);
        }
        if let Some(email) = &config.email_notifier {
            let email = registry
                .build_notifier("email", email.clone())
                .context("configuring e-mail (SMTP_*)")?;
            notifiers.insert("email".to_owned(), email);
        }
        let mut handlers = Vec::new();
        if let Some(dsn) = &config.sentry_dsn {
            let sentry = registry
                .build_error_handler(
                    "sentry",
                    serde_json::json!({"dsn": dsn, "environment": config.sentry_environment}),
                )
                .context("configuring Sentry (SENTRY_DSN)")?;
            handlers.push(sentry);
        }
        // With both embedded, the store queues a submission's message in
        // the transaction that writes the submission.
        let (store_db, outbox) = match (&config.store, &config.redis_url) {
            (None, None) => (
                SqliteStore::with_embedded_queue as fn(Db) -> SqliteStore,
                crate::outbox::Outbox::direct(),
            ),
            _ => (
                SqliteStore::new as fn(Db) -> SqliteStore,
                crate::outbox::Outbox::published(),
            ),
        };
        Ok(Self {
            outbox,
            line: Default::default(),
            reporter: crate::reporting::Reporter::new(handlers),
            notifiers,
            metrics: crate::metrics::Metrics::new(),
            store: match &config.store {
                Some(StoreLocation::Postgres { url }) => Arc::new(
                    crate::store::postgres::PostgresStore::connect(url)
                        .await
                        .with_context(|| {
                            format!(
                                "connecting to the store (STORE_URL {})",
                                crate::redact::url_without_password(url)
                            )
                        })?,
                ),
                Some(StoreLocation::Mongo { url, database }) => mongo_store(url, database).await?,
                None => Arc::new(store_db(embedded()?)),
            },
            queue: match &config.redis_url {
                Some(url) => Arc::new(
                    crate::queue::redis::RedisQueue::connect(url, &config.redis_key_prefix)
                        .await
                        .with_context(|| {
                            format!(
                                "connecting to the queue (REDIS_URL {})",
                                crate::redact::url_without_password(url)
                            )
                        })?,
                ),
                None => Arc::new(SqliteQueue::new(embedded()?).await?),
            },
            executors,
            libraries: Arc::new(libraries),
            config: Arc::new(config),
        })
    }
}

/// The MongoDB store (`STORE_URL=mongodb://…` or `MONGODB_CONFIG`).
#[cfg(feature = "store-mongo")]
async fn mongo_store(url: &str, database: &str) -> anyhow::Result<Arc<dyn Store>> {
    let store = crate::store::mongo::MongoStore::connect(url, database)
        .await
        .with_context(|| {
            format!(
                "connecting to the store (MongoDB {}, database {database})",
                crate::redact::url_without_password(url)
            )
        })?;
    Ok(Arc::new(store))
}

/// Without the MongoDB store compiled in, asking for it is an error.
#[cfg(not(feature = "store-mongo"))]
async fn mongo_store(_url: &str, _database: &str) -> anyhow::Result<Arc<dyn Store>> {
    anyhow::bail!(
        "this fastlane was built without the MongoDB store (feature store-mongo); \
         unset STORE_URL/MONGODB_CONFIG or rebuild with the feature"
    )
}

/// The Docker executor, and every executor `EXECUTORS` routes to (built
/// with the configuration of the library that registered it).
fn build_executors(
    registry: &fastlane_sdk::Registry,
    libraries: &[plugins::LibraryStatus],
    config: &Config,
) -> anyhow::Result<Executors> {
    let mut built = std::collections::BTreeMap::new();
    let docker = registry
        .build_executor(executors::DEFAULT, config.docker_executor())
        .context("configuring the docker executor")?;
    built.insert(executors::DEFAULT.to_owned(), docker);
    for route in &config.executor_routes {
        let kind = route.executor.as_str();
        if built.contains_key(kind) {
            continue;
        }
        let plugin_config = config
            .builtin_executor(kind)
            .or_else(|| plugins::library_config(libraries, "executor", kind).cloned())
            .unwrap_or_default();
        let executor = registry
            .build_executor(kind, plugin_config)
            .with_context(|| format!("configuring executor {kind:?} (EXECUTORS)"))?;
        built.insert(kind.to_owned(), executor);
    }
    Ok(Executors::new(config.executor_routes.clone(), built)?)
}
