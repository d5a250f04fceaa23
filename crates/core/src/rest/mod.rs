//! RestClient: `BoxClient` over the three HTTP dialects servers speak (see
//! `server-apis.md`): BoxLite REST of the SSE era (A), current BoxLite REST (B) and BoxRun (C).
//!
//! Layout: `request` builds every request as data and `wire` shapes bodies and parses replies
//! tolerantly (both sans IO, unit-tested); `sse` decodes event streams and `ws` attach frames;
//! `auth` holds the token cache rules; `events` turns bodies into exec event streams;
//! `boxrun_files` and `attach_upload` carry tar transfers where servers cannot; `transport` is the only module that sends
//! HTTP (and `ws::connect` the only WebSocket).
//!
//! **Dialect detection** (`dialect: "auto"`, the default) happens once, lazily, on the first
//! call, and is retried on the next call if it failed (nothing is cached on failure):
//! 1. `GET /v1/config` without credentials: a JSON 200 means a BoxLite server (A or B); a 404
//!    means "not BoxLite", then `GET /v1/info` must answer 200 for BoxRun (C).
//! 2. For BoxLite, `GET /v1/me` (with the static token, if any): 200 means B, 404 means A. A
//!    401/403 is ambiguous (an auth layer may run before routing), so `POST /v1/oauth/tokens`
//!    decides: 404 means B (no token endpoint), anything else A.
//!
//! Anything else fails with a protocol error naming the probe. The tenant prefix is the
//! configured one, else `default` for A, `path_prefix` (or `prefix`, what real servers send)
//! from `GET /v1/me` for B, and nothing for C. `/config`, `/me` and `/oauth/tokens` are never
//! prefixed.
//!
//! **Create parameters** are the original's (BoxRun-flavoured) names, renamed per dialect
//! (`cpu` → `cpus`, `memory_mb` → `memory_mib`, pairs → port objects, …). Fields a dialect has
//! no place for are left out rather than failing the create: `labels` everywhere (no server
//! accepts them), `ports`, `security` and `auto_remove` on B, everything but image, name, sizes,
//! workdir, env and network on C. On A `auto_remove` defaults to `false` (the server's `true`
//! would delete the box on stop); on C `network` defaults to `true` like the other dialects.
//!
//! **Exec**: the command is always argv; a working directory is entered by the command itself
//! (`sh -c 'cd -- "$1" && shift && exec "$@"' sh <dir> <argv…>`) because some servers ignore
//! `working_dir`; `timeout_seconds` is sent to the server and also enforced here, killing the
//! execution when it runs out. `exec` and `exec_stream` own the execution they start: a caller
//! that drops the future or the stream before the exit kills it. Output is yielded as it
//! arrives (SSE in A and C, the attach WebSocket in B); a stream that breaks, goes silent past
//! the idle bound or ends without an exit event ends with an error — except on BoxRun, which
//! keeps numbered events: a BoxRun stream that breaks, or stays quiet although the execution's
//! status says it finished, is re-read and resumes without loss or repetition (`events.rs`).
//!
//! **Tolerated quirks** (all documented in `server-apis.md`): BoxRun's 409/400 on starting a
//! running or stopping a stopped box count as success (BoxLite's start/stop are idempotent);
//! the SSE-era reference server's 500 "not found: …" on deleting an unknown box is a
//! not-found; closing the stdin of a command that already ended is not an error; the status
//! filter of `list_boxes` is applied here too (`boxlite serve` ignores it); a 409 "already
//! attached" right after a detach is retried briefly.
//!
//! **Files**: A uses the server's tar endpoints. B's `boxlite serve` caps uploads at 2 MiB,
//! takes plain tars only and nests them, so B uploads go through an exec's stdin
//! (`attach_upload`). BoxRun has one-file endpoints only: see `boxrun_files`.

mod attach_upload;
mod auth;
mod boxrun_files;
mod events;
mod proxy;
mod request;
mod sse;
mod tls;
mod transport;
mod wire;
mod ws;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::Value;

pub use request::Dialect;
pub use transport::Tuning;

use crate::client::{
  BoxClient, BoxRecord, ByteStream, CreateBoxParams, ExecEvent, ExecEventStream, ExecOutput, ExecRequest,
  Execution, Features, Snapshot,
};
use crate::config::{Auth, DialectChoice, RemoteConfig};
use crate::error::{Error, Result};
use events::{collect, sse_events, with_deadline, EventKind};
use request::{Route, Spec};
use transport::{Payload, Transport};

