//! Server-Sent Events, sans IO: a byte-level decoder (CRLF, LF or CR line ends, comments,
//! multi-line `data`, events split across arbitrary chunks) and the mapping of the two
//! dialects' exec events onto `ExecEvent`. The async glue lives in `transport.rs`.

use std::collections::HashSet;

use base64::Engine as _;
use bytes::Bytes;
use serde_json::Value;

use crate::client::ExecEvent;

/// One dispatched event: the `event:` name (empty when absent) and the joined `data:` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
  pub event: String,
  pub data: String,
}

/// Incremental decoder; feed it the body chunks as they arrive.
#[derive(Debug, Default)]
pub struct SseDecoder {
  line: Vec<u8>,
  /// The previous chunk ended in CR: a LF at the start of the next one belongs to it.
  pending_cr: bool,
  event: String,
  data: String,
  has_data: bool,
}

impl SseDecoder {
  pub fn new() -> Self {
    Self::default()
  }

  /// Decodes `chunk`, returning every event completed by it.
  pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
    let mut out = Vec::new();
    for &byte in chunk {
      if self.pending_cr {
        self.pending_cr = false;
        if byte == b'\n' {
          continue;
        }
      }
      match byte {
        b'\r' => {
          self.pending_cr = true;
          self.end_line(&mut out);
        }
        b'\n' => self.end_line(&mut out),
        other => self.line.push(other),
      }
    }
    out
  }

  /// Whether bytes of an unfinished event are buffered (used to report truncated streams).
  pub fn has_partial_event(&self) -> bool {
    !self.line.is_empty() || self.has_data || !self.event.is_empty()
  }

  fn end_line(&mut self, out: &mut Vec<SseEvent>) {
    let line = std::mem::take(&mut self.line);
    if line.is_empty() {
      if self.has_data || !self.event.is_empty() {
        out.push(SseEvent {
          event: std::mem::take(&mut self.event),
          data: std::mem::take(&mut self.data),
        });
      }
      self.has_data = false;
      return;
    }
    if line[0] == b':' {
      return; // comment / keep-alive
    }
    let line = String::from_utf8_lossy(&line);
    let (field, value) = match line.find(':') {
      Some(i) => {
        let value = &line[i + 1..];
        (&line[..i], value.strip_prefix(' ').unwrap_or(value))
      }
      None => (&line[..], ""),
    };
    match field {
      "event" => self.event = value.to_string(),
      "data" => {
        if self.has_data {
          self.data.push('\n');
        }
        self.data.push_str(value);
        self.has_data = true;
      }
      _ => {} // id, retry and unknown fields are ignored
    }
  }
}

/// What one SSE event means for an execution.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
  Event(ExecEvent),
  /// A keep-alive, a duplicate or an event kind this client does not use.
  Skip,
  /// The server reported a failure in the stream itself.
  Failed(String),
}

/// The SSE-era dialects, `sse-ref` and `sse-serve` (`…/executions/{id}/output`): `stdout`/`stderr` carry `{"data": "<base64>"}`,
/// `exit` carries `{"exit_code": int|null, …}`.
pub fn decode_sse_era(event: &SseEvent) -> Result<Decoded, String> {
  let kind = event.event.as_str();
  let json =
    || serde_json::from_str::<Value>(&event.data).map_err(|e| format!("bad {kind} event data ({e})"));
  match kind {
    "stdout" | "stderr" => {
      let value = json()?;
      let text = value.get("data").and_then(Value::as_str).unwrap_or_default();
      let bytes = decode_base64(text).map_err(|e| format!("bad base64 in {kind} event ({e})"))?;
      Ok(Decoded::Event(if kind == "stdout" {
        ExecEvent::Stdout(Bytes::from(bytes))
      } else {
        ExecEvent::Stderr(Bytes::from(bytes))
      }))
    }
    "exit" => Ok(Decoded::Event(ExecEvent::Exit(exit_code_of(&json()?)))),
    "error" => Ok(Decoded::Failed(error_text(&event.data))),
    _ => Ok(Decoded::Skip),
  }
}

