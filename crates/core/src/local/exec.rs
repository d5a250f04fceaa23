//! Executions in local mode: the exec request the bridge gets (validated, with the working
//! directory entered by the command itself) and an execution's event log read as a stream, in
//! batches, adjacent chunks merged; a stream that owns its execution kills it when dropped early.

use std::collections::VecDeque;

use bytes::BytesMut;
use serde::Deserialize;
use serde_json::{json, Value};

use super::convert::{to_error, Ctx};
use super::engine::Engine;
use crate::client::{ExecEvent, ExecEventStream, ExecRequest};
use crate::error::{Error, Result};

/// The events of execution `exec_id`; with `consume`, the stream owns the execution.
pub(super) fn events(
  engine: &'static Engine,
  box_id: &str,
  exec_id: String,
  consume: bool,
) -> ExecEventStream {
  let guard = consume.then(|| CloseGuard {
    engine,
    exec_id: exec_id.clone(),
    armed: true,
  });
  let traced_id = exec_id.clone();
  let state = ExecReader {
    engine,
    box_id: box_id.to_string(),
    exec_id,
    cursor: 0,
    consume,
    pending: VecDeque::new(),
    finished: false,
    guard,
  };
  let events = Box::pin(futures_util::stream::unfold(state, |mut st| async move {
    loop {
      if let Some(event) = st.pending.pop_front() {
        return Some((Ok(event), st));
      }
      if st.finished {
        return None;
      }
      match st.next_batch().await {
        Ok(()) => continue,
        Err(e) => {
          st.finished = true;
          if let Some(g) = st.guard.as_mut() {
            g.armed = false;
          }
          return Some((Err(e), st));
        }
      }
    }
  }));
  crate::diag::traced_exec(events, &traced_id, "sdk")
}

/// Reads one execution's event log in batches and merges adjacent chunks of the same stream.
struct ExecReader {
  engine: &'static Engine,
  box_id: String,
  exec_id: String,
  cursor: u64,
  /// `exec_stream` owns its execution: it consumes the log, and dropping it kills the command.
  consume: bool,
  pending: VecDeque<ExecEvent>,
  finished: bool,
  guard: Option<CloseGuard>,
}

#[derive(Deserialize)]
struct Batch {
  events: Vec<String>,
  cursor: u64,
  done: bool,
  #[serde(default)]
  exit_code: Option<i32>,
}

impl ExecReader {
  async fn next_batch(&mut self) -> Result<()> {
    let args =
      json!({"exec_id": self.exec_id, "box_id": self.box_id, "cursor": self.cursor, "consume": self.consume});
    let ctx = Ctx {
      operation: "exec",
      what: "execution",
      id: &self.exec_id,
    };
    let reply = self
      .engine
      .call("exec_next", args, None)
      .await
      .map_err(|f| to_error(f, ctx))?;
    let blobs = reply.blobs.clone();
    let batch: Batch = reply.parse("exec batch")?;
    self.cursor = batch.cursor;
    let mut current: Option<(bool, BytesMut)> = None;
    for (kind, data) in batch.events.iter().zip(blobs) {
      let is_out = kind == "o";
      match current.as_mut() {
        Some((out, buf)) if *out == is_out => buf.extend_from_slice(&data),
        _ => {
          if let Some((out, buf)) = current.take() {
            self.pending.push_back(chunk_event(out, buf));
          }
          current = Some((is_out, BytesMut::from(&data[..])));
        }
      }
    }
    if let Some((out, buf)) = current.take() {
      self.pending.push_back(chunk_event(out, buf));
    }
    if batch.done {
      self.pending.push_back(ExecEvent::Exit(batch.exit_code));
      self.finished = true;
      if let Some(g) = self.guard.as_mut() {
        g.armed = false;
      }
    }
    Ok(())
  }
}

fn chunk_event(stdout: bool, buf: BytesMut) -> ExecEvent {
  if stdout {
    ExecEvent::Stdout(buf.freeze())
  } else {
    ExecEvent::Stderr(buf.freeze())
  }
}

/// Kills an `exec_stream` command whose reader went away before it ended.
struct CloseGuard {
  engine: &'static Engine,
  exec_id: String,
  armed: bool,
}

impl Drop for CloseGuard {
  fn drop(&mut self) {
    if self.armed {
      self
        .engine
        .call_detached("exec_close", json!({"exec_id": self.exec_id}));
    }
  }
}

pub(super) fn exec_args(request: &ExecRequest) -> Result<Value> {
  if request.cmd.is_empty() || request.cmd[0].is_empty() {
    return Err(Error::InvalidArgument {
      argument: "cmd".into(),
      problem: "must name a program".into(),
    });
  }
  if let Some(t) = request.timeout_seconds {
    if !t.is_finite() || t < 0.0 {
      return Err(Error::InvalidArgument {
        argument: "timeout_seconds".into(),
        problem: format!("must be a non-negative number, got {t}"),
      });
    }
  }
  // The working directory is entered by the command itself, as in remote mode, so a missing
  // one fails the same way (exit status 2) instead of as an SDK exception.
  let request = ExecRequest {
    cmd: request.effective_argv(),
    working_dir: None,
    ..request.clone()
  };
  serde_json::to_value(&request).map_err(|e| Error::Internal(e.to_string()))
}
