//! The linearizability checker on histories recorded from a real PostgreSQL: the `not_reserved`
//! answer of the old `ledger_record` (a record arriving while its own free decide commits) is
//! caught, and today's `ledger_record` gives an answer some serial order gives. Needs
//! PostgreSQL, and fails (never skips) when a throwaway cluster cannot start.
//!
//! The race is made to happen every time, not now and then: the decide runs in a transaction
//! held open, the record is sent from another connection, and the decide commits only once the
//! record's backend is seen (in `pg_stat_activity`) inside the widened window of the old
//! function (`fixtures/pg-mutants/ledger_record_two_snapshots.sql`, a `pg_sleep` between its
//! two reads), or once today's record has answered.

use std::time::Duration;

use ledger_core::{Command, Config, Ledger, Refusal, RequestId, Sats, Tier, TimeMs};
use ledger_harness::linear::{self, Op, Verdict};
use ledger_harness::{Call, Reply};
use ledger_pg::reference;
use ledger_pg::testpg::{TestPg, TimeLimit};
use sqlx::Connection;

/// No test here may wait on the server longer than this.
const TIME_LIMIT: Duration = Duration::from_secs(120);

/// The old `ledger_record`, whose two reads see two snapshots, with the window widened.
const OLD_RECORD: &str = include_str!("../../../../fixtures/pg-mutants/ledger_record_two_snapshots.sql");

fn sats(v: u64) -> Sats {
    Sats::new(v).unwrap()
}

/// Whether some backend of this database sleeps in `pg_sleep`: the old record, between its reads.
async fn record_in_its_window(db: &sqlx::PgPool) -> bool {
    sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'PgSleep'",
    )
    .fetch_one(db)
    .await
    .expect("pg_stat_activity")
        > 0
}

/// A decide held open while its record arrives, on the old `ledger_record` or today's: the
/// history (on one clock: sent and answered) and the state it starts from.
async fn record_races_its_decide(old_sql: bool) -> (Ledger, Vec<Op>) {
    let pg = TestPg::new().expect("a throwaway PostgreSQL must start for this test");
    let db = pg.pool().await.expect("connect");
    ledger_pg::migrate(&db).await.expect("migrate");
    let config = Config::default();
    reference::genesis(&db, &config, TimeMs(0)).await.expect("genesis");
    let user = ledger_harness::user_pubkey(1);
    let set = Command::SetTier { pubkey: user, tier: Tier::Elite };
    reference::apply(&db, &set, TimeMs(0)).await.expect("set_tier");
    let mut initial = Ledger::new(config);
    initial.apply(&set, TimeMs(0), &mut Vec::new()).expect("set_tier");
    if old_sql {
        sqlx::raw_sql(OLD_RECORD).execute(&db).await.expect("install the old ledger_record");
    }
    let now = TimeMs(1_000);
    let decide = Call::Decide { request_id: RequestId(1), pubkey: user, estimated_sats: sats(10) };
    let record =
        Call::Record { request_id: RequestId(1), pubkey: user, actual_sats: sats(10), reserved_sats: sats(10) };
    let mut clock = 0u64;
    let mut tick = || {
        clock += 1;
        clock
    };
    let mut conn = db.acquire().await.expect("a connection for the decide");
    let mut tx = conn.begin().await.expect("begin");
    let decide_sent = tick();
    let decided = reference::apply_once(&mut *tx, &decide.to_command(), now).await.expect("decide");
    let record_sent = tick();
    let (db2, command) = (db.clone(), record.to_command());
    let mut recording = tokio::spawn(async move { reference::apply(&db2, &command, now).await });
    // Commit the decide inside the old record's window, or after today's record answered.
    let mut early_answer = None;
    for _ in 0..200 {
        if old_sql && record_in_its_window(&db).await {
            break;
        }
        if let Ok(answered) = tokio::time::timeout(Duration::from_millis(50), &mut recording).await {
            early_answer = Some((answered, tick()));
            break;
        }
    }
    assert!(old_sql != early_answer.is_some(), "the record must wait in the old function's window, and only there");
    tx.commit().await.expect("commit the decide");
    let decide_answered = tick();
    let (recorded, record_answered) = match early_answer {
        Some(a) => a,
        None => (recording.await, tick()),
    };
    let recorded = recorded.expect("the record's task").expect("record");
    let history = vec![
        Op {
            flow: 1,
            call: decide,
            now,
            reply: Reply::from(decided.result),
            invoked: decide_sent,
            completed: decide_answered,
        },
        Op {
            flow: 1,
            call: record,
            now,
            reply: Reply::from(recorded.result),
            invoked: record_sent,
            completed: record_answered,
        },
    ];
    (initial, history)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime")
}

#[test]
fn the_old_record_answering_not_reserved_during_its_decide_is_not_linearizable() {
    let _limit = TimeLimit::new(concat!(module_path!(), "::the_old_record_answering_not_reserved"), TIME_LIMIT);
    let (initial, history) = runtime().block_on(record_races_its_decide(true));
    assert_eq!(history[1].reply, Reply::Refused(Refusal::NotReserved), "{history:?}");
    let verdict = linear::check(&initial, &history, linear::DEFAULT_BUDGET).expect("a well-formed history");
    let Verdict::NotLinearizable(witness) = verdict else {
        panic!("the checker must catch the not_reserved answer: {verdict:?}")
    };
    assert_eq!(witness.stuck, 1);
    assert_eq!(witness.ops, vec![0, 1]);
    let text = linear::describe(&history, &witness);
    assert!(text.contains("not_reserved") && text.contains("recorded"), "{text}");
    eprintln!("caught: {text}");
}

#[test]
fn todays_record_during_its_decide_answers_as_some_serial_order_does() {
    let _limit = TimeLimit::new(concat!(module_path!(), "::todays_record_during_its_decide"), TIME_LIMIT);
    let (initial, history) = runtime().block_on(record_races_its_decide(false));
    assert_eq!(history[1].reply, Reply::Refused(Refusal::UnknownRequest), "{history:?}");
    let verdict = linear::check(&initial, &history, linear::DEFAULT_BUDGET).expect("a well-formed history");
    assert!(matches!(verdict, Verdict::Linearizable { .. }), "{verdict:?}");
}
