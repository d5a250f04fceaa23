//! `boxrun`: the BoxRun server. No tenant segment, `/v1/info` instead of `/v1/config`, colon
//! actions (`…/boxes/{id}:start`, `…/exec/{id}:cancel`), a synchronous create that boots the
//! box, `cmd`/`timeout_ms` exec bodies, replayed `seq`-numbered SSE events, no stdin, no
//! signals other than cancel, no resize (interactive shells use the box terminal WebSocket), one-file transfers only (tar is emulated in
//! `rest/boxrun_files.rs`) and none of the optional groups.

use reqwest::Method;
use serde_json::{json, Map, Value};

use super::{Action, Download, Output, Profile, Stdin, Tenant, Upload};
use crate::client::{CreateBoxParams, ExecRequest, Features};
use crate::error::{Error, Result};
use crate::rest::request::{encode, exec_spec, public, Body, Deadline, Route, Spec};
use crate::rest::wire;

pub struct Boxrun;

/// BoxRun: one file per multipart request (`file` and `dest` parts).
pub fn upload_file(route: &Route, box_id: &str) -> Spec {
  let mut spec = route
    .on_box(Method::POST, box_id, "/files/upload")
    .deadline(Deadline::Stream);
  spec.body = Body::Stream("multipart/form-data");
  spec
}

/// BoxRun: one file's raw bytes, asked for with a JSON body.
pub fn download_file(route: &Route, box_id: &str, path: &str) -> Spec {
  route
    .on_box(Method::POST, box_id, "/files/download")
    .json(json!({"path": path}))
    .accept(Some("application/octet-stream"))
    .deadline(Deadline::Stream)
    .idempotent(true)
}

fn network_enabled(value: &Value) -> bool {
  match value {
    Value::Bool(b) => *b,
    Value::String(s) => s != "disabled" && s != "none",
    Value::Object(o) => wire::outbound_of(o).get("mode").and_then(Value::as_str) != Some("disabled"),
    _ => true,
  }
}

