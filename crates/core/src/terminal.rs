//! `startTerminal()` without installing anything in the box: a WebSocket endpoint served by the
//! addon itself on loopback, behind an unguessable per-terminal token in the path
//! (`ws://127.0.0.1:<port>/terminal/<token>/ws`). Every connection runs one shell in the box as
//! a tty execution of the mode's client (`exec_async` + `get_exec_output` + `send_exec_input` +
//! `resize_exec`), so local mode and every remote dialect with interactive stdin serve it alike.
//!
//! Two framings share the endpoint; the client's first frame says which one it speaks:
//! * **core** (`@sandbank.dev/core`'s `connectTerminal`): type byte `0x00` + input / output,
//!   `0x01` + `{"columns","rows"}` (resize);
//! * **ttyd 1.7** (its xterm.js page and compatible clients): ASCII `'0'` input / output, `'1'`
//!   resize, `'2'`/`'3'` pause/resume, an opening JSON message `{"AuthToken","columns","rows"}`,
//!   and the `tty` subprotocol. The server answers with `'1'` + window title and `'2'` +
//!   preferences, as ttyd does.
//!
//! A client that offers the `tty` subprotocol gets its shell after its opening message (sized
//! by it), as with ttyd; any other client gets its shell at once (core's client sends nothing
//! until the user types), and the output produced before the first frame is held until the
//! framing is known or [`DETECT_GRACE`] passed (then core's framing is assumed).
//!
//! Closing the socket ends the shell (SIGHUP, then SIGKILL); the shell's exit closes the socket
//! (1000); `Adapter::dispose` closes every server and connection (1001). Every wait is bounded.
//!
//! The original's behaviour (ttyd downloaded into the box, reached through a mapped port) stays
//! available as `mode: "ttyd"` ([`Adapter::start_ttyd_in_box`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::adapter::Adapter;
use crate::client::{BoxClient, ExecEvent, ExecEventStream, ExecRequest};
use crate::error::{Error, Result};
use crate::sandbox::ExecOptions;

/// The shell a terminal runs unless told otherwise (as in the original).
pub const DEFAULT_SHELL: &str = "/bin/bash";
/// `TERM` of the shell (xterm.js and every mainstream terminal understand it).
const TERM: &str = "xterm-256color";
/// Size of a shell whose client never said.
const DEFAULT_SIZE: Size = Size { cols: 80, rows: 24 };
/// Bytes of randomness in a terminal token (hex in the URL).
const TOKEN_BYTES: usize = 32;
/// The HTTP upgrade must complete within this.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);
/// A `tty`-subprotocol client must send its opening message within this.
const TTYD_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long output is held for a client that has not spoken yet.
const DETECT_GRACE: Duration = Duration::from_millis(500);
/// Output held before detection beyond this is sent in core's framing at once.
const DETECT_BUFFER_LIMIT: usize = 1024 * 1024;
/// Starting the shell (exec + output stream) must succeed within this.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// One stdin write or resize must complete within this.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);
/// One frame to the client must be accepted within this (a client that stops reading is cut).
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// ttyd's flow control: a pause longer than this is lifted (so a lost resume cannot hang us).
const MAX_PAUSE: Duration = Duration::from_secs(10);
/// A signal to a shell must be delivered within this.
const SIGNAL_TIMEOUT: Duration = Duration::from_secs(5);
/// After SIGHUP (then after SIGKILL), the shell's exit is awaited this long.
const HANGUP_WAIT: Duration = Duration::from_secs(2);
const KILL_WAIT: Duration = Duration::from_secs(3);
/// The closing handshake with the client is awaited this long.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// `dispose()` waits this long for connections to wind down before aborting them.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(8);
/// The client is pinged this often; one silent (no frame, no pong) for longer than
/// [`CLIENT_SILENCE_LIMIT`] is taken as gone, so a vanished client cannot keep a shell alive.
const PING_EVERY: Duration = Duration::from_secs(30);
const CLIENT_SILENCE_LIMIT: Duration = Duration::from_secs(95);
/// Keystrokes queued while a stdin write is in flight go out together, up to this size.
const INPUT_BATCH_BYTES: usize = 64 * 1024;
/// The guest port and URL path of the original's in-box ttyd (`mode: "ttyd"`).
pub const TTYD_PORT: u16 = 7681;

/// sandbank's `TerminalOptions`, plus the choice of the original's in-box ttyd.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TerminalOptions {
  /// Program run as the shell (one path, no arguments). Default `/bin/bash`.
  pub shell: Option<String>,
  /// Loopback address to serve on (`127.0.0.1`, `::1`, `localhost`); in `ttyd` mode, the host
  /// named in the URL (as `exposePort`).
  pub hostname: Option<String>,
  /// `native` (default): served by the addon; `ttyd`: the original's ttyd inside the box.
  pub mode: Option<TerminalMode>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TerminalMode {
  #[default]
  Native,
  Ttyd,
}

/// sandbank's `TerminalInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TerminalInfo {
  pub url: String,
  pub port: u16,
}

// ---------------------------------------------------------------------------------------------
// Pure parts: tokens, paths, framing

