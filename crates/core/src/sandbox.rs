//! Sandbank's sandbox semantics over any `BoxClient`, identical in local mode and every remote
//! dialect: create-and-wait-until-running, state mapping, list filters, idempotent destroy, exec
//! with cwd and a killing timeout, sleep/wake, the stop–snapshot–restart dance and port URLs.
//! File transfer lives in `files.rs`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::adapter::Adapter;
use crate::client::{
  BoxClient, BoxRecord, CreateBoxParams, ExecDone, ExecEventStream, ExecOutput, ExecRequest,
};
use crate::error::{Error, Result};

/// `config.timeout` default of `createSandbox`, in seconds (as in the original).
pub const DEFAULT_CREATE_TIMEOUT_SECS: f64 = 30.0;
/// How long `wake()` and the snapshot dance wait for a box to change state.
pub const STATE_CHANGE_TIMEOUT: Duration = Duration::from_secs(120);
/// Extra time the adapter gives a client to kill a timed-out command and report it, before the
/// adapter stops waiting itself (so a client that ignores the timeout cannot hang the caller).
const EXEC_TIMEOUT_GRACE: Duration = Duration::from_secs(10);
/// The client's own timeout is later than the in-guest one by this much, so the guest's
/// `timeout` (which kills the whole process group) fires first and nothing is left running.
const CLIENT_TIMEOUT_MARGIN_MS: u64 = 2_000;
/// Exit statuses of a command that `timeout -s KILL` killed: `timeout` kills its own process
/// group, itself included, so BoxLite reports SIGKILL as `-9`; a shell in between says `137`.
const KILLED_BY_TIMEOUT: [i32; 2] = [-9, 128 + 9];
/// Runs `$2` under coreutils `timeout`, which kills the command's whole process group (a plain
/// kill of `bash` would leave its children running); without `timeout` in the guest, the
/// client's kill is the fallback.
const TIMEOUT_WRAPPER: &str = r#"if command -v timeout >/dev/null 2>&1; then exec timeout -s KILL "$1" bash -c "$2"; else exec bash -c "$2"; fi"#;
/// How long after a create's deadline requests still in flight are given up on.
const DEADLINE_GRACE: Duration = Duration::from_millis(200);
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

/// Timeout of an exec in milliseconds: `None` for no timeout.
fn exec_timeout_ms(options: &ExecOptions) -> Result<Option<u64>> {
  match options.timeout {
    None => Ok(None),
    Some(0.0) => Ok(None),
    Some(ms) if ms.is_finite() && ms > 0.0 => Ok(Some(ms.ceil() as u64)),
    Some(ms) => Err(invalid(
      "options.timeout",
      &format!("must be a positive number of milliseconds, got {ms}"),
    )),
  }
}

/// The request sandbank's `exec(command, options)` sends: `bash -c command`, under an in-guest
/// `timeout` when a timeout is set.
pub fn exec_request(command: &str, options: &ExecOptions) -> Result<ExecRequest> {
  if let Some(cwd) = &options.cwd {
    if cwd.is_empty() {
      return Err(invalid("options.cwd", "must not be empty"));
    }
  }
  let timeout_ms = exec_timeout_ms(options)?;
  let cmd = match timeout_ms {
    None => vec!["bash".into(), "-c".into(), command.into()],
    Some(ms) => vec![
      "bash".into(),
      "-c".into(),
      TIMEOUT_WRAPPER.into(),
      "sandbank-exec".into(),
      format!("{:.3}", ms as f64 / 1000.0),
      command.into(),
    ],
  };
  Ok(ExecRequest {
    cmd,
    working_dir: options.cwd.clone(),
    timeout_seconds: timeout_ms.map(|ms| (ms + CLIENT_TIMEOUT_MARGIN_MS) as f64 / 1000.0),
    ..ExecRequest::default()
  })
}