impl Profile for Boxrun {
  fn name(&self) -> &'static str {
    "boxrun"
  }

  fn backend(&self) -> &'static str {
    "BoxRun server (dialect boxrun)"
  }

  fn tenant(&self) -> Tenant {
    Tenant::Never
  }

  fn server_info(&self, route: &Route) -> Spec {
    public(route.v1(), "info")
  }

  fn execution(&self, route: &Route, box_id: &str, exec_id: &str) -> String {
    format!("{}/exec/{}", route.one_box(box_id), encode(exec_id))
  }

  /// The original's own names; image, name, sizes, workdir, env and network only. The create
  /// boots the box (slow), and boxes have no network unless asked, so it defaults to on like
  /// the other dialects.
  fn create_box(&self, route: &Route, params: &CreateBoxParams) -> Result<Spec> {
    if params.rootfs_path.is_some() {
      return Err(route.unsupported("createBox with rootfs_path"));
    }
    let mut body = Map::new();
    let mut put = |key: &str, value: Option<Value>| {
      if let Some(value) = value {
        body.insert(key.to_string(), value);
      }
    };
    put("image", params.image.as_ref().map(|v| json!(v)));
    put("name", params.name.as_ref().map(|v| json!(v)));
    put("cpu", params.cpu.map(|v| json!(v)));
    put("memory_mb", params.memory_mb.map(|v| json!(v)));
    put("disk_size_gb", params.disk_size_gb.map(|v| json!(v)));
    put("workdir", params.working_dir.as_ref().map(|v| json!(v)));
    put("env", params.env.as_ref().map(|v| json!(v)));
    put(
      "network",
      Some(json!(params
        .network
        .as_ref()
        .map(network_enabled)
        .unwrap_or(true))),
    );
    Ok(
      Spec::new(Method::POST, route.boxes())
        .json(Value::Object(body))
        .deadline(Deadline::Slow),
    )
  }

  /// No paging: every box in one reply.
  fn list_boxes(
    &self,
    route: &Route,
    status: Option<&str>,
    _page_size: Option<u32>,
    _token: Option<&str>,
  ) -> Spec {
    let spec = Spec::new(Method::GET, route.boxes());
    match status {
      Some(status) => spec.query("status", status),
      None => spec,
    }
  }

  fn lifecycle(&self, route: &Route, box_id: &str, action: Action) -> Spec {
    route
      .on_box(Method::POST, box_id, &format!(":{}", action.verb()))
      .deadline(Deadline::Slow)
  }

  /// BoxRun refuses a start of a running box (which its synchronous create returns) and a stop
  /// of a stopped one: the outcome asked for, so success (BoxLite's are idempotent anyway).
  fn lifecycle_reply(&self, action: Action, reply: Result<()>) -> Result<()> {
    let already = match action {
      Action::Start => "BOX_ALREADY_RUNNING",
      Action::Stop => "BOX_NOT_RUNNING",
    };
    match reply {
      Err(Error::Api(api)) if api.code.as_deref() == Some(already) => Ok(()),
      other => other,
    }
  }

  fn delete_reply(&self, _box_id: &str, reply: Result<()>) -> Result<()> {
    reply
  }

  /// `{"cmd": argv, "env", "timeout_ms"}`.
  fn exec(&self, route: &Route, box_id: &str, request: &ExecRequest) -> Spec {
    let mut body = Map::new();
    body.insert("cmd".into(), json!(wire::effective_argv(request)));
    if let Some(env) = &request.env {
      body.insert("env".into(), json!(env));
    }
    if let Some(timeout) = request.timeout_seconds {
      body.insert(
        "timeout_ms".into(),
        json!(((timeout * 1000.0).ceil() as u64).max(1)),
      );
    }
    exec_spec(route, box_id, Value::Object(body))
  }

  /// `GET …/events`: SSE, replayed from the start on every connection (so retried).
  fn output(&self, route: &Route, box_id: &str, exec_id: &str) -> Spec {
    route
      .on_execution(Method::GET, box_id, exec_id, "/events")
      .accept(Some("text/event-stream"))
      .deadline(Deadline::Stream)
  }

  fn output_kind(&self) -> Output {
    Output::BoxrunEvents
  }

  fn stdin(&self) -> Stdin {
    Stdin::Unavailable
  }

  fn input(&self, route: &Route, _box_id: &str, _exec_id: &str, _close: bool) -> Result<Spec> {
    Err(route.unsupported("sendExecInput over HTTP"))
  }

  fn kill(&self, route: &Route, box_id: &str, exec_id: &str) -> Spec {
    route.on_execution(Method::POST, box_id, exec_id, ":cancel")
  }

  /// Cancel is the only signal; the usual ending signals map to it.
  fn signal(&self, route: &Route, box_id: &str, exec_id: &str, signal: i32) -> Result<Spec> {
    match signal {
      1 | 2 | 9 | 15 => Ok(self.kill(route, box_id, exec_id)),
      _ => Err(route.unsupported("signalExec (BoxRun can only cancel: use signal 9 or 15)")),
    }
  }

  fn resize(&self, route: &Route, _box_id: &str, _exec_id: &str, _cols: u16, _rows: u16) -> Result<Spec> {
    Err(route.unsupported("resizeExec"))
  }

  /// `GET /v1/boxes/{id}/attach?shell=&cols=&rows=&term=`: a tty shell that lives as long as
  /// the WebSocket (raw bytes both ways, JSON `resize` / `exit` / `error` text frames).
  fn box_terminal(
    &self,
    route: &Route,
    box_id: &str,
    shell: &str,
    term: &str,
    size: (u16, u16),
  ) -> Option<Spec> {
    Some(
      route
        .on_box(Method::GET, box_id, "/attach")
        .query("shell", shell)
        .query("cols", size.0.to_string())
        .query("rows", size.1.to_string())
        .query("term", term),
    )
  }

  fn upload(&self) -> Upload {
    Upload::Staged
  }

  fn download(&self) -> Download {
    Download::Staged
  }

  /// Tar transfers are emulated here without size limit; executions have no stdin.
  fn features(&self) -> Features {
    Features {
      tar_upload: true,
      tar_download: true,
      tar_download_keeps_links: true,
      exec_stdin: false,
      box_terminal: true,
    }
  }

  fn extras(&self) -> bool {
    false
  }
}