/// A fresh token: 32 bytes from the operating system's CSPRNG, in lowercase hex.
pub fn new_token() -> Result<String> {
  let mut bytes = [0u8; TOKEN_BYTES];
  getrandom::fill(&mut bytes)
    .map_err(|e| Error::Internal(format!("no randomness for a terminal token: {e}")))?;
  Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Compares two secrets in time independent of where they differ.
pub fn token_matches(expected: &str, given: &str) -> bool {
  let (a, b) = (expected.as_bytes(), given.as_bytes());
  if a.len() != b.len() {
    return false;
  }
  a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What a request path asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathCheck {
  /// `/terminal/<the token>/ws`.
  Granted,
  /// `/terminal/<another token>/ws`: 403.
  WrongToken,
  /// Anything else: 404.
  NotFound,
}

/// Checks `/terminal/<token>/ws` (a query string is ignored).
pub fn check_path(path: &str, token: &str) -> PathCheck {
  let path = path.split('?').next().unwrap_or("");
  match path
    .strip_prefix("/terminal/")
    .and_then(|rest| rest.strip_suffix("/ws"))
  {
    Some(given) if !given.is_empty() && !given.contains('/') => {
      if token_matches(token, given) {
        PathCheck::Granted
      } else {
        PathCheck::WrongToken
      }
    }
    _ => PathCheck::NotFound,
  }
}

/// Whether a `Sec-WebSocket-Protocol` offer includes ttyd's `tty`.
pub fn offers_tty(header: Option<&str>) -> bool {
  header.is_some_and(|h| h.split(',').any(|p| p.trim() == "tty"))
}

/// The address to serve on: loopback only.
pub fn bind_address(hostname: Option<&str>) -> Result<IpAddr> {
  let host = hostname.map(str::trim).unwrap_or("");
  if host.is_empty() || host.eq_ignore_ascii_case("localhost") {
    return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
  }
  let bare = host
    .strip_prefix('[')
    .and_then(|h| h.strip_suffix(']'))
    .unwrap_or(host);
  match bare.parse::<IpAddr>() {
    Ok(ip) if ip.is_loopback() => Ok(ip),
    _ => Err(Error::InvalidArgument {
      argument: "options.hostname".into(),
      problem: format!(
        "must be a loopback address (127.0.0.1, ::1 or localhost), got '{host}': the terminal is served only on \
         loopback (use mode: 'ttyd' for the original's ttyd inside the box)"
      ),
    }),
  }
}

/// The terminal URL for a bound address.
pub fn terminal_url(addr: SocketAddr, token: &str) -> String {
  let host = match addr.ip() {
    IpAddr::V4(ip) => ip.to_string(),
    IpAddr::V6(ip) => format!("[{ip}]"),
  };
  format!("ws://{host}:{}/terminal/{token}/ws", addr.port())
}

/// The two framings a client may speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
  /// `@sandbank.dev/core`'s `connectTerminal`: binary type bytes 0x00 / 0x01.
  Core,
  /// ttyd 1.7: ASCII type bytes '0'…'3' and the `{…}` opening message.
  Ttyd,
}

/// A terminal size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
  pub cols: u16,
  pub rows: u16,
}

/// One client message, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
  Input(Bytes),
  Resize(Size),
  /// ttyd's opening message.
  Handshake {
    auth_token: Option<String>,
    size: Option<Size>,
  },
  Pause,
  Resume,
  /// Unknown type, empty frame or malformed payload: ignored (as ttyd does).
  Ignore,
}

/// The framing of a client's first frame, when its type byte belongs to one.
pub fn detect(first: &[u8]) -> Option<Framing> {
  match first.first()? {
    0x00 | 0x01 => Some(Framing::Core),
    b'{' | b'0' | b'1' | b'2' | b'3' => Some(Framing::Ttyd),
    _ => None,
  }
}

fn dimension(value: Option<&Value>) -> Option<u16> {
  let n = value?.as_f64()?;
  (n.is_finite() && n >= 1.0).then(|| n.min(u16::MAX as f64) as u16)
}

/// `{"columns": c, "rows": r}` → a size (both must be numbers ≥ 1).
pub fn parse_size(json: &[u8]) -> Option<Size> {
  let value: Value = serde_json::from_slice(json).ok()?;
  Some(Size {
    cols: dimension(value.get("columns"))?,
    rows: dimension(value.get("rows"))?,
  })
}

/// Decodes a frame of a client speaking `framing`.
pub fn decode(framing: Framing, frame: &[u8]) -> ClientMessage {
  let Some((&kind, payload)) = frame.split_first() else {
    return ClientMessage::Ignore;
  };
  match (framing, kind) {
    (Framing::Core, 0x00) | (Framing::Ttyd, b'0') => ClientMessage::Input(Bytes::copy_from_slice(payload)),
    (Framing::Core, 0x01) | (Framing::Ttyd, b'1') => {
      parse_size(payload).map_or(ClientMessage::Ignore, ClientMessage::Resize)
    }
    (Framing::Ttyd, b'2') => ClientMessage::Pause,
    (Framing::Ttyd, b'3') => ClientMessage::Resume,
    (Framing::Ttyd, b'{') => match serde_json::from_slice::<Value>(frame) {
      Ok(value) if value.is_object() => ClientMessage::Handshake {
        auth_token: value.get("AuthToken").and_then(Value::as_str).map(str::to_string),
        size: dimension(value.get("columns"))
          .zip(dimension(value.get("rows")))
          .map(|(cols, rows)| Size { cols, rows }),
      },
      _ => ClientMessage::Ignore,
    },
    _ => ClientMessage::Ignore,
  }
}

/// A terminal output frame (`0x00` or `'0'` + bytes).
pub fn encode_output(framing: Framing, data: &[u8]) -> Bytes {
  let mut frame = Vec::with_capacity(data.len() + 1);
  frame.push(match framing {
    Framing::Core => 0x00,
    Framing::Ttyd => b'0',
  });
  frame.extend_from_slice(data);
  Bytes::from(frame)
}

/// ttyd's greeting: `'1'` + window title, `'2'` + preferences (none).
pub fn ttyd_preamble(title: &str) -> [Bytes; 2] {
  let mut set_title = vec![b'1'];
  set_title.extend_from_slice(title.as_bytes());
  [Bytes::from(set_title), Bytes::from_static(b"2{}")]
}

/// Whether ttyd's opening message may open this terminal: an empty or absent `AuthToken` (the
/// token in the URL already authenticated the client) or the terminal's own token.
pub fn handshake_allowed(token: &str, auth_token: Option<&str>) -> bool {
  match auth_token {
    None | Some("") => true,
    Some(given) => token_matches(token, given),
  }
}

/// Keeps UTF-8 sequences whole across output chunks (core's client decodes each frame on its
/// own), holding back at most 3 bytes of an incomplete trailing sequence.
#[derive(Debug, Default)]
pub struct Utf8Carry {
  held: Vec<u8>,
}

impl Utf8Carry {
  /// The bytes that can be sent now.
  pub fn push(&mut self, data: &[u8]) -> Vec<u8> {
    let mut all = std::mem::take(&mut self.held);
    all.extend_from_slice(data);
    let cut = incomplete_tail(&all);
    self.held = all.split_off(all.len() - cut);
    all
  }

  /// Whatever is held (at the end of the output).
  pub fn finish(&mut self) -> Vec<u8> {
    std::mem::take(&mut self.held)
  }
}

/// Length of an incomplete UTF-8 sequence at the end of `data` (0 when it ends cleanly or with
/// bytes that are not UTF-8 at all, which are passed on as they are).
fn incomplete_tail(data: &[u8]) -> usize {
  for back in 1..=data.len().min(3) {
    let byte = data[data.len() - back];
    if byte & 0xC0 == 0x80 {
      continue; // continuation byte: look further back for the lead
    }
    let needed = match byte {
      0xC0..=0xDF => 2,
      0xE0..=0xEF => 3,
      0xF0..=0xF7 => 4,
      _ => return 0,
    };
    return if needed > back { back } else { 0 };
  }
  0
}

