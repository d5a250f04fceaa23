//! The logic of `@sandbank.dev/boxlite`, free of napi: configuration, the error type with
//! stable codes, the client trait both modes implement, and the adapter behaviour. The binding
//! crate at the repository root only converts JS values to these types and back.

pub mod adapter;
pub mod archive;
pub mod client;
pub mod config;
pub mod diag;
pub mod error;
pub mod files;
pub mod ids;
#[cfg(feature = "local")]
pub mod local;
pub mod rest;
pub mod sandbox;
pub mod terminal;
#[cfg(test)]
mod testing;

pub use adapter::Adapter;
pub use client::BoxClient;
pub use config::{AdapterConfig, LocalConfig, Mode, RemoteConfig};
pub use error::{ApiError, Error, Result};