/// How far a create got, shared between the create task and the caller that may give up on it.
#[derive(Debug)]
struct Progress {
  id: Option<String>,
  /// The last status seen, for the timeout message.
  status: String,
  /// The caller's deadline passed: the task stops at the next step and the box is deleted.
  abandoned: bool,
}

impl Default for Progress {
  fn default() -> Self {
    Progress {
      id: None,
      status: "creating".into(),
      abandoned: false,
    }
  }
}

/// Creates the box, starts it and polls until it runs, failed, or the deadline passed; returns
/// whether it runs and the last record.
async fn create_and_start(
  client: Arc<dyn BoxClient>,
  params: CreateBoxParams,
  polling: Polling,
  deadline: Instant,
  progress: Arc<Mutex<Progress>>,
) -> Result<(bool, BoxRecord)> {
  let began = std::time::Instant::now();
  let created = client.create_box(params).await?;
  let id = created.id.clone();
  tracing::debug!(box_id = %id, state = %created.status, ms = %crate::diag::ms(began), "box created");
  {
    let mut progress = progress.lock().expect("progress lock");
    progress.id = Some(id.clone());
    progress.status = created.status.clone();
    if progress.abandoned {
      return Ok((false, created));
    }
  }
  // The create's or the start's own answer may already say `running`: no status poll then.
  let mut answer = Some(created.clone());
  if matches!(created.status.as_str(), "configured" | "stopped") {
    answer = client.start_box_record(&id).await?;
  }
  if progress.lock().expect("progress lock").abandoned {
    return Ok((false, created));
  }
  if let Some(record) = answer.filter(|r| r.status == "running") {
    // The same event the status poll logs, so a trace shows every box reaching `running`.
    tracing::debug!(box_id = %id, state = %record.status, ms = %crate::diag::ms(began), "box state");
    return Ok((true, record));
  }
  poll_until(client.as_ref(), &id, polling, deadline, |s| s == "running").await
}

/// Deletes the box of a create the caller gave up on: at once when its id is known, otherwise
/// once the create request answers; again after a start in flight settles, if the first
/// delete was refused meanwhile. Returns only once the create's own requests have settled
/// (bounded), so that `dispose` never releases a client — for local mode, an SDK runtime and
/// its home lock — that a request still uses.
async fn delete_abandoned(
  client: Arc<dyn BoxClient>,
  work: tokio::task::JoinHandle<Result<(bool, BoxRecord)>>,
  progress: Arc<Mutex<Progress>>,
) {
  let known = progress.lock().expect("progress lock").id.clone();
  let mut deleted = false;
  if let Some(id) = &known {
    deleted = match client.delete_box(id, true).await {
      Ok(()) => true,
      Err(e) => e.is_not_found(),
    };
  }
  // Bounded: the requests in flight have their own timeouts; this is the backstop.
  let _ = tokio::time::timeout(STATE_CHANGE_TIMEOUT, work).await;
  if deleted {
    return;
  }
  let id = progress.lock().expect("progress lock").id.clone();
  if let Some(id) = id {
    let _ = client.delete_box(&id, true).await;
  }
}

/// Polls `get_box` until `done(status)` or the deadline; returns the last record either way.
async fn poll_until(
  client: &dyn BoxClient,
  id: &str,
  polling: Polling,
  deadline: Instant,
  done: impl Fn(&str) -> bool,
) -> Result<(bool, BoxRecord)> {
  let mut delay = polling.first;
  let began = std::time::Instant::now();
  let mut last: Option<String> = None;
  loop {
    let record = client.get_box(id).await?;
    if last.as_deref() != Some(record.status.as_str()) {
      tracing::debug!(box_id = %id, state = %record.status, ms = %crate::diag::ms(began), "box state");
      last = Some(record.status.clone());
    }
    if done(&record.status) || is_failed(&record.status) {
      return Ok((done(&record.status), record));
    }
    let now = Instant::now();
    if now >= deadline {
      tracing::debug!(box_id = %id, state = %record.status, "gave up waiting: deadline passed");
      return Ok((false, record));
    }
    tokio::time::sleep(delay.min(deadline - now)).await;
    delay = (delay * 2).min(polling.max);
  }
}

