//! Wire shapes, sans IO: the argv every dialect sends, and tolerant parsing of what real
//! servers answer (`box_id` or `id`, `{boxes:[…]}` or bare arrays, errors top-level or under
//! `detail`, numeric or string codes). Request bodies are built by each dialect (`dialect/`).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::client::{BoxRecord, ExecRequest, Execution, Snapshot};
use crate::error::ApiError;

/// Bodies shown in parse errors are cut here so schema drift is visible without flooding logs.
pub const BODY_EXCERPT_LIMIT: usize = 4096;

/// The argv actually sent: `cmd`, wrapped to enter `working_dir` first when one is given.
pub fn effective_argv(request: &ExecRequest) -> Vec<String> {
  request.effective_argv()
}

/// The outbound policy of a network object: `{mode, allow_net}` itself, or its `outbound` part
/// when given per direction (`{outbound, inbound}`, what the current `boxlite serve` takes).
pub fn outbound_of(o: &Map<String, Value>) -> &Map<String, Value> {
  o.get("outbound").and_then(Value::as_object).unwrap_or(o)
}

/// A box in any dialect's shape.
pub fn parse_box(value: &Value) -> Option<BoxRecord> {
  let o = value.as_object()?;
  let text = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
  let id = text("box_id").or_else(|| text("id"))?;
  let env = o.get("env").and_then(Value::as_object).map(|m| {
    m.iter()
      .map(|(k, v)| {
        (
          k.clone(),
          v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()),
        )
      })
      .collect::<BTreeMap<_, _>>()
  });
  let number = |keys: &[&str]| keys.iter().find_map(|k| o.get(*k).and_then(Value::as_u64));
  Some(BoxRecord {
    id,
    boxlite_id: text("boxlite_id"),
    name: text("name"),
    status: text("status").unwrap_or_else(|| "unknown".into()),
    created_at: text("created_at").unwrap_or_default(),
    started_at: text("started_at"),
    stopped_at: text("stopped_at"),
    image: text("image").unwrap_or_default(),
    cpu: number(&["cpus", "cpu"]).and_then(|n| u32::try_from(n).ok()),
    memory_mb: number(&["memory_mib", "memory_mb"]),
    disk_size_gb: number(&["disk_size_gb"]),
    workdir: text("workdir").or_else(|| text("working_dir")),
    env,
    error_code: o.get("error_code").filter(|v| !v.is_null()).map(value_text),
    error_message: text("error_message"),
  })
}

/// A list of boxes: a bare array, `{"boxes": […]}` or `{}`.
pub fn parse_box_list(value: &Value) -> Option<(Vec<BoxRecord>, Option<String>)> {
  let (items, next) = match value {
    Value::Array(items) => (items.as_slice(), None),
    Value::Object(o) => {
      let next = o
        .get("next_page_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_string);
      match o.get("boxes").or_else(|| o.get("items")) {
        Some(Value::Array(items)) => (items.as_slice(), next),
        None | Some(Value::Null) => (&[][..], None),
        Some(_) => return None,
      }
    }
    _ => return None,
  };
  items
    .iter()
    .map(parse_box)
    .collect::<Option<Vec<_>>>()
    .map(|boxes| (boxes, next))
}

pub fn parse_snapshot(value: &Value, box_id: &str) -> Option<Snapshot> {
  let o = value.as_object()?;
  let text = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
  let name = text("name")?;
  let created_at = match o.get("created_at") {
    Some(Value::Number(n)) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)).unwrap_or(0),
    _ => 0,
  };
  Some(Snapshot {
    id: text("id")
      .or_else(|| text("snapshot_id"))
      .unwrap_or_else(|| name.clone()),
    box_id: text("box_id").unwrap_or_else(|| box_id.to_string()),
    name,
    created_at,
    size_bytes: o.get("size_bytes").and_then(Value::as_u64).unwrap_or(0),
    guest_disk_bytes: o.get("guest_disk_bytes").and_then(Value::as_u64),
    container_disk_bytes: o.get("container_disk_bytes").and_then(Value::as_u64),
  })
}

/// `{"snapshots": […]}` (the contract) or a bare array.
pub fn parse_snapshot_list(value: &Value, box_id: &str) -> Option<Vec<Snapshot>> {
  let items = match value {
    Value::Array(items) => items,
    Value::Object(o) => match o.get("snapshots") {
      Some(Value::Array(items)) => items,
      None | Some(Value::Null) => return Some(Vec::new()),
      Some(_) => return None,
    },
    _ => return None,
  };
  items.iter().map(|s| parse_snapshot(s, box_id)).collect()
}

/// The id a started execution answers: `execution_id` (BoxLite) or `id` (BoxRun's `Exec`).
pub fn parse_execution(value: &Value, box_id: &str) -> Option<Execution> {
  let o = value.as_object()?;
  let id = o
    .get("execution_id")
    .or_else(|| o.get("id"))
    .and_then(Value::as_str)?
    .to_string();
  Some(Execution {
    id,
    box_id: o
      .get("box_id")
      .and_then(Value::as_str)
      .map(str::to_string)
      .or_else(|| Some(box_id.to_string())),
    status: o
      .get("status")
      .and_then(Value::as_str)
      .unwrap_or("running")
      .to_string(),
    exit_code: super::sse::exit_code_of(value),
  })
}

