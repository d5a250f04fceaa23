//! Python outcomes to Rust values: a job's reply (JSON text plus bytes) and a job's failure
//! (exception class, SDK code, message, MRO), and the one table mapping SDK exception classes to
//! the core's error variants.

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::Error;

/// A successful job: its JSON value and any byte payloads (exec output chunks).
#[derive(Debug, Default)]
pub struct Reply {
  pub value: Value,
  pub blobs: Vec<Bytes>,
}

impl Reply {
  /// `payload` is `(json_text, [bytes, …])`, built by `bridge/jobs.py`'s `_report`.
  pub(crate) fn from_python(payload: &Bound<'_, PyAny>) -> Result<Reply, PyFailure> {
    let parse = || -> PyResult<Reply> {
      let tuple = payload.cast::<PyTuple>()?;
      let text: String = tuple.get_item(0)?.extract()?;
      let mut blobs = Vec::new();
      let list = tuple.get_item(1)?;
      for item in list.cast::<PyList>()?.iter() {
        blobs.push(Bytes::copy_from_slice(item.cast::<PyBytes>()?.as_bytes()));
      }
      let value = serde_json::from_str(&text)
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(format!("bridge reply is not JSON: {e}")))?;
      Ok(Reply { value, blobs })
    };
    parse().map_err(|e| PyFailure::bridge(&format!("malformed bridge reply: {e}")))
  }

  pub fn parse<T: DeserializeOwned>(self, what: &str) -> crate::error::Result<T> {
    serde_json::from_value(self.value)
      .map_err(|e| Error::Internal(format!("unexpected {what} from the bridge: {e}")))
  }
}

/// A failed job, as `bridge/jobs.py`'s `_describe` reports the exception.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PyFailure {
  pub type_name: String,
  /// The SDK's `code` class attribute (`not_found`, …) when the exception has one.
  pub code: Option<String>,
  pub message: String,
  /// Class names of the exception's MRO, most specific first.
  pub mro: Vec<String>,
  pub traceback: String,
  /// Structured details of the bridge's own exceptions (`{"what", "id"}` for not-found).
  pub extra: Option<Value>,
}

impl PyFailure {
  pub fn bridge(message: &str) -> PyFailure {
    PyFailure {
      type_name: "BridgeError".into(),
      message: message.into(),
      mro: vec!["BridgeError".into()],
      ..Default::default()
    }
  }

  pub(crate) fn from_python(payload: &Bound<'_, PyAny>) -> PyFailure {
    type Raw = (
      String,
      Option<String>,
      String,
      Vec<String>,
      String,
      Option<String>,
    );
    match payload.extract::<Raw>() {
      Ok((type_name, code, message, mro, traceback, extra)) => PyFailure {
        type_name,
        code,
        message,
        mro,
        traceback,
        extra: extra.and_then(|e| serde_json::from_str(&e).ok()),
      },
      Err(e) => PyFailure::bridge(&format!("malformed bridge failure: {e}")),
    }
  }

  fn extra_str(&self, key: &str) -> Option<String> {
    self
      .extra
      .as_ref()?
      .get(key)
      .and_then(|v| v.as_str().map(str::to_string))
  }
}

/// The kinds an exception maps to; each row of `EXCEPTION_KINDS` picks one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
  NotFound,
  InvalidState,
  InvalidArgument,
  Unsupported,
  Timeout,
  /// The VM engine (KVM, the VMM) could not run the box.
  Engine,
  /// SDK internals; the home lock is recognised here.
  Internal,
  /// The Python environment cannot run the SDK (`bridge/state.py`'s `EnvironmentProblem`).
  Environment,
  /// Everything else keeps its class name in `Error::Python`.
  Python,
}

/// Exception class name → kind, matched against the exception's MRO (most specific class
/// first), so subclasses inherit their parent's row. Classes of `boxlite.errors` (0.10.8) and
/// of the bridge (`bridge/state.py`); anything absent is `Error::Python` with its class name.
pub const EXCEPTION_KINDS: &[(&str, Kind)] = &[
  ("BridgeNotFound", Kind::NotFound),
  ("BridgeTimeout", Kind::Timeout),
  ("EnvironmentProblem", Kind::Environment),
  ("NotFoundError", Kind::NotFound),
  ("InvalidStateError", Kind::InvalidState),
  ("StoppedError", Kind::InvalidState),
  ("InvalidArgumentError", Kind::InvalidArgument),
  ("UnsupportedError", Kind::Unsupported),
  // boxlite.errors.TimeoutError is not the builtin one; both mean a bounded wait ran out.
  ("TimeoutError", Kind::Timeout),
  ("EngineError", Kind::Engine),
  ("InternalError", Kind::Internal),
  ("AlreadyExistsError", Kind::Python),
];

pub fn kind_of(failure: &PyFailure) -> Kind {
  let names = std::iter::once(&failure.type_name).chain(failure.mro.iter());
  for name in names {
    if let Some((_, kind)) = EXCEPTION_KINDS.iter().find(|(class, _)| class == name) {
      return *kind;
    }
  }
  Kind::Python
}

