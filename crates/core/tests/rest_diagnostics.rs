//! Diagnostics over the test bed in every dialect: a verbose (trace level) run of detection,
//! `createSandbox`, `exec`, a streamed exec, a file round trip and an OAuth2 token refresh prints
//! the events the README promises, and no line of it contains a credential: neither the static
//! token, nor the client secret, nor any token the server issued (taken from its request log).
//!
//! One global subscriber captures the whole process, so this is a custom harness.

mod rest_common;

use boxlite_core::diag::Capture;
use boxlite_core::sandbox::{CreateConfig, ExecOptions};
use boxlite_core::Adapter;
use futures_util::StreamExt;
use rest_common::*;
use serde_json::{json, Value};
use tracing::level_filters::LevelFilter;

/// The bearer given to a server that checks none.
const UNCHECKED_TOKEN: &str = "unchecked-bearer-4f1c9a";

/// Every credential the run used: the configured ones and each bearer the server received.
async fn credentials_seen(tb: &Testbed) -> Vec<String> {
  let mut secrets: Vec<String> = ["token", "client_secret"]
    .iter()
    .filter_map(|k| tb.info[*k].as_str().map(str::to_string))
    .chain([UNCHECKED_TOKEN.to_string()])
    .collect();
  let mut on_the_wire = 0;
  for entry in tb.requests().await {
    if let Some(token) = entry["authorization"]["token"].as_str() {
      secrets.push(token.to_string());
      on_the_wire += 1;
    }
  }
  // The check means something only if credentials really travelled during the run.
  assert!(on_the_wire > 0, "no request of the run carried a bearer");
  secrets.retain(|s| s.len() >= 4);
  secrets.sort();
  secrets.dedup();
  secrets
}

/// Detection, create (waiting for running), exec, a streamed exec, a file round trip, a token
/// expiry, destroy: everything a verbose user run touches.
async fn session(tb: &Testbed) {
  let mut config = tb.credentials();
  if config.as_object().unwrap().is_empty() {
    // A server without auth still gets a bearer to leak (it ignores it).
    config["apiToken"] = Value::String(UNCHECKED_TOKEN.into());
  }
  config["apiUrl"] = Value::String(tb.url.clone());
  let adapter = Adapter::new(&config);
  let created: CreateConfig = serde_json::from_value(json!({"image": "alpine:latest"})).unwrap();
  let sandbox = adapter.create_sandbox(&created).await.unwrap();
  let out = adapter
    .exec(&sandbox.id, "echo hello", &ExecOptions::default())
    .await
    .unwrap();
  assert_eq!(out.stdout, "hello\n");
  let mut stream = adapter
    .exec_stream(&sandbox.id, "echo streamed", &ExecOptions::default())
    .await
    .unwrap();
  while let Some(event) = stream.next().await {
    event.unwrap();
  }
  adapter
    .write_file(&sandbox.id, "/tmp/diag.txt", bytes::Bytes::from_static(b"data"))
    .await
    .unwrap();
  read_all(adapter.read_file(&sandbox.id, "/tmp/diag.txt").await.unwrap()).await;
  tb.expire_tokens().await;
  adapter.get_sandbox(&sandbox.id).await.unwrap();
  adapter.destroy_sandbox(&sandbox.id).await.unwrap();
  adapter.dispose().await.unwrap();
}

fn assert_has(lines: &[&str], needle: &str, what: &str) {
  assert!(
    lines.iter().any(|l| l.contains(needle)),
    "{what}: no line contains {needle:?}:\n{}",
    lines.join("\n")
  );
}

fn main() {
  let capture = Capture::default();
  tracing::subscriber::set_global_default(boxlite_core::diag::subscriber(
    LevelFilter::TRACE,
    capture.clone(),
  ))
  .unwrap();
  let runtime = tokio::runtime::Builder::new_multi_thread()
    .worker_threads(2)
    .enable_all()
    .build()
    .unwrap();
  runtime.block_on(async {
    for (name, args) in [
      (
        "sse_client_credentials",
        &["--dialect", "sse-ref", "--auth", "client-credentials"][..],
      ),
      ("current_token", &["--dialect", "current", "--auth", "token"][..]),
      ("boxrun", &["--dialect", "boxrun", "--auth", "none"][..]),
    ] {
      let tb = Testbed::start(args).await;
      capture.take();
      session(&tb).await;
      let text = capture.take();
      let lines: Vec<&str> = text.lines().collect();
      let secrets = credentials_seen(&tb).await;
      for line in &lines {
        assert!(
          line.contains(" sandbank:boxlite "),
          "{name}: not in the one-line format: {line}"
        );
        for secret in &secrets {
          assert!(
            !line.contains(secret.as_str()),
            "{name}: a credential leaked into: {line}"
          );
        }
      }
      assert_has(&lines, "dialect detected dialect=", name);
      assert_has(&lines, " route dialect=", name);
      assert_has(&lines, " request method=GET path=/v1/", name);
      assert_has(&lines, " status=200 ", name);
      assert_has(&lines, "box created", name);
      assert_has(&lines, "box state box_id=", name);
      assert_has(&lines, "sandbox ready", name);
      assert_has(&lines, " exec: stream open exec_id=", name);
      assert_has(&lines, " exec: stream closed exec_id=", name);
      if name.starts_with("sse") {
        let obtained = lines
          .iter()
          .filter(|l| l.contains("OAuth2 token obtained lifetime_s="))
          .count();
        assert!(
          obtained >= 2,
          "{name}: expected a token and its replacement, got {obtained}"
        );
        assert_has(
          &lines,
          "401 with an OAuth2 token: retrying once with a new one",
          name,
        );
      }
      if name.starts_with("current") {
        assert_has(&lines, "websocket open", name);
      }
      println!(
        "test verbose_run_{name}_prints_events_and_no_credential ... ok ({} lines)",
        lines.len()
      );
    }
  });
}
