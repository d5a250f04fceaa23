//! Credentials, sans IO: a static bearer, OAuth2 client credentials with a cached token that is
//! refreshed a leeway before it expires (and dropped after a 401, so the one retry gets a fresh
//! one), or nothing at all. Tokens are `Secret`s: they never print, and the transport redacts
//! them from any text a server echoes back.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::config::Secret;

/// Tokens are refreshed this long before they expire (as boxlite's own client does), so a
/// request never leaves with a token that dies in flight.
pub const REFRESH_LEEWAY: Duration = Duration::from_secs(60);

/// A token whose lifetime the server did not state is kept this long.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone)]
pub struct CachedToken {
  pub token: Secret,
  /// When to fetch a new one: expiry minus the leeway (at most half the lifetime, so short-lived
  /// test tokens are not refreshed on every request).
  pub refresh_at: Instant,
}

impl CachedToken {
  pub fn new(token: Secret, lifetime: Duration, now: Instant) -> Self {
    let leeway = REFRESH_LEEWAY.min(lifetime / 2);
    CachedToken {
      token,
      refresh_at: now + lifetime.saturating_sub(leeway),
    }
  }

  pub fn is_fresh(&self, now: Instant) -> bool {
    now < self.refresh_at
  }
}

/// The form body of `POST /v1/oauth/tokens` (form-encoded: Ref rejects JSON bodies).
pub fn token_form(client_id: &str, client_secret: &Secret) -> String {
  url::form_urlencoded::Serializer::new(String::new())
    .append_pair("grant_type", "client_credentials")
    .append_pair("client_id", client_id)
    .append_pair("client_secret", client_secret.expose())
    .finish()
}

/// `{"access_token", "expires_in", …}` → the token and its lifetime.
pub fn parse_token_reply(body: &[u8]) -> Result<(Secret, Duration), String> {
  let value: Value = serde_json::from_slice(body).map_err(|e| format!("token reply is not JSON ({e})"))?;
  let token = value
    .get("access_token")
    .and_then(Value::as_str)
    .filter(|t| !t.is_empty())
    .ok_or_else(|| "token reply has no access_token".to_string())?;
  let lifetime = match value.get("expires_in") {
    Some(Value::Number(n)) => n.as_f64().map(|s| Duration::from_secs_f64(s.max(0.0))),
    Some(Value::String(s)) => s.parse::<f64>().ok().map(|s| Duration::from_secs_f64(s.max(0.0))),
    _ => None,
  }
  .unwrap_or(DEFAULT_TOKEN_LIFETIME);
  Ok((Secret::new(token), lifetime))
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn token_is_refreshed_a_minute_before_expiry() {
    let now = Instant::now();
    let token = CachedToken::new(Secret::new("t"), Duration::from_secs(3600), now);
    assert!(token.is_fresh(now + Duration::from_secs(3539)));
    assert!(!token.is_fresh(now + Duration::from_secs(3540)));
  }

  #[test]
  fn short_lived_tokens_are_refreshed_at_half_their_life() {
    let now = Instant::now();
    let token = CachedToken::new(Secret::new("t"), Duration::from_secs(4), now);
    assert!(token.is_fresh(now + Duration::from_millis(1900)));
    assert!(!token.is_fresh(now + Duration::from_secs(2)));
  }

  #[test]
  fn token_form_is_url_encoded_client_credentials() {
    let form = token_form("my client", &Secret::new("s&cr=t"));
    assert_eq!(
      form,
      "grant_type=client_credentials&client_id=my+client&client_secret=s%26cr%3Dt"
    );
  }

  #[test]
  fn token_replies_parse_with_or_without_lifetime() {
    let (token, lifetime) =
      parse_token_reply(br#"{"access_token":"abc","token_type":"bearer","expires_in":86400}"#).unwrap();
    assert_eq!((token.expose(), lifetime), ("abc", Duration::from_secs(86400)));
    assert_eq!(
      parse_token_reply(br#"{"access_token":"abc"}"#).unwrap().1,
      DEFAULT_TOKEN_LIFETIME
    );
    assert!(parse_token_reply(br#"{"token_type":"bearer"}"#).is_err());
    assert!(parse_token_reply(b"<html>").is_err());
  }
}
