//! The live gateway: the [`Generation`] requests run on, and the one
//! [`owner`] that builds and swaps generations.
//!
//! Everything that changes the live config is an input to the owner: a
//! reload ([`reload`]), DNS answers, and the state a new generation carries
//! over from the last. Everything else reads: a request loads one generation
//! and keeps it to its end; background services get narrow views (the live
//! pools, the `clients:` settings) made from a [`Live`] handle.

pub mod generation;
pub mod owner;
pub mod reload;

pub use generation::{Generation, Route};
pub use owner::{Live, NotInstalled, Owner};
pub use reload::{ReloadReport, Reloader};