/// What the failed call was about, to name things in the error.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
  pub operation: &'a str,
  /// The kind of resource an SDK not-found refers to (`box`, `snapshot`, …).
  pub what: &'static str,
  pub id: &'a str,
}

/// The error a failed job becomes.
pub fn to_error(failure: PyFailure, ctx: Ctx<'_>) -> Error {
  match kind_of(&failure) {
    // A missing path inside an existing box is not a missing box (which the adapter reports as
    // SandboxNotFoundError); the bridge names a missing box explicitly (`extra`).
    Kind::NotFound if ctx.what == "path" && failure.extra.is_none() => Error::FileNotFound { path: ctx.id.to_string() },
    Kind::NotFound => {
      let what = match failure.extra_str("what").as_deref() {
        Some("box") => "box",
        Some("execution") => "execution",
        Some("snapshot") => "snapshot",
        Some(_) => "resource",
        None => ctx.what,
      };
      Error::not_found(what, failure.extra_str("id").unwrap_or_else(|| ctx.id.to_string()))
    }
    Kind::InvalidState => Error::InvalidState { message: strip_prefix(&failure.message, "invalid state: ").to_string() },
    Kind::InvalidArgument => Error::InvalidArgument {
      argument: ctx.operation.to_string(),
      problem: failure.message.clone(),
    },
    Kind::Unsupported => Error::Unsupported {
      operation: ctx.operation.to_string(),
      backend: format!("the boxlite Python SDK ({})", failure.message),
    },
    Kind::Timeout => {
      let after_ms = failure.extra.as_ref().and_then(|e| e.get("after_ms")).and_then(Value::as_u64).unwrap_or(0);
      Error::Timeout { operation: failure.extra_str("operation").unwrap_or_else(|| ctx.operation.to_string()), after_ms }
    }
    Kind::Engine => Error::Environment { message: format!("{}: {}", failure.message, kvm_diagnosis()) },
    Kind::Internal if is_home_lock(&failure.message) => Error::Environment {
      message: format!(
        "the boxliteHome is in use by another BoxLite runtime (another process, or the SDK used directly in this \
         one); only one runtime may use a home at a time: stop it or use another boxliteHome. SDK: {}",
        failure.message.trim()
      ),
    },
    Kind::Environment => Error::Environment { message: failure.message },
    Kind::Internal | Kind::Python => Error::Python { type_name: failure.type_name, message: failure.message },
  }
}

fn strip_prefix<'a>(message: &'a str, prefix: &str) -> &'a str {
  message.strip_prefix(prefix).unwrap_or(message)
}

fn is_home_lock(message: &str) -> bool {
  message.contains("Another BoxliteRuntime is already using directory")
    || message.contains("Failed to acquire runtime lock")
}

