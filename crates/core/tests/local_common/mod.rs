//! A small harness for the interpreter tests (`harness = false`: one embedded Python per
//! process, so each test binary owns one interpreter scenario). Runs async tests in order on
//! one tokio runtime, prints libtest-like lines and a closing `N passed, N failed` line.
#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, Instant};

use boxlite_core::client::ByteStream;
use boxlite_core::{Error, Result};
use bytes::Bytes;
use futures_util::StreamExt;

pub type TestFn = fn() -> Pin<Box<dyn Future<Output = Result<(), String>>>>;

/// Per-test time limit: a hang is a failure, not a stuck CI run.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(120);

pub fn run(tests: &[(&str, TestFn)]) {
  let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
  let rt = tokio::runtime::Builder::new_current_thread()
    .enable_all()
    .build()
    .unwrap();
  let (mut passed, mut failed, mut skipped) = (0, 0, 0);
  let selected: Vec<_> = tests
    .iter()
    .filter(|(n, _)| filter.is_empty() || filter.iter().any(|f| n.contains(f.as_str())))
    .collect();
  println!("\nrunning {} tests", selected.len());
  for (name, test) in selected {
    let started = Instant::now();
    let outcome = rt.block_on(async { tokio::time::timeout(TEST_TIMEOUT, test()).await });
    match outcome {
      Ok(Ok(())) => {
        passed += 1;
        println!("test {name} ... ok ({} ms)", started.elapsed().as_millis());
      }
      Ok(Err(why)) if why.starts_with("SKIP") => {
        skipped += 1;
        println!("test {name} ... skipped: {why}");
      }
      Ok(Err(why)) => {
        failed += 1;
        println!("test {name} ... FAILED\n    {why}");
      }
      Err(_) => {
        failed += 1;
        println!("test {name} ... FAILED (timed out after {:?})", TEST_TIMEOUT);
      }
    }
  }
  // Homes hold box disks (the real SDK's are hundreds of MB): remove them unless asked to keep.
  if std::env::var_os("BOXLITE_TEST_KEEP_HOMES").is_none() {
    for home in HOMES.lock().unwrap().drain(..) {
      let _ = std::fs::remove_dir_all(home);
    }
  }
  let status = if failed == 0 { "ok" } else { "FAILED" };
  println!("\ntest result: {status}. {passed} passed; {failed} failed; {skipped} ignored; 0 measured; 0 filtered out\n");
  // The embedded interpreter's threads are detached: leave without waiting for them.
  std::process::exit(if failed == 0 { 0 } else { 1 });
}

/// `assert!` for tests returning `Result<(), String>`.
#[macro_export]
macro_rules! check {
  ($cond:expr) => { if !$cond { return Err(format!("{}:{}: check failed: {}", file!(), line!(), stringify!($cond))); } };
  ($cond:expr, $($fmt:tt)+) => { if !$cond { return Err(format!("{}:{}: {}", file!(), line!(), format!($($fmt)+))); } };
}

pub trait OrFail<T> {
  fn or_fail(self, what: &str) -> Result<T, String>;
}

impl<T> OrFail<T> for Result<T, Error> {
  fn or_fail(self, what: &str) -> Result<T, String> {
    self.map_err(|e| format!("{what}: [{}] {e}", e.code()))
  }
}

pub fn repo_root() -> PathBuf {
  PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    .join("../..")
    .canonicalize()
    .unwrap()
}

pub fn fixtures() -> PathBuf {
  PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

static HOMES: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// A fresh boxliteHome under the system temp dir, removed when the run ends.
pub fn temp_home(tag: &str) -> PathBuf {
  let dir = std::env::temp_dir().join(format!(
    "boxlite-test-{tag}-{}-{}",
    std::process::id(),
    rand_suffix()
  ));
  std::fs::create_dir_all(&dir).unwrap();
  HOMES.lock().unwrap().push(dir.clone());
  dir
}

pub fn rand_suffix() -> u64 {
  use std::hash::{BuildHasher, Hasher};
  let mut h = std::collections::hash_map::RandomState::new().build_hasher();
  h.write_u64(Instant::now().elapsed().as_nanos() as u64);
  h.finish() % 1_000_000
}

pub fn bytes_stream(chunks: Vec<Vec<u8>>) -> ByteStream {
  Box::pin(futures_util::stream::iter(
    chunks.into_iter().map(|c| Ok(Bytes::from(c))),
  ))
}

pub async fn collect(mut s: ByteStream) -> Result<Vec<u8>, String> {
  let mut out = Vec::new();
  while let Some(c) = s.next().await {
    out.extend_from_slice(&c.map_err(|e| format!("stream: {e}"))?);
  }
  Ok(out)
}

/// A tar (plain) with the given (path, contents) files.
pub fn make_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
  let mut b = tar::Builder::new(Vec::new());
  for (path, data) in files {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, path, *data).unwrap();
  }
  b.into_inner().unwrap()
}

/// (path, contents) of the regular files in a tar.
pub fn read_tar(data: &[u8]) -> Vec<(String, Vec<u8>)> {
  let mut out = Vec::new();
  let mut a = tar::Archive::new(data);
  for e in a.entries().unwrap() {
    let mut e = e.unwrap();
    if e.header().entry_type().is_file() {
      let mut buf = Vec::new();
      std::io::Read::read_to_end(&mut e, &mut buf).unwrap();
      out.push((e.path().unwrap().to_string_lossy().into_owned(), buf));
    }
  }
  out
}
