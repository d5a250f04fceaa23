//! Exec event streams, transport-agnostic: SSE bodies of the SSE-era dialects and `boxrun` turned into
//! `ExecEvent`s as they arrive, the client-side deadline that kills a command, and collecting a
//! whole execution.
//!
//! BoxRun keeps every event of an execution and replays them, numbered, on each connection, so
//! a BoxRun stream that breaks, ends early or goes quiet while the execution's status says it
//! finished is re-read from the server and continues where it was (already seen sequence
//! numbers are skipped: nothing lost, nothing twice). When re-reading makes no progress a few
//! times in a row the stream fails with an error saying the output is incomplete; it never
//! ends as a success without the output. The SSE-era output stream is take-once: a break there
//! is an error at once.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;

use super::request::Spec;
use super::sse;
use super::transport::{Payload, Transport};
use crate::client::{ByteStream, ExecEvent, ExecEventStream, ExecOutput};
use crate::error::{Error, Result};

/// How long a BoxRun event stream may stay quiet before the execution's status is checked.
const BOXRUN_STATUS_POLL: Duration = Duration::from_secs(2);
/// After the status of a quiet BoxRun stream says "finished", in-flight events get this long
/// before the stream is re-read (a live stream of a cancelled execution never ends).
const BOXRUN_EXIT_GRACE: Duration = Duration::from_secs(1);
/// Re-reads of a BoxRun stream in a row that yield no new event before it fails.
const BOXRUN_MAX_FRUITLESS_REREADS: u32 = 3;
/// Re-reads of one BoxRun stream in all (a stream that keeps breaking fails eventually).
const BOXRUN_MAX_REREADS: u32 = 50;

pub(super) enum EventKind {
  SseEra,
  /// BoxRun events, plus the execution's status request: a subscriber connected while a
  /// cancel lands never gets an end of stream, so a quiet stream is checked against the status.
  Boxrun(sse::BoxrunEvents, Box<Spec>),
}

/// Whether a BoxRun `Exec` status is final.
fn boxrun_finished(status: &Value) -> bool {
  status
    .get("status")
    .and_then(Value::as_str)
    .is_some_and(|s| !matches!(s, "running" | "queued" | "pending" | "creating"))
}

/// Opens an SSE response for `spec` and checks that it is an event stream.
pub(super) async fn open_sse(transport: &Arc<Transport>, spec: &Spec) -> Result<ByteStream> {
  let response = transport.send(spec, Payload::None).await?;
  let content_type = response
    .headers()
    .get("content-type")
    .and_then(|v| v.to_str().ok())
    .unwrap_or("")
    .to_ascii_lowercase();
  if !content_type.is_empty() && !content_type.starts_with("text/event-stream") {
    return Err(transport.protocol(
      spec,
      format!("expected an event stream, got content type '{content_type}'"),
    ));
  }
  Ok(transport.body_stream(spec, response))
}

/// Why a BoxRun stream is re-read.
enum Reread {
  /// It broke or ended before the exit event (the error or message says how).
  Broken(String),
  /// It stayed quiet although the execution finished.
  Stalled(Option<i32>),
}

