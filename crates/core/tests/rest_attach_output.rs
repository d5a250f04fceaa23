//! Output over the attach WebSocket (current dialect) arrives whole: the server starts a command
//! before anyone attaches and keeps only a small backlog for the first reader (the test bed,
//! like `boxlite serve` 0.11, keeps 256 KiB per stream), so a command that writes more before the
//! socket opens would lose the head of its output. The client holds such commands until it is
//! attached. The test bed's `latency` fault on the attach route stands for a slow network.

mod rest_common;

use boxlite_core::client::{BoxClient, ExecEvent};
use futures_util::StreamExt;
use rest_common::*;
use serde_json::json;

/// More than the test bed's 256 KiB backlog, written at once.
const OUTPUT_BYTES: usize = 1_500_000;

fn flood() -> boxlite_core::client::ExecRequest {
  sh(&format!("head -c {OUTPUT_BYTES} /dev/zero | tr '\\0' a"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_written_before_a_slow_attach_reaches_exec_whole() {
  let tb = Testbed::start(&["--dialect", "current", "--auth", "none"]).await;
  let client = tb.client(json!({}));
  let id = create_running_box(&client).await;
  tb.faults(json!({"kind": "latency", "delay_ms": 1500, "path": "/attach$"}))
    .await;
  let output = client.exec(&id, flood()).await.unwrap();
  assert_eq!(output.exit_code, 0, "{}", output.stderr);
  assert_eq!(output.stdout.len(), OUTPUT_BYTES);
  assert!(output.stdout.bytes().all(|b| b == b'a'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_written_before_a_slow_attach_reaches_exec_stream_whole() {
  let tb = Testbed::start(&["--dialect", "current", "--auth", "none"]).await;
  let client = tb.client(json!({}));
  let id = create_running_box(&client).await;
  tb.faults(json!({"kind": "latency", "delay_ms": 1500, "path": "/attach$"}))
    .await;
  let mut events = client.exec_stream(&id, flood()).await.unwrap();
  let (mut stdout, mut exit) = (0, None);
  while let Some(event) = events.next().await {
    match event.unwrap() {
      ExecEvent::Stdout(chunk) => stdout += chunk.len(),
      ExecEvent::Stderr(chunk) => panic!("stderr: {}", String::from_utf8_lossy(&chunk)),
      ExecEvent::Exit(code) => exit = code,
    }
  }
  assert_eq!(exit, Some(0));
  assert_eq!(stdout, OUTPUT_BYTES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_command_keeps_its_arguments_exit_code_and_working_directory() {
  let tb = Testbed::start(&["--dialect", "current", "--auth", "none"]).await;
  let client = tb.client(json!({}));
  let id = create_running_box(&client).await;
  let mut request = argv(&["sh", "-c", "pwd; echo \"$0|$1|$#\"; exit 7", "zero", "one two"]);
  request.working_dir = Some("/tmp".into());
  let output = client.exec(&id, request).await.unwrap();
  assert_eq!(output.exit_code, 7, "{}", output.stderr);
  assert_eq!(output.stdout, "/tmp\nzero|one two|1\n");
}
