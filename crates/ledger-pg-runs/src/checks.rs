//! The checks of a concurrent run: invariants on the final database and on the history.

use std::collections::BTreeMap;

use ledger_core::{Command, Config, Ledger, Movement, PaymentId, Pubkey, RequestId, Sats, Tier};
use ledger_harness::linear::{self, Verdict};
use ledger_harness::{Invariant, Named, Observed, Reply, Violation};
use ledger_pg::reference;
use ledger_simulator::coverage::Mark;
use ledger_simulator::exec::EPOCH;
use sqlx::{PgPool, Row};

use std::sync::Mutex;

use crate::client::Client;
use ledger_simulator::caller::Close;

use crate::record::{ConcFlow, OpRecord};

/// What the movements say about one request.
#[derive(Clone, Debug, Default)]
pub(crate) struct Book {
    debited: i128,
    returned: i128,
    absorbed: i128,
    n_records: u32,
    n_releases: u32,
}

/// The reference schema's journal as movements, in commit order. It is authoritative: a call
/// whose acknowledgement was lost moved the pool all the same.
///
/// A debit the request's home stripe cannot cover takes the rest from other stripes
/// (`ledger_pool_debit`): one row per stripe touched, the home stripe's first, which alone
/// carries the reservation (`d_reserved_sats`, the whole amount; the others carry 0). The
/// movement is that one debit of the whole amount, as the call answered it; read row by row,
/// a debit of 360 split 247 + 113 looked like a debit of 360 that was never journalled (a
/// false I7 violation wherever the pool ran low under concurrency).
pub(crate) async fn journal_movements(pool: &PgPool) -> anyhow::Result<Vec<Movement>> {
    let rows = sqlx::query(
        "SELECT j.kind, j.request_id, j.payment_id, j.amount_sats, j.d_absorbed_sats, r.pubkey, j.d_reserved_sats \
         FROM pool_journal j LEFT JOIN reservations r ON r.request_id = j.request_id \
         WHERE j.kind NOT IN ('genesis', 'rebalance') \
           AND NOT (j.kind = 'debit' AND j.d_reserved_sats = 0) \
         ORDER BY j.seq",
    )
    .fetch_all(pool)
    .await?;
    let amount = |v: i64| Sats::new(v.unsigned_abs()).map_err(|e| anyhow::anyhow!("journal amount {v}: {e}"));
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let kind: String = r.try_get(0)?;
        let request_id = r.try_get::<Option<i64>, _>(1)?.map(|v| RequestId(v.unsigned_abs()));
        let payment_id: Option<i64> = r.try_get(2)?;
        let amount_sats: i64 = r.try_get(3)?;
        let absorbed: i64 = r.try_get(4)?;
        let pubkey = r.try_get::<Option<String>, _>(5)?.map(|p| p.parse::<Pubkey>()).transpose()?;
        let rid = || request_id.ok_or_else(|| anyhow::anyhow!("{kind} without a request"));
        let pk = || pubkey.ok_or_else(|| anyhow::anyhow!("{kind} without a reservation"));
        out.push(match kind.as_str() {
            "debit" => {
                let reserved: i64 = r.try_get(6)?;
                Movement::Debit { request_id: rid()?, pubkey: pk()?, amount_sats: amount(reserved)? }
            }
            "release" => Movement::Release { request_id: rid()?, amount_sats: amount(amount_sats)? },
            "expire" => Movement::Expire { request_id: rid()?, amount_sats: amount(amount_sats)? },
            "record" => Movement::Record {
                request_id: rid()?,
                pubkey: pk()?,
                absorbed_sats: amount(absorbed)?,
                returned_sats: amount(amount_sats)?,
            },
            "credit" => Movement::Credit {
                payment_id: PaymentId(payment_id.unwrap_or(0).unsigned_abs()),
                amount_sats: amount(amount_sats)?,
            },
            other => anyhow::bail!("unknown journal kind {other:?}"),
        });
    }
    Ok(out)
}

