//! Which certificate authorities remote mode trusts, the way Node users and system tools expect:
//! the platform's roots (on Linux the system store, or instead the files named by
//! `SSL_CERT_FILE`/`SSL_CERT_DIR` when set, as OpenSSL does), plus the PEM file named by
//! `NODE_EXTRA_CA_CERTS` (Node's convention, which rustls does not know about), read when a
//! client is built. Also turns certificate failures into advice that names the problem.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::error::{Error, Result};

/// Node's variable naming a PEM file of extra trusted CAs.
pub const EXTRA_CA_ENV: &str = "NODE_EXTRA_CA_CERTS";

/// The certificate verifier remote mode uses: the platform's roots plus `NODE_EXTRA_CA_CERTS`.
/// Loading roots reads files (the system store is ~150 certificates), so one verifier is built
/// per client and shared by its HTTP and WebSocket configs.
pub fn verifier() -> Result<Arc<dyn ServerCertVerifier>> {
  let extra = match std::env::var_os(EXTRA_CA_ENV).filter(|v| !v.is_empty()) {
    Some(path) => extra_roots(Path::new(&path))?,
    None => Vec::new(),
  };
  if !extra.is_empty() {
    tracing::debug!(
      count = extra.len(),
      from = EXTRA_CA_ENV,
      "extra CA certificates trusted"
    );
  }
  let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider()).map_err(|e| {
    Error::Environment {
      message: format!(
        "cannot set up TLS: {e} (the CA certificates in {EXTRA_CA_ENV}, SSL_CERT_FILE or the system store are unusable)"
      ),
    }
  })?;
  Ok(Arc::new(verifier))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
  Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls client config over `verifier`, speaking the given ALPN protocols.
pub fn client_config(verifier: Arc<dyn ServerCertVerifier>, alpn: &[&[u8]]) -> Result<rustls::ClientConfig> {
  let mut config = rustls::ClientConfig::builder_with_provider(provider())
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::Environment {
      message: format!("cannot set up TLS: {e}"),
    })?
    .dangerous() // not dangerous: the platform verifier, with added roots
    .with_custom_certificate_verifier(verifier)
    .with_no_client_auth();
  config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
  Ok(config)
}

/// The certificates of the PEM file `path`; a file that cannot be read or holds none is an
/// error naming the variable, so a typo does not silently leave the CA untrusted.
pub fn extra_roots(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
  let unusable = |problem: String| Error::Environment {
    message: format!(
      "{EXTRA_CA_ENV}={} {problem}; point it at a PEM file of CA certificates (or unset it)",
      path.display()
    ),
  };
  let pem = std::fs::read(path).map_err(|e| unusable(format!("cannot be read ({e})")))?;
  let certs = CertificateDer::pem_slice_iter(&pem)
    .collect::<std::result::Result<Vec<_>, _>>()
    .map_err(|e| unusable(format!("is not valid PEM ({e})")))?;
  if certs.is_empty() {
    return Err(unusable("holds no CERTIFICATE block".into()));
  }
  Ok(certs)
}

/// Advice for a failed connection whose error text shows a certificate problem, else `None`.
pub fn advice(error_text: &str) -> Option<String> {
  let at = error_text.find("invalid peer certificate")?;
  let problem = error_text[at..]
    .split(": ")
    .take(2)
    .collect::<Vec<_>>()
    .join(": ");
  let hint = if problem.contains("UnknownIssuer") {
    format!(
      "the server's certificate is signed by a CA this process does not trust; if it is a private CA, set {EXTRA_CA_ENV} (or SSL_CERT_FILE) to its PEM file"
    )
  } else if problem.contains("NotValidForName") {
    "the server's certificate does not name the host in apiUrl; use the name the certificate was issued for"
      .into()
  } else if problem.contains("Expired") || problem.contains("NotValidYet") {
    "the server's certificate is outside its validity period (check the server's certificate and this machine's clock)".into()
  } else {
    "the server's TLS certificate was rejected".into()
  };
  Some(format!("TLS certificate problem ({problem}): {hint}"))
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn unknown_issuers_get_advice_naming_node_extra_ca_certs() {
    let text = "error sending request: client error (Connect): invalid peer certificate: UnknownIssuer";
    let told = advice(text).unwrap();
    assert!(
      told.starts_with("TLS certificate problem (invalid peer certificate: UnknownIssuer)")
        && told.contains("NODE_EXTRA_CA_CERTS")
        && told.contains("SSL_CERT_FILE"),
      "{told}"
    );
    assert!(advice("error sending request: connection refused").is_none());
  }

  #[test]
  fn name_and_expiry_problems_are_told_apart() {
    assert!(advice("invalid peer certificate: NotValidForName")
      .unwrap()
      .contains("does not name the host"));
    assert!(advice("invalid peer certificate: Expired")
      .unwrap()
      .contains("validity period"));
  }

  #[test]
  fn an_unusable_extra_ca_file_is_an_error_naming_the_variable() {
    let missing = extra_roots(Path::new("/nonexistent/ca.pem"))
      .unwrap_err()
      .to_string();
    assert!(
      missing.contains("NODE_EXTRA_CA_CERTS=/nonexistent/ca.pem cannot be read"),
      "{missing}"
    );
    let dir = std::env::temp_dir().join(format!("boxlite-tls-test-{}", std::process::id()));
    std::fs::write(&dir, "not a certificate\n").unwrap();
    let empty = extra_roots(&dir).unwrap_err().to_string();
    std::fs::remove_file(&dir).unwrap();
    assert!(empty.contains("holds no CERTIFICATE block"), "{empty}");
  }
}
