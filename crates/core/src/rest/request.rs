//! Request building, sans IO: for each operation and dialect, the method, path, query and body
//! (`Spec`), or `Error::Unsupported` when the dialect has no endpoint for it. Paths are built
//! from the configured URL's path (a deployment base such as `/api` is kept), `/v1`, the tenant
//! segment where the dialect has one, and percent-encoded ids. Only `transport.rs` sends.

use std::fmt;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::Method;
use serde_json::{json, Value};

use crate::error::{Error, Result};

/// Everything but RFC 3986 unreserved characters is encoded in a path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
  .remove(b'-')
  .remove(b'.')
  .remove(b'_')
  .remove(b'~');

/// The three HTTP dialects (see `server-apis.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
  /// A: BoxLite REST of the SSE era (OAuth2 token endpoint, `{prefix}`, SSE output).
  Sse,
  /// B: current BoxLite REST (`/v1/me`, optional prefix, WebSocket attach).
  Current,
  /// C: BoxRun (colon actions, `seq`-numbered exec events, multipart upload).
  Boxrun,
}

impl Dialect {
  /// How errors name the server, e.g. "BoxRun server (dialect boxrun)".
  pub fn backend(self) -> &'static str {
    match self {
      Dialect::Sse => "BoxLite REST server (dialect sse)",
      Dialect::Current => "BoxLite REST server (dialect current)",
      Dialect::Boxrun => "BoxRun server (dialect boxrun)",
    }
  }

  pub fn name(self) -> &'static str {
    match self {
      Dialect::Sse => "sse",
      Dialect::Current => "current",
      Dialect::Boxrun => "boxrun",
    }
  }
}

/// How long a request may take before the client gives up (values in `transport.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
  /// Metadata calls.
  Normal,
  /// Calls that may boot a VM or pull an image (create on BoxRun, start, exec on a cold box).
  Slow,
  /// Bodies streamed in either direction: no total bound, an idle bound instead.
  Stream,
}

/// A request body, as far as it is known before sending.
#[derive(Clone, PartialEq)]
pub enum Body {
  Empty,
  Json(Value),
  /// `application/x-www-form-urlencoded`, already encoded (holds secrets: never printed).
  Form(String),
  /// A streamed body supplied at send time, with its content type.
  Stream(&'static str),
  /// Raw bytes known up front (stdin), with its content type.
  Bytes(&'static str),
}

impl fmt::Debug for Body {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match self {
      Body::Empty => f.write_str("Empty"),
      Body::Json(v) => write!(f, "Json({v})"),
      Body::Form(_) => f.write_str("Form([REDACTED])"),
      Body::Stream(t) => write!(f, "Stream({t})"),
      Body::Bytes(t) => write!(f, "Bytes({t})"),
    }
  }
}

/// One request, fully described without I/O.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
  pub method: Method,
  /// Absolute path from the origin, percent-encoded, without query.
  pub path: String,
  pub query: Vec<(&'static str, String)>,
  pub body: Body,
  pub accept: Option<&'static str>,
  pub headers: Vec<(&'static str, &'static str)>,
  /// Whether repeating the request is harmless (then 502/503/504 and resets are retried).
  pub idempotent: bool,
  /// Whether the bearer goes with it (`/config` and `/oauth/tokens` never need it).
  pub auth: bool,
  pub deadline: Deadline,
}

impl Spec {
  fn new(method: Method, path: String) -> Self {
    let idempotent = matches!(method, Method::GET | Method::HEAD | Method::PUT | Method::DELETE);
    Spec {
      method,
      path,
      query: Vec::new(),
      body: Body::Empty,
      accept: Some("application/json"),
      headers: Vec::new(),
      idempotent,
      auth: true,
      deadline: Deadline::Normal,
    }
  }

  fn json(mut self, body: Value) -> Self {
    self.body = Body::Json(body);
    self
  }