/// A timed-out exec is killed within this bound before the timeout is reported.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
/// A detaching attach client waits this long for the server to close its side.
const ATTACH_CLOSE_WAIT: Duration = Duration::from_secs(2);
/// A 409 "already attached" right after a detach is retried this often, this far apart.
const ATTACH_CONFLICT_RETRIES: u32 = 10;
const ATTACH_CONFLICT_DELAY: Duration = Duration::from_millis(100);
/// Pages of a box listing followed at most (1000 boxes each at the contract's maximum).
const MAX_LIST_PAGES: usize = 100;

/// Builds the remote client; does no I/O (dialect detection and auth happen on first use).
pub fn connect(config: &RemoteConfig) -> Result<Arc<dyn BoxClient>> {
  Ok(connect_with(config, Tuning::default())?)
}

/// `connect` with explicit timing (tests shorten the idle and retry bounds).
pub fn connect_with(config: &RemoteConfig, tuning: Tuning) -> Result<Arc<RestClient>> {
  let transport = Arc::new(Transport::new(config, tuning)?);
  Ok(Arc::new(RestClient {
    inner: Arc::new(Inner {
      transport,
      choice: config.dialect,
      prefix: config.prefix.clone(),
      static_token: matches!(config.auth, Auth::Token(_)),
      route: tokio::sync::OnceCell::new(),
      evicting_sse: tokio::sync::OnceCell::new(),
      attachments: Mutex::new(HashMap::new()),
      disposed: AtomicBool::new(false),
    }),
  }))
}

/// The remote-mode client; cheap to share.
pub struct RestClient {
  inner: Arc<Inner>,
}

impl std::fmt::Debug for RestClient {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.debug_struct("RestClient")
      .field("transport", &self.inner.transport)
      .field("dialect", &self.inner.choice)
      .finish()
  }
}

impl RestClient {
  /// The dialect in use (detecting it if needed).
  pub async fn dialect(&self) -> Result<Dialect> {
    Ok(self.inner.route().await?.dialect)
  }

  /// The tenant prefix in use, if the dialect has one.
  pub async fn prefix(&self) -> Result<Option<String>> {
    Ok(self.inner.route().await?.prefix().map(str::to_string))
  }
}

type SharedSink = Arc<tokio::sync::Mutex<ws::WsSink>>;

struct Inner {
  transport: Arc<Transport>,
  choice: DialectChoice,
  prefix: Option<String>,
  static_token: bool,
  route: tokio::sync::OnceCell<Route>,
  /// Whether an SSE-era server is `boxlite serve` rather than the reference server (see
  /// `features`).
  evicting_sse: tokio::sync::OnceCell<bool>,
  /// Open attach sockets (dialect B) by execution id, so stdin and resize reach an execution
  /// whose output is being read (servers allow one attach at a time).
  attachments: Mutex<HashMap<String, Weak<tokio::sync::Mutex<ws::WsSink>>>>,
  disposed: AtomicBool,
}

/// What the next probe of the detection should be, from the last one's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
  Me,
  Info,
  TokenEndpoint,
  Found(Dialect),
  Unknown,
}

fn after_config(status: u16) -> Probe {
  match status {
    200..=299 => Probe::Me,
    404 => Probe::Info,
    _ => Probe::Unknown,
  }
}

fn after_me(status: u16) -> Probe {
  match status {
    200..=299 => Probe::Found(Dialect::Current),
    404 | 405 => Probe::Found(Dialect::Sse),
    401 | 403 => Probe::TokenEndpoint,
    _ => Probe::Unknown,
  }
}

fn after_token_endpoint(status: u16) -> Probe {
  match status {
    404 | 405 => Probe::Found(Dialect::Current),
    _ => Probe::Found(Dialect::Sse),
  }
}

fn after_info(status: u16) -> Probe {
  match status {
    200..=299 => Probe::Found(Dialect::Boxrun),
    _ => Probe::Unknown,
  }
}

/// `path_prefix` (the contract) or `prefix` (real servers) of a `Principal`.
fn principal_prefix(me: &Value) -> Option<String> {
  ["path_prefix", "prefix"]
    .iter()
    .find_map(|k| me.get(*k).and_then(Value::as_str))
    .map(|p| p.trim_matches('/').to_string())
    .filter(|p| !p.is_empty())
}

impl Inner {
  async fn route(&self) -> Result<&Route> {
    if self.disposed.load(Ordering::Acquire) {
      return Err(Error::Disposed);
    }
    self.route.get_or_try_init(|| self.resolve()).await
  }

