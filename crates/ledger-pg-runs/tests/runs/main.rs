//! The runs on PostgreSQL, end to end, one module each, in one test binary (one build and link
//! against sqlx for all, and one shared throwaway cluster for the tests that can share it): the
//! engines' runs, their counterexamples and confirmations, the named SQL mutants, and
//! linearizability. Each needs PostgreSQL and fails (never skips) when a cluster cannot start.
//!
//! One module: `cargo test --release -p ledger-pg-runs --test runs pg_mutants::`.

mod database_url;
mod linearizability;
mod pg;
mod pg_confirm_url;
mod pg_mutants;

/// Runs `sql` (one or more statements) on the database `opts` names, on a connection of its
/// own on a thread of its own (so that a caller inside a runtime may use it too).
fn run_sql(opts: sqlx::postgres::PgConnectOptions, sql: &str) {
    let sql = sql.to_owned();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        rt.block_on(async move {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect_with(&opts).await.expect("a connection");
            sqlx::raw_sql(&sql).execute(&mut conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
            conn.close().await.expect("close");
        })
    })
    .join()
    .expect("the SQL thread");
}
