//! `NativeAdapter`: the JS-facing handle over `boxlite_core::Adapter`. The public class
//! `BoxLiteAdapter` (index.cjs) wraps it and maps its errors to `@sandbank.dev/core` classes.

use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::error::to_napi;

#[napi]
pub struct NativeAdapter {
  inner: Arc<boxlite_core::Adapter>,
}

#[napi]
impl NativeAdapter {
  /// Takes the config as plain JSON; never throws (an unusable config is reported on first use).
  #[napi(constructor)]
  pub fn new(config: serde_json::Value) -> Self {
    // Diagnostics are switched by the environment (DEBUG, BOXLITE_LOG), read once per process.
    boxlite_core::diag::init_from_env();
    NativeAdapter {
      inner: Arc::new(boxlite_core::Adapter::new(&config)),
    }
  }

  /// Validates the config and reports the first unusable field, or nothing.
  #[napi]
  pub fn check_config(&self) -> Result<()> {
    self.inner.config().map(|_| ()).map_err(to_napi)
  }

  /// The host `exposePort` URLs name.
  #[napi]
  pub fn host(&self) -> Result<String> {
    self.inner.host().map_err(to_napi)
  }

  /// Releases everything the adapter holds; idempotent.
  #[napi]
  pub async fn dispose(&self) -> Result<()> {
    self.inner.dispose().await.map_err(to_napi)
  }
}

impl NativeAdapter {
  pub(crate) fn client(&self) -> Result<Arc<dyn boxlite_core::BoxClient>> {
    self.inner.client().map_err(to_napi)
  }

  /// The core adapter, for work that outlives the borrow of `self` (spawned futures).
  pub(crate) fn core(&self) -> Arc<boxlite_core::Adapter> {
    self.inner.clone()
  }
}