  async fn resolve(&self) -> Result<Route> {
    let dialect = match self.choice {
      DialectChoice::Auto => self.detect().await?,
      DialectChoice::BoxliteSse => Dialect::Sse,
      DialectChoice::BoxliteCurrent => Dialect::Current,
      DialectChoice::Boxrun => Dialect::Boxrun,
    };
    let api_path = self.transport.api_path();
    let prefix = match (dialect, &self.prefix) {
      (Dialect::Boxrun, _) => None,
      (_, Some(prefix)) => Some(prefix.clone()),
      (Dialect::Sse, None) => Some("default".to_string()),
      (Dialect::Current, None) => {
        let me = Route::new(Dialect::Current, api_path, None).me();
        match self.transport.json(&me, Payload::None).await {
          Ok(principal) => principal_prefix(&principal),
          // A server without `/v1/me` has no tenant segment either.
          Err(Error::Api(api)) if api.status == 404 => None,
          Err(e) => return Err(e),
        }
      }
    };
    tracing::debug!(?dialect, prefix = %prefix.as_deref().unwrap_or("-"), choice = ?self.choice, "route");
    Ok(Route::new(dialect, api_path, prefix.as_deref()))
  }

  async fn status_of(&self, spec: &Spec) -> Result<u16> {
    match self.transport.send(spec, Payload::None).await {
      Ok(response) => Ok(response.status().as_u16()),
      Err(Error::Api(api)) => Ok(api.status),
      Err(e) => Err(e),
    }
  }

  async fn detect(&self) -> Result<Dialect> {
    let probes = Route::new(Dialect::Sse, self.transport.api_path(), None);
    let config = probes.config();
    let mut last = format!("GET {}", config.path);
    let status = self.status_of(&config).await?;
    // Why the dialect was chosen: each probe with its answer.
    let mut why = vec![format!("{last} {status}")];
    let mut next = after_config(status);
    loop {
      match next {
        Probe::Found(dialect) => tracing::debug!(?dialect, why = %why.join(", "), "dialect detected"),
        Probe::Unknown => tracing::debug!(why = %why.join(", "), "dialect detection failed"),
        _ => {}
      }
      next = match next {
        Probe::Found(dialect) => return Ok(dialect),
        Probe::Unknown => {
          return Err(Error::Protocol {
            method: "GET".into(),
            path: probes.config().path,
            message: format!(
              "the server speaks none of the known dialects (sse, current, boxrun); last probe: {last}. \
               Check apiUrl, or set the dialect option"
            ),
          })
        }
        Probe::Me => {
          let mut me = probes.me();
          // Only a static token goes along: fetching an OAuth2 token presumes dialect A.
          me.auth = self.static_token;
          last = format!("GET {}", me.path);
          let status = self.status_of(&me).await?;
          why.push(format!("{last} {status}"));
          after_me(status)
        }
        Probe::TokenEndpoint => {
          let token = probes.token("grant_type=client_credentials".into());
          last = format!("POST {}", token.path);
          let status = self.status_of(&token).await?;
          why.push(format!("{last} {status}"));
          after_token_endpoint(status)
        }
        Probe::Info => {
          let info = Route::new(Dialect::Boxrun, self.transport.api_path(), None).config();
          last = format!("GET {}", info.path);
          let status = self.status_of(&info).await?;
          why.push(format!("{last} {status}"));
          after_info(status)
        }
      };
    }
  }

  fn malformed(&self, spec: &Spec, what: &str, value: &Value) -> Error {
    let shown = wire::excerpt(value.to_string().as_bytes());
    self
      .transport
      .protocol(spec, format!("expected {what}, got: {shown}"))
  }

  async fn json(&self, spec: &Spec) -> Result<Value> {
    self.transport.json(spec, Payload::None).await
  }

  async fn box_reply(&self, spec: &Spec, payload: Payload) -> Result<BoxRecord> {
    let value = self.transport.json(spec, payload).await?;
    wire::parse_box(&value).ok_or_else(|| self.malformed(spec, "a box", &value))
  }

  async fn start_exec(&self, route: &Route, box_id: &str, request: &ExecRequest) -> Result<Execution> {
    if request.cmd.is_empty() || request.cmd[0].is_empty() {
      return Err(Error::InvalidArgument {
        argument: "cmd".into(),
        problem: "must be a non-empty argv array".into(),
      });
    }
    if request
      .timeout_seconds
      .is_some_and(|t| !t.is_finite() || t <= 0.0)
    {
      return Err(Error::InvalidArgument {
        argument: "timeout_seconds".into(),
        problem: "must be a positive number".into(),
      });
    }
    let spec = route.exec(box_id, wire::exec_body(route.dialect, request));
    let value = self.transport.json(&spec, Payload::None).await?;
    wire::parse_execution(&value, box_id).ok_or_else(|| self.malformed(&spec, "an execution id", &value))
  }

