//! The only place core errors become JS errors. The message carries the stable code in a fixed
//! form, `[boxlite:<code>] <message>`, because an async napi rejection cannot carry a custom
//! code; `lib/errors.cjs` parses exactly this form and builds the `@sandbank.dev/core` classes.

use boxlite_core::Error;
use napi::Status;

pub fn to_napi(error: Error) -> napi::Error {
  napi::Error::new(
    Status::GenericFailure,
    format!("[boxlite:{}] {}", error.code(), error),
  )
}

/// Every code the core can produce, so the JS mapper's test can check it handles each one.
#[napi_derive::napi]
pub fn error_codes() -> Vec<&'static str> {
  Error::CODES.to_vec()
}
