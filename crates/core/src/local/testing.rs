//! Hooks for the interpreter tests (`tests/local_*.rs`); not part of the API.

use super::*;

/// Starts (or joins) the process's engine for `python_path`.
pub async fn start(python_path: &str) -> Result<()> {
  engine::engine(python_path).await.map(drop)
}

/// Runs a bridge op directly, e.g. `echo` with `{"value": …, "delay_ms": …}`.
pub async fn call(
  python_path: &str,
  op: &'static str,
  args: Value,
  blob: Option<Bytes>,
) -> Result<(Value, Vec<Bytes>)> {
  let engine = engine::engine(python_path).await?;
  let reply = engine.call(op, args, blob).await.map_err(|f| {
    to_error(
      f,
      Ctx {
        operation: op,
        what: "resource",
        id: "",
      },
    )
  })?;
  Ok((reply.value, reply.blobs))
}

/// The facts bridge.setup() reported (Python version, SDK version, sys.path, executable).
pub async fn facts(python_path: &str) -> Result<Value> {
  let e = engine::engine(python_path).await?;
  Ok(json!({
    "python_version": e.facts.python_version, "sdk_version": e.facts.sdk_version,
    "sdk_import_error": e.facts.sdk_import_error, "sys_path": e.facts.sys_path, "executable": e.facts.executable,
  }))
}
