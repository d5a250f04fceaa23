//! Executions over any dialect: starting a command, reading its output (SSE or the attach
//! WebSocket, per the dialect's `Output`), stdin, kills, and ownership. `exec` and
//! `exec_stream` own the execution they start: a caller that drops the future or the stream
//! before the exit kills it. A stream that breaks, goes silent past the idle bound or ends
//! without an exit event ends with an error — except on BoxRun, whose numbered events let a
//! broken or stalled stream be re-read and resumed without loss or repetition (`events.rs`). A working directory is entered by the command itself (see
//! `wire::effective_argv`).
//!
//! Exec timeouts: this client owns the deadline of `exec` and `exec_stream` in remote mode
//! (the sandbox layer runs no timer, see docs/architecture.md). The timeout also goes to the
//! server, which may kill the command in the guest first; at the deadline the client kills the
//! execution through the dialect's kill route and reports `Error::Timeout` either way (see
//! docs/dialects.md).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use super::dialect::{Output, Stdin};
use super::events::{collect, open_sse, sse_events, with_deadline, EventKind};
use super::request::{Route, Spec};
use super::transport::{Payload, Transport};
use super::{wire, ws};
use crate::client::{killed_at_deadline, ExecEvent, ExecEventStream, ExecOutput, ExecRequest, Execution};
use crate::error::{Error, Result};

/// The prelude of a command whose output is read over the attach WebSocket: it waits for one
/// line on stdin (sent once the socket is open) before the command starts (see `gate`).
const GATE_SCRIPT: &str = r#"read -r sandbank_gate; exec "$@""#;

/// A timed-out exec is killed within this bound before the timeout is reported.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
/// A detaching attach client waits this long for the server to close its side.
const ATTACH_CLOSE_WAIT: Duration = Duration::from_secs(2);
/// A 409 "already attached" right after a detach is retried this often, this far apart.
const ATTACH_CONFLICT_RETRIES: u32 = 10;
const ATTACH_CONFLICT_DELAY: Duration = Duration::from_millis(100);

type SharedSink = Arc<tokio::sync::Mutex<ws::WsSink>>;

/// Runs executions for one client; cheap to share.
pub(super) struct Executor {
  pub transport: Arc<Transport>,
  /// Open attach sockets by execution id, so stdin reaches an execution whose output is being
  /// read (servers allow one attach at a time).
  attachments: Mutex<HashMap<String, Weak<tokio::sync::Mutex<ws::WsSink>>>>,
}

impl Executor {
  pub fn new(transport: Arc<Transport>) -> Self {
    Executor {
      transport,
      attachments: Mutex::new(HashMap::new()),
    }
  }

  /// Forgets every open attach socket (the client is being disposed).
  pub fn detach_all(&self) {
    self.attachments.lock().unwrap_or_else(|p| p.into_inner()).clear();
  }

  /// Starts a command (without reading its output).
  pub async fn start(&self, route: &Route, box_id: &str, request: &ExecRequest) -> Result<Execution> {
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
    let spec = route.profile().exec(route, box_id, request);
    let value = self.transport.json(&spec, Payload::None).await?;
    wire::parse_execution(&value, box_id)
      .ok_or_else(|| self.transport.malformed(&spec, "an execution id", &value))
  }

  /// The output of an execution as events, ending with `Exit` (or an error).
  /// `gated`: the command waits for the gate line (it was started with `gated`), which is sent
  /// as soon as the output is attached. `early`: a connection for the attach WebSocket, opened
  /// beforehand (`start_owned`).
  pub async fn open_output(
    self: &Arc<Self>,
    route: &Route,
    box_id: &str,
    exec_id: &str,
    gated: bool,
    early: Option<TcpStream>,
  ) -> Result<ExecEventStream> {
    let profile = route.profile();
    let spec = profile.output(route, box_id, exec_id);
    let kind = match profile.output_kind() {
      Output::Attach => return self.attached_output(&spec, exec_id, gated, early).await,
      Output::SseEra => EventKind::SseEra,
      Output::BoxrunEvents => {
        EventKind::Boxrun(Default::default(), Box::new(route.exec_status(box_id, exec_id)))
      }
    };
    let bytes = open_sse(&self.transport, &spec).await?;
    let events = sse_events(bytes, kind, &spec, self.transport.clone());
    Ok(crate::diag::traced_exec(events, exec_id, "sse"))
  }

