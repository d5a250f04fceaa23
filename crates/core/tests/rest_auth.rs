//! Credentials against the test bed: OAuth2 token caching, refresh before expiry, one retry
//! after a 401, no header without auth, and tokens that never leak (errors, Debug, redirects).

mod rest_common;

use std::time::Duration;

use boxlite_core::client::BoxClient;
use boxlite_core::rest::{self, Dialect};
use rest_common::*;
use serde_json::{json, Value};

fn calls<'a>(log: &'a [Value], method: &str, path_end: &str) -> Vec<&'a Value> {
  log
    .iter()
    .filter(|e| e["method"] == method && e["path"].as_str().unwrap_or("").ends_with(path_end))
    .collect()
}

fn bearer_of(entry: &Value) -> Option<String> {
  let auth = &entry["authorization"];
  if auth["present"] == true {
    Some(format!(
      "{} {}",
      auth["scheme"].as_str().unwrap_or(""),
      auth["token"].as_str().unwrap_or("")
    ))
  } else {
    None
  }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_token_is_fetched_once_and_sent_as_bearer() {
  let tb = Testbed::start(&["--dialect", "sse-ref", "--auth", "client-credentials"]).await;
  let client = tb.client(json!({}));
  client.list_boxes(None, None).await.unwrap();
  client.list_boxes(None, None).await.unwrap();
  let log = tb.requests().await;
  let tokens = calls(&log, "POST", "/v1/oauth/tokens");
  assert_eq!(tokens.len(), 1, "{log:#?}");
  assert_eq!(tokens[0]["content_type"], "application/x-www-form-urlencoded");
  assert_eq!(bearer_of(tokens[0]), None, "the token endpoint gets no bearer");
  let config = calls(&log, "GET", "/v1/config");
  assert!(
    config.iter().all(|e| e["path"] == "/v1/config"),
    "config is never prefixed"
  );
  let lists = calls(&log, "GET", "/v1/default/boxes");
  assert_eq!(lists.len(), 2);
  for entry in lists {
    let bearer = bearer_of(entry).expect("bearer on box routes");
    assert!(bearer.starts_with("Bearer ey"), "{bearer}");
  }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_is_refreshed_before_it_expires() {
  let tb = Testbed::start(&[
    "--dialect",
    "sse-ref",
    "--auth",
    "client-credentials",
    "--token-lifetime",
    "4",
  ])
  .await;
  let client = tb.client(json!({"dialect": "sse"}));
  client.list_boxes(None, None).await.unwrap();
  tokio::time::sleep(Duration::from_millis(2300)).await;
  client.list_boxes(None, None).await.unwrap();
  let log = tb.requests().await;
  assert_eq!(
    calls(&log, "POST", "/v1/oauth/tokens").len(),
    2,
    "refreshed at half its 4 s life"
  );
  assert!(
    log.iter().all(|e| e["status"] != 401),
    "no request went out with a dying token: {log:#?}"
  );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_is_retried_once_with_a_fresh_token() {
  let tb = Testbed::start(&["--dialect", "sse-ref", "--auth", "client-credentials"]).await;
  let client = tb.client(json!({"dialect": "sse"}));
  client.list_boxes(None, None).await.unwrap();
  tb.faults(json!({"kind": "expire_token", "method": "GET", "path": "/boxes$"}))
    .await;
  tb.clear_requests().await;
  client.list_boxes(None, None).await.expect("transparent retry");
  let log = tb.requests().await;
  let shape: Vec<(String, Value)> = log
    .iter()
    .map(|e| {
      (
        format!(
          "{} {}",
          e["method"].as_str().unwrap(),
          e["path"].as_str().unwrap()
        ),
        e["status"].clone(),
      )
    })
    .collect();
  assert_eq!(
    shape,
    vec![
      ("GET /v1/default/boxes".to_string(), json!(401)),
      ("POST /v1/oauth/tokens".to_string(), json!(200)),
      ("GET /v1/default/boxes".to_string(), json!(200)),
    ]
  );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_401_is_reported_not_retried_forever() {
  let tb = Testbed::start(&["--dialect", "sse-ref", "--auth", "client-credentials"]).await;
  let client = tb.client(json!({"dialect": "sse"}));
  tb.faults(json!({"kind": "expire_token", "path": "/boxes$", "times": 0}))
    .await;
  let error = client.list_boxes(None, None).await.unwrap_err();
  assert_eq!(error.code(), "api_error");
  assert!(
    error
      .to_string()
      .starts_with("BoxLite API error 401: token expired"),
    "{error}"
  );
  let log = tb.requests().await;
  assert_eq!(calls(&log, "GET", "/boxes").len(), 2, "one retry only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_client_credentials_fail_without_echoing_the_secret() {
  let tb = Testbed::start(&["--dialect", "sse-ref", "--auth", "client-credentials"]).await;
  let config =
    tb.config(json!({"clientId": "test-client", "clientSecret": "wrong-secret-4711", "dialect": "sse"}));
  let client = rest::connect_with(&config, quick_tuning()).unwrap();
  let error = client.list_boxes(None, None).await.unwrap_err();
  let shown = format!("{error} {error:?} {client:?}");
  assert!(
    error
      .to_string()
      .starts_with("BoxLite API error 401: OAuth2 token request refused"),
    "{error}"
  );
  assert!(!shown.contains("wrong-secret-4711"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_api_token_never_appears_in_errors_or_debug_output() {
  let tb = Testbed::start(&["--dialect", "current", "--auth", "token"]).await;
  let secret = "blk_live_leaky-token-0123456789";
  let client = rest::connect_with(
    &tb.config(json!({"apiToken": secret, "dialect": "current"})),
    quick_tuning(),
  )
  .unwrap();
  let error = client.get_box("b1").await.unwrap_err();
  assert!(error.to_string().starts_with("BoxLite API error 401"), "{error}");
  // A server that echoes the credential back gets it scrubbed.
  let client = tb.client(json!({}));
  let token = tb.info["token"].as_str().unwrap().to_string();
  tb.faults(json!({"kind": "error", "status": 400, "path": "/boxes/echo$",
                   "body": {"error": {"message": format!("bad header Bearer {token}"), "type": "AuthError", "code": "unauthenticated"}}}))
    .await;
  let echoed = client.get_box("echo").await.unwrap_err();
  for shown in [
    error.to_string(),
    format!("{error:?}"),
    format!("{client:?}"),
    echoed.to_string(),
    format!("{echoed:?}"),
  ] {
    assert!(!shown.contains(secret) && !shown.contains(&token), "{shown}");
  }
  assert!(echoed.to_string().contains("Bearer [REDACTED]"), "{echoed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_credentials_no_authorization_header_is_ever_sent() {
  for dialect in [Dialect::SseRef, Dialect::Current, Dialect::Boxrun] {
    let tb = Testbed::start(&["--dialect", dialect.name(), "--auth", "none"]).await;
    let client = tb.client(json!({}));
    let id = create_running_box(&client).await;
    client.exec(&id, argv(&["true"])).await.unwrap();
    client
      .upload_files(&id, "/root/x", stream_of(tar_of(&[("f", b"1")])))
      .await
      .unwrap();
    read_all(client.download_files(&id, "/root/x").await.unwrap()).await;
    let extras = match dialect {
      Dialect::SseRef | Dialect::SseServe | Dialect::Current => true,
      Dialect::Boxrun => false,
    };
    if extras {
      client.stop_box(&id).await.unwrap();
      let archive = read_all(client.export_box(&id).await.unwrap()).await;
      client.import_box(stream_of(archive)).await.unwrap();
    }
    let log = tb.requests().await;
    assert!(log.len() > 5);
    for entry in &log {
      assert_eq!(entry["authorization"]["present"], false, "{dialect}: {entry:#}");
    }
  }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_token_goes_on_every_request_including_the_websocket_upgrade() {
  let tb = Testbed::start(&["--dialect", "current", "--auth", "token"]).await;
  let client = tb.client(json!({}));
  assert_eq!(client.dialect().await.unwrap(), Dialect::Current);
  let id = create_running_box(&client).await;
  client.exec(&id, argv(&["true"])).await.unwrap();
  let log = tb.requests().await;
  let token = tb.info["token"].as_str().unwrap();
  let attach = log
    .iter()
    .find(|e| e["websocket"] == true)
    .expect("an attach request");
  assert_eq!(bearer_of(attach), Some(format!("Bearer {token}")));
  for entry in log.iter().filter(|e| e["path"] != "/v1/config") {
    assert_eq!(bearer_of(entry), Some(format!("Bearer {token}")), "{entry:#}");
  }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_followed_only_within_the_configured_origin() {
  let _ = rustls::crypto::ring::default_provider().install_default();
  let (elsewhere, mut elsewhere_seen) = raw_server(|_| {
    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}"
      .to_string()
  })
  .await;
  let target = elsewhere.clone();
  let (home, mut home_seen) = raw_server(move |path| {
    let body = r#"{"id":"b2","status":"running"}"#;
    match path {
      "/v1/boxes/moved" => "HTTP/1.1 307 Temporary Redirect\r\nlocation: /v1/boxes/b2\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into(),
      "/v1/boxes/away" => format!("HTTP/1.1 302 Found\r\nlocation: {target}/v1/boxes/b3\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"),
      _ => format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()),
    }
  })
  .await;
  let options = json!({"apiUrl": home, "apiToken": "tok-redirect-secret", "dialect": "boxrun"});
  let boxlite_core::config::AdapterConfig::Remote(config) =
    boxlite_core::config::AdapterConfig::parse(&options).unwrap()
  else {
    panic!()
  };
  let client = rest::connect_with(&config, quick_tuning()).unwrap();

  let same = client
    .get_box("moved")
    .await
    .expect("same-origin redirect is followed");
  assert_eq!(same.id, "b2");
  let first = home_seen.recv().await.unwrap();
  let second = home_seen.recv().await.unwrap();
  assert!(first.contains("GET /v1/boxes/moved ") && second.contains("GET /v1/boxes/b2 "));
  assert!(second
    .to_ascii_lowercase()
    .contains("authorization: bearer tok-redirect-secret"));

  let error = client.get_box("away").await.unwrap_err();
  assert!(error.to_string().contains("not followed"), "{error}");
  assert!(!error.to_string().contains("tok-redirect-secret"));
  tokio::time::sleep(Duration::from_millis(200)).await;
  assert!(
    elsewhere_seen.try_recv().is_err(),
    "nothing, let alone the token, reached the other origin"
  );
}
