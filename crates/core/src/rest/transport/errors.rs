//! Every failure of a request mapped onto `Error`: timeouts, transport and body failures, API
//! errors and malformed replies, with method and path, never a query string or a credential.

use std::time::Duration;

use reqwest::header;
use serde_json::Value;

use super::{Transport, ERROR_BODY_LIMIT};
use crate::error::Error;
use crate::rest::body::{chain, read_capped};
use crate::rest::request::{Deadline, Spec};
use crate::rest::{tls, wire};

impl Transport {
  pub fn timeout(&self, spec: &Spec, after: Duration) -> Error {
    Error::Timeout {
      operation: format!("{} {}", spec.method, spec.path),
      after_ms: after.as_millis() as u64,
    }
  }

  pub fn protocol(&self, spec: &Spec, message: impl Into<String>) -> Error {
    Error::Protocol {
      method: spec.method.to_string(),
      path: spec.path.clone(),
      message: self.redact(&message.into()),
    }
  }

  pub(super) fn transport_error(&self, spec: &Spec, e: &reqwest::Error) -> Error {
    if e.is_timeout() {
      let after = match spec.deadline {
        Deadline::Normal => self.tuning.request_timeout,
        _ => self.tuning.slow_request_timeout,
      };
      return self.timeout(spec, after);
    }
    let text = chain(e);
    let message = match tls::advice(&text) {
      Some(advice) => advice,
      None => text,
    };
    Error::Transport {
      method: spec.method.to_string(),
      path: spec.path.clone(),
      message: self.redact(&message),
    }
  }

  pub(super) fn body_error(&self, spec: &Spec, e: &reqwest::Error) -> Error {
    if e.is_timeout() {
      return self.timeout(spec, self.tuning.request_timeout);
    }
    Error::Transport {
      method: spec.method.to_string(),
      path: spec.path.clone(),
      message: self.redact(&format!("the response body is incomplete: {}", chain(e))),
    }
  }

  /// Turns a non-success response into an error (`Spec::refusal`: `NotFound` about the request's
  /// subject, else `Error::Api`), credentials scrubbed from the text.
  pub async fn api_error(&self, spec: &Spec, response: reqwest::Response) -> Error {
    let status = response.status();
    let location = response
      .headers()
      .get(header::LOCATION)
      .and_then(|v| v.to_str().ok())
      .map(str::to_string);
    let body = read_capped(response, ERROR_BODY_LIMIT).await;
    let mut api = wire::parse_api_error(status.as_u16(), &body, spec.method.as_str(), &spec.path);
    if status.is_redirection() {
      let target = location
        .and_then(|l| self.url(spec).join(&l).ok())
        .map(|u| format!("{}://{}", u.scheme(), u.host_str().unwrap_or("?")))
        .unwrap_or_else(|| "another location".into());
      api.message =
        format!("redirect to {target} not followed (credentials stay with the configured server)");
    }
    api.message = self.redact(&api.message);
    spec.refusal(api)
  }

  /// A reply that parsed but is not what `spec` answers (`what`), showing its start.
  pub fn malformed(&self, spec: &Spec, what: &str, value: &Value) -> Error {
    let shown = wire::excerpt(value.to_string().as_bytes());
    self.protocol(spec, format!("expected {what}, got: {shown}"))
  }

  /// Status-only API error (e.g. a refused WebSocket upgrade), body parsed like any other.
  pub fn api_error_from(&self, spec: &Spec, status: u16, body: &[u8]) -> Error {
    let mut api = wire::parse_api_error(status, body, spec.method.as_str(), &spec.path);
    api.message = self.redact(&api.message);
    spec.refusal(api)
  }
}
