//! The sandbox lifecycle over a `BoxClient`: create-and-wait-until-running (bounded by the
//! caller's deadline even with a request in flight, deleting the box on failure or timeout),
//! get, list with state filter and limit, idempotent destroy, sleep/wake and the
//! stop–snapshot–restart dance.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{
  create_params, invalid, is_failed, CreateConfig, ListFilter, OneOrMany, Polling, SandboxInfo,
  DEFAULT_CREATE_TIMEOUT_SECS,
};
use crate::adapter::Adapter;
use crate::client::{BoxClient, BoxRecord, CreateBoxParams};
use crate::error::{Error, Result};

/// How long `wake()` and the snapshot dance wait for a box to change state.
pub const STATE_CHANGE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long after a create's deadline requests still in flight are given up on.
const DEADLINE_GRACE: Duration = Duration::from_millis(200);

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

  /// Force-deletes the box; a box that does not exist is not an error. Its terminal servers
  /// close.
  pub async fn destroy_sandbox(&self, id: &str) -> Result<()> {
    let result = self.client()?.delete_box(id, true).await;
    self.forget_ports(id);
    let result = match result {
      Err(error) if error.is_not_found() => Ok(()),
      other => other,
    };
    if result.is_ok() {
      self.terminals.close_box(id).await;
    }
    result
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
}