/// What the server says of its durability: `None` when it keeps what it acknowledges,
/// otherwise the settings that let it lose acknowledged commits.
pub(crate) async fn durability(pool: &PgPool) -> anyhow::Result<Option<String>> {
    let mut loose = Vec::new();
    for (setting, durable) in [("fsync", "on"), ("synchronous_commit", "on"), ("full_page_writes", "on")] {
        let value: String = sqlx::query_scalar(&format!("SHOW {setting}")).fetch_one(pool).await?;
        if value != durable {
            loose.push(format!("{setting}={value}"));
        }
    }
    Ok((!loose.is_empty()).then(|| loose.join(", ")))
}

/// I7: every movement a call was acknowledged with (its reply said it committed, whether or
/// not the caller heard it) must be in the final journal. A crash of a durable server loses
/// none; one of a server that may lose acknowledged commits (`loose`) can, and the violation
/// says that it is the server's settings, not the engine, that lost it.
fn acknowledged_but_lost(ops: &[OpRecord], journal: &[Movement], loose: &Option<String>) -> Vec<Violation> {
    let mut in_journal: BTreeMap<String, u32> = BTreeMap::new();
    for m in journal {
        *in_journal.entry(format!("{m:?}")).or_default() += 1;
    }
    let mut out = Vec::new();
    for op in ops {
        if !matches!(op.reply, Reply::Ok(_)) {
            continue;
        }
        for m in &op.movements {
            match in_journal.get_mut(&format!("{m:?}")) {
                Some(n) if *n > 0 => *n -= 1,
                _ => {
                    let why = match loose {
                        Some(settings) => format!(
                            " (the server runs with {settings}, which loses acknowledged commits in a crash: \
                             blame the settings, not the engine)"
                        ),
                        None => String::new(),
                    };
                    out.push(Violation {
                        invariant: Invariant::I7,
                        request_id: op.call.request_id(),
                        detail: format!(
                            "{} was acknowledged with {m:?}, which is not in the journal after the run{why}",
                            op.call.name()
                        ),
                    });
                }
            }
        }
    }
    out
}

/// The invariant a server-side audit finding names; an id the harness does not know is an
/// error, never silently another invariant.
fn invariant_of(id: &str) -> anyhow::Result<Invariant> {
    Invariant::from_id(id).ok_or_else(|| anyhow::anyhow!("the server audit names an unknown invariant {id:?}"))
}

/// The checks of a concurrent run, once traffic has stopped and the sweeper has run: the
/// server-side audit (I1, I2, I5 on the final state) and the history (I2-I6).
pub(crate) async fn final_checks(
    client: &Client,
    pool: &PgPool,
    ops: &Mutex<Vec<OpRecord>>,
    config: &Config,
    users: &BTreeMap<u32, Tier>,
    flows: &[ConcFlow],
    closes: &BTreeMap<u32, Close>,
) -> anyhow::Result<Vec<Violation>> {
    let mut out = Vec::new();
    let mut violate = |invariant, request: Option<u32>, detail: String| {
        out.push(Violation { invariant, request_id: request.map(|r| RequestId(u64::from(r))), detail });
    };
    let (movements, observed) = match client {
        Client::Reference(pool, _) => {
            for f in reference::audit(pool).await? {
                violate(invariant_of(&f.invariant)?, None, format!("server audit: {}", f.detail));
            }
            let t = reference::totals(pool).await?;
            let observed = Observed {
                pool_sats: i128::from(t.balance_sats),
                reserved_sats: Some(i128::from(t.reserved_sats)),
                granted_sats: i128::from(t.absorbed_sats),
                n_grants: u64::try_from(t.n_grants).unwrap_or(0),
            };
            let movements = journal_movements(pool).await?;
            let loose = durability(pool).await?;
            let lost = acknowledged_but_lost(&ops.lock().unwrap_or_else(|p| p.into_inner()), &movements, &loose);
            for v in lost {
                violate(v.invariant, v.request_id.map(|r| u32::try_from(r.0).unwrap_or(u32::MAX)), v.detail);
            }
            (movements, observed)
        }
        Client::Seed(client) => {
            let mut conn = pool.acquire().await?;
            for f in ledger_pg::seed::audit(&mut conn).await? {
                violate(invariant_of(f.invariant)?, None, format!("server audit: {}", f.detail));
            }
            let movements: Vec<Movement> = {
                let ops = ops.lock().unwrap_or_else(|p| p.into_inner());
                ops.iter().flat_map(|o| o.movements.iter().copied()).collect()
            };
            (movements, client.observe().await?)
        }
    };
    // The seed writes no grant row for a zero absorption, so only the reference's grants are
    // counted one per record.
    let counted = matches!(client, Client::Reference(..));
    out.extend(history_checks(&movements, &observed, counted, config, users, flows, closes));
    Ok(out)
}

