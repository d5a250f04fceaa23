//! The execution attach WebSocket of the `current` dialect: frame meaning, sans IO
//! (`[channel][payload]` binary frames, JSON control frames, `exit` then a close that may carry
//! no status code), events from an open socket, and writes. `Transport::open_websocket` opens it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::body::chain;
use super::request::Spec;
use crate::client::ExecEvent;
use crate::error::{Error, Result};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;
pub type WsSink = SplitSink<Socket, Message>;
pub type WsSource = SplitStream<Socket>;

/// What one server frame means.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
  Output(ExecEvent),
  Exit(Option<i32>),
  /// A non-fatal problem the server reports (bad control frame, rejected signal, …).
  ServerError(String),
  Closed,
  Skip,
}

pub fn decode(message: &Message) -> Frame {
  match message {
    Message::Binary(data) if !data.is_empty() => {
      let payload = data.slice(1..);
      match data[0] {
        0x01 => Frame::Output(ExecEvent::Stdout(payload)),
        0x02 => Frame::Output(ExecEvent::Stderr(payload)),
        _ => Frame::Skip,
      }
    }
    Message::Text(text) => match serde_json::from_str::<Value>(text.as_str()) {
      Ok(value) => match value.get("type").and_then(Value::as_str) {
        Some("exit") => Frame::Exit(
          value
            .get("exit_code")
            .or_else(|| value.get("code"))
            .and_then(Value::as_i64)
            .and_then(|c| i32::try_from(c).ok()),
        ),
        Some("error") => Frame::ServerError(
          value
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("error")
            .to_string(),
        ),
        _ => Frame::Skip,
      },
      Err(_) => Frame::Skip,
    },
    Message::Close(_) => Frame::Closed,
    _ => Frame::Skip,
  }
}

pub fn stdin_frame(data: Bytes) -> Message {
  Message::Binary(data)
}

pub fn stdin_eof_frame() -> Message {
  Message::Text(json!({"type": "stdin_eof"}).to_string().into())
}

/// Frames as they come off the socket (a `WsSource`, or `read_ahead` of one).
pub type Frames =
  std::pin::Pin<Box<dyn futures_core::Stream<Item = std::result::Result<Message, WsError>> + Send>>;

/// How many received bytes an attached execution's reader may hold that its consumer has not
/// taken yet (see `read_ahead`).
pub const READ_AHEAD_BYTES: usize = 64 * 1024 * 1024;

/// Reads `source` on a task of its own as fast as frames arrive, holding up to `budget` bytes
/// the consumer has not taken yet. The attach server has no flow control towards a slow
/// reader: its per-reader queue is short and what overflows it is dropped without a word
/// (`boxlite serve` 0.11), so the socket must never wait for a slow consumer (a JS stream
/// reader, a busy event loop) while this bound allows. The task ends when the consumer goes.
pub fn read_ahead(mut source: WsSource, budget: usize) -> Frames {
  const UNIT: usize = 1024;
  let total = u32::try_from(budget.div_ceil(UNIT)).unwrap_or(u32::MAX).max(1);
  let room = Arc::new(tokio::sync::Semaphore::new(total as usize));
  type Item = (
    std::result::Result<Message, WsError>,
    tokio::sync::OwnedSemaphorePermit,
  );
  let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Item>();
  tokio::spawn(async move {
    loop {
      let next = tokio::select! {
        next = source.next() => next,
        () = tx.closed() => break,
      };
      let Some(item) = next else { break };
      let units = item.as_ref().map_or(1, |m| m.len().div_ceil(UNIT)).max(1);
      let units = u32::try_from(units).unwrap_or(u32::MAX).min(total);
      let permit = tokio::select! {
        permit = room.clone().acquire_many_owned(units) => match permit {
          Ok(permit) => permit,
          Err(_) => break,
        },
        () = tx.closed() => break,
      };
      let failed = item.is_err();
      if tx.send((item, permit)).is_err() || failed {
        break;
      }
    }
  });
  Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
    // The permit goes with the frame: the room it held is free once the consumer has it.
    rx.recv().await.map(|(item, _permit)| (item, rx))
  }))
}

