//! One terminal connection: settles the client's framing, starts the shell, relays input,
//! resizes and output both ways (with ttyd's flow control and a liveness ping) and closes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::protocol::{
  decode, detect, encode_output, handshake_allowed, ttyd_preamble, ClientMessage, Framing, Utf8Carry,
};
use super::server::Terminal;
use super::shell::{end_shell, start_shell, Control, Shell};
use crate::client::ExecEvent;

/// A `tty`-subprotocol client must send its opening message within this.
const TTYD_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long output is held for a client that has not spoken yet.
pub(super) const DETECT_GRACE: Duration = Duration::from_millis(500);
/// Output held before detection beyond this is sent in core's framing at once.
const DETECT_BUFFER_LIMIT: usize = 1024 * 1024;
/// Starting the shell (exec + output stream) must succeed within this.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// One frame to the client must be accepted within this (a client that stops reading is cut).
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// ttyd's flow control: a pause longer than this is lifted (so a lost resume cannot hang us).
const MAX_PAUSE: Duration = Duration::from_secs(10);
/// The closing handshake with the client is awaited this long.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// The client is pinged this often; one silent (no frame, no pong) for longer than
/// [`CLIENT_SILENCE_LIMIT`] is taken as gone, so a vanished client cannot keep a shell alive.
const PING_EVERY: Duration = Duration::from_secs(30);
const CLIENT_SILENCE_LIMIT: Duration = Duration::from_secs(95);

type WsSink = SplitSink<WebSocketStream<TcpStream>, Message>;
type WsSource = SplitStream<WebSocketStream<TcpStream>>;

/// Why a session ends, and how the socket is closed.
enum End {
  /// The client closed or went away: nothing more to send.
  ClientGone,
  /// Close with this code and reason.
  Close(CloseCode, String),
}

pub(super) struct Session {
  sink: WsSink,
  source: WsSource,
  terminal: Arc<Terminal>,
  shutdown: watch::Receiver<bool>,
  framing: Option<Framing>,
  held: Vec<Bytes>,
  held_bytes: usize,
  carry: Utf8Carry,
}

impl Session {
  pub(super) fn new(
    ws: WebSocketStream<TcpStream>,
    terminal: Arc<Terminal>,
    shutdown: watch::Receiver<bool>,
  ) -> Self {
    let (sink, source) = ws.split();
    Session {
      sink,
      source,
      terminal,
      shutdown,
      framing: None,
      held: Vec::new(),
      held_bytes: 0,
      carry: Utf8Carry::default(),
    }
  }

  pub(super) async fn run(mut self, tty_protocol: bool) {
    let mut first: Option<ClientMessage> = None;
    let mut size = None;
    if tty_protocol {
      // ttyd: the shell starts after the opening message, sized by it.
      match self.opening_message().await {
        Ok(ClientMessage::Handshake { size: s, .. }) => size = s,
        Ok(other) => first = Some(other),
        Err(end) => return self.finish(end).await,
      }
    }
    let started = tokio::select! {
      started = tokio::time::timeout(START_TIMEOUT, start_shell(&self.terminal)) => started,
      _ = self.shutdown.changed() => {
        return self.finish(End::Close(CloseCode::Away, "terminal server closed".into())).await;
      }
    };
    let shell = match started {
      Ok(Ok(shell)) => {
        tracing::debug!(box_id = %self.terminal.box_id, exec_id = ?shell.exec_id, "terminal shell started");
        shell
      }
      Ok(Err(e)) => return self.fail_to_start(e.to_string()).await,
      Err(_) => {
        return self
          .fail_to_start(format!(
            "the shell did not start within {} s",
            START_TIMEOUT.as_secs()
          ))
          .await
      }
    };
    if let Some(size) = size {
      let _ = shell.control.send(Control::Resize(size));
    }
    if let Some(message) = first {
      self.apply(&shell, message);
    }
    let (end, exited, shell) = self.pump(shell).await;
    tracing::debug!(
      box_id = %self.terminal.box_id,
      shell_exited = exited,
      reason = match &end {
        End::ClientGone => "client gone",
        End::Close(_, reason) => reason.as_str(),
      },
      "terminal connection closed"
    );
    // The client gone or the server closing: end the shell (the socket is closed meanwhile).
    let cleanup = (!exited).then(|| end_shell(self.terminal.clone(), shell));
    let (_, ()) = tokio::join!(self.finish(end), async {
      if let Some(cleanup) = cleanup {
        cleanup.await
      }
    });
  }

