//! The Redis [`Queue`], for servers that share one queue.
//!
//! Each queue is a sorted set of message keys scored by the time they are
//! due; a lease pushes the score into the future (SQS's visibility timeout),
//! so a message whose holder died is due again when its lease lapses.
//! Members are `<sequence>:<id>`, so messages due in the same millisecond
//! come out in the order they went in. Each message's payload, lease token
//! and delivery count live in a hash. Every change is one Lua script, so it
//! is atomic however many processes share the queue.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `<prefix>:queue:<name>` | sorted set | `<seq>:<id>` scored by due (or lease end) in ms |
//! | `<prefix>:message:<id>` | hash | `queue`, `member`, `payload`, `attempts`, `token` |
//! | `<prefix>:seq` | string | the last sequence number |
//! | `<prefix>:queues` | set | the queue names in use |
//! | `<prefix>:epoch` | string | an id set by the first process to look; gone with the data (see `Queue::epoch`) |
//!
//! # Topologies
//!
//! `REDIS_URL` ([`url`]) names one server (`redis://`, `rediss://`,
//! `unix://`), a master behind Sentinels (`redis+sentinel://`, or
//! `rediss+sentinel://` over TLS; see [`sentinel`] for how failovers are
//! followed and why acknowledged writes survive them) or a Redis Cluster
//! (`redis+cluster://`, or `rediss+cluster://` over TLS); [`connection`]
//! gives the scripts one connection type for all of them.
//!
//! **In a Cluster the prefix is a hash tag**: the keys are `{<prefix>}:…`.
//! A script may only touch keys of one hash slot, and enqueue touches a
//! queue, a message, the sequence and the set of queues, while a lease
//! finds its message's key only as it runs. So all of one fastlane's keys
//! live in one slot, hence on one master (and its replicas): the Cluster
//! brings failover, and room for several fastlanes (several prefixes) spread
//! over its nodes, not more throughput for one fastlane. That is enough:
//! one Redis node serves tens of thousands of these scripts a second, and
//! containers start a few a second. Single-server and Sentinel keys keep
//! their plain `<prefix>:…` names, so data written before stays readable.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::{AsyncCommands, Script};
use tokio_util::sync::CancellationToken;

use super::{Delivery, Queue, QueueError, Work, due_ms, ms, now_ms};

pub mod connection;
pub mod sentinel;
pub mod url;

#[cfg(test)]
mod tests;

use connection::Connection;
use url::RedisUrl;

/// How long an idle consumer waits before looking again. Consumers poll:
/// a look is one script run, and Redis serves tens of thousands a second.
const POLL: Duration = Duration::from_millis(100);

/// Adds a message unless its id is queued. KEYS: queue, message, seq,
/// queues. ARGV: id, queue name, payload, due ms. Returns 1 when added.
const ENQUEUE: &str = r"
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local seq = redis.call('INCR', KEYS[3])
local member = string.format('%020d', seq) .. ':' .. ARGV[1]
redis.call('ZADD', KEYS[1], ARGV[4], member)
redis.call('HSET', KEYS[2], 'queue', ARGV[2], 'member', member, 'payload', ARGV[3], 'attempts', 0)
redis.call('SADD', KEYS[4], ARGV[2])
return 1
";

/// Leases the oldest due message. KEYS: queue. ARGV: now ms, lease end
/// ms, token, message key prefix. Returns {id, payload, attempts}, or the
/// next due time (or -1 for an empty queue).
const LEASE: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1)
if #due == 0 then
  local next = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if #next == 0 then return -1 end
  return tonumber(next[2])
end
local member = due[1]
local id = string.sub(member, 22)
local message = ARGV[4] .. id
if redis.call('EXISTS', message) == 0 then
  redis.call('ZREM', KEYS[1], member)
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], member)
local attempts = redis.call('HINCRBY', message, 'attempts', 1)
redis.call('HSET', message, 'token', ARGV[3])
return {id, redis.call('HGET', message, 'payload'), attempts}
";

