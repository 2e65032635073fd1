//! The migrated schema on a real server, against what the Rust side assumes of it.

use ledger_core::{Config, TimeMs};
use ledger_pg::batch::N_STRIPES;
use ledger_pg::reference;
use ledger_pg::schema::Foreign;
use ledger_pg::testpg::TestPg;
use sqlx::PgPool;

/// No test here may wait on the server longer than this.
const TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(420);

async fn migrated() -> (TestPg, PgPool) {
    let pg = TestPg::new().expect("a throwaway PostgreSQL must start for these tests");
    let pool = pg.pool().await.expect("connect");
    ledger_pg::migrate(&pool).await.expect("migrate");
    (pg, pool)
}

/// The batcher's lanes own disjoint stripes only if `N_STRIPES` is the server's number of
/// stripes: `id % N_STRIPES` must be the home stripe the SQL computes.
#[tokio::test]
async fn n_stripes_is_ledger_n_stripes() {
    let _limit =
        ledger_pg::testpg::TimeLimit::new(concat!(module_path!(), "::n_stripes_is_ledger_n_stripes"), TIME_LIMIT);
    let (_pg, pool) = migrated().await;
    let n: i32 = sqlx::query_scalar("SELECT ledger_n_stripes()").fetch_one(&pool).await.unwrap();
    assert_eq!(usize::try_from(n).ok(), Some(N_STRIPES), "batch::N_STRIPES and ledger_n_stripes() differ");
    reference::genesis(&pool, &Config::default(), TimeMs(0)).await.expect("genesis");
    let stripes: Vec<i16> =
        sqlx::query_scalar("SELECT stripe FROM pool_stripes ORDER BY stripe").fetch_all(&pool).await.unwrap();
    let expected: Vec<i16> = (0..N_STRIPES).map(|s| i16::try_from(s).unwrap()).collect();
    assert_eq!(stripes, expected, "genesis makes stripes 0 .. N_STRIPES");
}

/// The migrations' checksums are those of the embedded text: running them again on a
/// migrated database finds both applied and changes nothing.
#[tokio::test]
async fn migrating_again_changes_nothing() {
    let _limit =
        ledger_pg::testpg::TimeLimit::new(concat!(module_path!(), "::migrating_again_changes_nothing"), TIME_LIMIT);
    let (_pg, pool) = migrated().await;
    ledger_pg::migrate(&pool).await.expect("a second run on a migrated database");
    let applied: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, description FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(applied, [(1, "seed tables".to_string()), (2, "reference schema".to_string())]);
}

/// The objects of `public` on a freshly migrated database, and what depends on them, are all
/// recorded as ledger-pg's: a run given a database resets its own schema without asking.
#[tokio::test]
async fn the_migrations_record_every_object_they_make() {
    let _limit = ledger_pg::testpg::TimeLimit::new(
        concat!(module_path!(), "::the_migrations_record_every_object_they_make"),
        TIME_LIMIT,
    );
    let (pg, pool) = migrated().await;
    let mut conn = pg.connect().await.unwrap();
    assert_eq!(ledger_pg::schema::foreign_objects(&mut conn).await.unwrap(), Foreign::default());
    let recorded: Vec<String> =
        sqlx::query_scalar("SELECT pg_describe_object(classid, objid, objsubid) FROM ledger_pg_objects ORDER BY 1")
            .fetch_all(&pool)
            .await
            .unwrap();
    for name in [
        "table _sqlx_migrations",
        "table ledger_pg_objects",
        "table requests",
        "table free_tier_grants",
        "view pool",
        "sequence pool_journal_seq_seq",
        "type sats",
        "type ledger_result",
        "function ledger_decide(bigint,text,bigint,bigint)",
        "trigger pool_journal_move on table pool_journal",
        "index reservations_outstanding_by_deadline",
    ] {
        assert!(recorded.iter().any(|r| r == name), "{name} is not recorded: {recorded:?}");
    }
    // Traffic and a genesis add rows, not objects.
    reference::genesis(&pool, &Config::default(), TimeMs(0)).await.expect("genesis");
    assert_eq!(ledger_pg::schema::foreign_objects(&mut conn).await.unwrap(), Foreign::default());
}

