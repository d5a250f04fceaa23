//! BoxRun's box terminal WebSocket (`GET /v1/boxes/{id}/attach`, `docs/dialects.md`): a tty
//! shell that lives as long as the connection. Raw terminal bytes travel as binary frames both
//! ways; the client resizes with `{"type":"resize",…}` text frames; the server ends with
//! `{"type":"exit","code":N}` or `{"type":"error","code","message"}`, then closes. Frame meaning
//! is sans IO; `open` turns an open socket into a `BoxTerminal`.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::body::chain;
use super::request::Spec;
use super::ws::{WsSink, WsSource};
use crate::client::{BoxTerminal, ExecEvent, TerminalInput};
use crate::error::{Error, Result};

/// A silent shell is normal (a terminal may sit idle for hours), so the connection is kept
/// checked by our own pings: every `PING_EVERY`, and it is dead after `IDLE_LIMIT` without any
/// frame (a pong included).
const PING_EVERY: Duration = Duration::from_secs(20);
const IDLE_LIMIT: Duration = Duration::from_secs(60);
/// One frame to the server must be accepted within this.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Keystrokes and resizes queued before the writer pushes back.
const INPUT_QUEUE: usize = 256;

/// What one server frame means.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
  Output(Bytes),
  Exit(Option<i32>),
  Error { code: String, message: String },
  Closed,
  Skip,
}

pub fn decode(message: &Message) -> Frame {
  match message {
    Message::Binary(data) => Frame::Output(data.clone()),
    Message::Text(text) => {
      let Ok(value) = serde_json::from_str::<Value>(text.as_str()) else {
        return Frame::Skip;
      };
      let field = |name: &str| value.get(name).and_then(Value::as_str).unwrap_or("").to_string();
      match value.get("type").and_then(Value::as_str) {
        Some("exit") => Frame::Exit(
          value
            .get("code")
            .or_else(|| value.get("exit_code"))
            .and_then(Value::as_i64)
            .and_then(|c| i32::try_from(c).ok()),
        ),
        Some("error") => Frame::Error {
          code: field("code"),
          message: field("message"),
        },
        _ => Frame::Skip,
      }
    }
    Message::Close(_) => Frame::Closed,
    _ => Frame::Skip,
  }
}

pub fn encode(input: TerminalInput) -> Message {
  match input {
    TerminalInput::Data(data) => Message::Binary(data),
    TerminalInput::Resize { cols, rows } => Message::Text(
      json!({"type": "resize", "cols": cols, "rows": rows})
        .to_string()
        .into(),
    ),
  }
}

/// The error a server's `error` frame stands for.
pub fn error_of(code: &str, message: &str, box_id: &str, spec: &Spec) -> Error {
  match code {
    "BOX_NOT_FOUND" => Error::not_found("box", box_id),
    "BOX_NOT_RUNNING" => Error::InvalidState {
      message: format!("box {box_id} is not running; a terminal needs a running box (wake() it first)"),
    },
    _ => Error::Transport {
      method: spec.method.to_string(),
      path: spec.path.clone(),
      message: format!("the server ended the terminal: {code}: {message}"),
    },
  }
}

