//! `sse-ref`: BoxLite REST of the SSE era as the Python reference server serves it. OAuth2
//! client credentials, a tenant segment (`default` unless configured), SSE exec output (base64
//! chunks, take-once), stdin over HTTP, kill = SIGKILL through `…/signal`, tar file endpoints.
//! The functions here are shared with `sse-serve`, which serves the same routes.

use reqwest::Method;
use serde_json::{json, Map, Value};

use super::{boxlite, Action, Download, Output, Profile, Stdin, Tenant, Upload};
use crate::client::{CreateBoxParams, ExecRequest, Features};
use crate::error::{Error, Result};
use crate::rest::request::{Body, Deadline, Route, Spec};
use crate::rest::wire;

pub struct SseRef;

/// The SSE-era create body: the common fields plus `auto_remove` (off: the server's default
/// would delete the box when it stops, and sandboxes outlive a stop), `security` and ports.
pub(super) fn create_box(route: &Route, params: &CreateBoxParams) -> Spec {
  let mut body = boxlite::create_body(params);
  if let Some(network) = &params.network {
    body.insert("network".into(), sse_era_network(network));
  }
  body.insert("auto_remove".into(), json!(params.auto_remove.unwrap_or(false)));
  if let Some(v) = &params.security {
    body.insert("security".into(), v.clone());
  }
  if let Some(ports) = &params.ports {
    let ports: Vec<Value> = ports
      .iter()
      .map(|(host, guest)| json!({"host_port": host, "guest_port": guest}))
      .collect();
    body.insert("ports".into(), Value::Array(ports));
  }
  boxlite::create_box(route, body)
}

/// SSE-era servers know only `{mode, allow_net}` (outbound: they have no inbound policy), so a
/// per-direction network object is folded to its outbound part.
fn sse_era_network(value: &Value) -> Value {
  match value {
    Value::Object(o) if o.contains_key("outbound") || o.contains_key("inbound") => {
      let outbound = wire::outbound_of(o);
      let mut flat = Map::new();
      flat.insert(
        "mode".into(),
        outbound.get("mode").cloned().unwrap_or_else(|| json!("enabled")),
      );
      if let Some(allow) = outbound.get("allow_net") {
        flat.insert("allow_net".into(), allow.clone());
      }
      Value::Object(flat)
    }
    other => boxlite::network_object(other),
  }
}

/// The reference server with boxlite SDK 0.10.8 answers the delete of an unknown box with 500
/// `InternalError` "not found: <id>": a not-found (see `docs/dialects.md`).
pub(super) fn delete_reply(box_id: &str, reply: Result<()>) -> Result<()> {
  match reply {
    Err(Error::Api(api)) if api.status == 500 && api.message.starts_with("not found:") => {
      Err(Error::NotFound {
        what: "box",
        id: box_id.to_string(),
        reply: Some(api),
      })
    }
    other => other,
  }
}

/// `GET …/output`: SSE, take-once (never retried).
pub(super) fn output(route: &Route, box_id: &str, exec_id: &str) -> Spec {
  route
    .on_execution(Method::GET, box_id, exec_id, "/output")
    .accept(Some("text/event-stream"))
    .deadline(Deadline::Stream)
    .idempotent(false)
}

/// `POST …/input` with raw bytes; `X-Close-Stdin: true` closes stdin after them.
pub(super) fn input(route: &Route, box_id: &str, exec_id: &str, close: bool) -> Spec {
  let mut spec = route.on_execution(Method::POST, box_id, exec_id, "/input");
  spec.body = Body::Bytes("application/octet-stream");
  if close {
    spec.headers.push(("X-Close-Stdin", "true"));
  }
  spec
}

/// The only way to end an execution is SIGKILL through `…/signal`.
pub(super) fn kill(route: &Route, box_id: &str, exec_id: &str) -> Spec {
  boxlite::signal(route, box_id, exec_id, 9)
}

impl Profile for SseRef {
  fn name(&self) -> &'static str {
    "sse-ref"
  }

  fn backend(&self) -> &'static str {
    "BoxLite REST server (dialect sse)"
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
    Ok(create_box(route, params))
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
    delete_reply(box_id, reply)
  }

  fn exec(&self, route: &Route, box_id: &str, request: &ExecRequest) -> Spec {
    boxlite::exec(route, box_id, request)
  }

  fn output(&self, route: &Route, box_id: &str, exec_id: &str) -> Spec {
    output(route, box_id, exec_id)
  }

  fn output_kind(&self) -> Output {
    Output::SseEra
  }

  fn stdin(&self) -> Stdin {
    Stdin::Http
  }

  fn input(&self, route: &Route, box_id: &str, exec_id: &str, close: bool) -> Result<Spec> {
    Ok(input(route, box_id, exec_id, close))
  }

  fn kill(&self, route: &Route, box_id: &str, exec_id: &str) -> Spec {
    kill(route, box_id, exec_id)
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

  /// Everything: tar uploads extract into the target, stdin works while output is read.
  fn features(&self) -> Features {
    Features {
      tar_upload: true,
      tar_download: true,
      tar_download_keeps_links: true,
      exec_stdin: true,
      box_terminal: false,
    }
  }

  fn extras(&self) -> bool {
    true
  }
}