/// The server's error reply as a typed `ApiError`, whatever its shape: `{"error": {…}}`,
/// `{"detail": {"error": {…}}}`, FastAPI's `{"detail": "…"|[…]}`, BoxRun's
/// `{"code", "message"}`, or plain text.
pub fn parse_api_error(status: u16, body: &[u8], method: &str, path: &str) -> ApiError {
  let mut error = ApiError {
    status,
    error_type: None,
    code: None,
    message: String::new(),
    method: method.to_string(),
    path: path.to_string(),
  };
  let parsed = serde_json::from_slice::<Value>(body).ok();
  if let Some(Value::Object(top)) = &parsed {
    let envelope = top.get("error").filter(|e| e.is_object()).or_else(|| {
      top
        .get("detail")
        .and_then(|d| d.get("error"))
        .filter(|e| e.is_object())
    });
    if let Some(Value::Object(e)) = envelope {
      fill_from(&mut error, e);
    } else if let Some(detail) = top.get("detail") {
      match detail {
        Value::String(s) => error.message = s.clone(),
        Value::Array(items) => {
          error.error_type = Some("ValidationError".into());
          error.message = items
            .iter()
            .map(|i| {
              let msg = i.get("msg").and_then(Value::as_str).unwrap_or("invalid");
              match i.get("loc") {
                Some(Value::Array(loc)) => {
                  let loc: Vec<String> = loc.iter().map(value_text).collect();
                  format!("{}: {msg}", loc.join("."))
                }
                _ => msg.to_string(),
              }
            })
            .collect::<Vec<_>>()
            .join("; ");
        }
        Value::Object(o) => fill_from(&mut error, o),
        other => error.message = other.to_string(),
      }
    } else {
      fill_from(&mut error, top);
      if let Some(Value::String(s)) = top.get("error") {
        if error.message.is_empty() {
          error.message = s.clone();
        }
      }
    }
  }
  if error.message.is_empty() {
    error.message = excerpt(body);
  }
  if error.message.is_empty() {
    error.message = reason(status).to_string();
  }
  error
}

fn fill_from(error: &mut ApiError, o: &Map<String, Value>) {
  if let Some(m) = o.get("message").and_then(Value::as_str) {
    error.message = m.to_string();
  }
  error.error_type = o.get("type").and_then(Value::as_str).map(str::to_string);
  error.code = o.get("code").filter(|c| !c.is_null()).map(value_text);
}

fn value_text(value: &Value) -> String {
  match value {
    Value::String(s) => s.clone(),
    other => other.to_string(),
  }
}

/// The body as text, trimmed and capped at `BODY_EXCERPT_LIMIT` bytes (on a char boundary).
pub fn excerpt(body: &[u8]) -> String {
  let text = String::from_utf8_lossy(&body[..body.len().min(BODY_EXCERPT_LIMIT)]);
  let mut text = text.trim().to_string();
  if body.len() > BODY_EXCERPT_LIMIT {
    text.push('…');
  }
  text
}