  /// Waits (bounded) for a `tty` client's first frame; returns it decoded, refusing a wrong
  /// `AuthToken`.
  async fn opening_message(&mut self) -> std::result::Result<ClientMessage, End> {
    let deadline = Instant::now() + TTYD_HANDSHAKE_TIMEOUT;
    loop {
      let frame = tokio::select! {
        _ = self.shutdown.changed() => return Err(End::Close(CloseCode::Away, "terminal server closed".into())),
        next = tokio::time::timeout_at(deadline, self.source.next()) => match next {
          Err(_) => return Err(End::Close(CloseCode::Policy, "no opening message".into())),
          Ok(message) => match frame_bytes(message) {
            FrameIn::Data(bytes) => bytes,
            FrameIn::Other => continue,
            FrameIn::Gone => return Err(End::ClientGone),
          },
        },
      };
      if let Some(message) = self.classify(&frame).await? {
        return Ok(message);
      }
    }
  }

  /// Fixes the framing on the first frame that has one (sending ttyd's greeting and any held
  /// output), then decodes the frame; `None` for a first frame of unknown type. An opening
  /// message with a wrong `AuthToken` ends the session before anything is sent.
  async fn classify(&mut self, frame: &[u8]) -> std::result::Result<Option<ClientMessage>, End> {
    let Some(framing) = self.framing.or_else(|| detect(frame)) else {
      return Ok(None);
    };
    let message = decode(framing, frame);
    if let ClientMessage::Handshake { auth_token, .. } = &message {
      if !handshake_allowed(&self.terminal.token, auth_token.as_deref()) {
        return Err(End::Close(CloseCode::Policy, "authentication failed".into()));
      }
    }
    if self.framing.is_none() {
      self.set_framing(framing).await?;
    }
    Ok(Some(message))
  }

  async fn set_framing(&mut self, framing: Framing) -> std::result::Result<(), End> {
    tracing::debug!(box_id = %self.terminal.box_id, ?framing, "terminal framing");
    self.framing = Some(framing);
    if framing == Framing::Ttyd {
      let title = format!("{} ({})", self.terminal.shell, self.terminal.box_id);
      for frame in ttyd_preamble(&title) {
        self.send(frame).await?;
      }
    }
    let held = std::mem::take(&mut self.held);
    self.held_bytes = 0;
    for chunk in held {
      self.framed_output(framing, &chunk).await?;
    }
    Ok(())
  }

  /// Sends shell output in the session's framing (held until the framing is known).
  async fn output(&mut self, data: &[u8]) -> std::result::Result<(), End> {
    let Some(framing) = self.framing else {
      self.held_bytes += data.len();
      self.held.push(Bytes::copy_from_slice(data));
      if self.held_bytes > DETECT_BUFFER_LIMIT {
        return self.set_framing(Framing::Core).await;
      }
      return Ok(());
    };
    self.framed_output(framing, data).await
  }

  async fn framed_output(&mut self, framing: Framing, data: &[u8]) -> std::result::Result<(), End> {
    let ready = self.carry.push(data);
    if ready.is_empty() {
      return Ok(());
    }
    self.send(encode_output(framing, &ready)).await
  }

  async fn send(&mut self, frame: Bytes) -> std::result::Result<(), End> {
    match tokio::time::timeout(SEND_TIMEOUT, self.sink.send(Message::Binary(frame))).await {
      Ok(Ok(())) => Ok(()),
      _ => Err(End::ClientGone),
    }
  }

  fn apply(&mut self, shell: &Shell, message: ClientMessage) -> Option<Pause> {
    match message {
      ClientMessage::Input(data) if !data.is_empty() => {
        let _ = shell.control.send(Control::Input(data));
      }
      ClientMessage::Resize(size) | ClientMessage::Handshake { size: Some(size), .. } => {
        let _ = shell.control.send(Control::Resize(size));
      }
      ClientMessage::Pause => return Some(Pause::Until(Instant::now() + MAX_PAUSE)),
      ClientMessage::Resume => return Some(Pause::No),
      _ => {}
    }
    None
  }

