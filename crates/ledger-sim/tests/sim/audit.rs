//! `ledger-sim audit` on a live database: read-only, and it names what is broken. Needs
//! PostgreSQL and fails (never skips) when a throwaway cluster cannot start.

use std::process::Command;

use ledger_core::{Command as LedgerCommand, Config, TimeMs};
use ledger_pg::testpg::TestPg;

fn audit(url: &str) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ledger-sim"))
        .args(["audit", "--database-url", url])
        .env_remove("DATABASE_URL")
        .output()
        .expect("ledger-sim runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn audit_checks_a_live_database_read_only() {
    let _limit = ledger_pg::testpg::TimeLimit::new(
        "audit::audit_checks_a_live_database_read_only (a throwaway server and `ledger-sim audit` on it)",
        std::time::Duration::from_secs(300),
    );
    let pg = TestPg::new().expect("a throwaway PostgreSQL must start for this test");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let pool = rt.block_on(pg.pool()).unwrap();
    rt.block_on(async {
        ledger_pg::migrate(&pool).await.unwrap();
        ledger_pg::reference::genesis(&pool, &Config::default(), TimeMs(0)).await.unwrap();
        let pubkey = ledger_harness::user_pubkey(1);
        let cmd = LedgerCommand::SetTier { pubkey, tier: ledger_core::Tier::Elite };
        ledger_pg::reference::apply(&pool, &cmd, TimeMs(1)).await.unwrap();
        let sats = |v| ledger_core::Sats::new(v).unwrap();
        let rid = ledger_core::RequestId(1);
        let cmd = LedgerCommand::Decide { request_id: rid, pubkey, estimated_sats: sats(100) };
        ledger_pg::reference::apply(&pool, &cmd, TimeMs(2)).await.unwrap();
    });
    let (code, text) = audit(pg.url());
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("reference"), "{text}");

    // Break conservation behind the guards' back: the audit must name it.
    rt.block_on(async {
        sqlx::raw_sql(
            "ALTER TABLE pool_stripes DISABLE TRIGGER USER; \
             UPDATE pool_stripes SET balance_sats = balance_sats + 7 WHERE stripe = 3;",
        )
        .execute(&pool)
        .await
        .unwrap();
    });
    let (code, text) = audit(pg.url());
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("VIOLATION I2"), "{text}");

    // The seed's schema: a negative pool is I1.
    rt.block_on(async {
        sqlx::query("INSERT INTO timmy_config (key, value) VALUES ($1, '-5')")
            .bind(ledger_pg::seed::POOL_KEY)
            .execute(&pool)
            .await
            .unwrap();
    });
    let (code, text) = audit(pg.url());
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("VIOLATION I1 (seed schema)"), "{text}");

    let (code, text) = audit("postgres://nobody@127.0.0.1:1/nothing");
    assert_eq!(code, 2, "{text}");
    rt.block_on(pool.close());
}

