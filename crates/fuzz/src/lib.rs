//! A mutation fuzzer for Quill's loaders that runs on stable Rust (`cargo fuzz` needs a
//! nightly toolchain): a seeded mutation loop ([`mutate`]), the targets, one per kind of
//! file a user hands Quill ([`targets`]), panics caught per input, and a global allocator
//! that turns any allocation past a bound into a failure ([`alloc`]), so "allocates
//! without bound" is caught as surely as a panic ([`runner`]).
//!
//! `cargo run --release -p fuzz -- <target> --execs N --seed S`; the committed seeds are
//! in `crates/fuzz/corpus/<target>/`, and `tests/short_pass.rs` runs every target briefly
//! in `cargo test`.

pub mod alloc;
pub mod mutate;
pub mod runner;
pub mod targets;

#[global_allocator]
static ALLOCATOR: alloc::BoundedAlloc = alloc::BoundedAlloc;

pub use runner::{replay, run, Options, Report};
pub use targets::TARGETS;
