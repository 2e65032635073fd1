//! Never hang, never go silent: how long the database has been failing every call.
//!
//! Every call of a concurrent run reports here whether it got an answer. While calls fail and
//! none answers, the database is taken to be unreachable: after [`SAY_AFTER`] a line goes to
//! stderr (and again every [`SAY_EVERY`]) saying since when, the last error and when the run
//! will give up; once the outage has lasted the run's give-up time, every caller stops
//! retrying and the run ends with an error naming the cause. A call that answers ends the
//! outage (and says so, if it was announced). Injected faults (a killed connection) fail one
//! call at a time and end well before anything is said.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long calls must have been failing before stderr hears of it.
pub(crate) const SAY_AFTER: Duration = Duration::from_secs(2);
/// How often an ongoing outage is announced again.
pub(crate) const SAY_EVERY: Duration = Duration::from_secs(5);

#[derive(Default)]
struct State {
    /// When the first failed call of this outage failed, and the last error.
    since: Option<Instant>,
    cause: String,
    last_said: Option<Instant>,
}

/// The outage monitor of one run.
pub(crate) struct Outage {
    give_up_after: Duration,
    state: Mutex<State>,
    gave_up: AtomicBool,
}

impl Outage {
    /// A monitor that gives up after `give_up_after` of failing calls.
    pub(crate) fn new(give_up_after: Duration) -> Outage {
        Outage { give_up_after, state: Mutex::new(State::default()), gave_up: AtomicBool::new(false) }
    }

    /// How long calls may fail before the run gives up.
    pub(crate) fn give_up_after(&self) -> Duration {
        self.give_up_after
    }

    /// A call failed with `error`. True when the run should give up now.
    pub(crate) fn failed(&self, error: &str) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let since = *s.since.get_or_insert(now);
        s.cause = error.to_owned();
        let lasted = now.duration_since(since);
        if lasted >= self.give_up_after {
            if !self.gave_up.swap(true, Ordering::SeqCst) {
                ledger_exec::say!(
                    "ledger-sim: every call has failed for {} s; giving up (last error: {})",
                    lasted.as_secs(),
                    s.cause
                );
            }
            return true;
        }
        if lasted >= SAY_AFTER && s.last_said.is_none_or(|t| now.duration_since(t) >= SAY_EVERY) {
            s.last_said = Some(now);
            ledger_exec::say!(
                "ledger-sim: {} for {} s (last error: {}); retrying, giving up after {} s",
                state_of(&s.cause),
                lasted.as_secs(),
                s.cause,
                self.give_up_after.as_secs()
            );
        }
        false
    }

    /// A call got an answer: any outage is over.
    pub(crate) fn answered(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(since) = s.since.take() {
            if s.last_said.take().is_some() {
                ledger_exec::say!("ledger-sim: database answering again after {} s", since.elapsed().as_secs());
            }
        }
    }

    /// Whether the run gave up.
    pub(crate) fn gave_up(&self) -> bool {
        self.gave_up.load(Ordering::SeqCst)
    }

    /// The error that ends a run that gave up.
    pub(crate) fn error(&self) -> anyhow::Error {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        anyhow::anyhow!(
            "the database failed every call for {} s (--give-up-after); the last error: {}",
            self.give_up_after.as_secs(),
            s.cause
        )
    }
}

/// What a run of failing calls with this last error says of the database: a server that
/// answers but not in time, or whose new connections succeed while the pool's are all taken,
/// is not unreachable, and saying so would send its operator to the wrong place.
fn state_of(cause: &str) -> &'static str {
    if cause.contains("a new connection succeeds") {
        "database reachable but the connection pool exhausted"
    } else if cause.starts_with("no answer within") {
        "database not answering calls in time"
    } else {
        "database unreachable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_ends_an_outage_and_a_long_one_gives_up() {
        let o = Outage::new(Duration::from_millis(50));
        assert!(!o.failed("connection refused"));
        o.answered();
        assert!(!o.failed("connection refused"));
        std::thread::sleep(Duration::from_millis(60));
        assert!(o.failed("connection refused"));
        assert!(o.gave_up());
        assert!(o.error().to_string().contains("connection refused"), "{}", o.error());
    }

    #[test]
    fn a_slow_or_exhausted_database_is_not_called_unreachable() {
        assert_eq!(
            state_of("database: pool timed out; connecting: Connection refused (os error 111)"),
            "database unreachable"
        );
        assert_eq!(state_of("no answer within 30 s"), "database not answering calls in time");
        assert_eq!(
            state_of("pool timed out (a new connection succeeds: the pool is exhausted)"),
            "database reachable but the connection pool exhausted"
        );
    }
}
