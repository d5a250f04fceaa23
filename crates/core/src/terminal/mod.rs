//! `startTerminal()` without installing anything in the box: a WebSocket endpoint served by the
//! addon itself on loopback, behind an unguessable per-terminal token in the path
//! (`ws://127.0.0.1:<port>/terminal/<token>/ws`). Every connection runs one shell in the box as
//! a tty execution of the mode's client (`exec_async` + `get_exec_output` + `send_exec_input` +
//! `resize_exec`), so local mode and every remote dialect with interactive stdin serve it alike;
//! on BoxRun (no exec stdin) it is a shell on the server's own box terminal WebSocket
//! (`BoxClient::open_box_terminal`). A server with neither (SSE-era `boxlite serve`) gets the
//! in-box ttyd when the box maps its port, and a clear refusal otherwise.
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
//! framing is known or `DETECT_GRACE` passed (then core's framing is assumed).
//!
//! Closing the socket ends the shell (SIGHUP, then SIGKILL); the shell's exit closes the socket
//! (1000); `Adapter::dispose` closes every server and connection (1001). Every wait is bounded.
//!
//! The original's behaviour (ttyd downloaded into the box, reached through a mapped port) stays
//! available as `mode: "ttyd"` ([`Adapter::start_ttyd_in_box`]).
//!
//! Modules: [`protocol`] (tokens, paths, the two framings; no I/O), `server` (the listeners and
//! the HTTP upgrade), `session` (one connection relaying one shell), `shell` (starting, feeding
//! and ending that shell in the box), [`ttyd_in_box`] (`mode: "ttyd"`). This file: the options
//! and `startTerminal` itself.

pub mod protocol;
mod server;
mod session;
mod shell;
#[cfg(test)]
mod tests;
pub mod ttyd_in_box;

use serde::{Deserialize, Serialize};

use crate::adapter::Adapter;
use crate::error::{Error, Result};
use protocol::bind_address;
use ttyd_in_box::TTYD_PORT;

pub use server::Terminals;

/// The shell a terminal runs unless told otherwise (as in the original).
pub const DEFAULT_SHELL: &str = "/bin/bash";

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
    let features = client.features().await?;
    if !features.exec_stdin && !features.box_terminal {
      // No way to a shell through the server: the original's in-box ttyd, when it can be
      // reached (the box maps its port), else a clear refusal.
      if self.maps_guest_port(id, TTYD_PORT) {
        return self
          .start_ttyd_in_box(id, &shell, options.hostname.as_deref())
          .await;
      }
      return Err(Error::Unsupported {
        operation: format!(
          "startTerminal (an interactive shell needs exec stdin or a terminal endpoint of the server; create \
           the sandbox with a mapping for guest port {TTYD_PORT} to use ttyd inside the box instead)"
        ),
        backend: client.backend_name().await?,
      });
    }
    self
      .terminals
      .start(client, id, &shell, ip, features.box_terminal)
      .await
  }
}