  fn query(mut self, key: &'static str, value: impl Into<String>) -> Self {
    self.query.push((key, value.into()));
    self
  }

  fn deadline(mut self, deadline: Deadline) -> Self {
    self.deadline = deadline;
    self
  }

  fn idempotent(mut self, idempotent: bool) -> Self {
    self.idempotent = idempotent;
    self
  }

  fn accept(mut self, accept: Option<&'static str>) -> Self {
    self.accept = accept;
    self
  }
}

pub fn encode(segment: &str) -> String {
  utf8_percent_encode(segment, SEGMENT).to_string()
}

/// Where a dialect's routes live for one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
  pub dialect: Dialect,
  /// The configured URL's path without trailing slash, plus `/v1`.
  v1: String,
  /// The tenant segment(s), verbatim (dialect B's `path_prefix` may contain `/`).
  prefix: Option<String>,
}

impl Route {
  /// `api_path` is the configured URL's path (`/`, `/api/`, …); `prefix` the resolved segment.
  pub fn new(dialect: Dialect, api_path: &str, prefix: Option<&str>) -> Self {
    let v1 = format!("{}/v1", api_path.trim_end_matches('/'));
    let prefix = match dialect {
      Dialect::Boxrun => None,
      _ => prefix
        .map(|p| p.trim_matches('/'))
        .filter(|p| !p.is_empty())
        .map(str::to_string),
    };
    Route { dialect, v1, prefix }
  }

  pub fn prefix(&self) -> Option<&str> {
    self.prefix.as_deref()
  }

  /// `/v1/config`, never prefixed, never authenticated (BoxRun: `/v1/info`).
  pub fn config(&self) -> Spec {
    let leaf = if self.dialect == Dialect::Boxrun {
      "info"
    } else {
      "config"
    };
    let mut spec = Spec::new(Method::GET, format!("{}/{leaf}", self.v1));
    spec.auth = false;
    spec
  }

  /// `/v1/me` (dialect B), never prefixed.
  pub fn me(&self) -> Spec {
    Spec::new(Method::GET, format!("{}/me", self.v1))
  }

  /// `/v1/oauth/tokens` (dialect A), never prefixed, never authenticated.
  pub fn token(&self, form: String) -> Spec {
    let mut spec = Spec::new(Method::POST, format!("{}/oauth/tokens", self.v1));
    spec.body = Body::Form(form);
    spec.auth = false;
    spec.idempotent = true; // asking twice for a token is harmless
    spec
  }

  fn scope(&self) -> String {
    match &self.prefix {
      Some(p) => format!("{}/{p}", self.v1),
      None => self.v1.clone(),
    }
  }

  fn boxes(&self) -> String {
    format!("{}/boxes", self.scope())
  }

  fn one_box(&self, id: &str) -> String {
    format!("{}/{}", self.boxes(), encode(id))
  }

  fn execution(&self, id: &str, exec_id: &str) -> String {
    match self.dialect {
      Dialect::Boxrun => format!("{}/exec/{}", self.one_box(id), encode(exec_id)),
      _ => format!("{}/executions/{}", self.one_box(id), encode(exec_id)),
    }
  }

  pub fn unsupported(&self, operation: &str) -> Error {
    Error::Unsupported {
      operation: operation.to_string(),
      backend: self.dialect.backend().to_string(),
    }
  }

  pub fn create_box(&self, body: Value) -> Spec {
    let deadline = if self.dialect == Dialect::Boxrun {
      Deadline::Slow
    } else {
      Deadline::Normal
    };
    Spec::new(Method::POST, self.boxes())
      .json(body)
      .deadline(deadline)
  }

  pub fn get_box(&self, id: &str) -> Spec {
    Spec::new(Method::GET, self.one_box(id))
  }

