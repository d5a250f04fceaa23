//! Ids and names a caller hands us that end up in URL paths or SDK lookups. One that cannot name
//! a box, execution or snapshot (`''`, `.`, `..`, a slash, control characters) would reach
//! another URL once the path is normalised (`GET /v1/boxes/..` is `GET /v1/`), so `Checked`
//! refuses it before any request, in every mode, as the contract's not-found (getSandbox
//! rejects with SandboxNotFoundError, destroySandbox resolves). See docs/behaviour.md.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::Value;

use crate::client::{
  BoxClient, BoxRecord, BoxTerminal, ByteStream, CreateBoxParams, ExecDone, ExecEventStream, ExecOutput,
  ExecRequest, Execution, Features, Snapshot,
};
use crate::error::{Error, Result};

/// Whether `id` can be one path segment naming a resource.
pub fn is_possible_id(id: &str) -> bool {
  !(id.is_empty() || id == "." || id == ".." || id.contains(['/', '\\']) || id.chars().any(char::is_control))
}

/// `Ok` for an id that may exist; otherwise the not-found of `what`, with no request made.
pub fn check(what: &'static str, id: &str) -> Result<()> {
  if is_possible_id(id) {
    Ok(())
  } else {
    Err(Error::not_found(what, id))
  }
}

/// A snapshot name to create: an impossible one is a bad argument, not a missing snapshot.
fn check_new_name(name: &str) -> Result<()> {
  if is_possible_id(name) {
    Ok(())
  } else {
    Err(Error::InvalidArgument {
      argument: "name".into(),
      problem: format!(
        "{name:?} cannot name a snapshot (empty, '.', '..', slashes and control characters are not allowed)"
      ),
    })
  }
}

/// Wraps a mode's client so every id is checked before the client sees it.
pub struct Checked(pub Arc<dyn BoxClient>);

