//! Shared helpers of the `rest_*` integration tests: spawn the Python test bed server
//! (`python/testbed`) on a free loopback port, drive its control endpoints (faults, request
//! log, token expiry), and build tar archives without buffering large ones.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use boxlite_core::client::{BoxClient, ByteStream, ExecRequest};
use boxlite_core::config::AdapterConfig;
use boxlite_core::rest::{self, RestClient, Tuning};
use boxlite_core::RemoteConfig;
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

pub const READY: &str = "BOXLITE_TESTBED_READY";

fn testbed_dir() -> PathBuf {
  match std::env::var_os("BOXLITE_TESTBED_DIR") {
    Some(dir) => PathBuf::from(dir),
    None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../python/testbed"),
  }
}

fn python() -> PathBuf {
  match std::env::var_os("BOXLITE_TESTBED_PYTHON") {
    Some(p) => PathBuf::from(p),
    None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../python/testbed/.venv/bin/python"),
  }
}

pub struct Testbed {
  child: Child,
  pub url: String,
  pub info: Value,
  http: reqwest::Client,
}

impl Testbed {
  /// Starts a server with `args` (`--dialect …`, `--auth …`, …). A missing test bed fails the
  /// test (never a silent pass): `python/testbed/setup.sh` installs it, `scripts/test.sh` runs it.
  pub async fn start(args: &[&str]) -> Testbed {
    let python = python();
    assert!(
      python.exists() && testbed_dir().join("boxlite_testbed/server").exists(),
      "the test bed is not installed ({} missing): run python/testbed/setup.sh (scripts/test.sh does)",
      python.display()
    );
    let mut command = Command::new(&python);
    command
      .args([
        "-m",
        "boxlite_testbed.server",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
      ])
      .args(args)
      .current_dir(testbed_dir())
      .env("PYTHONPATH", testbed_dir())
      .stdin(Stdio::null())
      .stdout(Stdio::piped())
      .stderr(if std::env::var_os("BOXLITE_TESTBED_VERBOSE").is_some() {
        Stdio::inherit()
      } else {
        Stdio::null()
      })
      .kill_on_drop(true);
    let mut child = command.spawn().expect("spawn the test bed");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(60), async {
      while let Ok(Some(line)) = lines.next_line().await {
        if let Some(rest) = line.strip_prefix(READY) {
          return Some(serde_json::from_str::<Value>(rest.trim()).expect("ready line JSON"));
        }
      }
      None
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_else(|| panic!("the test bed did not start with {args:?}"));
    // Keep draining stdout so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let url = ready["url"].as_str().unwrap().to_string();
    // The control client is plain reqwest; it needs a process-wide crypto provider (the client
    // under test brings its own and needs none).
    let _ = rustls::crypto::ring::default_provider().install_default();
    Testbed {
      child,
      url,
      info: ready,
      http: reqwest::Client::new(),
    }
  }

  /// A `RemoteConfig` for this server from the JS-shaped options in `extra`.
  pub fn config(&self, extra: Value) -> RemoteConfig {
    let mut object = json!({"apiUrl": self.url});
    for (k, v) in extra.as_object().unwrap() {
      object[k] = v.clone();
    }
    match AdapterConfig::parse(&object).unwrap() {
      AdapterConfig::Remote(remote) => remote,
      _ => unreachable!(),
    }
  }

  /// The credentials this server expects, as adapter options.
  pub fn credentials(&self) -> Value {
    match self.info["auth"].as_str() {
      Some("token") => json!({"apiToken": self.info["token"]}),
      Some("client-credentials") => {
        json!({"clientId": self.info["client_id"], "clientSecret": self.info["client_secret"]})
      }
      _ => json!({}),
    }
  }

  pub fn client(&self, extra: Value) -> Arc<RestClient> {
    self.client_tuned(extra, quick_tuning())
  }

  pub fn client_tuned(&self, extra: Value, tuning: Tuning) -> Arc<RestClient> {
    let mut options = self.credentials();
    for (k, v) in extra.as_object().unwrap() {
      options[k] = v.clone();
    }
    rest::connect_with(&self.config(options), tuning).unwrap()
  }

  async fn control(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let mut request = self.http.request(method, format!("{}/__testbed{path}", self.url));
    if let Some(body) = body {
      request = request.json(&body);
    }
    let response = request.send().await.expect("control request");
    assert!(
      response.status().is_success(),
      "control {path}: {}",
      response.status()
    );
    response.json().await.unwrap()
  }

  /// Installs fault rules (see the test bed's `faults.py`).
  pub async fn faults(&self, rules: Value) {
    self.control(reqwest::Method::POST, "/faults", Some(rules)).await;
  }

  pub async fn clear_faults(&self) {
    self.control(reqwest::Method::DELETE, "/faults", None).await;
  }

  /// The request log (tokens included, for leak checks).
  pub async fn requests(&self) -> Vec<Value> {
    self.control(reqwest::Method::GET, "/requests", None).await["requests"]
      .as_array()
      .cloned()
      .unwrap_or_default()
  }

  pub async fn clear_requests(&self) {
    self.control(reqwest::Method::DELETE, "/requests", None).await;
  }

  pub async fn expire_tokens(&self) {
    self.control(reqwest::Method::POST, "/expire-tokens", None).await;
  }

  /// Kills the server (to test a death mid-stream).
  pub async fn kill(&mut self) {
    let _ = self.child.kill().await;
  }
}

/// Short bounds so fault tests finish quickly.
pub fn quick_tuning() -> Tuning {
  Tuning {
    request_timeout: Duration::from_secs(20),
    stream_idle_timeout: Duration::from_secs(20),
    retry_base_delay: Duration::from_millis(50),
    ..Tuning::default()
  }
}

pub fn argv(cmd: &[&str]) -> ExecRequest {
  ExecRequest {
    cmd: cmd.iter().map(|s| s.to_string()).collect(),
    ..Default::default()
  }
}

pub fn sh(script: &str) -> ExecRequest {
  argv(&["sh", "-c", script])
}

pub fn unique(prefix: &str) -> String {
  use std::sync::atomic::{AtomicU32, Ordering};
  static N: AtomicU32 = AtomicU32::new(0);
  format!(
    "{prefix}-{}-{}",
    std::process::id(),
    N.fetch_add(1, Ordering::Relaxed)
  )
}

/// A ustar header for one regular file.
pub fn tar_header(name: &str, size: u64) -> [u8; 512] {
  let mut h = [0u8; 512];
  h[..name.len()].copy_from_slice(name.as_bytes());
  h[100..108].copy_from_slice(b"0000644\0");
  h[108..116].copy_from_slice(b"0000000\0");
  h[116..124].copy_from_slice(b"0000000\0");
  h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
  h[136..148].copy_from_slice(b"00000000000\0");
  h[156] = b'0';
  h[257..263].copy_from_slice(b"ustar\0");
  h[263..265].copy_from_slice(b"00");
  h[148..156].copy_from_slice(b"        ");
  let sum: u32 = h.iter().map(|&b| b as u32).sum();
  h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
  h
}

/// A small tar archive of `(name, contents)` files.
pub fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
  let mut out = Vec::new();
  for (name, data) in files {
    out.extend_from_slice(&tar_header(name, data.len() as u64));
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
  }
  out.resize(out.len() + 1024, 0);
  out
}

