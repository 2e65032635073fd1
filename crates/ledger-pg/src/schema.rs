//! The migrations, built from the files under `sql/`.
//!
//! There are two: the seed's tables (`sql/seed_tables.sql`), and the reference schema
//! (`sql/reference_schema.sql`) followed by every function of `sql/functions/`, one file per
//! function (a trigger function's file also creates its triggers), in the order of the list in
//! `reference_schema!` below. Each ends by recording the objects it made in
//! `ledger_pg_objects` (made by the first), which is how a run given a database tells
//! ledger-pg's objects from a user's ([`foreign_objects`]). `sqlx::migrate!` embeds a directory of whole migrations and
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

/// The objects of `public`, and the objects anywhere that depend on them, as a `WITH RECURSIVE
/// under_public (classid, objid, objsubid)` clause for the statement that follows it.
const UNDER_PUBLIC: &str = include_str!("../sql/under_public.sql");

/// The table that records what the migrations made (the first migration makes it).
const OBJECTS_TABLE: &str = include_str!("../sql/ledger_pg_objects.sql");

/// The end of every migration: the objects it made, recorded (after [`UNDER_PUBLIC`]).
const OBJECTS_RECORD: &str = include_str!("../sql/ledger_pg_objects_record.sql");

/// What a database given to a run holds that ledger-pg did not make ([`foreign_objects`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Foreign {
    /// Each object of `public` that is not in ledger-pg's record, and each object elsewhere
    /// that depends on one of `public`, described as PostgreSQL describes it (`table
    /// customers`, `function f()`, `view other.v`), sorted. An object's own parts (a table's
    /// indexes, its row type) are not listed beside it.
    pub objects: Vec<String>,
    /// True when the database holds no record of ledger-pg's (`ledger_pg_objects`) but looks
    /// like a database an earlier ledger-pg migrated (its `_sqlx_migrations` lists ledger-pg's
    /// migrations): its tables are likely ledger-pg's, and cannot be told from a user's.
    pub unrecorded_ledger_pg: bool,
}

