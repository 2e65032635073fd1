//! `ledger-sim audit`: the read-only I1/I2/I5 check of a live database.

use std::time::Duration;

use ledger_pg::reference;
use serde::Serialize;
use sqlx::postgres::PgConnectOptions;
use sqlx::Connection;

use crate::server::{block_on, redacted};

/// How long connecting to the database may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the whole audit may take once connected: the server cancels each statement after
/// as long (`statement_timeout`), and a server that stops answering is given up on then.
const AUDIT_TIMEOUT: Duration = Duration::from_secs(120);

/// `ledger-sim audit`.
#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    /// The database to check (default: `DATABASE_URL`). Nothing is written: the session is
    /// read-only, and reads only ordinary tables of built-in types, with `pg_catalog` alone on
    /// its search path. Give it a role that may only read, not a superuser.
    #[arg(long)]
    database_url: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// One violation found by `audit`.
#[derive(Debug, Serialize)]
struct AuditFinding {
    schema: &'static str,
    invariant: String,
    detail: String,
}

#[derive(Debug, Serialize)]
struct AuditReport {
    /// The schemas found in use: `reference`, `seed`.
    schemas: Vec<&'static str>,
    findings: Vec<AuditFinding>,
    notes: Vec<String>,
}

/// The audit of the database at `opts` (shown as `shown`), every wait bounded: connecting by
/// [`CONNECT_TIMEOUT`], the rest by [`AUDIT_TIMEOUT`]. Each wait is announced on stderr first.
async fn audit_bounded(opts: PgConnectOptions, shown: String) -> anyhow::Result<AuditReport> {
    ledger_exec::say!("ledger-sim: connecting to {shown} (waiting at most {} s)", CONNECT_TIMEOUT.as_secs());
    let conn = match tokio::time::timeout(CONNECT_TIMEOUT, sqlx::PgConnection::connect_with(&opts)).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => anyhow::bail!("connecting to {shown}: {e}"),
        Err(_) => anyhow::bail!("connecting to {shown}: no answer within {} s", CONNECT_TIMEOUT.as_secs()),
    };
    ledger_exec::say!("ledger-sim: auditing {shown} (waiting at most {} s)", AUDIT_TIMEOUT.as_secs());
    match tokio::time::timeout(AUDIT_TIMEOUT, audit_db(conn)).await {
        Ok(Ok(report)) => Ok(report),
        Ok(Err(e)) => Err(e.context(format!("auditing {shown}"))),
        Err(_) => anyhow::bail!("auditing {shown}: no answer within {} s", AUDIT_TIMEOUT.as_secs()),
    }
}

async fn audit_db(mut conn: sqlx::PgConnection) -> anyhow::Result<AuditReport> {
    // Not while a ledger-sim run holds the database: it drops and makes the ledger's tables
    // again before each seed, so the audit would judge half-made books, or find no tables.
    // Shared: audits do not keep each other out, and a run that starts meanwhile is refused.
    let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock_shared($1)")
        .bind(crate::server::RUN_LOCK_KEY)
        .fetch_one(&mut conn)
        .await?;
    if !taken {
        let holders = crate::server::lock_holders(&mut conn).await;
        let holders = if holders.is_empty() { String::new() } else { format!(" ({holders})") };
        anyhow::bail!(
            "a ledger-sim run is using this database{holders}: it resets the ledger's tables before each seed, so \
             an audit now would judge half-made books; audit it once the run has ended"
        );
    }
    // One snapshot for every check: a live database's books are consistent in each snapshot,
    // not across several.
    sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").execute(&mut conn).await?;
    let report = audit_snapshot(&mut conn).await?;
    sqlx::query("COMMIT").execute(&mut conn).await?;
    conn.close().await?;
    Ok(report)
}

/// The tables of `public` the audit reads of the reference schema.
const REFERENCE_TABLES: &[&str] = &[
    "ledger_config",
    "pool_stripes",
    "pool_journal",
    "reservations",
    "identities",
    "processed_payments",
    "grants",
    "requests",
];

/// The tables of `public` the audit reads of the seed's schema.
const SEED_TABLES: &[&str] = &["timmy_config", "nostr_identities", "free_tier_grants"];

