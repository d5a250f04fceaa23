//! Remote mode behind real networks, on loopback only: an HTTPS server whose certificate comes
//! from a private CA generated here is refused by default (the error names the certificate
//! problem) and trusted through `NODE_EXTRA_CA_CERTS` or `SSL_CERT_FILE`; HTTP/2 and HTTP/1.1
//! both work; `HTTPS_PROXY` tunnels through CONNECT and `NO_PROXY` bypasses the proxy.
//!
//! The trust and proxy settings are process environment, read when a client is built, so the
//! scenarios run one after another in this custom harness (no parallel test threads).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use boxlite_core::client::BoxClient;
use boxlite_core::config::AdapterConfig;
use boxlite_core::rest;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const ENV: [&str; 7] = [
  "NODE_EXTRA_CA_CERTS",
  "SSL_CERT_FILE",
  "SSL_CERT_DIR",
  "HTTPS_PROXY",
  "https_proxy",
  "NO_PROXY",
  "no_proxy",
];

/// A private CA and a server certificate for `localhost` and 127.0.0.1 signed by it.
struct Pki {
  ca_pem: String,
  cert: rustls::pki_types::CertificateDer<'static>,
  key: rustls::pki_types::PrivateKeyDer<'static>,
}

fn private_pki() -> Pki {
  let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
  ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
  ca.distinguished_name
    .push(DnType::CommonName, "sandbank-boxlite test private CA");
  let ca_key = KeyPair::generate().unwrap();
  let ca_cert = ca.self_signed(&ca_key).unwrap();
  let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
  let leaf_key = KeyPair::generate().unwrap();
  let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key).unwrap();
  Pki {
    ca_pem: ca_cert.pem(),
    cert: leaf_cert.der().clone(),
    key: rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
  }
}

/// What the HTTPS server saw: one `(HTTP version, path)` per request.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// Serves a BoxRun-shaped `GET /v1/boxes/<id>` over TLS, offering the given ALPN protocols.
async fn https_server(pki: &Pki, alpn: &[&[u8]]) -> (SocketAddr, Seen) {
  let provider = Arc::new(rustls::crypto::ring::default_provider());
  let mut config = rustls::ServerConfig::builder_with_provider(provider)
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![pki.cert.clone()], pki.key.clone_key())
    .unwrap();
  config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
  let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
  let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
  let addr = listener.local_addr().unwrap();
  let seen: Seen = Arc::default();
  let log = seen.clone();
  tokio::spawn(async move {
    loop {
      let Ok((tcp, _)) = listener.accept().await else {
        return;
      };
      let acceptor = acceptor.clone();
      let log = log.clone();
      tokio::spawn(async move {
        // A client that refuses the certificate ends the handshake: nothing to serve.
        let Ok(tls) = acceptor.accept(tcp).await else {
          return;
        };
        let service = service_fn(move |request: Request<hyper::body::Incoming>| {
          let log = log.clone();
          async move {
            let path = request.uri().path().to_string();
            log
              .lock()
              .unwrap()
              .push((format!("{:?}", request.version()), path.clone()));
            let id = path.rsplit('/').next().unwrap_or_default().to_string();
            let body =
              json!({"id": id, "status": "running", "image": "alpine", "created_at": "2026-01-01T00:00:00Z"});
            Ok::<_, std::convert::Infallible>(
              Response::builder()
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body.to_string())))
                .unwrap(),
            )
          }
        });
        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
          .serve_connection(TokioIo::new(tls), service)
          .await;
      });
    }
  });
  (addr, seen)
}

/// A CONNECT-only forward proxy; records each tunnel's target.
async fn connect_proxy() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
  let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
  let addr = listener.local_addr().unwrap();
  let targets: Arc<Mutex<Vec<String>>> = Arc::default();
  let log = targets.clone();
  tokio::spawn(async move {
    loop {
      let Ok((client, _)) = listener.accept().await else {
        return;
      };
      let log = log.clone();
      tokio::spawn(async move {
        let mut client = BufReader::new(client);
        let mut request_line = String::new();
        if client.read_line(&mut request_line).await.is_err() {
          return;
        }
        loop {
          let mut header = String::new();
          match client.read_line(&mut header).await {
            Ok(0) | Err(_) => return,
            Ok(_) if header == "\r\n" => break,
            Ok(_) => {}
          }
        }
        let mut parts = request_line.split_whitespace();
        let (Some("CONNECT"), Some(target)) = (parts.next(), parts.next()) else {
          let _ = client
            .get_mut()
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
            .await;
          return;
        };
        log.lock().unwrap().push(target.to_string());
        let Ok(mut upstream) = TcpStream::connect(target).await else {
          let _ = client
            .get_mut()
            .write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
            .await;
          return;
        };
        if client
          .get_mut()
          .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
          .await
          .is_err()
        {
          return;
        }
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
      });
    }
  });
  (addr, targets)
}

fn client_for(url: &str) -> Result<Arc<dyn BoxClient>, boxlite_core::Error> {
  let config = json!({"apiUrl": url, "dialect": "boxrun"});
  match AdapterConfig::parse(&config).unwrap() {
    AdapterConfig::Remote(remote) => rest::connect(&remote),
    AdapterConfig::Local(_) => unreachable!(),
  }
}

