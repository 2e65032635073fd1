//! The audits on data a buggy or hostile client corrupted behind the schema's back: a NULL
//! where a number must be, a request recorded twice with the books kept consistent, totals
//! beyond bigint, and the database's own functions replaced to hide a violation. Each must be
//! a finding that names what is wrong, never "no invariant broke" and never an error.

use ledger_core::{Command, Config, RequestId, Sats, Tier, TimeMs};
use ledger_pg::reference::{self, AuditFinding};
use ledger_pg::seed;
use ledger_pg::testpg::TestPg;
use sqlx::PgPool;

/// No test here may wait on the server longer than this.
const TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(420);

/// A migrated database at genesis where user 1 had request 1 decided (free, 100 sats) and
/// recorded (80 sats absorbed, 20 returned).
async fn recorded_once() -> (TestPg, PgPool) {
    let pg = TestPg::new().expect("a throwaway PostgreSQL must start for these tests");
    let pool = pg.pool().await.expect("connect");
    ledger_pg::migrate(&pool).await.expect("migrate");
    reference::genesis(&pool, &Config::default(), TimeMs(0)).await.expect("genesis");
    let pubkey = ledger_harness::user_pubkey(1);
    let sats = |v| Sats::new(v).unwrap();
    for (command, now) in [
        (Command::SetTier { pubkey, tier: Tier::Elite }, 1),
        (Command::Decide { request_id: RequestId(1), pubkey, estimated_sats: sats(100) }, 2),
        (Command::Record { request_id: RequestId(1), actual_sats: sats(80) }, 3),
    ] {
        reference::apply(&pool, &command, TimeMs(now)).await.expect("command runs");
    }
    assert_eq!(reference::audit(&pool).await.unwrap(), Vec::new());
    (pg, pool)
}

