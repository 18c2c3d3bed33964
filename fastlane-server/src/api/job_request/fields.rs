//! The job request, field by field: the one table both the parser
//! ([`super::check`], [`super::parse`]) and the OpenAPI schema
//! ([`super::schema`]) are read from. Bounds are the constants below.

use super::schema::{Field, Kind, Max, Object, Schema, Str};

/// Retries of a job or a webhook: 0 to this.
pub const MAX_RETRIES: i64 = 100;
/// Environment variables of a job.
pub const MAX_ENVS: usize = 256;
/// Bytes of an env name.
pub const MAX_ENV_NAME: usize = 256;
/// Characters of an env value.
pub const MAX_ENV_VALUE: usize = 32 * 1024;
/// Nesting of `metadata` (the object itself is level 1).
pub const MAX_METADATA_DEPTH: usize = 32;
/// Bytes of `metadata` as compact JSON.
pub const MAX_METADATA_BYTES: usize = 64 * 1024;
/// Entries of `additionalDNSEntries`.
pub const MAX_DNS_ENTRIES: usize = 64;
/// Headers of one webhook.
pub const MAX_WEBHOOK_HEADERS: usize = 32;
/// Characters of an image reference.
pub const MAX_IMAGE: usize = 1024;
/// Characters of a command.
pub const MAX_COMMAND: usize = 64 * 1024;
/// Characters of a URL.
pub const MAX_URL: usize = 2048;
/// Characters of a cron expression.
pub const MAX_CRON: usize = 256;
/// The latest unix time accepted (9999-12-31T23:59:59Z).
pub const MAX_UNIX_TIME: i64 = 253_402_300_799;
/// The smallest memory limit, in bytes (6 MiB, Docker's minimum).
pub const MIN_MEMORY_BYTES: u64 = 6 * 1024 * 1024;
/// The largest memory limit, in bytes (2^53, 8 PiB: exact as a JSON number).
pub const MAX_MEMORY_BYTES: i64 = 1 << 53;
/// The longest retry delay of a job's `backoff`, in milliseconds (a week).
pub const MAX_BACKOFF_MS: i64 = 7 * 24 * 3_600_000;

