//! The low-level client surface (`getClient()`), one trait for both modes: the REST client
//! (`rest/`) and the embedded-Python client (`local/`) implement it with the same method names
//! and the same JS shapes as the original `BoxLiteClient` (snake_case wire types).

use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_core::Stream;
use serde::{Deserialize, Serialize};
use serde_json::Value;
// Absent optional fields stay absent on the wire (`#[serialize_always]` marks the exceptions).
use serde_with::skip_serializing_none;

use crate::error::{Error, Result};

/// A stream of raw bytes (tar archives, exports, raw exec output).
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// A stream of exec events, in the order the box produced them.
pub type ExecEventStream = Pin<Box<dyn Stream<Item = Result<ExecEvent>> + Send>>;

/// Where `BoxClient::exec_now` delivers its result; called once, on any thread, must not block.
pub type ExecDone = Box<dyn FnOnce(Result<ExecOutput>) + Send>;

/// A box as the original's `BoxLiteBox` describes it.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BoxRecord {
  pub id: String,
  pub boxlite_id: Option<String>,
  #[serialize_always]
  pub name: Option<String>,
  /// `configured`, `running`, `stopping`, `stopped`, `paused`, `unknown` (or what a server sent).
  pub status: String,
  #[serde(default)]
  pub created_at: String,
  pub started_at: Option<String>,
  pub stopped_at: Option<String>,
  #[serde(default)]
  pub image: String,
  pub cpu: Option<u32>,
  pub memory_mb: Option<u64>,
  pub disk_size_gb: Option<u64>,
  pub workdir: Option<String>,
  pub env: Option<BTreeMap<String, String>>,
  pub error_code: Option<String>,
  pub error_message: Option<String>,
}

/// The original's `BoxLiteCreateParams`; fields absent in JS stay absent on the wire.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBoxParams {
  pub image: Option<String>,
  /// A local OCI layout directory used instead of `image`.
  pub rootfs_path: Option<String>,
  pub name: Option<String>,
  pub cpu: Option<u32>,
  pub memory_mb: Option<u64>,
  pub disk_size_gb: Option<u64>,
  pub working_dir: Option<String>,
  pub env: Option<BTreeMap<String, String>>,
  pub auto_remove: Option<bool>,
  /// `[hostPort, guestPort]` pairs.
  pub ports: Option<Vec<(u16, u16)>>,
  pub user: Option<String>,
  pub security: Option<Value>,
  pub network: Option<Value>,
  pub secrets: Option<Vec<Value>>,
  pub entrypoint: Option<Value>,
  pub cmd: Option<Vec<String>>,
  pub labels: Option<BTreeMap<String, String>>,
}

/// The original's `BoxLiteExecRequest`.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExecRequest {
  /// argv; no shell is added.
  pub cmd: Vec<String>,
  pub env: Option<BTreeMap<String, String>>,
  /// Kills the command after this many seconds (fractions allowed). The client owns this
  /// deadline: `exec` and `exec_stream` kill the execution when it passes and fail with
  /// `Error::Timeout`, whether or not the server or SDK honours the value it is also given.
  pub timeout_seconds: Option<f64>,
  pub working_dir: Option<String>,
  pub tty: Option<bool>,
}

/// Enters `$1`, then runs the rest of argv; a directory that cannot be entered ends the command
/// with exit status 2 and the shell's message on stderr. The directory is an argument, never
/// interpolated into the script.
const CWD_SCRIPT: &str = r#"cd -- "$1" || exit 2; shift; exec "$@""#;

impl ExecRequest {
  /// The argv that runs `cmd` in `working_dir`: every mode enters the directory this same way
  /// (some servers ignore `working_dir`, and the SDKs fail differently for a missing one), so a
  /// missing directory behaves the same everywhere (docs/behaviour.md).
  pub fn effective_argv(&self) -> Vec<String> {
    match self.working_dir.as_deref().filter(|d| !d.is_empty()) {
      None => self.cmd.clone(),
      Some(dir) => {
        let mut argv = vec![
          "sh".to_string(),
          "-c".into(),
          CWD_SCRIPT.into(),
          "sh".into(),
          dir.to_string(),
        ];
        argv.extend(self.cmd.iter().cloned());
        argv
      }
    }
  }
}

