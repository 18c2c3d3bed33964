//! Host state the embedded store keeps for every process: the blacklist
//! and the newest health report of each host.

use rusqlite::params;

use crate::embedded::DbError;
use crate::store::StoreError;

use super::{SqliteStore, from_json, to_json, ts};

pub(super) async fn blacklist(store: &SqliteStore) -> Result<Vec<String>, StoreError> {
    Ok(store
        .db
        .read(|conn| {
            let mut stmt = conn.prepare("SELECT host FROM blacklist ORDER BY host")?;
            let hosts = stmt
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(hosts)
        })
        .await?)
}

pub(super) async fn set_blacklisted(
    store: &SqliteStore,
    host: &str,
    blacklisted: bool,
) -> Result<(), StoreError> {
    let host = host.to_owned();
    store
        .db
        .write(move |conn| {
            if blacklisted {
                conn.execute(
                    "INSERT INTO blacklist (host) VALUES (?1) ON CONFLICT (host) DO NOTHING",
                    params![host],
                )?;
            } else {
                conn.execute("DELETE FROM blacklist WHERE host = ?1", params![host])?;
            }
            Ok(())
        })
        .await?;
    Ok(())
}

pub(super) async fn share_host_health(
    store: &SqliteStore,
    reports: &[fastlane_sdk::HostHealth],
) -> Result<Vec<fastlane_sdk::HostHealth>, StoreError> {
    let rows = reports
        .iter()
        .map(|r| Ok((r.host.clone(), ts(r.since), to_json(r)?)))
        .collect::<Result<Vec<_>, DbError>>()?;
    Ok(store
        .db
        .write(move |conn| {
            let tx = conn.savepoint()?;
            for (host, since, data) in &rows {
                tx.execute(
                    "INSERT INTO host_health (host, since, data) VALUES (?1, ?2, ?3)
                     ON CONFLICT (host) DO UPDATE SET since = excluded.since, data = excluded.data
                     WHERE excluded.since > host_health.since",
                    params![host, since, data],
                )?;
            }
            let mut shared = Vec::new();
            {
                let mut stmt = tx.prepare_cached("SELECT data FROM host_health ORDER BY host")?;
                for data in stmt.query_map([], |r| r.get::<_, String>(0))? {
                    shared.push(from_json(&data?)?);
                }
            }
            tx.commit()?;
            Ok(shared)
        })
        .await?)
}