/// `'<s>'` for sh, any content.
fn sh_quote(s: &str) -> String {
  format!("'{}'", s.replace('\'', r"'\''"))
}

// ---------------------------------------------------------------------------------------------
// The original's ttyd inside the box (`mode: "ttyd"`)

/// Downloads ttyd 1.7.7 into `/usr/local/bin` (curl, then wget, then apt-get + wget), as the
/// original did; exits non-zero when it cannot.
pub const TTYD_INSTALL_SCRIPT: &str = r#"set -u
case "$(uname -m)" in aarch64|arm64) arch=aarch64 ;; x86_64) arch=x86_64 ;; *) echo "unsupported architecture $(uname -m)" >&2; exit 1 ;; esac
url="https://github.com/tsl0922/ttyd/releases/download/1.7.7/ttyd.$arch"
dest=/usr/local/bin/ttyd
if command -v curl >/dev/null 2>&1; then curl -fsSL -o "$dest" "$url"
elif command -v wget >/dev/null 2>&1; then wget -qO "$dest" "$url"
else apt-get update >/dev/null && apt-get install -y wget >/dev/null && wget -qO "$dest" "$url"
fi && chmod +x "$dest" && "$dest" --version >/dev/null"#;

/// Starts ttyd writable on 7681 in the background.
pub fn ttyd_start_command(shell: &str) -> String {
  format!(
    "nohup ttyd -W -p {TTYD_PORT} {} > /dev/null 2>&1 &",
    sh_quote(shell)
  )
}

/// Waits up to 10 s for ttyd to run; exits 1 when it does not.
pub const TTYD_WAIT_COMMAND: &str =
  "for i in $(seq 1 20); do pgrep -x ttyd > /dev/null && exit 0; sleep 0.5; done; exit 1";

fn shell_of(options: &TerminalOptions) -> Result<String> {
  match options.shell.as_deref() {
    None => Ok(DEFAULT_SHELL.to_string()),
    Some(s) if s.trim().is_empty() || s.contains('\0') => Err(Error::InvalidArgument {
      argument: "options.shell".into(),
      problem: "must be a non-empty program path".into(),
    }),
    Some(s) => Ok(s.to_string()),
  }
}

impl Adapter {
  /// `startTerminal(options)`: the native terminal (default) or the original's in-box ttyd.
  pub async fn start_terminal(&self, id: &str, options: &TerminalOptions) -> Result<TerminalInfo> {
    let shell = shell_of(options)?;
    if options.mode == Some(TerminalMode::Ttyd) {
      return self
        .start_ttyd_in_box(id, &shell, options.hostname.as_deref())
        .await;
    }
    let ip = bind_address(options.hostname.as_deref())?;
    let client = self.client()?;
    let record = client.get_box(id).await?;
    if record.status != "running" {
      return Err(Error::InvalidState {
        message: format!(
          "box {id} is {}; a terminal needs a running box (wake() it first)",
          record.status
        ),
      });
    }
    ensure_interactive(client.as_ref()).await?;
    self.terminals.start(client, id, &shell, ip).await
  }

  /// The original's behaviour: ttyd downloaded into the box if missing, started on port 7681,
  /// reached through the port mapping. Unlike the original, each step is checked.
  pub async fn start_ttyd_in_box(
    &self,
    id: &str,
    shell: &str,
    hostname: Option<&str>,
  ) -> Result<TerminalInfo> {
    let run = |command: String, timeout_ms: Option<f64>| async move {
      self
        .exec(
          id,
          &command,
          &ExecOptions {
            cwd: None,
            timeout: timeout_ms,
          },
        )
        .await
    };
    if run("which ttyd".into(), Some(30_000.0)).await?.exit_code != 0 {
      let install = run(TTYD_INSTALL_SCRIPT.into(), Some(300_000.0)).await?;
      if install.exit_code != 0 {
        let detail = install.stderr.trim();
        return Err(Error::InvalidState {
          message: format!(
            "ttyd could not be installed in box {id} (exit {}{}); mode 'ttyd' needs network access and curl, wget or \
             apt-get in the box — the default mode needs nothing in the box",
            install.exit_code,
            if detail.is_empty() { String::new() } else { format!(": {}", detail.chars().take(300).collect::<String>()) }
          ),
        });
      }
    }
    run(ttyd_start_command(shell), Some(30_000.0)).await?;
    if run(TTYD_WAIT_COMMAND.into(), Some(30_000.0)).await?.exit_code != 0 {
      return Err(Error::InvalidState {
        message: format!("ttyd did not start in box {id} within 10 s"),
      });
    }
    let http = self.expose_port(id, TTYD_PORT as u32, hostname)?;
    let url = format!("ws://{}/ws", http.trim_start_matches("http://"));
    Ok(TerminalInfo { url, port: TTYD_PORT })
  }
}

/// Fails with `Unsupported` when the backend cannot run an interactive shell: its executions
/// take no stdin (BoxRun; SSE-era `boxlite serve`, which forgets an execution once its output
/// is read).
async fn ensure_interactive(client: &dyn BoxClient) -> Result<()> {
  if client.features().await?.exec_stdin {
    return Ok(());
  }
  Err(Error::Unsupported {
    operation:
      "startTerminal (an interactive shell needs exec stdin and resize; mode: 'ttyd' with a mapped port \
                is the alternative)"
        .into(),
    backend: client.backend_name().await?,
  })
}

// ---------------------------------------------------------------------------------------------
// Servers

/// The terminal servers of one adapter.
#[derive(Default)]
pub struct Terminals {
  state: Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
  closed: bool,
  servers: Vec<ServerHandle>,
}

struct ServerHandle {
  shutdown: watch::Sender<bool>,
  task: tokio::task::JoinHandle<()>,
}

/// What every connection of one terminal shares.
struct Terminal {
  client: Arc<dyn BoxClient>,
  box_id: String,
  shell: String,
  token: String,
}

