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
pub mod serve;

pub use child::{Child, ExecError, Hello};
pub use engine::{reply_movements, seed_movements, ExecEngine, Stop};
pub use protocol::{Api, ErrorCode, Observation, StateKind, PROTOCOL_VERSION};
