//! `RestClient`: `BoxClient` over HTTP. Each operation asks the dialect's profile
//! (`dialect/`) for its request and mechanism; executions are run by `exec.rs`, tar transfers
//! the server cannot take by `attach_upload.rs` and `boxrun_files.rs`.
//!
//! **Create parameters** are the original's (BoxRun-flavoured) names, renamed per dialect;
//! fields a dialect has no place for are left out rather than failing the create (`labels`
//! everywhere: no server accepts them). **Listing** follows pages and applies the status
//! filter here too (`boxlite serve` ignores it).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::Value;

use super::dialect::{self, Action, Dialect, Download, Upload};
use super::exec::Executor;
use super::request::{Route, Spec};
use super::transport::{Payload, Transport, Tuning};
use super::{attach_upload, box_terminal, boxrun_files, detect, wire};
use crate::client::{
  BoxClient, BoxRecord, BoxTerminal, ByteStream, CreateBoxParams, ExecEventStream, ExecOutput, ExecRequest,
  Execution, Features, Snapshot,
};
use crate::config::{Auth, RemoteConfig};
use crate::error::{Error, Result};

/// Pages of a box listing followed at most (1000 boxes each at the API's maximum).
const MAX_LIST_PAGES: usize = 100;

/// Builds the remote client; does no I/O (dialect detection and auth happen on first use).
pub fn connect(config: &RemoteConfig) -> Result<Arc<dyn BoxClient>> {
  Ok(connect_with(config, Tuning::default())?)
}

/// `connect` with explicit timing (tests shorten the idle and retry bounds).
pub fn connect_with(config: &RemoteConfig, tuning: Tuning) -> Result<Arc<RestClient>> {
  let transport = Arc::new(Transport::new(config, tuning)?);
  Ok(Arc::new(RestClient {
    executor: Arc::new(Executor::new(transport.clone())),
    transport,
    allowed: config.dialects,
    prefix: config.prefix.clone(),
    static_token: matches!(config.auth, Auth::Token(_)),
    route: tokio::sync::OnceCell::new(),
    disposed: AtomicBool::new(false),
  }))
}

/// The remote-mode client.
pub struct RestClient {
  transport: Arc<Transport>,
  executor: Arc<Executor>,
  /// The dialects the configuration allows (all of them for `auto`).
  allowed: &'static [Dialect],
  prefix: Option<String>,
  static_token: bool,
  route: tokio::sync::OnceCell<Route>,
  disposed: AtomicBool,
}

impl std::fmt::Debug for RestClient {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.debug_struct("RestClient")
      .field("transport", &self.transport)
      .field("dialects", &self.allowed)
      .finish()
  }
}

impl RestClient {
  /// The dialect in use (detecting it if needed).
  pub async fn dialect(&self) -> Result<Dialect> {
    Ok(self.route().await?.dialect)
  }

  /// The tenant prefix in use, if the dialect has one.
  pub async fn prefix(&self) -> Result<Option<String>> {
    Ok(self.route().await?.prefix().map(str::to_string))
  }

  async fn route(&self) -> Result<&Route> {
    if self.disposed.load(Ordering::Acquire) {
      return Err(Error::Disposed);
    }
    self
      .route
      .get_or_try_init(|| {
        detect::resolve(
          &self.transport,
          self.allowed,
          self.prefix.as_deref(),
          self.static_token,
        )
      })
      .await
  }

  async fn json(&self, spec: &Spec) -> Result<Value> {
    self.transport.json(spec, Payload::None).await
  }

  async fn empty(&self, spec: &Spec) -> Result<()> {
    self.transport.empty(spec, Payload::None).await
  }

  async fn stream(&self, spec: &Spec) -> Result<ByteStream> {
    let response = self.transport.send(spec, Payload::None).await?;
    Ok(self.transport.body_stream(spec, response))
  }

  async fn box_reply(&self, spec: &Spec, payload: Payload) -> Result<BoxRecord> {
    let value = self.transport.json(spec, payload).await?;
    wire::parse_box(&value).ok_or_else(|| self.transport.malformed(spec, "a box", &value))
  }

  async fn lifecycle(&self, box_id: &str, action: Action) -> Result<()> {
    let route = self.route().await?;
    let profile = route.profile();
    let reply = self.empty(&profile.lifecycle(route, box_id, action)).await;
    profile.lifecycle_reply(action, reply)
  }

  /// The route, if the dialect has the optional groups (snapshots, clone, export, import,
  /// metrics).
  async fn extras(&self, operation: &str) -> Result<&Route> {
    let route = self.route().await?;
    dialect::require_extras(route, operation)?;
    Ok(route)
  }
}

