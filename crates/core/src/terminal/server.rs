//! The terminal servers of one adapter: a loopback listener per terminal, the HTTP upgrade
//! (refusing wrong tokens and paths before it), one `Session` per connection, and their end:
//! a server closes when its box is destroyed through the adapter, after `IDLE_EXPIRY` without a
//! connection, or at `dispose`, so a long-lived process that opens terminals does not collect
//! listeners.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};

use super::protocol::{check_path, new_token, offers_tty, terminal_url, PathCheck};
use super::session::Session;
use super::TerminalInfo;
use crate::client::BoxClient;
use crate::error::{Error, Result};

/// The HTTP upgrade must complete within this.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);
/// `dispose()` waits this long for connections to wind down before aborting them.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(8);
/// A terminal server with no connection for this long (since it started or since its last
/// connection ended) closes; its URL then refuses connections.
pub const IDLE_EXPIRY: Duration = Duration::from_secs(15 * 60);

/// The terminal servers of one adapter.
pub struct Terminals {
  state: Mutex<Registry>,
  idle_expiry: Duration,
}

impl Default for Terminals {
  fn default() -> Self {
    Terminals::with_idle_expiry(IDLE_EXPIRY)
  }
}

#[derive(Default)]
struct Registry {
  closed: bool,
  servers: Vec<ServerHandle>,
}

struct ServerHandle {
  box_id: String,
  shutdown: watch::Sender<bool>,
  task: tokio::task::JoinHandle<()>,
}

/// What every connection of one terminal shares.
pub(super) struct Terminal {
  pub(super) client: Arc<dyn BoxClient>,
  pub(super) box_id: String,
  pub(super) shell: String,
  pub(super) token: String,
  /// Shells run on the server's own terminal endpoint (BoxRun) instead of as tty executions.
  pub(super) box_terminal: bool,
}

impl Terminals {
  /// Servers that close after `idle_expiry` without a connection.
  pub fn with_idle_expiry(idle_expiry: Duration) -> Self {
    Terminals {
      state: Mutex::default(),
      idle_expiry,
    }
  }

  /// Binds a new server and starts accepting connections.
  pub(super) async fn start(
    &self,
    client: Arc<dyn BoxClient>,
    box_id: &str,
    shell: &str,
    ip: IpAddr,
    box_terminal: bool,
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
      box_terminal,
    });
    let (shutdown, watch_rx) = watch::channel(false);
    let task = tokio::spawn(accept_loop(listener, terminal, watch_rx, self.idle_expiry));
    let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
    if state.closed {
      let _ = shutdown.send(true);
      return Err(Error::Disposed);
    }
    state.servers.retain(|s| !s.task.is_finished());
    state.servers.push(ServerHandle {
      box_id: box_id.to_string(),
      shutdown,
      task,
    });
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
    stop(servers).await;
  }

  /// Stops the servers of one box (it was destroyed: their shells cannot run any more).
  pub async fn close_box(&self, box_id: &str) {
    let servers = {
      let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
      let (gone, kept) = std::mem::take(&mut state.servers)
        .into_iter()
        .partition(|s| s.box_id == box_id);
      state.servers = kept;
      gone
    };
    stop(servers).await;
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

/// Signals `servers` to stop and waits for them, bounded.
async fn stop(servers: Vec<ServerHandle>) {
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

async fn accept_loop(
  listener: TcpListener,
  terminal: Arc<Terminal>,
  mut shutdown: watch::Receiver<bool>,
  idle_expiry: Duration,
) {
  let mut sessions = JoinSet::new();
  let mut idle_since = Instant::now();
  loop {
    tokio::select! {
      _ = shutdown.changed() => break,
      () = tokio::time::sleep_until(idle_since + idle_expiry), if sessions.is_empty() => {
        tracing::debug!(box_id = %terminal.box_id, "terminal server closed after being idle");
        break;
      }
      accepted = listener.accept() => match accepted {
        Ok((stream, peer)) => {
          tracing::debug!(box_id = %terminal.box_id, %peer, "terminal connection");
          sessions.spawn(connection(stream, terminal.clone(), shutdown.clone()));
        }
        // Out of file descriptors and the like: back off instead of spinning.
        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
      },
      Some(_) = sessions.join_next(), if !sessions.is_empty() => idle_since = Instant::now(),
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
