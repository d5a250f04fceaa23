//! Host-side staging of file transfers: the SDK copies host paths in and out of boxes
//! (`copy_in` / `copy_out`), so an uploaded tar is unpacked into a private temp directory and a
//! download is packed from one. Names are never interpreted: no shell, no quoting.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::StreamExt;

use crate::client::ByteStream;
use crate::error::{Error, Result};

/// Read size when streaming staged files back (downloads, exports).
const CHUNK: usize = 256 * 1024;

fn io_err(what: &str) -> impl Fn(std::io::Error) -> Error + '_ {
  move |e| Error::Internal(format!("{what}: {e}"))
}

pub fn staging_dir(prefix: &str) -> Result<tempfile::TempDir> {
  tempfile::Builder::new()
    .prefix(prefix)
    .tempdir()
    .map_err(io_err("cannot create a staging directory"))
}

/// Writes `stream` to `path` as it arrives.
pub async fn save_stream(mut stream: ByteStream, path: &Path) -> Result<u64> {
  let mut file = File::create(path).map_err(io_err("cannot create a staging file"))?;
  let mut total = 0;
  while let Some(chunk) = stream.next().await {
    let chunk = chunk?;
    file
      .write_all(&chunk)
      .map_err(io_err("cannot write a staging file"))?;
    total += chunk.len() as u64;
  }
  file.flush().map_err(io_err("cannot write a staging file"))?;
  Ok(total)
}

/// Unpacks a plain or gzip-compressed tar into `dest` (created). Entries that would escape
/// `dest` (`..`, absolute paths through links) are refused by the tar crate.
pub fn unpack(archive: &Path, dest: &Path) -> Result<()> {
  std::fs::create_dir_all(dest).map_err(io_err("cannot create the staging directory"))?;
  let mut file = BufReader::new(File::open(archive).map_err(io_err("cannot open the staged archive"))?);
  let mut magic = [0u8; 2];
  let n = file
    .read(&mut magic)
    .map_err(io_err("cannot read the staged archive"))?;
  let file = BufReader::new(File::open(archive).map_err(io_err("cannot open the staged archive"))?);
  let reader: Box<dyn Read> = if crate::archive::is_gzip(&magic[..n]) {
    Box::new(flate2::read::GzDecoder::new(file))
  } else {
    Box::new(file)
  };
  let mut tar = tar::Archive::new(reader);
  tar.set_preserve_permissions(true);
  tar.set_preserve_mtime(true);
  tar.set_overwrite(true);
  tar.unpack(dest).map_err(|e| Error::InvalidArgument {
    argument: "tarData".into(),
    problem: format!("is not a readable tar archive (plain or gzip): {e}"),
  })
}

/// Packs `src` (a file or directory) into a plain tar at `archive` whose single top-level
/// entry is named `name`; symlinks are stored as links.
pub fn pack(src: &Path, name: &str, archive: &Path) -> Result<()> {
  let file = File::create(archive).map_err(io_err("cannot create the staged archive"))?;
  let mut builder = tar::Builder::new(std::io::BufWriter::new(file));
  builder.follow_symlinks(false);
  let meta = std::fs::symlink_metadata(src).map_err(io_err("cannot read the downloaded files"))?;
  let result = if meta.is_dir() {
    builder.append_dir_all(name, src)
  } else {
    builder.append_path_with_name(src, name)
  };
  result.map_err(io_err("cannot pack the downloaded files"))?;
  builder
    .into_inner()
    .and_then(|mut w| w.flush())
    .map_err(io_err("cannot write the staged archive"))
}

/// The single entry `copy_out` created in `dir`.
pub fn single_entry(dir: &Path) -> Result<PathBuf> {
  let mut entries = std::fs::read_dir(dir).map_err(io_err("cannot read the download staging directory"))?;
  match (entries.next(), entries.next()) {
    (Some(Ok(entry)), None) => Ok(entry.path()),
    (None, _) => Err(Error::Internal("copy_out produced nothing".into())),
    _ => Err(Error::Internal("copy_out produced more than one entry".into())),
  }
}

/// Streams `path` in chunks; `keep` (the staging directory) lives until the stream is dropped.
pub fn file_stream<K: Send + 'static>(path: PathBuf, keep: K) -> Result<ByteStream> {
  let file = File::open(&path).map_err(io_err("cannot open the staged file"))?;
  let stream = futures_util::stream::unfold(Some((file, keep)), |state| async move {
    let (mut file, keep) = state?;
    let mut buf = vec![0u8; CHUNK];
    match file.read(&mut buf) {
      Ok(0) => None,
      Ok(n) => {
        buf.truncate(n);
        Some((Ok(Bytes::from(buf)), Some((file, keep))))
      }
      Err(e) => Some((
        Err(Error::Internal(format!("cannot read the staged file: {e}"))),
        None,
      )),
    }
  });
  Ok(Box::pin(stream))
}

/// The name a download's top-level entry gets: the last component of the box path.
pub fn entry_name(box_path: &str) -> String {
  box_path
    .trim_end_matches('/')
    .rsplit('/')
    .next()
    .filter(|s| !s.is_empty())
    .unwrap_or(".")
    .to_string()
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn entry_name_is_the_last_component() {
    assert_eq!(entry_name("/data/dir/"), "dir");
    assert_eq!(entry_name("/data/it's $(x).txt"), "it's $(x).txt");
    assert_eq!(entry_name("/"), ".");
  }

  #[test]
  fn pack_then_unpack_round_trips_hostile_names_gzip_or_not() {
    let dir = staging_dir("t-").unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("sub dir")).unwrap();
    std::fs::write(src.join("sub dir").join("it's \"$(rm -rf x)\" `y`.txt"), b"hi").unwrap();
    std::os::unix::fs::symlink("sub dir", src.join("link")).unwrap();
    let tar_path = dir.path().join("a.tar");
    pack(&src, "top", &tar_path).unwrap();
    let out = dir.path().join("out");
    unpack(&tar_path, &out).unwrap();
    assert_eq!(
      std::fs::read(out.join("top/sub dir/it's \"$(rm -rf x)\" `y`.txt")).unwrap(),
      b"hi"
    );
    assert!(std::fs::symlink_metadata(out.join("top/link"))
      .unwrap()
      .file_type()
      .is_symlink());

    let gz = dir.path().join("a.tar.gz");
    let mut enc = flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::fast());
    enc.write_all(&std::fs::read(&tar_path).unwrap()).unwrap();
    enc.finish().unwrap();
    let out2 = dir.path().join("out2");
    unpack(&gz, &out2).unwrap();
    assert_eq!(
      std::fs::read(out2.join("top/sub dir/it's \"$(rm -rf x)\" `y`.txt")).unwrap(),
      b"hi"
    );
  }

  #[test]
  fn unpack_rejects_garbage() {
    let dir = staging_dir("t-").unwrap();
    let bad = dir.path().join("bad");
    std::fs::write(&bad, vec![7u8; 1024]).unwrap();
    assert_eq!(
      unpack(&bad, &dir.path().join("o")).unwrap_err().code(),
      "invalid_argument"
    );
  }
}
