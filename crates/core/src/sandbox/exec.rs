//! Sandbank's `exec`: the request it sends (`bash -c command` with cwd, under an in-guest
//! `timeout` that kills the whole process group) and the adapter operations that run it, buffered
//! or streamed, reporting a command killed at its deadline as `ExecTimeout`.
//!
//! This layer runs no timer of its own: the deadline belongs to the client (`BoxClient::exec`
//! honours `timeout_seconds` in every mode, see docs/architecture.md). What sandbank adds is
//! the in-guest kill of the whole process group, set to fire before the client's deadline, and
//! the mapping of either kill to `ExecTimeout`.

use std::time::Duration;

use tokio::time::Instant;

use super::{invalid, ExecOptions};
use crate::adapter::Adapter;
use crate::client::{killed_at_deadline, ExecDone, ExecEventStream, ExecOutput, ExecRequest};
use crate::error::{Error, Result};

/// The client's deadline is later than the in-guest one by this much, so the guest's `timeout`
/// (which kills the whole process group) fires first and nothing is left running; the client's
/// kill is the fallback for a guest without `timeout`.
const CLIENT_TIMEOUT_MARGIN_MS: u64 = 2_000;
/// Runs `$2` under coreutils `timeout`, which kills the command's whole process group (a plain
/// kill of `bash` would leave its children running); without `timeout` in the guest, the
/// client's kill is the fallback.
pub(super) const TIMEOUT_WRAPPER: &str = r#"if command -v timeout >/dev/null 2>&1; then exec timeout -s KILL "$1" bash -c "$2"; else exec bash -c "$2"; fi"#;

/// Timeout of an exec in milliseconds: `None` for no timeout.
pub(super) fn exec_timeout_ms(options: &ExecOptions) -> Result<Option<u64>> {
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

/// What an exec with a timeout of `timeout_ms` that ran for `elapsed` reports: the client's
/// timeout, or a SIGKILL once the deadline has passed (the in-guest `timeout` killed the
/// group), is sandbank's `ExecTimeout`; anything else is the command's own outcome.
pub(super) fn exec_outcome(
  result: Result<ExecOutput>,
  timeout_ms: u64,
  elapsed: Duration,
) -> Result<ExecOutput> {
  let deadline = Duration::from_millis(timeout_ms);
  match result {
    Err(Error::Timeout { .. }) => Err(Error::ExecTimeout { timeout_ms }),
    Ok(output) if killed_at_deadline(output.exit_code, elapsed, deadline) => {
      Err(Error::ExecTimeout { timeout_ms })
    }
    result => result,
  }
}

impl Adapter {
  /// `bash -c command` with cwd and a timeout that kills the command.
  pub async fn exec(&self, id: &str, command: &str, options: &ExecOptions) -> Result<ExecOutput> {
    let request = exec_request(command, options)?;
    let timeout_ms = exec_timeout_ms(options)?;
    let started = Instant::now();
    let result = self.client()?.exec(id, request).await;
    match timeout_ms {
      None => result,
      Some(ms) => exec_outcome(result, ms, started.elapsed()),
    }
  }

  /// `exec` delivered to `done` without a future where the backend can answer from its own
  /// thread (see `BoxClient::exec_now`) and no timeout is asked for (a timed-out exec is
  /// reported through `exec`). Otherwise `done` comes back and the caller awaits `exec`.
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
}
