//! Runs a synchronous `Read` → `Write` transform (the `tar`/`flate2` work) on a blocking thread
//! between two async byte streams, with backpressure, cancellation (a dropped reader stops the
//! transform) and errors carried through unchanged.

use std::io::{self, Read, Write};

use bytes::Bytes;
use futures_util::TryStreamExt;
use tokio::sync::mpsc;
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::client::ByteStream;
use crate::error::{Error, Result};

/// Size of the chunks the blocking transforms hand back to async code.
const CHUNK_BYTES: usize = 256 * 1024;
/// Chunks in flight between a blocking transform and its reader (backpressure).
const CHANNEL_DEPTH: usize = 8;

/// Runs a synchronous `Read` → `Write` transform on a blocking thread between two async streams.
/// An error in the input stream or the transform ends the output with an error saying `doing`.
pub(super) fn blocking_transform<F>(input: ByteStream, doing: &'static str, transform: F) -> ByteStream
where
  F: FnOnce(&mut dyn Read, &mut dyn Write) -> io::Result<()> + Send + 'static,
{
  let (tx, rx) = mpsc::channel::<Result<Bytes>>(CHANNEL_DEPTH);
  let reader = StreamReader::new(input.map_err(|e| io::Error::other(CarriedError(e))));
  let mut bridge = SyncIoBridge::new(reader);
  let error_tx = tx.clone();
  tokio::task::spawn_blocking(move || {
    let mut writer = ChannelWriter {
      tx,
      buffer: Vec::with_capacity(CHUNK_BYTES),
    };
    let outcome = transform(&mut bridge, &mut writer).and_then(|()| writer.flush_buffer());
    if let Err(error) = outcome {
      if error.kind() != io::ErrorKind::BrokenPipe {
        let _ = error_tx.blocking_send(Err(from_io(error, doing)));
      }
    }
  });
  Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
    rx.recv().await.map(|item| (item, rx))
  }))
}

/// Carries a core error through `io::Error` so it comes out unchanged on the other side.
#[derive(Debug)]
struct CarriedError(Error);

impl std::fmt::Display for CarriedError {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    self.0.fmt(f)
  }
}

impl std::error::Error for CarriedError {}

fn from_io(error: io::Error, doing: &str) -> Error {
  if let Some(carried) = error
    .get_ref()
    .and_then(|inner| inner.downcast_ref::<CarriedError>())
  {
    return carried.0.clone();
  }
  match error.kind() {
    io::ErrorKind::NotFound | io::ErrorKind::InvalidInput => Error::InvalidArgument {
      argument: "path".into(),
      problem: error.to_string(),
    },
    _ => Error::Protocol {
      method: "archive".into(),
      path: doing.into(),
      message: error.to_string(),
    },
  }
}

/// A `Write` that hands full chunks to an async reader; fails with `BrokenPipe` once the reader
/// is gone (the JS stream was cancelled), which stops the transform.
struct ChannelWriter {
  tx: mpsc::Sender<Result<Bytes>>,
  buffer: Vec<u8>,
}

impl ChannelWriter {
  fn flush_buffer(&mut self) -> io::Result<()> {
    if self.buffer.is_empty() {
      return Ok(());
    }
    let chunk = Bytes::from(std::mem::replace(
      &mut self.buffer,
      Vec::with_capacity(CHUNK_BYTES),
    ));
    self
      .tx
      .blocking_send(Ok(chunk))
      .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
  }
}

impl Write for ChannelWriter {
  fn write(&mut self, data: &[u8]) -> io::Result<usize> {
    self.buffer.extend_from_slice(data);
    if self.buffer.len() >= CHUNK_BYTES {
      self.flush_buffer()?;
    }
    Ok(data.len())
  }

  fn flush(&mut self) -> io::Result<()> {
    Ok(())
  }
}