/// Runs `body` with exactly the given variables of `ENV` set (the others unset).
async fn with_env<F: std::future::Future<Output = ()>>(vars: &[(&str, &str)], body: impl FnOnce() -> F) {
  for name in ENV {
    std::env::remove_var(name);
  }
  for (name, value) in vars {
    std::env::set_var(name, value);
  }
  body().await;
  for name in ENV {
    std::env::remove_var(name);
  }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
  let path = dir.join(name);
  std::fs::write(&path, text).unwrap();
  path
}

async fn run(name: &str, scenario: impl std::future::Future<Output = ()>) {
  scenario.await;
  println!("test {name} ... ok");
}

fn main() {
  let runtime = tokio::runtime::Builder::new_multi_thread()
    .worker_threads(2)
    .enable_all()
    .build()
    .unwrap();
  runtime.block_on(async {
    let pki = private_pki();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = write(dir.path(), "private-ca.pem", &pki.ca_pem);
    let ca = ca_file.to_str().unwrap();
    let (both, seen_both) = https_server(&pki, &[b"h2", b"http/1.1"]).await;
    let (h1_only, seen_h1) = https_server(&pki, &[b"http/1.1"]).await;
    let url = |addr: SocketAddr| format!("https://localhost:{}", addr.port());

    run(
      "private_ca_is_refused_by_default_with_an_error_naming_the_certificate_problem",
      async {
        with_env(&[], || async {
          let error = client_for(&url(both)).unwrap().get_box("b1").await.unwrap_err();
          let text = error.to_string();
          assert_eq!(error.code(), "transport", "{text}");
          assert!(
            text.contains("TLS certificate problem (invalid peer certificate: UnknownIssuer)")
              && text.contains("NODE_EXTRA_CA_CERTS"),
            "{text}"
          );
        })
        .await
      },
    )
    .await;

    run(
      "node_extra_ca_certs_adds_the_private_ca_and_http2_is_negotiated",
      async {
        with_env(&[("NODE_EXTRA_CA_CERTS", ca)], || async {
          seen_both.lock().unwrap().clear();
          let record = client_for(&url(both)).unwrap().get_box("b1").await.unwrap();
          assert_eq!((record.id.as_str(), record.status.as_str()), ("b1", "running"));
          assert_eq!(
            seen_both.lock().unwrap().as_slice(),
            [("HTTP/2.0".to_string(), "/v1/boxes/b1".to_string())]
          );
        })
        .await
      },
    )
    .await;

    run("ssl_cert_file_trusts_the_private_ca_and_http1_works", async {
      with_env(&[("SSL_CERT_FILE", ca)], || async {
        seen_h1.lock().unwrap().clear();
        let record = client_for(&url(h1_only)).unwrap().get_box("b2").await.unwrap();
        assert_eq!(record.id, "b2");
        assert_eq!(
          seen_h1.lock().unwrap().as_slice(),
          [("HTTP/1.1".to_string(), "/v1/boxes/b2".to_string())]
        );
      })
      .await
    })
    .await;

    run(
      "an_unreadable_node_extra_ca_certs_is_an_environment_error_naming_it",
      async {
        with_env(&[("NODE_EXTRA_CA_CERTS", "/nonexistent/ca.pem")], || async {
          let error = client_for(&url(both))
            .err()
            .expect("building the client must fail");
          assert_eq!(error.code(), "environment");
          assert!(
            error
              .to_string()
              .contains("NODE_EXTRA_CA_CERTS=/nonexistent/ca.pem cannot be read"),
            "{error}"
          );
        })
        .await
      },
    )
    .await;

    let (proxy, tunnels) = connect_proxy().await;
    let proxy_url = format!("http://{proxy}");

    run("https_proxy_tunnels_through_connect", async {
      with_env(
        &[("NODE_EXTRA_CA_CERTS", ca), ("HTTPS_PROXY", &proxy_url)],
        || async {
          tunnels.lock().unwrap().clear();
          let record = client_for(&url(both)).unwrap().get_box("b3").await.unwrap();
          assert_eq!(record.id, "b3");
          assert_eq!(
            tunnels.lock().unwrap().as_slice(),
            [format!("localhost:{}", both.port())]
          );
        },
      )
      .await
    })
    .await;

    run("no_proxy_bypasses_the_proxy_for_listed_hosts", async {
      with_env(
        &[
          ("NODE_EXTRA_CA_CERTS", ca),
          ("HTTPS_PROXY", &proxy_url),
          ("NO_PROXY", "localhost"),
        ],
        || async {
          tunnels.lock().unwrap().clear();
          let record = client_for(&url(both)).unwrap().get_box("b4").await.unwrap();
          assert_eq!(record.id, "b4");
          assert!(
            tunnels.lock().unwrap().is_empty(),
            "{:?}",
            tunnels.lock().unwrap()
          );
        },
      )
      .await
    })
    .await;
  });
}