/// What a user made is foreign, whatever its kind and whatever its name: a table named as one
/// of ledger-pg's, a sequence, a function, a type, an index on one of ledger-pg's tables, a
/// view in another schema that reads one; before, only a table or view of a name not
/// ledger-pg's was.
#[tokio::test]
async fn whatever_a_user_made_in_public_or_on_it_is_foreign() {
    let _limit = ledger_pg::testpg::TimeLimit::new(
        concat!(module_path!(), "::whatever_a_user_made_in_public_or_on_it_is_foreign"),
        TIME_LIMIT,
    );
    // ledger-pg never ran here: a table named `requests` is the user's.
    let pg = TestPg::new().expect("a throwaway PostgreSQL must start for these tests");
    let mut conn = pg.connect().await.unwrap();
    sqlx::raw_sql("CREATE TABLE requests (note text); INSERT INTO requests VALUES ('mine');")
        .execute(&mut conn)
        .await
        .unwrap();
    let foreign = ledger_pg::schema::foreign_objects(&mut conn).await.unwrap();
    assert_eq!(foreign.objects, ["table requests"]);
    assert!(!foreign.unrecorded_ledger_pg);

    // On a migrated database: objects of every kind, and one of ledger-pg's tables replaced by
    // the user's own of the same name.
    let (pg, pool) = migrated().await;
    let mut conn = pg.connect().await.unwrap();
    sqlx::raw_sql(
        "CREATE SEQUENCE invoice_no; \
         CREATE FUNCTION my_total() RETURNS int LANGUAGE sql AS 'SELECT 1'; \
         CREATE TYPE mood AS ENUM ('ok'); \
         CREATE INDEX my_index ON grants (pubkey); \
         CREATE SCHEMA reports; CREATE VIEW reports.big_grants AS SELECT * FROM grants; \
         CREATE TABLE reports.owing (request_id bigint REFERENCES requests (request_id)); \
         DROP TABLE identities CASCADE; CREATE TABLE identities (email text); \
         INSERT INTO identities VALUES ('a@example.com');",
    )
    .execute(&pool)
    .await
    .unwrap();
    let foreign = ledger_pg::schema::foreign_objects(&mut conn).await.unwrap();
    assert_eq!(
        foreign.objects,
        [
            "constraint owing_request_id_fkey on table reports.owing",
            "function my_total()",
            "index my_index",
            "sequence invoice_no",
            "table identities",
            "type mood",
            "view reports.big_grants",
        ]
    );
}

/// A column a user added to one of ledger-pg's tables, and filled, is foreign: a reset would
/// drop its data with the table (it was not seen: a built-in type gives a column no pg_depend
/// row). ledger-pg's own columns are not, after a run has written rows.
#[tokio::test]
async fn a_column_a_user_added_to_a_ledger_pg_table_is_foreign() {
    let _limit = ledger_pg::testpg::TimeLimit::new(
        concat!(module_path!(), "::a_column_a_user_added_to_a_ledger_pg_table_is_foreign"),
        TIME_LIMIT,
    );
    let (pg, pool) = migrated().await;
    reference::genesis(&pool, &Config::default(), TimeMs(0)).await.unwrap();
    let mut conn = pg.connect().await.unwrap();
    sqlx::raw_sql("VACUUM ANALYZE").execute(&mut conn).await.unwrap();
    assert_eq!(ledger_pg::schema::foreign_objects(&mut conn).await.unwrap(), Foreign::default());
    sqlx::raw_sql("ALTER TABLE requests ADD COLUMN note text; ALTER TABLE grants ADD COLUMN why text DEFAULT 'x';")
        .execute(&mut conn)
        .await
        .unwrap();
    let foreign = ledger_pg::schema::foreign_objects(&mut conn).await.unwrap();
    assert_eq!(foreign.objects, ["column note of table requests", "column why of table grants"]);
}