#[async_trait]
impl BoxClient for RestClient {
  async fn create_box(&self, params: CreateBoxParams) -> Result<BoxRecord> {
    let route = self.route().await?;
    let spec = route.profile().create_box(route, &params)?;
    self.box_reply(&spec, Payload::None).await
  }

  async fn get_box(&self, box_id: &str) -> Result<BoxRecord> {
    let route = self.route().await?;
    self.box_reply(&route.get_box(box_id), Payload::None).await
  }

  async fn list_boxes(&self, status: Option<String>, page_size: Option<u32>) -> Result<Vec<BoxRecord>> {
    let route = self.route().await?;
    let mut boxes = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_LIST_PAGES {
      let spec = route
        .profile()
        .list_boxes(route, status.as_deref(), page_size, token.as_deref());
      let value = self.json(&spec).await?;
      let (page, next) = wire::parse_box_list(&value)
        .ok_or_else(|| self.transport.malformed(&spec, "a list of boxes", &value))?;
      boxes.extend(page);
      match next {
        Some(next) if Some(&next) != token.as_ref() => token = Some(next),
        _ => break,
      }
    }
    // `boxlite serve` ignores the filter; applying it here keeps the answer the same everywhere
    // (BoxRun's `all` means no filter).
    if let Some(status) = status.as_deref().filter(|s| *s != "all") {
      boxes.retain(|b| b.status == status);
    }
    Ok(boxes)
  }

  async fn delete_box(&self, box_id: &str, force: bool) -> Result<()> {
    let route = self.route().await?;
    let reply = self.empty(&route.delete_box(box_id, force)).await;
    route.profile().delete_reply(box_id, reply)
  }

  async fn start_box(&self, box_id: &str) -> Result<()> {
    self.start_box_record(box_id).await.map(drop)
  }

  async fn start_box_record(&self, box_id: &str) -> Result<Option<BoxRecord>> {
    let route = self.route().await?;
    let profile = route.profile();
    let spec = profile.lifecycle(route, box_id, Action::Start);
    match self.transport.json(&spec, Payload::None).await {
      // Every dialect answers a start with the box (`docs/dialects.md`); anything else: poll.
      Ok(value) => Ok(wire::parse_box(&value)),
      // The box started; only its answer was unreadable.
      Err(Error::Protocol { .. }) => Ok(None),
      Err(error) => profile.lifecycle_reply(Action::Start, Err(error)).map(|()| None),
    }
  }

  async fn stop_box(&self, box_id: &str) -> Result<()> {
    self.lifecycle(box_id, Action::Stop).await
  }

  async fn exec(&self, box_id: &str, request: ExecRequest) -> Result<ExecOutput> {
    let route = self.route().await?;
    self.executor.exec(route, box_id, request).await
  }

  async fn exec_stream(&self, box_id: &str, request: ExecRequest) -> Result<ExecEventStream> {
    let route = self.route().await?;
    self.executor.exec_stream(route, box_id, request).await
  }

  async fn exec_async(&self, box_id: &str, request: ExecRequest) -> Result<Execution> {
    let route = self.route().await?;
    self.executor.start(route, box_id, &request).await
  }

  async fn get_exec_output(&self, box_id: &str, exec_id: &str) -> Result<ExecEventStream> {
    let route = self.route().await?;
    self
      .executor
      .open_output(route, box_id, exec_id, false, None)
      .await
  }

  async fn send_exec_input(&self, box_id: &str, exec_id: &str, data: Bytes, close: bool) -> Result<()> {
    let route = self.route().await?;
    self
      .executor
      .send_input(route, box_id, exec_id, data, close)
      .await
  }

  async fn signal_exec(&self, box_id: &str, exec_id: &str, signal: i32) -> Result<()> {
    let route = self.route().await?;
    self
      .empty(&route.profile().signal(route, box_id, exec_id, signal)?)
      .await
  }

  async fn resize_exec(&self, box_id: &str, exec_id: &str, cols: u16, rows: u16) -> Result<()> {
    if cols == 0 || rows == 0 {
      return Err(Error::InvalidArgument {
        argument: "cols/rows".into(),
        problem: "must be at least 1".into(),
      });
    }
    let route = self.route().await?;
    self
      .empty(&route.profile().resize(route, box_id, exec_id, cols, rows)?)
      .await
  }

