//! The conformance vectors of `fixtures/conformance/` against `pg-reference`: every command
//! through `ledger_pg::reference::apply` on a real server, then again through a
//! `ledger_pg::batch::Batcher` (each command in a batch of its own, on two lanes: the batch
//! function must answer as the command's own function does), each case from genesis on a fresh
//! schema, its outcome, totals and identity standing compared with the vector.
//!
//! Needs PostgreSQL (a private throwaway cluster, or `DATABASE_URL`); without it the test
//! fails, it never skips.

use std::path::{Path, PathBuf};

use ledger_core::{Pubkey, Sats, Tier, TimeMs};
use ledger_harness::conformance::{self, named_pubkey, Balances, Expect, Segment, Standing};
use ledger_pg::batch::{Batcher, BatcherOptions};
use ledger_pg::reference;
use ledger_pg::testpg::TestPg;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};

/// No test here may wait on the server longer than this.
const TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(420);

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/conformance")
}

fn sats(v: i64) -> Sats {
    Sats::new(u64::try_from(v).expect("BIGINT >= 0")).expect("fits Sats")
}

async fn balances(pool: &PgPool) -> Balances {
    let r = sqlx::query(
        "SELECT balance_sats, reserved_sats, absorbed_sats, credited_sats, overrun_sats, n_grants FROM pool WHERE id = 1",
    )
    .fetch_one(pool)
    .await
    .expect("pool row");
    Balances {
        pool_sats: sats(r.get(0)),
        reserved_sats: sats(r.get(1)),
        absorbed_sats: sats(r.get(2)),
        credited_sats: sats(r.get(3)),
        overrun_sats: sats(r.get(4)),
        n_grants: u64::try_from(r.get::<i64, _>(5)).expect("n_grants >= 0"),
    }
}

async fn standing(pool: &PgPool, pubkey: Pubkey) -> Option<Standing> {
    let r = sqlx::query(
        "SELECT tier, sats_absorbed_today, absorbed_reset_at_ms, reserved_sats FROM identities WHERE pubkey = $1",
    )
    .bind(pubkey.to_string())
    .fetch_optional(pool)
    .await
    .expect("identity query")?;
    Some(Standing {
        tier: r.get::<String, _>(0).parse::<Tier>().expect("a tier"),
        sats_absorbed_today: sats(r.get(1)),
        absorbed_reset_at_ms: TimeMs(u64::try_from(r.get::<i64, _>(2)).expect("time >= 0")),
        reserved_sats: sats(r.get(3)),
    })
}

/// Runs one case from genesis on `pool` (a fresh copy of the migrated template); the
/// differences found.
async fn run_case(pool: &PgPool, batched: bool, file: &str, seg: &Segment) -> Vec<String> {
    reference::genesis(pool, &seg.header.config, TimeMs(0)).await.expect("genesis");
    let batcher = batched.then(|| Batcher::new(pool.clone(), BatcherOptions::default()).expect("batcher"));
    let mut failures = Vec::new();
    for (line, step) in &seg.steps {
        let at = format!("{file}:{line} ({})", seg.header.case);
        let applied = match &batcher {
            Some(b) => b.apply(&step.command, step.now).await,
            None => reference::apply(pool, &step.command, step.now).await,
        };
        let got = match applied {
            Ok(applied) => Expect::from(applied.result),
            Err(e) => {
                failures.push(format!("{at}: {} failed: {e}", step.command.name()));
                // The rest of the case depends on this step.
                return failures;
            }
        };
        if got != step.expect {
            failures.push(format!("{at}: expected {:?}, pg-reference gave {got:?}", step.expect));
        }
        let totals = balances(pool).await;
        if totals != step.totals {
            failures.push(format!("{at}: expected totals {:?}, pg-reference has {totals:?}", step.totals));
        }
        if let Some(pubkey) = named_pubkey(&step.command) {
            let identity = standing(pool, pubkey).await;
            if identity != step.identity {
                failures.push(format!("{at}: expected identity {:?}, pg-reference has {identity:?}", step.identity));
            }
        }
    }
    let audit = reference::audit(pool).await.expect("audit");
    failures.extend(
        audit.into_iter().map(|f| format!("{file} ({}): audit {}: {}", seg.header.case, f.invariant, f.detail)),
    );
    failures
}

/// How many cases run at once, each on its own database.
const N_WORKERS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_vector_holds_for_pg_reference() {
    let _limit =
        ledger_pg::testpg::TimeLimit::new(concat!(module_path!(), "::every_vector_holds_for_pg_reference"), TIME_LIMIT);
    every_vector_holds(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_vector_holds_for_pg_reference_in_batches() {
    let _limit = ledger_pg::testpg::TimeLimit::new(
        concat!(module_path!(), "::every_vector_holds_for_pg_reference_in_batches"),
        TIME_LIMIT,
    );
    every_vector_holds(true).await;
}

async fn every_vector_holds(batched: bool) {
    let pg = TestPg::new().expect("a throwaway PostgreSQL must start for the conformance test");
    // The fresh database, migrated once, is the template of one database per case: copying
    // it is much cheaper than migrating 300 times.
    {
        let pool = pg.pool().await.expect("connect");
        ledger_pg::migrate(&pool).await.expect("migrate");
        pool.close().await;
    }
    let template = pg.database_name().to_owned();
    let admin_options = pg.connect_options().database("postgres");
    let mut cases = Vec::new();
    for (name, segs) in conformance::read_dir(&dir()).unwrap_or_else(|e| panic!("{e}")) {
        cases.extend(segs.into_iter().map(|seg| (name.clone(), seg)));
    }
    let n_cases = cases.len();
    assert!(n_cases >= 300, "only {n_cases} cases");
    let cases = std::sync::Arc::new(cases);
    let mut workers = Vec::new();
    for w in 0..N_WORKERS {
        let (cases, template, admin_options) = (cases.clone(), template.clone(), admin_options.clone());
        workers.push(tokio::spawn(async move {
            let admin =
                PgPoolOptions::new().max_connections(1).connect_with(admin_options.clone()).await.expect("admin");
            let mut failures = Vec::new();
            for (i, (file, seg)) in cases.iter().enumerate().skip(w).step_by(N_WORKERS) {
                let db = format!("{template}_c{i}_{}", u8::from(batched));
                sqlx::query(&format!("CREATE DATABASE {db} TEMPLATE {template}")).execute(&admin).await.expect("copy");
                let pool = PgPoolOptions::new()
                    .max_connections(4)
                    .connect_with(admin_options.clone().database(&db))
                    .await
                    .expect("connect");
                failures.extend(run_case(&pool, batched, file, seg).await);
                pool.close().await;
                sqlx::query(&format!("DROP DATABASE {db} WITH (FORCE)")).execute(&admin).await.expect("drop");
            }
            failures
        }));
    }
    let mut failures = Vec::new();
    for w in workers {
        failures.extend(w.await.expect("worker"));
    }
    assert!(failures.is_empty(), "{} differences from the vectors:\n{}", failures.len(), failures.join("\n"));
}
