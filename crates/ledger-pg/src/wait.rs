//! Waits on the database that say so: every wait is bounded, and one still waiting after
//! [`SAY_AFTER`] says on stderr what it waits for and how long it will wait at most.
//!
//! A wait that answers in time says nothing (a run makes thousands of them). A wait that does
//! not (a server stopped by SIGSTOP, a lost network, a "server" that accepts connections and
//! never answers) is announced within [`SAY_AFTER`], and fails at its bound. Many callers
//! waiting on the same thing at once (the clients of a concurrent run) say it once per
//! [`SAY_EVERY`], not once each.

use std::collections::HashMap;
use std::future::Future;
use std::io::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a wait on the database goes unannounced.
pub const SAY_AFTER: Duration = Duration::from_secs(2);

/// How often the same wait is said again (by another caller, or the same one again).
pub const SAY_EVERY: Duration = Duration::from_secs(5);

/// When each announcement was last said, by its text.
static SAID: Mutex<Option<HashMap<String, Instant>>> = Mutex::new(None);

/// Whether `line` may be said now: not said in the last [`SAY_EVERY`].
fn may_say(line: &str) -> bool {
    let mut said = SAID.lock().unwrap_or_else(|p| p.into_inner());
    let said = said.get_or_insert_with(HashMap::new);
    let now = Instant::now();
    match said.get(line) {
        Some(at) if now.duration_since(*at) < SAY_EVERY => false,
        _ => {
            said.insert(line.to_owned(), now);
            true
        }
    }
}

/// What a wait still going after `waited` says: `what` it waits for and its bound `limit`.
pub fn announcement(what: &str, waited: Duration, limit: Duration) -> String {
    format!(
        "ledger-sim: waiting for the database to answer {what}: no answer for {} s (waiting at most {} s)",
        waited.as_secs(),
        limit.as_secs()
    )
}

/// The wait did not end within its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoAnswer(pub Duration);

impl std::fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no answer within {} s", self.0.as_secs())
    }
}

impl std::error::Error for NoAnswer {}

/// `fut`, waited for at most `limit`; said on stderr (as [`announcement`] words it) when it
/// has not ended after [`SAY_AFTER`]. Must run inside a tokio runtime with its time driver.
pub async fn announced<F: Future>(what: &str, limit: Duration, fut: F) -> Result<F::Output, NoAnswer> {
    let started = tokio::time::Instant::now();
    let mut fut = std::pin::pin!(fut);
    let deadline = started + limit;
    if limit > SAY_AFTER {
        tokio::select! {
            out = &mut fut => return Ok(out),
            () = tokio::time::sleep(SAY_AFTER) => {}
        }
        // Another caller may have said the same a moment ago: this one says it once that line
        // is [`SAY_EVERY`] old, if it is still waiting then, so that a long wait is never silent.
        let key = format!("{what} {}", limit.as_millis());
        loop {
            if may_say(&key) {
                let line = announcement(what, started.elapsed(), limit);
                let _ = writeln!(std::io::stderr(), "{}", ledger_harness::text::shown(&line));
                break;
            }
            let next = tokio::time::Instant::now() + Duration::from_millis(500);
            if next >= deadline {
                break;
            }
            tokio::select! {
                out = &mut fut => return Ok(out),
                () = tokio::time::sleep_until(next) => {}
            }
        }
    }
    match tokio::time::timeout_at(deadline, fut).await {
        Ok(out) => Ok(out),
        Err(_) => Err(NoAnswer(limit)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_wait_that_answers_in_time_is_not_bounded_away() {
        let out = announced("answer quickly", Duration::from_secs(10), async { 7 }).await;
        assert_eq!(out, Ok(7));
        let slow = announced("answer late", Duration::from_secs(10), async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            8
        })
        .await;
        assert_eq!(slow, Ok(8));
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_that_never_answers_ends_at_its_bound() {
        let out = announced("never answer", Duration::from_secs(10), std::future::pending::<()>()).await;
        assert_eq!(out, Err(NoAnswer(Duration::from_secs(10))));
        assert_eq!(NoAnswer(Duration::from_secs(10)).to_string(), "no answer within 10 s");
    }

    #[test]
    fn the_same_wait_is_said_once_per_period() {
        let line = announcement("a test's own wait", Duration::from_secs(7), Duration::from_secs(30));
        assert_eq!(
            line,
            "ledger-sim: waiting for the database to answer a test's own wait: no answer for 7 s (waiting at most 30 s)"
        );
        assert!(may_say("a test's own wait 30000"));
        assert!(!may_say("a test's own wait 30000"));
        assert!(may_say("another wait 30000"));
    }
}