  pub fn list_boxes(&self, status: Option<&str>, page_size: Option<u32>, page_token: Option<&str>) -> Spec {
    let mut spec = Spec::new(Method::GET, self.boxes());
    if let Some(status) = status {
      spec = spec.query("status", status);
    }
    if self.dialect != Dialect::Boxrun {
      if let Some(size) = page_size {
        spec = spec.query("pageSize", size.to_string());
      }
      if let Some(token) = page_token {
        spec = spec.query("pageToken", token);
      }
    }
    spec
  }

  pub fn delete_box(&self, id: &str, force: bool) -> Spec {
    let spec = Spec::new(Method::DELETE, self.one_box(id)).deadline(Deadline::Slow);
    if force {
      spec.query("force", "true")
    } else {
      spec
    }
  }

  /// `start` / `stop`: a sub-path in BoxLite, a colon action in BoxRun. Both are idempotent.
  pub fn lifecycle(&self, id: &str, action: &str) -> Spec {
    let path = match self.dialect {
      Dialect::Boxrun => format!("{}:{action}", self.one_box(id)),
      _ => format!("{}/{action}", self.one_box(id)),
    };
    Spec::new(Method::POST, path).deadline(Deadline::Slow)
  }

  pub fn exec(&self, id: &str, body: Value) -> Spec {
    Spec::new(Method::POST, format!("{}/exec", self.one_box(id)))
      .json(body)
      .deadline(Deadline::Slow)
  }

  pub fn exec_status(&self, id: &str, exec_id: &str) -> Spec {
    Spec::new(Method::GET, self.execution(id, exec_id))
  }

  /// The output stream: SSE in A (take-once: never retried) and C (replayed), WebSocket in B.
  pub fn exec_output(&self, id: &str, exec_id: &str) -> Spec {
    let base = self.execution(id, exec_id);
    match self.dialect {
      Dialect::Sse => Spec::new(Method::GET, format!("{base}/output"))
        .accept(Some("text/event-stream"))
        .deadline(Deadline::Stream)
        .idempotent(false),
      Dialect::Boxrun => Spec::new(Method::GET, format!("{base}/events"))
        .accept(Some("text/event-stream"))
        .deadline(Deadline::Stream),
      Dialect::Current => Spec::new(Method::GET, format!("{base}/attach"))
        .accept(None)
        .deadline(Deadline::Stream)
        .idempotent(false),
    }
  }

  /// Raw stdin bytes (A only; B writes stdin over the attach socket).
  pub fn exec_input(&self, id: &str, exec_id: &str, close: bool) -> Result<Spec> {
    if self.dialect != Dialect::Sse {
      return Err(self.unsupported("sendExecInput over HTTP"));
    }
    let mut spec = Spec::new(Method::POST, format!("{}/input", self.execution(id, exec_id)));
    spec.body = Body::Bytes("application/octet-stream");
    if close {
      spec.headers.push(("X-Close-Stdin", "true"));
    }
    Ok(spec)
  }

  pub fn exec_signal(&self, id: &str, exec_id: &str, signal: i32) -> Result<Spec> {
    match self.dialect {
      Dialect::Boxrun => Err(self.unsupported("signalExec (BoxRun can only cancel: use signal 9 or 15)")),
      _ => Ok(
        Spec::new(Method::POST, format!("{}/signal", self.execution(id, exec_id)))
          .json(json!({"signal": signal})),
      ),
    }
  }

  /// Ends an execution for good: A has only `signal` (SIGKILL), B `DELETE`, C `:cancel`.
  pub fn exec_kill(&self, id: &str, exec_id: &str) -> Spec {
    let base = self.execution(id, exec_id);
    match self.dialect {
      Dialect::Sse => Spec::new(Method::POST, format!("{base}/signal")).json(json!({"signal": 9})),
      Dialect::Current => Spec::new(Method::DELETE, base),
      Dialect::Boxrun => Spec::new(Method::POST, format!("{base}:cancel")),
    }
  }