  async fn attached_output(
    self: &Arc<Self>,
    spec: &Spec,
    exec_id: &str,
    gated: bool,
    early: Option<TcpStream>,
  ) -> Result<ExecEventStream> {
    let (mut sink, source) = self.attach_on(spec, early).await?;
    if gated {
      ws::send(&mut sink, vec![ws::stdin_frame(Bytes::from_static(b"\n"))], spec).await?;
    }
    let sink: SharedSink = Arc::new(tokio::sync::Mutex::new(sink));
    let guard = Arc::new(AttachGuard {
      executor: Arc::downgrade(self),
      exec_id: exec_id.to_string(),
      sink: sink.clone(),
    });
    self
      .attachments
      .lock()
      .unwrap_or_else(|p| p.into_inner())
      .insert(exec_id.to_string(), Arc::downgrade(&sink));
    let idle = self.transport.tuning.stream_idle_timeout;
    let frames = ws::read_ahead(source, ws::READ_AHEAD_BYTES);
    let events = Box::pin(ws::events(frames, idle, spec, Some(guard)));
    Ok(crate::diag::traced_exec(events, exec_id, "websocket"))
  }

  /// Attaches to an execution. Servers allow one client at a time and notice a detach a moment
  /// after it happens, so a refusal as "already attached" is retried for a short while.
  pub async fn attach(&self, spec: &Spec) -> Result<(ws::WsSink, ws::WsSource)> {
    self.attach_on(spec, None).await
  }

  /// `attach`, on `early` (a connection opened beforehand) for the first attempt.
  async fn attach_on(&self, spec: &Spec, mut early: Option<TcpStream>) -> Result<(ws::WsSink, ws::WsSource)> {
    let mut attempts = 0;
    loop {
      match self.transport.open_websocket_on(spec, early.take()).await {
        Err(Error::Api(api)) if api.status == 409 && attempts < ATTACH_CONFLICT_RETRIES => {
          attempts += 1;
          tokio::time::sleep(ATTACH_CONFLICT_DELAY).await;
        }
        other => return other,
      }
    }
  }

  /// Whether a command this client starts and reads itself is gated (`GATE_SCRIPT`): over the
  /// attach WebSocket the server starts the command before anyone attaches and keeps only a
  /// small backlog for the first reader (256 KiB in `boxlite serve` 0.11), so a command that
  /// writes more before the socket opens would lose the head of its output. A tty command is
  /// not gated (the pty would echo the gate line); it is interactive and starts quietly.
  fn gates(route: &Route, request: &ExecRequest) -> bool {
    Self::attached(route) && request.tty != Some(true)
  }

  /// Whether the route's output comes over an attach WebSocket.
  fn attached(route: &Route) -> bool {
    match route.profile().output_kind() {
      Output::Attach => true,
      Output::SseEra | Output::BoxrunEvents => false,
    }
  }

  /// Starts `request`, behind the gate when `gates` says so; returns the execution, whether it
  /// is gated, and, when its output comes over an attach WebSocket, a connection for it opened
  /// while the start request was on its way (one round trip less per exec; `preconnect`).
  async fn start_owned(
    &self,
    route: &Route,
    box_id: &str,
    request: &ExecRequest,
  ) -> Result<(Execution, bool, Option<TcpStream>)> {
    let attach = Self::attached(route);
    let gated = Self::gates(route, request);
    let gated_request;
    let request = if gated {
      let mut cmd = vec!["sh".into(), "-c".into(), GATE_SCRIPT.into(), "sh".into()];
      cmd.extend(request.effective_argv());
      gated_request = ExecRequest {
        cmd,
        working_dir: None,
        ..request.clone()
      };
      &gated_request
    } else {
      request
    };
    let early = async {
      Ok(match attach {
        true => self.transport.preconnect().await,
        false => None,
      })
    };
    let (execution, early) = tokio::try_join!(self.start(route, box_id, request), early)?;
    Ok((execution, gated, early))
  }

