//! Tar upload for the current BoxLite dialect through an exec's stdin. `boxlite serve`'s file
//! endpoint buffers the body under axum's 2 MiB cap, takes plain tars only and nests the
//! archive under `extracted/` when the target exists (see `docs/dialects.md`); piping the archive
//! into `tar -x[z]f - -C <path>` over the attach socket has no size limit, takes gzip, extracts
//! exactly into `path` and also reaches tmpfs mounts.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::time::Instant;

use super::events::collect;
use super::exec::Executor;
use super::request::{Route, Spec};
use super::{wire, ws};
use crate::client::{ByteStream, ExecEvent, ExecRequest};
use crate::error::{Error, Result};

/// Stdin frames stay well below WebSocket servers' message limits (aiohttp 4 MiB, axum's
/// tungstenite 16 MiB per frame); smaller frames cost throughput (256 KiB: half as fast).
const STDIN_FRAME_BYTES: usize = 1024 * 1024;

/// The attach stream's own silence limit during an upload; the real one is enforced by
/// `watch_silence` from frames in both directions.
const UPLOAD_SILENCE_CAP: Duration = Duration::from_secs(24 * 3600);

/// Sends one frame, failing when the server stops reading for `idle`.
async fn send_within(
  sink: &mut ws::WsSink,
  frame: tokio_tungstenite::tungstenite::Message,
  idle: Duration,
  spec: &Spec,
) -> Result<()> {
  match tokio::time::timeout(idle, ws::send(sink, vec![frame], spec)).await {
    Ok(result) => result,
    Err(_) => Err(Error::Transport {
      method: spec.method.to_string(),
      path: spec.path.clone(),
      message: format!("the server stopped reading the upload for {} s", idle.as_secs()),
    }),
  }
}

/// `events`, ending with a transport error once neither a frame came in nor an upload write
/// went out (`progress`) for `idle`.
fn watch_silence(
  events: impl futures_core::Stream<Item = Result<ExecEvent>> + Send + 'static,
  progress: Arc<Mutex<Instant>>,
  idle: Duration,
  spec: &Spec,
) -> ByteEvents {
  let (method, path) = (spec.method.to_string(), spec.path.clone());
  Box::pin(futures_util::stream::unfold(
    (Box::pin(events), progress, false),
    move |(mut events, progress, done)| {
      let (method, path) = (method.clone(), path.clone());
      async move {
        if done {
          return None;
        }
        loop {
          let last = *progress.lock().unwrap_or_else(|p| p.into_inner());
          tokio::select! {
            item = events.next() => {
              *progress.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
              return item.map(|item| (item, (events, progress, false)));
            }
            _ = tokio::time::sleep_until(last + idle) => {
              if *progress.lock().unwrap_or_else(|p| p.into_inner()) > last {
                continue;
              }
              let error = Error::Transport {
                method,
                path,
                message: format!("no frame in or out for {} s; the server stopped answering", idle.as_secs()),
              };
              return Some((Err(error), (events, progress, true)));
            }
          }
        }
      }
    },
  ))
}

type ByteEvents = std::pin::Pin<Box<dyn futures_core::Stream<Item = Result<ExecEvent>> + Send>>;

/// The extraction command: the path is an argument, never part of the script.
pub(super) fn extract_command(path: &str, gzip: bool) -> ExecRequest {
  let flags = if gzip { "-xzf" } else { "-xf" };
  let script = format!(r#"mkdir -p -- "$1" && exec tar {flags} - -C "$1""#);
  ExecRequest {
    cmd: vec!["sh".into(), "-c".into(), script, "sh".into(), path.to_string()],
    ..Default::default()
  }
}

/// Unpacks `tar` into `path` by piping it into `tar -x` over an exec's attach socket.
pub(super) async fn upload(
  executor: &Arc<Executor>,
  route: &Route,
  box_id: &str,
  path: &str,
  tar: ByteStream,
) -> Result<()> {
  let (gzip, mut tar) = crate::archive::sniff_gzip(tar).await?;
  let request = extract_command(path, gzip);
  let execution = executor.start(route, box_id, &request).await?;
  let mut guard = executor.kill_on_drop(route, box_id, &execution.id);
  let spec = route.profile().output(route, box_id, &execution.id);
  let (mut sink, source) = executor.attach(&spec).await?;
  let idle = executor.transport.tuning.stream_idle_timeout;
  // While a large archive goes up, the server may send nothing (not even pings, when it is
  // busy feeding `tar`): accepted writes prove the connection alive, so the silence limit
  // counts from the last frame in *or* out.
  let progress = Arc::new(Mutex::new(Instant::now()));
  let events = watch_silence(
    ws::events(source, UPLOAD_SILENCE_CAP, &spec, None),
    progress.clone(),
    idle,
    &spec,
  );
  let send = async {
    while let Some(chunk) = tar.next().await {
      let mut chunk: Bytes = chunk?;
      while !chunk.is_empty() {
        let piece = chunk.split_to(chunk.len().min(STDIN_FRAME_BYTES));
        send_within(&mut sink, ws::stdin_frame(piece), idle, &spec).await?;
        *progress.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
      }
    }
    send_within(&mut sink, ws::stdin_eof_frame(), idle, &spec).await
  };
  let (sent, output) = tokio::join!(send, collect(events));
  drop(sink);
  let output = match output {
    Ok(output) => output,
    Err(error) => return Err(sent.err().unwrap_or(error)),
  };
  guard.disarm();
  match output.exit_code {
    // `tar` stops reading at the end-of-archive blocks, so a write failing after that (the
    // padding of the last record) changes nothing.
    0 => Ok(()),
    // The command's own failure explains a broken stdin better than the write error.
    code => Err(Error::InvalidArgument {
      argument: "path".into(),
      problem: format!(
        "unpacking the archive into '{path}' failed in the box (exit {code}): {}",
        wire::excerpt(output.stderr.trim().as_bytes())
      ),
    }),
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn the_target_path_is_an_argument_and_gzip_picks_the_tar_flags() {
    let plain = extract_command("/root/it's here", false);
    assert_eq!(plain.cmd[0..2], ["sh", "-c"]);
    assert!(plain.cmd[2].contains("tar -xf - -C \"$1\"") && !plain.cmd[2].contains("it's"));
    assert_eq!(plain.cmd[3..], ["sh", "/root/it's here"]);
    assert!(extract_command("/x", true).cmd[2].contains("tar -xzf -"));
  }
}