impl Terminals {
  /// Binds a new server and starts accepting connections.
  async fn start(
    &self,
    client: Arc<dyn BoxClient>,
    box_id: &str,
    shell: &str,
    ip: IpAddr,
  ) -> Result<TerminalInfo> {
    if self.state.lock().unwrap_or_else(|p| p.into_inner()).closed {
      return Err(Error::Disposed);
    }
    let listener = TcpListener::bind(SocketAddr::new(ip, 0))
      .await
      .map_err(|e| Error::Environment {
        message: format!("cannot serve the terminal on {ip}: {e}"),
      })?;
    let addr = listener
      .local_addr()
      .map_err(|e| Error::Internal(format!("terminal listener address: {e}")))?;
    let token = new_token()?;
    let url = terminal_url(addr, &token);
    let terminal = Arc::new(Terminal {
      client,
      box_id: box_id.to_string(),
      shell: shell.to_string(),
      token,
    });
    let (shutdown, watch_rx) = watch::channel(false);
    let task = tokio::spawn(accept_loop(listener, terminal, watch_rx));
    let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
    if state.closed {
      let _ = shutdown.send(true);
      return Err(Error::Disposed);
    }
    state.servers.retain(|s| !s.task.is_finished());
    state.servers.push(ServerHandle { shutdown, task });
    // The URL carries the access token: only the address is logged.
    tracing::debug!(%box_id, %addr, %shell, "terminal server listening");
    Ok(TerminalInfo {
      url,
      port: addr.port(),
    })
  }

  /// Stops every server and connection (ending their shells); later starts fail. Idempotent.
  pub async fn close_all(&self) {
    let servers = {
      let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
      state.closed = true;
      std::mem::take(&mut state.servers)
    };
    for server in &servers {
      let _ = server.shutdown.send(true);
    }
    // Each server bounds its own wind-down by SHUTDOWN_WAIT; this bound is the backstop.
    let aborts: Vec<_> = servers.iter().map(|s| s.task.abort_handle()).collect();
    let all = futures_util::future::join_all(servers.into_iter().map(|s| s.task));
    if tokio::time::timeout(SHUTDOWN_WAIT + Duration::from_secs(2), all)
      .await
      .is_err()
    {
      aborts.iter().for_each(|a| a.abort());
    }
  }

  /// Number of servers still running (tests).
  pub fn running(&self) -> usize {
    self
      .state
      .lock()
      .unwrap_or_else(|p| p.into_inner())
      .servers
      .iter()
      .filter(|s| !s.task.is_finished())
      .count()
  }
}

async fn accept_loop(listener: TcpListener, terminal: Arc<Terminal>, mut shutdown: watch::Receiver<bool>) {
  let mut sessions = JoinSet::new();
  loop {
    tokio::select! {
      _ = shutdown.changed() => break,
      accepted = listener.accept() => match accepted {
        Ok((stream, peer)) => {
          tracing::debug!(box_id = %terminal.box_id, %peer, "terminal connection");
          sessions.spawn(connection(stream, terminal.clone(), shutdown.clone()));
        }
        // Out of file descriptors and the like: back off instead of spinning.
        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
      },
      Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
    }
  }
  drop(listener);
  // Connections saw the same shutdown signal and are closing their sockets and shells.
  let deadline = Instant::now() + SHUTDOWN_WAIT;
  while !sessions.is_empty() {
    if tokio::time::timeout_at(deadline, sessions.join_next())
      .await
      .is_err()
    {
      sessions.abort_all();
      break;
    }
  }
}

/// Upgrades one connection (refusing wrong paths before the upgrade) and serves it.
// The refusal type is tungstenite's callback contract.
#[allow(clippy::result_large_err)]
async fn connection(stream: TcpStream, terminal: Arc<Terminal>, shutdown: watch::Receiver<bool>) {
  let _ = stream.set_nodelay(true);
  let tty = Arc::new(std::sync::atomic::AtomicBool::new(false));
  let check = {
    let token = terminal.token.clone();
    let tty = tty.clone();
    move |request: &Request, mut response: Response| -> std::result::Result<Response, ErrorResponse> {
      let refuse = |status: StatusCode, text: &str| {
        let mut reply = ErrorResponse::new(Some(text.to_string()));
        *reply.status_mut() = status;
        reply
          .headers_mut()
          .insert("content-type", HeaderValue::from_static("text/plain"));
        reply
          .headers_mut()
          .insert("content-length", HeaderValue::from(text.len()));
        reply
          .headers_mut()
          .insert("connection", HeaderValue::from_static("close"));
        reply
      };
      match check_path(request.uri().path(), &token) {
        PathCheck::Granted => {}
        PathCheck::WrongToken => {
          tracing::debug!("terminal connection refused: wrong token (403)");
          return Err(refuse(StatusCode::FORBIDDEN, "wrong terminal token\n"));
        }
        PathCheck::NotFound => {
          tracing::debug!("terminal connection refused: unknown path (404)");
          return Err(refuse(StatusCode::NOT_FOUND, "not found\n"));
        }
      }
      let offered = request
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok());
      if offers_tty(offered) {
        tty.store(true, std::sync::atomic::Ordering::SeqCst);
        response
          .headers_mut()
          .insert("sec-websocket-protocol", HeaderValue::from_static("tty"));
      }
      Ok(response)
    }
  };
  let ws = match tokio::time::timeout(
    UPGRADE_TIMEOUT,
    tokio_tungstenite::accept_hdr_async(stream, check),
  )
  .await
  {
    Ok(Ok(ws)) => ws,
    Ok(Err(e)) => {
      tracing::debug!(error = %e, "terminal upgrade failed");
      return;
    }
    Err(_) => {
      tracing::debug!("terminal upgrade timed out");
      return;
    }
  };
  let tty = tty.load(std::sync::atomic::Ordering::SeqCst);
  tracing::debug!(box_id = %terminal.box_id, tty_subprotocol = tty, "terminal connected");
  Session::new(ws, terminal, shutdown).run(tty).await;
}

// ---------------------------------------------------------------------------------------------
// One connection: one shell

type WsSink = SplitSink<WebSocketStream<TcpStream>, Message>;
type WsSource = SplitStream<WebSocketStream<TcpStream>>;

/// Stdin and resizes, applied in order by a task of their own so output keeps flowing.
enum Control {
  Input(Bytes),
  Resize(Size),
}

struct Shell {
  exec_id: String,
  output: ExecEventStream,
  control: mpsc::UnboundedSender<Control>,
  failures: mpsc::UnboundedReceiver<Error>,
  writer: tokio::task::JoinHandle<()>,
}

/// Why a session ends, and how the socket is closed.
enum End {
  /// The client closed or went away: nothing more to send.
  ClientGone,
  /// Close with this code and reason.
  Close(CloseCode, String),
}

