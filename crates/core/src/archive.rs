//! Streaming tar and gzip transforms that give every backend sandbank's file semantics: a
//! single-file tar for `writeFile`, gunzip of uploaded archives, and rewriting a server's
//! download (top level = basename of the path, maybe `./`-prefixed) into "the contents of the
//! directory" as `tar czf - -C dir .` would. The `tar`/`flate2` work runs on blocking threads
//! bridged to async streams, so nothing is ever held whole in memory.

use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use tokio::sync::mpsc;
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::client::ByteStream;
use crate::error::{Error, Result};

/// Size of the chunks the blocking transforms hand back to async code.
const CHUNK_BYTES: usize = 256 * 1024;
/// Chunks in flight between a blocking transform and its reader (backpressure).
const CHANNEL_DEPTH: usize = 8;
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

/// Input bytes compressed (or stored) as one unit by `GzipWriter`.
const GZIP_PIECE: usize = 64 * 1024;
/// After a piece that deflate shrank by less than 10 %, this many pieces are stored as they are.
const GZIP_STORE_RUN: u32 = 16;

/// A gzip writer for data of unknown kind (a directory may hold text or media): deflate at the
/// fastest level, but pieces that do not compress are stored instead of compressed, which
/// costs a copy where deflate would burn CPU for nothing (deflate at level 1 gains nothing on
/// random or already-compressed bytes and is ~20× slower than a copy). Every piece ends with a
/// full flush, so the deflate stream is byte-aligned and refers to nothing before it; stored
/// blocks can then go in between (RFC 1951 §3.2.4) and the result is one ordinary gzip member.
struct GzipWriter<W: Write> {
  out: W,
  deflate: flate2::Compress,
  crc: flate2::Crc,
  piece: Vec<u8>,
  scratch: Vec<u8>,
  /// Pieces still to store before deflate is tried again.
  store: u32,
}

impl<W: Write> GzipWriter<W> {
  fn new(out: W) -> Self {
    let mut scratch = Vec::with_capacity(2 * GZIP_PIECE);
    // The header (no name, no time, OS unknown) goes out with the first piece.
    scratch.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
    GzipWriter {
      out,
      deflate: flate2::Compress::new(flate2::Compression::fast(), false),
      crc: flate2::Crc::new(),
      piece: Vec::with_capacity(GZIP_PIECE),
      scratch,
      store: 0,
    }
  }

  /// Runs deflate over `input` with `flush` until all of it is consumed and flushed.
  fn run_deflate(&mut self, mut input: &[u8], flush: flate2::FlushCompress) -> io::Result<()> {
    loop {
      self.scratch.reserve(input.len() / 2 + 4096);
      let before = self.deflate.total_in();
      let status = self
        .deflate
        .compress_vec(input, &mut self.scratch, flush)
        .map_err(io::Error::other)?;
      input = &input[(self.deflate.total_in() - before) as usize..];
      let room_left = self.scratch.len() < self.scratch.capacity();
      let finishing = matches!(flush, flate2::FlushCompress::Finish);
      if status == flate2::Status::StreamEnd || (!finishing && input.is_empty() && room_left) {
        return Ok(());
      }
    }
  }

  fn write_piece(&mut self) -> io::Result<()> {
    if self.piece.is_empty() {
      return Ok(());
    }
    let piece = std::mem::take(&mut self.piece);
    self.crc.update(&piece);
    if self.store > 0 {
      self.store -= 1;
      // Non-final stored blocks (at most 65535 bytes each): BFINAL=0, BTYPE=00, padding to
      // the byte, LEN, NLEN, the bytes.
      for block in piece.chunks(u16::MAX as usize) {
        let len = block.len() as u16;
        self.scratch.push(0);
        self.scratch.extend_from_slice(&len.to_le_bytes());
        self.scratch.extend_from_slice(&(!len).to_le_bytes());
        self.scratch.extend_from_slice(block);
      }
    } else {
      let start = self.scratch.len();
      self.run_deflate(&piece, flate2::FlushCompress::Full)?;
      if (self.scratch.len() - start) * 10 > piece.len() * 9 {
        self.store = GZIP_STORE_RUN;
      }
    }
    self.out.write_all(&self.scratch)?;
    self.scratch.clear();
    self.piece = piece;
    self.piece.clear();
    Ok(())
  }

  /// Ends the gzip member (final empty block, CRC-32, size mod 2^32) and returns the writer.
  fn finish(mut self) -> io::Result<W> {
    self.write_piece()?;
    self.run_deflate(&[], flate2::FlushCompress::Finish)?;
    self.scratch.extend_from_slice(&self.crc.sum().to_le_bytes());
    self.scratch.extend_from_slice(&self.crc.amount().to_le_bytes());
    self.out.write_all(&self.scratch)?;
    self.out.flush()?;
    Ok(self.out)
  }
}