impl Adapter {
  /// Creates a box, starts it and returns once it runs; on failure or timeout the box is
  /// force-deleted so nothing is left behind.
  pub async fn create_sandbox(&self, config: &CreateConfig) -> Result<SandboxInfo> {
    let params = create_params(config)?;
    let timeout_secs = match config.timeout {
      None => DEFAULT_CREATE_TIMEOUT_SECS,
      Some(t) if t.is_finite() && t > 0.0 => t,
      Some(t) => {
        return Err(invalid(
          "config.timeout",
          &format!("must be a positive number of seconds, got {t}"),
        ))
      }
    };
    let client = self.client()?;
    let deadline = Instant::now() + Duration::from_secs_f64(timeout_secs);
    // Create, start and polling run in a task of their own, so that the deadline holds even
    // while a create or start request is in flight, and the box such a request yields can
    // still be deleted after the caller got its error.
    let began = std::time::Instant::now();
    let progress = Arc::new(Mutex::new(Progress::default()));
    let mut work = tokio::spawn(create_and_start(
      client.clone(),
      params,
      self.polling,
      deadline,
      progress.clone(),
    ));
    // Polling stops at the deadline by itself; the grace only lets that ordinary ending (with
    // its inline delete) win the race against the hard bound for requests still in flight.
    let outcome = match tokio::time::timeout_at(deadline + DEADLINE_GRACE, &mut work).await {
      Ok(joined) => joined.unwrap_or_else(|e| Err(Error::Internal(format!("the create task failed: {e}")))),
      Err(_) => {
        let status = {
          let mut progress = progress.lock().expect("progress lock");
          progress.abandoned = true;
          progress.status.clone()
        };
        tracing::debug!(state = %status, "create deadline passed with a request in flight; deleting the box");
        self.cleanups.spawn(delete_abandoned(client, work, progress));
        return Err(Error::StartTimeout {
          seconds: timeout_secs.ceil() as u64,
          status,
        });
      }
    };
    match outcome {
      Ok((true, record)) => {
        if let Some(ports) = &config.ports {
          self.record_ports(&record.id, ports);
        }
        tracing::debug!(box_id = %record.id, ms = %crate::diag::ms(began), "sandbox ready");
        Ok(SandboxInfo::from(&record))
      }
      Ok((false, record)) => {
        tracing::debug!(box_id = %record.id, state = %record.status, "sandbox did not start; deleting the box");
        // Best effort: the original error is what the user needs to see.
        let _ = client.delete_box(&record.id, true).await;
        let status = match &record.error_message {
          Some(message) => format!("{}: {message}", record.status),
          None => record.status.clone(),
        };
        Err(Error::StartTimeout {
          seconds: timeout_secs.ceil() as u64,
          status,
        })
      }
      Err(error) => {
        let id = progress.lock().expect("progress lock").id.clone();
        if let Some(id) = id {
          let _ = client.delete_box(&id, true).await;
        }
        Err(error)
      }
    }
  }

  pub async fn get_sandbox(&self, id: &str) -> Result<SandboxInfo> {
    Ok(SandboxInfo::from(&self.client()?.get_box(id).await?))
  }

  pub async fn list_sandboxes(&self, filter: &ListFilter) -> Result<Vec<SandboxInfo>> {
    let wanted: Option<Vec<String>> = match &filter.state {
      None => None,
      Some(OneOrMany::One(state)) => Some(vec![state.clone()]),
      Some(OneOrMany::Many(states)) => Some(states.clone()),
    };
    let limit = match filter.limit {
      None => None,
      Some(0.0) => None,
      Some(n) if n.is_finite() && n > 0.0 => Some(n as usize),
      Some(n) => {
        return Err(invalid(
          "filter.limit",
          &format!("must be a positive number, got {n}"),
        ))
      }
    };
    let boxes = self.client()?.list_boxes(None, None).await?;
    let infos = boxes.iter().map(SandboxInfo::from).filter(|info| {
      wanted
        .as_ref()
        .is_none_or(|states| states.iter().any(|s| s == info.state))
    });
    Ok(match limit {
      Some(n) => infos.take(n).collect(),
      None => infos.collect(),
    })
  }

