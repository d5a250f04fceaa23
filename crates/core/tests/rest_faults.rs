//! Robustness against every fault the test bed injects: retries where they are safe, clear
//! errors for truncated or malformed replies, timeouts, and streams that end with an error
//! within seconds when the server drops or dies mid-stream.

mod rest_common;

use std::time::{Duration, Instant};

use boxlite_core::client::{BoxClient, ExecEvent};
use boxlite_core::config::AdapterConfig;
use boxlite_core::rest::{self, Tuning};
use futures_util::StreamExt;
use rest_common::*;
use serde_json::{json, Value};

fn count(log: &[Value], method: &str, path_end: &str) -> usize {
  log
    .iter()
    .filter(|e| e["method"] == method && e["path"].as_str().unwrap_or("").ends_with(path_end))
    .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_errors_on_idempotent_requests_are_retried_with_a_bound() {
  let tb = Testbed::start(&["--dialect", "current", "--auth", "none"]).await;
  let client = tb.client(json!({"dialect": "current"}));
  let id = create_running_box(&client).await;

  tb.clear_requests().await;
  tb.faults(json!({"kind": "error", "status": 503, "method": "GET", "path": "/boxes$", "times": 2}))
    .await;
  client
    .list_boxes(None, None)
    .await
    .expect("succeeds on the third attempt");
  assert_eq!(count(&tb.requests().await, "GET", "/boxes"), 3);

  tb.clear_requests().await;
  tb.faults(json!({"kind": "error", "status": 502, "method": "GET", "path": "/boxes$", "times": 0}))
    .await;
  let error = client.list_boxes(None, None).await.unwrap_err();
  assert!(error.to_string().starts_with("BoxLite API error 502"), "{error}");
  assert_eq!(
    count(&tb.requests().await, "GET", "/boxes"),
    4,
    "one try and three retries"
  );
  tb.clear_faults().await;

  tb.clear_requests().await;
  tb.faults(json!({"kind": "error", "status": 503, "method": "POST", "path": "/exec$"}))
    .await;
  let error = client.exec(&id, argv(&["true"])).await.unwrap_err();
  assert!(error.to_string().starts_with("BoxLite API error 503"), "{error}");
  assert_eq!(
    count(&tb.requests().await, "POST", "/exec"),
    1,
    "an exec is never repeated"
  );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_before_the_reply_is_retried_for_reads() {
  let tb = Testbed::start(&["--dialect", "sse-ref", "--auth", "none"]).await;
  let client = tb.client(json!({}));
  let id = create_running_box(&client).await;
  tb.faults(json!({"kind": "drop", "method": "GET", "path": format!("/boxes/{id}$")}))
    .await;
  assert_eq!(client.get_box(&id).await.expect("retried").id, id);
  tb.faults(json!({"kind": "drop", "method": "POST", "path": "/exec$"}))
    .await;
  let error = client.exec(&id, argv(&["true"])).await.unwrap_err();
  assert_eq!(error.code(), "transport", "{error}");
  assert!(
    error.to_string().starts_with(&format!(
      "BoxLite request POST /v1/default/boxes/{id}/exec failed"
    )),
    "{error}"
  );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_and_malformed_replies_give_clear_errors() {
  let tb = Testbed::start(&["--dialect", "boxrun"]).await;
  let client = tb.client(json!({}));
  let id = create_running_box(&client).await;
  tb.faults(json!({"kind": "truncate", "method": "GET", "path": format!("/boxes/{id}$")}))
    .await;
  let error = client.get_box(&id).await.unwrap_err();
  assert_eq!(error.code(), "transport", "{error}");
  assert!(error.to_string().contains("incomplete"), "{error}");

  tb.faults(json!({"kind": "malformed_json", "method": "GET", "path": "/boxes$"}))
    .await;
  let error = client.list_boxes(None, None).await.unwrap_err();
  assert_eq!(error.code(), "protocol", "{error}");
  assert!(error.to_string().contains("does not parse"), "{error}");

  tb.faults(json!({"kind": "error", "status": 500, "path": "/boxes$", "body": "Internal Server Error"}))
    .await;
  let error = client.list_boxes(None, None).await.unwrap_err();
  assert_eq!(
    error.to_string(),
    "BoxLite API error 500: Internal Server Error (GET /v1/boxes)"
  );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_server_hits_the_request_timeout() {
  let tb = Testbed::start(&["--dialect", "boxrun"]).await;
  let tuning = Tuning {
    request_timeout: Duration::from_secs(1),
    ..quick_tuning()
  };
  let client = tb.client_tuned(json!({}), tuning);
  client.list_boxes(None, None).await.unwrap();
  tb.faults(json!({"kind": "latency", "delay_ms": 5000, "path": "/boxes$"}))
    .await;
  let begun = Instant::now();
  let error = client.list_boxes(None, None).await.unwrap_err();
  assert_eq!(error.code(), "timeout", "{error}");
  assert!(begun.elapsed() < Duration::from_secs(3), "{:?}", begun.elapsed());
  assert_eq!(error.to_string(), "GET /v1/boxes timed out after 1000 ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_a_transport_error_naming_the_request() {
  let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
  let url = format!("http://{}", listener.local_addr().unwrap());
  drop(listener);
  let options = json!({"apiUrl": url, "apiToken": "tok-unreachable-77", "dialect": "current", "prefix": "p"});
  let AdapterConfig::Remote(config) = AdapterConfig::parse(&options).unwrap() else {
    panic!()
  };
  let client = rest::connect_with(&config, quick_tuning()).unwrap();
  let begun = Instant::now();
  let error = client
    .download_files("b1", "/secret?path")
    .await
    .map(|_| ())
    .unwrap_err();
  assert_eq!(error.code(), "transport");
  let text = error.to_string();
  assert!(
    text.starts_with("BoxLite request GET /v1/p/boxes/b1/files failed: "),
    "{text}"
  );
  assert!(
    !text.contains("tok-unreachable-77") && !text.contains("secret"),
    "{text}"
  );
  assert!(
    begun.elapsed() < Duration::from_secs(5),
    "bounded retries: {:?}",
    begun.elapsed()
  );
}

async fn stream_broken_mid_way(dialect: &str, mut kill_server: bool) {
  let mut tb = Testbed::start(&["--dialect", dialect, "--auth", "none", "--keepalive", "1"]).await;
  let client = tb.client(json!({}));
  let id = create_running_box(&client).await;
  if !kill_server {
    tb.faults(json!({"kind": "drop", "path": "/(output|events|attach)$", "after_events": 1}))
      .await;
  }
  let mut events = client
    .exec_stream(&id, sh("echo first; sleep 1; echo second; sleep 30"))
    .await
    .unwrap();
  let first = events.next().await.unwrap().unwrap();
  assert!(matches!(first, ExecEvent::Stdout(_)), "{first:?}");
  if kill_server {
    tb.kill().await;
    kill_server = false;
  }
  let begun = Instant::now();
  let mut outcome = None;
  while let Some(event) = tokio::time::timeout(Duration::from_secs(15), events.next())
    .await
    .expect("no hang")
  {
    match event {
      Ok(ExecEvent::Exit(code)) => panic!("{dialect}: unexpected exit {code:?}"),
      Ok(_) => continue,
      Err(e) => {
        outcome = Some(e);
        break;
      }
    }
  }
  let error = outcome.expect("the stream ends with an error");
  assert_eq!(error.code(), "transport", "{dialect}: {error}");
  assert!(
    begun.elapsed() < Duration::from_secs(5),
    "{dialect}: error after {:?}",
    begun.elapsed()
  );
  assert!(events.next().await.is_none(), "nothing after the error");
  let _ = kill_server;
}

/// BoxRun replays numbered events, so a dropped BoxRun stream resumes instead
/// (`rest_reliability.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_the_server_drops_ends_with_an_error_in_the_dialects_that_cannot_replay() {
  for dialect in ["sse", "current"] {
    stream_broken_mid_way(dialect, false).await;
  }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_dies_mid_stream_ends_the_stream_with_an_error_in_every_dialect() {
  for dialect in ["sse", "current", "boxrun"] {
    stream_broken_mid_way(dialect, true).await;
  }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_stream_hits_the_idle_timeout() {
  let tb = Testbed::start(&["--dialect", "sse-ref", "--auth", "none", "--keepalive", "30"]).await;
  let tuning = Tuning {
    stream_idle_timeout: Duration::from_secs(2),
    ..quick_tuning()
  };
  let client = tb.client_tuned(json!({}), tuning);
  let id = create_running_box(&client).await;
  let mut events = client.exec_stream(&id, sh("echo first; sleep 20")).await.unwrap();
  events.next().await.unwrap().unwrap();
  let begun = Instant::now();
  let error = events.next().await.unwrap().unwrap_err();
  assert_eq!(error.code(), "transport");
  assert!(error.to_string().contains("stopped answering"), "{error}");
  assert!(begun.elapsed() < Duration::from_secs(4));
}