/// Why each of `tables` (of `public`) is not safe for the audit to read, one line each: reading
/// a relation must run no code of the audited database's as the auditor. So each must be an
/// ordinary table (a view runs its query, functions and all; a foreign table its wrapper; a
/// partitioned table or a child table of another kind may be either) of the heap access method,
/// with no child tables (a read of a table reads its children too), whose every column is of a
/// built-in type (`pg_catalog`'s, or a domain over one: a domain's checks run when a value is
/// stored, never when it is read), and which no row-level security policy applies to for the
/// auditing role (its policies' expressions would run as the auditor; a superuser, a role with
/// BYPASSRLS and the table's owner without FORCE are subject to none). A table that is missing
/// is named too. Every name is looked up in `pg_catalog`'s tables alone.
async fn unsafe_to_read(conn: &mut sqlx::PgConnection, tables: &[&str]) -> anyhow::Result<Vec<String>> {
    /// A table's name, whether it is missing, its kind, its access method, whether policies
    /// apply to the auditor, its children and its columns of other types.
    type Row = (String, bool, Option<String>, Option<String>, Option<bool>, Option<String>, Option<String>);
    let names: Vec<String> = tables.iter().map(|t| (*t).to_owned()).collect();
    let rows: Vec<Row> = sqlx::query_as(
        "WITH wanted (name, ord) AS (SELECT * FROM pg_catalog.unnest($1::pg_catalog.text[]) WITH ORDINALITY) \
         SELECT w.name, c.oid IS NULL, c.relkind::pg_catalog.text, am.amname::pg_catalog.text, \
             c.relrowsecurity AND NOT (r.rolsuper OR r.rolbypassrls \
                 OR (NOT c.relforcerowsecurity AND pg_catalog.pg_has_role(c.relowner, 'USAGE'))), \
             (SELECT pg_catalog.string_agg(i.inhrelid::pg_catalog.regclass::pg_catalog.text, ', ' \
                     ORDER BY i.inhrelid::pg_catalog.regclass::pg_catalog.text) \
                 FROM pg_catalog.pg_inherits i WHERE i.inhparent = c.oid), \
             (SELECT pg_catalog.string_agg(pg_catalog.format('%I (%s)', a.attname, \
                         pg_catalog.format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY a.attnum) \
                 FROM pg_catalog.pg_attribute a \
                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
                   AND NOT EXISTS ( \
                       WITH RECURSIVE chain (oid, ns, kind, base) AS ( \
                           SELECT t.oid, t.typnamespace, t.typtype, t.typbasetype FROM pg_catalog.pg_type t \
                           WHERE t.oid = a.atttypid \
                           UNION ALL \
                           SELECT t.oid, t.typnamespace, t.typtype, t.typbasetype \
                           FROM pg_catalog.pg_type t JOIN chain ON t.oid = chain.base AND chain.kind = 'd') \
                       SELECT 1 FROM chain WHERE chain.kind <> 'd' \
                         AND chain.ns = 'pg_catalog'::pg_catalog.regnamespace)) \
         FROM wanted w \
         CROSS JOIN (SELECT rolsuper, rolbypassrls FROM pg_catalog.pg_roles WHERE rolname = current_user) r \
         LEFT JOIN pg_catalog.pg_class c \
             ON c.relname = w.name AND c.relnamespace = 'public'::pg_catalog.regnamespace \
         LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam \
         ORDER BY w.ord",
    )
    .bind(&names)
    .fetch_all(&mut *conn)
    .await?;
    let mut why = Vec::new();
    for (name, missing, kind, am, policed, children, columns) in rows {
        let kind = kind.unwrap_or_default();
        let kind_name = match kind.as_str() {
            "r" => "table",
            "v" => "view",
            "m" => "materialized view",
            "f" => "foreign table",
            "p" => "partitioned table",
            "S" => "sequence",
            "c" => "composite type",
            "i" | "I" => "index",
            "t" => "TOAST table",
            _ => "relation",
        };
        let object = format!("{kind_name} public.{name}");
        if missing {
            why.push(format!("table public.{name} does not exist"));
            continue;
        }
        if kind != "r" {
            why.push(format!(
                "{object} is not an ordinary table: reading it would run what defines it (a view's query and the \
                 functions it calls, a foreign table's wrapper)"
            ));
            continue;
        }
        if let Some(am) = am.filter(|am| am != "heap") {
            why.push(format!("{object} is stored by the table access method {am}, not heap"));
        }
        if let Some(children) = children {
            why.push(format!("{object} has child tables ({children}), which a read of it reads too"));
        }
        if let Some(columns) = columns {
            why.push(format!("{object} has columns of types that are not built in: {columns}"));
        }
        if policed == Some(true) {
            why.push(format!(
                "{object} has row-level security whose policies apply to the auditing role: they would run as the \
                 auditor"
            ));
        }
    }
    Ok(why)
}

