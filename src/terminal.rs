//! `startTerminal` of `NativeAdapter`: converts the options and the result; the terminal server
//! itself lives in `boxlite_core::terminal`.

use napi::bindgen_prelude::*;
use napi_derive::napi;
use serde_json::Value;

use boxlite_core::terminal::TerminalOptions;

use crate::adapter::NativeAdapter;
use crate::client::{from_js, to_js};
use crate::error::to_napi;

#[napi]
impl NativeAdapter {
  /// Serves a terminal of the box on loopback (or, with `mode: 'ttyd'`, starts the original's
  /// ttyd inside the box) and returns `{ url, port }`.
  #[napi(ts_return_type = "Promise<{ url: string; port: number }>")]
  pub async fn start_terminal(&self, id: String, options: Option<Value>) -> Result<Value> {
    let options: TerminalOptions = match options {
      None | Some(Value::Null) => TerminalOptions::default(),
      Some(value) => from_js("options", value)?,
    };
    to_js(self.core().start_terminal(&id, &options).await.map_err(to_napi)?)
  }
}
