//! The only module that talks to servers: every HTTP attempt goes through `Transport::dispatch`
//! and every WebSocket through `Transport::open_websocket`. One pooled reqwest client per
//! adapter (rustls with the ring provider), the bearer (static, or an OAuth2 token cached and
//! refreshed, with one transparent retry after a 401), bounded retries with backoff, timeouts,
//! redirects kept on the configured origin, and the mapping of every failure onto `Error` with
//! method and path but never a query string or a credential.
//!
//! This file: the client, request building and the retrying dispatch. `credentials` (the bearer
//! and scrubbing credentials from text), `errors` (failures mapped onto `Error`) and `websocket`
//! (opening an attach WebSocket) extend the same `Transport`.

mod credentials;
mod errors;
mod websocket;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use reqwest::{header, redirect, StatusCode};
use serde_json::Value;
use url::Url;

use super::auth::CachedToken;
use super::body::{chain, content_type, idle_bounded, parse_json_body, track, watchdog, Progress, Stall};
use super::request::{Body, Deadline, Spec};
use crate::client::ByteStream;
use crate::config::{Auth, RemoteConfig, Secret};
use crate::error::{Error, Result};

/// Establishing a TCP/TLS connection; a server that does not answer a SYN in this time is down.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A metadata call (get, list, delete, …) end to end, body included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Calls that may boot a VM or pull an image first (BoxRun's synchronous create, start, the
/// first exec on a cold box); BoxRun's own clients wait up to 120 s, image pulls can take longer.
pub const SLOW_REQUEST_TIMEOUT: Duration = Duration::from_secs(600);
/// Silence on an open stream after which it is declared dead. Every server sends a keep-alive
/// every 15 s (SSE comments, WebSocket pings), so three missed ones mean the peer is gone.
pub const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(45);
/// Retries of an idempotent request after a connection failure or a 502/503/504.
pub const MAX_RETRIES: u32 = 3;
/// First backoff delay; doubled per retry up to `RETRY_MAX_DELAY`.
pub const RETRY_BASE_DELAY: Duration = Duration::from_millis(200);
pub const RETRY_MAX_DELAY: Duration = Duration::from_secs(2);
/// Same-origin redirects followed at most; cross-origin ones are never followed.
pub const MAX_REDIRECTS: usize = 5;
/// Error bodies are read up to this size before being parsed (and cut to 4 KiB for display).
const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// A WebSocket upgrade must complete in this time; a server that accepts TCP but never
/// answers the upgrade would otherwise hold the call forever.
pub const WS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Timing knobs, defaulting to the constants above; tests shorten them.
#[derive(Debug, Clone)]
pub struct Tuning {
  pub connect_timeout: Duration,
  pub request_timeout: Duration,
  pub slow_request_timeout: Duration,
  pub stream_idle_timeout: Duration,
  pub max_retries: u32,
  pub retry_base_delay: Duration,
}

impl Default for Tuning {
  fn default() -> Self {
    Tuning {
      connect_timeout: CONNECT_TIMEOUT,
      request_timeout: REQUEST_TIMEOUT,
      slow_request_timeout: SLOW_REQUEST_TIMEOUT,
      stream_idle_timeout: STREAM_IDLE_TIMEOUT,
      max_retries: MAX_RETRIES,
      retry_base_delay: RETRY_BASE_DELAY,
    }
  }
}

/// What goes in the body of one request.
pub enum Payload {
  None,
  /// Replayable bytes (JSON and forms are built from the `Spec`).
  Bytes(Bytes),
  /// Single-use: a request carrying it is never retried.
  Stream(ByteStream),
  Multipart(reqwest::multipart::Form),
}

impl Payload {
  fn replayable(&self) -> bool {
    matches!(self, Payload::None | Payload::Bytes(_))
  }
}

pub struct Transport {
  http: reqwest::Client,
  api_url: Url,
  auth: Auth,
  /// The OAuth2 token; the async lock also makes concurrent first requests fetch only once.
  token: tokio::sync::Mutex<Option<CachedToken>>,
  /// Every credential this client knows, for scrubbing server-echoed text.
  secrets: Mutex<Vec<Secret>>,
  ws_tls: Arc<rustls::ClientConfig>,
  pub tuning: Tuning,
}

impl std::fmt::Debug for Transport {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.debug_struct("Transport")
      .field("api_url", &self.api_url.as_str())
      .field("auth", &self.auth)
      .finish()
  }
}

fn same_origin(a: &Url, b: &Url) -> bool {
  a.scheme() == b.scheme()
    && a.host_str() == b.host_str()
    && a.port_or_known_default() == b.port_or_known_default()
}

