//! What the three BoxLite dialects share (`sse-ref`, `sse-serve`, `current`): sub-path routes
//! under `…/executions/{id}`, the `command`/`args` exec body, the create body's common fields,
//! the tar file endpoints and the optional groups (snapshots, clone, export, import, metrics).

use reqwest::Method;
use serde_json::{json, Map, Value};

use super::Action;
use crate::client::{CreateBoxParams, ExecRequest};
use crate::rest::request::{encode, exec_spec, public, Body, Deadline, Route, Spec};
use crate::rest::wire;

pub fn server_info(route: &Route) -> Spec {
  public(route.v1(), "config")
}

pub fn execution(route: &Route, box_id: &str, exec_id: &str) -> String {
  format!("{}/executions/{}", route.one_box(box_id), encode(exec_id))
}

/// The create body's fields every BoxLite dialect takes (`cpus`, `memory_mib`, port-less).
pub fn create_body(params: &CreateBoxParams) -> Map<String, Value> {
  let mut body = Map::new();
  let mut put = |key: &str, value: Option<Value>| {
    if let Some(value) = value {
      body.insert(key.to_string(), value);
    }
  };
  put("image", params.image.as_ref().map(|v| json!(v)));
  put("rootfs_path", params.rootfs_path.as_ref().map(|v| json!(v)));
  put("name", params.name.as_ref().map(|v| json!(v)));
  put("cpus", params.cpu.map(|v| json!(v)));
  put("memory_mib", params.memory_mb.map(|v| json!(v)));
  put("disk_size_gb", params.disk_size_gb.map(|v| json!(v)));
  put("working_dir", params.working_dir.as_ref().map(|v| json!(v)));
  put("env", params.env.as_ref().map(|v| json!(v)));
  put("entrypoint", params.entrypoint.as_ref().map(argv_value));
  put("cmd", params.cmd.as_ref().map(|v| json!(v)));
  put("user", params.user.as_ref().map(|v| json!(v)));
  put("network", params.network.as_ref().map(network_object));
  put("secrets", params.secrets.as_ref().map(|v| json!(v)));
  body
}

pub fn create_box(route: &Route, body: Map<String, Value>) -> Spec {
  Spec::new(Method::POST, route.boxes()).json(Value::Object(body))
}

fn argv_value(value: &Value) -> Value {
  match value {
    Value::String(s) => json!([s]),
    other => other.clone(),
  }
}

/// The network option as BoxLite servers take it: `true`/`false` and mode strings become
/// `{mode}`; objects go as they are (both `{mode, allow_net}` and per-direction shapes).
pub fn network_object(value: &Value) -> Value {
  match value {
    Value::Bool(b) => json!({"mode": if *b { "enabled" } else { "disabled" }}),
    Value::String(s) => json!({"mode": s}),
    other => other.clone(),
  }
}

/// One page of boxes (`pageSize`/`pageToken` paging).
pub fn list_boxes(route: &Route, status: Option<&str>, page_size: Option<u32>, token: Option<&str>) -> Spec {
  let mut spec = Spec::new(Method::GET, route.boxes());
  if let Some(status) = status {
    spec = spec.query("status", status);
  }
  if let Some(size) = page_size {
    spec = spec.query("pageSize", size.to_string());
  }
  if let Some(token) = token {
    spec = spec.query("pageToken", token);
  }
  spec
}

/// `POST …/boxes/{id}/start|stop` (idempotent on BoxLite servers).
pub fn lifecycle(route: &Route, box_id: &str, action: Action) -> Spec {
  route
    .on_box(Method::POST, box_id, &format!("/{}", action.verb()))
    .deadline(Deadline::Slow)
}