fn reason(status: u16) -> &'static str {
  match status {
    400 => "Bad Request",
    401 => "Unauthorized",
    403 => "Forbidden",
    404 => "Not Found",
    409 => "Conflict",
    413 => "Payload Too Large",
    415 => "Unsupported Media Type",
    422 => "Unprocessable Entity",
    500 => "Internal Server Error",
    502 => "Bad Gateway",
    503 => "Service Unavailable",
    504 => "Gateway Timeout",
    _ => "error",
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use serde_json::json;

  fn exec(cmd: &[&str]) -> ExecRequest {
    ExecRequest {
      cmd: cmd.iter().map(|s| s.to_string()).collect(),
      ..Default::default()
    }
  }

  #[test]
  fn working_dir_is_passed_as_an_argument_never_interpolated() {
    let request = ExecRequest {
      working_dir: Some("/tmp/it's \"here\"; rm -rf /".into()),
      ..exec(&["ls", "-a"])
    };
    assert_eq!(
      effective_argv(&request),
      vec![
        "sh",
        "-c",
        r#"cd -- "$1" || exit 2; shift; exec "$@""#,
        "sh",
        "/tmp/it's \"here\"; rm -rf /",
        "ls",
        "-a"
      ]
    );
    assert_eq!(effective_argv(&exec(&["ls"])), vec!["ls"]);
  }

  #[test]
  fn boxes_parse_from_every_dialect() {
    let a = json!({"box_id": "Ph1", "name": null, "status": "configured", "created_at": "t", "image": "alpine",
                   "cpus": 2, "memory_mib": 512, "labels": {}});
    let b = parse_box(&a).unwrap();
    assert_eq!(
      (b.id.as_str(), b.cpu, b.memory_mb, b.name),
      ("Ph1", Some(2), Some(512), None)
    );
    let c = json!({"id": "box_1", "name": "dev", "status": "running", "image": "ubuntu", "cpu": 1, "memory_mb": 1024,
                   "workdir": "/root", "env": {"K": "v"}, "error_code": null, "created_at": "t"});
    let b = parse_box(&c).unwrap();
    assert_eq!(
      (b.id.as_str(), b.cpu, b.workdir.as_deref(), b.error_code),
      ("box_1", Some(1), Some("/root"), None)
    );
    assert!(
      parse_box(&json!({"status": "running"})).is_none(),
      "a box without id is malformed"
    );
  }

  #[test]
  fn box_lists_accept_objects_arrays_and_empty_objects() {
    let one = json!({"box_id": "x", "status": "running"});
    assert_eq!(parse_box_list(&json!([one])).unwrap().0.len(), 1);
    let (boxes, next) = parse_box_list(&json!({"boxes": [one], "next_page_token": "p2"})).unwrap();
    assert_eq!((boxes.len(), next.as_deref()), (1, Some("p2")));
    assert_eq!(
      parse_box_list(&json!({"boxes": [], "next_page_token": null}))
        .unwrap()
        .1,
      None
    );
    assert!(parse_box_list(&json!({})).unwrap().0.is_empty());
    assert!(parse_box_list(&json!("nope")).is_none());
  }

  #[test]
  fn snapshots_parse_from_objects_and_arrays() {
    let s = json!({"id": "s1", "box_id": "b", "name": "n", "created_at": 17, "size_bytes": 3});
    assert_eq!(
      parse_snapshot_list(&json!({"snapshots": [s]}), "b").unwrap()[0].created_at,
      17
    );
    let bare = json!([{"name": "n2"}]);
    let list = parse_snapshot_list(&bare, "b").unwrap();
    assert_eq!((list[0].id.as_str(), list[0].box_id.as_str()), ("n2", "b"));
  }

  #[test]
  fn executions_parse_from_boxlite_and_boxrun_replies() {
    assert_eq!(
      parse_execution(&json!({"execution_id": "e1"}), "b").unwrap().id,
      "e1"
    );
    let c = parse_execution(
      &json!({"id": "exec_1", "box_id": "box_1", "status": "running", "exit_code": null}),
      "b",
    );
    assert_eq!(
      c.unwrap(),
      Execution {
        id: "exec_1".into(),
        box_id: Some("box_1".into()),
        status: "running".into(),
        exit_code: None
      }
    );
  }

  #[test]
  fn api_errors_parse_from_every_envelope() {
    struct Case {
      body: &'static str,
      message: &'static str,
      error_type: Option<&'static str>,
      code: Option<&'static str>,
    }
    let cases = [
      Case {
        body: r#"{"error":{"message":"box not found: x","type":"NotFoundError","code":404}}"#,
        message: "box not found: x",
        error_type: Some("NotFoundError"),
        code: Some("404"),
      },
      Case {
        body: r#"{"detail":{"error":{"message":"token expired","type":"UnauthorizedError","code":401}}}"#,
        message: "token expired",
        error_type: Some("UnauthorizedError"),
        code: Some("401"),
      },
      Case {
        body: r#"{"error":{"message":"m","type":"InvalidStateError","code":"invalid_state","request_id":null}}"#,
        message: "m",
        error_type: Some("InvalidStateError"),
        code: Some("invalid_state"),
      },
      Case {
        body: r#"{"code":"BOX_NOT_FOUND","message":"Box 'x' not found"}"#,
        message: "Box 'x' not found",
        error_type: None,
        code: Some("BOX_NOT_FOUND"),
      },
      Case {
        body: r#"{"detail":"Not Found"}"#,
        message: "Not Found",
        error_type: None,
        code: None,
      },
      Case {
        body: r#"{"detail":[{"type":"missing","loc":["body","command"],"msg":"Field required","input":{}}]}"#,
        message: "body.command: Field required",
        error_type: Some("ValidationError"),
        code: None,
      },
      Case {
        body: "Internal Server Error",
        message: "Internal Server Error",
        error_type: None,
        code: None,
      },
      Case {
        body: "",
        message: "Service Unavailable",
        error_type: None,
        code: None,
      },
    ];
    for case in cases {
      let status = if case.body.is_empty() { 503 } else { 500 };
      let e = parse_api_error(status, case.body.as_bytes(), "GET", "/v1/boxes/x");
      assert_eq!(e.message, case.message, "{}", case.body);
      assert_eq!(e.error_type.as_deref(), case.error_type, "{}", case.body);
      assert_eq!(e.code.as_deref(), case.code, "{}", case.body);
    }
  }

  #[test]
  fn plain_text_error_bodies_are_capped() {
    let body = vec![b'x'; BODY_EXCERPT_LIMIT * 3];
    let e = parse_api_error(422, &body, "POST", "/v1/boxes");
    assert!(e.message.len() <= BODY_EXCERPT_LIMIT + 4);
  }
}
