//! Requests as data, sans IO: `Spec` (method, path, query, body, deadline) and `Route`, where
//! one server's routes live: the configured URL's path (a deployment base such as `/api` is
//! kept), `/v1`, the tenant segment where the dialect has one, and percent-encoded ids. What
//! differs per dialect is built by its profile (`dialect/`); only `transport.rs` sends.

use std::fmt;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::Method;
use serde_json::Value;

use super::dialect::{Dialect, Profile, Tenant};
use crate::error::{ApiError, Error};

/// Everything but RFC 3986 unreserved characters is encoded in a path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
  .remove(b'-')
  .remove(b'.')
  .remove(b'_')
  .remove(b'~');

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
  /// The resource the path names (a box, an execution, a snapshot); none for probes and
  /// collections. Decides what a not-found reply means (`Spec::refusal`).
  pub subject: Option<Subject>,
}

/// The resource a request is about, e.g. `box` `b1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
  pub what: &'static str,
  pub id: String,
}

impl Spec {
  pub fn new(method: Method, path: String) -> Self {
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
      subject: None,
    }
  }

  /// Names the resource the path addresses.
  pub fn about(mut self, what: &'static str, id: &str) -> Self {
    self.subject = Some(Subject {
      what,
      id: id.to_string(),
    });
    self
  }

  /// A server's error reply to this request as an `Error`: the one place where a not-found
  /// becomes `Error::NotFound` about the request's subject (keeping the reply). Requests
  /// without a subject (detection probes, collections) keep the reply as `Error::Api`, so a
  /// route that is not there stays a status to look at.
  pub fn refusal(&self, api: ApiError) -> Error {
    match &self.subject {
      Some(subject) if api.is_not_found() => Error::NotFound {
        what: subject.what,
        id: subject.id.clone(),
        reply: Some(Box::new(api)),
      },
      _ => Error::Api(Box::new(api)),
    }
  }

  pub fn json(mut self, body: Value) -> Self {
    self.body = Body::Json(body);
    self
  }

  pub fn query(mut self, key: &'static str, value: impl Into<String>) -> Self {
    self.query.push((key, value.into()));
    self
  }

  pub fn deadline(mut self, deadline: Deadline) -> Self {
    self.deadline = deadline;
    self
  }

  pub fn idempotent(mut self, idempotent: bool) -> Self {
    self.idempotent = idempotent;
    self
  }

  pub fn accept(mut self, accept: Option<&'static str>) -> Self {
    self.accept = accept;
    self
  }
}

pub fn encode(segment: &str) -> String {
  utf8_percent_encode(segment, SEGMENT).to_string()
}

/// Where one server's routes live, for the dialect it speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
  pub dialect: Dialect,
  /// The configured URL's path without trailing slash, plus `/v1`.
  v1: String,
  /// The tenant segment(s), verbatim (current `boxlite serve`'s `path_prefix` may contain `/`).
  prefix: Option<String>,
}

/// `/v1` under the configured URL's path (`/`, `/api/`, …).
pub fn v1(api_path: &str) -> String {
  format!("{}/v1", api_path.trim_end_matches('/'))
}

/// `GET /v1/<leaf>`, never prefixed, never authenticated (`config`, BoxRun's `info`).
pub fn public(v1: &str, leaf: &str) -> Spec {
  let mut spec = Spec::new(Method::GET, format!("{v1}/{leaf}"));
  spec.auth = false;
  spec
}

/// `GET /v1/me` (current BoxLite), never prefixed.
pub fn me(v1: &str) -> Spec {
  Spec::new(Method::GET, format!("{v1}/me"))
}

/// `POST /v1/oauth/tokens` (SSE-era BoxLite), never prefixed, never authenticated.
pub fn token(v1: &str, form: String) -> Spec {
  let mut spec = Spec::new(Method::POST, format!("{v1}/oauth/tokens"));
  spec.body = Body::Form(form);
  spec.auth = false;
  spec.idempotent = true; // asking twice for a token is harmless
  spec
}

impl Route {
  /// `api_path` is the configured URL's path (`/`, `/api/`, …); `prefix` the resolved segment.
  pub fn new(dialect: Dialect, api_path: &str, prefix: Option<&str>) -> Self {
    let prefix = match dialect.profile().tenant() {
      Tenant::Never => None,
      Tenant::Fixed(_) | Tenant::FromPrincipal => prefix
        .map(|p| p.trim_matches('/'))
        .filter(|p| !p.is_empty())
        .map(str::to_string),
    };
    Route {
      dialect,
      v1: v1(api_path),
      prefix,
    }
  }

  pub fn profile(&self) -> &'static dyn Profile {
    self.dialect.profile()
  }

  pub fn prefix(&self) -> Option<&str> {
    self.prefix.as_deref()
  }

  /// The configured URL's path plus `/v1`.
  pub fn v1(&self) -> &str {
    &self.v1
  }

  /// The server's description (`/v1/config` or `/v1/info`).
  pub fn config(&self) -> Spec {
    self.profile().server_info(self)
  }

  /// `/v1/<prefix>`, or `/v1` without one.
  pub fn scope(&self) -> String {
    match &self.prefix {
      Some(p) => format!("{}/{p}", self.v1),
      None => self.v1.clone(),
    }
  }

  pub fn boxes(&self) -> String {
    format!("{}/boxes", self.scope())
  }

  pub fn one_box(&self, id: &str) -> String {
    format!("{}/{}", self.boxes(), encode(id))
  }

  /// `method` on the box's path plus `tail` (`""`, `/exec`, `:start`, …), about the box.
  pub fn on_box(&self, method: Method, id: &str, tail: &str) -> Spec {
    Spec::new(method, format!("{}{tail}", self.one_box(id))).about("box", id)
  }

  pub fn execution(&self, id: &str, exec_id: &str) -> String {
    self.profile().execution(self, id, exec_id)
  }

  /// `method` on the execution's path plus `tail`, about the execution.
  pub fn on_execution(&self, method: Method, id: &str, exec_id: &str, tail: &str) -> Spec {
    Spec::new(method, format!("{}{tail}", self.execution(id, exec_id))).about("execution", exec_id)
  }

  pub fn unsupported(&self, operation: &str) -> Error {
    Error::Unsupported {
      operation: operation.to_string(),
      backend: self.dialect.backend().to_string(),
    }
  }

  pub fn get_box(&self, id: &str) -> Spec {
    self.on_box(Method::GET, id, "")
  }

  pub fn delete_box(&self, id: &str, force: bool) -> Spec {
    let spec = self.on_box(Method::DELETE, id, "").deadline(Deadline::Slow);
    if force {
      spec.query("force", "true")
    } else {
      spec
    }
  }

  pub fn exec_status(&self, id: &str, exec_id: &str) -> Spec {
    self.on_execution(Method::GET, id, exec_id, "")
  }
}

/// `POST …/boxes/{id}/exec` with a dialect's body (every dialect starts commands there).
pub fn exec_spec(route: &Route, box_id: &str, body: Value) -> Spec {
  route
    .on_box(Method::POST, box_id, "/exec")
    .json(body)
    .deadline(Deadline::Slow)
}
