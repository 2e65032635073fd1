//! `TestPg::on_server`: a fresh database on a server the user gave (`DATABASE_URL`,
//! `--database-url`), made and dropped there, with clear errors for a URL that cannot do it;
//! and what the private clusters' durabilities promise across a crash.

use ledger_pg::testpg::{Durability, TestPg};

/// Whether the database `name` exists on the server of `pg`.
fn exists(pg: &TestPg, name: &str) -> bool {
    let (opts, name) = (pg.connect_options(), name.to_owned());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        rt.block_on(async move {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect_with(&opts).await.expect("a connection");
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
                .bind(&name)
                .fetch_one(&mut conn)
                .await
                .expect("the count");
            conn.close().await.expect("close");
            n == 1
        })
    })
    .join()
    .expect("the query thread")
}

#[test]
fn a_fresh_database_on_a_given_server_is_made_and_dropped_there() {
    let server = TestPg::new().expect("a throwaway PostgreSQL must start");
    let db = TestPg::on_server("--database-url", server.url(), "ledger_confirm").expect("a fresh database");
    let name = db.database_name().to_owned();
    assert!(name.starts_with("ledger_confirm_"), "{name}");
    assert!(db.url().ends_with(&format!("/{name}")), "{}", db.url());
    assert!(exists(&server, &name), "{name} is made on the given server");
    db.drop_database().expect("the database is dropped");
    assert!(!exists(&server, &name), "{name} is gone");

    // Dropped with its TestPg as well.
    let db = TestPg::on_server("--database-url", server.url(), "ledger_confirm").expect("a fresh database");
    let name = db.database_name().to_owned();
    drop(db);
    assert!(!exists(&server, &name), "{name} is gone");
}

#[test]
fn a_url_that_cannot_reach_a_fresh_database_is_refused_saying_why() {
    let server = TestPg::new().expect("a throwaway PostgreSQL must start");
    // The database named in the query wins over the path: a fresh one would never be reached.
    let url = format!("{}?dbname=postgres", server.url().replace("postgres@", "postgres:hunter2pw@"));
    let e = TestPg::on_server("--database-url", &url, "ledger_confirm").unwrap_err().to_string();
    assert!(e.starts_with("--database-url ") && e.contains("names its database in its query"), "{e}");
    assert!(!e.contains("hunter2pw"), "the password is never shown: {e}");

    let e = TestPg::on_server("DATABASE_URL", "gar:bage//x", "ledger_test").unwrap_err().to_string();
    assert!(e.starts_with("DATABASE_URL ") && e.contains("not a PostgreSQL URL"), "{e}");
}

/// Runs `statements` on a connection to `pg`'s database, one transaction each (each one
/// acknowledged before the next is sent), and then `SELECT count(*) FROM acked` if it exists.
fn exec(pg: &TestPg, statements: Vec<String>) -> Option<i64> {
    let opts = pg.connect_options();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        rt.block_on(async move {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect_with(&opts).await.expect("a connection");
            for sql in &statements {
                sqlx::query(sql).execute(&mut conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
            let n = sqlx::query_scalar("SELECT count(*) FROM acked").fetch_one(&mut conn).await.ok();
            let _ = conn.close().await;
            n
        })
    })
    .join()
    .expect("the query thread")
}

/// An empty table `acked`, on disk (a checkpoint).
fn create_acked(pg: &TestPg) {
    exec(pg, vec!["CREATE TABLE acked (n int)".into(), "CHECKPOINT".into()]);
}

/// 100 single-row commits into `acked`, each acknowledged; the rows then seen.
fn insert_100(pg: &TestPg) -> Option<i64> {
    exec(pg, (0..100).map(|n| format!("INSERT INTO acked VALUES ({n})")).collect())
}

fn rows(pg: &TestPg) -> Option<i64> {
    exec(pg, Vec::new())
}

/// The crash tests' two servers, shown on 100 acknowledged commits: a durable one keeps them
/// all through a SIGKILL of its postmaster; one that loses acknowledged commits, with its WAL
/// writer stalled, loses every one of them, every time (not only when the crash falls between
/// the WAL writer's rounds). A stall is refused on any other server, and a restart (not a
/// crash) of a stalled server lets its writers go on and loses nothing.
#[test]
fn a_crash_loses_acknowledged_commits_only_where_the_settings_allow_and_then_all_of_them() {
    // Three servers started, two crashed and one restarted: a few seconds each, never a hang.
    let _limit = ledger_pg::testpg::TimeLimit::new(
        concat!(
            module_path!(),
            "::a_crash_loses_acknowledged_commits_only_where_the_settings_allow_and_then_all_of_them"
        ),
        std::time::Duration::from_secs(300),
    );
    let durable = TestPg::new_private_cluster_with(Durability::Durable).expect("a throwaway PostgreSQL must start");
    let e = durable.stall_wal_writer().unwrap_err().to_string();
    assert!(e.contains("LosesAcknowledged") && e.contains("Durable"), "{e}");
    create_acked(&durable);
    assert_eq!(insert_100(&durable), Some(100));
    durable.kill_server().expect("SIGKILL to the postmaster");
    durable.start_server().expect("crash recovery");
    assert_eq!(rows(&durable), Some(100), "a durable server keeps what it acknowledged");
    drop(durable);

    let loose =
        TestPg::new_private_cluster_with(Durability::LosesAcknowledged).expect("a throwaway PostgreSQL must start");
    create_acked(&loose);
    loose.stall_wal_writer().expect("the WAL writer and the background writer stop");
    assert_eq!(insert_100(&loose), Some(100), "acknowledged and visible before the crash");
    loose.kill_server().expect("SIGKILL to the postmaster and the stalled writers");
    loose.start_server().expect("crash recovery");
    assert_eq!(rows(&loose), Some(0), "every commit acknowledged after the stall is lost");

    loose.stall_wal_writer().expect("stalled again, on the restarted server");
    assert_eq!(insert_100(&loose), Some(100));
    loose.restart_server().expect("a restart lets the stalled writers go on");
    assert_eq!(rows(&loose), Some(100), "a clean shutdown writes what was acknowledged");

    let shared = TestPg::new().expect("a throwaway PostgreSQL must start");
    let e = shared.stall_wal_writer().unwrap_err().to_string();
    assert!(e.contains("LosesAcknowledged") || e.contains("DATABASE_URL"), "{e}");
}
