//! Sandbank's sandbox semantics over any `BoxClient`, identical in local mode and every remote
//! dialect. This module owns sandbank's argument types (create config, exec options, list
//! filter), their validation and the state mapping; the adapter operations live in
//! `lifecycle.rs` (create-and-wait, get/list/destroy, sleep/wake, snapshots), `exec.rs` (exec with
//! cwd and a killing timeout) and `ports.rs` (port URLs). File transfer lives in `files.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::client::{BoxRecord, CreateBoxParams};
use crate::error::{Error, Result};

mod exec;
mod lifecycle;
mod ports;
#[cfg(test)]
mod tests;

pub use exec::exec_request;
pub use lifecycle::STATE_CHANGE_TIMEOUT;

/// `config.timeout` default of `createSandbox`, in seconds (as in the original).
pub const DEFAULT_CREATE_TIMEOUT_SECS: f64 = 30.0;
/// Default image, as in the original.
pub const DEFAULT_IMAGE: &str = "ubuntu:24.04";

/// Back-off of status polling: starts fast so a box that is running at once costs one call,
/// grows so a slow boot does not flood the server.
#[derive(Debug, Clone, Copy)]
pub struct Polling {
  pub first: Duration,
  pub max: Duration,
}

impl Default for Polling {
  fn default() -> Self {
    Polling {
      first: Duration::from_millis(25),
      max: Duration::from_millis(500),
    }
  }
}

/// The part of sandbank's `CreateConfig` a BoxLite box uses; other keys (region, skills,
/// services, volumes, …) are not ours and are ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateConfig {
  pub image: Option<String>,
  pub env: Option<BTreeMap<String, String>>,
  pub resources: Option<Resources>,
  /// Seconds to wait for the box to run.
  pub timeout: Option<f64>,
  /// `[hostPort, guestPort]` pairs.
  pub ports: Option<Vec<(u16, u16)>>,
  pub user: Option<UserSpec>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Resources {
  pub cpu: Option<f64>,
  /// MB.
  pub memory: Option<f64>,
  /// GB.
  pub disk: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum UserSpec {
  Name(String),
  Object { name: Option<String> },
}

/// sandbank's `ExecOptions` (`asRoot` is core's business and ignored here).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ExecOptions {
  pub cwd: Option<String>,
  /// Milliseconds; `0` or absent means no timeout (as in the original).
  pub timeout: Option<f64>,
}

/// sandbank's `ListFilter`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListFilter {
  pub state: Option<OneOrMany>,
  pub limit: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
  One(String),
  Many(Vec<String>),
}

/// A sandbox as JS sees it (`SandboxInfo` plus the raw status).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxInfo {
  pub id: String,
  pub state: &'static str,
  pub created_at: String,
  pub image: String,
  /// The server's or SDK's own status word.
  pub status: String,
}

impl From<&BoxRecord> for SandboxInfo {
  fn from(record: &BoxRecord) -> Self {
    SandboxInfo {
      id: record.id.clone(),
      state: sandbox_state(&record.status),
      created_at: record.created_at.clone(),
      image: record.image.clone(),
      status: record.status.clone(),
    }
  }
}

/// BoxLite/BoxRun status → sandbank `SandboxState` (see `docs/behaviour.md`).
pub fn sandbox_state(status: &str) -> &'static str {
  match status {
    "configured" | "creating" => "creating",
    "running" => "running",
    "stopping" | "stopped" | "paused" => "stopped",
    _ => "error",
  }
}

/// Statuses from which a box will not reach `running` without help.
fn is_failed(status: &str) -> bool {
  matches!(status, "failed" | "error")
}

/// The `createBox` parameters for a sandbank `CreateConfig`.
pub fn create_params(config: &CreateConfig) -> Result<CreateBoxParams> {
  let image = config.image.clone().unwrap_or_else(|| DEFAULT_IMAGE.to_string());
  if image.trim().is_empty() {
    return Err(invalid("config.image", "must not be empty"));
  }
  let (image, rootfs_path) = if image.starts_with('/') {
    (None, Some(image))
  } else {
    (Some(image), None)
  };
  let resources = config.resources.clone().unwrap_or_default();
  let user = match &config.user {
    Some(UserSpec::Name(name)) if !name.is_empty() => Some(name.clone()),
    Some(UserSpec::Object { name: Some(name) }) if !name.is_empty() => Some(name.clone()),
    _ => None,
  };
  Ok(CreateBoxParams {
    image,
    rootfs_path,
    cpu: whole("config.resources.cpu", resources.cpu)?.map(|n| n as u32),
    memory_mb: whole("config.resources.memory", resources.memory)?,
    disk_size_gb: whole("config.resources.disk", resources.disk)?,
    env: config.env.clone().filter(|env| !env.is_empty()),
    // Boxes must survive stop: several servers default to deleting them.
    auto_remove: Some(false),
    ports: config.ports.clone().filter(|ports| !ports.is_empty()),
    user,
    ..CreateBoxParams::default()
  })
}

fn whole(field: &str, value: Option<f64>) -> Result<Option<u64>> {
  match value {
    None => Ok(None),
    Some(v) if v.is_finite() && v >= 1.0 && v.fract() == 0.0 && v <= u32::MAX as f64 => Ok(Some(v as u64)),
    Some(v) => Err(invalid(field, &format!("must be a whole number >= 1, got {v}"))),
  }
}

fn invalid(argument: &str, problem: &str) -> Error {
  Error::InvalidArgument {
    argument: argument.into(),
    problem: problem.into(),
  }
}