pub fn stream_of(bytes: Vec<u8>) -> ByteStream {
  Box::pin(futures_util::stream::iter(vec![Ok(Bytes::from(bytes))]))
}

/// A tar archive holding one file of `size` pseudo-random bytes, generated in 1 MiB chunks as
/// it is read (never held whole); the returned checksum covers the file's bytes.
pub fn generated_tar(name: &str, size: u64) -> (ByteStream, u64) {
  const CHUNK: u64 = 1024 * 1024;
  let header = Bytes::copy_from_slice(&tar_header(name, size));
  let padding = (512 - size % 512) % 512 + 1024;
  let checksum = (0..size.div_ceil(CHUNK)).fold(0u64, |acc, i| {
    let len = CHUNK.min(size - i * CHUNK);
    acc.wrapping_add(chunk_sum(&pattern_chunk(i, len)))
  });
  let body = futures_util::stream::iter(0..size.div_ceil(CHUNK))
    .map(move |i| Ok(Bytes::from(pattern_chunk(i, CHUNK.min(size - i * CHUNK)))));
  let stream = futures_util::stream::once(async move { Ok(header) })
    .chain(body)
    .chain(futures_util::stream::once(async move {
      Ok(Bytes::from(vec![0u8; padding as usize]))
    }));
  (Box::pin(stream), checksum)
}