/// `boxrun` (`…/exec/{id}/events`): `log` events `{data, seq, stream}` with raw text,
/// `exit` whose `data` is a string holding `{"exit_code": …}`. Every connection replays from
/// `seq` 0 and live events may arrive out of order, so seen `seq`s are skipped.
#[derive(Debug, Default)]
pub struct BoxrunEvents {
  seen: HashSet<i64>,
}

impl BoxrunEvents {
  pub fn decode(&mut self, event: &SseEvent) -> Result<Decoded, String> {
    if event.data.is_empty() {
      return Ok(Decoded::Skip);
    }
    let value: Value = serde_json::from_str(&event.data).map_err(|e| format!("bad event data ({e})"))?;
    // Older servers name the kind inside the data; the SSE event name is the fallback.
    let kind = value
      .get("event_type")
      .and_then(Value::as_str)
      .unwrap_or(&event.event);
    if let Some(seq) = value.get("seq").and_then(Value::as_i64) {
      if !self.seen.insert(seq) {
        return Ok(Decoded::Skip);
      }
    }
    match kind {
      "log" | "stdout" | "stderr" => {
        let text = value.get("data").and_then(Value::as_str).unwrap_or_default();
        let stream = value.get("stream").and_then(Value::as_str).unwrap_or(kind);
        let bytes = Bytes::copy_from_slice(text.as_bytes());
        Ok(Decoded::Event(if stream == "stderr" {
          ExecEvent::Stderr(bytes)
        } else {
          ExecEvent::Stdout(bytes)
        }))
      }
      "exit" => {
        let inner = match value.get("data") {
          Some(Value::String(text)) => {
            serde_json::from_str::<Value>(text).map_err(|e| format!("bad exit event payload ({e})"))?
          }
          Some(other @ Value::Object(_)) => other.clone(),
          _ => value.clone(),
        };
        Ok(Decoded::Event(ExecEvent::Exit(exit_code_of(&inner))))
      }
      "error" => Ok(Decoded::Failed(error_text(&event.data))),
      _ => Ok(Decoded::Skip),
    }
  }
}

/// `exit_code` as an `i32`; `null`, absent or out of range means "unknown".
pub fn exit_code_of(value: &Value) -> Option<i32> {
  value
    .get("exit_code")
    .and_then(Value::as_i64)
    .and_then(|c| i32::try_from(c).ok())
}

fn decode_base64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
  let trimmed = text.trim();
  base64::engine::general_purpose::STANDARD
    .decode(trimmed)
    .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed.trim_end_matches('=')))
}

fn error_text(data: &str) -> String {
  serde_json::from_str::<Value>(data)
    .ok()
    .and_then(|v| {
      v.get("message")
        .or_else(|| v.get("error").and_then(|e| e.get("message")))
        .and_then(Value::as_str)
        .map(str::to_string)
    })
    .unwrap_or_else(|| data.chars().take(4096).collect())
}

#[cfg(test)]
mod tests {
  use super::*;

  fn ev(event: &str, data: &str) -> SseEvent {
    SseEvent {
      event: event.into(),
      data: data.into(),
    }
  }