  /// Force-deletes the box; a box that does not exist is not an error.
  pub async fn destroy_sandbox(&self, id: &str) -> Result<()> {
    let result = self.client()?.delete_box(id, true).await;
    self.forget_ports(id);
    match result {
      Err(error) if error.is_not_found() => Ok(()),
      other => other,
    }
  }

  /// `bash -c command` with cwd and a timeout that kills the command.
  pub async fn exec(&self, id: &str, command: &str, options: &ExecOptions) -> Result<ExecOutput> {
    let request = exec_request(command, options)?;
    let timeout_ms = exec_timeout_ms(options)?;
    let client = self.client()?;
    let started = Instant::now();
    let run = client.exec(id, request);
    let result = match timeout_ms {
      None => run.await,
      Some(ms) => {
        let limit = Duration::from_millis(ms + CLIENT_TIMEOUT_MARGIN_MS) + EXEC_TIMEOUT_GRACE;
        tokio::time::timeout(limit, run)
          .await
          .unwrap_or(Err(Error::ExecTimeout { timeout_ms: ms }))
      }
    };
    match (result, timeout_ms) {
      (Err(Error::Timeout { .. }), Some(ms)) => Err(Error::ExecTimeout { timeout_ms: ms }),
      (Ok(output), Some(ms))
        if KILLED_BY_TIMEOUT.contains(&output.exit_code)
          && started.elapsed() >= Duration::from_millis(ms) =>
      {
        Err(Error::ExecTimeout { timeout_ms: ms })
      }
      (result, _) => result,
    }
  }

  /// `exec` delivered to `done` without a future where the backend can answer from its own
  /// thread (see `BoxClient::exec_now`) and no timeout is asked for (the timeout rules above
  /// need a timer). Otherwise `done` comes back and the caller awaits `exec`.
  pub fn exec_now(
    &self,
    id: &str,
    command: &str,
    options: &ExecOptions,
    done: ExecDone,
  ) -> std::result::Result<(), ExecDone> {
    if !matches!(exec_timeout_ms(options), Ok(None)) {
      return Err(done);
    }
    let request = exec_request(command, options).and_then(|r| self.client().map(|c| (r, c)));
    match request {
      Ok((request, client)) => client.exec_now(id, request, done),
      Err(error) => {
        done(Err(error));
        Ok(())
      }
    }
  }

  /// The command's output as produced; dropping the stream stops the command.
  pub async fn exec_stream(&self, id: &str, command: &str, options: &ExecOptions) -> Result<ExecEventStream> {
    let request = exec_request(command, options)?;
    self.client()?.exec_stream(id, request).await
  }

  pub async fn sleep(&self, id: &str) -> Result<()> {
    let client = self.client()?;
    let record = client.get_box(id).await?;
    if matches!(record.status.as_str(), "stopped" | "stopping") {
      return Ok(());
    }
    client.stop_box(id).await
  }

  /// Starts the box and resolves once it runs again.
  pub async fn wake(&self, id: &str) -> Result<()> {
    let client = self.client()?;
    let record = client.get_box(id).await?;
    if record.status != "running" {
      client.start_box(id).await?;
    }
    self.wait_for(client.as_ref(), id, "running").await
  }

  async fn wait_for(&self, client: &dyn BoxClient, id: &str, status: &str) -> Result<()> {
    let deadline = Instant::now() + STATE_CHANGE_TIMEOUT;
    let (reached, record) = poll_until(client, id, self.polling, deadline, |s| s == status).await?;
    if reached {
      Ok(())
    } else {
      Err(Error::InvalidState {
        message: format!("box {id} did not become {status} (status: {})", record.status),
      })
    }
  }