/// What the database holds that ledger-pg did not make: every object of `public` (a table, a
/// view, a sequence, a function, a type, an extension, ...) that ledger-pg's migrations did not
/// record as theirs (`ledger_pg_objects`, by catalog identity, not by name), and everything
/// elsewhere that depends on `public` (a view reading one of its tables, a foreign key into
/// one): what dropping ledger-pg's objects would drop with them. A database where ledger-pg
/// never ran has no record, so everything there is foreign. Default privileges of the schema
/// are not objects to drop (the schema is kept with them).
pub async fn foreign_objects(conn: &mut sqlx::PgConnection) -> Result<Foreign, sqlx::Error> {
    let mut recorded: bool =
        sqlx::query_scalar("SELECT to_regclass('public.ledger_pg_objects') IS NOT NULL").fetch_one(&mut *conn).await?;
    if recorded {
        // The record is ledger-pg's when it records itself.
        recorded = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM public.ledger_pg_objects \
             WHERE classid = 'pg_class'::regclass AND objid = 'public.ledger_pg_objects'::regclass AND objsubid = 0)",
        )
        .fetch_one(&mut *conn)
        .await?;
    }
    let ours = if recorded {
        "EXISTS (SELECT 1 FROM public.ledger_pg_objects o \
         WHERE o.classid = u.classid AND o.objid = u.objid AND o.objsubid = u.objsubid)"
    } else {
        "false"
    };
    // What is named: not an object's parts (an internal or automatic dependency on another
    // foreign object: a table's index, row type, constraints), a view for its rewrite rule
    // (which is what depends on a table it reads), and a relation rather than its columns.
    let sql = format!(
        "{UNDER_PUBLIC}, \
         foreign_objects AS (SELECT DISTINCT u.classid, u.objid, u.objsubid FROM under_public u \
             WHERE u.classid <> 'pg_default_acl'::regclass AND NOT {ours}), \
         shown AS (SELECT DISTINCT \
                 CASE WHEN r.oid IS NULL THEN f.classid ELSE 'pg_class'::regclass END AS classid, \
                 coalesce(r.ev_class, f.objid) AS objid, \
                 CASE WHEN r.oid IS NULL THEN f.objsubid ELSE 0 END AS objsubid \
             FROM foreign_objects f \
             LEFT JOIN pg_rewrite r ON f.classid = 'pg_rewrite'::regclass AND r.oid = f.objid \
                 AND r.rulename = '_RETURN' \
             WHERE NOT EXISTS (SELECT 1 FROM pg_depend d JOIN foreign_objects p \
                 ON p.classid = d.refclassid AND p.objid = d.refobjid AND p.objsubid IN (0, d.refobjsubid) \
                 WHERE d.classid = f.classid AND d.objid = f.objid AND d.objsubid = f.objsubid \
                   AND d.deptype IN ('i', 'a') AND (p.classid, p.objid) <> (f.classid, f.objid))) \
         SELECT pg_describe_object(s.classid, s.objid, s.objsubid) FROM shown s \
         WHERE s.objsubid = 0 OR NOT EXISTS (SELECT 1 FROM shown w \
             WHERE (w.classid, w.objid, w.objsubid) = (s.classid, s.objid, 0)) \
         ORDER BY 1"
    );
    let mut objects: Vec<String> = sqlx::query_scalar(&sql).fetch_all(&mut *conn).await?;
    if recorded {
        // A column a user added to one of ledger-pg's tables (`ALTER TABLE requests ADD COLUMN
        // note text`) has no pg_depend row of its own when its type is built in, so the walk
        // above does not see it: its pg_attribute row was written by another transaction than
        // the one that made the table (ledger-pg's migrations never alter a table they made
        // earlier). A reset would drop its data with the table.
        let columns: Vec<String> = sqlx::query_scalar(
            "SELECT pg_describe_object('pg_class'::regclass, c.oid, a.attnum)              FROM public.ledger_pg_objects o              JOIN pg_class c ON c.oid = o.objid AND c.relkind IN ('r', 'p')              JOIN pg_depend t ON t.classid = 'pg_class'::regclass AND t.objid = c.oid AND t.objsubid = 0                  AND t.refclassid = 'pg_namespace'::regclass              JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped              WHERE o.classid = 'pg_class'::regclass AND o.objsubid = 0 AND a.xmin::text <> t.xmin::text              ORDER BY 1",
        )
        .fetch_all(&mut *conn)
        .await?;
        // A foreign column's default is a part of it, named with it.
        objects.retain(|o| !columns.iter().any(|c| o.strip_prefix("default value for ") == Some(c.as_str())));
        objects.extend(columns);
        objects.sort();
    }
    let mut unrecorded_ledger_pg = false;
    if !recorded && !objects.is_empty() {
        let has_migrations: bool = sqlx::query_scalar("SELECT to_regclass('public._sqlx_migrations') IS NOT NULL")
            .fetch_one(&mut *conn)
            .await?;
        if has_migrations {
            let migrated: Vec<(i64, String)> =
                sqlx::query_as("SELECT version, description::text FROM public._sqlx_migrations ORDER BY version")
                    .fetch_all(&mut *conn)
                    .await?;
            let ours: Vec<(i64, String)> =
                migrations().iter().map(|m| (m.version, m.description.to_string())).collect();
            unrecorded_ledger_pg = !migrated.is_empty() && migrated.iter().all(|row| ours.contains(row));
        }
    }
    Ok(Foreign { objects, unrecorded_ledger_pg })
}

/// Drops every object of `public` and, by `CASCADE`, everything elsewhere that depends on one,
/// in one server-side block: the schema itself is kept, with its owner, its privileges, its
/// default privileges and its comment (dropping and creating it again would make the
/// connecting role its owner and leave PUBLIC without `USAGE`). Run it in a transaction with
/// [`foreign_objects`] to drop only ledger-pg's objects.
pub async fn drop_public_objects(conn: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query(DROP_PUBLIC_OBJECTS).execute(conn).await?;
    Ok(())
}

/// [`drop_public_objects`]: each object that depends on the schema `public` itself, one at a
/// time (extensions first, which take their members with them), until none is left; each
/// drop may take others with it, so the next is looked up again.
const DROP_PUBLIC_OBJECTS: &str = include_str!("../sql/drop_public_objects.sql");

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

/// Every migration, in version order. Each ends by recording the objects it made
/// ([`foreign_objects`] tells them from a user's); the first makes the record's table first.
fn migrations() -> Vec<Migration> {
    let migration = |version, description: &'static str, parts: &[&str]| {
        let sql = parts.concat();
        Migration::new(version, Cow::Borrowed(description), MigrationType::Simple, Cow::Owned(sql), false)
    };
    vec![
        migration(1, "seed tables", &[OBJECTS_TABLE, SEED_TABLES, UNDER_PUBLIC, OBJECTS_RECORD]),
        migration(2, "reference schema", &[REFERENCE_SCHEMA, UNDER_PUBLIC, OBJECTS_RECORD]),
    ]
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
