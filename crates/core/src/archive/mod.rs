//! Streaming tar and gzip transforms that give every backend sandbank's file semantics: a
//! single-file tar for `writeFile`, gunzip of uploaded archives, and rewriting a server's
//! download (top level = basename of the path, maybe `./`-prefixed) into "the contents of the
//! directory" as `tar czf - -C dir .` would. The `tar`/`flate2` work runs on blocking threads
//! bridged to async streams, so nothing is ever held whole in memory.
//!
//! `gzip.rs` holds the gzip writer of downloads, `blocking.rs` the bridge that runs a synchronous
//! `Read` → `Write` transform on a blocking thread between two async byte streams.

use std::io;
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};

use crate::client::ByteStream;
use crate::error::Result;

mod blocking;
mod gzip;
#[cfg(test)]
mod tests;

use blocking::blocking_transform;
use gzip::GzipWriter;

const BLOCK: usize = 512;

/// A tar with one regular file `name` holding `data`, streamed without copying `data`.
pub fn single_file_tar(name: &str, data: Bytes, mode: u32) -> Result<ByteStream> {
  let mut head = Vec::with_capacity(3 * BLOCK);
  if name.len() > 100 {
    // GNU long-name extension: a `././@LongLink` entry carrying the full name.
    let mut long = tar::Header::new_gnu();
    long.set_entry_type(tar::EntryType::GNULongName);
    long.set_size(name.len() as u64 + 1);
    long.set_mode(0o644);
    long.as_gnu_mut().expect("gnu header").name[..13].copy_from_slice(b"././@LongLink");
    long.set_cksum();
    head.extend_from_slice(long.as_bytes());
    head.extend_from_slice(name.as_bytes());
    head.push(0);
    pad_to_block(&mut head);
  }
  let mut header = tar::Header::new_gnu();
  let short = &name.as_bytes()[..name.len().min(100)];
  header.as_gnu_mut().expect("gnu header").name[..short.len()].copy_from_slice(short);
  header.set_entry_type(tar::EntryType::Regular);
  header.set_size(data.len() as u64);
  header.set_mode(mode);
  header.set_mtime(
    std::time::SystemTime::now()
      .duration_since(std::time::UNIX_EPOCH)
      .map_or(0, |d| d.as_secs()),
  );
  header.set_cksum();
  head.extend_from_slice(header.as_bytes());
  let padding = (BLOCK - data.len() % BLOCK) % BLOCK;
  let tail = Bytes::from(vec![0u8; padding + 2 * BLOCK]);
  let parts = vec![Bytes::from(head), data, tail];
  Ok(Box::pin(futures_util::stream::iter(
    parts.into_iter().filter(|b| !b.is_empty()).map(Ok),
  )))
}

fn pad_to_block(buffer: &mut Vec<u8>) {
  let rem = buffer.len() % BLOCK;
  if rem != 0 {
    buffer.resize(buffer.len() + BLOCK - rem, 0);
  }
}

/// Whether `head` starts with the gzip magic bytes (the one test of "is this gzip" everywhere).
pub fn is_gzip(head: &[u8]) -> bool {
  head.starts_with(&[0x1f, 0x8b])
}

/// Whether a stream starts with the gzip magic; returns the stream with the peeked bytes put back.
pub async fn sniff_gzip(mut stream: ByteStream) -> Result<(bool, ByteStream)> {
  let mut head = Vec::new();
  while head.len() < 2 {
    match stream.next().await {
      Some(chunk) => head.extend_from_slice(&chunk?),
      None => break,
    }
  }
  let gzip = is_gzip(&head);
  let first = futures_util::stream::iter(std::iter::once(Ok(Bytes::from(head))));
  Ok((gzip, Box::pin(first.chain(stream))))
}

/// The archive as a plain tar: gzip input is decompressed on the fly, plain tar passes through.
pub async fn plain_tar(stream: ByteStream) -> Result<ByteStream> {
  let (gzip, stream) = sniff_gzip(stream).await?;
  if !gzip {
    return Ok(stream);
  }
  Ok(blocking_transform(
    stream,
    "decompressing the gzip archive",
    |input, output| {
      let mut decoder = flate2::read::MultiGzDecoder::new(input);
      io::copy(&mut decoder, output).map(drop)
    },
  ))
}

