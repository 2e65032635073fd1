//! The reference schema on a real server: its constraints against a buggy client, real
//! concurrency, duplicate and retried commands, and a connection killed mid-command.

use std::time::Duration;

use ledger_core::{Command, Config, Decision, Outcome, PaymentId, Pubkey, Refusal, RequestId, Sats, Tier, TimeMs};
use ledger_pg::reference::{self, Applied};
use ledger_pg::testpg::TestPg;
use sqlx::PgPool;

/// No test here may wait on the server longer than this.
const TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(420);

fn sats(v: u64) -> Sats {
    Sats::new(v).unwrap()
}

async fn setup(config: Config) -> (TestPg, PgPool) {
    let pg = TestPg::new().expect("a throwaway PostgreSQL must start for these tests");
    let pool = pg.pool().await.expect("connect");
    ledger_pg::migrate(&pool).await.expect("migrate");
    reference::genesis(&pool, &config, TimeMs(0)).await.expect("genesis");
    (pg, pool)
}

async fn run(pool: &PgPool, command: Command, now_ms: u64) -> Applied {
    reference::apply(pool, &command, TimeMs(now_ms)).await.expect("command runs")
}

async fn assert_audit_clean(pool: &PgPool) {
    assert_eq!(reference::audit(pool).await.unwrap(), Vec::new());
}

fn user(i: u64) -> Pubkey {
    ledger_harness::user_pubkey(i)
}

#[tokio::test]
async fn constraints_hold_against_a_buggy_client() {
    let _limit = ledger_pg::testpg::TimeLimit::new(
        concat!(module_path!(), "::constraints_hold_against_a_buggy_client"),
        TIME_LIMIT,
    );
    let (_pg, pool) = setup(Config::default()).await;
    let pk = user(1);
    run(&pool, Command::SetTier { pubkey: pk, tier: Tier::Elite }, 1).await;
    let free = Command::Decide { request_id: RequestId(1), pubkey: pk, estimated_sats: sats(40) };
    run(&pool, free, 2).await;
    run(&pool, Command::Release { request_id: RequestId(1) }, 3).await;

    let refused = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            let err = sqlx::query(sql).execute(&pool).await.expect_err(sql);
            err.to_string()
        }
    };
    // I1 and I2: the pool moves only through the journal, which is append-only.
    assert!(refused("UPDATE pool SET balance_sats = 1").await.contains("only through pool_journal"));
    assert!(refused("DELETE FROM pool_journal").await.contains("append-only"));
    assert!(refused("INSERT INTO pool_journal (kind, amount_sats, at_ms) VALUES ('credit', -99999, 0)")
        .await
        .contains("check constraint"));
    assert!(refused("INSERT INTO pool_journal (kind, payment_id, amount_sats, at_ms) VALUES ('credit', 5, -99999, 0)")
        .await
        .contains("balance_sats"));
    // I5: a closed reservation stays closed, and only a recorded one can have a grant.
    assert!(refused("UPDATE reservations SET state = 'reserved', closed_at_ms = NULL")
        .await
        .contains("closed or immutable"));
    assert!(refused(
        "INSERT INTO grants VALUES (1, (SELECT pubkey FROM reservations WHERE request_id = 1), 40, 40, 0, 0, 5)"
    )
    .await
    .contains("closed or immutable"));
    // A reservation is recorded only by its grant.
    let open = Command::Decide { request_id: RequestId(2), pubkey: pk, estimated_sats: sats(10) };
    run(&pool, open, 4).await;
    assert!(refused("UPDATE reservations SET state = 'recorded', closed_at_ms = 5 WHERE request_id = 2")
        .await
        .contains("only by inserting its grant"));
    assert!(refused(
        "INSERT INTO grants VALUES (2, (SELECT pubkey FROM reservations WHERE request_id = 2), 40, 40, 0, 0, 5)"
    )
    .await
    .contains("does not match"));
    // Idempotency keys, and decisions that never change or go away.
    assert!(refused("INSERT INTO requests SELECT * FROM requests").await.contains("duplicate key"));
    assert!(refused("UPDATE requests SET offer_sats = 0, charge_sats = estimated_sats").await.contains("append-only"));
    assert!(refused("DELETE FROM requests").await.contains("append-only"));
    assert!(refused("DELETE FROM identities").await.contains("never deleted"));
    assert_audit_clean(&pool).await;
}