async fn audit_snapshot(conn: &mut sqlx::PgConnection) -> anyhow::Result<AuditReport> {
    let (has_ref, has_seed): (bool, bool) = sqlx::query_as(
        "SELECT pg_catalog.to_regclass('public.ledger_config') IS NOT NULL, \
         pg_catalog.to_regclass('public.timmy_config') IS NOT NULL",
    )
    .fetch_one(&mut *conn)
    .await?;
    if !has_ref && !has_seed {
        anyhow::bail!("no ledger tables in this database (neither ledger_config nor timmy_config)");
    }
    // Before anything is read: only what runs no code of the audited database's.
    let mut read = Vec::new();
    if has_ref {
        read.extend_from_slice(REFERENCE_TABLES);
    }
    if has_seed {
        read.extend_from_slice(SEED_TABLES);
    }
    let why = unsafe_to_read(&mut *conn, &read).await?;
    if !why.is_empty() {
        anyhow::bail!(
            "refused: the audit reads only ordinary tables of built-in types that no row-level security policy \
             applies to, so that nothing of the audited database runs as the auditor; {}",
            why.join("; ")
        );
    }
    let mut report = AuditReport { schemas: Vec::new(), findings: Vec::new(), notes: Vec::new() };
    // Both sets of tables exist in every migrated database; audit those that hold data.
    let ref_used = has_ref
        && sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM public.ledger_config)")
            .fetch_one(&mut *conn)
            .await?;
    let seed_used = has_seed
        && sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM public.timmy_config) OR EXISTS (SELECT 1 FROM public.nostr_identities) \
             OR EXISTS (SELECT 1 FROM public.free_tier_grants)",
        )
        .fetch_one(&mut *conn)
        .await?;
    if ref_used {
        report.schemas.push("reference");
        for f in reference::audit(&mut *conn).await? {
            report.findings.push(AuditFinding { schema: "reference", invariant: f.invariant, detail: f.detail });
        }
    }
    if seed_used {
        report.schemas.push("seed");
        for f in ledger_pg::seed::audit(conn).await? {
            report.findings.push(AuditFinding { schema: "seed", invariant: f.invariant.to_owned(), detail: f.detail });
        }
        report.notes.push(
            "seed schema: I2 cannot be checked, the seed keeps no journal of credits and debits (the simulator checks it from its history)"
                .to_owned(),
        );
    }
    if !ref_used && !seed_used {
        report.notes.push("the ledger tables are empty: nothing to check".to_owned());
    }
    Ok(report)
}

/// `ledger-sim audit --database-url URL`: `Ok(true)` when no invariant is broken.
pub fn audit_cmd(args: &AuditArgs) -> anyhow::Result<bool> {
    let (named, url) = match &args.database_url {
        Some(url) => ("--database-url", url.clone()),
        None => ledger_pg::testpg::database_url_env()?
            .map(|url| ("DATABASE_URL", url))
            .ok_or_else(|| anyhow::anyhow!("audit needs --database-url URL (or DATABASE_URL)"))?,
    };
    let shown = redacted(&url);
    let opts = ledger_pg::database_url_options(named, &url).map_err(anyhow::Error::msg)?;
    // Nothing of the audited database is seen but the tables it reads, each named with its schema
    // (`public`): the search path is `pg_catalog` alone, so that no function, operator or cast
    // a user made (an operator on ledger-pg's domain `sats` matches better than the built-in one)
    // is chosen for one the audit writes. A row-level security policy that would still apply
    // makes a read fail rather than run it (`unsafe_to_read` refuses such a table first).
    let opts = opts.options([
        ("default_transaction_read_only", "on".to_owned()),
        ("statement_timeout", AUDIT_TIMEOUT.as_millis().to_string()),
        ("search_path", "pg_catalog".to_owned()),
        ("row_security", "off".to_owned()),
    ]);
    let opts = opts.application_name(&format!("ledger-sim audit (pid {})", std::process::id()));
    let report = block_on(audit_bounded(opts, shown))??;
    let mut out = std::io::stdout().lock();
    use std::io::Write;
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "ledger-sim audit: schemas in use: {}",
            if report.schemas.is_empty() { "none".to_owned() } else { report.schemas.join(", ") }
        )?;
        for f in &report.findings {
            writeln!(out, "VIOLATION {} ({} schema): {}", f.invariant, f.schema, f.detail)?;
        }
        for n in &report.notes {
            writeln!(out, "note: {n}")?;
        }
        if report.findings.is_empty() {
            writeln!(out, "no invariant broke")?;
        }
    }
    Ok(report.findings.is_empty())
}