/// A database an earlier ledger-pg migrated, which kept no record, is told apart in the
/// refusal: its tables are likely ledger-pg's, but cannot be told from a user's.
#[tokio::test]
async fn a_database_migrated_without_a_record_is_said_to_be_so() {
    let _limit = ledger_pg::testpg::TimeLimit::new(
        concat!(module_path!(), "::a_database_migrated_without_a_record_is_said_to_be_so"),
        TIME_LIMIT,
    );
    let (pg, pool) = migrated().await;
    sqlx::query("DROP TABLE ledger_pg_objects").execute(&pool).await.unwrap();
    let mut conn = pg.connect().await.unwrap();
    let foreign = ledger_pg::schema::foreign_objects(&mut conn).await.unwrap();
    assert!(foreign.unrecorded_ledger_pg, "{foreign:?}");
    assert!(foreign.objects.iter().any(|o| o == "table requests"), "{foreign:?}");
}

/// Dropping everything in `public` keeps the schema as it was: its owner and its privileges
/// (on PostgreSQL 15, `pg_database_owner` and `USAGE` for PUBLIC), so that a role that may
/// only read still can after a reset. Before, the schema was dropped and made again, owned by
/// the connecting role and with no privilege for anyone else.
#[tokio::test]
async fn dropping_everything_keeps_the_schema_its_owner_and_privileges() {
    let _limit = ledger_pg::testpg::TimeLimit::new(
        concat!(module_path!(), "::dropping_everything_keeps_the_schema_its_owner_and_privileges"),
        TIME_LIMIT,
    );
    let (pg, pool) = migrated().await;
    let schema_state = || async {
        sqlx::query_as::<_, (String, Option<String>, i64)>(
            "SELECT n.nspowner::regrole::text, n.nspacl::text, \
             (SELECT count(*) FROM pg_depend d WHERE d.refclassid = 'pg_namespace'::regclass AND d.refobjid = n.oid) \
             FROM pg_namespace n WHERE n.nspname = 'public'",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let before = schema_state().await;
    assert!(before.2 > 0, "the migrations made objects in public");
    sqlx::raw_sql(
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO PUBLIC; \
         DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') THEN \
             CREATE EXTENSION pg_trgm SCHEMA public; END IF; END $$; \
         CREATE TABLE customers (id int); CREATE SCHEMA reports; CREATE VIEW reports.c AS SELECT * FROM customers;",
    )
    .execute(&pool)
    .await
    .unwrap();
    let mut conn = pg.connect().await.unwrap();
    ledger_pg::schema::drop_public_objects(&mut conn).await.expect("everything is dropped");
    let after = schema_state().await;
    assert_eq!((&after.0, &after.1), (&before.0, &before.1), "the schema's owner and privileges");
    let left: Vec<String> = sqlx::query_scalar(
        "SELECT pg_describe_object(classid, objid, objsubid) FROM pg_depend \
         WHERE refclassid = 'pg_namespace'::regclass AND refobjid = 'public'::regnamespace",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(left.iter().all(|l| l.starts_with("default privileges")), "left in public: {left:?}");
    assert_eq!(ledger_pg::schema::foreign_objects(&mut conn).await.unwrap(), Foreign::default());
    let view: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('reports.c')::text").fetch_one(&pool).await.unwrap();
    assert_eq!(view, None, "what depended on public went with it");
    // And the schema takes ledger-pg's migrations again.
    ledger_pg::migrate(&pool).await.expect("migrate again");
    assert_eq!(ledger_pg::schema::foreign_objects(&mut conn).await.unwrap(), Foreign::default());
}
