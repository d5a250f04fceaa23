//! The server dialects, one module each: everything that differs between servers lives behind
//! the `Profile` trait (paths, request bodies, output decoding, stdin and kill mechanisms,
//! quirks, features); the rest of `rest/` asks the profile and never matches on a dialect
//! itself. What each dialect does and why is described in `docs/dialects.md`.
//!
//! Adding a dialect = a variant here, a module implementing `Profile`, and a test-bed class.

mod boxlite;
mod boxrun;
mod current;
mod sse_ref;
mod sse_serve;

use serde_json::Value;

use super::request::{Route, Spec};
use crate::client::{CreateBoxParams, ExecRequest, Features};
use crate::error::Result;

/// The HTTP dialects servers speak. The names (`Dialect::name`) are the vocabulary used in
/// tests, the test bed, benchmarks and docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
  /// BoxLite REST of the SSE era, served by the Python reference server.
  SseRef,
  /// BoxLite REST of the SSE era, served by that era's `boxlite serve` (same routes, fewer
  /// guarantees: see `sse_serve`).
  SseServe,
  /// Current BoxLite REST (`boxlite serve` 0.11: `/v1/me`, WebSocket attach).
  Current,
  /// BoxRun (colon actions, `seq`-numbered exec events, one-file transfers).
  Boxrun,
}

/// The configuration value `sse`: either SSE-era server (told apart on first use); the dialects
/// whose `Dialect::sse_era` is true.
pub const SSE_ERA: &[Dialect] = &[Dialect::SseRef, Dialect::SseServe];

impl Dialect {
  pub const ALL: &'static [Dialect] = &[
    Dialect::SseRef,
    Dialect::SseServe,
    Dialect::Current,
    Dialect::Boxrun,
  ];

  /// The dialect's behaviour.
  pub fn profile(self) -> &'static dyn Profile {
    match self {
      Dialect::SseRef => &sse_ref::SseRef,
      Dialect::SseServe => &sse_serve::SseServe,
      Dialect::Current => &current::Current,
      Dialect::Boxrun => &boxrun::Boxrun,
    }
  }

  /// `sse-ref`, `sse-serve`, `current`, `boxrun`.
  pub fn name(self) -> &'static str {
    self.profile().name()
  }

  /// Whether the dialect is one of the SSE era's (`SSE_ERA`, the `sse` setting).
  pub fn sse_era(self) -> bool {
    match self {
      Dialect::SseRef | Dialect::SseServe => true,
      Dialect::Current | Dialect::Boxrun => false,
    }
  }

  /// `names` as a comma-separated list of dialect names, for logs and messages.
  pub fn list(dialects: &[Dialect]) -> String {
    dialects.iter().map(|d| d.name()).collect::<Vec<_>>().join(",")
  }

  /// How errors name the server, e.g. "BoxRun server (dialect boxrun)".
  pub fn backend(self) -> &'static str {
    self.profile().backend()
  }

  /// The dialects a `dialect` setting allows: `auto` all of them, `sse` both SSE-era servers,
  /// otherwise the one named (`sse-ref`, `sse-serve`, `current`, `boxrun`, and the aliases
  /// `boxlite-sse`, `boxlite`, `boxlite-current`).
  pub fn allowed_by(setting: &str) -> Option<&'static [Dialect]> {
    Some(match setting {
      "auto" => Dialect::ALL,
      "sse" | "boxlite-sse" => SSE_ERA,
      "sse-ref" => &[Dialect::SseRef],
      "sse-serve" => &[Dialect::SseServe],
      "current" | "boxlite" | "boxlite-current" => &[Dialect::Current],
      "boxrun" => &[Dialect::Boxrun],
      _ => return None,
    })
  }
}

impl std::fmt::Display for Dialect {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.write_str(self.name())
  }
}

/// Where a dialect's tenant segment comes from when none is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tenant {
  /// The dialect has no tenant segment (a configured one is ignored).
  Never,
  /// This fixed segment.
  Fixed(&'static str),
  /// `GET /v1/me`'s `path_prefix` (or `prefix`); none when the server has no `/v1/me`.
  FromPrincipal,
}

/// How an execution's output is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
  /// SSE, base64 `stdout`/`stderr` events and an `exit` event; take-once.
  SseEra,
  /// SSE, replayed `seq`-numbered events; a stream live during a cancel may never end, so a
  /// quiet stream is checked against the execution's status.
  BoxrunEvents,
  /// The attach WebSocket (binary channel frames, JSON control frames); one client at a time.
  Attach,
}

/// How stdin reaches an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdin {
  /// `POST …/input` with raw bytes; closing is a header.
  Http,
  /// Binary frames on the attach socket; closing is a `stdin_eof` control frame.
  Attach,
  /// Executions have no stdin.
  Unavailable,
}

