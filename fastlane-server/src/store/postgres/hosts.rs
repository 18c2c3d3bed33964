//! Host state the PostgreSQL store keeps for every process: the blacklist
//! and the newest health report of each host.

use super::rows::{col, docs, document, pg};

use crate::store::StoreError;

use super::PostgresStore;

pub(super) async fn blacklist(store: &PostgresStore) -> Result<Vec<String>, StoreError> {
    let rows = store
        .query(
            "SELECT host FROM blacklist ORDER BY host COLLATE \"C\"",
            &[],
        )
        .await?;
    rows.iter().map(|row| col(row, 0)).collect()
}

pub(super) async fn set_blacklisted(
    store: &PostgresStore,
    host: &str,
    blacklisted: bool,
) -> Result<(), StoreError> {
    let sql = if blacklisted {
        "INSERT INTO blacklist (host) VALUES ($1) ON CONFLICT (host) DO NOTHING"
    } else {
        "DELETE FROM blacklist WHERE host = $1"
    };
    store.execute(sql, &[&host]).await?;
    Ok(())
}

pub(super) async fn share_host_health(
    store: &PostgresStore,
    reports: &[fastlane_sdk::HostHealth],
) -> Result<Vec<fastlane_sdk::HostHealth>, StoreError> {
    let mut client = store.client().await?;
    let tx = client.transaction().await.map_err(pg)?;
    for report in reports {
        tx.execute(
            "INSERT INTO host_health (host, since, data) VALUES ($1, $2, $3)
             ON CONFLICT (host) DO UPDATE SET since = EXCLUDED.since, data = EXCLUDED.data
             WHERE EXCLUDED.since > host_health.since",
            &[&report.host, &report.since, &document(report)?],
        )
        .await
        .map_err(pg)?;
    }
    let rows = tx
        .query(
            "SELECT data FROM host_health ORDER BY host COLLATE \"C\"",
            &[],
        )
        .await
        .map_err(pg)?;
    tx.commit().await.map_err(pg)?;
    docs(&rows)
}
