//! `ledger-exec`: the engine protocol of SPEC.md §9, by which the harness drives an
//! implementation of the ledger in any language, in its own process, through JSON Lines on its
//! standard input and output.
//!
//! - [`protocol`]: the messages, version [`protocol::PROTOCOL_VERSION`].
//! - [`child`]: the harness's side: a child process, every wait bounded and said on stderr.
//! - [`engine`]: the child behind the simulator's `Engine` interface, one call at a time.
//! - [`serve`]: the reference engine's side (`ledger-sim serve`).
//! - [`conform`]: the conformance vectors replayed through the protocol.
//! - [`bench`]: how fast an implementation answers over the protocol.
#![deny(missing_docs)]
#![warn(unreachable_pub)]

pub mod bench;
pub mod child;
pub mod conform;
pub mod engine;
pub mod protocol;
pub mod protocol_cases;
pub mod serve;

/// `eprintln!` that never panics: writes one line to stderr and ignores a failure to.
///
/// What the programs say on stderr (what they wait for, what a run did) is for a reader who
/// may have gone: `ledger-sim plan ... 2>&1 | head -3` closes the pipe after three lines. Every
/// later `eprintln!` would then panic, and the panic would stop the work whose results go
/// elsewhere: the report file, the counterexamples, the exit status. So the workspace's
/// binaries and the libraries they call say things with this instead. What they say may quote
/// a user's command (`--exec "DATABASE_URL=postgres://u:secret@h/db node a.js"`) or what an
/// implementation wrote: every password is hidden and every control character escaped
/// ([`ledger_harness::text`]).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = ::std::writeln!(::std::io::stderr(), "{}", $crate::__text::shown(&::std::format!($($arg)*)));
    }};
}

#[doc(hidden)]
pub use ledger_harness::text as __text;

pub use child::{Child, ExecError, Hello};
pub use engine::{reply_movements, seed_movements, ExecEngine, Failure, FailureKind, Halt, LastFresh, Stop};
pub use protocol::{Api, ErrorCode, Observation, StateKind, PROTOCOL_VERSION};