pub fn pattern_chunk(index: u64, len: u64) -> Vec<u8> {
  let mut state = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
  (0..len)
    .map(|_| {
      state ^= state << 13;
      state ^= state >> 7;
      state ^= state << 17;
      state as u8
    })
    .collect()
}

pub fn chunk_sum(bytes: &[u8]) -> u64 {
  bytes
    .iter()
    .fold(0u64, |acc, &b| acc.wrapping_mul(31).wrapping_add(b as u64))
}

/// Reads a whole (small) byte stream.
pub async fn read_all(mut stream: ByteStream) -> Vec<u8> {
  let mut out = Vec::new();
  while let Some(chunk) = stream.next().await {
    out.extend_from_slice(&chunk.expect("stream chunk"));
  }
  out
}

/// File names and contents in a tar archive (regular files only).
pub fn tar_entries(tar: &[u8]) -> Vec<(String, Vec<u8>)> {
  let mut entries = Vec::new();
  let mut offset = 0;
  while offset + 512 <= tar.len() {
    let header = &tar[offset..offset + 512];
    if header.iter().all(|&b| b == 0) {
      break;
    }
    let name_end = header[..100].iter().position(|&b| b == 0).unwrap_or(100);
    let mut name = String::from_utf8_lossy(&header[..name_end]).to_string();
    let prefix_end = header[345..500].iter().position(|&b| b == 0).unwrap_or(155);
    if header[257..262] == *b"ustar" && prefix_end > 0 {
      name = format!(
        "{}/{name}",
        String::from_utf8_lossy(&header[345..345 + prefix_end])
      );
    }
    let size_text = String::from_utf8_lossy(&header[124..136])
      .trim_matches(|c: char| c == '\0' || c == ' ')
      .to_string();
    let size = u64::from_str_radix(&size_text, 8).unwrap_or(0) as usize;
    let kind = header[156];
    let data_start = offset + 512;
    if kind == b'0' || kind == 0 {
      entries.push((name, tar[data_start..data_start + size].to_vec()));
    }
    offset = data_start + size.div_ceil(512) * 512;
  }
  entries
}

/// Resident memory of this process in KiB (Linux), for bounded-memory checks.
pub fn rss_kib() -> Option<u64> {
  let status = std::fs::read_to_string("/proc/self/status").ok()?;
  status
    .lines()
    .find(|l| l.starts_with("VmRSS:"))?
    .split_whitespace()
    .nth(1)?
    .parse()
    .ok()
}

pub async fn create_running_box(client: &RestClient) -> String {
  let params = boxlite_core::client::CreateBoxParams {
    image: Some("alpine:latest".into()),
    name: Some(unique("box")),
    ..Default::default()
  };
  let record = client.create_box(params).await.expect("create box");
  client.start_box(&record.id).await.expect("start box");
  record.id
}

/// A one-shot HTTP server: answers each request with `reply(path)` and reports the request heads.
pub async fn raw_server(
  reply: impl Fn(&str) -> String + Send + Sync + 'static,
) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
  let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
  let url = format!("http://{}", listener.local_addr().unwrap());
  let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
  let reply = std::sync::Arc::new(reply);
  tokio::spawn(async move {
    while let Ok((mut socket, _)) = listener.accept().await {
      let tx = tx.clone();
      let reply = reply.clone();
      tokio::spawn(async move {
        let mut buf = vec![0u8; 8192];
        let mut head = Vec::new();
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
          let n = socket.read(&mut buf).await.unwrap_or(0);
          if n == 0 {
            return;
          }
          head.extend_from_slice(&buf[..n]);
        }
        let head = String::from_utf8_lossy(&head).to_string();
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        let _ = tx.send(head);
        let _ = socket.write_all(reply(&path).as_bytes()).await;
        let _ = socket.shutdown().await;
      });
    }
  });
  (url, rx)
}
