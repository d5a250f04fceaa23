//! Opening an attach WebSocket: the only place one is opened (same origin, bearer and proxy as
//! the HTTP requests, a bounded handshake, one retry after a 401 with a fresh OAuth2 token).

use std::time::Instant;

use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};
use tokio_tungstenite::Connector;

use super::{Transport, WS_HANDSHAKE_TIMEOUT};
use crate::error::{Error, Result};
use crate::rest::body::chain;
use crate::rest::request::Spec;
use crate::rest::{proxy, ws};

impl Transport {
  /// Opens the WebSocket of `spec` (an attach path): the only place a WebSocket is opened. The
  /// URL follows the HTTP one, the bearer goes on the upgrade, the handshake is bounded, and a
  /// 401 is retried once with a fresh OAuth2 token.
  pub async fn open_websocket(&self, spec: &Spec) -> Result<(ws::WsSink, ws::WsSource)> {
    self.open_websocket_on(spec, None).await
  }

  /// A connection to the server (through the environment's proxy when it names one) for an
  /// attach whose path is not known yet: opened while the request that names the execution is
  /// on its way, it takes the connection set-up off the attach's own round trips (an upgrade
  /// cannot reuse the HTTP pool's connections). None if it cannot be opened: the attach then
  /// connects by itself and reports what goes wrong.
  pub async fn preconnect(&self) -> Option<TcpStream> {
    match tokio::time::timeout(WS_HANDSHAKE_TIMEOUT, proxy::connect(&self.api_url)).await {
      Ok(Ok(tcp)) => {
        let _ = tcp.set_nodelay(true);
        Some(tcp)
      }
      _ => None,
    }
  }

  /// `open_websocket`, on `early` (from `preconnect`) when there is one.
  pub async fn open_websocket_on(
    &self,
    spec: &Spec,
    mut early: Option<TcpStream>,
  ) -> Result<(ws::WsSink, ws::WsSource)> {
    let mut refreshed = false;
    loop {
      let bearer = self.bearer().await?;
      let mut url = self.url(spec);
      let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
      let _ = url.set_scheme(scheme);
      let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| Error::Internal(format!("bad WebSocket request: {}", chain(&e))))?;
      if let Some(token) = &bearer {
        let mut value = format!("Bearer {}", token.expose())
          .parse::<tungstenite::http::HeaderValue>()
          .map_err(|_| Error::InvalidConfig {
            field: "config.apiToken".into(),
            problem: "is not a valid header value".into(),
          })?;
        value.set_sensitive(true);
        request
          .headers_mut()
          .insert(tungstenite::http::header::AUTHORIZATION, value);
      }
      let connector = if scheme == "wss" {
        Connector::Rustls(self.ws_tls.clone())
      } else {
        Connector::Plain
      };
      let began = Instant::now();
      // Through the environment's proxy when it names one for this host (reqwest does the same
      // for HTTP requests).
      let early = early.take();
      let connecting = async {
        let tcp = match early {
          Some(tcp) => tcp,
          None => proxy::connect(&url).await.map_err(tungstenite::Error::Io)?,
        };
        let _ = tcp.set_nodelay(true);
        tokio_tungstenite::client_async_tls_with_config(request, tcp, None, Some(connector)).await
      };
      let outcome = match tokio::time::timeout(WS_HANDSHAKE_TIMEOUT, connecting).await {
        Err(_) => return Err(self.timeout(spec, WS_HANDSHAKE_TIMEOUT)),
        Ok(outcome) => outcome,
      };
      match outcome {
        Ok((socket, _)) => {
          tracing::debug!(method = %"GET", path = %spec.path, status = 101, ms = %crate::diag::ms(began), "websocket open");
          return Ok(socket.split());
        }
        Err(tungstenite::Error::Http(response)) => {
          let status = response.status().as_u16();
          tracing::debug!(method = %"GET", path = %spec.path, status, ms = %crate::diag::ms(began), "websocket refused");
          if status == 401 && self.uses_client_credentials() && !refreshed {
            if let Some(used) = &bearer {
              self.invalidate(used).await;
            }
            refreshed = true;
            continue;
          }
          let body = response.body().clone().unwrap_or_default();
          return Err(self.api_error_from(spec, status, &body));
        }
        Err(e) => {
          return Err(Error::Transport {
            method: spec.method.to_string(),
            path: spec.path.clone(),
            message: self.redact(&format!("WebSocket attach failed: {}", chain(&e))),
          })
        }
      }
    }
  }
}