/// `{"command", "args", "env", "timeout_seconds", "tty"}`. Working directories go through
/// `wire::effective_argv` (some servers ignore `working_dir`).
pub fn exec(route: &Route, box_id: &str, request: &ExecRequest) -> Spec {
  let argv = wire::effective_argv(request);
  let mut body = Map::new();
  body.insert("command".into(), json!(argv[0]));
  body.insert("args".into(), json!(argv[1..]));
  if let Some(env) = &request.env {
    body.insert("env".into(), json!(env));
  }
  if let Some(timeout) = request.timeout_seconds {
    // The API's minimum; the in-guest kill and the client's backstop are the real bound.
    body.insert("timeout_seconds".into(), json!(timeout.max(0.1)));
  }
  if let Some(tty) = request.tty {
    body.insert("tty".into(), json!(tty));
  }
  exec_spec(route, box_id, Value::Object(body))
}

/// `POST …/signal {"signal": n}`.
pub fn signal(route: &Route, box_id: &str, exec_id: &str, signal: i32) -> Spec {
  route
    .on_execution(Method::POST, box_id, exec_id, "/signal")
    .json(json!({"signal": signal}))
}

pub fn resize(route: &Route, box_id: &str, exec_id: &str, cols: u16, rows: u16) -> Spec {
  route
    .on_execution(Method::POST, box_id, exec_id, "/resize")
    .json(json!({"cols": cols, "rows": rows}))
}

/// Tar upload: `PUT …/files?path=…&overwrite=true`, the archive streamed.
pub fn upload(route: &Route, box_id: &str, path: &str) -> Spec {
  let mut spec = route
    .on_box(Method::PUT, box_id, "/files")
    .query("path", path)
    .query("overwrite", "true")
    .deadline(Deadline::Stream)
    .idempotent(false);
  spec.body = Body::Stream("application/x-tar");
  spec
}

/// Tar download: `GET …/files?path=…`.
pub fn download(route: &Route, box_id: &str, path: &str) -> Spec {
  route
    .on_box(Method::GET, box_id, "/files")
    .query("path", path)
    .accept(Some("application/x-tar"))
    .deadline(Deadline::Stream)
}

pub fn create_snapshot(route: &Route, box_id: &str, name: &str) -> Spec {
  route
    .on_box(Method::POST, box_id, "/snapshots")
    .json(json!({"name": name}))
    .deadline(Deadline::Slow)
}

pub fn list_snapshots(route: &Route, box_id: &str) -> Spec {
  route.on_box(Method::GET, box_id, "/snapshots")
}

pub fn restore_snapshot(route: &Route, box_id: &str, name: &str) -> Spec {
  route
    .on_box(
      Method::POST,
      box_id,
      &format!("/snapshots/{}/restore", encode(name)),
    )
    .about("snapshot", name)
    .deadline(Deadline::Slow)
}

pub fn delete_snapshot(route: &Route, box_id: &str, name: &str) -> Spec {
  route
    .on_box(Method::DELETE, box_id, &format!("/snapshots/{}", encode(name)))
    .about("snapshot", name)
}

pub fn clone_box(route: &Route, box_id: &str, name: Option<&str>) -> Spec {
  let body = match name {
    Some(name) => json!({"name": name}),
    None => json!({}),
  };
  route
    .on_box(Method::POST, box_id, "/clone")
    .json(body)
    .deadline(Deadline::Slow)
}

pub fn export_box(route: &Route, box_id: &str) -> Spec {
  route
    .on_box(Method::POST, box_id, "/export")
    .json(json!({}))
    .accept(Some("application/octet-stream"))
    .deadline(Deadline::Stream)
}

pub fn import_box(route: &Route) -> Spec {
  let mut spec = Spec::new(Method::POST, format!("{}/import", route.boxes())).deadline(Deadline::Stream);
  spec.body = Body::Stream("application/octet-stream");
  spec
}

pub fn metrics(route: &Route) -> Spec {
  Spec::new(Method::GET, format!("{}/metrics", route.scope()))
}

pub fn box_metrics(route: &Route, box_id: &str) -> Spec {
  route
    .on_box(Method::GET, box_id, "/metrics")
    .deadline(Deadline::Slow)
}
