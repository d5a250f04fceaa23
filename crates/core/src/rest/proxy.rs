//! WebSockets through the proxy the environment names. reqwest applies `HTTPS_PROXY`,
//! `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` to HTTP requests itself; the attach WebSocket is
//! opened by tokio-tungstenite, which knows no proxies, so its TCP connection is made here: with
//! the same rules (hyper-util's matcher, which reqwest uses too), through an HTTP CONNECT tunnel.

use hyper_util::client::proxy::matcher::Matcher;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::http::Uri;
use url::Url;

/// A proxy's reply head is read up to this size.
const MAX_REPLY_HEAD: usize = 16 * 1024;

/// A TCP connection to `url`'s host and port: direct, or tunnelled through the proxy the
/// environment names for it.
pub async fn connect(url: &Url) -> std::io::Result<TcpStream> {
  connect_with(&Matcher::from_env(), url).await
}

/// `connect` with explicit proxy rules (tests).
pub async fn connect_with(rules: &Matcher, url: &Url) -> std::io::Result<TcpStream> {
  let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, what.to_string());
  let (bare_host, host) = match url.host() {
    Some(url::Host::Ipv6(ip)) => (ip.to_string(), format!("[{ip}]")),
    Some(host) => (host.to_string(), host.to_string()),
    None => return Err(invalid("the URL has no host")),
  };
  let port = url
    .port_or_known_default()
    .ok_or_else(|| invalid("the URL has no port"))?;
  let target = format!("{host}:{port}");
  // The matcher speaks http/https; ws/wss take the same proxies.
  let scheme = if matches!(url.scheme(), "wss" | "https") {
    "https"
  } else {
    "http"
  };
  let uri: Uri = format!("{scheme}://{target}/")
    .parse()
    .map_err(|_| invalid("the URL cannot be routed"))?;
  let Some(proxy) = rules.intercept(&uri) else {
    return TcpStream::connect((bare_host.as_str(), port)).await;
  };
  let proxy_uri = proxy.uri();
  if proxy_uri.scheme_str() != Some("http") {
    return Err(std::io::Error::new(
      std::io::ErrorKind::Unsupported,
      format!(
        "the proxy {}://{} is not an http:// proxy; WebSockets go through http:// proxies only (CONNECT)",
        proxy_uri.scheme_str().unwrap_or("?"),
        proxy_uri.authority().map(|a| a.host()).unwrap_or("?")
      ),
    ));
  }
  let proxy_host = proxy_uri
    .host()
    .ok_or_else(|| invalid("the proxy URL has no host"))?;
  let proxy_port = proxy_uri.port_u16().unwrap_or(80);
  tracing::debug!(%target, proxy = %format_args!("{proxy_host}:{proxy_port}"), "websocket through proxy (CONNECT)");
  let mut tcp = TcpStream::connect((proxy_host.trim_matches(['[', ']']), proxy_port)).await?;
  let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
  if let Some(auth) = proxy.basic_auth().and_then(|v| v.to_str().ok()) {
    head.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
  }
  head.push_str("\r\n");
  tcp.write_all(head.as_bytes()).await?;
  let status = read_reply_status(&mut tcp).await?;
  if status != 200 {
    return Err(std::io::Error::other(format!(
      "the proxy {proxy_host}:{proxy_port} refused to tunnel to {target} (CONNECT answered {status}{})",
      if status == 407 {
        ": proxy authentication required; put user:password in the proxy URL"
      } else {
        ""
      }
    )));
  }
  Ok(tcp)
}

/// Reads the proxy's reply head byte by byte (nothing of the tunnel after it may be consumed)
/// and returns its status code.
async fn read_reply_status(tcp: &mut TcpStream) -> std::io::Result<u16> {
  let mut head = Vec::with_capacity(256);
  while !head.ends_with(b"\r\n\r\n") {
    if head.len() >= MAX_REPLY_HEAD {
      return Err(std::io::Error::other("the proxy's reply head is too long"));
    }
    let byte = tcp.read_u8().await?;
    head.push(byte);
  }
  let line = String::from_utf8_lossy(&head);
  line
    .split_whitespace()
    .nth(1)
    .and_then(|code| code.parse().ok())
    .ok_or_else(|| std::io::Error::other(format!("the proxy sent no HTTP reply: {:?}", line.lines().next())))
}

#[cfg(test)]
mod tests {
  use super::*;
  use std::sync::{Arc, Mutex};
  use tokio::io::{AsyncBufReadExt, BufReader};
  use tokio::net::TcpListener;