/// Result of a completed exec, as the original client returned it (`exitCode` in camelCase).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExecOutput {
  pub stdout: String,
  pub stderr: String,
  /// Negative for a signal death (`-9` for SIGKILL), as boxlite reports it.
  #[serde(rename = "exitCode")]
  pub exit_code: i32,
}

/// Whether a command that ended with `exit_code` after `elapsed` was killed at its `deadline`:
/// BoxLite reports a SIGKILL as `-9` (the signal), a shell in between as `137` (128 + 9). Only
/// a kill once the deadline has passed counts, so a command that dies of SIGKILL early (killed
/// by itself or the OOM killer) keeps its own exit status.
pub fn killed_at_deadline(exit_code: i32, elapsed: Duration, deadline: Duration) -> bool {
  matches!(exit_code, -9 | 137) && elapsed >= deadline
}

/// One event of a running execution.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecEvent {
  Stdout(Bytes),
  Stderr(Bytes),
  /// The command ended; `None` when the server could not tell (e.g. `exit_code: null` after a kill).
  Exit(Option<i32>),
}

/// The original's `BoxLiteExecution`.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Execution {
  pub id: String,
  pub box_id: Option<String>,
  pub status: String,
  #[serialize_always]
  pub exit_code: Option<i32>,
}

/// The original's `BoxLiteSnapshot`.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
  pub id: String,
  pub box_id: String,
  pub name: String,
  /// Unix seconds.
  pub created_at: i64,
  #[serde(default)]
  pub size_bytes: u64,
  pub guest_disk_bytes: Option<u64>,
  pub container_disk_bytes: Option<u64>,
}

/// What a backend can do for file transfer; the adapter picks its strategy from this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
  /// `upload_files` extracts a tar of any size *into* `path/` when the directory exists
  /// (servers that nest the archive or cap request bodies say `false`).
  pub tar_upload: bool,
  /// `download_files` gives a tar of a file or directory (top level = its basename).
  pub tar_download: bool,
  /// That tar keeps symbolic links as links (`false`: the server archives their targets, so a
  /// directory's archive is made in the box instead).
  pub tar_download_keeps_links: bool,
  /// Executions accept stdin (`send_exec_input`) while `get_exec_output` is read.
  pub exec_stdin: bool,
  /// The server runs a shell on a terminal endpoint of its own (`open_box_terminal`).
  pub box_terminal: bool,
}

impl Features {
  pub const ALL: Features = Features {
    tar_upload: true,
    tar_download: true,
    tar_download_keeps_links: true,
    exec_stdin: true,
    box_terminal: false,
  };
}

/// What a user does to a box terminal's shell.
#[derive(Debug, Clone, PartialEq)]
pub enum TerminalInput {
  Data(Bytes),
  Resize { cols: u16, rows: u16 },
}

/// A shell on a server's own terminal endpoint (BoxRun's box terminal WebSocket).
pub struct BoxTerminal {
  /// The shell's output, ending with `ExecEvent::Exit` (or an error if the connection broke).
  pub output: ExecEventStream,
  /// Keystrokes and resizes, in order. Dropping the sender closes the connection, which ends
  /// the shell on the server.
  pub input: tokio::sync::mpsc::Sender<TerminalInput>,
}

/// Everything `getClient()` offers. A method the server or SDK in use cannot do returns
/// `Error::Unsupported` naming the dialect or SDK.
///
/// The core methods (boxes, exec, files, dispose) are required. The optional capability groups
/// (the server's box terminal, snapshots, clone/export/import, metrics and configuration) have
/// default implementations returning that one `Unsupported` error ([`unsupported`]), so a
/// backend or test fake implements only what it offers. Defaults rather than traits of their
/// own: `getClient()` is one JS object whose every method exists in every mode, callers hold one
/// `dyn BoxClient`, and a separate trait per group would need an accessor and a missing-case
/// branch at every call site for the same error. A wrapper that delegates (`ids::Checked`) must
/// therefore forward these methods too, or they would answer `Unsupported`.
#[async_trait]
pub trait BoxClient: Send + Sync {
  async fn create_box(&self, params: CreateBoxParams) -> Result<BoxRecord>;
  async fn get_box(&self, box_id: &str) -> Result<BoxRecord>;
  async fn list_boxes(&self, status: Option<String>, page_size: Option<u32>) -> Result<Vec<BoxRecord>>;
  async fn delete_box(&self, box_id: &str, force: bool) -> Result<()>;
  async fn start_box(&self, box_id: &str) -> Result<()>;
  /// `start_box`, plus the box as the start's own answer describes it when the backend sends
  /// one (`None`: ask `get_box`). A `running` answer spares a create its status poll.
  async fn start_box_record(&self, box_id: &str) -> Result<Option<BoxRecord>> {
    self.start_box(box_id).await.map(|()| None)
  }
  async fn stop_box(&self, box_id: &str) -> Result<()>;

