//! The test PostgreSQL cluster `scripts/services.sh` starts, one fresh
//! schema per test.

use std::process::Command;

use anyhow::{Context, bail};

/// Test schemas older than this are dropped by later tests.
const STALE_AFTER_SECS: u64 = 3600;

/// Drops the schemas of tests made before `before` (unix seconds; named
/// `b_<unix seconds>_<uuid>`), and those named before their names told
/// their age (`b_<uuid>`).
fn drop_stale(before: u64) -> String {
    format!(
        "DO $$ DECLARE s text; BEGIN
             FOR s IN SELECT nspname FROM pg_namespace
                      WHERE nspname ~ '^b_[0-9a-f]{{32}}$'
                         OR (nspname ~ '^b_[0-9]+_'
                             AND split_part(nspname, '_', 2)::bigint < {before})
             LOOP
                 EXECUTE format('DROP SCHEMA IF EXISTS %I CASCADE', s);
             END LOOP;
         END $$"
    )
}

/// The test database with a fresh, empty schema as the search path
/// (created with `psql`): a store URL no other test shares.
pub fn fresh_store_url() -> anyhow::Result<String> {
    let url = std::env::var("FASTLANE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://fastlane:fastlane@127.0.0.1:5433/fastlane".to_owned());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Best effort: another test may be dropping them too.
    let _ = Command::new("psql")
        .arg(&url)
        .args(["-X", "-q", "-c"])
        .arg(drop_stale(now.saturating_sub(STALE_AFTER_SECS)))
        .output();
    let schema = format!("b_{now}_{}", uuid::Uuid::new_v4().simple());
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
