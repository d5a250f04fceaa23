//! BoxRun has no tar API: one file per multipart request (2 MiB cap) and one file per
//! download. Tar uploads therefore go in 1 MiB parts to a staging directory and are unpacked by
//! an exec (`cat parts | tar -x[z]f - -C <path>`); downloads are archived by an exec first
//! (`tar -cf … -C <parent> <name>`, the layout BoxLite servers send), then streamed, and the
//! staging directory is removed when the stream ends or is dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use super::dialect::{download_file, upload_file};
use super::exec::{spawn_cleanup, Executor};
use super::request::{Route, Spec};
use super::transport::Payload;
use crate::archive;
use crate::client::ByteStream;
use crate::error::Result;

/// BoxRun rejects request bodies above 2 MiB; upload parts stay well below.
const BOXRUN_UPLOAD_PART_BYTES: usize = 1024 * 1024;
/// Where BoxRun uploads and downloads are staged in the guest (on the root filesystem: `/tmp`
/// is a tmpfs that file copies cannot see).
const BOXRUN_STAGING_DIR: &str = "/var/tmp";

/// Unpacks `tar` into `path`: staged in parts, then `tar -x` in the box.
pub(super) async fn upload(
  executor: &Arc<Executor>,
  route: &Route,
  box_id: &str,
  path: &str,
  tar: ByteStream,
) -> Result<()> {
  // Before anything is staged: a stream that fails at once leaves nothing to clean up.
  let (gzip, mut tar) = archive::sniff_gzip(tar).await?;
  let staging = staging_dir();
  executor
    .run(
      route,
      box_id,
      &["mkdir", "-p", "--", &staging],
      "preparing the upload",
    )
    .await?;
  let spec = upload_file(route, box_id);
  let mut part = BytesMut::with_capacity(BOXRUN_UPLOAD_PART_BYTES);
  let mut index = 0usize;
  let result: Result<()> = async {
    loop {
      let chunk = tar.next().await.transpose()?;
      if let Some(chunk) = &chunk {
        let mut rest = chunk.clone();
        while !rest.is_empty() {
          let take = rest.len().min(BOXRUN_UPLOAD_PART_BYTES - part.len());
          part.extend_from_slice(&rest.split_to(take));
          if part.len() == BOXRUN_UPLOAD_PART_BYTES {
            upload_part(executor, &spec, &staging, index, part.split().freeze()).await?;
            index += 1;
          }
        }
      } else {
        if !part.is_empty() {
          upload_part(executor, &spec, &staging, index, part.split().freeze()).await?;
        }
        return Ok(());
      }
    }
  }
  .await;
  if let Err(e) = result {
    let _ = executor
      .run(route, box_id, &["rm", "-rf", "--", &staging], "cleaning up")
      .await;
    return Err(e);
  }
  let flags = if gzip { "-xzf" } else { "-xf" };
  let script =
    format!(r#"mkdir -p -- "$1" && cat "$2"/part-* | tar {flags} - -C "$1"; s=$?; rm -rf -- "$2"; exit $s"#);
  executor
    .run(
      route,
      box_id,
      &["sh", "-c", &script, "sh", path, &staging],
      "unpacking the upload",
    )
    .await?;
  Ok(())
}

async fn upload_part(
  executor: &Executor,
  spec: &Spec,
  staging: &str,
  index: usize,
  bytes: Bytes,
) -> Result<()> {
  let len = bytes.len() as u64;
  let file = reqwest::multipart::Part::stream_with_length(reqwest::Body::from(bytes), len).file_name("part");
  let form = reqwest::multipart::Form::new()
    .text("dest", format!("{staging}/part-{index:06}"))
    .part("file", file);
  executor.transport.empty(spec, Payload::Multipart(form)).await
}

/// A tar of `path`: archived in the box, then fetched as one file; the staging directory goes
/// when the stream ends or is dropped.
pub(super) async fn download(
  executor: &Arc<Executor>,
  route: &Route,
  box_id: &str,
  path: &str,
) -> Result<ByteStream> {
  let (parent, name) = split_path(path);
  let staging = staging_dir();
  let archive = format!("{staging}/archive.tar");
  let script = r#"mkdir -p -- "$3" && tar -cf "$3/archive.tar" -C "$1" -- "$2""#;
  if let Err(e) = executor
    .run(
      route,
      box_id,
      &["sh", "-c", script, "sh", &parent, &name, &staging],
      "archiving",
    )
    .await
  {
    let _ = executor
      .run(route, box_id, &["rm", "-rf", "--", &staging], "cleaning up")
      .await;
    return Err(e);
  }
  let cleanup = StagingCleanup {
    executor: executor.clone(),
    route: route.clone(),
    box_id: box_id.to_string(),
    dir: staging,
    runtime: tokio::runtime::Handle::try_current().ok(),
  };
  let spec = download_file(route, box_id, &archive);
  let response = executor.transport.send(&spec, Payload::None).await?;
  let body = executor.transport.body_stream(&spec, response);
  Ok(Box::pin(body.map(move |item| {
    let _keep = &cleanup;
    item
  })))
}

fn staging_dir() -> String {
  static COUNTER: AtomicU64 = AtomicU64::new(0);
  let nanos = std::time::SystemTime::now()
    .duration_since(std::time::UNIX_EPOCH)
    .map(|d| d.as_nanos())
    .unwrap_or(0);
  let n = COUNTER.fetch_add(1, Ordering::Relaxed);
  format!(
    "{BOXRUN_STAGING_DIR}/.boxlite-xfer-{}-{nanos:x}-{n}",
    std::process::id()
  )
}

/// `(parent, name)` for `tar -C parent name`; `/` archives as `.` of `/`.
fn split_path(path: &str) -> (String, String) {
  let trimmed = path.trim_end_matches('/');
  if trimmed.is_empty() {
    return ("/".into(), ".".into());
  }
  match trimmed.rfind('/') {
    Some(0) => ("/".into(), trimmed[1..].into()),
    Some(i) => (trimmed[..i].into(), trimmed[i + 1..].into()),
    None => (".".into(), trimmed.into()),
  }
}

/// Removes a BoxRun staging directory once its download stream is finished or dropped.
struct StagingCleanup {
  executor: Arc<Executor>,
  route: Route,
  box_id: String,
  dir: String,
  /// See `KillOnDrop::runtime`.
  runtime: Option<tokio::runtime::Handle>,
}

impl Drop for StagingCleanup {
  fn drop(&mut self) {
    let executor = self.executor.clone();
    let route = self.route.clone();
    let box_id = std::mem::take(&mut self.box_id);
    let dir = std::mem::take(&mut self.dir);
    spawn_cleanup(&self.runtime, async move {
      let _ = executor
        .run(&route, &box_id, &["rm", "-rf", "--", &dir], "cleaning up")
        .await;
    });
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn download_paths_split_into_parent_and_name() {
    assert_eq!(split_path("/root/dir/"), ("/root".into(), "dir".into()));
    assert_eq!(split_path("/etc"), ("/".into(), "etc".into()));
    assert_eq!(split_path("/"), ("/".into(), ".".into()));
    assert_eq!(split_path("rel"), (".".into(), "rel".into()));
  }
}