  /// The output of an execution as events, ending with `Exit` (or an error).
  async fn open_output(
    self: &Arc<Self>,
    route: &Route,
    box_id: &str,
    exec_id: &str,
  ) -> Result<ExecEventStream> {
    let spec = route.exec_output(box_id, exec_id);
    match route.dialect {
      Dialect::Current => {
        let (sink, source) = self.attach(&spec).await?;
        let sink: SharedSink = Arc::new(tokio::sync::Mutex::new(sink));
        let guard = Arc::new(AttachGuard {
          inner: Arc::downgrade(self),
          exec_id: exec_id.to_string(),
          sink: sink.clone(),
        });
        self
          .attachments
          .lock()
          .unwrap_or_else(|p| p.into_inner())
          .insert(exec_id.to_string(), Arc::downgrade(&sink));
        let idle = self.transport.tuning.stream_idle_timeout;
        let events = Box::pin(ws::events(source, idle, &spec, Some(guard)));
        Ok(crate::diag::traced_exec(events, exec_id, "websocket"))
      }
      Dialect::Sse | Dialect::Boxrun => {
        let bytes = events::open_sse(&self.transport, &spec).await?;
        let kind = if route.dialect == Dialect::Sse {
          EventKind::SseEra
        } else {
          EventKind::Boxrun(Default::default(), route.exec_status(box_id, exec_id))
        };
        let events = sse_events(bytes, kind, &spec, self.transport.clone());
        Ok(crate::diag::traced_exec(events, exec_id, "sse"))
      }
    }
  }

  /// Attaches to an execution. Servers allow one client at a time and notice a detach a moment
  /// after it happens, so a refusal as "already attached" is retried for a short while.
  async fn attach(&self, spec: &Spec) -> Result<(ws::WsSink, ws::WsSource)> {
    let mut attempts = 0;
    loop {
      match ws::connect(&self.transport, spec).await {
        Err(Error::Api(api)) if api.status == 409 && attempts < ATTACH_CONFLICT_RETRIES => {
          attempts += 1;
          tokio::time::sleep(ATTACH_CONFLICT_DELAY).await;
        }
        other => return other,
      }
    }
  }

  /// Ends an execution; failures (already gone, already finished) do not matter here.
  async fn kill(&self, route: &Route, box_id: &str, exec_id: &str) {
    let spec = route.exec_kill(box_id, exec_id);
    let _ = tokio::time::timeout(KILL_TIMEOUT, self.transport.empty(&spec, Payload::None)).await;
  }

  async fn exec(self: &Arc<Self>, route: &Route, box_id: &str, request: ExecRequest) -> Result<ExecOutput> {
    let deadline = request.timeout_seconds.map(Duration::from_secs_f64);
    // The started execution's guard: if this call is abandoned (dropped) before the command
    // ends, the guard kills it; a timeout kills it explicitly first.
    let started: Arc<Mutex<Option<KillOnDrop>>> = Arc::new(Mutex::new(None));
    let name = request_name(&request);
    let work = {
      let started = started.clone();
      async move {
        let execution = self.start_exec(route, box_id, &request).await?;
        *started.lock().unwrap_or_else(|p| p.into_inner()) =
          Some(self.kill_on_drop(route, box_id, &execution.id));
        let events = self.open_output(route, box_id, &execution.id).await?;
        let output = collect(events).await;
        if output.is_ok() {
          if let Some(guard) = started.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            guard.disarm();
          }
        }
        output
      }
    };
    let Some(limit) = deadline else { return work.await };
    match tokio::time::timeout(limit, work).await {
      Ok(result) => result,
      Err(_) => {
        let guard = started.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut guard) = guard {
          guard.disarm();
          self.kill(route, box_id, &guard.exec_id).await;
        }
        Err(Error::Timeout {
          operation: format!("exec of '{name}'"),
          after_ms: limit.as_millis() as u64,
        })
      }
    }
  }

  fn kill_on_drop(self: &Arc<Self>, route: &Route, box_id: &str, exec_id: &str) -> KillOnDrop {
    KillOnDrop {
      inner: self.clone(),
      route: route.clone(),
      box_id: box_id.to_string(),
      exec_id: exec_id.to_string(),
      armed: true,
      runtime: tokio::runtime::Handle::try_current().ok(),
    }
  }

  /// Starts a command and streams its output. The stream owns the execution: dropping it
  /// before the exit event (a cancelled reader) kills the command.
  async fn exec_stream(
    self: &Arc<Self>,
    route: &Route,
    box_id: &str,
    request: ExecRequest,
  ) -> Result<ExecEventStream> {
    let begun = tokio::time::Instant::now();
    let execution = self.start_exec(route, box_id, &request).await?;
    let guard = self.kill_on_drop(route, box_id, &execution.id);
    let events = self.open_output(route, box_id, &execution.id).await?;
    let Some(limit) = request.timeout_seconds.map(Duration::from_secs_f64) else {
      return Ok(owned(events, guard));
    };
    let killer = {
      let inner = self.clone();
      let route = route.clone();
      let box_id = box_id.to_string();
      let exec_id = execution.id.clone();
      move || async move { inner.kill(&route, &box_id, &exec_id).await }
    };
    let operation = format!("exec of '{}'", request_name(&request));
    Ok(owned(
      with_deadline(events, begun + limit, limit, operation, killer),
      guard,
    ))
  }

  /// Runs a helper command (BoxRun file staging) and fails unless it exits 0.
  async fn run(
    self: &Arc<Self>,
    route: &Route,
    box_id: &str,
    argv: &[&str],
    what: &str,
  ) -> Result<ExecOutput> {
    let request = ExecRequest {
      cmd: argv.iter().map(|s| s.to_string()).collect(),
      ..Default::default()
    };
    let output = self.exec(route, box_id, request).await?;
    if output.exit_code != 0 {
      let detail = output.stderr.trim();
      return Err(Error::InvalidArgument {
        argument: "path".into(),
        problem: format!(
          "{what} failed in the box (exit {}): {}",
          output.exit_code,
          wire::excerpt(detail.as_bytes())
        ),
      });
    }
    Ok(output)
  }
}