#[tokio::test]
async fn the_audit_reports_a_reservation_without_its_request_or_identity() {
    let _limit = ledger_pg::testpg::TimeLimit::new(
        concat!(module_path!(), "::the_audit_reports_a_reservation_without_its_request_or_identity"),
        TIME_LIMIT,
    );
    let (_pg, pool) = setup(Config::default()).await;
    assert_audit_clean(&pool).await;
    // A buggy client writes a reservation nothing decided (no journal row: the pool is intact).
    sqlx::query(
        "INSERT INTO reservations (request_id, pubkey, amount_sats, by_decide, deadline_ms, stripe) \
         VALUES (77, 'nobody', 5, true, 10, 13)",
    )
    .execute(&pool)
    .await
    .expect("reservations take no foreign key");
    let findings = reference::audit(&pool).await.unwrap();
    assert!(
        findings.iter().any(|f| f.invariant == "I2" && f.detail == "reservation 77 of nobody: no request"),
        "{findings:?}"
    );
}

#[tokio::test]
async fn repeats_answer_as_the_first_time_and_change_nothing() {
    let _limit = ledger_pg::testpg::TimeLimit::new(
        concat!(module_path!(), "::repeats_answer_as_the_first_time_and_change_nothing"),
        TIME_LIMIT,
    );
    let (_pg, pool) = setup(Config::default()).await;
    let pk = user(2);
    run(&pool, Command::SetTier { pubkey: pk, tier: Tier::Trusted }, 1).await;
    let decide = Command::Decide { request_id: RequestId(9), pubkey: pk, estimated_sats: sats(150) };
    let first = run(&pool, decide.clone(), 2).await;
    assert!(first.fresh);
    assert_eq!(first.result, Ok(Outcome::Decided { decision: Decision::Free { reserved_sats: sats(150) } }));
    // A lost acknowledgement: the caller retries, possibly much later.
    let again = run(&pool, decide, 5_000).await;
    assert_eq!((again.result, again.fresh), (first.result, false));
    assert!(again.movements.is_empty());

    let record = Command::Record { request_id: RequestId(9), actual_sats: sats(200) };
    let recorded = Ok(Outcome::Recorded { absorbed_sats: sats(150), returned_sats: sats(0), overrun_sats: sats(50) });
    assert_eq!(run(&pool, record.clone(), 6).await.result, recorded);
    assert_eq!(run(&pool, record, 7).await.result, recorded);
    let other = Command::Record { request_id: RequestId(9), actual_sats: sats(10) };
    assert_eq!(run(&pool, other, 8).await.result, Err(Refusal::RecordedWithDifferentAmount { actual_sats: sats(200) }));
    let credit = Command::Credit { payment_id: PaymentId(3), paid_sats: sats(1_999) };
    let credited = Ok(Outcome::Credited { credited_sats: sats(199) });
    assert_eq!(run(&pool, credit.clone(), 9).await.result, credited);
    assert_eq!(run(&pool, credit, 10).await.result, credited);
    let t = reference::totals(&pool).await.unwrap();
    assert_eq!((t.balance_sats, t.absorbed_sats, t.n_grants), (10_000 - 150 + 199, 150, 1));
    assert_audit_clean(&pool).await;
}

/// Many clients at once, with every command delivered twice concurrently: nothing is debited
/// twice, the pool never goes negative, and the books balance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_and_duplicates_keep_the_books() {
    let _limit = ledger_pg::testpg::TimeLimit::new(
        concat!(module_path!(), "::concurrent_clients_and_duplicates_keep_the_books"),
        TIME_LIMIT,
    );
    let config = Config { pool_initial_sats: sats(3_000), ..Config::default() };
    let (_pg, pool) = setup(config).await;
    let n_users = 12u64;
    for u in 0..n_users {
        run(&pool, Command::SetTier { pubkey: user(u), tier: Tier::Elite }, 1).await;
    }
    let mut tasks = Vec::new();
    for client_idx in 0..24u64 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut debited = 0i64;
            for i in 0..25u64 {
                // Two clients share each request id: a duplicate delivery racing the original.
                let request_id = RequestId((client_idx / 2) * 1_000 + i);
                let pubkey = user(request_id.0 % n_users);
                let now = 10 + i;
                let d =
                    run(&pool, Command::Decide { request_id, pubkey, estimated_sats: sats(1 + (i * 37) % 120) }, now)
                        .await;
                if let (true, Ok(Outcome::Decided { decision: Decision::Free { reserved_sats } })) =
                    (d.fresh, &d.result)
                {
                    debited += reserved_sats.to_u64() as i64;
                }
                let next = if i % 3 == 0 {
                    Command::Release { request_id }
                } else {
                    Command::Record { request_id, actual_sats: sats(i % 50) }
                };
                reference::apply(&pool, &next, TimeMs(now + 1)).await.expect("runs");
                if i % 5 == 0 {
                    let credit = Command::Credit { payment_id: PaymentId(request_id.0), paid_sats: sats(500) };
                    reference::apply(&pool, &credit, TimeMs(now + 2)).await.expect("runs");
                }
            }
            debited
        }));
    }
    let mut fresh_debits = 0;
    for t in tasks {
        fresh_debits += t.await.unwrap();
    }
    assert_audit_clean(&pool).await;
    let journal_debits: i64 =
        sqlx::query_scalar("SELECT coalesce(-sum(amount_sats), 0)::bigint FROM pool_journal WHERE kind = 'debit'")
            .fetch_one(&pool)
            .await
            .unwrap();
    // Each debit was answered `fresh` to exactly one of the two racing deliveries.
    assert_eq!(fresh_debits, journal_debits);
    let t = reference::totals(&pool).await.unwrap();
    assert_eq!(t.reserved_sats, 0);
    assert!(t.balance_sats >= 0);
}