/// Moves a leased message to `due` if the token still holds it, and
/// clears the lease when asked. KEYS: message. ARGV: token, due ms,
/// clear (1/0). Returns 1 when the token held it.
const RESCORE: &str = r"
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
local queue = redis.call('HGET', KEYS[1], 'queue')
local member = redis.call('HGET', KEYS[1], 'member')
redis.call('ZADD', ARGV[4] .. queue, 'XX', ARGV[2], member)
if ARGV[3] == '1' then redis.call('HDEL', KEYS[1], 'token') end
return 1
";

/// Removes a message if the token still holds it. KEYS: message. ARGV:
/// token, queue key prefix.
const ACK: &str = r"
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
local queue = redis.call('HGET', KEYS[1], 'queue')
local member = redis.call('HGET', KEYS[1], 'member')
redis.call('ZREM', ARGV[2] .. queue, member)
redis.call('DEL', KEYS[1])
return 1
";

/// Sets the epoch unless set, and returns it. KEYS: epoch. ARGV: a new id.
const EPOCH: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
";

/// The Redis queue.
#[derive(Clone)]
pub struct RedisQueue {
    connection: Connection,
    prefix: String,
    enqueue: Script,
    lease: Script,
    rescore: Script,
    ack: Script,
    epoch: Script,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("prefix", &self.prefix)
            .field("connection", &self.connection)
            .finish_non_exhaustive()
    }
}

fn unavailable(err: redis::RedisError) -> QueueError {
    QueueError::Unavailable(format!("redis: {err}"))
}

impl RedisQueue {
    /// Connects to `url` (any form [`RedisUrl`] reads); every key starts
    /// with `prefix` (in a hash tag, `{prefix}`, on a Cluster), so several
    /// fastlanes (or tests) can share one Redis.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, QueueError> {
        let url =
            RedisUrl::parse(url).map_err(|e| QueueError::Unavailable(format!("REDIS_URL: {e}")))?;
        Self::open(&url, prefix).await
    }

    /// Connects to a checked `url`.
    pub async fn open(url: &RedisUrl, prefix: &str) -> Result<Self, QueueError> {
        let connection = Connection::open(url).await.map_err(unavailable)?;
        let prefix = if url.is_cluster() {
            format!("{{{prefix}}}")
        } else {
            prefix.to_owned()
        };
        tracing::info!(url = %url, prefix = %prefix, "queue in redis");
        Ok(Self {
            connection,
            prefix,
            enqueue: Script::new(ENQUEUE),
            lease: Script::new(LEASE),
            rescore: Script::new(RESCORE),
            ack: Script::new(ACK),
            epoch: Script::new(EPOCH),
        })
    }

    fn queue_key(&self, queue: &str) -> String {
        format!("{}:queue:{queue}", self.prefix)
    }

    fn message_key(&self, id: &str) -> String {
        format!("{}:message:{id}", self.prefix)
    }

    /// Leases the oldest due message, or says when the next one is due.
    async fn try_lease(
        &self,
        queue: &str,
        lease: Duration,
    ) -> Result<Result<Delivery, Option<i64>>, QueueError> {
        let now = now_ms();
        let token = uuid::Uuid::new_v4().to_string();
        let answer: redis::Value = self
            .lease
            .key(self.queue_key(queue))
            .arg(now)
            .arg(now + ms(lease))
            .arg(&token)
            .arg(format!("{}:message:", self.prefix))
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)?;
        match answer {
            redis::Value::Int(-1) => Ok(Err(None)),
            // A member whose message was gone: look again at once.
            redis::Value::Int(0) => Ok(Err(Some(now))),
            redis::Value::Int(next) => Ok(Err(Some(next))),
            redis::Value::Array(fields) => {
                let (id, payload, attempts): (String, String, u32) =
                    redis::from_redis_value(redis::Value::Array(fields))
                        .map_err(|e| QueueError::Corrupt(e.to_string()))?;
                let work: Work = serde_json::from_str(&payload)
                    .map_err(|e| QueueError::Corrupt(format!("message {id}: {e}")))?;
                Ok(Ok(Delivery {
                    id,
                    work,
                    token,
                    attempts,
                }))
            }
            other => Err(QueueError::Corrupt(format!(
                "unexpected answer to a lease: {other:?}"
            ))),
        }
    }

    /// Moves the delivery's message to `due`; false when the lease was lost.
    async fn rescore(
        &self,
        delivery: &Delivery,
        due: i64,
        clear: bool,
    ) -> Result<bool, QueueError> {
        let held: i64 = self
            .rescore
            .key(self.message_key(&delivery.id))
            .arg(&delivery.token)
            .arg(due)
            .arg(if clear { "1" } else { "0" })
            .arg(format!("{}:queue:", self.prefix))
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)?;
        Ok(held == 1)
    }
}