/// Start and stop are idempotent in BoxLite; BoxRun refuses a start of a running box (which
/// its synchronous create returns) and a stop of a stopped one: the same outcome, so success.
fn already_there(result: Result<()>, code: &str) -> Result<()> {
  match result {
    Err(Error::Api(api)) if api.code.as_deref() == Some(code) => Ok(()),
    other => other,
  }
}

fn request_name(request: &ExecRequest) -> String {
  request.cmd.first().cloned().unwrap_or_default()
}

/// Kills an execution this client started for a caller who went away before its end.
struct KillOnDrop {
  inner: Arc<Inner>,
  route: Route,
  box_id: String,
  exec_id: String,
  armed: bool,
  /// The runtime the guard was made on: a cancelled JS stream is dropped on the JS thread,
  /// which has no runtime of its own to spawn the kill on.
  runtime: Option<tokio::runtime::Handle>,
}

impl KillOnDrop {
  fn disarm(&mut self) {
    self.armed = false;
  }
}

impl Drop for KillOnDrop {
  fn drop(&mut self) {
    if !self.armed {
      return;
    }
    let inner = self.inner.clone();
    let route = self.route.clone();
    let box_id = std::mem::take(&mut self.box_id);
    let exec_id = std::mem::take(&mut self.exec_id);
    spawn_cleanup(&self.runtime, async move {
      inner.kill(&route, &box_id, &exec_id).await
    });
  }
}

/// Runs a guard's cleanup from its `Drop`: on the runtime the guard was made on (a cancelled JS
/// stream is dropped on the JS thread, which has no runtime of its own), else the current one.
pub(super) fn spawn_cleanup(
  runtime: &Option<tokio::runtime::Handle>,
  work: impl std::future::Future<Output = ()> + Send + 'static,
) {
  if let Some(handle) = runtime
    .clone()
    .or_else(|| tokio::runtime::Handle::try_current().ok())
  {
    handle.spawn(work);
  }
}

/// `events` owned by `guard`: the exit event disarms it (so does a timeout, which has killed
/// the command already); anything else that ends the stream early kills the command.
fn owned(events: ExecEventStream, guard: KillOnDrop) -> ExecEventStream {
  Box::pin(futures_util::stream::unfold(
    Some((events, guard)),
    |state| async move {
      let (mut events, mut guard) = state?;
      match events.next().await {
        Some(Ok(ExecEvent::Exit(code))) => {
          guard.disarm();
          Some((Ok(ExecEvent::Exit(code)), None))
        }
        Some(Ok(event)) => Some((Ok(event), Some((events, guard)))),
        Some(Err(error)) => {
          if error.code() == "timeout" {
            guard.disarm();
          }
          Some((Err(error), None))
        }
        None => None,
      }
    },
  ))
}

/// Unregisters an attach socket when its event stream goes away.
struct AttachGuard {
  inner: Weak<Inner>,
  exec_id: String,
  sink: SharedSink,
}

impl Drop for AttachGuard {
  fn drop(&mut self) {
    if let Some(inner) = self.inner.upgrade() {
      let mut map = inner.attachments.lock().unwrap_or_else(|p| p.into_inner());
      if map
        .get(&self.exec_id)
        .is_some_and(|w| w.upgrade().is_none_or(|s| Arc::ptr_eq(&s, &self.sink)))
      {
        map.remove(&self.exec_id);
      }
    }
  }
}

#[async_trait]
impl BoxClient for RestClient {
  async fn create_box(&self, params: CreateBoxParams) -> Result<BoxRecord> {
    let route = self.inner.route().await?;
    if route.dialect == Dialect::Boxrun && params.rootfs_path.is_some() {
      return Err(route.unsupported("createBox with rootfs_path"));
    }
    let spec = route.create_box(wire::create_body(route.dialect, &params));
    self.inner.box_reply(&spec, Payload::None).await
  }