/// The body of `POST /tasks/{taskId}` and `PUT /tasks/{taskId}/jobs/{jobId}`.
pub static JOB_REQUEST: Object = Object {
    name: "JobRequest",
    doc: "A job to run. Unknown fields are refused. At most one of `startIn`, `startAt` \
          and `cron`; `cronTimezone` only with `cron`; `backoff.maxMs` at least \
          `backoff.minMs`; at most `NOTIFY_MAX_ADDRESSES` (50) e-mail addresses in \
          `notify`, all lists together.",
    example: Some(
        r#"{"image": "busybox:latest", "command": "echo 'it works'", "envs": {"GREETING": "hello"}, "retries": 0, "timeout": 60}"#,
    ),
    fields: &[
        Field {
            name: "image",
            doc: "Container image, `name[:tag]`, `registry:port/name:tag` or `name@digest`.",
            required: true,
            schema: Schema {
                kind: Kind::Str(Str {
                    non_blank: true,
                    pattern: Some(r"^\S+$"),
                    example: Some("busybox:latest"),
                    ..Str::any(1, MAX_IMAGE)
                }),
                must: Some("a string without white space naming an image, like busybox:1.36"),
            },
        },
        Field {
            name: "command",
            doc: "The command, split shell-style into words; not run through a shell \
                  (use `sh -c '…'` for pipes and variables). Quotes must be closed.",
            required: true,
            schema: Schema {
                kind: Kind::Str(Str {
                    non_blank: true,
                    example: Some("echo 'it works'"),
                    ..Str::any(1, MAX_COMMAND)
                }),
                must: Some("a string: the command, split shell-style into words"),
            },
        },
        Field {
            name: "envs",
            doc: "Environment variables of the container (at most 256; names without `=`, \
                  1 to 256 bytes). Numbers and booleans are turned into strings. Values \
                  under names containing a blacklisted word are shown as `***` in responses.",
            required: false,
            schema: Schema {
                kind: Kind::Map {
                    keys: &Str {
                        pattern: Some(r"^[^=\x00]+$"),
                        ..Str::any(1, MAX_ENV_NAME)
                    },
                    values: &Schema {
                        kind: Kind::AnyOf(&[
                            Schema {
                                kind: Kind::Str(Str::any(0, MAX_ENV_VALUE)),
                                must: None,
                            },
                            Schema {
                                kind: Kind::Num {
                                    min: -1e300,
                                    exclusive_min: false,
                                    max: 1e300,
                                },
                                must: None,
                            },
                            Schema {
                                kind: Kind::Bool,
                                must: None,
                            },
                        ]),
                        must: Some("a string (at most 32768 characters), number or boolean"),
                    },
                    max: MAX_ENVS,
                },
                must: None,
            },
        },
        Field {
            name: "metadata",
            doc: "Your own data, kept with the job and shown as `metadata.custom`: an \
                  object at most 32 levels deep and 64 KiB as JSON.",
            required: false,
            schema: Schema {
                kind: Kind::Free {
                    depth: MAX_METADATA_DEPTH,
                    bytes: MAX_METADATA_BYTES,
                },
                must: None,
            },
        },
        Field {
            name: "retries",
            doc: "How many more times to run the job after a non-zero exit.",
            required: false,
            schema: RETRIES,
        },
        Field {
            name: "timeout",
            doc: "Seconds an execution may run before it is stopped as `timedout`; \
                  capped by `HARD_EXECUTION_TIMEOUT_SECONDS`, which is also the default.",
            required: false,
            schema: Schema {
                kind: Kind::Num {
                    min: 0.0,
                    exclusive_min: true,
                    max: 1e15,
                },
                must: Some("a positive number of seconds (at most 1e15)"),
            },
        },
        Field {
            name: "expiration",
            doc: "Unix time (seconds, UTC) after which the job must not start; a run \
                  due later ends `expired`.",
            required: false,
            schema: Schema {
                kind: Kind::Int {
                    min: 0,
                    max: MAX_UNIX_TIME,
                },
                must: Some("a unix timestamp in whole seconds, from 0 to 253402300799"),
            },
        },
        Field {
            name: "notify",
            doc: "E-mail addresses to notify.",
            required: false,
            schema: Schema {
                kind: Kind::Object(&NOTIFY),
                must: None,
            },
        },
        Field {
            name: "webhooks",
            doc: "Webhooks to call.",
            required: false,
            schema: Schema {
                kind: Kind::Object(&WEBHOOKS),
                must: None,
            },
        },
        Field {
            name: "additionalDNSEntries",
            doc: "Extra `hostname → IP` entries for the container's `/etc/hosts` (at most \
                  64; host names of letters, digits, `-`, `_` and `.`).",
            required: false,
            schema: Schema {
                kind: Kind::Map {
                    keys: &Str {
                        pattern: Some(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"),
                        ..Str::any(1, 253)
                    },
                    values: &Schema {
                        kind: Kind::AnyOf(&[
                            Schema {
                                kind: Kind::Str(Str {
                                    format: Some("ipv4"),
                                    ..Str::any(7, 15)
                                }),
                                must: None,
                            },
                            Schema {
                                kind: Kind::Str(Str {
                                    format: Some("ipv6"),
                                    ..Str::any(2, 45)
                                }),
                                must: None,
                            },
                        ]),
                        must: Some("an IP address"),
                    },
                    max: MAX_DNS_ENTRIES,
                },
                must: None,
            },
        },
        Field {
            name: "startIn",
            doc: "Run after this delay: `10s`, `2m30s`, `4h30m25s`, `240h`, `1d` (units d, \
                  h, m, s, largest first; at most 3 digits of days, 4 of hours, 5 of \
                  minutes and 7 of seconds).",
            required: false,
            schema: Schema {
                kind: Kind::Str(Str {
                    pattern: Some(r"^([0-9]{1,3}d)?([0-9]{1,4}h)?([0-9]{1,5}m)?([0-9]{1,7}s)?$"),
                    example: Some("2m30s"),
                    ..Str::any(2, 40)
                }),
                must: Some(
                    "a string like 10s, 2m30s, 4h30m25s or 1d (a delay: units d, h, m, s, largest first)",
                ),
            },
        },
        Field {
            name: "startAt",
            doc: "Run at this unix time (seconds, UTC); a past time runs now.",
            required: false,
            schema: Schema {
                kind: Kind::Int {
                    min: 0,
                    max: MAX_UNIX_TIME,
                },
                must: Some("a unix timestamp in whole seconds, from 0 to 253402300799"),
            },
        },
        Field {
            name: "cron",
            doc: "Run on this cron expression: 5 fields (or 6 with leading seconds) or \
                  `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`.",
            required: false,
            schema: Schema {
                kind: Kind::Str(Str {
                    non_blank: true,
                    example: Some("*/5 * * * *"),
                    ..Str::any(1, MAX_CRON)
                }),
                must: Some("a string: a cron expression"),
            },
        },
        Field {
            name: "cronTimezone",
            doc: "The IANA time zone `cron` is read in; UTC by default.",
            required: false,
            schema: Schema {
                kind: Kind::Str(Str {
                    non_blank: true,
                    example: Some("Europe/Paris"),
                    ..Str::any(1, 64)
                }),
                must: Some("a string: an IANA time zone name like Europe/Paris"),
            },
        },
        Field {
            name: "concurrencyPolicy",
            doc: "For cron jobs, what a slot does while the previous run is live: \
                  `Allow` (default), `Forbid` (skip it) or `Replace` (stop the old run).",
            required: false,
            schema: Schema {
                kind: Kind::Enum(&["Allow", "Forbid", "Replace"]),
                must: Some("Allow, Forbid or Replace"),
            },
        },
        Field {
            name: "pullPolicy",
            doc: "When the image is pulled: `ifNotPresent` (only when the host lacks \
                  it), `always` (before every run, following a moved tag) or `never` \
                  (a host without the image fails the run). The farm's policy when \
                  absent.",
            required: false,
            schema: Schema {
                kind: Kind::Enum(&["ifNotPresent", "always", "never"]),
                must: Some("ifNotPresent, always or never"),
            },
        },
        Field {
            name: "missedRuns",
            doc: "For cron jobs, what to do with slots that passed while nothing fired \
                  them (fastlane was down, its queue lost the firing): `skip` (default: \
                  fire the first of them, late, and go on from the next slot to come), \
                  `latest` (fire only the latest of them) or `all` (fire each, oldest \
                  first, at most `maxMissedRuns`).",
            required: false,
            schema: Schema {
                kind: Kind::Enum(&["skip", "latest", "all"]),
                must: Some("skip, latest or all"),
            },
        },
        Field {
            name: "maxMissedRuns",
            doc: "With `missedRuns: all`, at most this many missed slots fire (the \
                  latest ones); 100 when absent.",
            required: false,
            schema: Schema {
                kind: Kind::Int {
                    min: 1,
                    max: 10_000,
                },
                must: Some("a whole number of slots, from 1 to 10000"),
            },
        },
        Field {
            name: "backoff",
            doc: "Retry delays for this job; the server's defaults when absent.",
            required: false,
            schema: Schema {
                kind: Kind::Object(&BACKOFF),
                must: None,
            },
        },
        Field {
            name: "cpuLimit",
            doc: "CPUs the container may use (`0.5`, `2`); the farm's default when absent.",
            required: false,
            schema: Schema {
                kind: Kind::Num {
                    min: 0.01,
                    exclusive_min: false,
                    max: 1024.0,
                },
                must: Some("a number of CPUs from 0.01 to 1024"),
            },
        },
        Field {
            name: "memoryLimit",
            doc: "Memory the container may use, at least 6m: bytes (at most 2^53), or a \
                  size like `256m` or `1g` (units k, m, g of 1024, an optional `b`); the \
                  farm's default when absent.",
            required: false,
            schema: Schema {
                kind: Kind::AnyOf(&[
                    Schema {
                        kind: Kind::Int {
                            min: MIN_MEMORY_BYTES as i64,
                            max: MAX_MEMORY_BYTES,
                        },
                        must: None,
                    },
                    Schema {
                        kind: Kind::Str(Str {
                            pattern: Some(r"^[0-9]{1,15}([kKmMgG][bB]?)?$"),
                            example: Some("256m"),
                            ..Str::any(1, 17)
                        }),
                        must: None,
                    },
                ]),
                must: Some("at least 6m: bytes, or a size like 256m or 1g"),
            },
        },
        Field {
            name: "maxConcurrent",
            doc: "At most this many executions of this task run at once (every job of \
                  the task counts); the others wait in order. No limit when absent \
                  (but see `TASK_CONCURRENCY`).",
            required: false,
            schema: Schema {
                kind: Kind::Int {
                    min: 1,
                    max: u32::MAX as i64,
                },
                must: Some("a whole number of executions, from 1 to 4294967295"),
            },
        },
        Field {
            name: "priority",
            doc: "Higher runs first when executions wait for the same slot (FIFO within a \
                  priority; a waiting execution's priority rises with its wait, see \
                  `PRIORITY_AGING_SECONDS`). The task's `TASK_FLOW` priority, else 0, when absent.",
            required: false,
            schema: Schema {
                kind: Kind::Int {
                    min: -(crate::config::MAX_PRIORITY as i64),
                    max: crate::config::MAX_PRIORITY as i64,
                },
                must: Some("a whole number from -1000 to 1000"),
            },
        },
        Field {
            name: "concurrencyKey",
            doc: "Whom the job runs for (a customer, a tenant): executions with the same key \
                  share `maxConcurrentPerKey`, the `KEY_FLOW` limits and rate, and a fair share \
                  of slots under `ADMISSION_ORDER=fair`.",
            required: false,
            schema: Schema {
                kind: Kind::Str(Str {
                    pattern: Some(r"^[A-Za-z0-9_:@.-]{1,128}$"),
                    example: Some("customer-42"),
                    ..Str::any(1, 128)
                }),
                must: Some("1 to 128 letters, digits, '-', '_', '.', ':' or '@'"),
            },
        },
        Field {
            name: "maxConcurrentPerKey",
            doc: "At most this many executions of this task with the same `concurrencyKey` \
                  run at once; the others wait while other keys go on.",
            required: false,
            schema: Schema {
                kind: Kind::Int {
                    min: 1,
                    max: u32::MAX as i64,
                },
                must: Some("a whole number of executions, from 1 to 4294967295"),
            },
        },
    ],
};

const RETRIES: Schema = Schema {
    kind: Kind::Int {
        min: 0,
        max: MAX_RETRIES,
    },
    must: None,
};

/// An e-mail address: something, `@`, something, no white space.
const ADDRESS: Schema = Schema {
    kind: Kind::Str(Str {
        pattern: Some(r"^[^\s@]+@[^\s@]+$"),
        example: Some("ops@example.com"),
        ..Str::any(3, 254)
    }),
    must: Some("an e-mail address"),
};

const NOTIFY: Object = Object {
    name: "NotifyRequest",
    doc: "Who to e-mail about an execution's end (at most `NOTIFY_MAX_ADDRESSES`, 50 by \
          default, addresses in all).",
    example: None,
    fields: &[
        Field {
            name: "succeeds",
            doc: "Addresses told when an execution ends `done`.",
            required: false,
            schema: ADDRESSES_REF,
        },
        Field {
            name: "fails",
            doc: "Addresses told when an execution ends `failed`.",
            required: false,
            schema: ADDRESSES_REF,
        },
        Field {
            name: "finishes",
            doc: "Addresses told whenever an execution ends.",
            required: false,
            schema: ADDRESSES_REF,
        },
    ],
};

const ADDRESSES_REF: Schema = Schema {
    kind: Kind::List {
        items: &ADDRESS,
        max: Max::Addresses,
    },
    must: None,
};

const WEBHOOK: Object = Object {
    name: "WebhookRequest",
    doc: "An HTTP endpoint to call about an execution.",
    example: None,
    fields: &[
        Field {
            name: "url",
            doc: "`http://` or `https://` URL.",
            required: true,
            schema: Schema {
                kind: Kind::Str(Str {
                    pattern: Some(r"^https?://[^\s/?#]+([/?#]\S*)?$"),
                    example: Some("https://hooks.example.com/fastlane"),
                    ..Str::any(8, MAX_URL)
                }),
                must: Some("an http:// or https:// URL"),
            },
        },
        Field {
            name: "headers",
            doc: "Extra request headers (at most 32; names are HTTP tokens, values have no \
                  line breaks).",
            required: false,
            schema: Schema {
                kind: Kind::Map {
                    keys: &Str {
                        pattern: Some(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"),
                        ..Str::any(1, 256)
                    },
                    values: &Schema {
                        kind: Kind::Str(Str {
                            pattern: Some(r"^[^\r\n\x00]*$"),
                            ..Str::any(0, 8192)
                        }),
                        must: Some("a string without line breaks, at most 8192 characters"),
                    },
                    max: MAX_WEBHOOK_HEADERS,
                },
                must: None,
            },
        },
        Field {
            name: "retries",
            doc: "How many more times to try after a failed delivery.",
            required: false,
            schema: RETRIES,
        },
        Field {
            name: "method",
            doc: "`POST` (default), `PUT`, `PATCH`, `GET` or `DELETE` (or in lower case).",
            required: false,
            schema: Schema {
                // A pattern rather than an enum of both cases: client
                // generators make one variant per value and cannot tell
                // `GET` from `get` apart.
                kind: Kind::Str(Str {
                    pattern: Some(r"^(GET|POST|PUT|PATCH|DELETE|get|post|put|patch|delete)$"),
                    example: Some("POST"),
                    ..Str::any(3, 6)
                }),
                must: Some("one of GET, POST, PUT, PATCH, DELETE"),
            },
        },
    ],
};

const HOOKS_REF: Schema = Schema {
    kind: Kind::List {
        items: &Schema {
            kind: Kind::Object(&WEBHOOK),
            must: None,
        },
        max: Max::HooksPerEvent,
    },
    must: None,
};

const WEBHOOKS: Object = Object {
    name: "WebhooksRequest",
    doc: "Webhooks by event (at most `WEBHOOKS_MAX_PER_EVENT`, 20 by default, per event).",
    example: None,
    fields: &[
        Field {
            name: "starts",
            doc: "Called when an execution's container starts.",
            required: false,
            schema: HOOKS_REF,
        },
        Field {
            name: "succeeds",
            doc: "Called when an execution ends `done`.",
            required: false,
            schema: HOOKS_REF,
        },
        Field {
            name: "fails",
            doc: "Called when an execution ends `failed`.",
            required: false,
            schema: HOOKS_REF,
        },
        Field {
            name: "finishes",
            doc: "Called whenever an execution ends.",
            required: false,
            schema: HOOKS_REF,
        },
    ],
};

const MS: Schema = Schema {
    kind: Kind::Int {
        min: 0,
        max: MAX_BACKOFF_MS,
    },
    must: Some("a whole number of milliseconds, from 0 to 604800000"),
};

const BACKOFF: Object = Object {
    name: "BackoffRequest",
    doc: "Per-job retry delays: `minMs × factor^n`, at most `maxMs`, spread by ±`jitter`.",
    example: None,
    fields: &[
        Field {
            name: "minMs",
            doc: "Delay before the first retry, in milliseconds (1000 by default).",
            required: false,
            schema: MS,
        },
        Field {
            name: "factor",
            doc: "Growth per retry (2 by default).",
            required: false,
            schema: Schema {
                kind: Kind::Num {
                    min: 1.0,
                    exclusive_min: false,
                    max: 100.0,
                },
                must: None,
            },
        },
        Field {
            name: "maxMs",
            doc: "The longest delay, in milliseconds, at least `minMs` (3600000 by default).",
            required: false,
            schema: MS,
        },
        Field {
            name: "jitter",
            doc: "Random spread, a fraction (0 by default).",
            required: false,
            schema: Schema {
                kind: Kind::Num {
                    min: 0.0,
                    exclusive_min: false,
                    max: 1.0,
                },
                must: None,
            },
        },
    ],
};
