//! The one in-memory `BoxClient` of the unit tests: boxes with scripted boot behaviour and a call
//! log, and optionally a scripted interactive shell (for the terminal). It runs no real commands
//! (the test bed does that).

use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::sync::mpsc;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::Value;

use crate::client::*;
use crate::error::{Error, Result};

#[derive(Default)]
struct State {
  boxes: BTreeMap<String, FakeBox>,
  next_id: u32,
  calls: Vec<String>,
}

struct FakeBox {
  record: BoxRecord,
  /// `get_box` calls left before a started box reports `running`.
  polls_left: u32,
  snapshot_taken_while: Option<String>,
}

/// The scripted shell of [`FakeClient::with_scripted_shell`].
#[derive(Default)]
struct ShellState {
  output: Option<mpsc::UnboundedSender<Result<ExecEvent>>>,
  line: Vec<u8>,
  size: (u16, u16),
  signals: Vec<i32>,
  requests: Vec<ExecRequest>,
}

pub struct FakeClient {
  state: Mutex<State>,
  /// `Some` (with the prompt it prints first) when interactive executions run the scripted shell.
  shell_greeting: Option<&'static str>,
  shell: Mutex<ShellState>,
  boot_polls: u32,
  fail_boot: Option<String>,
  /// How long a create or start request takes (a server that boots synchronously).
  create_delay: std::time::Duration,
  start_delay: std::time::Duration,
  start_answers: bool,
}

impl FakeClient {
  pub fn new() -> Self {
    FakeClient {
      state: Mutex::default(),
      shell_greeting: None,
      shell: Mutex::default(),
      boot_polls: 0,
      fail_boot: None,
      create_delay: std::time::Duration::ZERO,
      start_delay: std::time::Duration::ZERO,
      start_answers: false,
    }
  }

  /// `create_box` answers only after `delay`.
  pub fn slow_create(mut self, delay: std::time::Duration) -> Self {
    self.create_delay = delay;
    self
  }

  /// `start_box` answers only after `delay`.
  pub fn slow_start(mut self, delay: std::time::Duration) -> Self {
    self.start_delay = delay;
    self
  }

  /// A started box needs this many `get_box` calls before it runs (`u32::MAX`: never).
  pub fn boot_polls(mut self, polls: u32) -> Self {
    self.boot_polls = polls;
    self
  }

  /// `start_box_record` answers with the box (as the REST servers' start does).
  pub fn start_answers_with_the_box(mut self) -> Self {
    self.start_answers = true;
    self
  }

  /// Starting a box fails, leaving it `failed` with this message.
  pub fn fail_boot(mut self, message: &str) -> Self {
    self.fail_boot = Some(message.into());
    self
  }

  /// A box `id` that is already running.
  pub fn with_running_box(self, id: &str) -> Self {
    let record = BoxRecord {
      id: id.into(),
      status: "running".into(),
      ..BoxRecord::default()
    };
    self.state.lock().unwrap().boxes.insert(
      id.into(),
      FakeBox {
        record,
        polls_left: 0,
        snapshot_taken_while: None,
      },
    );
    self
  }

  /// Interactive executions (`exec_async` and the rest) run a scripted shell that prints
  /// `greeting`, then answers each input line: `size` with `rows cols`, `exit` by exiting,
  /// anything else with `out:<line>`; SIGHUP ends it.
  pub fn with_scripted_shell(mut self, greeting: &'static str) -> Self {
    self.shell_greeting = Some(greeting);
    self
  }

  /// The requests that started the scripted shell.
  pub fn shell_requests(&self) -> Vec<ExecRequest> {
    self.shell.lock().unwrap().requests.clone()
  }

  /// The signals sent to the scripted shell.
  pub fn shell_signals(&self) -> Vec<i32> {
    self.shell.lock().unwrap().signals.clone()
  }

  fn emit(&self, event: ExecEvent) {
    if let Some(tx) = &self.shell.lock().unwrap().output {
      let _ = tx.send(Ok(event));
    }
  }