#[async_trait]
impl Queue for RedisQueue {
    async fn enqueue(
        &self,
        queue: &str,
        work: &Work,
        due: Option<DateTime<Utc>>,
    ) -> Result<bool, QueueError> {
        let id = work.message_id();
        let payload = work.payload()?;
        let due = due_ms(due);
        let added: i64 = self
            .enqueue
            .key(self.queue_key(queue))
            .key(self.message_key(&id))
            .key(format!("{}:seq", self.prefix))
            .key(format!("{}:queues", self.prefix))
            .arg(&id)
            .arg(queue)
            .arg(payload)
            .arg(due)
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)?;
        Ok(added == 1)
    }

    async fn dequeue(
        &self,
        queue: &str,
        lease: Duration,
        cancel: &CancellationToken,
    ) -> Result<Option<Delivery>, QueueError> {
        loop {
            let idle = match self.try_lease(queue, lease).await? {
                Ok(delivery) => return Ok(Some(delivery)),
                Err(Some(next_due)) => {
                    Duration::from_millis(u64::try_from(next_due - now_ms()).unwrap_or(0)).min(POLL)
                }
                Err(None) => POLL,
            };
            tokio::select! {
                () = cancel.cancelled() => return Ok(None),
                () = tokio::time::sleep(idle) => {}
            }
        }
    }

    async fn extend(&self, delivery: &Delivery, lease: Duration) -> Result<(), QueueError> {
        if self.rescore(delivery, now_ms() + ms(lease), false).await? {
            Ok(())
        } else {
            Err(QueueError::Unavailable(format!(
                "the lease on message {} was lost",
                delivery.id
            )))
        }
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        let _: i64 = self
            .ack
            .key(self.message_key(&delivery.id))
            .arg(&delivery.token)
            .arg(format!("{}:queue:", self.prefix))
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn retry_later(&self, delivery: &Delivery, delay: Duration) -> Result<(), QueueError> {
        self.rescore(delivery, now_ms() + ms(delay), true).await?;
        Ok(())
    }

    async fn lengths(&self) -> Result<BTreeMap<String, u64>, QueueError> {
        let mut connection = self.connection.clone();
        let names: Vec<String> = connection
            .smembers(format!("{}:queues", self.prefix))
            .await
            .map_err(unavailable)?;
        let mut lengths = BTreeMap::from([(super::JOBS.to_owned(), 0)]);
        for name in names {
            let length: u64 = connection
                .zcard(self.queue_key(&name))
                .await
                .map_err(unavailable)?;
            lengths.insert(name, length);
        }
        Ok(lengths)
    }

    async fn ping(&self) -> Result<(), QueueError> {
        let _: String = redis::cmd("PING")
            .query_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn epoch(&self) -> Result<String, QueueError> {
        self.epoch
            .key(format!("{}:epoch", self.prefix))
            .arg(uuid::Uuid::new_v4().to_string())
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)
    }
}
