//! The bearer of every request (static, or an OAuth2 client-credentials token cached, refreshed
//! and dropped after a refusal) and the scrubbing of every known credential from error text.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use super::{Payload, Transport, ERROR_BODY_LIMIT};
use crate::config::{Auth, Secret};
use crate::error::Result;
use crate::rest::auth::{self, CachedToken};
use crate::rest::body::read_capped;
use crate::rest::request::{self, Spec};
use crate::rest::wire;

impl Transport {
  /// The bearer to send, fetching or refreshing the OAuth2 token when needed.
  pub async fn bearer(&self) -> Result<Option<Secret>> {
    match &self.auth {
      Auth::None => Ok(None),
      Auth::Token(token) => Ok(Some(token.clone())),
      Auth::ClientCredentials {
        client_id,
        client_secret,
      } => {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| t.is_fresh(Instant::now())) {
          return Ok(Some(token.token.clone()));
        }
        let spec = request::token(
          &request::v1(self.api_path()),
          auth::token_form(client_id, client_secret),
        );
        // `expiring`: the cached one is due for refresh; otherwise there was none (first use, or
        // dropped after the server refused it).
        let expiring = cached.is_some();
        tracing::debug!(expiring, "fetching an OAuth2 token");
        let (token, lifetime) = self.fetch_token(&spec).await?;
        // Never the token itself: only how long it lives.
        tracing::debug!(lifetime_s = lifetime.as_secs(), "OAuth2 token obtained");
        self.remember(&token);
        *cached = Some(CachedToken::new(token.clone(), lifetime, Instant::now()));
        Ok(Some(token))
      }
    }
  }

  /// Forgets `used` after the server refused it, so the next `bearer()` fetches a new one.
  pub async fn invalidate(&self, used: &Secret) {
    let mut cached = self.token.lock().await;
    if cached.as_ref().is_some_and(|t| &t.token == used) {
      *cached = None;
    }
  }

  fn remember(&self, token: &Secret) {
    let mut secrets = self.secrets.lock().unwrap_or_else(|p| p.into_inner());
    if !secrets.contains(token) {
      secrets.push(token.clone());
      // Keep the static credential plus the last few issued tokens.
      if secrets.len() > 8 {
        secrets.remove(1);
      }
    }
  }

  /// Replaces every known credential in `text` by `[REDACTED]`.
  pub fn redact(&self, text: &str) -> String {
    let secrets = self.secrets.lock().unwrap_or_else(|p| p.into_inner());
    let mut text = text.to_string();
    for secret in secrets.iter() {
      if secret.expose().len() >= 4 && text.contains(secret.expose()) {
        text = text.replace(secret.expose(), "[REDACTED]");
      }
    }
    text
  }

  pub(super) async fn fetch_token(&self, spec: &Spec) -> Result<(Secret, Duration)> {
    let response = self.send_once(spec, None, Payload::None).await?;
    let status = response.status();
    let body = read_capped(response, ERROR_BODY_LIMIT).await;
    if !status.is_success() {
      let mut api = wire::parse_api_error(status.as_u16(), &body, spec.method.as_str(), &spec.path);
      api.message = if status == StatusCode::NOT_FOUND {
        "the server has no OAuth2 token endpoint (clientId/clientSecret work only with the SSE-era BoxLite REST API; use apiToken)".into()
      } else {
        format!("OAuth2 token request refused: {}", self.redact(&api.message))
      };
      return Err(spec.refusal(api));
    }
    auth::parse_token_reply(&body).map_err(|message| self.protocol(spec, message))
  }
}
