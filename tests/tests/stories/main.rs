//! fastlane's black-box stories, one module per story, all in one test
//! binary (ripgrep's and dropshot's shape: the helpers in `fastlane-tests`
//! are linked once, not once per story). Each test starts the real
//! `fastlane` binary and talks to it the way a user would.
//!
//! Run one story with `cargo nextest run -p fastlane-tests -E 'test(/^jobs::/)'`
//! or `cargo test -p fastlane-tests --test stories jobs::`.

mod access;
mod admin_ui;
mod blacklist;
mod cli;
mod clients;
mod deploy;
mod egress;
mod email;
mod engines;
mod examples;
mod flow;
mod hardening;
mod hostile;
mod hosts;
mod jobs;
mod kubernetes;
mod limits;
mod logs;
mod metrics;
mod networked;
mod observability;
mod openapi_tools;
mod pages;
mod plugins;
mod processes;
mod prune;
mod recovery;
mod redis_queue;
mod redis_topologies;
mod remote;
mod request_schema;
mod resources;
mod routes;
mod scheduling;
mod secrets;
mod sentry;
mod tidy;
mod validation;
mod webhooks;
