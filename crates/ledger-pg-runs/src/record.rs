//! What a concurrent run records: the flows it drew, every call with its reply, and how each
//! flow ended ([`ledger_simulator::caller::Close`]). The run writes them; the checks read them.

use ledger_core::{Movement, TimeMs};
use ledger_harness::{Call, Reply};
use serde::Serialize;

/// One job or session flow of a concurrent run, drawn from the seed.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ConcFlow {
    pub(crate) id: u32,
    pub(crate) user: u32,
    pub(crate) session: bool,
    pub(crate) estimated_sats: u64,
    pub(crate) actual_sats: u64,
    pub(crate) abandon: bool,
    pub(crate) work_fails: bool,
    pub(crate) crash_after: Option<u8>,
    pub(crate) duplicate: Option<u8>,
    pub(crate) duplicate_credit: bool,
}

/// One call as a concurrent run saw it.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct OpRecord {
    pub(crate) flow: u32,
    pub(crate) call: Call,
    pub(crate) reply: Reply,
    pub(crate) movements: Vec<Movement>,
    /// The time the call carried.
    pub(crate) now: TimeMs,
    /// When it was sent and when its answer came back, on the run's one clock (a counter every
    /// caller shares): what the linearizability check orders calls by.
    pub(crate) invoked: u64,
    pub(crate) completed: u64,
    /// `killed`, `lost_ack`, `duplicate` or `retry` when the call was part of a fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) fault: Option<&'static str>,
}
