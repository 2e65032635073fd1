//! `TestPg::on_server`: a fresh database on a server the user gave (`DATABASE_URL`,
//! `--database-url`), made and dropped there, with clear errors for a URL that cannot do it.

use ledger_pg::testpg::TestPg;

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
