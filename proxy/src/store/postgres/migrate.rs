//! Schema migrations of the PostgreSQL backend: the SQL files checked in under
//! `proxy/migrations/postgres/`, compiled into the binary and applied at start-up.
//!
//! Every instance runs [`migrate`] when it opens the store. It works in one transaction that
//! first takes a transaction-scoped advisory lock ([`MIGRATION_LOCK`]): instances starting
//! together on an empty database queue on that lock, the first creates the schema and commits,
//! the others then find every migration recorded in `schema_migrations` and apply nothing. A
//! migration that fails rolls back with the whole transaction (PostgreSQL's DDL is
//! transactional): the database is left as it was and the instance does not start.
//!
//! `schema_migrations(version, name, checksum, applied_at)` records each applied file with the
//! SHA-256 of its text. An applied file whose text has since changed stops the start-up (edit the
//! schema with a new file, never a shipped one, not even a comment: a test pins their checksums).
//! Versions the binary does not know (a newer binary migrated this database) are logged and left
//! alone: migrations are additive, so an older instance keeps working during a rolling upgrade.

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use crate::store::StoreError;

/// The advisory lock held while migrating (`pg_advisory_xact_lock`): "qys-cb-m" in ASCII.
/// Advisory locks are per database, so instances of other databases never wait on it.
pub const MIGRATION_LOCK: i64 = 0x7179_732d_6362_2d6d;

/// One checked-in migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Its number (the file name's prefix): applied in increasing order.
    pub version: i64,
    /// The file name without `.sql`.
    pub name: &'static str,
    /// The SQL, run as one batch inside the migration transaction.
    pub sql: &'static str,
}

macro_rules! migration {
    ($version:literal, $name:literal) => {
        Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres/", $name, ".sql")),
        }
    };
}

/// Every migration, in order. A new file in `migrations/postgres/` must be listed here (a test
/// compares this list with the directory).
pub const MIGRATIONS: &[Migration] = &[
    migration!(1, "0001_callbacks"),
    migration!(2, "0002_outbox"),
    migration!(3, "0003_outbox_claims"),
    migration!(4, "0004_meta"),
    migration!(5, "0005_unsigned_tokens"),
];

/// What [`migrate`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Migrated {
    /// Versions this call applied (empty: the schema was already current).
    pub applied: Vec<i64>,
    /// Versions recorded in the database that this binary does not know.
    pub unknown: Vec<i64>,
}

/// Hex SHA-256 of a migration's text, as recorded in `schema_migrations.checksum`.
pub fn checksum(sql: &str) -> String {
    crate::sign::hex(&Sha256::digest(sql.as_bytes()))
}

/// Brings the schema up to [`MIGRATIONS`], safely when several instances do it at once.
pub async fn migrate(client: &mut Client) -> Result<Migrated, StoreError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
    // No "already exists, skipping" notice in every start's log.
    tx.batch_execute("SET LOCAL client_min_messages = warning").await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version BIGINT PRIMARY KEY,
             name TEXT NOT NULL,
             checksum TEXT NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let recorded: Vec<(i64, String, String)> = tx
        .query("SELECT version, name, checksum FROM schema_migrations ORDER BY version", &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let mut migrated = Migrated::default();
    for (version, name, sum) in &recorded {
        match MIGRATIONS.iter().find(|m| m.version == *version) {
            Some(m) if checksum(m.sql) != *sum => {
                return Err(StoreError::new(format!(
                    "migration {name} was applied with other text than this binary's {}.sql: \
                     applied migrations must not be edited (add a new file)",
                    m.name
                )));
            }
            Some(_) => {}
            None => migrated.unknown.push(*version),
        }
    }
    for m in MIGRATIONS {
        if recorded.iter().any(|(v, _, _)| *v == m.version) {
            continue;
        }
        tx.batch_execute(m.sql).await.map_err(|e| StoreError::new(format!("migration {}: {}", m.name, super::describe(&e))))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &checksum(m.sql)],
        )
        .await?;
        migrated.applied.push(m.version);
    }
    tx.commit().await?;
    Ok(migrated)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SHA-256 of every migration as shipped: a database that applied a file refuses to start
    /// with any other text of it, so a shipped file never changes (and a new one is pinned here).
    const SHIPPED: &[(&str, &str)] = &[
        ("0001_callbacks", "c430448d770d0f5076fd2c07b91303a8927dd010c3372c134ab141ae58a4cb4f"),
        ("0002_outbox", "9796db65e71b235db8dd42822b29b3fe1a892417a7cd5d5c17f88606b32ff983"),
        ("0003_outbox_claims", "69df0c6e34e71083435775bf13071394d6188f42c9ad6208fdf59ffedb81d1fd"),
        ("0004_meta", "e50e474af6ba958f8767333ed9ece650d423cb19a7c7d8c469d59725eff38070"),
        ("0005_unsigned_tokens", "7a5df3351d78f97ad2872ca180756616f8c4648ee97232c3cb85aecde527797e"),
    ];

    #[test]
    fn shipped_migrations_are_never_edited() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            let Some(&(name, sum)) = SHIPPED.get(i) else {
                panic!("{}.sql is not pinned: add (\"{}\", \"{}\") to SHIPPED", m.name, m.name, checksum(m.sql));
            };
            assert_eq!(m.name, name, "SHIPPED lists the migrations in order");
            assert_eq!(
                checksum(m.sql),
                sum,
                "{name}.sql differs from the shipped text, which databases have applied and check at every start: \
                 restore it (git log -p -- proxy/migrations/postgres/{name}.sql) and change the schema or its notes \
                 in a new migration instead"
            );
        }
        assert_eq!(SHIPPED.len(), MIGRATIONS.len(), "every pinned migration is still shipped");
    }

    #[test]
    fn the_list_matches_the_directory_in_order() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<String> = MIGRATIONS.iter().map(|m| format!("{}.sql", m.name)).collect();
        assert_eq!(files, listed, "every file in {dir} is listed in MIGRATIONS, in order");
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "versions are 1, 2, … without gaps");
            assert!(m.name.starts_with(&format!("{:04}_", m.version)), "{} starts with its version", m.name);
        }
    }
}