/// A connection killed while its command waits on the pool lock: nothing of the command
/// remains, and the retry applies it exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connection_mid_command_loses_nothing_and_counts_nothing_twice() {
    let _limit = ledger_pg::testpg::TimeLimit::new(
        concat!(module_path!(), "::killed_connection_mid_command_loses_nothing_and_counts_nothing_twice"),
        TIME_LIMIT,
    );
    let (pg, pool) = setup(Config::default()).await;
    let pk = user(3);
    run(&pool, Command::SetTier { pubkey: pk, tier: Tier::Elite }, 1).await;

    // Hold every pool stripe so that the victim blocks inside ledger_decide, after its first
    // writes.
    let mut holder = pg.connect().await.unwrap();
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("SELECT * FROM pool_stripes FOR UPDATE").execute(&mut holder).await.unwrap();

    let mut victim = pg.connect().await.unwrap();
    let victim_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut victim).await.unwrap();
    let decide = Command::Decide { request_id: RequestId(77), pubkey: pk, estimated_sats: sats(300) };
    let cmd = decide.clone();
    let blocked = tokio::spawn(async move { reference::apply_once(&mut victim, &cmd, TimeMs(2)).await });
    // Wait until the victim is waiting on the lock, then kill it.
    loop {
        let waiting: bool =
            sqlx::query_scalar("SELECT coalesce(wait_event_type = 'Lock', false) FROM pg_stat_activity WHERE pid = $1")
                .bind(victim_pid)
                .fetch_one(&pool)
                .await
                .unwrap();
        if waiting {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let killed: bool =
        sqlx::query_scalar("SELECT pg_terminate_backend($1)").bind(victim_pid).fetch_one(&pool).await.unwrap();
    assert!(killed);
    assert!(blocked.await.unwrap().is_err(), "the killed command must fail");
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();

    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM requests WHERE request_id = 77").fetch_one(&pool).await.unwrap();
    assert_eq!(n, 0, "nothing of the killed command remains");
    assert_audit_clean(&pool).await;

    // The caller saw an error and retries: applied once.
    let retried = run(&pool, decide.clone(), 3).await;
    assert!(retried.fresh);
    assert!(!run(&pool, decide, 4).await.fresh);
    let t = reference::totals(&pool).await.unwrap();
    assert_eq!((t.balance_sats, t.reserved_sats), (10_000 - 300, 300));
    assert_audit_clean(&pool).await;
}

#[tokio::test]
async fn genesis_is_fixed_until_the_database_is_reset() {
    let _limit = ledger_pg::testpg::TimeLimit::new(
        concat!(module_path!(), "::genesis_is_fixed_until_the_database_is_reset"),
        TIME_LIMIT,
    );
    let (_pg, pool) = setup(Config::default()).await;
    // The same genesis again is a no-op; another one is refused.
    reference::genesis(&pool, &Config::default(), TimeMs(5)).await.unwrap();
    let other = Config { pool_initial_sats: sats(1), ..Config::default() };
    let err = reference::genesis(&pool, &other, TimeMs(5)).await.unwrap_err();
    assert!(err.to_string().contains("different genesis"), "{err}");
    ledger_pg::reset_database(&pool).await.unwrap();
    ledger_pg::migrate(&pool).await.unwrap();
    reference::genesis(&pool, &other, TimeMs(5)).await.unwrap();
    assert_eq!(reference::totals(&pool).await.unwrap().balance_sats, 1);
    assert_audit_clean(&pool).await;
}