/// Rewrites a tar downloaded for `src_path` into a gzip tar of the directory's contents, as
/// `tar czf - -C src_path .` makes it. Servers wrap the contents in a
/// top-level directory named after `basename(src_path)` (docker-cp style), sometimes `./`-prefixed;
/// that level is removed. Modes, symlinks, hard links and empty directories are kept. (The tar
/// crate drops the `./` of entry names; extraction is the same.)
pub fn contents_archive(tar_stream: ByteStream, src_path: &str) -> ByteStream {
  let top = Path::new(src_path)
    .file_name()
    .map(|n| n.to_string_lossy().into_owned());
  blocking_transform(tar_stream, "re-archiving the directory", move |input, output| {
    let mut builder = tar::Builder::new(GzipWriter::new(output));
    builder.mode(tar::HeaderMode::Complete);
    let mut archive = tar::Archive::new(input);
    let mut strip: Option<Option<PathBuf>> = None;
    for entry in archive.entries()? {
      let mut entry = entry?;
      let path = normalized(&entry.path()?);
      if path.as_os_str().is_empty() {
        // `boxlite serve` archives start with a `./` entry above the wrapper: not content.
        continue;
      }
      // The first entry decides whether a wrapping top-level directory is present.
      let strip_prefix =
        strip.get_or_insert_with(|| wrapper_dir(&path, entry.header().entry_type(), top.as_deref()));
      let relative = match strip_prefix {
        Some(prefix) => match path.strip_prefix(&*prefix) {
          Ok(rest) => rest.to_path_buf(),
          Err(_) => path.clone(),
        },
        None => path.clone(),
      };
      let name = if relative.as_os_str().is_empty() {
        PathBuf::from(".")
      } else {
        Path::new(".").join(&relative)
      };
      let mut header = entry.header().clone();
      match header.entry_type() {
        tar::EntryType::Symlink | tar::EntryType::Link => {
          let target = entry.link_name()?.map(|t| t.into_owned()).unwrap_or_default();
          let target = if header.entry_type() == tar::EntryType::Link {
            // Hard-link targets are archive paths: rewrite them like entry names.
            let t = normalized(&target);
            let t = strip_prefix
              .as_ref()
              .and_then(|p| t.strip_prefix(p).ok().map(Path::to_path_buf))
              .unwrap_or(t);
            Path::new(".").join(t)
          } else {
            target
          };
          builder.append_link(&mut header, &name, &target)?;
        }
        tar::EntryType::Directory => {
          let dir_name = if name == Path::new(".") {
            PathBuf::from("./")
          } else {
            name
          };
          builder.append_data(&mut header, dir_name, io::empty())?;
        }
        _ => builder.append_data(&mut header, &name, &mut entry)?,
      }
    }
    builder.into_inner()?.finish()?;
    Ok(())
  })
}

/// The wrapping directory to strip, decided from the first entry of a download: a directory
/// named `basename(src)` (or any single-component directory when `src` is `/`).
fn wrapper_dir(first: &Path, kind: tar::EntryType, top: Option<&str>) -> Option<PathBuf> {
  if kind != tar::EntryType::Directory || first.components().count() != 1 {
    return None;
  }
  match top {
    Some(top) if first == Path::new(top) => Some(first.to_path_buf()),
    None => Some(first.to_path_buf()),
    Some(_) => None,
  }
}

/// `./a/b` and `a/b/` both become `a/b`; `.` becomes the empty path.
fn normalized(path: &Path) -> PathBuf {
  path
    .components()
    .filter(|c| matches!(c, Component::Normal(_)))
    .collect()
}

/// The content of the single regular file of a downloaded tar (readFile). A directory or an
/// archive without a file is an error naming `path`.
pub fn single_file_content(tar_stream: ByteStream, path: &str) -> ByteStream {
  let path = path.to_string();
  blocking_transform(tar_stream, "reading the file", move |input, output| {
    let mut archive = tar::Archive::new(input);
    for entry in archive.entries()? {
      let mut entry = entry?;
      if normalized(&entry.path()?).as_os_str().is_empty() {
        // The `./` entry some servers put first.
        continue;
      }
      match entry.header().entry_type() {
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
          io::copy(&mut entry, output)?;
          return Ok(());
        }
        tar::EntryType::Directory => {
          return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("'{path}' is a directory, not a file"),
          ))
        }
        _ => continue,
      }
    }
    Err(io::Error::new(
      io::ErrorKind::NotFound,
      format!("'{path}' is not a regular file in the box"),
    ))
  })
}

/// Collects a byte stream (for small payloads only: a file read for readFile's `Uint8Array`).
pub async fn collect(stream: ByteStream) -> Result<Vec<u8>> {
  stream
    .try_fold(Vec::new(), |mut all, chunk| async move {
      all.extend_from_slice(&chunk);
      Ok(all)
    })
    .await
}
