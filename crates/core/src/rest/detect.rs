//! Which dialect a server speaks, and its tenant prefix: decided once per client, on the first
//! call, and retried on the next call if it failed (nothing is cached on failure).
//!
//! With `dialect: "auto"` (all dialects allowed):
//! 1. `GET /v1/config` without credentials: a JSON 200 means a BoxLite server; a 404 means
//!    "not BoxLite", then `GET /v1/info` must answer 200 for BoxRun.
//! 2. For BoxLite, `GET /v1/me` (with the static token, if any): 200 means `current`, 404 means
//!    the SSE era. A 401/403 is ambiguous (an auth layer may run before routing), so
//!    `POST /v1/oauth/tokens` decides: 404 means `current` (no token endpoint), else SSE era.
//! 3. For the SSE era, `/v1/config`'s shape tells `boxlite serve` (four capability flags, no
//!    `defaults`) from the reference server; when it cannot be read, the reference server.
//!
//! `dialect: "sse"` starts at step 3; a single named dialect is taken as is. Anything else
//! fails with a protocol error naming the last probe. The tenant prefix is the configured one,
//! else what the dialect's `Tenant` says. `/config`, `/me` and `/oauth/tokens` are never
//! prefixed. See `docs/dialects.md`.

use serde_json::Value;

use super::dialect::{self, Dialect, Tenant};
use super::request::{self, Route, Spec};
use super::transport::{Payload, Transport};
use crate::error::{Error, Result};

/// What the next probe should be, from the last one's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
  Me,
  Info,
  TokenEndpoint,
  SseFlavour,
  Found(Dialect),
  Unknown,
}

fn after_config(status: u16) -> Probe {
  match status {
    200..=299 => Probe::Me,
    404 => Probe::Info,
    _ => Probe::Unknown,
  }
}

fn after_me(status: u16) -> Probe {
  match status {
    200..=299 => Probe::Found(Dialect::Current),
    404 | 405 => Probe::SseFlavour,
    401 | 403 => Probe::TokenEndpoint,
    _ => Probe::Unknown,
  }
}

fn after_token_endpoint(status: u16) -> Probe {
  match status {
    404 | 405 => Probe::Found(Dialect::Current),
    _ => Probe::SseFlavour,
  }
}

fn after_info(status: u16) -> Probe {
  match status {
    200..=299 => Probe::Found(Dialect::Boxrun),
    _ => Probe::Unknown,
  }
}

fn after_sse_config(config: Option<&Value>) -> Probe {
  match config {
    Some(config) if dialect::is_sse_serve_config(config) => Probe::Found(Dialect::SseServe),
    _ => Probe::Found(Dialect::SseRef),
  }
}

/// Where detection starts for the dialects a configuration allows.
fn first_probe(allowed: &[Dialect]) -> Option<Probe> {
  match allowed {
    [one] => Some(Probe::Found(*one)),
    _ if allowed.iter().all(|d| d.sse_era()) => Some(Probe::SseFlavour),
    _ => None,
  }
}

/// `path_prefix` (the API's name) or `prefix` (what real servers send) of a principal.
fn principal_prefix(me: &Value) -> Option<String> {
  ["path_prefix", "prefix"]
    .iter()
    .find_map(|k| me.get(*k).and_then(Value::as_str))
    .map(|p| p.trim_matches('/').to_string())
    .filter(|p| !p.is_empty())
}

/// Where the server's routes live: its dialect (among `allowed`) and tenant prefix.
pub(super) async fn resolve(
  transport: &Transport,
  allowed: &'static [Dialect],
  prefix: Option<&str>,
  static_token: bool,
) -> Result<Route> {
  let dialect = detect(transport, allowed, static_token).await?;
  let api_path = transport.api_path();
  let prefix = match (dialect.profile().tenant(), prefix) {
    (Tenant::Never, _) => None,
    (_, Some(prefix)) => Some(prefix.to_string()),
    (Tenant::Fixed(segment), None) => Some(segment.to_string()),
    (Tenant::FromPrincipal, None) => {
      match transport
        .json(&request::me(&request::v1(api_path)), Payload::None)
        .await
      {
        Ok(principal) => principal_prefix(&principal),
        // A server without `/v1/me` has no tenant segment either.
        Err(Error::Api(api)) if api.status == 404 => None,
        Err(e) => return Err(e),
      }
    }
  };
  tracing::debug!(
    %dialect,
    prefix = prefix.as_deref().unwrap_or("-"),
    allowed = %Dialect::list(allowed),
    "route"
  );
  Ok(Route::new(dialect, api_path, prefix.as_deref()))
}

async fn status_of(transport: &Transport, spec: &Spec) -> Result<u16> {
  match transport.send(spec, Payload::None).await {
    Ok(response) => Ok(response.status().as_u16()),
    Err(Error::Api(api)) => Ok(api.status),
    Err(e) => Err(e),
  }
}

