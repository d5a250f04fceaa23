//! Reliability of the adapter over every remote dialect, against the test bed with its fault
//! options: a create deadline that holds while the server is still booting (and leaves no box),
//! ids that cannot name a box never reaching the server.

mod rest_common;

use std::time::{Duration, Instant};

use boxlite_core::sandbox::CreateConfig;
use boxlite_core::{Adapter, BoxClient};
use rest_common::*;
use serde_json::{json, Value};

const DIALECTS: [&str; 3] = ["sse", "current", "boxrun"];

/// An adapter (the sandbox layer, as JS uses it) over `tb` in `dialect`.
fn adapter(tb: &Testbed, dialect: &str) -> Adapter {
  let mut config = tb.credentials();
  config["apiUrl"] = Value::String(tb.url.clone());
  config["dialect"] = Value::String(dialect.into());
  Adapter::new(&config)
}

async fn box_count(tb: &Testbed, dialect: &str) -> usize {
  let client = tb.client(json!({"dialect": dialect}));
  client.list_boxes(None, None).await.expect("list boxes").len()
}

async fn create_deadline_holds(dialect: &'static str) {
  // Start routes (and BoxRun's synchronous create) take 5 s: the deadline passes while a
  // create or start request is in flight.
  let tb = Testbed::start(&["--dialect", dialect, "--auth", "none", "--boot-delay", "5"]).await;
  let adapter = adapter(&tb, dialect);
  let config: CreateConfig = serde_json::from_value(json!({"timeout": 1})).unwrap();
  let started = Instant::now();
  let err = adapter.create_sandbox(&config).await.unwrap_err();
  let took = started.elapsed();
  assert!(
    took < Duration::from_millis(2500),
    "{dialect}: rejected after {took:?}, not at the 1 s deadline"
  );
  assert_eq!(err.code(), "start_timeout", "{dialect}: {err}");
  assert!(
    err
      .to_string()
      .starts_with("Sandbox failed to start within 1s (status: "),
    "{dialect}: {err}"
  );
  // dispose waits for the abandoned box to be deleted.
  adapter.dispose().await.unwrap();
  assert_eq!(
    box_count(&tb, dialect).await,
    0,
    "{dialect}: a box was left behind"
  );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_deadline_holds_during_a_slow_boot_and_no_box_is_left_in_every_dialect() {
  tokio::join!(
    create_deadline_holds(DIALECTS[0]),
    create_deadline_holds(DIALECTS[1]),
    create_deadline_holds(DIALECTS[2]),
  );
}

async fn impossible_ids_make_no_request(dialect: &'static str) {
  let tb = Testbed::start(&["--dialect", dialect, "--auth", "none"]).await;
  let adapter = adapter(&tb, dialect);
  tb.clear_requests().await;
  for id in ["", ".", "..", "../boxes", "a/b"] {
    let err = adapter.get_sandbox(id).await.unwrap_err();
    assert_eq!(err.code(), "not_found", "{dialect} {id:?}: {err}");
    adapter
      .destroy_sandbox(id)
      .await
      .expect("destroying a box that cannot exist resolves");
    let err = adapter.exec(id, "true", &Default::default()).await.unwrap_err();
    assert_eq!(err.code(), "not_found", "{dialect} {id:?}: {err}");
    let client = adapter.client().unwrap();
    assert_eq!(
      client.delete_snapshot("box-1", "..").await.unwrap_err().code(),
      "not_found"
    );
    assert_eq!(
      client.get_exec_output("box-1", ".").await.err().unwrap().code(),
      "not_found"
    );
  }
  let log = tb.requests().await;
  assert!(log.is_empty(), "{dialect}: requests reached the server: {log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_that_cannot_name_a_box_are_not_found_before_any_request_in_every_dialect() {
  tokio::join!(
    impossible_ids_make_no_request(DIALECTS[0]),
    impossible_ids_make_no_request(DIALECTS[1]),
    impossible_ids_make_no_request(DIALECTS[2]),
  );
}

async fn boxrun_with_box(faults: Value) -> (Testbed, std::sync::Arc<boxlite_core::rest::RestClient>, String) {
  let tb = Testbed::start(&["--dialect", "boxrun", "--auth", "none"]).await;
  let client = tb.client(json!({"dialect": "boxrun"}));
  let id = create_running_box(&client).await;
  tb.faults(faults).await;
  (tb, client, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boxrun_stalled_event_stream_is_re_read_and_the_output_arrives() {
  let (tb, client, id) = boxrun_with_box(json!({"kind": "stall", "path": "/events$"})).await;
  let output = client
    .exec(&id, sh("echo hi; echo oops >&2; exit 3"))
    .await
    .expect("the re-read stream ends with the exit");
  assert_eq!(
    (output.stdout.as_str(), output.stderr.as_str(), output.exit_code),
    ("hi\n", "oops\n", 3)
  );
  let events = tb
    .requests()
    .await
    .into_iter()
    .filter(|e| e["path"].as_str().unwrap_or("").ends_with("/events"))
    .count();
  assert_eq!(events, 2, "one stalled read and one re-read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boxrun_stream_that_always_stalls_fails_instead_of_succeeding_without_output() {
  let (_tb, client, id) = boxrun_with_box(json!({"kind": "stall", "path": "/events$", "times": 0})).await;
  let started = Instant::now();
  let error = client.exec(&id, sh("echo hi")).await.unwrap_err();
  assert!(error.to_string().contains("the output is incomplete"), "{error}");
  assert!(
    started.elapsed() < Duration::from_secs(30),
    "{:?}",
    started.elapsed()
  );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boxrun_stream_broken_mid_way_resumes_without_losing_or_repeating_output() {
  // The first events connection is cut after two events; the re-read replays from seq 0.
  let (_tb, client, id) =
    boxrun_with_box(json!({"kind": "drop", "path": "/events$", "after_events": 2})).await;
  let script = "for i in 1 2 3 4 5 6; do echo line-$i; sleep 0.05; done; exit 4";
  let mut events = client.exec_stream(&id, sh(script)).await.unwrap();
  let mut stdout = Vec::new();
  let mut exit = None;
  while let Some(event) = futures_util::StreamExt::next(&mut events).await {
    match event.expect("the stream resumes instead of failing") {
      boxlite_core::client::ExecEvent::Stdout(b) => stdout.extend_from_slice(&b),
      boxlite_core::client::ExecEvent::Stderr(_) => {}
      boxlite_core::client::ExecEvent::Exit(code) => exit = Some(code),
    }
  }
  let expected: String = (1..=6).map(|i| format!("line-{i}\n")).collect();
  assert_eq!(String::from_utf8_lossy(&stdout), expected);
  assert_eq!(exit, Some(Some(4)));
}
