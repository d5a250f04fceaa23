//! `sse-serve`: BoxLite REST of the SSE era as that era's `boxlite serve` serves it. The routes
//! and bodies are the reference server's (`sse_ref`); what differs is what the file layer may
//! rely on: opening an execution's output makes the server forget the execution (no stdin
//! while reading), and tar uploads are nested under `extracted/` when the target exists.
//! Its downloads (`./` plus `./<name>/…`) are unwrapped by `archive`. Told apart from the
//! reference server by its `/v1/config` (see `detect.rs`).

use super::{boxlite, sse_ref, Action, Download, Output, Profile, Stdin, Tenant, Upload};
use crate::client::{CreateBoxParams, ExecRequest, Features};
use crate::error::Result;
use crate::rest::request::{Route, Spec};

pub struct SseServe;

impl Profile for SseServe {
  fn name(&self) -> &'static str {
    "sse-serve"
  }

  fn backend(&self) -> &'static str {
    "BoxLite REST server (dialect sse): boxlite serve of that era"
  }

  fn tenant(&self) -> Tenant {
    Tenant::Fixed("default")
  }

  fn server_info(&self, route: &Route) -> Spec {
    boxlite::server_info(route)
  }

  fn execution(&self, route: &Route, box_id: &str, exec_id: &str) -> String {
    boxlite::execution(route, box_id, exec_id)
  }

  fn create_box(&self, route: &Route, params: &CreateBoxParams) -> Result<Spec> {
    Ok(sse_ref::create_box(route, params))
  }

  fn list_boxes(
    &self,
    route: &Route,
    status: Option<&str>,
    page_size: Option<u32>,
    token: Option<&str>,
  ) -> Spec {
    boxlite::list_boxes(route, status, page_size, token)
  }

  fn lifecycle(&self, route: &Route, box_id: &str, action: Action) -> Spec {
    boxlite::lifecycle(route, box_id, action)
  }

  fn lifecycle_reply(&self, _action: Action, reply: Result<()>) -> Result<()> {
    reply
  }

  fn delete_reply(&self, box_id: &str, reply: Result<()>) -> Result<()> {
    sse_ref::delete_reply(box_id, reply)
  }

  fn exec(&self, route: &Route, box_id: &str, request: &ExecRequest) -> Spec {
    boxlite::exec(route, box_id, request)
  }

  fn output(&self, route: &Route, box_id: &str, exec_id: &str) -> Spec {
    sse_ref::output(route, box_id, exec_id)
  }

  fn output_kind(&self) -> Output {
    Output::SseEra
  }

  /// The input route exists, but only until the output is opened.
  fn stdin(&self) -> Stdin {
    Stdin::Http
  }

  fn input(&self, route: &Route, box_id: &str, exec_id: &str, close: bool) -> Result<Spec> {
    Ok(sse_ref::input(route, box_id, exec_id, close))
  }

  fn kill(&self, route: &Route, box_id: &str, exec_id: &str) -> Spec {
    sse_ref::kill(route, box_id, exec_id)
  }

  fn signal(&self, route: &Route, box_id: &str, exec_id: &str, signal: i32) -> Result<Spec> {
    Ok(boxlite::signal(route, box_id, exec_id, signal))
  }

  fn resize(&self, route: &Route, box_id: &str, exec_id: &str, cols: u16, rows: u16) -> Result<Spec> {
    Ok(boxlite::resize(route, box_id, exec_id, cols, rows))
  }

  fn upload(&self) -> Upload {
    Upload::TarEndpoint
  }

  fn download(&self) -> Download {
    Download::TarEndpoint
  }

  /// No tar upload into an existing directory (nesting) and no stdin while output is read.
  fn features(&self) -> Features {
    Features {
      tar_upload: false,
      tar_download: true,
      tar_download_keeps_links: true,
      exec_stdin: false,
      box_terminal: false,
    }
  }

  fn extras(&self) -> bool {
    true
  }
}