  pub fn exec_resize(&self, id: &str, exec_id: &str, cols: u16, rows: u16) -> Result<Spec> {
    match self.dialect {
      Dialect::Boxrun => Err(self.unsupported("resizeExec")),
      _ => Ok(
        Spec::new(Method::POST, format!("{}/resize", self.execution(id, exec_id)))
          .json(json!({"cols": cols, "rows": rows})),
      ),
    }
  }

  /// Tar upload (A, B). BoxRun uploads single files (`upload_file`).
  pub fn upload(&self, id: &str, path: &str) -> Result<Spec> {
    if self.dialect == Dialect::Boxrun {
      return Err(self.unsupported("tar upload"));
    }
    let mut spec = Spec::new(Method::PUT, format!("{}/files", self.one_box(id)))
      .query("path", path)
      .query("overwrite", "true")
      .deadline(Deadline::Stream)
      .idempotent(false);
    spec.body = Body::Stream("application/x-tar");
    Ok(spec)
  }

  /// Tar download (A, B).
  pub fn download(&self, id: &str, path: &str) -> Result<Spec> {
    if self.dialect == Dialect::Boxrun {
      return Err(self.unsupported("tar download"));
    }
    Ok(
      Spec::new(Method::GET, format!("{}/files", self.one_box(id)))
        .query("path", path)
        .accept(Some("application/x-tar"))
        .deadline(Deadline::Stream),
    )
  }

  /// BoxRun: one file per multipart request (`file` and `dest` parts).
  pub fn upload_file(&self, id: &str) -> Spec {
    let mut spec =
      Spec::new(Method::POST, format!("{}/files/upload", self.one_box(id))).deadline(Deadline::Stream);
    spec.body = Body::Stream("multipart/form-data");
    spec
  }

  /// BoxRun: one file's raw bytes, asked for with a JSON body.
  pub fn download_file(&self, id: &str, path: &str) -> Spec {
    Spec::new(Method::POST, format!("{}/files/download", self.one_box(id)))
      .json(json!({"path": path}))
      .accept(Some("application/octet-stream"))
      .deadline(Deadline::Stream)
      .idempotent(true)
  }

  fn boxlite_only(&self, operation: &str) -> Result<()> {
    if self.dialect == Dialect::Boxrun {
      Err(self.unsupported(operation))
    } else {
      Ok(())
    }
  }

  pub fn create_snapshot(&self, id: &str, name: &str) -> Result<Spec> {
    self.boxlite_only("createSnapshot")?;
    Ok(
      Spec::new(Method::POST, format!("{}/snapshots", self.one_box(id)))
        .json(json!({"name": name}))
        .deadline(Deadline::Slow),
    )
  }

  pub fn list_snapshots(&self, id: &str) -> Result<Spec> {
    self.boxlite_only("listSnapshots")?;
    Ok(Spec::new(Method::GET, format!("{}/snapshots", self.one_box(id))))
  }

  pub fn restore_snapshot(&self, id: &str, name: &str) -> Result<Spec> {
    self.boxlite_only("restoreSnapshot")?;
    Ok(
      Spec::new(
        Method::POST,
        format!("{}/snapshots/{}/restore", self.one_box(id), encode(name)),
      )
      .deadline(Deadline::Slow),
    )
  }

  pub fn delete_snapshot(&self, id: &str, name: &str) -> Result<Spec> {
    self.boxlite_only("deleteSnapshot")?;
    Ok(Spec::new(
      Method::DELETE,
      format!("{}/snapshots/{}", self.one_box(id), encode(name)),
    ))
  }

  pub fn clone_box(&self, id: &str, name: Option<&str>) -> Result<Spec> {
    self.boxlite_only("cloneBox")?;
    let body = match name {
      Some(name) => json!({"name": name}),
      None => json!({}),
    };
    Ok(
      Spec::new(Method::POST, format!("{}/clone", self.one_box(id)))
        .json(body)
        .deadline(Deadline::Slow),
    )
  }

