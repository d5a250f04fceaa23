//! Helpers of the `local_client_*` suites: the interpreter under test, a client on a home, box
//! and exec request defaults, a started box, and a Python process beside the embedded one.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use boxlite_core::client::{BoxClient, CreateBoxParams, ExecEvent, ExecRequest};
use boxlite_core::LocalConfig;
use futures_util::StreamExt;

use crate::check;
use crate::local_common::*;

pub fn python() -> String {
  std::env::var("BOXLITE_TEST_SDK_PYTHON").unwrap_or_else(|_| {
    repo_root()
      .join("python/testbed/.venv/bin/python")
      .to_string_lossy()
      .into_owned()
  })
}

pub fn client(home: &Path) -> Arc<dyn BoxClient> {
  boxlite_core::local::connect(&LocalConfig {
    python_path: python(),
    boxlite_home: Some(home.to_path_buf()),
  })
  .unwrap()
}

/// Box options every test starts from: a local OCI rootfs when BOXLITE_TEST_ROOTFS names one
/// (the real SDK cannot pull images here), else the SDK's default image.
pub fn params() -> CreateBoxParams {
  CreateBoxParams {
    rootfs_path: std::env::var("BOXLITE_TEST_ROOTFS").ok(),
    ..Default::default()
  }
}

pub fn req(cmd: &[&str]) -> ExecRequest {
  ExecRequest {
    cmd: cmd.iter().map(|s| s.to_string()).collect(),
    ..Default::default()
  }
}

/// A client on a fresh home with one started box.
pub async fn with_box(tag: &str) -> Result<(Arc<dyn BoxClient>, String, PathBuf), String> {
  let home = temp_home(tag);
  let c = client(&home);
  let b = c.create_box(params()).await.or_fail("create")?;
  c.start_box(&b.id).await.or_fail("start")?;
  Ok((c, b.id, home))
}

/// Exits with advice when the interpreter under test is missing.
pub fn require_python() {
  if !Path::new(&python()).exists() {
    eprintln!(
      "the simulator's venv is missing: python3 -m venv python/testbed/.venv && \
       python/testbed/.venv/bin/pip install -e 'python/testbed[test]' (or set BOXLITE_TEST_SDK_PYTHON)"
    );
    std::process::exit(1);
  }
}

/// Runs `script` in a separate Python process (the simulator's interpreter) with `HOME_DIR` set.
pub fn python_process(home: &Path, script: &str) -> Result<String, String> {
  let out = std::process::Command::new(python())
    .arg("-c")
    .arg(script)
    .env("HOME_DIR", home)
    .output()
    .map_err(|e| format!("spawn python: {e}"))?;
  check!(
    out.status.success(),
    "python failed ({}): {}",
    out.status,
    String::from_utf8_lossy(&out.stderr)
  );
  Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Every event of execution `exec_id` as `get_exec_output` replays it.
pub async fn output_events(
  c: &Arc<dyn BoxClient>,
  box_id: &str,
  exec_id: &str,
) -> Result<Vec<ExecEvent>, String> {
  c.get_exec_output(box_id, exec_id)
    .await
    .or_fail("output")?
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<Result<_, _>>()
    .or_fail("events")
}

/// The stdout bytes among `events`.
pub fn stdout_of(events: &[ExecEvent]) -> Vec<u8> {
  events
    .iter()
    .flat_map(|e| match e {
      ExecEvent::Stdout(b) => b.to_vec(),
      _ => vec![],
    })
    .collect()
}