/// Exec events from an SSE body: yielded as they arrive, ending after `exit`; a body that ends
/// or breaks before `exit` ends the stream with an error (BoxRun: after re-reading it).
pub(super) fn sse_events(
  bytes: ByteStream,
  kind: EventKind,
  spec: &Spec,
  transport: Arc<Transport>,
) -> ExecEventStream {
  struct State {
    bytes: ByteStream,
    decoder: sse::SseDecoder,
    kind: EventKind,
    queue: VecDeque<ExecEvent>,
    spec: Spec,
    transport: Arc<Transport>,
    /// BoxRun: the exit code the status reported while the stream stayed quiet.
    finished: Option<Option<i32>>,
    /// BoxRun re-reads so far, and those in a row that brought no new event.
    rereads: u32,
    fruitless: u32,
  }
  let state = State {
    bytes,
    decoder: sse::SseDecoder::new(),
    kind,
    queue: VecDeque::new(),
    spec: spec.clone(),
    transport,
    finished: None,
    rereads: 0,
    fruitless: 0,
  };
  let stream: ExecEventStream = Box::pin(futures_util::stream::unfold(Some(state), |state| async move {
    let mut st = state?;
    loop {
      if let Some(event) = st.queue.pop_front() {
        let last = matches!(event, ExecEvent::Exit(_));
        return Some((Ok(event), if last { None } else { Some(st) }));
      }
      let next = match &st.kind {
        EventKind::Boxrun(_, status) => {
          // Once the status says "finished", events still in flight get a grace period.
          let wait = if st.finished.is_some() {
            BOXRUN_EXIT_GRACE
          } else {
            BOXRUN_STATUS_POLL
          };
          match tokio::time::timeout(wait, st.bytes.next()).await {
            Ok(next) => next,
            Err(_) => {
              if let Some(code) = st.finished {
                match st.reread(Reread::Stalled(code)).await {
                  Ok(()) => continue,
                  Err(e) => return Some((Err(e), None)),
                }
              }
              let status = status.clone();
              if let Ok(value) = st.transport.json(&status, Payload::None).await {
                if boxrun_finished(&value) {
                  st.finished = Some(sse::exit_code_of(&value));
                }
              }
              continue;
            }
          }
        }
        EventKind::SseEra => st.bytes.next().await,
      };
      match next {
        Some(Ok(chunk)) => {
          for event in st.decoder.feed(&chunk) {
            let decoded = match &mut st.kind {
              EventKind::SseEra => sse::decode_sse_era(&event),
              EventKind::Boxrun(events, _) => events.decode(&event),
            };
            match decoded {
              Ok(sse::Decoded::Event(e)) => {
                st.fruitless = 0;
                st.queue.push_back(e)
              }
              Ok(sse::Decoded::Skip) => {}
              Ok(sse::Decoded::Failed(message)) => {
                let message = format!("the server reported a failure in the stream: {message}");
                return Some((Err(st.transport.protocol(&st.spec, message)), None));
              }
              Err(message) => return Some((Err(st.transport.protocol(&st.spec, message)), None)),
            }
          }
        }
        Some(Err(e)) => {
          if !matches!(st.kind, EventKind::Boxrun(..)) {
            return Some((Err(e), None));
          }
          match st.reread(Reread::Broken(e.to_string())).await {
            Ok(()) => continue,
            Err(e) => return Some((Err(e), None)),
          }
        }
        None => {
          let message = if st.decoder.has_partial_event() {
            "the event stream was cut in the middle of an event, before the exit event"
          } else {
            "the event stream ended before the exit event"
          };
          if matches!(st.kind, EventKind::Boxrun(..)) {
            match st.reread(Reread::Broken(message.into())).await {
              Ok(()) => continue,
              Err(e) => return Some((Err(e), None)),
            }
          }
          let error = Error::Transport {
            method: st.spec.method.to_string(),
            path: st.spec.path.clone(),
            message: message.into(),
          };
          return Some((Err(error), None));
        }
      }
    }
  }));

  impl State {
    /// Opens the BoxRun stream again; the replay's seen events are skipped by the decoder.
    /// Fails, saying the output is incomplete, once re-reading stops bringing new events.
    async fn reread(&mut self, why: Reread) -> Result<()> {
      let why = match why {
        Reread::Broken(how) => how,
        Reread::Stalled(code) => format!(
          "the event stream stayed silent although the execution finished (exit code {})",
          code.map_or("unknown".to_string(), |c| c.to_string())
        ),
      };
      if self.fruitless >= BOXRUN_MAX_FRUITLESS_REREADS || self.rereads >= BOXRUN_MAX_REREADS {
        return Err(Error::Transport {
          method: self.spec.method.to_string(),
          path: self.spec.path.clone(),
          message: format!(
            "{why}; re-read {} times, the output is incomplete (nothing is reported as a success without it)",
            self.rereads
          ),
        });
      }
      self.rereads += 1;
      self.fruitless += 1;
      tracing::debug!(path = %self.spec.path, rereads = self.rereads, why = %why, "re-reading the event stream");
      self.finished = None;
      self.decoder = sse::SseDecoder::new();
      self.bytes = open_sse(&self.transport, &self.spec).await?;
      Ok(())
    }
  }
  stream
}

