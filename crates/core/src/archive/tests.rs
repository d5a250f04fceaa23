//! Unit tests of the tar and gzip transforms.

use std::io::{Read, Write};

use super::*;
use crate::error::Error;

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