  /// An echo server (the WebSocket server's stand-in) and a CONNECT proxy answering `status`.
  async fn echo_and_proxy(
    status: u16,
  ) -> (
    std::net::SocketAddr,
    std::net::SocketAddr,
    Arc<Mutex<Vec<String>>>,
  ) {
    let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    tokio::spawn(async move {
      while let Ok((mut tcp, _)) = echo.accept().await {
        tokio::spawn(async move {
          let (mut r, mut w) = tcp.split();
          let _ = tokio::io::copy(&mut r, &mut w).await;
        });
      }
    });
    let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = proxy.local_addr().unwrap();
    let heads: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = heads.clone();
    tokio::spawn(async move {
      while let Ok((tcp, _)) = proxy.accept().await {
        let log = log.clone();
        tokio::spawn(async move {
          let mut tcp = BufReader::new(tcp);
          let mut head = String::new();
          loop {
            let mut line = String::new();
            if tcp.read_line(&mut line).await.unwrap_or(0) == 0 || line == "\r\n" {
              break;
            }
            head.push_str(&line);
          }
          let target = head.split_whitespace().nth(1).unwrap_or_default().to_string();
          log.lock().unwrap().push(head);
          let reply = format!("HTTP/1.1 {status} Whatever\r\n\r\n");
          tcp.get_mut().write_all(reply.as_bytes()).await.unwrap();
          if status == 200 {
            let mut upstream = TcpStream::connect(target).await.unwrap();
            let _ = tokio::io::copy_bidirectional(&mut tcp, &mut upstream).await;
          }
        });
      }
    });
    (echo_addr, proxy_addr, heads)
  }

  async fn echo_through(tcp: &mut TcpStream) -> Vec<u8> {
    tcp.write_all(b"ping").await.unwrap();
    let mut back = [0u8; 4];
    tcp.read_exact(&mut back).await.unwrap();
    back.to_vec()
  }

  #[tokio::test]
  async fn websockets_tunnel_through_the_proxy_with_connect_and_its_credentials() {
    let (echo, proxy, heads) = echo_and_proxy(200).await;
    let rules = Matcher::builder()
      .all(format!("http://user:pa55@{proxy}"))
      .build();
    let url = Url::parse(&format!("ws://{echo}/v1/boxes/b/attach")).unwrap();
    let mut tcp = connect_with(&rules, &url).await.unwrap();
    assert_eq!(echo_through(&mut tcp).await, b"ping");
    let heads = heads.lock().unwrap();
    assert_eq!(heads.len(), 1);
    assert!(
      heads[0].starts_with(&format!("CONNECT {echo} HTTP/1.1\r\n")),
      "{}",
      heads[0]
    );
    // user:pa55 in Basic form.
    assert!(
      heads[0].contains("Proxy-Authorization: Basic dXNlcjpwYTU1"),
      "{}",
      heads[0]
    );
  }

  #[tokio::test]
  async fn no_proxy_hosts_are_reached_directly() {
    let (echo, proxy, heads) = echo_and_proxy(200).await;
    let rules = Matcher::builder()
      .all(format!("http://{proxy}"))
      .no("127.0.0.1")
      .build();
    let url = Url::parse(&format!("wss://{echo}/attach")).unwrap();
    let mut tcp = connect_with(&rules, &url).await.unwrap();
    assert_eq!(echo_through(&mut tcp).await, b"ping");
    assert!(heads.lock().unwrap().is_empty());
  }

  #[tokio::test]
  async fn a_refused_tunnel_names_the_proxy_the_target_and_the_status() {
    let (echo, proxy, _) = echo_and_proxy(407).await;
    let rules = Matcher::builder().all(format!("http://{proxy}")).build();
    let url = Url::parse(&format!("ws://{echo}/attach")).unwrap();
    let error = connect_with(&rules, &url).await.unwrap_err().to_string();
    assert!(
      error.contains(&format!(
        "the proxy {proxy} refused to tunnel to {echo} (CONNECT answered 407"
      )) && error.contains("proxy authentication required"),
      "{error}"
    );
  }

  #[tokio::test]
  async fn non_http_proxies_are_refused_with_a_clear_error() {
    let rules = Matcher::builder().all("socks5://127.0.0.1:1").build();
    let url = Url::parse("ws://127.0.0.1:9/attach").unwrap();
    let error = connect_with(&rules, &url).await.unwrap_err().to_string();
    assert!(error.contains("is not an http:// proxy"), "{error}");
  }
}