/// I8 under concurrency: some serial order of the recorded calls, consistent with real time,
/// gives every answer on the reference, from the run's identities at genesis
/// ([`ledger_harness::linear`]), and the coverage mark that says how it was judged. A search
/// that runs out of its budget says so on stderr and judges nothing.
pub(crate) fn linearizability(
    config: &Config,
    users: &BTreeMap<u32, Tier>,
    ops: &[OpRecord],
    budget: impl FnOnce(usize) -> u64,
) -> (Vec<Violation>, Mark) {
    let mut initial = Ledger::new(*config);
    for (&user, &tier) in users {
        let set = Command::SetTier { pubkey: ledger_harness::user_pubkey(u64::from(user)), tier };
        initial.apply(&set, EPOCH, &mut Vec::new()).expect("a tier can always be set");
    }
    let history: Vec<linear::Op> = ops
        .iter()
        .map(|o| linear::Op {
            flow: o.flow,
            call: o.call.clone(),
            now: o.now,
            reply: o.reply.clone(),
            invoked: o.invoked,
            completed: o.completed,
        })
        .collect();
    let violation = |request_id, detail| vec![Violation { invariant: Invariant::I8, request_id, detail }];
    match linear::check(&initial, &history, budget(history.len())) {
        Ok(Verdict::Linearizable { parts, .. }) => {
            (Vec::new(), if parts > 1 { Mark::LinearizableByIdentity } else { Mark::LinearizableWhole })
        }
        Ok(Verdict::NotLinearizable(w)) => {
            (violation(history[w.stuck].call.request_id(), linear::describe(&history, &w)), Mark::LinearizableWhole)
        }
        Ok(Verdict::Undecided { explored }) => {
            ledger_exec::say!(
                "ledger-sim: linearizability not judged: no serial order of the {} calls found within {explored} attempts (the search's budget: --linearizability-budget), and none ruled out",
                history.len()
            );
            (Vec::new(), Mark::LinearizabilityUndecided)
        }
        Err(e) => (violation(None, format!("the recorded history cannot be checked: {e}")), Mark::LinearizableWhole),
    }
}