  async fn upload_files(&self, box_id: &str, path: &str, tar: ByteStream) -> Result<()> {
    let route = self.route().await?;
    match route.profile().upload() {
      Upload::TarEndpoint => {
        let spec = dialect::upload(route, box_id, path);
        self.transport.empty(&spec, Payload::Stream(tar)).await
      }
      Upload::ExecStdin => attach_upload::upload(&self.executor, route, box_id, path, tar).await,
      Upload::Staged => boxrun_files::upload(&self.executor, route, box_id, path, tar).await,
    }
  }

  async fn download_files(&self, box_id: &str, path: &str) -> Result<ByteStream> {
    let route = self.route().await?;
    match route.profile().download() {
      Download::TarEndpoint => self.stream(&dialect::download(route, box_id, path)).await,
      Download::Staged => boxrun_files::download(&self.executor, route, box_id, path).await,
    }
  }

  async fn create_snapshot(&self, box_id: &str, name: &str) -> Result<Snapshot> {
    let route = self.extras("createSnapshot").await?;
    let spec = dialect::create_snapshot(route, box_id, name);
    let value = self.json(&spec).await?;
    wire::parse_snapshot(&value, box_id).ok_or_else(|| self.transport.malformed(&spec, "a snapshot", &value))
  }

  async fn list_snapshots(&self, box_id: &str) -> Result<Vec<Snapshot>> {
    let route = self.extras("listSnapshots").await?;
    let spec = dialect::list_snapshots(route, box_id);
    let value = self.json(&spec).await?;
    wire::parse_snapshot_list(&value, box_id)
      .ok_or_else(|| self.transport.malformed(&spec, "a list of snapshots", &value))
  }

  async fn restore_snapshot(&self, box_id: &str, name: &str) -> Result<()> {
    let route = self.extras("restoreSnapshot").await?;
    self.empty(&dialect::restore_snapshot(route, box_id, name)).await
  }

  async fn delete_snapshot(&self, box_id: &str, name: &str) -> Result<()> {
    let route = self.extras("deleteSnapshot").await?;
    self.empty(&dialect::delete_snapshot(route, box_id, name)).await
  }

  async fn clone_box(&self, box_id: &str, name: Option<String>) -> Result<BoxRecord> {
    let route = self.extras("cloneBox").await?;
    let spec = dialect::clone_box(route, box_id, name.as_deref());
    self.box_reply(&spec, Payload::None).await
  }

  async fn export_box(&self, box_id: &str) -> Result<ByteStream> {
    let route = self.extras("exportBox").await?;
    self.stream(&dialect::export_box(route, box_id)).await
  }

  async fn import_box(&self, archive: ByteStream) -> Result<BoxRecord> {
    let route = self.extras("importBox").await?;
    self
      .box_reply(&dialect::import_box(route), Payload::Stream(archive))
      .await
  }

  async fn get_metrics(&self) -> Result<Value> {
    let route = self.extras("getMetrics").await?;
    self.json(&dialect::metrics(route)).await
  }

  async fn get_box_metrics(&self, box_id: &str) -> Result<Value> {
    let route = self.extras("getBoxMetrics").await?;
    self.json(&dialect::box_metrics(route, box_id)).await
  }

  async fn get_config(&self) -> Result<Value> {
    let route = self.route().await?;
    self.json(&route.config()).await
  }

  async fn open_box_terminal(
    &self,
    box_id: &str,
    shell: &str,
    term: &str,
    cols: u16,
    rows: u16,
  ) -> Result<BoxTerminal> {
    let route = self.route().await?;
    match route
      .profile()
      .box_terminal(route, box_id, shell, term, (cols, rows))
    {
      Some(spec) => box_terminal::connect(&self.transport, box_id, &spec).await,
      None => Err(route.unsupported("openBoxTerminal (this server has no box terminal endpoint)")),
    }
  }

  async fn features(&self) -> Result<Features> {
    Ok(self.route().await?.profile().features())
  }

  async fn backend_name(&self) -> Result<String> {
    Ok(self.route().await?.dialect.backend().to_string())
  }

  async fn dispose(&self) -> Result<()> {
    self.disposed.store(true, Ordering::Release);
    self.executor.detach_all();
    Ok(())
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn connect_does_no_io_and_debug_hides_the_token() {
    let config = RemoteConfig {
      api_url: url::Url::parse("http://127.0.0.1:1").unwrap(),
      prefix: None,
      auth: Auth::Token(crate::config::Secret::new("tok-secret-1")),
      dialects: Dialect::ALL,
    };
    let client = connect_with(&config, Tuning::default()).unwrap();
    assert!(!format!("{client:?}").contains("tok-secret-1"));
  }
}