  /// Snapshot `name` of the box; a running box is stopped for it (snapshots of running VMs are
  /// refused or unsafe) and started again afterwards, whatever the outcome.
  pub async fn create_snapshot(&self, id: &str, name: &str) -> Result<String> {
    self
      .while_stopped(id, |client| async move {
        client.create_snapshot(id, name).await.map(|_| ())
      })
      .await?;
    Ok(name.to_string())
  }

  pub async fn restore_snapshot(&self, id: &str, name: &str) -> Result<()> {
    self
      .while_stopped(
        id,
        |client| async move { client.restore_snapshot(id, name).await },
      )
      .await
  }

  async fn while_stopped<'a, F, Fut>(&'a self, id: &'a str, action: F) -> Result<()>
  where
    F: FnOnce(std::sync::Arc<dyn BoxClient>) -> Fut,
    Fut: std::future::Future<Output = Result<()>> + 'a,
  {
    let client = self.client()?;
    let was_running = client.get_box(id).await?.status == "running";
    if was_running {
      client.stop_box(id).await?;
      self.wait_for(client.as_ref(), id, "stopped").await?;
    }
    let outcome = action(client.clone()).await;
    if was_running {
      client.start_box(id).await?;
      self.wait_for(client.as_ref(), id, "running").await?;
    }
    outcome
  }

  /// URL of a guest port: the mapped host port when the sandbox was created with one.
  pub fn expose_port(&self, id: &str, port: u32, hostname: Option<&str>) -> Result<String> {
    let guest = u16::try_from(port)
      .ok()
      .filter(|p| *p > 0)
      .ok_or_else(|| invalid("port", "must be 1–65535"))?;
    let host_port = self
      .ports
      .lock()
      .expect("ports lock")
      .get(id)
      .and_then(|m| m.get(&guest).copied())
      .unwrap_or(guest);
    let host = match hostname {
      Some(h) if !h.is_empty() => h.to_string(),
      _ => self.host()?,
    };
    let host = if host.contains(':') && !host.starts_with('[') {
      format!("[{host}]")
    } else {
      host
    };
    Ok(format!("http://{host}:{host_port}"))
  }

  fn record_ports(&self, id: &str, ports: &[(u16, u16)]) {
    let map = ports.iter().map(|(host, guest)| (*guest, *host)).collect();
    self.ports.lock().expect("ports lock").insert(id.to_string(), map);
  }