/// What a failed VM start most likely means on this machine.
fn kvm_diagnosis() -> String {
  let path = std::path::Path::new("/dev/kvm");
  if !path.exists() {
    return "BoxLite could not boot the micro-VM: /dev/kvm does not exist, so hardware virtualisation is \
            unavailable here (enable KVM, or nested virtualisation in a VM)"
      .into();
  }
  match std::fs::OpenOptions::new().read(true).write(true).open(path) {
    Err(e) => format!(
      "BoxLite could not boot the micro-VM: /dev/kvm is not usable by this user ({e}); add the user to the 'kvm' group"
    ),
    Ok(_) => "BoxLite could not boot the micro-VM: /dev/kvm exists and opens, but KVM could not run the guest \
              (often nested virtualisation without full support)"
      .into(),
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn failure(type_name: &str, mro: &[&str], message: &str) -> PyFailure {
    PyFailure {
      type_name: type_name.into(),
      message: message.into(),
      mro: mro.iter().map(|s| s.to_string()).collect(),
      ..Default::default()
    }
  }

  fn sdk(class: &str, message: &str) -> PyFailure {
    failure(
      class,
      &[
        class,
        "_NativeError",
        "BoxliteError",
        "RuntimeError",
        "Exception",
        "BaseException",
        "object",
      ],
      message,
    )
  }

  const CTX: Ctx<'static> = Ctx {
    operation: "getBox",
    what: "box",
    id: "b1",
  };

  #[test]
  fn every_table_row_maps_to_its_kind() {
    for (class, kind) in EXCEPTION_KINDS {
      assert_eq!(kind_of(&sdk(class, "x")), *kind, "{class}");
    }
  }

  #[test]
  fn sdk_not_found_becomes_not_found_of_the_context() {
    let err = to_error(sdk("NotFoundError", "not found: b1"), CTX);
    assert!(
      matches!(&err, Error::NotFound { what: "box", id, .. } if id == "b1"),
      "{err:?}"
    );
    assert_eq!(err.code(), "not_found");
  }

  #[test]
  fn missing_path_in_a_box_is_file_not_found_not_a_missing_box() {
    let ctx = Ctx {
      operation: "copy_out",
      what: "path",
      id: "/root/nope",
    };
    let err = to_error(sdk("NotFoundError", "not found: /root/nope"), ctx);
    assert!(
      matches!(&err, Error::FileNotFound { path } if path == "/root/nope"),
      "{err:?}"
    );
    let mut missing_box = failure(
      "BridgeNotFound",
      &["BridgeNotFound", "Exception"],
      "box 'b1' not found",
    );
    missing_box.extra = Some(serde_json::json!({"what": "box", "id": "b1"}));
    assert_eq!(to_error(missing_box, ctx).code(), "not_found");
  }

  #[test]
  fn bridge_not_found_names_what_it_was() {
    let mut f = failure(
      "BridgeNotFound",
      &["BridgeNotFound", "Exception"],
      "execution 'e9' not found",
    );
    f.extra = Some(serde_json::json!({"what": "execution", "id": "e9"}));
    let err = to_error(f, CTX);
    assert!(
      matches!(&err, Error::NotFound { what: "execution", id, .. } if id == "e9"),
      "{err:?}"
    );
  }

  #[test]
  fn invalid_state_and_stopped_become_invalid_state_without_the_prefix() {
    let err = to_error(
      sdk(
        "InvalidStateError",
        "invalid state: Cannot restore snapshot while box is running",
      ),
      CTX,
    );
    assert_eq!(
      err.to_string(),
      "invalid state: Cannot restore snapshot while box is running"
    );
    let err = to_error(
      sdk("StoppedError", "stopped: Handle invalidated after stop()"),
      CTX,
    );
    assert_eq!(err.code(), "invalid_state");
  }

  #[test]
  fn invalid_argument_names_the_operation() {
    let err = to_error(
      sdk(
        "InvalidArgumentError",
        "invalid argument: box with name 'x' already exists",
      ),
      CTX,
    );
    assert_eq!(err.code(), "invalid_argument");
    assert!(err.to_string().contains("already exists"));
  }

  #[test]
  fn unsupported_keeps_the_sdk_message() {
    let err = to_error(
      sdk(
        "UnsupportedError",
        "unsupported: named volumes are not supported yet",
      ),
      CTX,
    );
    assert_eq!(err.code(), "unsupported");
    assert!(err.to_string().contains("named volumes"));
  }

  #[test]
  fn sdk_and_builtin_timeouts_become_timeout() {
    assert_eq!(to_error(sdk("TimeoutError", "slow"), CTX).code(), "timeout");
    let builtin = failure("TimeoutError", &["TimeoutError", "OSError", "Exception"], "");
    assert_eq!(to_error(builtin, CTX).code(), "timeout");
    let mut ours = failure(
      "BridgeTimeout",
      &["BridgeTimeout", "Exception"],
      "exec timed out after 1500 ms",
    );
    ours.extra = Some(serde_json::json!({"operation": "exec", "after_ms": 1500}));
    assert_eq!(to_error(ours, CTX).to_string(), "exec timed out after 1500 ms");
  }

  #[test]
  fn engine_error_keeps_the_sdk_message_and_says_what_it_means() {
    let err = to_error(
      sdk("EngineError", "engine reported an error: The VM failed to start."),
      CTX,
    );
    assert_eq!(err.code(), "environment");
    let text = err.to_string();
    assert!(
      text.starts_with("engine reported an error: The VM failed to start.: BoxLite could not boot"),
      "{text}"
    );
    assert!(text.contains("/dev/kvm"));
  }

  #[test]
  fn home_lock_is_an_environment_error_naming_the_cause() {
    let msg =
      "internal error: Failed to acquire runtime lock at /h: internal error: Another BoxliteRuntime is \
               already using directory: /h";
    let err = to_error(sdk("InternalError", msg), CTX);
    assert_eq!(err.code(), "environment");
    assert!(err.to_string().contains("in use by another BoxLite runtime"));
    assert!(err.to_string().contains(msg));
  }

  #[test]
  fn other_internal_errors_keep_their_class() {
    let err = to_error(sdk("InternalError", "internal error: boom"), CTX);
    assert!(matches!(&err, Error::Python { type_name, .. } if type_name == "InternalError"));
  }

  #[test]
  fn environment_problem_passes_its_message_through() {
    let f = failure(
      "EnvironmentProblem",
      &["EnvironmentProblem", "Exception"],
      "pip install boxlite",
    );
    assert_eq!(to_error(f, CTX).to_string(), "pip install boxlite");
  }

  #[test]
  fn already_exists_and_unknown_classes_keep_their_class_name() {
    let err = to_error(sdk("AlreadyExistsError", "already exists: snapshot 's1'"), CTX);
    assert_eq!(
      err.to_string(),
      "AlreadyExistsError: already exists: snapshot 's1'"
    );
    let err = to_error(
      failure("KeyError", &["KeyError", "LookupError", "Exception"], "'x'"),
      CTX,
    );
    assert_eq!(err.code(), "python");
  }

  #[test]
  fn subclasses_inherit_their_parents_row() {
    let f = failure(
      "MyNotFound",
      &["MyNotFound", "NotFoundError", "_NativeError", "Exception"],
      "not found: b1",
    );
    assert_eq!(kind_of(&f), Kind::NotFound);
  }
}