  pub fn export_box(&self, id: &str) -> Result<Spec> {
    self.boxlite_only("exportBox")?;
    Ok(
      Spec::new(Method::POST, format!("{}/export", self.one_box(id)))
        .json(json!({}))
        .accept(Some("application/octet-stream"))
        .deadline(Deadline::Stream),
    )
  }

  pub fn import_box(&self) -> Result<Spec> {
    self.boxlite_only("importBox")?;
    let mut spec = Spec::new(Method::POST, format!("{}/import", self.boxes())).deadline(Deadline::Stream);
    spec.body = Body::Stream("application/octet-stream");
    Ok(spec)
  }

  pub fn metrics(&self) -> Result<Spec> {
    self.boxlite_only("getMetrics")?;
    Ok(Spec::new(Method::GET, format!("{}/metrics", self.scope())))
  }

  pub fn box_metrics(&self, id: &str) -> Result<Spec> {
    self.boxlite_only("getBoxMetrics")?;
    Ok(Spec::new(Method::GET, format!("{}/metrics", self.one_box(id))).deadline(Deadline::Slow))
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn line(spec: &Spec) -> String {
    let query: Vec<String> = spec.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if query.is_empty() {
      format!("{} {}", spec.method, spec.path)
    } else {
      format!("{} {}?{}", spec.method, spec.path, query.join("&"))
    }
  }

  #[test]
  fn prefixes_follow_each_dialect_and_config_is_never_prefixed() {
    let a = Route::new(Dialect::Sse, "/", Some("default"));
    let b = Route::new(Dialect::Current, "/api/", Some("us-east/team-42"));
    let b_bare = Route::new(Dialect::Current, "", None);
    let c = Route::new(Dialect::Boxrun, "/", Some("ignored"));
    assert_eq!(line(&a.get_box("x")), "GET /v1/default/boxes/x");
    assert_eq!(line(&b.get_box("x")), "GET /api/v1/us-east/team-42/boxes/x");
    assert_eq!(line(&b_bare.get_box("x")), "GET /v1/boxes/x");
    assert_eq!(line(&c.get_box("x")), "GET /v1/boxes/x");
    assert_eq!(line(&a.config()), "GET /v1/config");
    assert_eq!(line(&b.config()), "GET /api/v1/config");
    assert_eq!(line(&c.config()), "GET /v1/info");
    assert_eq!(line(&b.me()), "GET /api/v1/me");
    assert_eq!(line(&a.token(String::new())), "POST /v1/oauth/tokens");
    assert!(!a.config().auth && !a.token(String::new()).auth && a.get_box("x").auth);
    assert_eq!(line(&a.metrics().unwrap()), "GET /v1/default/metrics");
    assert_eq!(line(&b_bare.metrics().unwrap()), "GET /v1/metrics");
  }

  #[test]
  fn routes_per_operation_and_dialect() {
    let a = Route::new(Dialect::Sse, "/", Some("p"));
    let b = Route::new(Dialect::Current, "/", None);
    let c = Route::new(Dialect::Boxrun, "/", None);
    let cases: Vec<(Spec, &str)> = vec![
      (a.lifecycle("b1", "start"), "POST /v1/p/boxes/b1/start"),
      (c.lifecycle("b1", "stop"), "POST /v1/boxes/b1:stop"),
      (a.delete_box("b1", true), "DELETE /v1/p/boxes/b1?force=true"),
      (c.delete_box("b1", false), "DELETE /v1/boxes/b1"),
      (
        a.list_boxes(Some("running"), Some(50), Some("t")),
        "GET /v1/p/boxes?status=running&pageSize=50&pageToken=t",
      ),
      (
        c.list_boxes(Some("running"), Some(50), None),
        "GET /v1/boxes?status=running",
      ),
      (
        a.exec_output("b1", "e1"),
        "GET /v1/p/boxes/b1/executions/e1/output",
      ),
      (b.exec_output("b1", "e1"), "GET /v1/boxes/b1/executions/e1/attach"),
      (c.exec_output("b1", "e1"), "GET /v1/boxes/b1/exec/e1/events"),
      (
        a.exec_kill("b1", "e1"),
        "POST /v1/p/boxes/b1/executions/e1/signal",
      ),
      (b.exec_kill("b1", "e1"), "DELETE /v1/boxes/b1/executions/e1"),
      (c.exec_kill("b1", "e1"), "POST /v1/boxes/b1/exec/e1:cancel"),
      (
        a.exec_input("b1", "e1", true).unwrap(),
        "POST /v1/p/boxes/b1/executions/e1/input",
      ),
      (
        a.upload("b1", "/root/x dir").unwrap(),
        "PUT /v1/p/boxes/b1/files?path=/root/x dir&overwrite=true",
      ),
      (
        b.download("b1", "/etc").unwrap(),
        "GET /v1/boxes/b1/files?path=/etc",
      ),
      (c.upload_file("b1"), "POST /v1/boxes/b1/files/upload"),
      (c.download_file("b1", "/f"), "POST /v1/boxes/b1/files/download"),
      (
        a.restore_snapshot("b1", "s 1").unwrap(),
        "POST /v1/p/boxes/b1/snapshots/s%201/restore",
      ),
      (b.import_box().unwrap(), "POST /v1/boxes/import"),
      (b.export_box("b1").unwrap(), "POST /v1/boxes/b1/export"),
    ];
    for (spec, expected) in cases {
      assert_eq!(line(&spec), expected);
    }
    assert_eq!(
      a.exec_input("b", "e", true).unwrap().headers,
      vec![("X-Close-Stdin", "true")]
    );
  }

  #[test]
  fn ids_in_paths_are_percent_encoded() {
    let c = Route::new(Dialect::Boxrun, "/", None);
    assert_eq!(c.get_box("a/b c:d").path, "/v1/boxes/a%2Fb%20c%3Ad");
    assert_eq!(c.lifecycle("a:b", "start").path, "/v1/boxes/a%3Ab:start");
  }

  #[test]
  fn boxrun_has_no_snapshots_clone_export_import_metrics_stdin_or_resize() {
    let c = Route::new(Dialect::Boxrun, "/", None);
    let errors = [
      c.create_snapshot("b", "s").unwrap_err(),
      c.list_snapshots("b").unwrap_err(),
      c.restore_snapshot("b", "s").unwrap_err(),
      c.delete_snapshot("b", "s").unwrap_err(),
      c.clone_box("b", None).unwrap_err(),
      c.export_box("b").unwrap_err(),
      c.import_box().unwrap_err(),
      c.metrics().unwrap_err(),
      c.box_metrics("b").unwrap_err(),
      c.exec_input("b", "e", false).unwrap_err(),
      c.exec_resize("b", "e", 1, 1).unwrap_err(),
    ];
    for error in errors {
      assert_eq!(error.code(), "unsupported");
      assert!(
        error
          .to_string()
          .ends_with("is not supported by BoxRun server (dialect boxrun)"),
        "{error}"
      );
    }
  }

  #[test]
  fn only_safe_requests_are_marked_idempotent() {
    let a = Route::new(Dialect::Sse, "/", Some("p"));
    assert!(a.get_box("b").idempotent);
    assert!(a.delete_box("b", false).idempotent);
    assert!(!a.exec("b", json!({})).idempotent);
    assert!(
      !a.exec_output("b", "e").idempotent,
      "the SSE-era output stream is take-once"
    );
    assert!(
      !a.upload("b", "/x").unwrap().idempotent,
      "a consumed body stream cannot be replayed"
    );
  }

  #[test]
  fn form_bodies_never_print() {
    let spec = Route::new(Dialect::Sse, "/", None).token("client_secret=s3cr3t".into());
    assert!(!format!("{spec:?}").contains("s3cr3t"));
  }
}
