//! The test PostgreSQL cluster `scripts/services.sh` starts, one fresh
//! schema per test.

use std::process::Command;

use anyhow::{Context, bail};

/// The test database with a fresh, empty schema as the search path
/// (created with `psql`): a store URL no other test shares.
pub fn fresh_store_url() -> anyhow::Result<String> {
    let url = std::env::var("FASTLANE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://fastlane:fastlane@127.0.0.1:5433/fastlane".to_owned());
    let schema = format!("b_{}", uuid::Uuid::new_v4().simple());
    let created = Command::new("psql")
        .arg(&url)
        .args(["-X", "-q", "-c", &format!("CREATE SCHEMA {schema}")])
        .output()
        .context("running psql")?;
    if !created.status.success() {
        bail!(
            "cannot create a schema at {url} (scripts/services.sh starts the test cluster): {}",
            String::from_utf8_lossy(&created.stderr)
        );
    }
    Ok(format!("{url}?options=-csearch_path%3D{schema}"))
}