/// The checks of a concurrent run's history, whatever ran it: the movements every call made
/// (in any order) against what the implementation shows at the end (I1, I2, I5), each flow's
/// books (I3, I5, I6) and each user's absorption in the run's one daily window (I4).
/// `counted_grants`: one audit grant per record (the reference API; the seed writes none for a
/// zero absorption).
pub(crate) fn history_checks(
    movements: &[Movement],
    observed: &Observed,
    counted_grants: bool,
    config: &Config,
    users: &BTreeMap<u32, Tier>,
    flows: &[ConcFlow],
    closes: &BTreeMap<u32, Close>,
) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut violate = |invariant, request: Option<u32>, detail: String| {
        out.push(Violation { invariant, request_id: request.map(|r| RequestId(u64::from(r))), detail });
    };
    let mut books: BTreeMap<RequestId, Book> = BTreeMap::new();
    let mut absorbed_by: BTreeMap<Pubkey, i128> = BTreeMap::new();
    let (mut credits, mut debits, mut returned, mut absorbed) = (0i128, 0i128, 0i128, 0i128);
    let mut credited: BTreeMap<ledger_core::PaymentId, Vec<i128>> = BTreeMap::new();
    for m in movements {
        match *m {
            Movement::Debit { request_id, amount_sats, .. } => {
                debits += amount_sats.to_i128();
                books.entry(request_id).or_default().debited += amount_sats.to_i128();
            }
            Movement::Release { request_id, amount_sats } | Movement::Expire { request_id, amount_sats } => {
                returned += amount_sats.to_i128();
                let b = books.entry(request_id).or_default();
                b.returned += amount_sats.to_i128();
                b.n_releases += 1;
            }
            Movement::Record { request_id, pubkey, absorbed_sats, returned_sats } => {
                returned += returned_sats.to_i128();
                absorbed += absorbed_sats.to_i128();
                *absorbed_by.entry(pubkey).or_default() += absorbed_sats.to_i128();
                let b = books.entry(request_id).or_default();
                b.returned += returned_sats.to_i128();
                b.absorbed += absorbed_sats.to_i128();
                b.n_records += 1;
            }
            Movement::Credit { payment_id, amount_sats } => {
                credits += amount_sats.to_i128();
                credited.entry(payment_id).or_default().push(amount_sats.to_i128());
            }
        }
    }
    // A payment is credited once: a second credit of it (a delivery answered as fresh again)
    // keeps the sums above balanced, pool and journal inflated alike, so it is looked for here.
    for (payment_id, amounts) in &credited {
        for a in amounts.iter().skip(1) {
            violate(Invariant::I2, None, format!("payment {} credited again: +{a} sats", payment_id.0));
        }
    }
    let initial = config.pool_initial_sats.to_i128();
    if observed.pool_sats < 0 {
        violate(Invariant::I1, None, format!("pool balance {} < 0", observed.pool_sats));
    }
    let journal_pool = initial + credits - debits + returned;
    if journal_pool != observed.pool_sats {
        violate(
            Invariant::I2,
            None,
            format!(
                "initial {initial} + credits {credits} - debits {debits} + returns {returned} = {journal_pool}, but the pool holds {}",
                observed.pool_sats
            ),
        );
    }
    let outstanding = debits - returned - absorbed;
    if let Some(reserved) = observed.reserved_sats {
        if reserved != outstanding {
            violate(Invariant::I2, None, format!("the books hold {reserved} reserved, the movements {outstanding}"));
        }
    }
    let n_records: u64 = books.values().map(|b| u64::from(b.n_records)).sum();
    if observed.granted_sats != absorbed || (counted_grants && observed.n_grants != n_records) {
        violate(
            Invariant::I5,
            None,
            format!(
                "{} audit grants absorb {}, but {n_records} records absorbed {absorbed}",
                observed.n_grants, observed.granted_sats
            ),
        );
    }
    let (mut total_reduction, mut total_gave) = (0i128, 0i128);
    for f in flows {
        let b = books.get(&RequestId(u64::from(f.id))).cloned().unwrap_or_default();
        if b.n_records > 1 {
            violate(Invariant::I5, Some(f.id), format!("recorded {} times, absorbing {}", b.n_records, b.absorbed));
        }
        if b.n_records > 0 && b.n_releases > 0 {
            violate(Invariant::I5, Some(f.id), "both recorded and released".to_owned());
        }
        let held = b.debited - b.returned - b.absorbed;
        if held > 0 {
            violate(
                Invariant::I6,
                Some(f.id),
                format!("{held} sats still held after traffic stopped and deadlines passed"),
            );
        }
        let Some(close) = closes.get(&f.id) else { continue };
        let gave = b.debited - b.returned;
        let (reduction, overrun) = (close.reduction.to_i128(), close.overrun.to_i128());
        total_reduction += reduction - overrun;
        total_gave += gave;
        if reduction != gave + overrun {
            violate(
                Invariant::I3,
                Some(f.id),
                format!(
                    "charge reduced by {reduction}, the pool's net debit is {gave} (debited {}, returned {}) + overrun {overrun}",
                    b.debited, b.returned
                ),
            );
        }
    }
    if total_reduction != total_gave {
        violate(
            Invariant::I3,
            None,
            format!(
                "charge reductions net of overruns sum to {total_reduction}, the pool's net debits to {total_gave}"
            ),
        );
    }
    // One daily window (virtual time stays inside it) and no tier changes: each user's
    // absorption must fit the budget of its tier.
    for (&user, &tier) in users {
        let pubkey = ledger_harness::user_pubkey(u64::from(user));
        let got = absorbed_by.get(&pubkey).copied().unwrap_or(0);
        let budget = config.budget(tier).to_i128();
        if got > budget {
            violate(
                Invariant::I4,
                None,
                format!("{} ({tier}, budget {budget}) absorbed {got} in one window", Named(pubkey)),
            );
        }
    }
    for (pubkey, got) in &absorbed_by {
        if got > &0 && !users.keys().any(|u| ledger_harness::user_pubkey(u64::from(*u)) == *pubkey) {
            violate(Invariant::I4, None, format!("{} has no identity but absorbed {got}", Named(*pubkey)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use ledger_core::{Command, Config, Movement, Outcome, RequestId, Sats, Tier, TimeMs};
    use ledger_harness::{Call, Reply};
    use ledger_pg::reference;
    use ledger_pg::testpg::TestPg;

    use super::{acknowledged_but_lost, journal_movements};
    use crate::record::OpRecord;

    /// A debit its home stripe cannot cover is journalled one row per stripe it takes from;
    /// read back, it is the one debit the call answered, and I7 finds nothing lost. Before,
    /// each row was read as a movement of its own, and a concurrent run whose pool ran low
    /// reported acknowledged debits as lost on a server that lost nothing.
    #[test]
    fn a_debit_split_over_stripes_is_the_debit_the_call_answered() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        rt.block_on(async {
            let pg = TestPg::new().expect("a throwaway PostgreSQL must start for this test");
            let db = pg.pool().await.expect("connect");
            ledger_pg::migrate(&db).await.expect("migrate");
            let n_stripes: i32 =
                sqlx::query_scalar("SELECT ledger_n_stripes()::int").fetch_one(&db).await.expect("stripes");
            // Each stripe holds 100 sats: an elite user's decide of 300 needs three or more.
            let pool = 100 * u64::try_from(n_stripes).expect("a positive count");
            let config = Config { pool_initial_sats: Sats::new(pool).expect("sats"), ..Config::default() };
            reference::genesis(&db, &config, TimeMs(0)).await.expect("genesis");
            let pubkey = ledger_harness::user_pubkey(7);
            let elite = Command::SetTier { pubkey, tier: Tier::Elite };
            reference::apply(&db, &elite, TimeMs(1)).await.expect("set_tier");
            let estimated_sats = Sats::new(300).expect("sats");
            let decide = Command::Decide { request_id: RequestId(1), pubkey, estimated_sats };
            let applied = reference::apply(&db, &decide, TimeMs(2)).await.expect("decide");
            let debit = Movement::Debit { request_id: RequestId(1), pubkey, amount_sats: estimated_sats };
            assert_eq!(applied.movements, vec![debit], "the decide is free, from the pool");
            let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM pool_journal WHERE kind = 'debit'")
                .fetch_one(&db)
                .await
                .expect("journal");
            assert!(rows >= 3, "the debit was to take from 3 stripes or more, it took {rows} rows");

            let journal = journal_movements(&db).await.expect("the journal");
            assert_eq!(journal, vec![debit]);
            let op = OpRecord {
                flow: 1,
                call: Call::Decide { request_id: RequestId(1), pubkey, estimated_sats },
                reply: Reply::Ok(applied.result.clone().expect("decided")),
                movements: applied.movements.clone(),
                now: TimeMs(2),
                invoked: 0,
                completed: 1,
                fault: None,
            };
            assert!(matches!(op.reply, Reply::Ok(Outcome::Decided { .. })));
            let lost = acknowledged_but_lost(&[op], &journal, &None);
            assert!(lost.is_empty(), "{lost:?}");
        });
    }
}
