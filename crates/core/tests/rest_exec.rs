//! Exec behaviour across dialects: client-side timeouts kill the execution (and stay bounded when
//! the server does not answer the kill), stdin reaches an execution nobody is reading yet, many
//! executions run at once over one client, and output that is not line-aligned or not ASCII
//! arrives intact.

mod rest_common;

use std::time::{Duration, Instant};

use boxlite_core::client::{BoxClient, ExecEvent, ExecRequest};
use bytes::Bytes;
use futures_util::StreamExt;
use rest_common::*;
use serde_json::{json, Value};

const DIALECTS: [&str; 3] = ["sse", "current", "boxrun"];

fn kill_requests(log: &[Value]) -> usize {
  log
    .iter()
    .filter(|e| {
      let path = e["path"].as_str().unwrap_or("");
      (e["method"] == "POST" && (path.ends_with("/signal") || path.ends_with(":cancel")))
        || (e["method"] == "DELETE" && path.contains("/executions/"))
    })
    .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_side_timeout_kills_the_execution_in_every_dialect() {
  for dialect in DIALECTS {
    let tb = Testbed::start(&["--dialect", dialect, "--auth", "none"]).await;
    let client = tb.client(json!({}));
    let id = create_running_box(&client).await;
    tb.clear_requests().await;
    let begun = Instant::now();
    let request = ExecRequest {
      timeout_seconds: Some(0.5),
      ..sh("echo started; sleep 30")
    };
    let error = client.exec(&id, request.clone()).await.unwrap_err();
    assert_eq!(error.code(), "timeout", "{dialect}: {error}");
    assert_eq!(error.to_string(), "exec of 'sh' timed out after 500 ms");
    assert!(
      begun.elapsed() < Duration::from_secs(5),
      "{dialect}: {:?}",
      begun.elapsed()
    );
    assert_eq!(kill_requests(&tb.requests().await), 1, "{dialect}: exec killed");

    tb.clear_requests().await;
    let mut events = client.exec_stream(&id, request).await.unwrap();
    assert_eq!(
      events.next().await.unwrap().unwrap(),
      ExecEvent::Stdout(Bytes::from_static(b"started\n"))
    );
    let error = events.next().await.unwrap().unwrap_err();
    assert_eq!(error.code(), "timeout", "{dialect}: {error}");
    assert!(events.next().await.is_none());
    assert_eq!(
      kill_requests(&tb.requests().await),
      1,
      "{dialect}: stream exec killed"
    );
  }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_exec_is_reported_within_a_bound_even_when_the_server_never_answers_the_kill() {
  let tb = Testbed::start(&["--dialect", "current", "--auth", "none"]).await;
  let client = tb.client(json!({}));
  let id = create_running_box(&client).await;
  tb.faults(json!({"kind": "latency", "delay_ms": 60000, "method": "DELETE", "path": "/executions/"}))
    .await;
  let begun = Instant::now();
  let request = ExecRequest {
    timeout_seconds: Some(0.5),
    ..sh("sleep 30")
  };
  let error = client.exec(&id, request).await.unwrap_err();
  assert_eq!(error.code(), "timeout", "{error}");
  // The deadline, then at most the client's 10 s bound on the kill request.
  let elapsed = begun.elapsed();
  assert!(elapsed < Duration::from_secs(13), "{elapsed:?}");
  assert_eq!(kill_requests(&tb.requests().await), 1, "the kill was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_sent_before_anyone_reads_the_output_is_not_lost() {
  for dialect in ["sse", "current"] {
    let tb = Testbed::start(&["--dialect", dialect, "--auth", "none"]).await;
    let client = tb.client(json!({}));
    let id = create_running_box(&client).await;
    let execution = client.exec_async(&id, sh("cat; echo done >&2")).await.unwrap();
    client
      .send_exec_input(&id, &execution.id, Bytes::from_static(b"early bytes"), true)
      .await
      .unwrap();
    let mut output = client.get_exec_output(&id, &execution.id).await.unwrap();
    let (mut stdout, mut stderr, mut exit) = (Vec::new(), Vec::new(), None);
    while let Some(event) = output.next().await {
      match event.unwrap() {
        ExecEvent::Stdout(b) => stdout.extend_from_slice(&b),
        ExecEvent::Stderr(b) => stderr.extend_from_slice(&b),
        ExecEvent::Exit(code) => exit = Some(code),
      }
    }
    assert_eq!(
      (stdout.as_slice(), stderr.as_slice(), exit),
      (&b"early bytes"[..], &b"done\n"[..], Some(Some(0))),
      "{dialect}"
    );
  }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_executions_run_concurrently_over_one_client() {
  for dialect in DIALECTS {
    let tb = Testbed::start(&["--dialect", dialect, "--auth", "none"]).await;
    let client = tb.client(json!({}));
    let id = create_running_box(&client).await;
    let runs = (0..16).map(|i| {
      let client = client.clone();
      let id = id.clone();
      async move { client.exec(&id, sh(&format!("sleep 0.2; echo {i}"))).await }
    });
    let outputs = futures_util::future::join_all(runs).await;
    for (i, output) in outputs.into_iter().enumerate() {
      let output = output.unwrap_or_else(|e| panic!("{dialect} #{i}: {e}"));
      assert_eq!(output.stdout, format!("{i}\n"), "{dialect}");
    }
  }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_and_non_ascii_output_arrives_intact() {
  for dialect in DIALECTS {
    let tb = Testbed::start(&["--dialect", dialect, "--auth", "none"]).await;
    let client = tb.client(json!({}));
    let id = create_running_box(&client).await;
    let out = client
      .exec(&id, sh("printf 'héllo wörld ✓\\n'; seq 1 20000"))
      .await
      .unwrap();
    assert!(out.stdout.starts_with("héllo wörld ✓\n1\n2\n"), "{dialect}");
    assert!(out.stdout.ends_with("19999\n20000\n"), "{dialect}");
    assert_eq!(out.stdout.lines().count(), 20001, "{dialect}");
  }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_command_is_refused_before_any_request() {
  let tb = Testbed::start(&["--dialect", "boxrun"]).await;
  let client = tb.client(json!({}));
  let id = create_running_box(&client).await;
  tb.clear_requests().await;
  let error = client.exec(&id, argv(&[])).await.unwrap_err();
  assert_eq!(error.code(), "invalid_argument");
  assert!(tb.requests().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_archives_upload_where_the_server_unpacks_them() {
  // Ref (sse) unpacks gzip itself; BoxRun and current uploads are unpacked by `tar` in the box.
  for dialect in ["sse", "current", "boxrun"] {
    let tb = Testbed::start(&["--dialect", dialect, "--auth", "none"]).await;
    let client = tb.client(json!({}));
    let id = create_running_box(&client).await;
    let plain = tar_of(&[("z.txt", b"zipped")]);
    let gz = std::process::Command::new("gzip")
      .arg("-c")
      .stdin(std::process::Stdio::piped())
      .stdout(std::process::Stdio::piped())
      .spawn()
      .and_then(|mut child| {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&plain)?;
        child.wait_with_output()
      })
      .expect("gzip")
      .stdout;
    client
      .upload_files(&id, "/root/gz", stream_of(gz))
      .await
      .unwrap_or_else(|e| panic!("{dialect}: {e}"));
    let out = client
      .exec(&id, sh("cat /root/gz/z.txt || cat /root/gz"))
      .await
      .unwrap();
    assert_eq!(out.stdout, "zipped", "{dialect}: {out:?}");
  }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_an_exec_stream_before_its_end_kills_the_command() {
  for dialect in DIALECTS {
    let tb = Testbed::start(&["--dialect", dialect, "--auth", "none"]).await;
    let client = tb.client(json!({}));
    let id = create_running_box(&client).await;
    let mut finished = client.exec_stream(&id, argv(&["echo", "whole"])).await.unwrap();
    while finished.next().await.is_some() {}
    drop(finished);
    let mut events = client
      .exec_stream(&id, sh("echo started; sleep 2; touch /root/marker"))
      .await
      .unwrap();
    assert_eq!(
      events.next().await.unwrap().unwrap(),
      ExecEvent::Stdout(Bytes::from_static(b"started\n"))
    );
    drop(events);
    tokio::time::sleep(Duration::from_millis(2800)).await;
    let out = client
      .exec(&id, sh("test -e /root/marker; echo $?"))
      .await
      .unwrap();
    assert_eq!(out.stdout, "1\n", "{dialect}: the command was stopped");
    assert_eq!(
      kill_requests(&tb.requests().await),
      1,
      "{dialect}: only the abandoned stream was killed"
    );
  }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_stdin_of_a_finished_command_is_not_an_error() {
  for dialect in ["sse", "current"] {
    let tb = Testbed::start(&["--dialect", dialect, "--auth", "none"]).await;
    let client = tb.client(json!({}));
    let id = create_running_box(&client).await;
    let execution = client.exec_async(&id, argv(&["true"])).await.unwrap();
    let mut output = client.get_exec_output(&id, &execution.id).await.unwrap();
    while output.next().await.is_some() {}
    client
      .send_exec_input(&id, &execution.id, Bytes::new(), true)
      .await
      .unwrap_or_else(|e| panic!("{dialect}: {e}"));
  }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_beyond_the_2_mib_body_cap_of_serve_and_boxrun_arrive_whole() {
  for dialect in ["current", "boxrun"] {
    let tb = Testbed::start(&["--dialect", dialect, "--auth", "none"]).await;
    let client = tb.client(json!({}));
    let id = create_running_box(&client).await;
    let size = 9 * 1024 * 1024 + 123;
    let (tar, _) = generated_tar("nine.bin", size);
    client
      .upload_files(&id, "/root/big", tar)
      .await
      .unwrap_or_else(|e| panic!("{dialect}: {e}"));
    let out = client
      .exec(&id, argv(&["wc", "-c", "/root/big/nine.bin"]))
      .await
      .unwrap();
    assert_eq!(
      out.stdout.split_whitespace().next(),
      Some(size.to_string().as_str()),
      "{dialect}: {out:?}"
    );
  }
}