  fn decode_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
    let mut decoder = SseDecoder::new();
    chunks.iter().flat_map(|c| decoder.feed(c)).collect()
  }

  #[test]
  fn decodes_ref_transcript_with_crlf_and_ping_comments() {
    let transcript = b"event: stdout\r\ndata: {\"data\": \"aGVsbG8K\"}\r\n\r\n: ping - 2026-05-10 12:00:15.123456+00:00\r\n\r\nevent: exit\r\ndata: {\"exit_code\": 0, \"duration_ms\": 1523}\r\n\r\n";
    assert_eq!(
      decode_all(&[transcript]),
      vec![
        ev("stdout", "{\"data\": \"aGVsbG8K\"}"),
        ev("exit", "{\"exit_code\": 0, \"duration_ms\": 1523}")
      ]
    );
  }

  #[test]
  fn decodes_serve_transcript_with_lf_and_bare_comments() {
    let transcript = b"event: stdout\ndata: {\"data\":\"aGVsbG8K\"}\n\n:\n\nevent: exit\ndata: {\"duration_ms\":1,\"exit_code\":0}\n\n";
    assert_eq!(decode_all(&[transcript]).len(), 2);
  }

  #[test]
  fn events_split_at_every_byte_boundary_decode_identically() {
    let transcript: &[u8] = b"event: stdout\r\ndata: {\"data\": \"aGk=\"}\r\n\r\nevent: exit\rdata: {}\r\r";
    let whole = decode_all(&[transcript]);
    assert_eq!(
      whole,
      vec![ev("stdout", "{\"data\": \"aGk=\"}"), ev("exit", "{}")]
    );
    for split in 1..transcript.len() {
      let (a, b) = transcript.split_at(split);
      assert_eq!(decode_all(&[a, b]), whole, "split at {split}");
    }
    let bytewise: Vec<&[u8]> = transcript.chunks(1).collect();
    assert_eq!(decode_all(&bytewise), whole);
  }

  #[test]
  fn multi_line_data_is_joined_with_newlines_and_unknown_fields_ignored() {
    let got = decode_all(&[b"id: 7\nretry: 100\nevent: x\ndata: a\ndata:b\nfoo: bar\n\n"]);
    assert_eq!(got, vec![ev("x", "a\nb")]);
  }

  #[test]
  fn an_unterminated_event_is_reported_as_partial_and_not_dispatched() {
    let mut decoder = SseDecoder::new();
    assert!(decoder.feed(b"event: exit\ndata: {\"exit_code\"").is_empty());
    assert!(decoder.has_partial_event());
  }

  #[test]
  fn sse_era_events_map_to_exec_events() {
    let cases: Vec<(SseEvent, Decoded)> = vec![
      (
        ev("stdout", r#"{"data": "aGVsbG8K"}"#),
        Decoded::Event(ExecEvent::Stdout(Bytes::from_static(b"hello\n"))),
      ),
      (
        ev("stderr", r#"{"data":"b29wcw"}"#),
        Decoded::Event(ExecEvent::Stderr(Bytes::from_static(b"oops"))),
      ),
      (
        ev("exit", r#"{"exit_code": 0, "duration_ms": 3}"#),
        Decoded::Event(ExecEvent::Exit(Some(0))),
      ),
      (
        ev("exit", r#"{"exit_code": null, "duration_ms": 3}"#),
        Decoded::Event(ExecEvent::Exit(None)),
      ),
      (
        ev("exit", r#"{"duration_ms":3,"exit_code":-9}"#),
        Decoded::Event(ExecEvent::Exit(Some(-9))),
      ),
      (ev("progress", "{}"), Decoded::Skip),
    ];
    for (event, expected) in cases {
      assert_eq!(decode_sse_era(&event).unwrap(), expected, "{event:?}");
    }
    assert!(decode_sse_era(&ev("stdout", "not json")).is_err());
  }

  #[test]
  fn boxrun_events_map_to_exec_events_and_skip_replayed_seqs() {
    let mut events = BoxrunEvents::default();
    let log = ev("log", r#"{"data":"hello\n","seq":0,"stream":"stdout"}"#);
    assert_eq!(
      events.decode(&log).unwrap(),
      Decoded::Event(ExecEvent::Stdout(Bytes::from_static(b"hello\n")))
    );
    assert_eq!(
      events.decode(&log).unwrap(),
      Decoded::Skip,
      "a replayed seq is skipped"
    );
    let err = ev("log", r#"{"stream": "stderr", "data": "oops", "seq": 1}"#);
    assert_eq!(
      events.decode(&err).unwrap(),
      Decoded::Event(ExecEvent::Stderr(Bytes::from_static(b"oops")))
    );
    let exit = ev("exit", r#"{"data":"{\"exit_code\":0}","seq":2,"stream":null}"#);
    assert_eq!(
      events.decode(&exit).unwrap(),
      Decoded::Event(ExecEvent::Exit(Some(0)))
    );
    let cancelled = ev("exit", r#"{"data":"{\"exit_code\":null}","seq":3,"stream":null}"#);
    assert_eq!(
      events.decode(&cancelled).unwrap(),
      Decoded::Event(ExecEvent::Exit(None))
    );
    let typed = ev(
      "message",
      r#"{"event_type":"exit","data":"{\"exit_code\":-1,\"error\":\"x\"}","seq":4}"#,
    );
    assert_eq!(
      events.decode(&typed).unwrap(),
      Decoded::Event(ExecEvent::Exit(Some(-1)))
    );
  }
}