  /// The greeting of the scripted shell, or `Unsupported` without one.
  fn scripted_shell(&self, operation: &str) -> Result<&'static str> {
    match self.shell_greeting {
      Some(greeting) => Ok(greeting),
      None => Self::unsupported(operation),
    }
  }

  pub fn calls_of(&self, name: &str) -> usize {
    self
      .state
      .lock()
      .unwrap()
      .calls
      .iter()
      .filter(|c| *c == name)
      .count()
  }

  pub fn box_ids(&self) -> Vec<String> {
    self.state.lock().unwrap().boxes.keys().cloned().collect()
  }

  pub fn status_of(&self, id: &str) -> String {
    self.state.lock().unwrap().boxes[id].record.status.clone()
  }

  pub fn snapshot_taken_while(&self, id: &str) -> Option<String> {
    self.state.lock().unwrap().boxes[id].snapshot_taken_while.clone()
  }

  fn with_box<T>(&self, call: &str, id: &str, f: impl FnOnce(&mut FakeBox) -> Result<T>) -> Result<T> {
    let mut state = self.state.lock().unwrap();
    state.calls.push(call.to_string());
    match state.boxes.get_mut(id) {
      Some(b) => f(b),
      None => Err(Error::not_found("box", id)),
    }
  }

  fn unsupported<T>(operation: &str) -> Result<T> {
    Err(Error::Unsupported {
      operation: operation.into(),
      backend: "the fake client".into(),
    })
  }
}

#[async_trait]
impl BoxClient for FakeClient {
  async fn create_box(&self, params: CreateBoxParams) -> Result<BoxRecord> {
    tokio::time::sleep(self.create_delay).await;
    let mut state = self.state.lock().unwrap();
    state.calls.push("create_box".into());
    state.next_id += 1;
    let id = format!("box{}", state.next_id);
    let record = BoxRecord {
      id: id.clone(),
      status: "configured".into(),
      created_at: "2026-11-26T00:00:00Z".into(),
      image: params.image.or(params.rootfs_path).unwrap_or_default(),
      ..BoxRecord::default()
    };
    state.boxes.insert(
      id,
      FakeBox {
        record: record.clone(),
        polls_left: 0,
        snapshot_taken_while: None,
      },
    );
    Ok(record)
  }

  async fn get_box(&self, box_id: &str) -> Result<BoxRecord> {
    self.with_box("get_box", box_id, |b| {
      if b.record.status == "starting" {
        if b.polls_left == 0 {
          b.record.status = "running".into();
        } else {
          b.polls_left = b.polls_left.saturating_sub(1);
        }
      }
      let mut record = b.record.clone();
      if record.status == "starting" {
        record.status = "configured".into();
      }
      Ok(record)
    })
  }

  async fn list_boxes(&self, _status: Option<String>, _page_size: Option<u32>) -> Result<Vec<BoxRecord>> {
    let state = self.state.lock().unwrap();
    Ok(state.boxes.values().map(|b| b.record.clone()).collect())
  }

  async fn delete_box(&self, box_id: &str, force: bool) -> Result<()> {
    let mut state = self.state.lock().unwrap();
    state.calls.push(if force {
      "delete_box(force)".into()
    } else {
      "delete_box".into()
    });
    state
      .boxes
      .remove(box_id)
      .map(drop)
      .ok_or_else(|| Error::not_found("box", box_id))
  }

  async fn start_box(&self, box_id: &str) -> Result<()> {
    self.start_box_record(box_id).await.map(drop)
  }

  async fn start_box_record(&self, box_id: &str) -> Result<Option<BoxRecord>> {
    tokio::time::sleep(self.start_delay).await;
    let fail = self.fail_boot.clone();
    let polls = self.boot_polls;
    let answers = self.start_answers;
    self.with_box("start_box", box_id, |b| {
      match fail {
        Some(message) => {
          b.record.status = "failed".into();
          b.record.error_message = Some(message);
        }
        // A server that answers the start boots synchronously, as the REST servers do.
        None if answers && polls == 0 => b.record.status = "running".into(),
        None => {
          b.record.status = "starting".into();
          b.polls_left = polls;
        }
      }
      Ok(answers.then(|| b.record.clone()))
    })
  }

  async fn stop_box(&self, box_id: &str) -> Result<()> {
    self.with_box("stop_box", box_id, |b| {
      b.record.status = "stopped".into();
      Ok(())
    })
  }

  async fn exec(&self, box_id: &str, request: ExecRequest) -> Result<ExecOutput> {
    // `sleep N` with a shorter timeout times out, as a real client reports it.
    let sleep_secs = request
      .cmd
      .last()
      .and_then(|c| c.strip_prefix("sleep "))
      .and_then(|n| n.parse::<f64>().ok());
    self.with_box("exec", box_id, |_| match (sleep_secs, request.timeout_seconds) {
      (Some(sleep), Some(timeout)) if timeout < sleep => Err(Error::Timeout {
        operation: "exec".into(),
        after_ms: (timeout * 1000.0) as u64,
      }),
      _ => Ok(ExecOutput {
        stdout: String::new(),
        stderr: String::new(),
        exit_code: 0,
      }),
    })
  }