/// Ends `events` with `Error::Timeout` at `deadline`, killing the execution first.
pub(super) fn with_deadline<K, F>(
  events: ExecEventStream,
  deadline: tokio::time::Instant,
  limit: Duration,
  operation: String,
  killer: K,
) -> ExecEventStream
where
  K: FnOnce() -> F + Send + 'static,
  F: std::future::Future<Output = ()> + Send + 'static,
{
  Box::pin(futures_util::stream::unfold(
    Some((events, Some(killer))),
    move |state| {
      let operation = operation.clone();
      async move {
        let (mut events, mut killer) = state?;
        match tokio::time::timeout_at(deadline, events.next()).await {
          Ok(Some(item)) => Some((item, Some((events, killer)))),
          Ok(None) => None,
          Err(_) => {
            drop(events);
            if let Some(kill) = killer.take() {
              kill().await;
            }
            Some((
              Err(Error::Timeout {
                operation,
                after_ms: limit.as_millis() as u64,
              }),
              None,
            ))
          }
        }
      }
    },
  ))
}

pub(super) async fn collect(mut events: ExecEventStream) -> Result<ExecOutput> {
  let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
  while let Some(event) = events.next().await {
    match event? {
      ExecEvent::Stdout(b) => stdout.extend_from_slice(&b),
      ExecEvent::Stderr(b) => stderr.extend_from_slice(&b),
      ExecEvent::Exit(code) => {
        return Ok(ExecOutput {
          stdout: String::from_utf8_lossy(&stdout).into_owned(),
          stderr: String::from_utf8_lossy(&stderr).into_owned(),
          // No code (killed before the server could wait for it) is an abnormal end.
          exit_code: code.unwrap_or(-1),
        });
      }
    }
  }
  Err(Error::Internal(
    "exec output ended without exit event or error".into(),
  ))
}

#[cfg(test)]
mod tests {
  use std::sync::atomic::{AtomicBool, Ordering};

  use bytes::Bytes;

  use super::*;

  #[tokio::test]
  async fn collect_joins_output_and_maps_a_missing_exit_code_to_minus_one() {
    let events: Vec<Result<ExecEvent>> = vec![
      Ok(ExecEvent::Stdout(Bytes::from_static(b"a\xc3"))),
      Ok(ExecEvent::Stdout(Bytes::from_static(b"\xa9"))),
      Ok(ExecEvent::Stderr(Bytes::from_static(b"e"))),
      Ok(ExecEvent::Exit(None)),
    ];
    let output = collect(Box::pin(futures_util::stream::iter(events)))
      .await
      .unwrap();
    assert_eq!(
      output,
      ExecOutput {
        stdout: "aé".into(),
        stderr: "e".into(),
        exit_code: -1
      }
    );
  }

  #[tokio::test]
  async fn a_deadline_kills_and_ends_the_stream_with_a_timeout() {
    let killed = Arc::new(AtomicBool::new(false));
    let never: ExecEventStream = Box::pin(futures_util::stream::pending());
    let flag = killed.clone();
    let killer = move || async move { flag.store(true, Ordering::SeqCst) };
    let deadline = tokio::time::Instant::now() + Duration::from_millis(20);
    let mut stream = with_deadline(
      never,
      deadline,
      Duration::from_millis(20),
      "exec of 'sleep'".into(),
      killer,
    );
    let error = stream.next().await.unwrap().unwrap_err();
    assert_eq!(error.code(), "timeout");
    assert!(killed.load(Ordering::SeqCst));
    assert!(stream.next().await.is_none());
  }
}