  async fn get_box(&self, box_id: &str) -> Result<BoxRecord> {
    let route = self.inner.route().await?;
    self.inner.box_reply(&route.get_box(box_id), Payload::None).await
  }

  async fn list_boxes(&self, status: Option<String>, page_size: Option<u32>) -> Result<Vec<BoxRecord>> {
    let route = self.inner.route().await?;
    let mut boxes = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_LIST_PAGES {
      let spec = route.list_boxes(status.as_deref(), page_size, token.as_deref());
      let value = self.inner.json(&spec).await?;
      let (page, next) =
        wire::parse_box_list(&value).ok_or_else(|| self.inner.malformed(&spec, "a list of boxes", &value))?;
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
    let route = self.inner.route().await?;
    match self
      .inner
      .transport
      .empty(&route.delete_box(box_id, force), Payload::None)
      .await
    {
      // The SSE-era reference server with boxlite SDK 0.10.8 answers the delete of an unknown
      // box with 500 `InternalError` "not found: <id>" (server-apis.md A.2): a not-found.
      Err(Error::Api(api))
        if route.dialect == Dialect::Sse && api.status == 500 && api.message.starts_with("not found:") =>
      {
        Err(Error::NotFound {
          what: "box",
          id: box_id.to_string(),
        })
      }
      other => other,
    }
  }

  async fn start_box(&self, box_id: &str) -> Result<()> {
    self.start_box_record(box_id).await.map(drop)
  }

  async fn start_box_record(&self, box_id: &str) -> Result<Option<BoxRecord>> {
    let route = self.inner.route().await?;
    let result = self
      .inner
      .transport
      .json(&route.lifecycle(box_id, "start"), Payload::None)
      .await;
    match result {
      // Every dialect answers a start with the box (server-apis.md); anything else: poll.
      Ok(value) => Ok(wire::parse_box(&value)),
      // The box started; only its answer was unreadable.
      Err(Error::Protocol { .. }) => Ok(None),
      Err(error) => already_there(Err(error), "BOX_ALREADY_RUNNING").map(|()| None),
    }
  }

  async fn stop_box(&self, box_id: &str) -> Result<()> {
    let route = self.inner.route().await?;
    let result = self
      .inner
      .transport
      .empty(&route.lifecycle(box_id, "stop"), Payload::None)
      .await;
    already_there(result, "BOX_NOT_RUNNING")
  }

  async fn exec(&self, box_id: &str, request: ExecRequest) -> Result<ExecOutput> {
    let route = self.inner.route().await?.clone();
    self.inner.exec(&route, box_id, request).await
  }

  async fn exec_stream(&self, box_id: &str, request: ExecRequest) -> Result<ExecEventStream> {
    let route = self.inner.route().await?.clone();
    self.inner.exec_stream(&route, box_id, request).await
  }

  async fn exec_async(&self, box_id: &str, request: ExecRequest) -> Result<Execution> {
    let route = self.inner.route().await?;
    self.inner.start_exec(route, box_id, &request).await
  }

  async fn get_exec_output(&self, box_id: &str, exec_id: &str) -> Result<ExecEventStream> {
    let route = self.inner.route().await?.clone();
    self.inner.open_output(&route, box_id, exec_id).await
  }

  async fn send_exec_input(&self, box_id: &str, exec_id: &str, data: Bytes, close: bool) -> Result<()> {
    let route = self.inner.route().await?;
    match route.dialect {
      Dialect::Sse => {
        let spec = route.exec_input(box_id, exec_id, close)?;
        let only_close = close && data.is_empty();
        match self.inner.transport.empty(&spec, Payload::Bytes(data)).await {
          // Closing the stdin of a command that already ended (409 "stdin is not available"):
          // what was asked for is the case.
          Err(Error::Api(api)) if only_close && api.status == 409 => Ok(()),
          other => other,
        }
      }
      Dialect::Current => {
        let mut frames = Vec::new();
        if !data.is_empty() {
          frames.push(ws::stdin_frame(data));
        }
        if close {
          frames.push(ws::stdin_eof_frame());
        }
        let spec = route.exec_output(box_id, exec_id);
        let live = self
          .inner
          .attachments
          .lock()
          .unwrap_or_else(|p| p.into_inner())
          .get(exec_id)
          .and_then(Weak::upgrade);
        match live {
          Some(sink) => ws::send(&mut *sink.lock().await, frames, &spec).await,
          None => {
            // Nobody reads the output right now: attach briefly (the server keeps the output
            // in its backlog for the next reader) and detach cleanly.
            let (mut sink, mut source) = ws::connect(&self.inner.transport, &spec).await?;
            frames.push(tokio_tungstenite::tungstenite::Message::Close(None));
            ws::send(&mut sink, frames, &spec).await?;
            // Wait for the server's side of the close, so the next attach is not refused as a
            // second client.
            let _ = tokio::time::timeout(ATTACH_CLOSE_WAIT, async {
              while source.next().await.is_some() {}
            })
            .await;
            Ok(())
          }
        }
      }
      Dialect::Boxrun => Err(route.unsupported("sendExecInput (BoxRun executions have no stdin)")),
    }
  }

  async fn signal_exec(&self, box_id: &str, exec_id: &str, signal: i32) -> Result<()> {
    let route = self.inner.route().await?;
    let spec = match (route.dialect, signal) {
      // B only forwards a whitelist without SIGKILL; killing is `DELETE` on the execution.
      (Dialect::Current, 9) => route.exec_kill(box_id, exec_id),
      (Dialect::Boxrun, 1 | 2 | 9 | 15) => route.exec_kill(box_id, exec_id),
      _ => route.exec_signal(box_id, exec_id, signal)?,
    };
    self.inner.transport.empty(&spec, Payload::None).await
  }

  async fn resize_exec(&self, box_id: &str, exec_id: &str, cols: u16, rows: u16) -> Result<()> {
    if cols == 0 || rows == 0 {
      return Err(Error::InvalidArgument {
        argument: "cols/rows".into(),
        problem: "must be at least 1".into(),
      });
    }
    let route = self.inner.route().await?;
    let spec = route.exec_resize(box_id, exec_id, cols, rows)?;
    self.inner.transport.empty(&spec, Payload::None).await
  }

  async fn upload_files(&self, box_id: &str, path: &str, tar: ByteStream) -> Result<()> {
    let route = self.inner.route().await?.clone();
    match route.dialect {
      Dialect::Boxrun => return self.inner.boxrun_upload(&route, box_id, path, tar).await,
      Dialect::Current => return self.inner.attach_upload(&route, box_id, path, tar).await,
      Dialect::Sse => {}
    }
    let spec = route.upload(box_id, path)?;
    self.inner.transport.empty(&spec, Payload::Stream(tar)).await
  }

  async fn download_files(&self, box_id: &str, path: &str) -> Result<ByteStream> {
    let route = self.inner.route().await?.clone();
    if route.dialect == Dialect::Boxrun {
      return self.inner.boxrun_download(&route, box_id, path).await;
    }
    let spec = route.download(box_id, path)?;
    let response = self.inner.transport.send(&spec, Payload::None).await?;
    Ok(self.inner.transport.body_stream(&spec, response))
  }

  async fn create_snapshot(&self, box_id: &str, name: &str) -> Result<Snapshot> {
    let route = self.inner.route().await?;
    let spec = route.create_snapshot(box_id, name)?;
    let value = self.inner.json(&spec).await?;
    wire::parse_snapshot(&value, box_id).ok_or_else(|| self.inner.malformed(&spec, "a snapshot", &value))
  }

  async fn list_snapshots(&self, box_id: &str) -> Result<Vec<Snapshot>> {
    let route = self.inner.route().await?;
    let spec = route.list_snapshots(box_id)?;
    let value = self.inner.json(&spec).await?;
    wire::parse_snapshot_list(&value, box_id)
      .ok_or_else(|| self.inner.malformed(&spec, "a list of snapshots", &value))
  }

  async fn restore_snapshot(&self, box_id: &str, name: &str) -> Result<()> {
    let route = self.inner.route().await?;
    self
      .inner
      .transport
      .empty(&route.restore_snapshot(box_id, name)?, Payload::None)
      .await
  }

  async fn delete_snapshot(&self, box_id: &str, name: &str) -> Result<()> {
    let route = self.inner.route().await?;
    self
      .inner
      .transport
      .empty(&route.delete_snapshot(box_id, name)?, Payload::None)
      .await
  }

  async fn clone_box(&self, box_id: &str, name: Option<String>) -> Result<BoxRecord> {
    let route = self.inner.route().await?;
    self
      .inner
      .box_reply(&route.clone_box(box_id, name.as_deref())?, Payload::None)
      .await
  }

  async fn export_box(&self, box_id: &str) -> Result<ByteStream> {
    let route = self.inner.route().await?;
    let spec = route.export_box(box_id)?;
    let response = self.inner.transport.send(&spec, Payload::None).await?;
    Ok(self.inner.transport.body_stream(&spec, response))
  }

  async fn import_box(&self, archive: ByteStream) -> Result<BoxRecord> {
    let route = self.inner.route().await?;
    let spec = route.import_box()?;
    self.inner.box_reply(&spec, Payload::Stream(archive)).await
  }

  async fn get_metrics(&self) -> Result<Value> {
    let route = self.inner.route().await?;
    self.inner.json(&route.metrics()?).await
  }

  async fn get_box_metrics(&self, box_id: &str) -> Result<Value> {
    let route = self.inner.route().await?;
    self.inner.json(&route.box_metrics(box_id)?).await
  }

  async fn get_config(&self) -> Result<Value> {
    let route = self.inner.route().await?;
    self.inner.json(&route.config()).await
  }

  /// What the file layer may rely on, per dialect and server:
  /// * SSE era, reference server: everything. SSE-era `boxlite serve` (recognised by its
  ///   four-flag `/v1/config` without `defaults`) forgets an execution once its output is
  ///   opened (no stdin while reading) and nests uploads under `extracted/`; its downloads,
  ///   like current serve's, are `./` plus `./<name>/…`, which `archive` unwraps.
  /// * Current: uploads go through an exec's stdin (`attach_upload`: no size cap, no
  ///   nesting); downloads use the file endpoint.
  /// * BoxRun: tar upload and download are emulated here (staged parts and an in-box `tar`),
  ///   without size limit; executions have no stdin.
  async fn features(&self) -> Result<Features> {
    let route = self.inner.route().await?;
    Ok(match route.dialect {
      Dialect::Sse => {
        let config = route.config();
        let evicting = *self
          .inner
          .evicting_sse
          .get_or_init(|| async {
            match self.inner.json(&config).await {
              Ok(value) => value.get("defaults").is_none() && value.get("capabilities").is_some(),
              Err(_) => false,
            }
          })
          .await;
        Features {
          tar_upload: !evicting,
          tar_download: true,
          exec_stdin: !evicting,
        }
      }
      Dialect::Current => Features {
        tar_upload: true,
        tar_download: true,
        exec_stdin: true,
      },
      Dialect::Boxrun => Features {
        tar_upload: true,
        tar_download: true,
        exec_stdin: false,
      },
    })
  }

  async fn backend_name(&self) -> Result<String> {
    let route = self.inner.route().await?;
    let name = route.dialect.backend();
    Ok(match (route.dialect, self.features().await?.exec_stdin) {
      // SSE-era `boxlite serve` (see `features`) is the SSE dialect without stdin.
      (Dialect::Sse, false) => format!("{name}: boxlite serve of that era"),
      _ => name.to_string(),
    })
  }

  async fn dispose(&self) -> Result<()> {
    self.inner.disposed.store(true, Ordering::Release);
    self
      .inner
      .attachments
      .lock()
      .unwrap_or_else(|p| p.into_inner())
      .clear();
    Ok(())
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use serde_json::json;

  #[test]
  fn probe_matrix_identifies_each_dialect() {
    // (config, me, token endpoint, info) → dialect, following server-apis.md §0.2.
    assert_eq!(after_config(200), Probe::Me);
    assert_eq!(after_me(200), Probe::Found(Dialect::Current));
    assert_eq!(after_me(404), Probe::Found(Dialect::Sse));
    assert_eq!(after_me(401), Probe::TokenEndpoint);
    assert_eq!(after_token_endpoint(404), Probe::Found(Dialect::Current));
    assert_eq!(after_token_endpoint(400), Probe::Found(Dialect::Sse));
    assert_eq!(after_token_endpoint(401), Probe::Found(Dialect::Sse));
    assert_eq!(after_config(404), Probe::Info);
    assert_eq!(after_info(200), Probe::Found(Dialect::Boxrun));
    assert_eq!(after_info(404), Probe::Unknown);
    assert_eq!(after_config(500), Probe::Unknown);
  }

  #[test]
  fn principal_prefix_reads_path_prefix_then_prefix() {
    assert_eq!(
      principal_prefix(&json!({"path_prefix": "us-east/team-42"})).as_deref(),
      Some("us-east/team-42")
    );
    assert_eq!(
      principal_prefix(&json!({"prefix": "org1", "sub": "x"})).as_deref(),
      Some("org1")
    );
    assert_eq!(
      principal_prefix(&json!({"path_prefix": null, "prefix": null})),
      None
    );
    assert_eq!(principal_prefix(&json!({"prefix": ""})), None);
  }

  #[test]
  fn connect_does_no_io_and_debug_hides_the_token() {
    let config = RemoteConfig {
      api_url: url::Url::parse("http://127.0.0.1:1").unwrap(),
      prefix: None,
      auth: Auth::Token(crate::config::Secret::new("tok-secret-1")),
      dialect: DialectChoice::Auto,
    };
    let client = connect_with(&config, Tuning::default()).unwrap();
    assert!(!format!("{client:?}").contains("tok-secret-1"));
  }
}
