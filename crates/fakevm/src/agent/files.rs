//! `boxlite.v1` Files for one box: Upload and Download onto its root filesystem with the
//! guest's own placement rules (the `boxlite-shared` tar helpers).

#![allow(clippy::result_large_err)]

use super::Agent;
use boxlite_shared::tar::{PackContext, UnpackContext};
use boxlite_shared::{DownloadChunk, DownloadRequest, UploadChunk, UploadResponse};
use futures::{Stream, StreamExt};
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use tonic::{Request, Response, Status, Streaming};
fn in_rootfs(root: &Path, path: &str) -> Result<PathBuf, Status> {
  let p = Path::new(path);
  if p.components().any(|c| matches!(c, Component::ParentDir)) {
    return Err(Status::invalid_argument("path must not contain .."));
  }
  Ok(root.join(p.strip_prefix("/").unwrap_or(p)))
}

type DownloadStream = Pin<Box<dyn Stream<Item = Result<DownloadChunk, Status>> + Send>>;

#[tonic::async_trait]
impl boxlite_shared::Files for Agent {
  async fn upload(
    &self,
    request: Request<Streaming<UploadChunk>>,
  ) -> Result<Response<UploadResponse>, Status> {
    let mut stream = request.into_inner();
    let first = stream
      .message()
      .await?
      .ok_or_else(|| Status::invalid_argument("empty upload stream"))?;
    if first.dest_path.is_empty() {
      return Err(Status::invalid_argument("dest_path is required in first chunk"));
    }
    eprintln!(
      "boxlite-fakevm: box {}: upload to {:?} (source_is_dir {:?}, mkdir_parents {}, overwrite {})",
      self.0.box_id, first.dest_path, first.source_is_dir, first.mkdir_parents, first.overwrite
    );
    let root = self.0.rootfs()?;
    let dest = in_rootfs(&root, &first.dest_path)?;
    let force_directory = first.dest_path.ends_with('/');
    let opts = |force_directory| UnpackContext {
      overwrite: first.overwrite,
      mkdir_parents: first.mkdir_parents,
      force_directory,
    };
    let head = std::io::Result::Ok(first.data.clone());
    let rest = stream.map(|m| {
      m.map(|c| c.data)
        .map_err(|s| std::io::Error::other(s.message().to_string()))
    });
    let bytes: boxlite_shared::BoxByteStream =
      Box::pin(futures::stream::once(async move { head }).chain(rest));
    let result = match first.source_is_dir {
      Some(is_dir) => boxlite_shared::tar::unpack_stream(bytes, dest, opts(is_dir || force_directory))
        .await
        .map(|_| ()),
      None => {
        // No shape hint: spool the tar, then let the archive decide (file-based path).
        let spool = self
          .0
          .scratch
          .join(format!("upload-{}.tar", self.0.next_exec_id()));
        let mut file = tokio::fs::File::create(&spool)
          .await
          .map_err(|e| Status::internal(format!("failed to create temp file: {e}")))?;
        let mut bytes = bytes;
        let mut total = 0usize;
        while let Some(chunk) = bytes.next().await {
          let chunk = chunk.map_err(|e| Status::internal(e.to_string()))?;
          total += chunk.len();
          tokio::io::AsyncWriteExt::write_all(&mut file, &chunk)
            .await
            .map_err(|e| Status::internal(format!("failed to write temp file: {e}")))?;
        }
        // tokio's File hands writes to a blocking thread: without this flush the unpack below
        // could read the spool before its last bytes land (an empty tar: nothing extracted).
        tokio::io::AsyncWriteExt::flush(&mut file)
          .await
          .map_err(|e| Status::internal(format!("failed to flush temp file: {e}")))?;
        drop(file);
        eprintln!(
          "boxlite-fakevm: box {}: upload spooled {total} bytes",
          self.0.box_id
        );
        let r = boxlite_shared::tar::unpack(spool.clone(), dest, opts(force_directory)).await;
        let _ = tokio::fs::remove_file(&spool).await;
        r
      }
    };
    if let Err(e) = &result {
      eprintln!("boxlite-fakevm: box {}: upload failed: {e}", self.0.box_id);
    }
    result.map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(UploadResponse {
      success: true,
      error: None,
    }))
  }

  type DownloadStream = DownloadStream;

  async fn download(
    &self,
    request: Request<DownloadRequest>,
  ) -> Result<Response<Self::DownloadStream>, Status> {
    let req = request.into_inner();
    if req.src_path.is_empty() {
      return Err(Status::invalid_argument("src_path is required"));
    }
    let root = self.0.rootfs()?;
    let src = in_rootfs(&root, &req.src_path)?;
    if !src.exists() {
      return Err(Status::not_found("source path does not exist"));
    }
    let (is_dir, stream) = boxlite_shared::tar::pack_stream(
      src,
      PackContext {
        follow_symlinks: req.follow_symlinks,
        include_parent: req.include_parent,
      },
    )
    .await
    .map_err(|e| Status::internal(e.to_string()))?;
    let mut first = true;
    let out = stream.map(move |item| {
      let hint = first.then_some(is_dir);
      first = false;
      item
        .map(|data| DownloadChunk {
          data,
          source_is_dir: hint,
        })
        .map_err(|e| Status::internal(e.to_string()))
    });
    Ok(Response::new(Box::pin(out)))
  }
}