  /// Runs a command to its end. With `timeout_seconds` the call ends by the deadline: the
  /// execution is killed and the call fails with `Error::Timeout` (so is a command the server or
  /// SDK killed at that deadline); this is the one timer of an exec, in every mode.
  async fn exec(&self, box_id: &str, request: ExecRequest) -> Result<ExecOutput>;
  /// `exec` without a future, for backends that can answer from their own thread (local mode:
  /// straight from the Python loop, no hop through a tokio thread). A backend that cannot, or
  /// not yet, gives `done` back and the caller awaits `exec` instead.
  fn exec_now(
    &self,
    _box_id: &str,
    _request: ExecRequest,
    done: ExecDone,
  ) -> std::result::Result<(), ExecDone> {
    Err(done)
  }
  /// Starts the command and yields its output as produced, ending with `ExecEvent::Exit`; past
  /// `timeout_seconds` the command is killed and the stream ends with `Error::Timeout`.
  async fn exec_stream(&self, box_id: &str, request: ExecRequest) -> Result<ExecEventStream>;
  async fn exec_async(&self, box_id: &str, request: ExecRequest) -> Result<Execution>;
  async fn get_exec_output(&self, box_id: &str, exec_id: &str) -> Result<ExecEventStream>;
  /// Writes to the command's stdin; `close` ends stdin after `data`.
  async fn send_exec_input(&self, box_id: &str, exec_id: &str, data: Bytes, close: bool) -> Result<()>;
  async fn signal_exec(&self, box_id: &str, exec_id: &str, signal: i32) -> Result<()>;
  async fn resize_exec(&self, box_id: &str, exec_id: &str, cols: u16, rows: u16) -> Result<()>;

  /// A shell (`shell`, `TERM` = `term`) on the server's own terminal endpoint, sized `cols`
  /// x `rows`; only where `features().box_terminal` says so, `Unsupported` elsewhere.
  async fn open_box_terminal(
    &self,
    _box_id: &str,
    _shell: &str,
    _term: &str,
    _cols: u16,
    _rows: u16,
  ) -> Result<BoxTerminal> {
    unsupported(self, "openBoxTerminal").await
  }

  /// Extracts a tar archive (plain or gzip) into `path` in the box.
  async fn upload_files(&self, box_id: &str, path: &str, tar: ByteStream) -> Result<()>;
  /// A tar archive of `path` in the box.
  async fn download_files(&self, box_id: &str, path: &str) -> Result<ByteStream>;

  // Snapshots (optional).
  async fn create_snapshot(&self, _box_id: &str, _name: &str) -> Result<Snapshot> {
    unsupported(self, "createSnapshot").await
  }
  async fn list_snapshots(&self, _box_id: &str) -> Result<Vec<Snapshot>> {
    unsupported(self, "listSnapshots").await
  }
  async fn restore_snapshot(&self, _box_id: &str, _name: &str) -> Result<()> {
    unsupported(self, "restoreSnapshot").await
  }
  async fn delete_snapshot(&self, _box_id: &str, _name: &str) -> Result<()> {
    unsupported(self, "deleteSnapshot").await
  }

  // Clone, export, import (optional).
  async fn clone_box(&self, _box_id: &str, _name: Option<String>) -> Result<BoxRecord> {
    unsupported(self, "cloneBox").await
  }
  async fn export_box(&self, _box_id: &str) -> Result<ByteStream> {
    unsupported(self, "exportBox").await
  }
  async fn import_box(&self, _archive: ByteStream) -> Result<BoxRecord> {
    unsupported(self, "importBox").await
  }