/// Runs `sql` as a hostile client would, every user trigger of the tables it names off.
async fn behind_the_back(pool: &PgPool, sql: &str) {
    let off = "ALTER TABLE ledger_config DISABLE TRIGGER USER; ALTER TABLE pool_stripes DISABLE TRIGGER USER; \
               ALTER TABLE pool_journal DISABLE TRIGGER USER; ALTER TABLE grants DISABLE TRIGGER USER; ";
    sqlx::raw_sql(&format!("{off}{sql}")).execute(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

fn has(findings: &[AuditFinding], invariant: &str, detail: &str) -> bool {
    findings.iter().any(|f| f.invariant == invariant && f.detail == detail)
}

#[tokio::test]
async fn a_null_where_a_number_must_be_is_a_finding_naming_table_column_and_row() {
    let _limit = ledger_pg::testpg::TimeLimit::new(
        concat!(module_path!(), "::a_null_where_a_number_must_be_is_a_finding_naming_table_column_and_row"),
        TIME_LIMIT,
    );
    let (_pg, pool) = recorded_once().await;
    behind_the_back(
        &pool,
        "ALTER TABLE ledger_config ALTER pool_initial_sats DROP NOT NULL; \
         UPDATE ledger_config SET pool_initial_sats = NULL;",
    )
    .await;
    let findings = reference::audit(&pool).await.unwrap();
    assert!(
        has(&findings, "I2", "ledger_config.pool_initial_sats is NULL in row 1, where a value must be"),
        "{findings:?}"
    );
    assert!(
        has(&findings, "I2", "initial + credits = NULL, pool + reserved + absorbed = 10000"),
        "the conservation check says it cannot add up: {findings:?}"
    );

    // Every stripe's balance NULL: before, every comparison with NULL was "not different".
    behind_the_back(
        &pool,
        "UPDATE ledger_config SET pool_initial_sats = 10000; \
         ALTER TABLE pool_stripes ALTER balance_sats DROP NOT NULL; UPDATE pool_stripes SET balance_sats = NULL;",
    )
    .await;
    let findings = reference::audit(&pool).await.unwrap();
    assert!(
        has(&findings, "I1", "pool_stripes.balance_sats is NULL in stripe 0, where a value must be"),
        "{findings:?}"
    );
    assert!(
        has(&findings, "I1", "pool_stripes.balance_sats is NULL in stripe 15, where a value must be"),
        "{findings:?}"
    );
    assert!(has(&findings, "I2", "journal sums to 9920, pool holds NULL"), "{findings:?}");
    let stripes = findings.iter().filter(|f| f.invariant == "I2" && f.detail.ends_with(", stripe holds NULL")).count();
    assert_eq!(stripes, ledger_pg::batch::N_STRIPES, "{findings:?}");
}

#[tokio::test]
async fn a_request_recorded_twice_is_found_even_when_the_books_agree() {
    let _limit = ledger_pg::testpg::TimeLimit::new(
        concat!(module_path!(), "::a_request_recorded_twice_is_found_even_when_the_books_agree"),
        TIME_LIMIT,
    );
    let (_pg, pool) = recorded_once().await;
    // The grants' primary key dropped and the grant written again, absorbing nothing more, with
    // the pool's count of grants kept in step: every total agrees.
    behind_the_back(
        &pool,
        "ALTER TABLE grants DROP CONSTRAINT grants_pkey; \
         INSERT INTO grants (request_id, pubkey, actual_sats, absorbed_sats, returned_sats, overrun_sats, at_ms) \
             SELECT request_id, pubkey, actual_sats, 0, returned_sats, overrun_sats, at_ms FROM grants; \
         UPDATE pool_stripes SET n_grants = n_grants + 1 WHERE stripe = 1;",
    )
    .await;
    let findings = reference::audit(&pool).await.unwrap();
    assert_eq!(
        findings,
        [AuditFinding { invariant: "I5".into(), detail: "request 1 recorded 2 times, absorbing 80 sats".into() }]
    );
}

#[tokio::test]
async fn totals_beyond_bigint_are_numbers_in_a_finding_not_an_error() {
    let _limit = ledger_pg::testpg::TimeLimit::new(
        concat!(module_path!(), "::totals_beyond_bigint_are_numbers_in_a_finding_not_an_error"),
        TIME_LIMIT,
    );
    let (_pg, pool) = recorded_once().await;
    // 2^62 sats more on each of two stripes, journal and all: the pool's balance is past
    // bigint. Before, the audit failed with "bigint out of range", naming nothing.
    behind_the_back(
        &pool,
        "INSERT INTO pool_journal (kind, amount_sats, at_ms, stripe) VALUES \
             ('credit', 4611686018427387904, 9, 2), ('credit', 4611686018427387904, 9, 3); \
         UPDATE pool_stripes SET balance_sats = balance_sats + 4611686018427387904 WHERE stripe IN (2, 3);",
    )
    .await;
    let findings = reference::audit(&pool).await.expect("the audit reports, it does not fail");
    assert_eq!(
        findings,
        [AuditFinding {
            invariant: "I2".into(),
            detail: "initial + credits = 10000, pool + reserved + absorbed = 9223372036854785808".into()
        }]
    );
}

#[tokio::test]
async fn the_audit_runs_no_function_of_the_audited_database() {
    let _limit = ledger_pg::testpg::TimeLimit::new(
        concat!(module_path!(), "::the_audit_runs_no_function_of_the_audited_database"),
        TIME_LIMIT,
    );
    let (_pg, pool) = recorded_once().await;
    // Sats put on stripe 3 behind the journal's back, and the audit functions the schema
    // used to install, and the pool view, made to say all is well.
    behind_the_back(
        &pool,
        "UPDATE pool_stripes SET balance_sats = balance_sats + 7 WHERE stripe = 3; \
         CREATE OR REPLACE FUNCTION ledger_audit() RETURNS TABLE (invariant text, detail text) \
             LANGUAGE sql AS $$ SELECT NULL::text, NULL::text WHERE false $$; \
         CREATE OR REPLACE FUNCTION ledger_audit_stripes() RETURNS TABLE (invariant text, detail text) \
             LANGUAGE sql AS $$ SELECT NULL::text, NULL::text WHERE false $$; \
         CREATE OR REPLACE FUNCTION ledger_audit_links() RETURNS TABLE (invariant text, detail text) \
             LANGUAGE sql AS $$ SELECT NULL::text, NULL::text WHERE false $$; \
         CREATE OR REPLACE VIEW pool AS SELECT 1::smallint AS id, 9920::bigint AS balance_sats, \
             0::bigint AS reserved_sats, 80::bigint AS absorbed_sats, 0::bigint AS credited_sats, \
             0::bigint AS overrun_sats, 1::bigint AS n_grants;",
    )
    .await;
    let findings = reference::audit(&pool).await.unwrap();
    assert!(has(&findings, "I2", "journal sums to 9920, pool holds 9927"), "{findings:?}");
    assert!(findings.iter().any(|f| f.detail.starts_with("stripe 3: journal sums to ")), "{findings:?}");
}

#[tokio::test]
async fn the_seed_audit_reports_nulls_instead_of_failing() {
    let _limit = ledger_pg::testpg::TimeLimit::new(
        concat!(module_path!(), "::the_seed_audit_reports_nulls_instead_of_failing"),
        TIME_LIMIT,
    );
    let pg = TestPg::new().expect("a throwaway PostgreSQL must start for these tests");
    let pool = pg.pool().await.expect("connect");
    ledger_pg::migrate(&pool).await.expect("migrate");
    sqlx::raw_sql(&format!(
        "ALTER TABLE timmy_config ALTER value DROP NOT NULL; \
         INSERT INTO timmy_config (key, value) VALUES ('{}', NULL); \
         ALTER TABLE free_tier_grants ALTER sats_absorbed DROP NOT NULL, ALTER request_hash DROP NOT NULL; \
         INSERT INTO free_tier_grants (id, pubkey, request_hash, sats_absorbed, pool_balance_after) VALUES \
             ('g1', 'aa', 'r1', NULL, 0), ('g2', 'aa', 'r1', 5, 0), ('g3', 'aa', NULL, 1, 0);",
        seed::POOL_KEY
    ))
    .execute(&pool)
    .await
    .unwrap();
    let mut conn = pg.connect().await.unwrap();
    let findings: Vec<(&str, String)> = seed::audit(&mut conn)
        .await
        .expect("the audit reports, it does not fail")
        .into_iter()
        .map(|f| (f.invariant, f.detail))
        .collect();
    let expected = [
        ("I1", "timmy_config.value is NULL in row generosity_pool_sats, where a value must be"),
        ("I5", "free_tier_grants.request_hash is NULL in grant g3, where a value must be"),
        ("I5", "free_tier_grants.sats_absorbed is NULL in grant g1, where a value must be"),
        ("I5", "request r1 recorded 2 times, absorbing NULL sats"),
    ];
    assert_eq!(findings, expected.map(|(i, d)| (i, d.to_owned())));
}