  /// Writes stdin the way the dialect takes it.
  pub async fn send_input(
    &self,
    route: &Route,
    box_id: &str,
    exec_id: &str,
    data: Bytes,
    close: bool,
  ) -> Result<()> {
    let profile = route.profile();
    match profile.stdin() {
      Stdin::Http => {
        let spec = profile.input(route, box_id, exec_id, close)?;
        let only_close = close && data.is_empty();
        match self.transport.empty(&spec, Payload::Bytes(data)).await {
          // Closing the stdin of a command that already ended (409 "stdin is not available"):
          // what was asked for is the case.
          Err(Error::Api(api)) if only_close && api.status == 409 => Ok(()),
          other => other,
        }
      }
      Stdin::Attach => {
        let mut frames = Vec::new();
        if !data.is_empty() {
          frames.push(ws::stdin_frame(data));
        }
        if close {
          frames.push(ws::stdin_eof_frame());
        }
        let spec = profile.output(route, box_id, exec_id);
        let live = self
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
            let (mut sink, mut source) = self.transport.open_websocket(&spec).await?;
            frames.push(Message::Close(None));
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
      Stdin::Unavailable => Err(route.unsupported("sendExecInput (this server's executions have no stdin)")),
    }
  }

  /// Ends an execution; failures (already gone, already finished) do not matter here.
  pub async fn kill(&self, route: &Route, box_id: &str, exec_id: &str) {
    let spec = route.profile().kill(route, box_id, exec_id);
    let _ = tokio::time::timeout(KILL_TIMEOUT, self.transport.empty(&spec, Payload::None)).await;
  }

  /// Runs a command to its end and collects its output.
  pub async fn exec(
    self: &Arc<Self>,
    route: &Route,
    box_id: &str,
    request: ExecRequest,
  ) -> Result<ExecOutput> {
    let deadline = request.timeout_seconds.map(Duration::from_secs_f64);
    // The started execution's guard: if this call is abandoned (dropped) before the command
    // ends, the guard kills it; a timeout kills it explicitly first.
    let started: Arc<Mutex<Option<KillOnDrop>>> = Arc::new(Mutex::new(None));
    let name = request_name(&request);
    let work = {
      let started = started.clone();
      async move {
        let (execution, gated, early) = self.start_owned(route, box_id, &request).await?;
        *started.lock().unwrap_or_else(|p| p.into_inner()) =
          Some(self.kill_on_drop(route, box_id, &execution.id));
        let events = self
          .open_output(route, box_id, &execution.id, gated, early)
          .await?;
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
    let begun = tokio::time::Instant::now();
    match tokio::time::timeout(limit, work).await {
      // The server's in-guest kill may win the race against the backstop: a command killed
      // (SIGKILL) once the deadline has passed timed out, whoever killed it.
      Ok(Ok(output)) if killed_at_deadline(output.exit_code, begun.elapsed(), limit) => Err(Error::Timeout {
        operation: format!("exec of '{name}'"),
        after_ms: limit.as_millis() as u64,
      }),
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

  /// A guard that kills the execution when dropped armed.
  pub fn kill_on_drop(self: &Arc<Self>, route: &Route, box_id: &str, exec_id: &str) -> KillOnDrop {
    KillOnDrop {
      executor: self.clone(),
      route: route.clone(),
      box_id: box_id.to_string(),
      exec_id: exec_id.to_string(),
      armed: true,
      runtime: tokio::runtime::Handle::try_current().ok(),
    }
  }

  /// Starts a command and streams its output. The stream owns the execution: dropping it
  /// before the exit event (a cancelled reader) kills the command.
  pub async fn exec_stream(
    self: &Arc<Self>,
    route: &Route,
    box_id: &str,
    request: ExecRequest,
  ) -> Result<ExecEventStream> {
    let begun = tokio::time::Instant::now();
    let (execution, gated, early) = self.start_owned(route, box_id, &request).await?;
    let guard = self.kill_on_drop(route, box_id, &execution.id);
    let events = self
      .open_output(route, box_id, &execution.id, gated, early)
      .await?;
    let Some(limit) = request.timeout_seconds.map(Duration::from_secs_f64) else {
      return Ok(owned(events, guard));
    };
    let killer = {
      let executor = self.clone();
      let route = route.clone();
      let box_id = box_id.to_string();
      let exec_id = execution.id.clone();
      move || async move { executor.kill(&route, &box_id, &exec_id).await }
    };
    let operation = format!("exec of '{}'", request_name(&request));
    Ok(owned(
      with_deadline(events, begun + limit, limit, operation, killer),
      guard,
    ))
  }

  /// Runs a helper command (file staging) and fails unless it exits 0.
  pub async fn run(
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

fn request_name(request: &ExecRequest) -> String {
  request.cmd.first().cloned().unwrap_or_default()
}

/// Kills an execution this client started for a caller who went away before its end.
pub(super) struct KillOnDrop {
  executor: Arc<Executor>,
  route: Route,
  box_id: String,
  exec_id: String,
  armed: bool,
  /// The runtime the guard was made on: a cancelled JS stream is dropped on the JS thread,
  /// which has no runtime of its own to spawn the kill on.
  runtime: Option<tokio::runtime::Handle>,
}

impl KillOnDrop {
  pub fn disarm(&mut self) {
    self.armed = false;
  }
}

impl Drop for KillOnDrop {
  fn drop(&mut self) {
    if !self.armed {
      return;
    }
    let executor = self.executor.clone();
    let route = self.route.clone();
    let box_id = std::mem::take(&mut self.box_id);
    let exec_id = std::mem::take(&mut self.exec_id);
    spawn_cleanup(&self.runtime, async move {
      executor.kill(&route, &box_id, &exec_id).await
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
          if error.is_timeout() {
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
  executor: Weak<Executor>,
  exec_id: String,
  sink: SharedSink,
}

impl Drop for AttachGuard {
  fn drop(&mut self) {
    if let Some(executor) = self.executor.upgrade() {
      let mut map = executor.attachments.lock().unwrap_or_else(|p| p.into_inner());
      if map
        .get(&self.exec_id)
        .is_some_and(|w| w.upgrade().is_none_or(|s| Arc::ptr_eq(&s, &self.sink)))
      {
        map.remove(&self.exec_id);
      }
    }
  }
}