  // Metrics and configuration (optional).
  async fn get_metrics(&self) -> Result<Value> {
    unsupported(self, "getMetrics").await
  }
  async fn get_box_metrics(&self, _box_id: &str) -> Result<Value> {
    unsupported(self, "getBoxMetrics").await
  }
  async fn get_config(&self) -> Result<Value> {
    unsupported(self, "getConfig").await
  }

  /// Releases connections, runtimes and handles; idempotent.
  async fn dispose(&self) -> Result<()>;

  /// What this backend supports (may need a first contact with the server to know).
  async fn features(&self) -> Result<Features> {
    Ok(Features::ALL)
  }

  /// How errors name this backend, e.g. "BoxRun server (dialect boxrun)".
  async fn backend_name(&self) -> Result<String> {
    Ok("this backend".into())
  }
}

/// The one answer of an optional `BoxClient` method the backend does not offer: `Unsupported`,
/// naming the operation (as JS calls it) and the backend.
pub async fn unsupported<T, C: BoxClient + ?Sized>(client: &C, operation: &str) -> Result<T> {
  Err(Error::Unsupported {
    operation: operation.into(),
    backend: client.backend_name().await?,
  })
}

#[cfg(test)]
mod tests {
  use super::*;
  use serde_json::json;

  #[test]
  fn absent_optional_fields_stay_absent_on_the_wire_except_name_and_exit_code() {
    assert_eq!(
      serde_json::to_value(BoxRecord::default()).unwrap(),
      json!({"id": "", "name": null, "status": "", "created_at": "", "image": ""})
    );
    assert_eq!(
      serde_json::to_value(CreateBoxParams::default()).unwrap(),
      json!({})
    );
    assert_eq!(
      serde_json::to_value(ExecRequest::default()).unwrap(),
      json!({"cmd": []})
    );
    assert_eq!(
      serde_json::to_value(Execution::default()).unwrap(),
      json!({"id": "", "status": "", "exit_code": null})
    );
    assert_eq!(
      serde_json::to_value(Snapshot::default()).unwrap(),
      json!({"id": "", "box_id": "", "name": "", "created_at": 0, "size_bytes": 0})
    );
  }

  #[test]
  fn present_optional_fields_are_written_in_declaration_order() {
    let params = CreateBoxParams {
      image: Some("alpine".into()),
      cpu: Some(2),
      auto_remove: Some(false),
      ports: Some(vec![(8080, 80)]),
      ..CreateBoxParams::default()
    };
    assert_eq!(
      serde_json::to_string(&params).unwrap(),
      r#"{"image":"alpine","cpu":2,"auto_remove":false,"ports":[[8080,80]]}"#
    );
    let request = ExecRequest {
      cmd: vec!["true".into()],
      timeout_seconds: Some(1.5),
      working_dir: Some("/tmp".into()),
      ..ExecRequest::default()
    };
    assert_eq!(
      serde_json::to_string(&request).unwrap(),
      r#"{"cmd":["true"],"timeout_seconds":1.5,"working_dir":"/tmp"}"#
    );
    let record = BoxRecord {
      id: "b".into(),
      error_message: Some("boom".into()),
      ..BoxRecord::default()
    };
    assert_eq!(
      serde_json::to_string(&record).unwrap(),
      r#"{"id":"b","name":null,"status":"","created_at":"","image":"","error_message":"boom"}"#
    );
  }

  #[test]
  fn a_sigkill_at_or_after_the_deadline_counts_as_killed_at_it_and_nothing_else_does() {
    let deadline = Duration::from_secs(1);
    assert!(killed_at_deadline(-9, Duration::from_millis(1000), deadline));
    assert!(killed_at_deadline(137, Duration::from_millis(1200), deadline));
    assert!(!killed_at_deadline(-9, Duration::from_millis(300), deadline));
    assert!(!killed_at_deadline(0, Duration::from_millis(1500), deadline));
    assert!(!killed_at_deadline(1, Duration::from_millis(1500), deadline));
  }
}
