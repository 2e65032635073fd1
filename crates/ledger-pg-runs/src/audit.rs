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
    /// read-only.
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

async fn audit_snapshot(conn: &mut sqlx::PgConnection) -> anyhow::Result<AuditReport> {
    let (has_ref, has_seed): (bool, bool) = sqlx::query_as(
        "SELECT to_regclass('public.ledger_config') IS NOT NULL, to_regclass('public.timmy_config') IS NOT NULL",
    )
    .fetch_one(&mut *conn)
    .await?;
    if !has_ref && !has_seed {
        anyhow::bail!("no ledger tables in this database (neither ledger_config nor timmy_config)");
    }
    let mut report = AuditReport { schemas: Vec::new(), findings: Vec::new(), notes: Vec::new() };
    // Both sets of tables exist in every migrated database; audit those that hold data.
    let ref_used = has_ref
        && sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM ledger_config)").fetch_one(&mut *conn).await?;
    let seed_used = has_seed
        && sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM timmy_config) OR EXISTS (SELECT 1 FROM nostr_identities) \
             OR EXISTS (SELECT 1 FROM free_tier_grants)",
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
    // The ledger's tables are found in `public` alone (pg_catalog is searched first, as always):
    // not in a schema named after the role, which a default search path would look in first.
    let opts = opts.options([
        ("default_transaction_read_only", "on".to_owned()),
        ("statement_timeout", AUDIT_TIMEOUT.as_millis().to_string()),
        ("search_path", "public".to_owned()),
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
