//! Helpers shared by the model crate's integration tests.

pub mod golden;