  /// Relays until the shell exits, the client leaves, something fails or the server closes.
  /// Returns how to end, whether the shell exited, and the shell.
  async fn pump(&mut self, mut shell: Shell) -> (End, bool, Shell) {
    let detect_by = Instant::now() + DETECT_GRACE;
    let mut pause = Pause::No;
    let mut last_seen = Instant::now();
    let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    loop {
      let paused_until = match pause {
        Pause::Until(t) if t > Instant::now() => Some(t),
        _ => None,
      };
      tokio::select! {
        _ = self.shutdown.changed() => {
          return (End::Close(CloseCode::Away, "terminal server closed".into()), false, shell);
        }
        message = self.source.next() => {
          last_seen = Instant::now();
          let frame = match frame_bytes(message) {
            FrameIn::Data(bytes) => bytes,
            FrameIn::Other => continue,
            FrameIn::Gone => return (End::ClientGone, false, shell),
          };
          let message = match self.classify(&frame).await {
            Ok(Some(message)) => message,
            Ok(None) => continue,
            Err(end) => return (end, false, shell),
          };
          if let Some(p) = self.apply(&shell, message) {
            pause = p;
          }
        }
        event = shell.output.next(), if paused_until.is_none() => match event {
          Some(Ok(ExecEvent::Stdout(data) | ExecEvent::Stderr(data))) => {
            if let Err(end) = self.output(&data).await {
              return (end, false, shell);
            }
          }
          Some(Ok(ExecEvent::Exit(_))) | None => {
            if self.framing.is_none() {
              let _ = self.set_framing(Framing::Core).await;
            }
            let rest = self.carry.finish();
            if !rest.is_empty() {
              if let Some(framing) = self.framing {
                let _ = self.send(encode_output(framing, &rest)).await;
              }
            }
            return (End::Close(CloseCode::Normal, "shell exited".into()), true, shell);
          }
          Some(Err(e)) => {
            let end = self.notice(&format!("terminal output failed: {e}")).await;
            return (end, false, shell);
          }
        },
        Some(error) = shell.failures.recv() => {
          let end = self.notice(&format!("terminal input failed: {error}")).await;
          return (end, false, shell);
        }
        _ = tokio::time::sleep_until(detect_by), if self.framing.is_none() => {
          if let Err(end) = self.set_framing(Framing::Core).await {
            return (end, false, shell);
          }
        }
        _ = tokio::time::sleep_until(paused_until.unwrap_or_else(Instant::now)), if paused_until.is_some() => {
          pause = Pause::No;
        }
        _ = ping.tick() => {
          if last_seen.elapsed() > CLIENT_SILENCE_LIMIT {
            return (End::ClientGone, false, shell);
          }
          if tokio::time::timeout(SEND_TIMEOUT, self.sink.send(Message::Ping(Bytes::new()))).await.is_err() {
            return (End::ClientGone, false, shell);
          }
        }
      }
    }
  }

  /// Tells the user what went wrong (as terminal text) and closes with 1011.
  async fn notice(&mut self, text: &str) -> End {
    let framing = self.framing.unwrap_or(Framing::Core);
    if self.framing.is_none() {
      self.framing = Some(framing);
    }
    let _ = self
      .send(encode_output(
        framing,
        format!("\r\n[sandbank terminal] {text}\r\n").as_bytes(),
      ))
      .await;
    End::Close(CloseCode::Error, text.to_string())
  }

  async fn fail_to_start(mut self, message: String) {
    let end = self.notice(&format!("cannot start the shell: {message}")).await;
    self.finish(end).await
  }

  /// Closes the socket (bounded), completing the closing handshake when the client answers.
  async fn finish(&mut self, end: End) {
    if let End::Close(code, reason) = end {
      // Close reasons are limited to 123 bytes.
      let mut reason = reason;
      while reason.len() > 120 {
        reason.pop();
      }
      let frame = CloseFrame {
        code,
        reason: reason.into(),
      };
      let _ = tokio::time::timeout(SEND_TIMEOUT, self.sink.send(Message::Close(Some(frame)))).await;
    }
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
      while let Some(Ok(message)) = self.source.next().await {
        if matches!(message, Message::Close(_)) {
          break;
        }
      }
    })
    .await;
    let _ = tokio::time::timeout(CLOSE_WAIT, self.sink.close()).await;
  }
}

enum Pause {
  No,
  Until(Instant),
}

enum FrameIn {
  Data(Vec<u8>),
  Other,
  Gone,
}

fn frame_bytes(
  message: Option<std::result::Result<Message, tokio_tungstenite::tungstenite::Error>>,
) -> FrameIn {
  match message {
    Some(Ok(Message::Binary(data))) => FrameIn::Data(data.to_vec()),
    Some(Ok(Message::Text(text))) => FrameIn::Data(text.as_bytes().to_vec()),
    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => FrameIn::Gone,
    Some(Ok(_)) => FrameIn::Other,
  }
}
