//! `current`: BoxLite REST of `boxlite serve` 0.11. A static bearer, the tenant segment from
//! `GET /v1/me` (none when the server has no `/v1/me`), output and stdin over one attach
//! WebSocket per execution (one client at a time), kill = `DELETE` on the execution (the signal
//! route forwards a whitelist without SIGKILL). Its file endpoint caps uploads at 2 MiB, takes
//! plain tars only and nests them, so uploads go through an exec's stdin instead.

use reqwest::Method;

use super::{boxlite, Action, Download, Output, Profile, Stdin, Tenant, Upload};
use crate::client::{CreateBoxParams, ExecRequest, Features};
use crate::error::Result;
use crate::rest::request::{Deadline, Route, Spec};

pub struct Current;

impl Profile for Current {
  fn name(&self) -> &'static str {
    "current"
  }

  fn backend(&self) -> &'static str {
    "BoxLite REST server (dialect current)"
  }

  fn tenant(&self) -> Tenant {
    Tenant::FromPrincipal
  }

  fn server_info(&self, route: &Route) -> Spec {
    boxlite::server_info(route)
  }

  fn execution(&self, route: &Route, box_id: &str, exec_id: &str) -> String {
    boxlite::execution(route, box_id, exec_id)
  }

  /// The common fields only: no place for ports, `security` or `auto_remove`.
  fn create_box(&self, route: &Route, params: &CreateBoxParams) -> Result<Spec> {
    Ok(boxlite::create_box(route, boxlite::create_body(params)))
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

  fn delete_reply(&self, _box_id: &str, reply: Result<()>) -> Result<()> {
    reply
  }

  fn exec(&self, route: &Route, box_id: &str, request: &ExecRequest) -> Spec {
    boxlite::exec(route, box_id, request)
  }

  /// `GET …/attach` upgraded to a WebSocket.
  fn output(&self, route: &Route, box_id: &str, exec_id: &str) -> Spec {
    route
      .on_execution(Method::GET, box_id, exec_id, "/attach")
      .accept(None)
      .deadline(Deadline::Stream)
      .idempotent(false)
  }

  fn output_kind(&self) -> Output {
    Output::Attach
  }

  fn stdin(&self) -> Stdin {
    Stdin::Attach
  }

  fn input(&self, route: &Route, _box_id: &str, _exec_id: &str, _close: bool) -> Result<Spec> {
    Err(route.unsupported("sendExecInput over HTTP"))
  }

  fn kill(&self, route: &Route, box_id: &str, exec_id: &str) -> Spec {
    route.on_execution(Method::DELETE, box_id, exec_id, "")
  }

  fn signal(&self, route: &Route, box_id: &str, exec_id: &str, signal: i32) -> Result<Spec> {
    Ok(match signal {
      9 => self.kill(route, box_id, exec_id),
      _ => boxlite::signal(route, box_id, exec_id, signal),
    })
  }

  fn resize(&self, route: &Route, box_id: &str, exec_id: &str, cols: u16, rows: u16) -> Result<Spec> {
    Ok(boxlite::resize(route, box_id, exec_id, cols, rows))
  }

  fn upload(&self) -> Upload {
    Upload::ExecStdin
  }

  fn download(&self) -> Download {
    Download::TarEndpoint
  }

  fn features(&self) -> Features {
    Features {
      tar_upload: true,
      tar_download: true,
      tar_download_keeps_links: false,
      exec_stdin: true,
      box_terminal: false,
    }
  }

  fn extras(&self) -> bool {
    true
  }
}
