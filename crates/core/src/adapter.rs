//! The adapter as the binding sees it: created from the raw JS config without failing (the
//! contract forbids throwing in the constructor), it validates the config on first use and
//! then dispatches to the mode's backend.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;

use crate::client::BoxClient;
use crate::config::AdapterConfig;
use crate::error::Result;
use crate::sandbox::Polling;

pub struct Adapter {
  /// The parsed config, or the error to report on every use.
  config: Result<AdapterConfig>,
  /// The mode's client, built on first use.
  client: OnceLock<Arc<dyn BoxClient>>,
  /// guest port → host port of the sandboxes this adapter created (as the original kept them).
  pub(crate) ports: Mutex<HashMap<String, HashMap<u16, u16>>>,
  pub(crate) polling: Polling,
  /// The terminal servers `startTerminal` opened (closed by `dispose`).
  pub(crate) terminals: crate::terminal::Terminals,
  /// Deletions of boxes whose create ran out of time while a request was in flight; `dispose`
  /// waits for them (bounded).
  pub(crate) cleanups: tokio_util::task::TaskTracker,
}

/// How long `dispose` waits for pending deletions of abandoned boxes.
const CLEANUP_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

impl Adapter {
  /// Never fails and does no I/O; an unusable config is reported by the first operation.
  pub fn new(raw_config: &Value) -> Self {
    Adapter {
      config: AdapterConfig::parse(raw_config),
      client: OnceLock::new(),
      ports: Mutex::default(),
      polling: Polling::default(),
      terminals: Default::default(),
      cleanups: tokio_util::task::TaskTracker::new(),
    }
  }

  /// An adapter over a given client (tests drive the sandbox logic with a fake).
  #[cfg(test)]
  pub(crate) fn with_client(raw_config: &Value, client: Arc<dyn BoxClient>) -> Self {
    let adapter = Adapter {
      polling: Polling {
        first: std::time::Duration::ZERO,
        max: std::time::Duration::from_millis(5),
      },
      ..Adapter::new(raw_config)
    };
    let _ = adapter.client.set(Arc::new(crate::ids::Checked(client)));
    adapter
  }

  /// The low-level client of the configured mode (`getClient()`), built once.
  pub fn client(&self) -> Result<Arc<dyn BoxClient>> {
    if let Some(client) = self.client.get() {
      return Ok(client.clone());
    }
    // Every id is checked once here, for both modes and for getClient().
    let built: Arc<dyn BoxClient> = Arc::new(crate::ids::Checked(build_client(self.config()?)?));
    // Two first calls may race; both built clients do no I/O, and the first one stored wins.
    Ok(self.client.get_or_init(|| built).clone())
  }

  pub fn config(&self) -> Result<&AdapterConfig> {
    self.config.as_ref().map_err(Clone::clone)
  }

  /// The host that `exposePort` URLs name: the API host in remote mode, loopback locally.
  pub fn host(&self) -> Result<String> {
    Ok(match self.config()? {
      AdapterConfig::Remote(remote) => remote.host().to_string(),
      AdapterConfig::Local(_) => "127.0.0.1".to_string(),
    })
  }

  /// Closes every terminal server, waits for pending box deletions, then releases the client's resources if one was built;
  /// idempotent.
  pub async fn dispose(&self) -> Result<()> {
    self.terminals.close_all().await;
    self.cleanups.close();
    let _ = tokio::time::timeout(CLEANUP_WAIT, self.cleanups.wait()).await;
    match self.client.get() {
      Some(client) => client.dispose().await,
      None => Ok(()),
    }
  }
}

fn build_client(config: &AdapterConfig) -> Result<Arc<dyn BoxClient>> {
  match config {
    AdapterConfig::Remote(remote) => crate::rest::connect(remote),
    #[cfg(feature = "local")]
    AdapterConfig::Local(local) => crate::local::connect(local),
    #[cfg(not(feature = "local"))]
    AdapterConfig::Local(_) => Err(crate::error::Error::Environment {
      message: "this build of the addon has no local mode (built without the 'local' feature)".into(),
    }),
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use serde_json::json;

  #[test]
  fn construction_with_empty_api_url_succeeds_and_first_use_reports_it() {
    let adapter = Adapter::new(&json!({"apiUrl": ""}));
    let err = adapter.client().err().expect("an empty apiUrl is unusable");
    assert_eq!(err.code(), "invalid_config");
  }

  #[test]
  fn host_is_the_api_host_remotely_and_loopback_locally() {
    assert_eq!(
      Adapter::new(&json!({"apiUrl": "http://boxrun.example.com:9090"}))
        .host()
        .unwrap(),
      "boxrun.example.com"
    );
    assert_eq!(
      Adapter::new(&json!({"mode": "local"})).host().unwrap(),
      "127.0.0.1"
    );
  }
}