impl<W: Write> Write for GzipWriter<W> {
  fn write(&mut self, data: &[u8]) -> io::Result<usize> {
    let n = data.len().min(GZIP_PIECE - self.piece.len());
    self.piece.extend_from_slice(&data[..n]);
    if self.piece.len() == GZIP_PIECE {
      self.write_piece()?;
    }
    Ok(n)
  }

  fn flush(&mut self) -> io::Result<()> {
    Ok(())
  }
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

/// Decodes base64 text arriving in arbitrary chunks (whitespace ignored): binary data carried
/// through a text-only exec stream.
pub fn decode_base64_stream(text: ByteStream) -> ByteStream {
  use base64::Engine as _;
  let state = (text, Vec::<u8>::new(), false);
  Box::pin(futures_util::stream::unfold(
    state,
    |(mut text, mut pending, done)| async move {
      if done {
        return None;
      }
      loop {
        match text.next().await {
          Some(Ok(chunk)) => {
            pending.extend(chunk.iter().copied().filter(|b| !b.is_ascii_whitespace()));
            let usable = pending.len() / 4 * 4;
            if usable == 0 {
              continue;
            }
            let rest = pending.split_off(usable);
            let decoded = base64::engine::general_purpose::STANDARD.decode(&pending);
            pending = rest;
            return Some((
              decoded.map(Bytes::from).map_err(|e| base64_error(&e)),
              (text, pending, false),
            ));
          }
          Some(Err(error)) => return Some((Err(error), (text, pending, true))),
          None if pending.is_empty() => return None,
          None => {
            let decoded = base64::engine::general_purpose::STANDARD.decode(&pending);
            return Some((
              decoded.map(Bytes::from).map_err(|e| base64_error(&e)),
              (text, Vec::new(), true),
            ));
          }
        }
      }
    },
  ))
}

fn base64_error(error: &base64::DecodeError) -> Error {
  Error::Protocol {
    method: "exec".into(),
    path: "stdout".into(),
    message: format!("invalid base64 output: {error}"),
  }
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

/// Runs a synchronous `Read` → `Write` transform on a blocking thread between two async streams.
/// An error in the input stream or the transform ends the output with an error saying `doing`.
fn blocking_transform<F>(input: ByteStream, doing: &'static str, transform: F) -> ByteStream
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

#[cfg(test)]
mod tests {
  use super::*;

  fn stream_of(chunks: Vec<Vec<u8>>) -> ByteStream {
    Box::pin(futures_util::stream::iter(
      chunks.into_iter().map(|c| Ok(Bytes::from(c))),
    ))
  }

  /// `(path, kind, content, mode, link target)` of each entry.
  type Entry = (String, tar::EntryType, Vec<u8>, u32, Option<String>);

  fn read_entries(tar_bytes: &[u8]) -> Vec<Entry> {
    let mut archive = tar::Archive::new(tar_bytes);
    archive
      .entries()
      .unwrap()
      .map(|e| {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let kind = e.header().entry_type();
        let mode = e.header().mode().unwrap();
        let link = e.link_name().unwrap().map(|l| l.to_string_lossy().into_owned());
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        (path, kind, data, mode, link)
      })
      .collect()
  }

  fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data).read_to_end(&mut out).unwrap();
    out
  }

  /// A docker-cp-style download of directory `top`: `top/`, `top/a.txt`, `top/sub/`,
  /// `top/sub/link -> ../a.txt`, `top/empty/`; `dot_prefix` makes it `boxlite serve`'s layout
  /// (a `./` entry first, then `./top/…`).
  fn server_download(top: &str, dot_prefix: bool) -> Vec<u8> {
    let p = |rel: &str| {
      if dot_prefix {
        format!("./{top}{rel}")
      } else {
        format!("{top}{rel}")
      }
    };
    let mut builder = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    if dot_prefix {
      dot_entry(&mut builder);
    }
    builder
      .append_data(&mut dir.clone(), p("/"), io::empty())
      .unwrap();
    let mut file = tar::Header::new_gnu();
    file.set_mode(0o750);
    file.set_size(5);
    builder
      .append_data(&mut file, p("/a.txt"), &b"hello"[..])
      .unwrap();
    builder
      .append_data(&mut dir.clone(), p("/sub/"), io::empty())
      .unwrap();
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    link.set_mode(0o777);
    builder
      .append_link(&mut link, p("/sub/link"), "../a.txt")
      .unwrap();
    builder
      .append_data(&mut dir.clone(), p("/empty/"), io::empty())
      .unwrap();
    builder.into_inner().unwrap()
  }

  /// A raw `./` directory entry (the tar crate's builder would normalize the name away).
  fn dot_entry(builder: &mut tar::Builder<Vec<u8>>) {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_mode(0o755);
    header.set_size(0);
    header.as_gnu_mut().unwrap().name[..2].copy_from_slice(b"./");
    header.set_cksum();
    builder.append(&header, io::empty()).unwrap();
  }

  #[tokio::test]
  async fn single_file_content_skips_the_dot_entry_of_serve_downloads() {
    let mut builder = tar::Builder::new(Vec::new());
    dot_entry(&mut builder);
    let mut file = tar::Header::new_gnu();
    file.set_size(3);
    file.set_mode(0o644);
    builder.append_data(&mut file, "./name.txt", &b"abc"[..]).unwrap();
    let input = builder.into_inner().unwrap();
    let content = collect(single_file_content(stream_of(vec![input]), "/x/name.txt"))
      .await
      .unwrap();
    assert_eq!(content, b"abc");
  }

  #[tokio::test]
  async fn single_file_tar_holds_exactly_the_bytes_and_mode() {
    let data = Bytes::from((0..=255u8).cycle().take(70_000).collect::<Vec<_>>());
    let tar_bytes = collect(single_file_tar("f.bin", data.clone(), 0o640).unwrap())
      .await
      .unwrap();
    assert_eq!(tar_bytes.len() % 512, 0);
    let entries = read_entries(&tar_bytes);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0, "f.bin");
    assert_eq!(entries[0].2, data.to_vec());
    assert_eq!(entries[0].3, 0o640);
  }