/// `/v1/config`'s status and, when it answered with JSON, its body (kept for step 3).
async fn probe_config(transport: &Transport, spec: &Spec) -> Result<(u16, Option<Value>)> {
  match transport.send(spec, Payload::None).await {
    Ok(response) => {
      let status = response.status().as_u16();
      let body = response.bytes().await.ok();
      Ok((status, body.and_then(|b| serde_json::from_slice(&b).ok())))
    }
    Err(Error::Api(api)) => Ok((api.status, None)),
    Err(e) => Err(e),
  }
}

async fn detect(transport: &Transport, allowed: &'static [Dialect], static_token: bool) -> Result<Dialect> {
  let v1 = request::v1(transport.api_path());
  let config = request::public(&v1, "config");
  let mut last = format!("GET {}", config.path);
  let mut config_body = None;
  // Why the dialect was chosen: each probe with its answer.
  let mut why = Vec::new();
  let mut next = match first_probe(allowed) {
    Some(probe) => probe,
    None => {
      let (status, body) = probe_config(transport, &config).await?;
      why.push(format!("{last} {status}"));
      config_body = body;
      after_config(status)
    }
  };
  loop {
    match next {
      Probe::Found(dialect) => tracing::debug!(%dialect, why = %why.join(", "), "dialect detected"),
      Probe::Unknown => tracing::debug!(why = %why.join(", "), "dialect detection failed"),
      _ => {}
    }
    next = match next {
      Probe::Found(dialect) => return Ok(dialect),
      Probe::Unknown => {
        return Err(Error::Protocol {
          method: "GET".into(),
          path: config.path,
          message: format!(
            "the server speaks none of the known dialects (sse, current, boxrun); last probe: {last}. \
             Check apiUrl, or set the dialect option"
          ),
        })
      }
      Probe::Me => {
        let mut me = request::me(&v1);
        // Only a static token goes along: fetching an OAuth2 token presumes the SSE era.
        me.auth = static_token;
        last = format!("GET {}", me.path);
        let status = status_of(transport, &me).await?;
        why.push(format!("{last} {status}"));
        after_me(status)
      }
      Probe::TokenEndpoint => {
        let token = request::token(&v1, "grant_type=client_credentials".into());
        last = format!("POST {}", token.path);
        let status = status_of(transport, &token).await?;
        why.push(format!("{last} {status}"));
        after_token_endpoint(status)
      }
      Probe::Info => {
        let info = request::public(&v1, "info");
        last = format!("GET {}", info.path);
        let status = status_of(transport, &info).await?;
        why.push(format!("{last} {status}"));
        after_info(status)
      }
      Probe::SseFlavour => {
        let body = match config_body.take() {
          Some(body) => Some(body),
          None => transport.json(&config, Payload::None).await.ok(),
        };
        why.push(format!("{} shape", config.path));
        after_sse_config(body.as_ref())
      }
    };
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::rest::dialect::SSE_ERA;
  use serde_json::json;

  #[test]
  fn probe_matrix_identifies_each_dialect() {
    // (config, me, token endpoint, info, SSE-era config) → dialect (see docs/dialects.md).
    assert_eq!(after_config(200), Probe::Me);
    assert_eq!(after_me(200), Probe::Found(Dialect::Current));
    assert_eq!(after_me(404), Probe::SseFlavour);
    assert_eq!(after_me(401), Probe::TokenEndpoint);
    assert_eq!(after_token_endpoint(404), Probe::Found(Dialect::Current));
    assert_eq!(after_token_endpoint(400), Probe::SseFlavour);
    assert_eq!(after_token_endpoint(401), Probe::SseFlavour);
    assert_eq!(after_config(404), Probe::Info);
    assert_eq!(after_info(200), Probe::Found(Dialect::Boxrun));
    assert_eq!(after_info(404), Probe::Unknown);
    assert_eq!(after_config(500), Probe::Unknown);
    let serve = json!({"capabilities": {"snapshots": true}});
    assert_eq!(after_sse_config(Some(&serve)), Probe::Found(Dialect::SseServe));
    let reference = json!({"defaults": {}, "capabilities": {}});
    assert_eq!(after_sse_config(Some(&reference)), Probe::Found(Dialect::SseRef));
    assert_eq!(after_sse_config(None), Probe::Found(Dialect::SseRef));
  }

  #[test]
  fn settings_choose_where_detection_starts() {
    assert_eq!(first_probe(Dialect::ALL), None);
    assert_eq!(first_probe(SSE_ERA), Some(Probe::SseFlavour));
    assert_eq!(
      first_probe(&[Dialect::SseServe, Dialect::Current]),
      None,
      "a mixed choice is detected from the start"
    );
    assert_eq!(
      first_probe(&[Dialect::Boxrun]),
      Some(Probe::Found(Dialect::Boxrun))
    );
  }

  #[test]
  fn principal_prefix_reads_path_prefix_then_prefix() {
    assert_eq!(
      principal_prefix(&json!({"path_prefix": "us-east/team-42"})).as_deref(),
      Some("us-east/team-42")
    );
    assert_eq!(
      principal_prefix(&json!({"prefix": "org1", "sub": "x"})).as_deref(),
      Some("org1")
    );
    assert_eq!(
      principal_prefix(&json!({"path_prefix": null, "prefix": null})),
      None
    );
    assert_eq!(principal_prefix(&json!({"prefix": ""})), None);
  }
}
