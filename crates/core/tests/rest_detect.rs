//! Dialect detection (`dialect: "auto"`) and prefix resolution against the test bed.

mod rest_common;

use boxlite_core::client::{BoxClient, Features};
use boxlite_core::config::AdapterConfig;
use boxlite_core::rest::{self, Dialect};
use rest_common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_detects_each_dialect_with_or_without_a_trailing_slash() {
  let cases: Vec<(Vec<&str>, Dialect, Option<&str>)> = vec![
    (
      vec!["--dialect", "sse-ref", "--auth", "client-credentials"],
      Dialect::SseRef,
      Some("default"),
    ),
    (
      vec!["--dialect", "sse-serve", "--auth", "token", "--prefix", "default"],
      Dialect::SseServe,
      Some("default"),
    ),
    (
      vec!["--dialect", "sse-ref", "--auth", "none"],
      Dialect::SseRef,
      Some("default"),
    ),
    (
      vec!["--dialect", "current", "--auth", "token"],
      Dialect::Current,
      None,
    ),
    (
      vec!["--dialect", "current", "--auth", "none", "--prefix", "org-1"],
      Dialect::Current,
      Some("org-1"),
    ),
    (
      vec![
        "--dialect",
        "current",
        "--auth",
        "none",
        "--prefix",
        "a/b",
        "--me-prefix-key",
        "both",
      ],
      Dialect::Current,
      Some("a/b"),
    ),
    (vec!["--dialect", "boxrun"], Dialect::Boxrun, None),
  ];
  for (args, dialect, prefix) in cases {
    let tb = Testbed::start(&args).await;
    for url in [tb.url.clone(), format!("{}/", tb.url)] {
      let client = tb.client(json!({"apiUrl": url}));
      assert_eq!(client.dialect().await.unwrap(), dialect, "{args:?} at {url}");
      assert_eq!(client.prefix().await.unwrap().as_deref(), prefix, "{args:?}");
      client
        .list_boxes(None, None)
        .await
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    }
    let log = tb.requests().await;
    let probes: Vec<_> = log
      .iter()
      .filter(|e| e["path"] == "/v1/config" || e["path"] == "/v1/info")
      .collect();
    assert_eq!(
      probes.iter().filter(|e| e["path"] == "/v1/config").count(),
      2,
      "one detection per client: {args:?}"
    );
    assert!(
      log.iter().all(|e| !e["path"].as_str().unwrap().contains("//")),
      "no double slash: {log:#?}"
    );
  }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_prefix_wins_over_discovery() {
  let tb = Testbed::start(&["--dialect", "current", "--auth", "none", "--prefix", "org-1"]).await;
  let client = tb.client(json!({"prefix": "org-1", "dialect": "current"}));
  client.list_boxes(None, None).await.unwrap();
  let log = tb.requests().await;
  assert!(
    log.iter().all(|e| e["path"] != "/v1/me"),
    "no discovery needed: {log:#?}"
  );
  assert!(log.iter().any(|e| e["path"] == "/v1/org-1/boxes"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_of_no_known_dialect_is_reported_and_detection_is_retried() {
  let _ = rustls::crypto::ring::default_provider().install_default();
  let (url, _seen) =
    raw_server(|_| "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into()).await;
  let AdapterConfig::Remote(config) = AdapterConfig::parse(&json!({"apiUrl": url})).unwrap() else {
    panic!()
  };
  let client = rest::connect_with(&config, quick_tuning()).unwrap();
  let error = client.list_boxes(None, None).await.unwrap_err();
  assert_eq!(error.code(), "protocol");
  assert!(
    error.to_string().contains("none of the known dialects"),
    "{error}"
  );

  let tb = Testbed::start(&["--dialect", "boxrun"]).await;
  tb.faults(json!({"kind": "error", "status": 500, "path": "^/v1/config$", "times": 1}))
    .await;
  let client = tb.client(json!({}));
  assert_eq!(
    client.dialect().await.unwrap_err().code(),
    "protocol",
    "a failing probe fails the call"
  );
  assert_eq!(
    client.dialect().await.unwrap(),
    Dialect::Boxrun,
    "and is not cached"
  );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_forced_dialect_fails_clearly() {
  let tb = Testbed::start(&["--dialect", "boxrun"]).await;
  let client = tb.client(json!({"dialect": "sse"}));
  let error = client.list_boxes(None, None).await.unwrap_err();
  assert!(error.to_string().starts_with("BoxLite API error 404"), "{error}");
  // A route the server does not have, not a missing box: it stays the server's refusal.
  assert_eq!(error.code(), "api_error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn features_tell_the_file_and_terminal_layers_what_each_server_can_do() {
  let cases: Vec<(Vec<&str>, Features)> = vec![
    (
      vec!["--dialect", "sse-ref", "--auth", "none"],
      Features {
        tar_upload: true,
        tar_download: true,
        tar_download_keeps_links: true,
        exec_stdin: true,
        box_terminal: false,
      },
    ),
    (
      vec!["--dialect", "sse-serve", "--auth", "none", "--prefix", "default"],
      Features {
        tar_upload: false,
        tar_download: true,
        tar_download_keeps_links: true,
        exec_stdin: false,
        box_terminal: false,
      },
    ),
    (
      vec!["--dialect", "current", "--auth", "none"],
      Features {
        tar_upload: true,
        tar_download: true,
        tar_download_keeps_links: false,
        exec_stdin: true,
        box_terminal: false,
      },
    ),
    (
      vec!["--dialect", "boxrun"],
      Features {
        tar_upload: true,
        tar_download: true,
        tar_download_keeps_links: true,
        exec_stdin: false,
        box_terminal: true,
      },
    ),
  ];
  for (args, expected) in cases {
    let tb = Testbed::start(&args).await;
    assert_eq!(
      tb.client(json!({})).features().await.unwrap(),
      expected,
      "{args:?}"
    );
  }
}