#[async_trait]
impl BoxClient for Checked {
  async fn create_box(&self, params: CreateBoxParams) -> Result<BoxRecord> {
    self.0.create_box(params).await
  }
  async fn get_box(&self, box_id: &str) -> Result<BoxRecord> {
    check("box", box_id)?;
    self.0.get_box(box_id).await
  }
  async fn list_boxes(&self, status: Option<String>, page_size: Option<u32>) -> Result<Vec<BoxRecord>> {
    self.0.list_boxes(status, page_size).await
  }
  async fn delete_box(&self, box_id: &str, force: bool) -> Result<()> {
    check("box", box_id)?;
    self.0.delete_box(box_id, force).await
  }
  async fn start_box(&self, box_id: &str) -> Result<()> {
    check("box", box_id)?;
    self.0.start_box(box_id).await
  }
  async fn start_box_record(&self, box_id: &str) -> Result<Option<BoxRecord>> {
    check("box", box_id)?;
    self.0.start_box_record(box_id).await
  }
  async fn stop_box(&self, box_id: &str) -> Result<()> {
    check("box", box_id)?;
    self.0.stop_box(box_id).await
  }
  async fn exec(&self, box_id: &str, request: ExecRequest) -> Result<ExecOutput> {
    check("box", box_id)?;
    self.0.exec(box_id, request).await
  }
  fn exec_now(
    &self,
    box_id: &str,
    request: ExecRequest,
    done: ExecDone,
  ) -> std::result::Result<(), ExecDone> {
    if let Err(error) = check("box", box_id) {
      done(Err(error));
      return Ok(());
    }
    self.0.exec_now(box_id, request, done)
  }
  async fn exec_stream(&self, box_id: &str, request: ExecRequest) -> Result<ExecEventStream> {
    check("box", box_id)?;
    self.0.exec_stream(box_id, request).await
  }
  async fn exec_async(&self, box_id: &str, request: ExecRequest) -> Result<Execution> {
    check("box", box_id)?;
    self.0.exec_async(box_id, request).await
  }
  async fn get_exec_output(&self, box_id: &str, exec_id: &str) -> Result<ExecEventStream> {
    check("box", box_id)?;
    check("execution", exec_id)?;
    self.0.get_exec_output(box_id, exec_id).await
  }
  async fn send_exec_input(&self, box_id: &str, exec_id: &str, data: Bytes, close: bool) -> Result<()> {
    check("box", box_id)?;
    check("execution", exec_id)?;
    self.0.send_exec_input(box_id, exec_id, data, close).await
  }
  async fn signal_exec(&self, box_id: &str, exec_id: &str, signal: i32) -> Result<()> {
    check("box", box_id)?;
    check("execution", exec_id)?;
    self.0.signal_exec(box_id, exec_id, signal).await
  }
  async fn resize_exec(&self, box_id: &str, exec_id: &str, cols: u16, rows: u16) -> Result<()> {
    check("box", box_id)?;
    check("execution", exec_id)?;
    self.0.resize_exec(box_id, exec_id, cols, rows).await
  }
  async fn open_box_terminal(
    &self,
    box_id: &str,
    shell: &str,
    term: &str,
    cols: u16,
    rows: u16,
  ) -> Result<BoxTerminal> {
    check("box", box_id)?;
    self.0.open_box_terminal(box_id, shell, term, cols, rows).await
  }
  async fn upload_files(&self, box_id: &str, path: &str, tar: ByteStream) -> Result<()> {
    check("box", box_id)?;
    self.0.upload_files(box_id, path, tar).await
  }
  async fn download_files(&self, box_id: &str, path: &str) -> Result<ByteStream> {
    check("box", box_id)?;
    self.0.download_files(box_id, path).await
  }
  async fn create_snapshot(&self, box_id: &str, name: &str) -> Result<Snapshot> {
    check("box", box_id)?;
    check_new_name(name)?;
    self.0.create_snapshot(box_id, name).await
  }
  async fn list_snapshots(&self, box_id: &str) -> Result<Vec<Snapshot>> {
    check("box", box_id)?;
    self.0.list_snapshots(box_id).await
  }
  async fn restore_snapshot(&self, box_id: &str, name: &str) -> Result<()> {
    check("box", box_id)?;
    check("snapshot", name)?;
    self.0.restore_snapshot(box_id, name).await
  }
  async fn delete_snapshot(&self, box_id: &str, name: &str) -> Result<()> {
    check("box", box_id)?;
    check("snapshot", name)?;
    self.0.delete_snapshot(box_id, name).await
  }
  async fn clone_box(&self, box_id: &str, name: Option<String>) -> Result<BoxRecord> {
    check("box", box_id)?;
    self.0.clone_box(box_id, name).await
  }
  async fn export_box(&self, box_id: &str) -> Result<ByteStream> {
    check("box", box_id)?;
    self.0.export_box(box_id).await
  }
  async fn import_box(&self, archive: ByteStream) -> Result<BoxRecord> {
    self.0.import_box(archive).await
  }
  async fn get_metrics(&self) -> Result<Value> {
    self.0.get_metrics().await
  }
  async fn get_box_metrics(&self, box_id: &str) -> Result<Value> {
    check("box", box_id)?;
    self.0.get_box_metrics(box_id).await
  }
  async fn get_config(&self) -> Result<Value> {
    self.0.get_config().await
  }
  async fn dispose(&self) -> Result<()> {
    self.0.dispose().await
  }
  async fn features(&self) -> Result<Features> {
    self.0.features().await
  }
  async fn backend_name(&self) -> Result<String> {
    self.0.backend_name().await
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn impossible_ids_are_refused_and_real_ones_pass() {
    for bad in ["", ".", "..", "a/b", "/", "..\\x", "a\nb", "a\0"] {
      assert!(!is_possible_id(bad), "{bad:?}");
      let err = check("box", bad).unwrap_err();
      assert_eq!(err.code(), "not_found");
    }
    for good in ["box_abc123", "01HZX4", "my-box.v2", "...", "a b", "ü"] {
      assert!(is_possible_id(good), "{good:?}");
    }
    assert_eq!(check_new_name("..").unwrap_err().code(), "invalid_argument");
  }
}