  async fn exec_stream(&self, _box_id: &str, _request: ExecRequest) -> Result<ExecEventStream> {
    Self::unsupported("exec_stream")
  }

  async fn exec_async(&self, box_id: &str, request: ExecRequest) -> Result<Execution> {
    self.scripted_shell("exec_async")?;
    let mut st = self.shell.lock().unwrap();
    st.requests.push(request);
    st.size = (80, 24);
    Ok(Execution {
      id: "e1".into(),
      box_id: Some(box_id.into()),
      status: "running".into(),
      exit_code: None,
    })
  }

  async fn get_exec_output(&self, _: &str, _: &str) -> Result<ExecEventStream> {
    let greeting = self.scripted_shell("get_exec_output")?;
    let (tx, rx) = mpsc::unbounded_channel();
    if !greeting.is_empty() {
      let _ = tx.send(Ok(ExecEvent::Stdout(Bytes::from_static(greeting.as_bytes()))));
    }
    self.shell.lock().unwrap().output = Some(tx);
    Ok(Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
      rx.recv().await.map(|e| (e, rx))
    })))
  }

  async fn send_exec_input(&self, _: &str, _: &str, data: Bytes, _: bool) -> Result<()> {
    self.scripted_shell("send_exec_input")?;
    let mut lines = Vec::new();
    {
      let mut st = self.shell.lock().unwrap();
      for &b in data.iter() {
        if b == b'\r' || b == b'\n' {
          lines.push(String::from_utf8_lossy(&std::mem::take(&mut st.line)).into_owned());
        } else {
          st.line.push(b);
        }
      }
    }
    for line in lines {
      let (cols, rows) = self.shell.lock().unwrap().size;
      match line.as_str() {
        "exit" => self.emit(ExecEvent::Exit(Some(0))),
        "size" => self.emit(ExecEvent::Stdout(Bytes::from(format!("{rows} {cols}\r\n")))),
        other => self.emit(ExecEvent::Stdout(Bytes::from(format!("out:{other}\r\n")))),
      }
    }
    Ok(())
  }

  async fn signal_exec(&self, _: &str, _: &str, signal: i32) -> Result<()> {
    self.scripted_shell("signal_exec")?;
    self.shell.lock().unwrap().signals.push(signal);
    if signal == 1 {
      self.emit(ExecEvent::Exit(None));
    }
    Ok(())
  }

  async fn resize_exec(&self, _: &str, exec_id: &str, cols: u16, rows: u16) -> Result<()> {
    self.scripted_shell("resize_exec")?;
    if exec_id != "e1" {
      return Err(Error::not_found("execution", exec_id));
    }
    self.shell.lock().unwrap().size = (cols, rows);
    Ok(())
  }

  async fn upload_files(&self, _box_id: &str, _path: &str, _tar: ByteStream) -> Result<()> {
    Self::unsupported("upload_files")
  }

  async fn download_files(&self, _box_id: &str, _path: &str) -> Result<ByteStream> {
    Self::unsupported("download_files")
  }

  async fn create_snapshot(&self, box_id: &str, name: &str) -> Result<Snapshot> {
    self.with_box("create_snapshot", box_id, |b| {
      b.snapshot_taken_while = Some(b.record.status.clone());
      Ok(Snapshot {
        id: name.into(),
        box_id: box_id.into(),
        name: name.into(),
        ..Snapshot::default()
      })
    })
  }

  async fn list_snapshots(&self, _box_id: &str) -> Result<Vec<Snapshot>> {
    Ok(Vec::new())
  }

  async fn restore_snapshot(&self, box_id: &str, _name: &str) -> Result<()> {
    self.with_box("restore_snapshot", box_id, |b| {
      if b.record.status == "running" {
        return Err(Error::InvalidState {
          message: "restore needs a stopped box".into(),
        });
      }
      Ok(())
    })
  }

  async fn delete_snapshot(&self, _box_id: &str, _name: &str) -> Result<()> {
    Ok(())
  }

  async fn get_metrics(&self) -> Result<Value> {
    Ok(Value::Null)
  }

  async fn get_box_metrics(&self, _box_id: &str) -> Result<Value> {
    Ok(Value::Null)
  }

  async fn get_config(&self) -> Result<Value> {
    Ok(Value::Null)
  }

  async fn dispose(&self) -> Result<()> {
    Ok(())
  }
}