  fn forget_ports(&self, id: &str) {
    self.ports.lock().expect("ports lock").remove(id);
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::testing::FakeClient;
  use serde_json::json;

  fn adapter_with(client: FakeClient) -> (Adapter, std::sync::Arc<FakeClient>) {
    let client = std::sync::Arc::new(client);
    let adapter = Adapter::with_client(&json!({"apiUrl": "http://api.example.com:9090"}), client.clone());
    (adapter, client)
  }

  fn config(value: serde_json::Value) -> CreateConfig {
    serde_json::from_value(value).unwrap()
  }

  #[test]
  fn state_mapping_follows_the_contract() {
    for (status, state) in [
      ("configured", "creating"),
      ("creating", "creating"),
      ("running", "running"),
      ("stopping", "stopped"),
      ("stopped", "stopped"),
      ("paused", "stopped"),
      ("failed", "error"),
      ("unknown", "error"),
      ("", "error"),
    ] {
      assert_eq!(sandbox_state(status), state, "{status}");
    }
  }

  #[test]
  fn create_params_use_rootfs_path_for_absolute_images_and_keep_boxes_after_stop() {
    let params = create_params(&config(json!({"image": "/srv/oci/debian"}))).unwrap();
    assert_eq!(
      (params.image, params.rootfs_path.as_deref()),
      (None, Some("/srv/oci/debian"))
    );
    assert_eq!(params.auto_remove, Some(false));
    let params = create_params(&CreateConfig::default()).unwrap();
    assert_eq!(params.image.as_deref(), Some("ubuntu:24.04"));
  }

  #[test]
  fn create_params_map_resources_env_ports_and_user() {
    let params = create_params(&config(json!({
      "resources": {"cpu": 2, "memory": 1024, "disk": 8},
      "env": {"A": "1"}, "ports": [[18080, 80]], "user": {"name": "dev", "uid": 1001},
      "region": "ignored", "skills": []
    })))
    .unwrap();
    assert_eq!(
      (params.cpu, params.memory_mb, params.disk_size_gb),
      (Some(2), Some(1024), Some(8))
    );
    assert_eq!(params.env.unwrap()["A"], "1");
    assert_eq!(params.ports, Some(vec![(18080, 80)]));
    assert_eq!(params.user.as_deref(), Some("dev"));
  }

  #[test]
  fn create_params_reject_fractional_or_zero_resources_naming_the_field() {
    let err = create_params(&config(json!({"resources": {"cpu": 1.5}}))).unwrap_err();
    assert_eq!(
      err.to_string(),
      "config.resources.cpu must be a whole number >= 1, got 1.5"
    );
    assert!(create_params(&config(json!({"resources": {"memory": 0}}))).is_err());
  }

  #[test]
  fn exec_request_runs_bash_with_cwd() {
    let request = exec_request(
      "pwd",
      &ExecOptions {
        cwd: Some("/tmp".into()),
        timeout: None,
      },
    )
    .unwrap();
    assert_eq!(request.cmd, ["bash", "-c", "pwd"]);
    assert_eq!(request.working_dir.as_deref(), Some("/tmp"));
    assert_eq!(request.timeout_seconds, None);
  }

  #[test]
  fn exec_request_with_timeout_kills_the_process_group_in_the_guest_before_the_client_does() {
    let request = exec_request(
      "sleep 9",
      &ExecOptions {
        cwd: None,
        timeout: Some(1500.0),
      },
    )
    .unwrap();
    assert_eq!(request.cmd[..4], ["bash", "-c", TIMEOUT_WRAPPER, "sandbank-exec"]);
    assert_eq!(request.cmd[4..], ["1.500", "sleep 9"]);
    assert_eq!(request.timeout_seconds, Some(3.5));
    let no_timeout = exec_request(
      "x",
      &ExecOptions {
        timeout: Some(0.0),
        ..Default::default()
      },
    )
    .unwrap();
    assert_eq!(no_timeout.timeout_seconds, None);
    assert!(exec_request(
      "x",
      &ExecOptions {
        timeout: Some(-1.0),
        ..Default::default()
      }
    )
    .is_err());
  }

  #[tokio::test]
  async fn create_starts_a_configured_box_and_returns_once_it_runs() {
    let (adapter, client) = adapter_with(FakeClient::new().boot_polls(3));
    let info = adapter.create_sandbox(&CreateConfig::default()).await.unwrap();
    assert_eq!(info.state, "running");
    assert_eq!(client.calls_of("start_box"), 1);
    assert!(client.calls_of("get_box") >= 3);
  }

  #[tokio::test]
  async fn create_resolves_on_a_start_answer_that_says_running_without_polling() {
    let (adapter, client) = adapter_with(FakeClient::new().start_answers_with_the_box());
    let info = adapter.create_sandbox(&CreateConfig::default()).await.unwrap();
    assert_eq!(info.state, "running");
    assert_eq!((client.calls_of("start_box"), client.calls_of("get_box")), (1, 0));
  }

  #[tokio::test]
  async fn create_polls_when_the_start_answer_is_not_running_yet() {
    let (adapter, client) = adapter_with(FakeClient::new().boot_polls(2).start_answers_with_the_box());
    let info = adapter.create_sandbox(&CreateConfig::default()).await.unwrap();
    assert_eq!(info.state, "running");
    assert!(client.calls_of("get_box") >= 2);
  }

  #[tokio::test]
  async fn create_that_never_runs_deletes_the_box_and_names_the_last_status() {
    let (adapter, client) = adapter_with(FakeClient::new().boot_polls(u32::MAX));
    let err = adapter
      .create_sandbox(&config(json!({"timeout": 0.2})))
      .await
      .unwrap_err();
    assert_eq!(
      err.to_string(),
      "Sandbox failed to start within 1s (status: configured)"
    );
    assert_eq!(err.code(), "start_timeout");
    assert_eq!(client.calls_of("delete_box(force)"), 1);
    assert!(client.box_ids().is_empty());
  }

  #[tokio::test]
  async fn create_deadline_holds_while_the_start_request_is_in_flight_and_the_box_is_deleted() {
    let (adapter, client) = adapter_with(FakeClient::new().slow_start(Duration::from_secs(3)));
    let started = Instant::now();
    let err = adapter
      .create_sandbox(&config(json!({"timeout": 0.3})))
      .await
      .unwrap_err();
    assert!(
      started.elapsed() < Duration::from_millis(1500),
      "{:?}",
      started.elapsed()
    );
    assert_eq!(
      err.to_string(),
      "Sandbox failed to start within 1s (status: configured)"
    );
    adapter.dispose().await.unwrap();
    assert!(client.box_ids().is_empty(), "{:?}", client.box_ids());
    // The client is released only after the start in flight answered: an SDK runtime that a
    // call still uses cannot be shut down (its home would stay locked).
    assert_eq!(
      client.calls_of("start_box"),
      1,
      "dispose returned while the start was in flight"
    );
  }

  #[tokio::test]
  async fn create_deadline_holds_while_the_create_request_is_in_flight_and_the_box_is_deleted_later() {
    let (adapter, client) = adapter_with(FakeClient::new().slow_create(Duration::from_secs(2)));
    let started = Instant::now();
    let err = adapter
      .create_sandbox(&config(json!({"timeout": 0.3})))
      .await
      .unwrap_err();
    assert!(
      started.elapsed() < Duration::from_millis(1500),
      "{:?}",
      started.elapsed()
    );
    assert_eq!(err.code(), "start_timeout");
    assert!(err.to_string().ends_with("(status: creating)"), "{err}");
    // dispose waits for the create to answer and its box to be deleted.
    adapter.dispose().await.unwrap();
    assert_eq!(client.calls_of("create_box"), 1);
    assert_eq!(
      client.calls_of("start_box"),
      0,
      "an abandoned create is not started"
    );
    assert!(client.box_ids().is_empty(), "{:?}", client.box_ids());
  }

  #[tokio::test]
  async fn create_stops_waiting_when_the_box_failed() {
    let (adapter, client) = adapter_with(FakeClient::new().fail_boot("image pull failed"));
    let started = Instant::now();
    let err = adapter
      .create_sandbox(&CreateConfig::default())
      .await
      .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
      err.to_string().contains("status: failed: image pull failed"),
      "{err}"
    );
    assert!(client.box_ids().is_empty());
  }

