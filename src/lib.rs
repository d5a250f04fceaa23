//! Node binding of `@sandbank.dev/boxlite`: napi classes that convert JS values to the core's
//! types and core errors to JS errors. No decisions are made here; they live in `boxlite-core`.
#![deny(clippy::all)]

mod adapter;
mod client;
mod error;
mod sandbox;
mod terminal;

pub use adapter::NativeAdapter;
pub use error::error_codes;
