//! The lockstep engines on a server that misbehaves: one that holds a lock forever, one that
//! is killed between two calls and comes back. Every wait ends, and what went wrong outside a
//! reply is said ([`PgReferenceEngine::take_trouble`]), so that a lockstep run never judges the
//! engine on a stale read or on a server that lost what it acknowledged. Needs PostgreSQL and
//! fails (never skips) when a throwaway cluster cannot start.

use ledger_core::{Movement, RequestId, Sats, Tier, TimeMs};
use ledger_harness::{Call, Engine, Reply};
use ledger_pg::engine::PgReferenceEngine;
use ledger_pg::reference::CONNECTION_LOST;
use ledger_pg::testpg::{TestPg, TimeLimit};
use sqlx::Connection;

/// No test here may wait on the server longer than this.
const TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(420);

fn step(db: &mut PgReferenceEngine, call: &Call, now_ms: u64) -> Option<Reply> {
    let mut op = db.begin(call);
    db.step(&mut op, TimeMs(now_ms), &mut Vec::<Movement>::new())
}

fn set_tier(user: u64) -> Call {
    Call::SetTier { pubkey: ledger_harness::user_pubkey(user), tier: Tier::Elite }
}

/// A statement that waits on a lock nobody releases fails (the server cancels it after
/// `STATEMENT_TIMEOUT`), and the failure marks the connection lost: before, the step waited
/// forever and the run with it.
#[test]
fn a_step_blocked_forever_fails_in_bounded_time() {
    let _limit = TimeLimit::new(concat!(module_path!(), "::a_step_blocked_forever_fails_in_bounded_time"), TIME_LIMIT);
    let pg = TestPg::new().expect("a throwaway PostgreSQL must start for this test");
    let config = ledger_core::Config::default();
    let mut db = PgReferenceEngine::connect(pg.connect_options(), config).expect("engine");
    assert!(matches!(step(&mut db, &set_tier(1), 1), Some(Reply::Ok(_))));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let mut holder = rt.block_on(pg.connect()).expect("a second connection");
    let tx = rt.block_on(async {
        let mut tx = holder.begin().await?;
        sqlx::query("LOCK TABLE identities IN ACCESS EXCLUSIVE MODE").execute(&mut *tx).await?;
        Ok::<_, sqlx::Error>(tx)
    });
    let tx = tx.expect("the lock");
    let decide = Call::Decide {
        request_id: RequestId(1),
        pubkey: ledger_harness::user_pubkey(1),
        estimated_sats: Sats::new(10).expect("sats"),
    };
    match step(&mut db, &decide, 2) {
        Some(Reply::Failed { error }) => assert!(error.starts_with(CONNECTION_LOST), "{error}"),
        other => panic!("a step behind a lock held forever answered {other:?}"),
    }
    rt.block_on(tx.rollback()).expect("releasing the lock");
}

/// A server killed between two calls: the read that fails says so, and the server that comes
/// back (a fast one, which may have lost acknowledged commits) is seen to have restarted, even
/// though the pool reconnects and the next call succeeds. A restart the caller makes itself
/// (`expect_restart`) is not trouble.
#[test]
fn a_failed_read_and_a_restarted_server_are_told() {
    let _limit = TimeLimit::new(concat!(module_path!(), "::a_failed_read_and_a_restarted_server_are_told"), TIME_LIMIT);
    let pg = TestPg::new_private_cluster().expect("a throwaway PostgreSQL must start for this test");
    let mut db = PgReferenceEngine::connect(pg.connect_options(), ledger_core::Config::default()).expect("engine");
    assert!(matches!(step(&mut db, &set_tier(1), 1), Some(Reply::Ok(_))));
    let before = db.observe();
    assert_eq!(db.take_trouble(), None);

    pg.kill_server().expect("SIGKILL to the postmaster");
    // The read fails; the engine answers with the last state it saw, and says so.
    assert_eq!(db.observe(), before);
    let trouble = db.take_trouble().expect("a failed read is trouble");
    assert!(trouble.contains("reading the state failed"), "{trouble}");

    pg.start_server().expect("crash recovery");
    assert!(matches!(step(&mut db, &set_tier(2), 2), Some(Reply::Ok(_))), "the pool reconnects");
    let trouble = db.take_trouble().expect("a restart under the engine is trouble");
    assert!(trouble.contains("restarted"), "{trouble}");
    assert_eq!(db.take_trouble(), None, "told once");

    db.expect_restart();
    pg.kill_server().expect("SIGKILL to the postmaster");
    pg.start_server().expect("crash recovery");
    assert!(matches!(step(&mut db, &set_tier(3), 3), Some(Reply::Ok(_))), "the pool reconnects");
    assert_eq!(db.take_trouble(), None, "an expected restart is not trouble");
}