impl Transport {
  /// Builds the client; no I/O happens here.
  pub fn new(config: &RemoteConfig, tuning: Tuning) -> Result<Self> {
    // Credentials must never reach another origin: redirects are followed only within the
    // configured scheme, host and port (a refused redirect surfaces as an API error).
    let policy = redirect::Policy::custom(|attempt| {
      if attempt.previous().len() > MAX_REDIRECTS {
        return attempt.error("too many redirects");
      }
      let same = attempt
        .previous()
        .first()
        .is_none_or(|first| same_origin(first, attempt.url()));
      if same {
        attempt.follow()
      } else {
        attempt.stop()
      }
    });
    let verifier = super::tls::verifier()?;
    let http = reqwest::Client::builder()
      .tls_backend_preconfigured(super::tls::client_config(
        verifier.clone(),
        &[b"h2", b"http/1.1"],
      )?)
      .connect_timeout(tuning.connect_timeout)
      .redirect(policy)
      .pool_idle_timeout(Duration::from_secs(90))
      .tcp_nodelay(true)
      .user_agent(concat!("sandbank-boxlite/", env!("CARGO_PKG_VERSION")))
      .build()
      .map_err(|e| Error::Internal(format!("cannot build the HTTP client: {}", chain(&e))))?;
    let mut secrets = Vec::new();
    match &config.auth {
      Auth::Token(t) => secrets.push(t.clone()),
      Auth::ClientCredentials { client_secret, .. } => secrets.push(client_secret.clone()),
      Auth::None => {}
    }
    Ok(Transport {
      http,
      api_url: config.api_url.clone(),
      auth: config.auth.clone(),
      token: tokio::sync::Mutex::new(None),
      secrets: Mutex::new(secrets),
      ws_tls: Arc::new(super::tls::client_config(verifier, &[b"http/1.1"])?),
      tuning,
    })
  }

  pub fn api_path(&self) -> &str {
    self.api_url.path()
  }

  pub fn uses_client_credentials(&self) -> bool {
    matches!(self.auth, Auth::ClientCredentials { .. })
  }

  /// The full URL of a spec (path already encoded; query encoded here).
  pub fn url(&self, spec: &Spec) -> Url {
    let mut url = self.api_url.clone();
    url.set_path(&spec.path);
    url.set_query(None);
    if !spec.query.is_empty() {
      let mut pairs = url.query_pairs_mut();
      for (k, v) in &spec.query {
        pairs.append_pair(k, v);
      }
    }
    url
  }

  fn build(&self, spec: &Spec, bearer: Option<&Secret>, payload: Payload) -> reqwest::RequestBuilder {
    let mut request = self.http.request(spec.method.clone(), self.url(spec));
    if let Some(accept) = spec.accept {
      request = request.header(header::ACCEPT, accept);
    }
    for (name, value) in &spec.headers {
      request = request.header(*name, *value);
    }
    if let Some(token) = bearer {
      let mut value = header::HeaderValue::from_str(&format!("Bearer {}", token.expose()))
        .unwrap_or_else(|_| header::HeaderValue::from_static("Bearer invalid"));
      value.set_sensitive(true);
      request = request.header(header::AUTHORIZATION, value);
    }
    match spec.deadline {
      Deadline::Normal => request = request.timeout(self.tuning.request_timeout),
      Deadline::Slow => request = request.timeout(self.tuning.slow_request_timeout),
      Deadline::Stream => {}
    }
    match (&spec.body, payload) {
      (Body::Json(value), _) => {
        request = request
          .header(header::CONTENT_TYPE, "application/json")
          .body(value.to_string());
      }
      (Body::Form(form), _) => {
        request = request
          .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
          .body(form.clone());
      }
      (Body::Stream(_) | Body::Bytes(_), Payload::Multipart(form)) => request = request.multipart(form),
      (Body::Stream(content_type) | Body::Bytes(content_type), Payload::Stream(stream)) => {
        let stream = stream.map_err(|e| std::io::Error::other(e.to_string()));
        request = request
          .header(header::CONTENT_TYPE, *content_type)
          .body(reqwest::Body::wrap_stream(stream));
      }
      (Body::Stream(content_type) | Body::Bytes(content_type), Payload::Bytes(bytes)) => {
        request = request.header(header::CONTENT_TYPE, *content_type).body(bytes);
      }
      (Body::Stream(content_type) | Body::Bytes(content_type), Payload::None) => {
        request = request
          .header(header::CONTENT_TYPE, *content_type)
          .body(Vec::new());
      }
      (Body::Empty, _) => {}
    }
    request
  }