/// The audited database's code never runs as the auditor. A `ledger_config` replaced by a view
/// that calls a function (which, run by a superuser, ran `COPY ... TO PROGRAM`), a column of a
/// type the database made, a row-level security policy that applies to the auditing role, and an
/// operator made for ledger-pg's domain `sats` (which matched better than the built-in one) are
/// each refused before anything is read (exit 2, naming the object), or never seen; the function
/// never runs. A policy that does not apply to the role (a superuser's) is no reason to refuse.
/// Before, the view's function ran as the auditor, a superuser, inside the read-only snapshot.
#[test]
fn audit_runs_no_code_of_the_audited_database() {
    let _limit = ledger_pg::testpg::TimeLimit::new(
        "audit::audit_runs_no_code_of_the_audited_database (a throwaway server and `ledger-sim audit` on it)",
        std::time::Duration::from_secs(300),
    );
    // A cluster of its own: the test makes a role.
    let pg = TestPg::new_private_cluster().expect("a throwaway PostgreSQL must start for this test");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let pool = rt.block_on(pg.pool()).unwrap();
    let ran = std::env::temp_dir().join(format!("ledger-sim-audit-ran-{}", std::process::id()));
    let _ = std::fs::remove_file(&ran);
    let sql = |sql: String| rt.block_on(sqlx::raw_sql(&sql).execute(&pool)).unwrap_or_else(|e| panic!("{sql}: {e}"));
    rt.block_on(async {
        ledger_pg::migrate(&pool).await.unwrap();
        ledger_pg::reference::genesis(&pool, &Config::default(), TimeMs(0)).await.unwrap();
    });
    // What an attacker who may write to the database plants: a function that leaves a file
    // behind when a superuser runs it (`COPY ... TO PROGRAM`), and fails saying so otherwise.
    sql(format!(
        "CREATE FUNCTION public.planted() RETURNS boolean LANGUAGE plpgsql AS $f$ BEGIN \
           IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN \
             EXECUTE format('COPY (SELECT 1) TO PROGRAM %L', 'touch {}'); \
             RETURN true; \
           END IF; \
           RAISE EXCEPTION 'the audited database ran its code as %', current_user; \
         END $f$; \
         CREATE ROLE auditor LOGIN PASSWORD 'auditor-pw'; \
         GRANT SELECT ON ALL TABLES IN SCHEMA public TO auditor;",
        ran.display()
    ));
    let port = pg.connect_options().get_port();
    let auditor = format!("postgres://auditor:auditor-pw@127.0.0.1:{port}/{}", pg.database_name());
    let never_ran = |text: &str| {
        assert!(!ran.exists(), "the planted function ran as the auditor:\n{text}");
        assert!(!text.contains("ran its code"), "the planted function ran as the auditor:\n{text}");
    };
    let (code, text) = audit(pg.url());
    assert_eq!(code, 0, "{text}");
    let (code, text) = audit(&auditor);
    assert_eq!(code, 0, "the read-only role audits: {text}");

    // An operator on ledger-pg's domain, which the audit's `balance_sats < 0` would have chosen.
    sql("CREATE FUNCTION public.sats_lt(public.sats, integer) RETURNS boolean LANGUAGE sql \
           AS 'SELECT public.planted() AND $1::bigint < $2'; \
         CREATE OPERATOR public.< (LEFTARG = public.sats, RIGHTARG = integer, FUNCTION = public.sats_lt);"
        .to_owned());
    let (code, text) = audit(pg.url());
    never_ran(&text);
    assert_eq!(code, 0, "{text}");

    // A policy that applies to the read-only role, and not to a superuser.
    sql("ALTER TABLE pool_journal ENABLE ROW LEVEL SECURITY; \
         CREATE POLICY everyone ON pool_journal FOR SELECT USING (public.planted());"
        .to_owned());
    let (code, text) = audit(&auditor);
    never_ran(&text);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("table public.pool_journal has row-level security"), "{text}");
    let (code, text) = audit(pg.url());
    never_ran(&text);
    assert_eq!(code, 0, "no policy applies to a superuser: {text}");
    sql("DROP POLICY everyone ON pool_journal; ALTER TABLE pool_journal DISABLE ROW LEVEL SECURITY;".to_owned());

    // A column of the database's own type.
    sql("CREATE TYPE public.mood AS ENUM ('ok'); ALTER TABLE grants ADD COLUMN note public.mood;".to_owned());
    let (code, text) = audit(pg.url());
    never_ran(&text);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("table public.grants has columns of types that are not built in: note (public.mood)"),
        "{text}"
    );
    sql("ALTER TABLE grants DROP COLUMN note;".to_owned());

    // The configuration behind a view that calls the function.
    sql("ALTER TABLE ledger_config RENAME TO ledger_config_kept; \
         CREATE VIEW ledger_config AS SELECT * FROM ledger_config_kept WHERE public.planted();"
        .to_owned());
    for url in [pg.url(), auditor.as_str()] {
        let (code, text) = audit(url);
        never_ran(&text);
        assert_eq!(code, 2, "{text}");
        assert!(text.contains("view public.ledger_config is not an ordinary table"), "{text}");
    }
    rt.block_on(pool.close());
    let _ = std::fs::remove_file(&ran);
}
