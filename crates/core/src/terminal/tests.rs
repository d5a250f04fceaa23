//! `startTerminal`: its options, and the server end to end over the fake client's scripted shell
//! (`FakeClient::with_scripted_shell`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::session::DETECT_GRACE;
use super::{shell_of, TerminalInfo, TerminalMode, TerminalOptions};
use crate::adapter::Adapter;
use crate::testing::FakeClient;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[test]
fn options_default_to_bash_and_the_native_mode() {
  let options: TerminalOptions =
    serde_json::from_value(serde_json::json!({"hostname": "127.0.0.1", "other": 1})).unwrap();
  assert_eq!(shell_of(&options).unwrap(), "/bin/bash");
  assert_eq!(options.mode, None);
  let ttyd: TerminalOptions =
    serde_json::from_value(serde_json::json!({"mode": "ttyd", "shell": "/bin/sh"})).unwrap();
  assert_eq!(ttyd.mode, Some(TerminalMode::Ttyd));
  assert!(serde_json::from_value::<TerminalOptions>(serde_json::json!({"mode": "web"})).is_err());
  assert!(shell_of(&TerminalOptions {
    shell: Some(" ".into()),
    ..Default::default()
  })
  .is_err());
}

type Client = WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

async fn setup(greeting: &'static str) -> (Adapter, Arc<FakeClient>, TerminalInfo) {
  let shell = Arc::new(
    FakeClient::new()
      .with_running_box("box1")
      .with_scripted_shell(greeting),
  );
  let adapter = Adapter::with_client(
    &serde_json::json!({"apiUrl": "http://127.0.0.1:1"}),
    shell.clone(),
  );
  let info = adapter
    .start_terminal("box1", &TerminalOptions::default())
    .await
    .unwrap();
  (adapter, shell, info)
}

async fn connect(url: &str, tty: bool) -> Client {
  let mut request = url.into_client_request().unwrap();
  if tty {
    request
      .headers_mut()
      .insert("sec-websocket-protocol", HeaderValue::from_static("tty"));
  }
  let (ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
  let protocol = response
    .headers()
    .get("sec-websocket-protocol")
    .map(|v| v.to_str().unwrap().to_string());
  assert_eq!(protocol.as_deref(), tty.then_some("tty"));
  ws
}

/// The next data frame (skipping pings), within 5 s.
async fn next(ws: &mut Client) -> Message {
  loop {
    let message = tokio::time::timeout(Duration::from_secs(5), ws.next())
      .await
      .expect("a frame in time");
    match message {
      Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
      Some(Ok(message)) => return message,
      other => panic!("connection ended: {other:?}"),
    }
  }
}

fn binary(frame: &[u8]) -> Message {
  Message::Binary(Bytes::copy_from_slice(frame))
}

#[tokio::test]
async fn core_framing_relays_input_resize_and_closes_on_exit() {
  let (_adapter, shell, info) = setup("").await;
  assert!(info
    .url
    .starts_with(&format!("ws://127.0.0.1:{}/terminal/", info.port)));
  let mut ws = connect(&info.url, false).await;
  ws.send(binary(b"\x00hello\r")).await.unwrap();
  assert_eq!(next(&mut ws).await, binary(b"\x00out:hello\r\n"));
  ws.send(binary(b"\x01{\"columns\":100,\"rows\":30}"))
    .await
    .unwrap();
  ws.send(binary(b"\x00size\r")).await.unwrap();
  assert_eq!(next(&mut ws).await, binary(b"\x0030 100\r\n"));
  ws.send(binary(b"\x00exit\r")).await.unwrap();
  match next(&mut ws).await {
    Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Normal),
    other => panic!("expected a close, got {other:?}"),
  }
  let request = shell.shell_requests()[0].clone();
  assert_eq!(
    (request.cmd, request.tty),
    (vec!["/bin/bash".to_string()], Some(true))
  );
  assert_eq!(request.env.unwrap()["TERM"], "xterm-256color");
  assert!(
    shell.shell_signals().is_empty(),
    "an exited shell is not signalled"
  );
}