/// The terminal over an open socket: a writer task sends the input (and our pings) and closes
/// the connection when the input sender is dropped; the output ends at the exit frame.
pub fn open(mut sink: WsSink, source: WsSource, box_id: &str, spec: &Spec) -> BoxTerminal {
  let (input, mut inbox) = mpsc::channel::<TerminalInput>(INPUT_QUEUE);
  tokio::spawn(async move {
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    loop {
      let frame = tokio::select! {
        next = inbox.recv() => match next {
          Some(input) => encode(input),
          None => break,
        },
        _ = ping.tick() => Message::Ping(Bytes::new()),
      };
      match tokio::time::timeout(SEND_TIMEOUT, sink.send(frame)).await {
        Ok(Ok(())) => {}
        // The reader reports the broken connection.
        _ => return,
      }
    }
    let _ = tokio::time::timeout(SEND_TIMEOUT, sink.send(Message::Close(None))).await;
  });
  let method = spec.method.to_string();
  let path = spec.path.clone();
  let box_id = box_id.to_string();
  let spec = spec.clone();
  let output = futures_util::stream::unfold(Some(source), move |state| {
    let broke = {
      let (method, path) = (method.clone(), path.clone());
      move |message: String| Error::Transport {
        method: method.clone(),
        path: path.clone(),
        message,
      }
    };
    let (box_id, spec) = (box_id.clone(), spec.clone());
    async move {
      let mut source = state?;
      loop {
        let next = match tokio::time::timeout(IDLE_LIMIT, source.next()).await {
          Ok(next) => next,
          Err(_) => {
            let message = format!(
              "no frame (not even a pong) for {} s; the server stopped answering",
              IDLE_LIMIT.as_secs()
            );
            return Some((Err(broke(message)), None));
          }
        };
        let message = match next {
          Some(Ok(message)) => message,
          Some(Err(e)) => {
            let message = format!("the terminal connection broke: {}", chain(&e));
            return Some((Err(broke(message)), None));
          }
          None => {
            let message = "the terminal connection closed before the shell's exit".to_string();
            return Some((Err(broke(message)), None));
          }
        };
        match decode(&message) {
          Frame::Output(data) => return Some((Ok(ExecEvent::Stdout(data)), Some(source))),
          Frame::Exit(code) => return Some((Ok(ExecEvent::Exit(code)), None)),
          Frame::Error { code, message } => {
            return Some((Err(error_of(&code, &message, &box_id, &spec)), None))
          }
          Frame::Closed => {
            let message = "the server closed the terminal before the shell's exit".to_string();
            return Some((Err(broke(message)), None));
          }
          Frame::Skip => continue,
        }
      }
    }
  });
  BoxTerminal {
    output: Box::pin(output),
    input,
  }
}

/// Opens the socket of `spec` and the terminal over it.
pub async fn connect(
  transport: &super::transport::Transport,
  box_id: &str,
  spec: &Spec,
) -> Result<BoxTerminal> {
  let (sink, source) = transport.open_websocket(spec).await?;
  Ok(open(sink, source, box_id, spec))
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn server_frames_map_to_output_exit_and_errors() {
    let cases: Vec<(Message, Frame)> = vec![
      (
        Message::Binary(Bytes::from_static(b"\x01raw")),
        Frame::Output(Bytes::from_static(b"\x01raw")),
      ),
      (
        Message::Text(r#"{"type":"exit","code":3}"#.into()),
        Frame::Exit(Some(3)),
      ),
      (Message::Text(r#"{"type":"exit"}"#.into()), Frame::Exit(None)),
      (
        Message::Text(
          r#"{"type":"error","code":"BOX_NOT_RUNNING","message":"Box 'b' is not running"}"#.into(),
        ),
        Frame::Error {
          code: "BOX_NOT_RUNNING".into(),
          message: "Box 'b' is not running".into(),
        },
      ),
      (Message::Text("not json".into()), Frame::Skip),
      (Message::Pong(Bytes::new()), Frame::Skip),
      (Message::Close(None), Frame::Closed),
    ];
    for (message, expected) in cases {
      assert_eq!(decode(&message), expected, "{message:?}");
    }
  }

  #[test]
  fn input_is_raw_binary_and_resize_is_a_json_text_frame() {
    assert_eq!(
      encode(TerminalInput::Data(Bytes::from_static(b"ls\r"))),
      Message::Binary(Bytes::from_static(b"ls\r"))
    );
    let Message::Text(text) = encode(TerminalInput::Resize { cols: 101, rows: 33 }) else {
      panic!("a resize is a text frame")
    };
    let value: Value = serde_json::from_str(text.as_str()).unwrap();
    assert_eq!(value, json!({"type": "resize", "cols": 101, "rows": 33}));
  }

  #[test]
  fn error_frames_keep_their_meaning() {
    let spec = Spec::new(reqwest::Method::GET, "/v1/boxes/b/attach".into());
    assert!(error_of("BOX_NOT_FOUND", "gone", "b", &spec).is_not_found());
    assert_eq!(
      error_of("BOX_NOT_RUNNING", "", "b", &spec).code(),
      "invalid_state"
    );
    let other = error_of("RUNTIME_ERROR", "exec failed", "b", &spec);
    assert_eq!(other.code(), "transport");
    assert!(
      other.to_string().contains("RUNTIME_ERROR: exec failed"),
      "{other}"
    );
  }
}