  #[tokio::test]
  async fn destroy_is_idempotent_for_missing_boxes() {
    let (adapter, _client) = adapter_with(FakeClient::new());
    let info = adapter.create_sandbox(&CreateConfig::default()).await.unwrap();
    adapter.destroy_sandbox(&info.id).await.unwrap();
    adapter.destroy_sandbox(&info.id).await.unwrap();
    adapter.destroy_sandbox("never-existed").await.unwrap();
  }

  #[tokio::test]
  async fn impossible_ids_are_not_found_without_any_request() {
    let (adapter, client) = adapter_with(FakeClient::new());
    for id in ["", ".", "..", "a/../b"] {
      let err = adapter.get_sandbox(id).await.unwrap_err();
      assert_eq!(err.code(), "not_found", "{id:?}");
      adapter.destroy_sandbox(id).await.unwrap();
      let err = adapter
        .exec(id, "true", &ExecOptions::default())
        .await
        .unwrap_err();
      assert_eq!(err.code(), "not_found", "{id:?}");
    }
    assert_eq!(
      client.calls_of("get_box") + client.calls_of("delete_box(force)"),
      0
    );
  }

  #[tokio::test]
  async fn list_filters_by_one_or_many_states_and_limits() {
    let (adapter, client) = adapter_with(FakeClient::new());
    for _ in 0..3 {
      adapter.create_sandbox(&CreateConfig::default()).await.unwrap();
    }
    let stopped = client.box_ids()[0].clone();
    adapter.sleep(&stopped).await.unwrap();
    let running: ListFilter = serde_json::from_value(json!({"state": "running"})).unwrap();
    assert_eq!(adapter.list_sandboxes(&running).await.unwrap().len(), 2);
    let both: ListFilter =
      serde_json::from_value(json!({"state": ["running", "stopped"], "limit": 2})).unwrap();
    assert_eq!(adapter.list_sandboxes(&both).await.unwrap().len(), 2);
    let only_stopped: ListFilter = serde_json::from_value(json!({"state": ["stopped"]})).unwrap();
    let listed = adapter.list_sandboxes(&only_stopped).await.unwrap();
    assert_eq!((listed.len(), listed[0].id.as_str()), (1, stopped.as_str()));
  }

