//! The shell behind one terminal connection: a tty execution in the box (or, on BoxRun, a shell
//! on the server's box terminal WebSocket), its stdin and resizes written in order by a task of
//! its own, and its hang-up when the client leaves.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;

use bytes::Bytes;

use super::protocol::Size;
use super::server::Terminal;
use crate::client::{BoxTerminal, ExecEvent, ExecEventStream, ExecRequest, TerminalInput};
use crate::error::{Error, Result};

/// `TERM` of the shell (xterm.js and every mainstream terminal understand it).
const TERM: &str = "xterm-256color";
/// Size of a shell whose client never said.
const DEFAULT_SIZE: Size = Size { cols: 80, rows: 24 };
/// One stdin write or resize must complete within this.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);
/// A signal to a shell must be delivered within this.
const SIGNAL_TIMEOUT: Duration = Duration::from_secs(5);
/// After SIGHUP (then after SIGKILL), the shell's exit is awaited this long.
const HANGUP_WAIT: Duration = Duration::from_secs(2);
const KILL_WAIT: Duration = Duration::from_secs(3);
/// Keystrokes queued while a stdin write is in flight go out together, up to this size.
const INPUT_BATCH_BYTES: usize = 64 * 1024;

/// Stdin and resizes, applied in order by a task of their own so output keeps flowing.
pub(super) enum Control {
  Input(Bytes),
  Resize(Size),
}

pub(super) struct Shell {
  /// The shell's execution; `None` on a server's box terminal, where closing the connection
  /// ends the shell.
  pub(super) exec_id: Option<String>,
  pub(super) output: ExecEventStream,
  pub(super) control: mpsc::UnboundedSender<Control>,
  pub(super) failures: mpsc::UnboundedReceiver<Error>,
  writer: tokio::task::JoinHandle<()>,
}

/// Starts the shell as a tty execution and opens its output (before any stdin, so an attach
/// based client writes stdin through the same connection).
pub(super) async fn start_shell(terminal: &Terminal) -> Result<Shell> {
  if terminal.box_terminal {
    return start_box_terminal(terminal).await;
  }
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
          Err(_) => control_timeout(),
        };
        let _ = report.send(error);
        return;
      }
    })
  };
  Ok(Shell {
    exec_id: Some(execution.id),
    output,
    control,
    failures,
    writer,
  })
}

/// A keystroke or resize that the box did not take in time.
fn control_timeout() -> Error {
  Error::Timeout {
    operation: "terminal input".into(),
    after_ms: CONTROL_TIMEOUT.as_millis() as u64,
  }
}

/// A shell on the server's box terminal: its input sender lives in the writer task, so ending
/// that task closes the connection (and the server ends the shell).
async fn start_box_terminal(terminal: &Terminal) -> Result<Shell> {
  let BoxTerminal { output, input } = terminal
    .client
    .open_box_terminal(
      &terminal.box_id,
      &terminal.shell,
      TERM,
      DEFAULT_SIZE.cols,
      DEFAULT_SIZE.rows,
    )
    .await?;
  let (control, mut inbox) = mpsc::unbounded_channel::<Control>();
  let (report, failures) = mpsc::unbounded_channel::<Error>();
  let writer = tokio::spawn(async move {
    while let Some(control) = inbox.recv().await {
      let message = match control {
        Control::Input(data) => TerminalInput::Data(data),
        Control::Resize(size) => TerminalInput::Resize {
          cols: size.cols,
          rows: size.rows,
        },
      };
      match tokio::time::timeout(CONTROL_TIMEOUT, input.send(message)).await {
        Ok(Ok(())) => continue,
        // The connection task is gone; the output reports why.
        Ok(Err(_)) => return,
        Err(_) => {
          let _ = report.send(control_timeout());
          return;
        }
      }
    }
  });
  Ok(Shell {
    exec_id: None,
    output,
    control,
    failures,
    writer,
  })
}

/// Waits (bounded) for the shell's output to end.
async fn shell_ended(shell: &mut Shell, wait: Duration) -> bool {
  tokio::time::timeout(wait, async {
    loop {
      match shell.output.next().await {
        Some(Ok(ExecEvent::Exit(_))) | Some(Err(_)) | None => return,
        Some(Ok(_)) => {}
      }
    }
  })
  .await
  .is_ok()
}

/// Ends a shell whose client is gone: SIGHUP (a terminal hang-up), then SIGKILL, each followed
/// by a bounded wait for its exit. A box terminal's shell ends with its connection.
pub(super) async fn end_shell(terminal: Arc<Terminal>, mut shell: Shell) {
  shell.writer.abort();
  let Some(exec_id) = shell.exec_id.clone() else {
    shell_ended(&mut shell, KILL_WAIT).await;
    return;
  };
  let client = &terminal.client;
  for (signal, wait) in [(1, HANGUP_WAIT), (9, KILL_WAIT)] {
    let _ = tokio::time::timeout(
      SIGNAL_TIMEOUT,
      client.signal_exec(&terminal.box_id, &exec_id, signal),
    )
    .await;
    if shell_ended(&mut shell, wait).await {
      return;
    }
  }
}
