//! Admission control (being written).
pub mod spec;
pub use spec::*;
