//! The adapter configuration, as the original TypeScript package accepted it. Parsing never
//! happens in the JS constructor (which must not throw); `AdapterConfig::parse` runs on first
//! use and reports the first unusable field by its path, e.g. `config.apiUrl`.

use std::fmt;
use std::path::PathBuf;

use serde_json::{Map, Value};
use url::Url;

use crate::error::{Error, Result};
use crate::rest::Dialect;

/// The interpreter local mode uses when `pythonPath` is not given (as in the original).
pub const DEFAULT_PYTHON_PATH: &str = "python3";

/// Marker the JS layer puts in place of values JSON cannot carry (functions, symbols, bigints),
/// so that the error can still say what type the user passed.
const UNSUPPORTED_TYPE_KEY: &str = "$unsupportedType";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
  Remote,
  Local,
}

impl fmt::Display for Mode {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.write_str(match self {
      Mode::Remote => "remote",
      Mode::Local => "local",
    })
  }
}

#[derive(Debug, Clone)]
pub enum AdapterConfig {
  Remote(RemoteConfig),
  Local(LocalConfig),
}

impl AdapterConfig {
  pub fn mode(&self) -> Mode {
    match self {
      AdapterConfig::Remote(_) => Mode::Remote,
      AdapterConfig::Local(_) => Mode::Local,
    }
  }

  /// Parses the JS config object. Unknown keys are ignored, as the original did.
  pub fn parse(value: &Value) -> Result<Self> {
    let object = match value {
      Value::Object(object) => object,
      other => {
        return Err(Error::invalid_config(
          "config",
          format!("must be an object, got {}", describe(other)),
        ))
      }
    };
    match optional_string(object, "mode")?.as_deref() {
      None | Some("remote") => RemoteConfig::parse(object).map(AdapterConfig::Remote),
      Some("local") => LocalConfig::parse(object).map(AdapterConfig::Local),
      Some(other) => Err(Error::invalid_config(
        "config.mode",
        format!("must be 'remote' or 'local', got '{other}'"),
      )),
    }
  }
}

/// A credential that never prints: `Debug` and `Display` show `[REDACTED]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
  pub fn new(value: impl Into<String>) -> Self {
    Secret(value.into())
  }

  /// The only way to read the secret; call it where it is put on the wire, nowhere else.
  pub fn expose(&self) -> &str {
    &self.0
  }
}

impl fmt::Debug for Secret {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.write_str("[REDACTED]")
  }
}

impl fmt::Display for Secret {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.write_str("[REDACTED]")
  }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
  None,
  Token(Secret),
  ClientCredentials {
    client_id: String,
    client_secret: Secret,
  },
}

#[derive(Debug, Clone)]
pub struct RemoteConfig {
  /// The server's base URL, without the `/v1` part.
  pub api_url: Url,
  /// Tenant prefix; `None` means "what the dialect needs" (discovered or defaulted).
  pub prefix: Option<String>,
  pub auth: Auth,
  /// The dialects the `dialect` option allows; the first call detects which one the server
  /// speaks among them (`auto`: all).
  pub dialects: &'static [Dialect],
}

impl RemoteConfig {
  fn parse(object: &Map<String, Value>) -> Result<Self> {
    let raw_url = required_string(object, "apiUrl")?;
    let api_url = parse_api_url(&raw_url)?;
    let prefix = optional_string(object, "prefix")?.filter(|p| !p.is_empty());
    if let Some(prefix) = &prefix {
      if prefix.contains('/') || prefix.contains('?') || prefix.contains('#') {
        return Err(Error::invalid_config(
          "config.prefix",
          "must be a single path segment (no '/', '?' or '#')",
        ));
      }
    }
    let api_token = optional_string(object, "apiToken")?.filter(|t| !t.is_empty());
    let client_id = optional_string(object, "clientId")?.filter(|t| !t.is_empty());
    let client_secret = optional_string(object, "clientSecret")?.filter(|t| !t.is_empty());
    // An API token wins over client credentials, as in the original client.
    let auth = match (api_token, client_id, client_secret) {
      (Some(token), _, _) => Auth::Token(Secret::new(token)),
      (None, Some(client_id), Some(secret)) => Auth::ClientCredentials {
        client_id,
        client_secret: Secret::new(secret),
      },
      (None, Some(_), None) => {
        return Err(Error::invalid_config(
          "config.clientSecret",
          "is missing: clientId needs clientSecret",
        ))
      }
      (None, None, Some(_)) => {
        return Err(Error::invalid_config(
          "config.clientId",
          "is missing: clientSecret needs clientId",
        ))
      }
      (None, None, None) => Auth::None,
    };
    let dialects = match optional_string(object, "dialect")? {
      None => Dialect::ALL,
      Some(text) => Dialect::allowed_by(&text).ok_or_else(|| {
        Error::invalid_config(
          "config.dialect",
          format!("must be 'auto', 'sse', 'current' or 'boxrun', got '{text}'"),
        )
      })?,
    };
    Ok(RemoteConfig {
      api_url,
      prefix,
      auth,
      dialects,
    })
  }