struct Session {
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
  fn new(ws: WebSocketStream<TcpStream>, terminal: Arc<Terminal>, shutdown: watch::Receiver<bool>) -> Self {
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

  async fn run(mut self, tty_protocol: bool) {
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
        tracing::debug!(box_id = %self.terminal.box_id, exec_id = %shell.exec_id, "terminal shell started");
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

/// Starts the shell as a tty execution and opens its output (before any stdin, so an attach
/// based client writes stdin through the same connection).
async fn start_shell(terminal: &Terminal) -> Result<Shell> {
  let client = &terminal.client;
  let request = ExecRequest {
    cmd: vec![terminal.shell.clone()],
    env: Some(BTreeMap::from([("TERM".to_string(), TERM.to_string())])),
    tty: Some(true),
    ..ExecRequest::default()
  };
  let execution = client.exec_async(&terminal.box_id, request).await?;
  let output = match client.get_exec_output(&terminal.box_id, &execution.id).await {
    Ok(output) => output,
    Err(e) => {
      let _ = tokio::time::timeout(
        SIGNAL_TIMEOUT,
        client.signal_exec(&terminal.box_id, &execution.id, 9),
      )
      .await;
      return Err(e);
    }
  };
  let (control, mut inbox) = mpsc::unbounded_channel::<Control>();
  let (report, failures) = mpsc::unbounded_channel::<Error>();
  let writer = {
    let client = client.clone();
    let box_id = terminal.box_id.clone();
    let exec_id = execution.id.clone();
    tokio::spawn(async move {
      let mut size = DEFAULT_SIZE;
      let mut sized = false;
      let mut next: Option<Control> = None;
      loop {
        let control = match next.take() {
          Some(control) => control,
          None => match inbox.recv().await {
            Some(control) => control,
            None => return,
          },
        };
        let result = match control {
          Control::Input(data) => {
            // What the user typed while the last write was in flight goes out in one write.
            let mut batch = bytes::BytesMut::from(&data[..]);
            while batch.len() < INPUT_BATCH_BYTES {
              match inbox.try_recv() {
                Ok(Control::Input(more)) => batch.extend_from_slice(&more),
                Ok(other) => {
                  next = Some(other);
                  break;
                }
                Err(_) => break,
              }
            }
            let data = batch.freeze();
            tokio::time::timeout(
              CONTROL_TIMEOUT,
              client.send_exec_input(&box_id, &exec_id, data, false),
            )
            .await
          }
          Control::Resize(new) if sized && new == size => continue,
          Control::Resize(new) => {
            size = new;
            sized = true;
            tokio::time::timeout(
              CONTROL_TIMEOUT,
              client.resize_exec(&box_id, &exec_id, new.cols, new.rows),
            )
            .await
          }
        };
        let error = match result {
          Ok(Ok(())) => continue,
          Ok(Err(e)) => e,
          Err(_) => Error::Timeout {
            operation: "terminal input".into(),
            after_ms: CONTROL_TIMEOUT.as_millis() as u64,
          },
        };
        let _ = report.send(error);
        return;
      }
    })
  };
  Ok(Shell {
    exec_id: execution.id,
    output,
    control,
    failures,
    writer,
  })
}

/// Ends a shell whose client is gone: SIGHUP (a terminal hang-up), then SIGKILL, each followed
/// by a bounded wait for its exit.
async fn end_shell(terminal: Arc<Terminal>, mut shell: Shell) {
  shell.writer.abort();
  let client = &terminal.client;
  for (signal, wait) in [(1, HANGUP_WAIT), (9, KILL_WAIT)] {
    let _ = tokio::time::timeout(
      SIGNAL_TIMEOUT,
      client.signal_exec(&terminal.box_id, &shell.exec_id, signal),
    )
    .await;
    let exited = tokio::time::timeout(wait, async {
      loop {
        match shell.output.next().await {
          Some(Ok(ExecEvent::Exit(_))) | Some(Err(_)) | None => return,
          Some(Ok(_)) => {}
        }
      }
    })
    .await;
    if exited.is_ok() {
      return;
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn tokens_are_64_hex_digits_and_differ() {
    let (a, b) = (new_token().unwrap(), new_token().unwrap());
    assert_eq!(a.len(), 64);
    assert!(a
      .chars()
      .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_ne!(a, b);
  }

  #[test]
  fn token_comparison_needs_every_byte() {
    assert!(token_matches("abc123", "abc123"));
    assert!(!token_matches("abc123", "abc124"));
    assert!(!token_matches("abc123", "abc12"));
    assert!(!token_matches("abc123", ""));
  }

  #[test]
  fn paths_grant_only_the_terminal_token() {
    let token = "f00d";
    assert_eq!(check_path("/terminal/f00d/ws", token), PathCheck::Granted);
    assert_eq!(check_path("/terminal/f00d/ws?x=1", token), PathCheck::Granted);
    assert_eq!(check_path("/terminal/beef/ws", token), PathCheck::WrongToken);
    assert_eq!(check_path("/terminal/f00d0/ws", token), PathCheck::WrongToken);
    assert_eq!(check_path("/terminal//ws", token), PathCheck::NotFound);
    assert_eq!(check_path("/terminal/f00d/x/ws", token), PathCheck::NotFound);
    assert_eq!(check_path("/ws", token), PathCheck::NotFound);
    assert_eq!(check_path("/terminal/f00d", token), PathCheck::NotFound);
  }

  #[test]
  fn the_tty_subprotocol_is_found_in_an_offer_list() {
    assert!(offers_tty(Some("tty")));
    assert!(offers_tty(Some("binary, tty")));
    assert!(!offers_tty(Some("ttyd")));
    assert!(!offers_tty(None));
  }

  #[test]
  fn only_loopback_addresses_are_served() {
    assert_eq!(bind_address(None).unwrap(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(
      bind_address(Some("localhost")).unwrap(),
      IpAddr::V4(Ipv4Addr::LOCALHOST)
    );
    assert_eq!(bind_address(Some("127.0.0.2")).unwrap().to_string(), "127.0.0.2");
    assert_eq!(bind_address(Some("[::1]")).unwrap().to_string(), "::1");
    let err = bind_address(Some("0.0.0.0")).unwrap_err();
    assert_eq!(err.code(), "invalid_argument");
    assert!(
      err
        .to_string()
        .starts_with("options.hostname must be a loopback address"),
      "{err}"
    );
    assert!(bind_address(Some("example.com")).is_err());
  }

  #[test]
  fn urls_name_the_bound_address_and_token() {
    let v4: SocketAddr = "127.0.0.1:4567".parse().unwrap();
    assert_eq!(terminal_url(v4, "ab"), "ws://127.0.0.1:4567/terminal/ab/ws");
    let v6: SocketAddr = "[::1]:80".parse().unwrap();
    assert_eq!(terminal_url(v6, "ab"), "ws://[::1]:80/terminal/ab/ws");
  }

  #[test]
  fn the_first_frame_tells_the_framing() {
    assert_eq!(detect(b"\x00ls\r"), Some(Framing::Core));
    assert_eq!(detect(b"\x01{\"columns\":80,\"rows\":24}"), Some(Framing::Core));
    assert_eq!(
      detect(br#"{"AuthToken":"","columns":80,"rows":24}"#),
      Some(Framing::Ttyd)
    );
    assert_eq!(detect(b"0ls\r"), Some(Framing::Ttyd));
    assert_eq!(detect(b"1{\"columns\":80,\"rows\":24}"), Some(Framing::Ttyd));
    assert_eq!(detect(b""), None);
    assert_eq!(detect(b"\x05"), None);
  }

  #[test]
  fn core_frames_decode() {
    assert_eq!(
      decode(Framing::Core, b"\x00echo hi\r"),
      ClientMessage::Input(Bytes::from_static(b"echo hi\r"))
    );
    assert_eq!(
      decode(Framing::Core, b"\x01{\"columns\":100,\"rows\":30}"),
      ClientMessage::Resize(Size { cols: 100, rows: 30 })
    );
    assert_eq!(
      decode(Framing::Core, b"\x01{\"columns\":0,\"rows\":30}"),
      ClientMessage::Ignore
    );
    assert_eq!(decode(Framing::Core, b"\x01not json"), ClientMessage::Ignore);
    // ttyd's type bytes mean nothing in core's framing.
    assert_eq!(decode(Framing::Core, b"0ls"), ClientMessage::Ignore);
    assert_eq!(decode(Framing::Core, b""), ClientMessage::Ignore);
  }

  #[test]
  fn ttyd_frames_decode() {
    assert_eq!(
      decode(Framing::Ttyd, b"0ls\r"),
      ClientMessage::Input(Bytes::from_static(b"ls\r"))
    );
    assert_eq!(
      decode(Framing::Ttyd, br#"1{"columns":132,"rows":43}"#),
      ClientMessage::Resize(Size { cols: 132, rows: 43 })
    );
    assert_eq!(decode(Framing::Ttyd, b"2"), ClientMessage::Pause);
    assert_eq!(decode(Framing::Ttyd, b"3"), ClientMessage::Resume);
    assert_eq!(
      decode(Framing::Ttyd, br#"{"AuthToken":"tok","columns":120,"rows":40}"#),
      ClientMessage::Handshake {
        auth_token: Some("tok".into()),
        size: Some(Size { cols: 120, rows: 40 })
      }
    );
    assert_eq!(
      decode(Framing::Ttyd, br#"{"AuthToken":""}"#),
      ClientMessage::Handshake {
        auth_token: Some(String::new()),
        size: None
      }
    );
    assert_eq!(decode(Framing::Ttyd, b"{broken"), ClientMessage::Ignore);
    assert_eq!(decode(Framing::Ttyd, b"\x00ls"), ClientMessage::Ignore);
  }

  #[test]
  fn output_frames_carry_the_framings_type_byte() {
    assert_eq!(&encode_output(Framing::Core, b"hi")[..], b"\x00hi");
    assert_eq!(&encode_output(Framing::Ttyd, b"hi")[..], b"0hi");
    let [title, prefs] = ttyd_preamble("/bin/bash (box1)");
    assert_eq!(&title[..], b"1/bin/bash (box1)");
    assert_eq!(&prefs[..], b"2{}");
  }

  #[test]
  fn the_handshake_token_may_be_empty_or_the_terminals() {
    assert!(handshake_allowed("t0k", None));
    assert!(handshake_allowed("t0k", Some("")));
    assert!(handshake_allowed("t0k", Some("t0k")));
    assert!(!handshake_allowed("t0k", Some("guess")));
  }

  #[test]
  fn utf8_sequences_stay_whole_across_chunks() {
    let text = "aé€😀z".as_bytes().to_vec();
    for split in 0..=text.len() {
      let mut carry = Utf8Carry::default();
      let mut out = carry.push(&text[..split]);
      assert!(std::str::from_utf8(&out).is_ok(), "split at {split}");
      let second = carry.push(&text[split..]);
      assert!(std::str::from_utf8(&second).is_ok(), "split at {split}");
      out.extend(second);
      out.extend(carry.finish());
      assert_eq!(out, text);
    }
    // Bytes that are not UTF-8 pass through instead of being held forever.
    let mut carry = Utf8Carry::default();
    assert_eq!(carry.push(b"\xff\xfe"), b"\xff\xfe");
    assert_eq!(carry.push(b"\xe2\x82"), b"");
    assert_eq!(carry.finish(), b"\xe2\x82");
  }

  #[test]
  fn options_default_to_bash_and_the_native_mode() {
    let options: TerminalOptions =
      serde_json::from_value(serde_json::json!({"hostname": "127.0.0.1", "other": 1})).unwrap();
    assert_eq!(shell_of(&options).unwrap(), "/bin/bash");
    assert_eq!(options.mode, None);
    let ttyd: TerminalOptions =
      serde_json::from_value(serde_json::json!({"mode": "ttyd", "shell": "/bin/sh"})).unwrap();
    assert_eq!(ttyd.mode, Some(TerminalMode::Ttyd));
    assert!(serde_json::from_value::<TerminalOptions>(serde_json::json!({"mode": "web"})).is_err());
    assert!(shell_of(&TerminalOptions {
      shell: Some(" ".into()),
      ..Default::default()
    })
    .is_err());
  }

  #[test]
  fn ttyd_mode_commands_quote_the_shell_and_check_the_start() {
    assert_eq!(
      ttyd_start_command("/bin/bash"),
      "nohup ttyd -W -p 7681 '/bin/bash' > /dev/null 2>&1 &"
    );
    assert_eq!(
      ttyd_start_command("it's"),
      r"nohup ttyd -W -p 7681 'it'\''s' > /dev/null 2>&1 &"
    );
    assert!(TTYD_WAIT_COMMAND.ends_with("exit 1"));
    assert!(TTYD_INSTALL_SCRIPT.contains("ttyd/releases/download/1.7.7/ttyd.$arch"));
  }
}

/// The server end to end over a scripted shell: a fake client whose "shell" answers `size` with
/// `rows cols`, `exit` by exiting and anything else with `out:<line>`.
#[cfg(test)]
mod server_tests {
  use super::*;
  use crate::client::*;
  use async_trait::async_trait;
  use tokio_tungstenite::tungstenite::client::IntoClientRequest;

  #[derive(Default)]
  struct ShellState {
    output: Option<mpsc::UnboundedSender<Result<ExecEvent>>>,
    line: Vec<u8>,
    size: (u16, u16),
    signals: Vec<i32>,
    requests: Vec<ExecRequest>,
  }

  #[derive(Default)]
  struct FakeShell {
    state: Mutex<ShellState>,
    /// Output the shell prints when it starts (a prompt).
    greeting: &'static str,
  }

  impl FakeShell {
    fn emit(&self, event: ExecEvent) {
      if let Some(tx) = &self.state.lock().unwrap().output {
        let _ = tx.send(Ok(event));
      }
    }
    fn signals(&self) -> Vec<i32> {
      self.state.lock().unwrap().signals.clone()
    }
  }

  fn unused<T>() -> Result<T> {
    Err(Error::Internal("not used by terminal tests".into()))
  }

  #[async_trait]
  impl BoxClient for FakeShell {
    async fn create_box(&self, _: CreateBoxParams) -> Result<BoxRecord> {
      unused()
    }
    async fn get_box(&self, box_id: &str) -> Result<BoxRecord> {
      Ok(BoxRecord {
        id: box_id.into(),
        status: "running".into(),
        ..Default::default()
      })
    }
    async fn list_boxes(&self, _: Option<String>, _: Option<u32>) -> Result<Vec<BoxRecord>> {
      unused()
    }
    async fn delete_box(&self, _: &str, _: bool) -> Result<()> {
      unused()
    }
    async fn start_box(&self, _: &str) -> Result<()> {
      unused()
    }
    async fn stop_box(&self, _: &str) -> Result<()> {
      unused()
    }
    async fn exec(&self, _: &str, _: ExecRequest) -> Result<ExecOutput> {
      unused()
    }
    async fn exec_stream(&self, _: &str, _: ExecRequest) -> Result<ExecEventStream> {
      unused()
    }
    async fn exec_async(&self, box_id: &str, request: ExecRequest) -> Result<Execution> {
      let mut st = self.state.lock().unwrap();
      st.requests.push(request);
      st.size = (80, 24);
      Ok(Execution {
        id: "e1".into(),
        box_id: Some(box_id.into()),
        status: "running".into(),
        exit_code: None,
      })
    }
    async fn get_exec_output(&self, _: &str, _: &str) -> Result<ExecEventStream> {
      let (tx, rx) = mpsc::unbounded_channel();
      if !self.greeting.is_empty() {
        let _ = tx.send(Ok(ExecEvent::Stdout(Bytes::from_static(
          self.greeting.as_bytes(),
        ))));
      }
      self.state.lock().unwrap().output = Some(tx);
      Ok(Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (e, rx))
      })))
    }
    async fn send_exec_input(&self, _: &str, _: &str, data: Bytes, _: bool) -> Result<()> {
      let mut lines = Vec::new();
      {
        let mut st = self.state.lock().unwrap();
        for &b in data.iter() {
          if b == b'\r' || b == b'\n' {
            lines.push(String::from_utf8_lossy(&std::mem::take(&mut st.line)).into_owned());
          } else {
            st.line.push(b);
          }
        }
      }
      for line in lines {
        let (cols, rows) = self.state.lock().unwrap().size;
        match line.as_str() {
          "exit" => self.emit(ExecEvent::Exit(Some(0))),
          "size" => self.emit(ExecEvent::Stdout(Bytes::from(format!("{rows} {cols}\r\n")))),
          other => self.emit(ExecEvent::Stdout(Bytes::from(format!("out:{other}\r\n")))),
        }
      }
      Ok(())
    }
    async fn signal_exec(&self, _: &str, _: &str, signal: i32) -> Result<()> {
      self.state.lock().unwrap().signals.push(signal);
      if signal == 1 {
        self.emit(ExecEvent::Exit(None));
      }
      Ok(())
    }
    async fn resize_exec(&self, _: &str, exec_id: &str, cols: u16, rows: u16) -> Result<()> {
      if exec_id != "e1" {
        return Err(Error::NotFound {
          what: "execution",
          id: exec_id.into(),
        });
      }
      self.state.lock().unwrap().size = (cols, rows);
      Ok(())
    }
    async fn upload_files(&self, _: &str, _: &str, _: ByteStream) -> Result<()> {
      unused()
    }
    async fn download_files(&self, _: &str, _: &str) -> Result<ByteStream> {
      unused()
    }
    async fn create_snapshot(&self, _: &str, _: &str) -> Result<Snapshot> {
      unused()
    }
    async fn list_snapshots(&self, _: &str) -> Result<Vec<Snapshot>> {
      unused()
    }
    async fn restore_snapshot(&self, _: &str, _: &str) -> Result<()> {
      unused()
    }
    async fn delete_snapshot(&self, _: &str, _: &str) -> Result<()> {
      unused()
    }
    async fn clone_box(&self, _: &str, _: Option<String>) -> Result<BoxRecord> {
      unused()
    }
    async fn export_box(&self, _: &str) -> Result<ByteStream> {
      unused()
    }
    async fn import_box(&self, _: ByteStream) -> Result<BoxRecord> {
      unused()
    }
    async fn get_metrics(&self) -> Result<Value> {
      unused()
    }
    async fn get_box_metrics(&self, _: &str) -> Result<Value> {
      unused()
    }
    async fn get_config(&self) -> Result<Value> {
      unused()
    }
    async fn dispose(&self) -> Result<()> {
      Ok(())
    }
  }

  type Client = WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

  async fn setup(greeting: &'static str) -> (Adapter, Arc<FakeShell>, TerminalInfo) {
    let shell = Arc::new(FakeShell {
      greeting,
      ..Default::default()
    });
    let adapter = Adapter::with_client(
      &serde_json::json!({"apiUrl": "http://127.0.0.1:1"}),
      shell.clone(),
    );
    let info = adapter
      .start_terminal("box1", &TerminalOptions::default())
      .await
      .unwrap();
    (adapter, shell, info)
  }

  async fn connect(url: &str, tty: bool) -> Client {
    let mut request = url.into_client_request().unwrap();
    if tty {
      request
        .headers_mut()
        .insert("sec-websocket-protocol", HeaderValue::from_static("tty"));
    }
    let (ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    let protocol = response
      .headers()
      .get("sec-websocket-protocol")
      .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(protocol.as_deref(), tty.then_some("tty"));
    ws
  }

  /// The next data frame (skipping pings), within 5 s.
  async fn next(ws: &mut Client) -> Message {
    loop {
      let message = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("a frame in time");
      match message {
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
        Some(Ok(message)) => return message,
        other => panic!("connection ended: {other:?}"),
      }
    }
  }

  fn binary(frame: &[u8]) -> Message {
    Message::Binary(Bytes::copy_from_slice(frame))
  }

  #[tokio::test]
  async fn core_framing_relays_input_resize_and_closes_on_exit() {
    let (_adapter, shell, info) = setup("").await;
    assert!(info
      .url
      .starts_with(&format!("ws://127.0.0.1:{}/terminal/", info.port)));
    let mut ws = connect(&info.url, false).await;
    ws.send(binary(b"\x00hello\r")).await.unwrap();
    assert_eq!(next(&mut ws).await, binary(b"\x00out:hello\r\n"));
    ws.send(binary(b"\x01{\"columns\":100,\"rows\":30}"))
      .await
      .unwrap();
    ws.send(binary(b"\x00size\r")).await.unwrap();
    assert_eq!(next(&mut ws).await, binary(b"\x0030 100\r\n"));
    ws.send(binary(b"\x00exit\r")).await.unwrap();
    match next(&mut ws).await {
      Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Normal),
      other => panic!("expected a close, got {other:?}"),
    }
    let request = shell.state.lock().unwrap().requests[0].clone();
    assert_eq!(
      (request.cmd, request.tty),
      (vec!["/bin/bash".to_string()], Some(true))
    );
    assert_eq!(request.env.unwrap()["TERM"], "xterm-256color");
    assert!(shell.signals().is_empty(), "an exited shell is not signalled");
  }

  #[tokio::test]
  async fn ttyd_framing_greets_sizes_from_the_opening_message_and_relays() {
    let (_adapter, _shell, info) = setup("").await;
    let mut ws = connect(&info.url, true).await;
    ws.send(binary(br#"{"AuthToken":"","columns":90,"rows":20}"#))
      .await
      .unwrap();
    assert_eq!(next(&mut ws).await, binary(b"1/bin/bash (box1)"));
    assert_eq!(next(&mut ws).await, binary(b"2{}"));
    ws.send(Message::Text("0size\r".into())).await.unwrap();
    assert_eq!(next(&mut ws).await, binary(b"020 90\r\n"));
    ws.send(binary(br#"1{"columns":132,"rows":43}"#)).await.unwrap();
    ws.send(binary(b"0size\r")).await.unwrap();
    assert_eq!(next(&mut ws).await, binary(b"043 132\r\n"));
  }

  #[tokio::test]
  async fn a_silent_client_gets_the_prompt_in_cores_framing_after_the_grace() {
    let (_adapter, _shell, info) = setup("prompt$ ").await;
    let mut ws = connect(&info.url, false).await;
    let started = Instant::now();
    assert_eq!(next(&mut ws).await, binary(b"\x00prompt$ "));
    assert!(started.elapsed() >= DETECT_GRACE - Duration::from_millis(50));
  }

  #[tokio::test]
  async fn held_output_follows_the_framing_of_a_late_first_frame() {
    let (_adapter, _shell, info) = setup("prompt$ ").await;
    let mut ws = connect(&info.url, false).await;
    ws.send(binary(b"0x\r")).await.unwrap();
    assert_eq!(next(&mut ws).await, binary(b"1/bin/bash (box1)"));
    assert_eq!(next(&mut ws).await, binary(b"2{}"));
    assert_eq!(next(&mut ws).await, binary(b"0prompt$ "));
    assert_eq!(next(&mut ws).await, binary(b"0out:x\r\n"));
  }

  #[tokio::test]
  async fn wrong_tokens_and_paths_are_refused_before_the_upgrade() {
    let (_adapter, _shell, info) = setup("").await;
    let wrong = format!("ws://127.0.0.1:{}/terminal/{}/ws", info.port, "0".repeat(64));
    for (url, status) in [(wrong, 403), (format!("ws://127.0.0.1:{}/ws", info.port), 404)] {
      match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
          assert_eq!(response.status().as_u16(), status)
        }
        other => panic!("{url}: expected HTTP {status}, got {:?}", other.map(|_| ())),
      }
    }
  }

  #[tokio::test]
  async fn a_wrong_auth_token_closes_with_policy_violation() {
    let (_adapter, shell, info) = setup("").await;
    let mut ws = connect(&info.url, true).await;
    ws.send(binary(br#"{"AuthToken":"guess","columns":80,"rows":24}"#))
      .await
      .unwrap();
    match next(&mut ws).await {
      Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Policy),
      other => panic!("expected a close, got {other:?}"),
    }
    assert!(
      shell.state.lock().unwrap().requests.is_empty(),
      "no shell for a refused client"
    );
  }

  #[tokio::test]
  async fn closing_the_socket_hangs_up_the_shell() {
    let (_adapter, shell, info) = setup("").await;
    let mut ws = connect(&info.url, false).await;
    ws.send(binary(b"\x00hi\r")).await.unwrap();
    next(&mut ws).await;
    ws.close(None).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while shell.signals().is_empty() && Instant::now() < deadline {
      tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
      shell.signals(),
      [1],
      "SIGHUP, and no SIGKILL once the shell exited"
    );
  }

  #[tokio::test]
  async fn dispose_closes_connections_and_servers_and_refuses_new_terminals() {
    let (adapter, shell, info) = setup("").await;
    let mut ws = connect(&info.url, false).await;
    ws.send(binary(b"\x00hi\r")).await.unwrap();
    next(&mut ws).await;
    adapter.dispose().await.unwrap();
    match next(&mut ws).await {
      Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Away),
      other => panic!("expected a close, got {other:?}"),
    }
    assert_eq!(shell.signals(), [1]);
    assert_eq!(adapter.terminals.running(), 0);
    assert!(tokio_tungstenite::connect_async(info.url.as_str()).await.is_err());
    let err = adapter
      .start_terminal("box1", &TerminalOptions::default())
      .await
      .unwrap_err();
    assert_eq!(err.code(), "disposed");
  }
}
