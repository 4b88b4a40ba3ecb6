//! Fuzz target bodies, shared by the coverage-guided fuzzer (`fuzz/`) and the
//! test that replays the committed corpora (`tests/fuzz_corpora.rs`), so a
//! corpus entry means the same thing to both.
//!
//! Each target takes arbitrary bytes and must return normally whatever they
//! are: a panic is a found bug, either in the code under test (which must
//! never panic on input a client or an operator can write) or in one of the
//! invariants the target asserts beside it. The text-shaped targets read
//! their input as lines so that seed files stay readable and editable by hand.

mod config;
mod forwarded;
mod input;
mod keys;
mod limiter;
mod router;

pub use config::config;
pub use forwarded::forwarded;
pub use keys::keys;
pub use limiter::limiter;
pub use router::router;

/// A target: arbitrary bytes in, a panic for a bug found.
pub type Target = fn(&[u8]);

/// Every target by the name its corpus directory and fuzzer binary use.
pub const TARGETS: &[(&str, Target)] = &[
    ("config", config),
    ("router", router),
    ("keys", keys),
    ("forwarded", forwarded),
    ("limiter", limiter),
];