/// The events of an attached execution, ending after the exit frame. A close or a broken
/// connection before it is an error; silence longer than `idle` is one too.
pub fn events(
  source: impl futures_core::Stream<Item = std::result::Result<Message, WsError>> + Send + Unpin + 'static,
  idle: Duration,
  spec: &Spec,
  guard: Option<Arc<dyn Send + Sync>>,
) -> impl futures_core::Stream<Item = Result<ExecEvent>> + Send + 'static {
  let method = spec.method.to_string();
  let path = spec.path.clone();
  futures_util::stream::unfold(Some((source, guard)), move |state| {
    let method = method.clone();
    let path = path.clone();
    async move {
      let (mut source, guard) = state?;
      let broke = |message: String| Error::Transport {
        method: method.clone(),
        path: path.clone(),
        message,
      };
      loop {
        let next = match tokio::time::timeout(idle, source.next()).await {
          Err(_) => {
            let message = format!(
              "no frame for {} s; the server stopped answering",
              idle.as_secs_f64()
            );
            return Some((Err(broke(message)), None));
          }
          Ok(next) => next,
        };
        match next {
          None => {
            return Some((
              Err(broke("the attach connection closed before the exit frame".into())),
              None,
            ))
          }
          Some(Err(e)) => {
            return Some((
              Err(broke(format!("the attach connection broke: {}", chain(&e)))),
              None,
            ));
          }
          Some(Ok(message)) => match decode(&message) {
            Frame::Output(event) => return Some((Ok(event), Some((source, guard)))),
            Frame::Exit(code) => return Some((Ok(ExecEvent::Exit(code)), None)),
            Frame::Closed => {
              return Some((
                Err(broke(
                  "the server closed the attach connection before the exit frame".into(),
                )),
                None,
              ))
            }
            Frame::ServerError(_) | Frame::Skip => continue,
          },
        }
      }
    }
  })
}

/// Sends `frames` on `sink`, mapping failures to transport errors.
pub async fn send(sink: &mut WsSink, frames: Vec<Message>, spec: &Spec) -> Result<()> {
  for frame in frames {
    sink.send(frame).await.map_err(|e| Error::Transport {
      method: spec.method.to_string(),
      path: spec.path.clone(),
      message: format!("cannot write to the attach connection: {}", chain(&e)),
    })?;
  }
  Ok(())
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn frames_map_to_events() {
    let cases: Vec<(Message, Frame)> = vec![
      (
        Message::Binary(Bytes::from_static(b"\x01hello")),
        Frame::Output(ExecEvent::Stdout(Bytes::from_static(b"hello"))),
      ),
      (
        Message::Binary(Bytes::from_static(b"\x02oops")),
        Frame::Output(ExecEvent::Stderr(Bytes::from_static(b"oops"))),
      ),
      (
        Message::Binary(Bytes::from_static(b"\x01")),
        Frame::Output(ExecEvent::Stdout(Bytes::new())),
      ),
      (Message::Binary(Bytes::from_static(b"\x07x")), Frame::Skip),
      (
        Message::Text(r#"{"type":"exit","exit_code":-9}"#.into()),
        Frame::Exit(Some(-9)),
      ),
      (
        Message::Text(r#"{"type":"exit","code":3}"#.into()),
        Frame::Exit(Some(3)),
      ),
      (
        Message::Text(r#"{"type":"error","message":"bad frame"}"#.into()),
        Frame::ServerError("bad frame".into()),
      ),
      (Message::Text("not json".into()), Frame::Skip),
      (Message::Close(None), Frame::Closed),
      (Message::Ping(Bytes::new()), Frame::Skip),
    ];
    for (message, expected) in cases {
      assert_eq!(decode(&message), expected, "{message:?}");
    }
  }

  #[test]
  fn stdin_frames_are_binary_and_eof_is_a_json_control_frame() {
    assert_eq!(
      stdin_frame(Bytes::from_static(b"x")),
      Message::Binary(Bytes::from_static(b"x"))
    );
    assert_eq!(stdin_eof_frame(), Message::Text(r#"{"type":"stdin_eof"}"#.into()));
  }
}