  async fn send_once(
    &self,
    spec: &Spec,
    bearer: Option<&Secret>,
    payload: Payload,
  ) -> Result<reqwest::Response> {
    self
      .dispatch(spec, bearer, payload)
      .await?
      .map_err(|e| self.transport_error(spec, &e))
  }

  /// One HTTP attempt: the only place a request leaves. The outer error is a timeout of ours;
  /// the inner one reqwest's.
  async fn dispatch(
    &self,
    spec: &Spec,
    bearer: Option<&Secret>,
    payload: Payload,
  ) -> Result<std::result::Result<reqwest::Response, reqwest::Error>> {
    let began = Instant::now();
    let outcome = self.attempt(spec, bearer, payload).await;
    self.trace_attempt(spec, began, &outcome);
    outcome
  }

  /// The diagnostics line of one attempt: method, path (never the query), status or error,
  /// time to the response headers.
  fn trace_attempt(
    &self,
    spec: &Spec,
    began: Instant,
    outcome: &Result<std::result::Result<reqwest::Response, reqwest::Error>>,
  ) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
      return;
    }
    let (method, path, ms) = (&spec.method, &spec.path, crate::diag::ms(began));
    match outcome {
      Ok(Ok(response)) => tracing::debug!(
        %method, %path, status = response.status().as_u16(), version = ?response.version(), %ms, "request"
      ),
      Ok(Err(e)) => tracing::debug!(%method, %path, %ms, error = %self.redact(&chain(e)), "request failed"),
      Err(e) => tracing::debug!(%method, %path, %ms, error = %e, "request failed"),
    }
  }

  async fn attempt(
    &self,
    spec: &Spec,
    bearer: Option<&Secret>,
    payload: Payload,
  ) -> Result<std::result::Result<reqwest::Response, reqwest::Error>> {
    let slow = self.tuning.slow_request_timeout;
    match (spec.deadline, payload) {
      // An uploaded stream has no total bound (1 GB takes what it takes), but it must keep
      // moving: a server that stops reading trips the idle bound, and once the body is out the
      // reply must come within the slow bound.
      (Deadline::Stream, Payload::Stream(body)) => {
        let progress = Arc::new(Mutex::new(Progress {
          last: Instant::now(),
          done_at: None,
        }));
        let request = self.build(spec, bearer, Payload::Stream(track(body, progress.clone())));
        let idle = self.tuning.stream_idle_timeout;
        tokio::select! {
          sent = request.send() => Ok(sent),
          stalled = watchdog(progress, idle, slow) => Err(match stalled {
            Stall::Upload => Error::Transport {
              method: spec.method.to_string(),
              path: spec.path.clone(),
              message: format!("the server stopped reading the upload for {} s", idle.as_secs_f64()),
            },
            Stall::Reply => self.timeout(spec, slow),
          }),
        }
      }
      // Other streams have no total bound either, but their headers must come within the
      // slow bound; the body is then bounded by the idle timeout.
      (Deadline::Stream, payload) => {
        let request = self.build(spec, bearer, payload);
        tokio::time::timeout(slow, request.send())
          .await
          .map_err(|_| self.timeout(spec, slow))
      }
      (_, payload) => Ok(self.build(spec, bearer, payload).send().await),
    }
  }

  /// Sends `spec`, retrying where that is safe, and returns a successful response or the error.
  pub async fn send(&self, spec: &Spec, payload: Payload) -> Result<reqwest::Response> {
    let replayable = payload.replayable();
    let mut payload = Some(payload);
    let mut attempt = 0u32;
    let mut refreshed = false;
    loop {
      let bearer = if spec.auth { self.bearer().await? } else { None };
      let this = if replayable {
        match payload.as_ref() {
          Some(Payload::Bytes(b)) => Payload::Bytes(b.clone()),
          _ => Payload::None,
        }
      } else {
        payload.take().unwrap_or(Payload::None)
      };
      let sent = self.dispatch(spec, bearer.as_ref(), this).await?;
      match sent {
        Err(e) => {
          // A connect failure never reached the server, so any method may go again.
          let retry = replayable
            && attempt < self.tuning.max_retries
            && !e.is_timeout()
            && (e.is_connect() || spec.idempotent);
          if retry {
            tracing::debug!(
              method = %spec.method, path = %spec.path, retry = attempt + 1, of = self.tuning.max_retries,
              delay_ms = self.backoff(attempt).as_millis() as u64, reason = "connection failed", "retrying"
            );
            tokio::time::sleep(self.backoff(attempt)).await;
            attempt += 1;
            continue;
          }
          return Err(self.transport_error(spec, &e));
        }
        Ok(response) => {
          let status = response.status();
          if status == StatusCode::UNAUTHORIZED && self.uses_client_credentials() && !refreshed && replayable
          {
            tracing::debug!(method = %spec.method, path = %spec.path, "401 with an OAuth2 token: retrying once with a new one");
            if let Some(used) = &bearer {
              self.invalidate(used).await;
            }
            refreshed = true;
            continue;
          }
          let gateway = matches!(status.as_u16(), 502..=504);
          if gateway && spec.idempotent && replayable && attempt < self.tuning.max_retries {
            tracing::debug!(
              method = %spec.method, path = %spec.path, retry = attempt + 1, of = self.tuning.max_retries,
              delay_ms = self.backoff(attempt).as_millis() as u64, reason = status.as_u16(), "retrying"
            );
            tokio::time::sleep(self.backoff(attempt)).await;
            attempt += 1;
            continue;
          }
          if status.is_success() {
            return Ok(response);
          }
          return Err(self.api_error(spec, response).await);
        }
      }
    }
  }

  fn backoff(&self, attempt: u32) -> Duration {
    let delay = self.tuning.retry_base_delay.saturating_mul(1 << attempt.min(8));
    delay.min(RETRY_MAX_DELAY.max(self.tuning.retry_base_delay))
  }

  /// A JSON reply (`Value::Null` for an empty body).
  pub async fn json(&self, spec: &Spec, payload: Payload) -> Result<Value> {
    let response = self.send(spec, payload).await?;
    let content_type = content_type(&response);
    let body = response.bytes().await.map_err(|e| self.body_error(spec, &e))?;
    parse_json_body(&body, &content_type).map_err(|message| self.protocol(spec, message))
  }

  /// A reply whose body does not matter (204, `{"ok": true}`, a `Box` nobody asked for).
  pub async fn empty(&self, spec: &Spec, payload: Payload) -> Result<()> {
    let response = self.send(spec, payload).await?;
    // Drain so the connection goes back to the pool; a failure here changes nothing.
    let _ = response.bytes().await;
    Ok(())
  }

  /// A streamed reply body, bounded by the idle timeout.
  pub fn body_stream(self: &Arc<Self>, spec: &Spec, response: reqwest::Response) -> ByteStream {
    let method = spec.method.clone();
    let path = spec.path.clone();
    let this = self.clone();
    let stream = response.bytes_stream().map(move |item| {
      item.map_err(|e| Error::Transport {
        method: method.to_string(),
        path: path.clone(),
        message: this.redact(&format!("the response body broke off: {}", chain(&e))),
      })
    });
    Box::pin(idle_bounded(
      stream,
      self.tuning.stream_idle_timeout,
      spec.method.clone(),
      spec.path.clone(),
    ))
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::rest::request;

  #[test]
  fn origins_compare_scheme_host_and_port() {
    let a = Url::parse("http://h:9090/x").unwrap();
    assert!(same_origin(&a, &Url::parse("http://h:9090/y?z").unwrap()));
    assert!(!same_origin(&a, &Url::parse("http://h:9091/x").unwrap()));
    assert!(!same_origin(&a, &Url::parse("https://h:9090/x").unwrap()));
    assert!(!same_origin(&a, &Url::parse("http://evil:9090/x").unwrap()));
    assert!(same_origin(
      &Url::parse("https://h/").unwrap(),
      &Url::parse("https://h:443/").unwrap()
    ));
  }

  fn transport(auth: Auth) -> Transport {
    let config = RemoteConfig {
      api_url: Url::parse("http://127.0.0.1:1/api/").unwrap(),
      prefix: None,
      auth,
      dialects: super::super::dialect::Dialect::ALL,
    };
    Transport::new(&config, Tuning::default()).unwrap()
  }

  #[test]
  fn known_credentials_are_scrubbed_from_text() {
    let t = transport(Auth::Token(Secret::new("tok-123456")));
    assert_eq!(t.redact("bad token tok-123456!"), "bad token [REDACTED]!");
    assert!(!format!("{t:?}").contains("tok-123456"));
  }

  #[test]
  fn urls_keep_the_base_path_and_encode_the_query() {
    let t = transport(Auth::None);
    let route = request::Route::new(super::super::dialect::Dialect::Current, t.api_path(), None);
    let spec = super::super::dialect::download(&route, "b", "/root/a b&c");
    assert_eq!(
      t.url(&spec).as_str(),
      "http://127.0.0.1:1/api/v1/boxes/b/files?path=%2Froot%2Fa+b%26c"
    );
  }

  #[test]
  fn backoff_doubles_up_to_the_cap() {
    let t = transport(Auth::None);
    let delays: Vec<_> = (0..6).map(|a| t.backoff(a).as_millis()).collect();
    assert_eq!(delays, vec![200, 400, 800, 1600, 2000, 2000]);
  }
}