  #[tokio::test]
  async fn wake_resolves_when_the_box_runs_again() {
    let (adapter, client) = adapter_with(FakeClient::new().boot_polls(2));
    let id = adapter.create_sandbox(&CreateConfig::default()).await.unwrap().id;
    adapter.sleep(&id).await.unwrap();
    assert_eq!(adapter.get_sandbox(&id).await.unwrap().state, "stopped");
    adapter.wake(&id).await.unwrap();
    assert_eq!(client.status_of(&id), "running");
  }

  #[tokio::test]
  async fn snapshot_of_a_running_box_stops_it_and_starts_it_again() {
    let (adapter, client) = adapter_with(FakeClient::new());
    let id = adapter.create_sandbox(&CreateConfig::default()).await.unwrap().id;
    assert_eq!(adapter.create_snapshot(&id, "snap-1").await.unwrap(), "snap-1");
    assert_eq!(client.snapshot_taken_while(&id), Some("stopped".to_string()));
    assert_eq!(client.status_of(&id), "running");
    adapter.restore_snapshot(&id, "snap-1").await.unwrap();
    assert_eq!(client.status_of(&id), "running");
  }

  #[tokio::test]
  async fn exec_maps_a_client_timeout_to_an_exec_timeout() {
    let (adapter, _client) = adapter_with(FakeClient::new());
    let id = adapter.create_sandbox(&CreateConfig::default()).await.unwrap().id;
    let err = adapter
      .exec(
        &id,
        "sleep 10",
        &ExecOptions {
          timeout: Some(100.0),
          ..Default::default()
        },
      )
      .await
      .unwrap_err();
    assert_eq!(err.code(), "exec_timeout");
  }

  #[tokio::test]
  async fn expose_port_uses_the_mapping_and_the_api_host() {
    let (adapter, _client) = adapter_with(FakeClient::new());
    let id = adapter
      .create_sandbox(&config(json!({"ports": [[18080, 8080]]})))
      .await
      .unwrap()
      .id;
    assert_eq!(
      adapter.expose_port(&id, 8080, None).unwrap(),
      "http://api.example.com:18080"
    );
    assert_eq!(
      adapter.expose_port(&id, 3000, None).unwrap(),
      "http://api.example.com:3000"
    );
    assert_eq!(
      adapter.expose_port(&id, 3000, Some("10.0.0.5")).unwrap(),
      "http://10.0.0.5:3000"
    );
    assert!(adapter.expose_port(&id, 70000, None).is_err());
  }
}