  /// The host name sandbox URLs (`exposePort`) point at.
  pub fn host(&self) -> &str {
    self.api_url.host_str().unwrap_or("127.0.0.1")
  }
}

fn parse_api_url(raw: &str) -> Result<Url> {
  // A URL with userinfo may carry a password: never echo it.
  let shown = if raw.contains('@') {
    "<URL with credentials>"
  } else {
    raw
  };
  let invalid = |why: &str| {
    Error::invalid_config(
      "config.apiUrl",
      format!("must be an absolute http(s) URL such as 'http://localhost:9090', got '{shown}' ({why})"),
    )
  };
  if raw.trim().is_empty() {
    return Err(invalid("empty"));
  }
  let url = Url::parse(raw.trim()).map_err(|e| invalid(&e.to_string()))?;
  if url.scheme() != "http" && url.scheme() != "https" {
    return Err(invalid("scheme must be http or https"));
  }
  if url.host_str().is_none_or(str::is_empty) {
    return Err(invalid("no host"));
  }
  if !url.username().is_empty() || url.password().is_some() {
    // Credentials in the URL would end up in logs and error messages.
    return Err(Error::invalid_config(
      "config.apiUrl",
      "must not contain credentials; use apiToken or clientId/clientSecret",
    ));
  }
  if url.query().is_some() || url.fragment().is_some() {
    return Err(invalid("no query or fragment allowed"));
  }
  Ok(url)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalConfig {
  /// The interpreter (or venv interpreter) whose `boxlite` SDK is used.
  pub python_path: String,
  /// The SDK home directory; `None` lets the SDK choose (`$BOXLITE_HOME` or `~/.boxlite`).
  pub boxlite_home: Option<PathBuf>,
}

impl LocalConfig {
  fn parse(object: &Map<String, Value>) -> Result<Self> {
    let python_path = match optional_string(object, "pythonPath")? {
      Some(path) if path.trim().is_empty() => {
        return Err(Error::invalid_config(
          "config.pythonPath",
          "must not be empty; omit it to use 'python3'",
        ))
      }
      Some(path) => path,
      None => DEFAULT_PYTHON_PATH.to_string(),
    };
    let boxlite_home = match optional_string(object, "boxliteHome")? {
      Some(home) if home.trim().is_empty() => {
        return Err(Error::invalid_config(
          "config.boxliteHome",
          "must not be empty; omit it to use the SDK default",
        ))
      }
      Some(home) => Some(expand_home(&home)),
      None => None,
    };
    Ok(LocalConfig {
      python_path,
      boxlite_home,
    })
  }
}

/// `~` and `~/…` mean the user's home directory, as the seed's examples (`'~/.boxlite'`) expect.
fn expand_home(path: &str) -> PathBuf {
  let home = std::env::var_os("HOME").map(PathBuf::from);
  match (path, home) {
    ("~", Some(home)) => home,
    (p, Some(home)) if p.starts_with("~/") => home.join(&p[2..]),
    (p, _) => PathBuf::from(p),
  }
}

fn optional_string(object: &Map<String, Value>, key: &str) -> Result<Option<String>> {
  match object.get(key) {
    None | Some(Value::Null) => Ok(None),
    Some(Value::String(text)) => Ok(Some(text.clone())),
    Some(other) => Err(Error::invalid_config(
      format!("config.{key}"),
      format!("must be a string, got {}", describe(other)),
    )),
  }
}

fn required_string(object: &Map<String, Value>, key: &str) -> Result<String> {
  optional_string(object, key)?.ok_or_else(|| {
    Error::invalid_config(
      format!("config.{key}"),
      "is required in remote mode (e.g. 'http://localhost:9090')",
    )
  })
}

fn describe(value: &Value) -> String {
  match value {
    Value::Null => "null".into(),
    Value::Bool(_) => "a boolean".into(),
    Value::Number(n) => format!("a number ({n})"),
    Value::String(_) => "a string".into(),
    Value::Array(_) => "an array".into(),
    Value::Object(object) => match object.get(UNSUPPORTED_TYPE_KEY).and_then(Value::as_str) {
      Some(kind) => format!("a {kind}"),
      None => "an object".into(),
    },
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use serde_json::json;

  fn error_of(value: Value) -> String {
    AdapterConfig::parse(&value).unwrap_err().to_string()
  }

  #[test]
  fn missing_mode_is_remote_mode() {
    let config = AdapterConfig::parse(&json!({"apiUrl": "http://localhost:9090"})).unwrap();
    assert_eq!(config.mode(), Mode::Remote);
  }

  #[test]
  fn local_mode_defaults_python_to_python3_and_home_to_sdk_default() {
    let AdapterConfig::Local(local) = AdapterConfig::parse(&json!({"mode": "local"})).unwrap() else {
      panic!()
    };
    assert_eq!(local.python_path, "python3");
    assert_eq!(local.boxlite_home, None);
  }

  #[test]
  fn local_mode_expands_tilde_in_boxlite_home() {
    let home = std::env::var("HOME").unwrap();
    let AdapterConfig::Local(local) =
      AdapterConfig::parse(&json!({"mode": "local", "boxliteHome": "~/.boxlite"})).unwrap()
    else {
      panic!()
    };
    assert_eq!(local.boxlite_home, Some(PathBuf::from(home).join(".boxlite")));
  }

  #[test]
  fn unknown_mode_is_reported_with_its_value() {
    assert_eq!(
      error_of(json!({"mode": "bogus"})),
      "config.mode must be 'remote' or 'local', got 'bogus'"
    );
  }

  #[test]
  fn empty_api_url_is_reported_on_parse() {
    assert!(error_of(json!({"apiUrl": ""})).starts_with("config.apiUrl must be an absolute http(s) URL"));
  }

  #[test]
  fn unparsable_api_url_names_the_field_and_value() {
    let message = error_of(json!({"apiUrl": "not-a-url"}));
    assert!(
      message.starts_with("config.apiUrl must be an absolute http(s) URL"),
      "{message}"
    );
    assert!(message.contains("'not-a-url'"), "{message}");
  }

  #[test]
  fn non_http_scheme_is_refused() {
    assert!(error_of(json!({"apiUrl": "ftp://example.com"})).contains("scheme must be http or https"));
  }

  #[test]
  fn wrong_types_name_the_field_and_the_type() {
    assert_eq!(
      error_of(json!({"apiUrl": 9090})),
      "config.apiUrl must be a string, got a number (9090)"
    );
    assert_eq!(
      error_of(json!({"mode": "local", "pythonPath": {"$unsupportedType": "function"}})),
      "config.pythonPath must be a string, got a function"
    );
    assert_eq!(
      error_of(json!("http://x")),
      "config must be an object, got a string"
    );
  }

  #[test]
  fn api_token_wins_over_client_credentials() {
    let value = json!({"apiUrl": "http://h:1", "apiToken": "t", "clientId": "i", "clientSecret": "s"});
    let AdapterConfig::Remote(remote) = AdapterConfig::parse(&value).unwrap() else {
      panic!()
    };
    assert_eq!(remote.auth, Auth::Token(Secret::new("t")));
  }

  #[test]
  fn client_id_without_secret_is_reported() {
    assert_eq!(
      error_of(json!({"apiUrl": "http://h:1", "clientId": "i"})),
      "config.clientSecret is missing: clientId needs clientSecret"
    );
  }

  #[test]
  fn empty_prefix_means_no_prefix_and_slashes_are_refused() {
    let AdapterConfig::Remote(remote) =
      AdapterConfig::parse(&json!({"apiUrl": "http://h:1", "prefix": ""})).unwrap()
    else {
      panic!()
    };
    assert_eq!(remote.prefix, None);
    assert!(error_of(json!({"apiUrl": "http://h:1", "prefix": "a/b"})).starts_with("config.prefix"));
  }

  #[test]
  fn secrets_never_appear_in_debug_output() {
    let value = json!({"apiUrl": "http://h:1", "clientId": "id", "clientSecret": "s3cr3t-value"});
    let config = AdapterConfig::parse(&value).unwrap();
    let printed = format!("{config:?}");
    assert!(!printed.contains("s3cr3t-value"), "{printed}");
    assert!(printed.contains("[REDACTED]"));
    let token = AdapterConfig::parse(&json!({"apiUrl": "http://h:1", "apiToken": "tok-123456"})).unwrap();
    assert!(!format!("{token:?}").contains("tok-123456"));
  }

  #[test]
  fn credentials_in_the_url_are_refused_without_echoing_them() {
    let message = error_of(json!({"apiUrl": "http://user:pw@h:1"}));
    assert!(!message.contains("pw"), "{message}");
  }

  #[test]
  fn dialect_option_accepts_auto_sse_current_and_boxrun() {
    for (text, expected) in [
      ("auto", Dialect::ALL),
      ("sse", &[Dialect::SseRef, Dialect::SseServe][..]),
      ("current", &[Dialect::Current][..]),
      ("boxrun", &[Dialect::Boxrun][..]),
    ] {
      let AdapterConfig::Remote(remote) =
        AdapterConfig::parse(&json!({"apiUrl": "http://h:1", "dialect": text})).unwrap()
      else {
        panic!()
      };
      assert_eq!(remote.dialects, expected);
    }
    assert!(error_of(json!({"apiUrl": "http://h:1", "dialect": "grpc"})).starts_with("config.dialect"));
  }
}
