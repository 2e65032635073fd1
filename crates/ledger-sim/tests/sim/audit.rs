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