#[tokio::test]
async fn ttyd_framing_greets_sizes_from_the_opening_message_and_relays() {
  let (_adapter, _shell, info) = setup("").await;
  let mut ws = connect(&info.url, true).await;
  ws.send(binary(br#"{"AuthToken":"","columns":90,"rows":20}"#))
    .await
    .unwrap();
  assert_eq!(next(&mut ws).await, binary(b"1/bin/bash (box1)"));
  assert_eq!(next(&mut ws).await, binary(b"2{}"));
  ws.send(Message::Text("0size\r".into())).await.unwrap();
  assert_eq!(next(&mut ws).await, binary(b"020 90\r\n"));
  ws.send(binary(br#"1{"columns":132,"rows":43}"#)).await.unwrap();
  ws.send(binary(b"0size\r")).await.unwrap();
  assert_eq!(next(&mut ws).await, binary(b"043 132\r\n"));
}

#[tokio::test]
async fn a_silent_client_gets_the_prompt_in_cores_framing_after_the_grace() {
  let (_adapter, _shell, info) = setup("prompt$ ").await;
  let mut ws = connect(&info.url, false).await;
  let started = Instant::now();
  assert_eq!(next(&mut ws).await, binary(b"\x00prompt$ "));
  assert!(started.elapsed() >= DETECT_GRACE - Duration::from_millis(50));
}

#[tokio::test]
async fn held_output_follows_the_framing_of_a_late_first_frame() {
  let (_adapter, _shell, info) = setup("prompt$ ").await;
  let mut ws = connect(&info.url, false).await;
  ws.send(binary(b"0x\r")).await.unwrap();
  assert_eq!(next(&mut ws).await, binary(b"1/bin/bash (box1)"));
  assert_eq!(next(&mut ws).await, binary(b"2{}"));
  assert_eq!(next(&mut ws).await, binary(b"0prompt$ "));
  assert_eq!(next(&mut ws).await, binary(b"0out:x\r\n"));
}

#[tokio::test]
async fn wrong_tokens_and_paths_are_refused_before_the_upgrade() {
  let (_adapter, _shell, info) = setup("").await;
  let wrong = format!("ws://127.0.0.1:{}/terminal/{}/ws", info.port, "0".repeat(64));
  for (url, status) in [(wrong, 403), (format!("ws://127.0.0.1:{}/ws", info.port), 404)] {
    match tokio_tungstenite::connect_async(url.as_str()).await {
      Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
        assert_eq!(response.status().as_u16(), status)
      }
      other => panic!("{url}: expected HTTP {status}, got {:?}", other.map(|_| ())),
    }
  }
}

#[tokio::test]
async fn a_wrong_auth_token_closes_with_policy_violation() {
  let (_adapter, shell, info) = setup("").await;
  let mut ws = connect(&info.url, true).await;
  ws.send(binary(br#"{"AuthToken":"guess","columns":80,"rows":24}"#))
    .await
    .unwrap();
  match next(&mut ws).await {
    Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Policy),
    other => panic!("expected a close, got {other:?}"),
  }
  assert!(shell.shell_requests().is_empty(), "no shell for a refused client");
}

#[tokio::test]
async fn closing_the_socket_hangs_up_the_shell() {
  let (_adapter, shell, info) = setup("").await;
  let mut ws = connect(&info.url, false).await;
  ws.send(binary(b"\x00hi\r")).await.unwrap();
  next(&mut ws).await;
  ws.close(None).await.unwrap();
  let deadline = Instant::now() + Duration::from_secs(5);
  while shell.shell_signals().is_empty() && Instant::now() < deadline {
    tokio::time::sleep(Duration::from_millis(10)).await;
  }
  assert_eq!(
    shell.shell_signals(),
    [1],
    "SIGHUP, and no SIGKILL once the shell exited"
  );
}

#[tokio::test]
async fn dispose_closes_connections_and_servers_and_refuses_new_terminals() {
  let (adapter, shell, info) = setup("").await;
  let mut ws = connect(&info.url, false).await;
  ws.send(binary(b"\x00hi\r")).await.unwrap();
  next(&mut ws).await;
  adapter.dispose().await.unwrap();
  match next(&mut ws).await {
    Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Away),
    other => panic!("expected a close, got {other:?}"),
  }
  assert_eq!(shell.shell_signals(), [1]);
  assert_eq!(adapter.terminals.running(), 0);
  assert!(tokio_tungstenite::connect_async(info.url.as_str()).await.is_err());
  let err = adapter
    .start_terminal("box1", &TerminalOptions::default())
    .await
    .unwrap_err();
  assert_eq!(err.code(), "disposed");
}

#[tokio::test]
async fn destroying_the_box_closes_its_terminal_servers_and_only_those() {
  let shell = Arc::new(
    FakeClient::new()
      .with_running_box("box1")
      .with_running_box("box2")
      .with_scripted_shell(""),
  );
  let adapter = Adapter::with_client(
    &serde_json::json!({"apiUrl": "http://127.0.0.1:1"}),
    shell.clone(),
  );
  let options = TerminalOptions::default();
  let first = adapter.start_terminal("box1", &options).await.unwrap();
  adapter.start_terminal("box1", &options).await.unwrap();
  let other = adapter.start_terminal("box2", &options).await.unwrap();
  assert_eq!(adapter.terminals.running(), 3);
  adapter.destroy_sandbox("box1").await.unwrap();
  assert_eq!(adapter.terminals.running(), 1);
  assert!(tokio_tungstenite::connect_async(first.url.as_str())
    .await
    .is_err());
  let mut ws = connect(&other.url, false).await;
  ws.send(binary(b"\x00hi\r")).await.unwrap();
  next(&mut ws).await;
}

#[tokio::test]
async fn a_terminal_server_closes_after_its_idle_expiry_but_not_while_connected() {
  let shell = Arc::new(FakeClient::new().with_running_box("box1").with_scripted_shell(""));
  let mut adapter = Adapter::with_client(
    &serde_json::json!({"apiUrl": "http://127.0.0.1:1"}),
    shell.clone(),
  );
  let expiry = Duration::from_millis(400);
  adapter.terminals = super::server::Terminals::with_idle_expiry(expiry);
  let options = TerminalOptions::default();
  let unused = adapter.start_terminal("box1", &options).await.unwrap();
  let used = adapter.start_terminal("box1", &options).await.unwrap();
  let mut ws = connect(&used.url, false).await;
  ws.send(binary(b"\x00hi\r")).await.unwrap();
  next(&mut ws).await;
  tokio::time::sleep(expiry * 3).await;
  assert_eq!(adapter.terminals.running(), 1, "the connected one stays");
  assert!(tokio_tungstenite::connect_async(unused.url.as_str())
    .await
    .is_err());
  ws.close(None).await.unwrap();
  let deadline = Instant::now() + expiry * 10;
  while adapter.terminals.running() > 0 && Instant::now() < deadline {
    tokio::time::sleep(Duration::from_millis(20)).await;
  }
  assert_eq!(
    adapter.terminals.running(),
    0,
    "idle once its last connection ended"
  );
}
