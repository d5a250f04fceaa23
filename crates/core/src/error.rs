//! The single error type of the core. Every variant has a stable snake_case code that crosses
//! the JS boundary and decides which `@sandbank.dev/core` class the user sees; messages are for
//! people and may change, codes may not.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
  /// The adapter configuration cannot be used; `field` is its path, e.g. `config.apiUrl`.
  #[error("{field} {problem}")]
  InvalidConfig { field: String, problem: String },

  /// An argument of a call is unusable; `argument` names it.
  #[error("{argument} {problem}")]
  InvalidArgument { argument: String, problem: String },

  /// The box (or another named resource) does not exist. When a server said so, its reply is
  /// kept and is the message (it starts like the original's, `BoxLite API error 404: …`, and
  /// the server's words say more, e.g. whether the box or the execution is gone).
  #[error("{}", not_found_message(what, id, reply.as_deref()))]
  NotFound {
    what: &'static str,
    id: String,
    reply: Option<Box<ApiError>>,
  },

  /// The server or SDK in use has no way to do this.
  #[error("{operation} is not supported by {backend}")]
  Unsupported { operation: String, backend: String },

  /// A bounded wait ran out.
  #[error("{operation} timed out after {after_ms} ms")]
  Timeout { operation: String, after_ms: u64 },

  /// The adapter was disposed; create a new one.
  #[error("the adapter was disposed; create a new BoxLiteAdapter")]
  Disposed,

  /// A file or directory named by a file operation does not exist in the box (which does).
  #[error("no such file or directory in the box: '{path}'")]
  FileNotFound { path: String },

  /// The sandbox did not reach `running` in time (the original's message, kept for log matchers).
  #[error("Sandbox failed to start within {seconds}s (status: {status})")]
  StartTimeout { seconds: u64, status: String },

  /// A command ran into its `timeout` and was killed.
  #[error("command timed out after {timeout_ms} ms and was killed")]
  ExecTimeout { timeout_ms: u64 },

  /// The box is not in a state that allows the operation (e.g. restore on a running box).
  #[error("invalid state: {message}")]
  InvalidState { message: String },

  /// A server answered with an error status (other than a not-found about the request's subject,
  /// which is `NotFound`); the payload stays typed.
  #[error("{0}")]
  Api(Box<ApiError>),

  /// The request never got a complete answer (connect, TLS, reset, server died mid-stream).
  #[error("BoxLite request {method} {path} failed: {message}")]
  Transport {
    method: String,
    path: String,
    message: String,
  },

  /// The server answered something this client cannot understand (malformed JSON, truncated
  /// body, unexpected content type).
  #[error("BoxLite reply to {method} {path} is malformed: {message}")]
  Protocol {
    method: String,
    path: String,
    message: String,
  },

  /// The Python environment cannot run the SDK (interpreter missing, no shared libpython,
  /// `boxlite` not importable or too old); the message says what to do.
  #[error("{message}")]
  Environment { message: String },

  /// An exception raised by the boxlite SDK or the Python glue, keeping its class name.
  #[error("{type_name}: {message}")]
  Python { type_name: String, message: String },

  /// A bug in this addon; the message is for the bug report.
  #[error("internal error: {0}")]
  Internal(String),
}

/// A server's error reply. `Display` starts like the original's messages
/// (`BoxLite API error <status>: …`) so existing log matchers keep working.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
  pub status: u16,
  /// The server's error type or class (`NotFound`, `not_found`, …), when it sent one.
  pub error_type: Option<String>,
  /// The server's error code, numeric or string, as text.
  pub code: Option<String>,
  pub message: String,
  pub method: String,
  /// The request path without query string (queries may carry secrets).
  pub path: String,
}

impl ApiError {
  /// Whether the reply says "not found", from the status and the server's type, never from message
  /// text. Whether that is about a resource or a route only the request knows
  /// (`rest::request::Spec::refusal`).
  pub fn is_not_found(&self) -> bool {
    self.status == 404
      || self
        .error_type
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case("notfound") || t == "not_found")
  }
}

fn not_found_message(what: &str, id: &str, reply: Option<&ApiError>) -> String {
  match reply {
    Some(reply) => reply.to_string(),
    None => format!("{what} '{id}' not found"),
  }
}

impl std::fmt::Display for ApiError {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    write!(
      f,
      "BoxLite API error {}: {} ({} {})",
      self.status, self.message, self.method, self.path
    )
  }
}