/// How `upload_files` moves a tar archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
  /// The server's tar endpoint (`PUT …/files`).
  TarEndpoint,
  /// Piped into an in-box `tar -x` over an exec's stdin (`rest/attach_upload.rs`).
  ExecStdin,
  /// Staged as one-file parts, unpacked by an exec (`rest/boxrun_files.rs`).
  Staged,
}

/// How `download_files` gets a tar archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Download {
  /// The server's tar endpoint (`GET …/files`).
  TarEndpoint,
  /// Archived by an in-box `tar -c`, then fetched as one file (`rest/boxrun_files.rs`).
  Staged,
}

/// The lifecycle actions of a box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
  Start,
  Stop,
}

impl Action {
  pub fn verb(self) -> &'static str {
    match self {
      Action::Start => "start",
      Action::Stop => "stop",
    }
  }
}

/// One dialect: sans-IO request building and the facts the client's I/O code dispatches on.
/// Operations a dialect has no endpoint for return `Error::Unsupported` (`Route::unsupported`).
pub trait Profile: Send + Sync {
  /// The dialect's name (`Dialect::name`).
  fn name(&self) -> &'static str;
  /// How errors name the server.
  fn backend(&self) -> &'static str;

  /// The tenant segment's source.
  fn tenant(&self) -> Tenant;
  /// The unauthenticated description of the server (`/v1/config`, BoxRun `/v1/info`).
  fn server_info(&self, route: &Route) -> Spec;
  /// The path of one execution.
  fn execution(&self, route: &Route, box_id: &str, exec_id: &str) -> String;

  /// `create_box`, with the original's (BoxRun-flavoured) parameters renamed for the dialect.
  fn create_box(&self, route: &Route, params: &CreateBoxParams) -> Result<Spec>;
  /// `list_boxes` (one page).
  fn list_boxes(
    &self,
    route: &Route,
    status: Option<&str>,
    page_size: Option<u32>,
    token: Option<&str>,
  ) -> Spec;
  fn lifecycle(&self, route: &Route, box_id: &str, action: Action) -> Spec;
  /// What a refused start/stop means (some servers refuse what is already the case).
  fn lifecycle_reply(&self, action: Action, reply: Result<()>) -> Result<()>;
  /// What a refused delete means.
  fn delete_reply(&self, box_id: &str, reply: Result<()>) -> Result<()>;

  /// Starts a command: the place each dialect's exec request is built.
  fn exec(&self, route: &Route, box_id: &str, request: &ExecRequest) -> Spec;
  /// Opens an execution's output.
  fn output(&self, route: &Route, box_id: &str, exec_id: &str) -> Spec;
  fn output_kind(&self) -> Output;
  fn stdin(&self) -> Stdin;
  /// Writes raw stdin (dialects with `Stdin::Http`).
  fn input(&self, route: &Route, box_id: &str, exec_id: &str, close: bool) -> Result<Spec>;
  /// Ends an execution for good.
  fn kill(&self, route: &Route, box_id: &str, exec_id: &str) -> Spec;
  /// Delivers `signal` (a kill where the dialect kills differently).
  fn signal(&self, route: &Route, box_id: &str, exec_id: &str, signal: i32) -> Result<Spec>;
  fn resize(&self, route: &Route, box_id: &str, exec_id: &str, cols: u16, rows: u16) -> Result<Spec>;
  /// The WebSocket of a shell on the server's own box terminal endpoint, if it has one.
  fn box_terminal(
    &self,
    _route: &Route,
    _box_id: &str,
    _shell: &str,
    _term: &str,
    _size: (u16, u16),
  ) -> Option<Spec> {
    None
  }

  fn upload(&self) -> Upload;
  fn download(&self) -> Download;
  /// What the file layer may rely on.
  fn features(&self) -> Features;
  /// Whether snapshots, clone, export, import and metrics exist.
  fn extras(&self) -> bool;
}

/// Unsupported-operation guard for the optional groups (snapshots, clone, export, import,
/// metrics).
pub fn require_extras(route: &Route, operation: &str) -> Result<()> {
  if route.profile().extras() {
    Ok(())
  } else {
    Err(route.unsupported(operation))
  }
}

pub use boxlite::{
  box_metrics, clone_box, create_snapshot, delete_snapshot, download, export_box, import_box, list_snapshots,
  metrics, restore_snapshot, upload,
};
pub use boxrun::{download_file, upload_file};

/// Parsing of `/v1/config` shared with detection: whether an SSE-era server is `boxlite serve`
/// (four capability flags, no `defaults`) rather than the reference server.
pub fn is_sse_serve_config(config: &Value) -> bool {
  config.get("defaults").is_none() && config.get("capabilities").is_some()
}

#[cfg(test)]
mod tests;
