//! The migrations, built from the files under `sql/`.
//!
//! There are two: the seed's tables (`sql/seed_tables.sql`), and the reference schema
//! (`sql/reference_schema.sql`) followed by every function of `sql/functions/`, one file per
//! function (a trigger function's file also creates its triggers), in the order of the list in
//! `reference_schema!` below. `sqlx::migrate!` embeds a directory of whole migrations and
//! cannot assemble one from several files, so the migrations are made here with
//! `include_str!` and `concat!`: the text is fixed at compile time, and so is its checksum.
//!
//! The order respects what PostgreSQL checks when a function is created: the tables and types
//! come first (SQL-language bodies and argument types must resolve), a function before the
//! SQL-language functions that call it, and each trigger after its function. PL/pgSQL bodies
//! are resolved when they first run, so among those the order is for the reader: guards,
//! helpers, commands, the batch. The audit is not installed: it is a query the binary runs
//! (`sql/audit_reference.sql`), so that no function of the audited database can answer for it.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType};

/// Every table and view the migrations create in the `public` schema (`_sqlx_migrations` is
/// sqlx's record of them): what a run may drop from a database it was given. Checked against
/// a migrated server by `tests/postgres/schema.rs`.
pub const RELATIONS: &[&str] = &[
    "_sqlx_migrations",
    "free_tier_grants",
    "grants",
    "identities",
    "ledger_config",
    "nostr_identities",
    "pool",
    "pool_journal",
    "pool_stripes",
    "processed_payments",
    "refused_reservations",
    "requests",
    "reservations",
    "timmy_config",
];

/// The tables and views of the `public` schema that are not in [`RELATIONS`], sorted: what a
/// database holds that ledger-pg did not create.
pub async fn foreign_relations(conn: &mut sqlx::PgConnection) -> Result<Vec<String>, sqlx::Error> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm', 'f', 'p') ORDER BY 1",
    )
    .fetch_all(conn)
    .await?;
    Ok(names.into_iter().filter(|n| !RELATIONS.contains(&n.as_str())).collect())
}

/// Defines [`FUNCTIONS`] and [`REFERENCE_SCHEMA`] from one list of function names, so that
/// the two cannot disagree.
macro_rules! reference_schema {
    ($($name:literal),* $(,)?) => {
        /// The functions of the reference schema, in the order they are installed.
        #[cfg(test)]
        const FUNCTIONS: &[&str] = &[$($name),*];

        /// Each function of the reference schema and its file's text, as installed.
        const FUNCTION_SOURCES: &[(&str, &str)] =
            &[$(($name, include_str!(concat!("../sql/functions/", $name, ".sql")))),*];

        /// The reference schema's migration: its tables, then every function.
        const REFERENCE_SCHEMA: &str = concat!(
            include_str!("../sql/reference_schema.sql"),
            $("\n", include_str!(concat!("../sql/functions/", $name, ".sql")),)*
        );
    };
}

reference_schema!(
    // Guards: trigger functions and their triggers.
    "pool_journal_append_only",
    "pool_journal_move",
    "pool_journal_apply",
    "pool_guard",
    "pool_view_guard",
    "reservation_guard",
    "grant_guard",
    "requests_append_only",
    "identities_kept",
    // Helpers.
    "ledger_n_stripes",
    "ledger_ok",
    "ledger_refuse",
    "ledger_budget",
    "ledger_daily_remaining",
    "ledger_before_lock_all",
    "ledger_pool_lock_all",
    "ledger_pool_at_least",
    "ledger_pool_debit",
    // Commands.
    "ledger_genesis",
    "ledger_set_tier",
    "ledger_decide_locked",
    "ledger_decide",
    "ledger_reserve_partial",
    "ledger_release",
    "ledger_record",
    "ledger_credit",
    "ledger_expire",
    // Batches.
    "ledger_batch_lock_identities",
    "ledger_apply_batch",
);

/// The text of the reference schema's function `name` (its file in `sql/functions/`, a
/// `CREATE FUNCTION` and its comments), as the migration installs it; `None` for a name the
/// schema does not have. What a mutant of one function starts from.
pub fn function_source(name: &str) -> Option<&'static str> {
    FUNCTION_SOURCES.iter().find(|(n, _)| *n == name).map(|(_, sql)| *sql)
}

/// The seed's tables, as the TypeScript service uses them.
const SEED_TABLES: &str = include_str!("../sql/seed_tables.sql");

/// Every migration, in version order.
fn migrations() -> Vec<Migration> {
    let migration = |version, description: &'static str, sql: &'static str| {
        Migration::new(version, Cow::Borrowed(description), MigrationType::Simple, Cow::Borrowed(sql), false)
    };
    vec![migration(1, "seed tables", SEED_TABLES), migration(2, "reference schema", REFERENCE_SCHEMA)]
}

/// The embedded migrations as a source for [`sqlx::migrate::Migrator::new`].
#[derive(Debug)]
pub(crate) struct Embedded;

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(self) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 's>> {
        Box::pin(async { Ok(migrations()) })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::{migrations, FUNCTIONS, REFERENCE_SCHEMA};

    fn function_files() -> BTreeSet<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/functions");
        std::fs::read_dir(&dir)
            .expect("sql/functions")
            .map(|e| e.expect("a directory entry").file_name().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn every_function_file_is_installed_once() {
        let listed: BTreeSet<String> = FUNCTIONS.iter().map(|f| format!("{f}.sql")).collect();
        assert_eq!(listed.len(), FUNCTIONS.len(), "a function is listed twice");
        assert_eq!(listed, function_files(), "sql/functions and the list in src/schema.rs differ");
    }

    #[test]
    fn each_function_file_creates_the_function_it_is_named_for() {
        for name in FUNCTIONS {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("sql/functions/{name}.sql"));
            let sql = std::fs::read_to_string(&path).expect("a function file");
            let creates: Vec<&str> = sql.lines().filter(|l| l.starts_with("CREATE FUNCTION ")).collect();
            assert_eq!(creates.len(), 1, "{name}.sql creates {} functions", creates.len());
            assert!(creates[0].starts_with(&format!("CREATE FUNCTION {name}(")), "{name}.sql creates {}", creates[0]);
            assert!(!sql.contains("CREATE OR REPLACE"), "{name}.sql replaces something: the schema is created once");
        }
    }

    #[test]
    fn the_reference_schema_is_migration_two_after_the_seed_tables() {
        let migrations = migrations();
        let versions: Vec<(i64, &str)> = migrations.iter().map(|m| (m.version, &*m.description)).collect();
        assert_eq!(versions, [(1, "seed tables"), (2, "reference schema")]);
        assert!(REFERENCE_SCHEMA.starts_with(include_str!("../sql/reference_schema.sql")));
    }
}