impl Error {
  /// Every code `code()` can return, so the JS side can check it maps each one.
  pub const CODES: &'static [&'static str] = &[
    "invalid_config",
    "invalid_argument",
    "not_found",
    "unsupported",
    "timeout",
    "disposed",
    "invalid_state",
    "api_error",
    "transport",
    "protocol",
    "environment",
    "python",
    "internal",
    "file_not_found",
    "start_timeout",
    "exec_timeout",
  ];

  /// The box (or another named resource) does not exist: the only representation of that, in
  /// every mode.
  pub fn is_not_found(&self) -> bool {
    matches!(self, Error::NotFound { .. })
  }

  /// `NotFound` without a server's reply (decided before or without asking a server).
  pub fn not_found(what: &'static str, id: impl Into<String>) -> Self {
    Error::NotFound {
      what,
      id: id.into(),
      reply: None,
    }
  }

  /// A bounded wait of this client ran out (`Timeout`; not a command's own `ExecTimeout`).
  pub fn is_timeout(&self) -> bool {
    matches!(self, Error::Timeout { .. })
  }

  /// The stable machine-readable code of this error.
  pub fn code(&self) -> &'static str {
    match self {
      Error::InvalidConfig { .. } => "invalid_config",
      Error::InvalidArgument { .. } => "invalid_argument",
      Error::NotFound { .. } => "not_found",
      Error::Unsupported { .. } => "unsupported",
      Error::Timeout { .. } => "timeout",
      Error::Disposed => "disposed",
      Error::InvalidState { .. } => "invalid_state",
      Error::Api(_) => "api_error",
      Error::Transport { .. } => "transport",
      Error::Protocol { .. } => "protocol",
      Error::Environment { .. } => "environment",
      Error::Python { .. } => "python",
      Error::Internal(_) => "internal",
      Error::FileNotFound { .. } => "file_not_found",
      Error::StartTimeout { .. } => "start_timeout",
      Error::ExecTimeout { .. } => "exec_timeout",
    }
  }

  pub fn invalid_config(field: impl Into<String>, problem: impl Into<String>) -> Self {
    Error::InvalidConfig {
      field: field.into(),
      problem: problem.into(),
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn predicates_agree_with_the_codes() {
    let api = |status: u16| {
      Error::Api(Box::new(ApiError {
        status,
        error_type: None,
        code: None,
        message: "m".into(),
        method: "GET".into(),
        path: "/p".into(),
      }))
    };
    let cases = [
      Error::not_found("box", "b"),
      api(404),
      api(500),
      Error::Timeout {
        operation: "op".into(),
        after_ms: 1,
      },
      Error::ExecTimeout { timeout_ms: 1 },
      Error::Disposed,
    ];
    for error in cases {
      assert_eq!(error.is_not_found(), error.code() == "not_found", "{error}");
      assert_eq!(error.is_timeout(), error.code() == "timeout", "{error}");
    }
  }

  fn one_of_each() -> Vec<Error> {
    vec![
      Error::invalid_config("config.apiUrl", "must be a string"),
      Error::InvalidArgument {
        argument: "boxId".into(),
        problem: "must not be empty".into(),
      },
      Error::not_found("box", "b1"),
      Error::Unsupported {
        operation: "snapshots".into(),
        backend: "BoxRun".into(),
      },
      Error::Timeout {
        operation: "exec".into(),
        after_ms: 5,
      },
      Error::Disposed,
      Error::InvalidState {
        message: "box is running".into(),
      },
      Error::Api(Box::new(api(500))),
      Error::Transport {
        method: "GET".into(),
        path: "/v1/boxes".into(),
        message: "connection reset".into(),
      },
      Error::Protocol {
        method: "GET".into(),
        path: "/v1/boxes".into(),
        message: "expected JSON".into(),
      },
      Error::Environment {
        message: "python3 not found".into(),
      },
      Error::Python {
        type_name: "BoxliteError".into(),
        message: "boom".into(),
      },
      Error::Internal("bug".into()),
      Error::FileNotFound { path: "/x".into() },
      Error::StartTimeout {
        seconds: 30,
        status: "configured".into(),
      },
      Error::ExecTimeout { timeout_ms: 100 },
    ]
  }

  fn api(status: u16) -> ApiError {
    ApiError {
      status,
      error_type: None,
      code: None,
      message: "nope".into(),
      method: "GET".into(),
      path: "/v1/default/boxes/b1".into(),
    }
  }

  #[test]
  fn api_errors_start_like_the_original_and_name_the_request() {
    assert_eq!(
      Error::Api(Box::new(api(500))).to_string(),
      "BoxLite API error 500: nope (GET /v1/default/boxes/b1)"
    );
  }

  #[test]
  fn a_reply_says_not_found_by_status_or_type_never_by_wording() {
    assert!(api(404).is_not_found());
    let typed = ApiError {
      error_type: Some("NotFound".into()),
      ..api(400)
    };
    assert!(typed.is_not_found());
    let wording_only = ApiError {
      message: "box not found".into(),
      ..api(500)
    };
    assert!(!wording_only.is_not_found());
  }

  #[test]
  fn an_api_error_is_never_not_found_only_not_found_is() {
    // A 404 kept as `Api` is about a route (e.g. a detection probe), not a missing resource.
    let route_missing = Error::Api(Box::new(api(404)));
    assert!(!route_missing.is_not_found());
    assert_eq!(route_missing.code(), "api_error");
  }

  #[test]
  fn not_found_names_the_resource_or_reads_as_the_servers_reply() {
    assert_eq!(Error::not_found("box", "b1").to_string(), "box 'b1' not found");
    let from_server = Error::NotFound {
      what: "box",
      id: "b1".into(),
      reply: Some(Box::new(api(404))),
    };
    assert_eq!(
      from_server.to_string(),
      "BoxLite API error 404: nope (GET /v1/default/boxes/b1)"
    );
    assert_eq!(from_server.code(), "not_found");
  }

  #[test]
  fn every_variant_has_a_code_listed_in_codes() {
    let codes: Vec<_> = one_of_each().iter().map(Error::code).collect();
    assert_eq!(codes, Error::CODES);
  }

  #[test]
  fn invalid_config_message_names_the_field() {
    let err = Error::invalid_config("config.apiUrl", "must be an absolute http(s) URL, got ''");
    assert_eq!(
      err.to_string(),
      "config.apiUrl must be an absolute http(s) URL, got ''"
    );
  }
}
