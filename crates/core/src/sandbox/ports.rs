//! Port URLs of `exposePort`: the host ports a sandbox was created with, remembered per box, and
//! the URL naming the mapped port (or the guest port itself) on the API host.

use super::invalid;
use crate::adapter::Adapter;
use crate::error::Result;

impl Adapter {
  /// URL of a guest port: the mapped host port when the sandbox was created with one.
  pub fn expose_port(&self, id: &str, port: u32, hostname: Option<&str>) -> Result<String> {
    let guest = u16::try_from(port)
      .ok()
      .filter(|p| *p > 0)
      .ok_or_else(|| invalid("port", "must be 1–65535"))?;
    let host_port = self
      .ports
      .lock()
      .expect("ports lock")
      .get(id)
      .and_then(|m| m.get(&guest).copied())
      .unwrap_or(guest);
    let host = match hostname {
      Some(h) if !h.is_empty() => h.to_string(),
      _ => self.host()?,
    };
    let host = if host.contains(':') && !host.starts_with('[') {
      format!("[{host}]")
    } else {
      host
    };
    Ok(format!("http://{host}:{host_port}"))
  }

  /// Whether this adapter created box `id` with a mapping for guest port `guest`.
  pub(crate) fn maps_guest_port(&self, id: &str, guest: u16) -> bool {
    self
      .ports
      .lock()
      .expect("ports lock")
      .get(id)
      .is_some_and(|m| m.contains_key(&guest))
  }

  pub(super) fn record_ports(&self, id: &str, ports: &[(u16, u16)]) {
    let map = ports.iter().map(|(host, guest)| (*guest, *host)).collect();
    self.ports.lock().expect("ports lock").insert(id.to_string(), map);
  }

  pub(super) fn forget_ports(&self, id: &str) {
    self.ports.lock().expect("ports lock").remove(id);
  }
}