  #[tokio::test]
  async fn single_file_tar_keeps_names_longer_than_100_bytes() {
    let name = format!("{}.txt", "n".repeat(150));
    let tar_bytes = collect(single_file_tar(&name, Bytes::from_static(b"x"), 0o644).unwrap())
      .await
      .unwrap();
    assert_eq!(read_entries(&tar_bytes)[0].0, name);
  }

  #[tokio::test]
  async fn single_file_tar_of_an_empty_file_is_valid() {
    let tar_bytes = collect(single_file_tar("empty", Bytes::new(), 0o644).unwrap())
      .await
      .unwrap();
    let entries = read_entries(&tar_bytes);
    assert_eq!((entries[0].0.as_str(), entries[0].2.len()), ("empty", 0));
  }

  #[tokio::test]
  async fn sniff_gzip_reads_the_magic_and_gives_every_byte_back() {
    for (input, gzip) in [
      (vec![0x1f, 0x8b, 8], true),
      (b"us".to_vec(), false),
      (vec![0x1f], false),
    ] {
      let (found, stream) = sniff_gzip(stream_of(vec![input.clone()])).await.unwrap();
      assert_eq!(found, gzip, "{input:?}");
      assert_eq!(collect(stream).await.unwrap(), input);
    }
  }

  #[tokio::test]
  async fn plain_tar_passes_plain_input_through_and_gunzips_gzip_input() {
    let tar_bytes = server_download("d", false);
    let plain = collect(plain_tar(stream_of(vec![tar_bytes.clone()])).await.unwrap())
      .await
      .unwrap();
    assert_eq!(plain, tar_bytes);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar_bytes).unwrap();
    let gz = gz.finish().unwrap();
    // Split the gzip magic across chunks to exercise the sniffing.
    let chunks = vec![gz[..1].to_vec(), gz[1..10].to_vec(), gz[10..].to_vec()];
    let unzipped = collect(plain_tar(stream_of(chunks)).await.unwrap())
      .await
      .unwrap();
    assert_eq!(unzipped, tar_bytes);
  }

  #[tokio::test]
  async fn contents_archive_strips_the_basename_wrapper_and_keeps_links_modes_and_empty_dirs() {
    for dot in [false, true] {
      let out = collect(contents_archive(
        stream_of(vec![server_download("src", dot)]),
        "/data/src",
      ))
      .await
      .unwrap();
      let entries = read_entries(&gunzip(&out));
      let names: Vec<_> = entries.iter().map(|e| e.0.as_str()).collect();
      // The tar crate writes relative names without `./` (extraction is the same as for
      // `tar czf - -C src .`); the root entry carries the directory's own mode.
      assert_eq!(
        names,
        ["./", "a.txt", "sub", "sub/link", "empty"],
        "dot prefix: {dot}"
      );
      assert_eq!(entries[2].1, tar::EntryType::Directory);
      assert_eq!(entries[1].2, b"hello");
      assert_eq!(entries[1].3, 0o750);
      assert_eq!(entries[3].1, tar::EntryType::Symlink);
      assert_eq!(entries[3].4.as_deref(), Some("../a.txt"));
    }
  }

  fn gzip_of(pieces: &[&[u8]]) -> Vec<u8> {
    let mut writer = GzipWriter::new(Vec::new());
    for piece in pieces {
      writer.write_all(piece).unwrap();
    }
    writer.finish().unwrap()
  }

  /// Bytes no compressor can shrink (xorshift), deterministic.
  fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
      .map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
      })
      .collect()
  }

  #[test]
  fn gzip_writer_round_trips_text_noise_and_mixtures_through_standard_decoders() {
    let text: Vec<u8> = b"hello world, some text\n".repeat(40_000);
    let random = noise(700_000);
    let mixed = [&text[..300_000], &random[..], &text[..], &random[..5]].concat();
    for data in [Vec::new(), b"x".to_vec(), text.clone(), random.clone(), mixed] {
      // Written in odd-sized slices, as the tar builder does.
      let gz = gzip_of(&data.chunks(10_007).collect::<Vec<_>>());
      assert_eq!(gunzip(&gz), data, "GzDecoder, {} bytes", data.len());
      let mut single = Vec::new();
      flate2::read::MultiGzDecoder::new(&gz[..])
        .read_to_end(&mut single)
        .unwrap();
      assert_eq!(single, data);
    }
  }

  #[test]
  fn gzip_writer_compresses_text_and_stores_noise_instead_of_deflating_it() {
    let text: Vec<u8> = b"hello world, some text\n".repeat(40_000);
    assert!(gzip_of(&[&text]).len() < text.len() / 20);
    let random = noise(2 << 20);
    let gz = gzip_of(&[&random]);
    // Stored blocks cost 10 bytes per 64 KiB; deflate output of noise is larger than its input.
    assert!(
      gz.len() < random.len() + random.len() / 1000,
      "{} bytes",
      gz.len()
    );
  }

  #[tokio::test]
  async fn contents_archive_keeps_an_archive_that_is_already_relative() {
    let mut builder = tar::Builder::new(Vec::new());
    let mut file = tar::Header::new_gnu();
    file.set_size(2);
    file.set_mode(0o644);
    builder.append_data(&mut file, "other/x", &b"hi"[..]).unwrap();
    let input = builder.into_inner().unwrap();
    let out = collect(contents_archive(stream_of(vec![input]), "/srv/src"))
      .await
      .unwrap();
    assert_eq!(read_entries(&gunzip(&out))[0].0, "other/x");
  }

  #[tokio::test]
  async fn contents_archive_reports_a_truncated_download() {
    let mut input = server_download("src", false);
    input.truncate(700);
    let err = collect(contents_archive(stream_of(vec![input]), "/src"))
      .await
      .unwrap_err();
    assert_eq!(err.code(), "protocol", "{err}");
  }

  #[tokio::test]
  async fn single_file_content_streams_the_file_and_refuses_directories() {
    let tar_bytes = collect(single_file_tar("a.txt", Bytes::from_static(b"payload"), 0o644).unwrap())
      .await
      .unwrap();
    let content = collect(single_file_content(stream_of(vec![tar_bytes]), "/x/a.txt"))
      .await
      .unwrap();
    assert_eq!(content, b"payload");
    let err = collect(single_file_content(
      stream_of(vec![server_download("d", false)]),
      "/d",
    ))
    .await
    .unwrap_err();
    assert!(err.to_string().contains("'/d' is a directory"), "{err}");
  }

  #[tokio::test]
  async fn input_stream_errors_come_out_unchanged() {
    let failing: ByteStream = Box::pin(futures_util::stream::iter(vec![
      Ok(Bytes::from_static(b"\0\0")),
      Err(Error::Transport {
        method: "GET".into(),
        path: "/files".into(),
        message: "reset".into(),
      }),
    ]));
    let err = collect(contents_archive(failing, "/src")).await.unwrap_err();
    assert_eq!(err.code(), "transport");
  }

  #[tokio::test]
  async fn base64_stream_decodes_across_arbitrary_chunk_boundaries() {
    use base64::Engine as _;
    let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let text = base64::engine::general_purpose::STANDARD.encode(&data);
    let wrapped: String = text
      .as_bytes()
      .chunks(76)
      .map(|l| format!("{}\n", String::from_utf8_lossy(l)))
      .collect();
    let chunks: Vec<Vec<u8>> = wrapped.as_bytes().chunks(13).map(<[u8]>::to_vec).collect();
    assert_eq!(
      collect(decode_base64_stream(stream_of(chunks))).await.unwrap(),
      data
    );
  }
}
