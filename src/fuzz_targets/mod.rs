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

/// The input as lines, split on `\n` only: any other byte, `\r` included, is
/// part of a line so the targets see it.
fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|b| *b == b'\n')
}

/// A reader of the bytes that drive the binary-shaped targets: past the end
/// every read is zero, so every input decodes to something.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0 {
            [first, rest @ ..] => {
                self.0 = rest;
                *first
            }
            [] => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
