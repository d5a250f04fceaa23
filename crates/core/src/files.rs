//! File transfer with sandbank's semantics, the same over every backend: `writeFile` /
//! `readFile` of single files and `uploadArchive` / `downloadArchive` of directory contents,
//! binary-safe, streamed, with no size limit.
//!
//! Normal paths go through the backend's tar file API (copy-in / copy-out). Real guests mount
//! `/tmp` and `/dev/shm` as tmpfs, which copy-in writes *beneath* and copy-out may not see
//! (see `docs/dialects.md`), so paths there go through an exec instead: a `tar -x` fed on stdin
//! where the backend has stdin, base64 pieces inside commands where it has none, and checked
//! base64 pieces on stdout for reads (`exec_read`). Paths are always passed as arguments, never
//! spliced into shell text.

use bytes::Bytes;
use futures_util::StreamExt;

mod exec_read;

pub use exec_read::{cksum, Cksum};

use crate::adapter::Adapter;
use crate::archive;
use crate::client::{BoxClient, ByteStream, ExecEvent, ExecEventStream, ExecRequest, Features};
use crate::error::{Error, Result};

/// Guest mounts that copy-in cannot reach.
pub const TMPFS_MOUNTS: &[&str] = &["/tmp", "/dev/shm"];
/// Largest stdin write sent in one request.
const STDIN_PIECE_BYTES: usize = 1024 * 1024;
/// Raw bytes per command when data must travel as base64 inside commands (argv stays far below
/// Linux's 128 KiB single-argument limit).
const BASE64_PIECE_BYTES: usize = 48 * 1024;
/// stderr kept for error messages.
const STDERR_KEEP_BYTES: usize = 16 * 1024;

/// Whether `path` lies on a guest tmpfs mount.
pub fn on_tmpfs(path: &str) -> bool {
  TMPFS_MOUNTS
    .iter()
    .any(|mount| path == *mount || path.strip_prefix(mount).is_some_and(|rest| rest.starts_with('/')))
}

/// Checks that `path` is absolute and returns it normalised: `.` and empty segments dropped,
/// `..` resolved lexically (never above `/`), no trailing slash (except `/`). Every mode and
/// every route (file API or exec) sees this one form, so `/root/../tmp/x` is `/tmp/x` wherever
/// it goes.
pub fn absolute_path(argument: &str, path: &str) -> Result<String> {
  if !path.starts_with('/') {
    return Err(Error::InvalidArgument {
      argument: argument.into(),
      problem: format!("must be an absolute path (e.g. '/root/file.txt'), got '{path}'"),
    });
  }
  if path.contains('\0') {
    return Err(Error::InvalidArgument {
      argument: argument.into(),
      problem: "must not contain NUL bytes".into(),
    });
  }
  let mut segments: Vec<&str> = Vec::new();
  for segment in path.split('/') {
    match segment {
      "" | "." => {}
      ".." => {
        segments.pop();
      }
      name => segments.push(name),
    }
  }
  Ok(format!("/{}", segments.join("/")))
}

/// `(parent directory, file name)` of an absolute file path.
pub fn split_file_path(path: &str) -> Result<(String, String)> {
  let path = absolute_path("path", path)?;
  let (dir, name) = path.rsplit_once('/').expect("absolute path has a slash");
  if name.is_empty() || name == "." || name == ".." {
    return Err(Error::InvalidArgument {
      argument: "path".into(),
      problem: format!("'{path}' does not name a file"),
    });
  }
  Ok((
    if dir.is_empty() {
      "/".to_string()
    } else {
      dir.to_string()
    },
    name.to_string(),
  ))
}

/// `bash -c script` with `args` as `$1…`; `$0` names the operation in bash's own messages.
fn script(operation: &str, script: &str, args: &[&str]) -> ExecRequest {
  let mut cmd = vec![
    "bash".to_string(),
    "-c".to_string(),
    script.to_string(),
    operation.to_string(),
  ];
  cmd.extend(args.iter().map(|a| a.to_string()));
  ExecRequest {
    cmd,
    ..ExecRequest::default()
  }
}

/// Runs a command and fails with its stderr when it exits non-zero.
async fn run_checked(client: &dyn BoxClient, id: &str, request: ExecRequest, path: &str) -> Result<()> {
  let output = client.exec(id, request).await?;
  if output.exit_code == 0 {
    return Ok(());
  }
  Err(command_failure(path, Some(output.exit_code), &output.stderr))
}

fn command_failure(path: &str, exit_code: Option<i32>, stderr: &str) -> Error {
  let stderr = stderr.trim();
  if stderr.contains("No such file or directory") || stderr.contains("Cannot open") {
    return Error::FileNotFound {
      path: path.to_string(),
    };
  }
  let code = exit_code.map_or("no exit code".to_string(), |c| format!("exit {c}"));
  Error::InvalidArgument {
    argument: "path".into(),
    problem: format!("'{path}': command in the box failed ({code}): {stderr}"),
  }
}

/// Feeds `input` to a command's stdin and waits for it to end successfully.
async fn run_with_stdin(
  client: &dyn BoxClient,
  id: &str,
  request: ExecRequest,
  mut input: ByteStream,
  path: &str,
) -> Result<()> {
  let execution = client.exec_async(id, request).await?;
  // Opened before any input is sent, so no output (error messages) is lost.
  let output = client.get_exec_output(id, &execution.id).await?;
  let sent: Result<()> = async {
    while let Some(chunk) = input.next().await {
      let mut chunk = chunk?;
      while !chunk.is_empty() {
        let piece = chunk.split_to(chunk.len().min(STDIN_PIECE_BYTES));
        client.send_exec_input(id, &execution.id, piece, false).await?;
      }
    }
    client
      .send_exec_input(id, &execution.id, Bytes::new(), true)
      .await
  }
  .await;
  let (exit_code, stderr) = drain(output).await?;
  match (exit_code, sent) {
    // `tar` may exit at the end-of-archive marker before the last padding was written: its
    // success is what counts.
    (Some(0), _) => Ok(()),
    // The command's own failure explains a broken stdin better than the write error.
    (Some(code), _) => Err(command_failure(path, Some(code), &stderr)),
    (None, Err(error)) => Err(error),
    (None, Ok(())) => Err(command_failure(path, None, &stderr)),
  }
}

/// Reads an execution to its end: `(exit code, first bytes of stderr)`.
async fn drain(mut events: ExecEventStream) -> Result<(Option<i32>, String)> {
  let mut stderr = Vec::new();
  while let Some(event) = events.next().await {
    match event? {
      ExecEvent::Stderr(chunk) if stderr.len() < STDERR_KEEP_BYTES => stderr.extend_from_slice(&chunk),
      ExecEvent::Exit(code) => return Ok((code, String::from_utf8_lossy(&stderr).into_owned())),
      _ => {}
    }
  }
  Err(Error::Protocol {
    method: "exec".into(),
    path: "output".into(),
    message: "output ended without an exit status".into(),
  })
}

/// Extracts a plain tar into `dest` (created if missing) with the best path the backend has.
async fn extract_into(
  client: &dyn BoxClient,
  features: Features,
  id: &str,
  dest: &str,
  tar: ByteStream,
) -> Result<()> {
  if features.tar_upload && !on_tmpfs(dest) {
    run_checked(
      client,
      id,
      script("sandbank-mkdir", r#"mkdir -p -- "$1""#, &[dest]),
      dest,
    )
    .await?;
    // A trailing slash makes servers extract *into* the directory (never rename a lone file).
    let target = if dest == "/" {
      "/".to_string()
    } else {
      format!("{dest}/")
    };
    return client.upload_files(id, &target, tar).await;
  }
  let extract = r#"mkdir -p -- "$1" && exec tar -xf - -C "$1""#;
  if features.exec_stdin {
    return run_with_stdin(
      client,
      id,
      script("sandbank-extract", extract, &[dest]),
      tar,
      dest,
    )
    .await;
  }
  extract_via_base64_commands(client, id, dest, tar).await
}

/// For backends without stdin: the archive travels in base64 pieces appended to a staging file
/// in `dest`, which is then extracted and removed.
async fn extract_via_base64_commands(
  client: &dyn BoxClient,
  id: &str,
  dest: &str,
  mut tar: ByteStream,
) -> Result<()> {
  use base64::Engine as _;
  let stage = format!(
    "{}/.sandbank-upload-{}.tar",
    dest.trim_end_matches('/'),
    std::process::id() ^ rand_suffix()
  );
  run_checked(
    client,
    id,
    script(
      "sandbank-stage",
      r#"mkdir -p -- "$1" && : > "$2""#,
      &[dest, &stage],
    ),
    dest,
  )
  .await?;
  let result: Result<()> = async {
    let mut pending = Vec::with_capacity(BASE64_PIECE_BYTES);
    let mut finished = false;
    while !finished {
      match tar.next().await {
        Some(chunk) => pending.extend_from_slice(&chunk?),
        None => finished = true,
      }
      while pending.len() >= BASE64_PIECE_BYTES || (finished && !pending.is_empty()) {
        let piece: Vec<u8> = pending.drain(..pending.len().min(BASE64_PIECE_BYTES)).collect();
        let encoded = base64::engine::general_purpose::STANDARD.encode(&piece);
        let append = script(
          "sandbank-append",
          r#"printf %s "$2" | base64 -d >> "$1""#,
          &[&stage, &encoded],
        );
        run_checked(client, id, append, dest).await?;
      }
    }
    run_checked(
      client,
      id,
      script("sandbank-extract", r#"tar -xf "$2" -C "$1""#, &[dest, &stage]),
      dest,
    )
    .await
  }
  .await;
  let _ = client
    .exec(id, script("sandbank-cleanup", r#"rm -f -- "$1""#, &[&stage]))
    .await;
  result
}

fn rand_suffix() -> u32 {
  use std::time::{SystemTime, UNIX_EPOCH};
  SystemTime::now()
    .duration_since(UNIX_EPOCH)
    .map_or(0, |d| d.subsec_nanos())
}

impl Adapter {
  /// Writes `data` to `path`, creating parent directories and replacing an existing file.
  pub async fn write_file(&self, id: &str, path: &str, data: Bytes) -> Result<()> {
    let (dir, name) = split_file_path(path)?;
    let client = self.client()?;
    let features = client.features().await?;
    let tar = archive::single_file_tar(&name, data, 0o644)?;
    extract_into(client.as_ref(), features, id, &dir, tar).await
  }

  /// The bytes of the file at `path`, streamed.
  pub async fn read_file(&self, id: &str, path: &str) -> Result<ByteStream> {
    let path = absolute_path("path", path)?;
    let client = self.client()?;
    let features = client.features().await?;
    if features.tar_download && !on_tmpfs(&path) {
      let tar = self.download(client.as_ref(), id, &path).await?;
      return Ok(archive::single_file_content(tar, &path));
    }
    Ok(exec_read::read(client, id, &path))
  }

  /// Extracts a tar or tar.gz archive into `dest_dir` (created if missing), exactly like
  /// `mkdir -p dest && tar xf archive -C dest`.
  pub async fn upload_archive(&self, id: &str, archive_stream: ByteStream, dest_dir: &str) -> Result<()> {
    let dest = absolute_path("destDir", dest_dir)?;
    let client = self.client()?;
    let features = client.features().await?;
    let tar = archive::plain_tar(archive_stream).await?;
    extract_into(client.as_ref(), features, id, &dest, tar).await
  }

  /// A gzip tar of the contents of `src_dir`, like `tar czf - -C src_dir .`.
  pub async fn download_archive(&self, id: &str, src_dir: &str) -> Result<ByteStream> {
    let src = absolute_path("srcDir", src_dir)?;
    let client = self.client()?;
    let features = client.features().await?;
    if features.tar_download && features.tar_download_keeps_links && !on_tmpfs(&src) {
      let tar = self.download(client.as_ref(), id, &src).await?;
      return Ok(archive::contents_archive(tar, &src));
    }
    // Packed into a file first, so that it is read through the checked piecewise reader.
    let pack = script(
      "sandbank-archive",
      r#"test -d "$1" || { echo "$1: No such file or directory" >&2; exit 1; }; stage="$(mktemp)" && tar -czf "$stage" -C "$1" . && echo "$stage" || { rm -f -- "$stage"; exit 1; }"#,
      &[&src],
    );
    let output = client.exec(id, pack).await?;
    if output.exit_code != 0 {
      return Err(command_failure(&src, Some(output.exit_code), &output.stderr));
    }
    let stage = output.stdout.trim().to_string();
    let cleanup = StageCleanup {
      client: client.clone(),
      id: id.to_string(),
      stage: stage.clone(),
      runtime: tokio::runtime::Handle::try_current().ok(),
    };
    let pieces = exec_read::read(client, id, &stage);
    Ok(Box::pin(pieces.map(move |piece| {
      let _keep_until_the_stream_ends = &cleanup;
      piece
    })))
  }

  /// `download_files`, telling a missing path apart from a missing box: a server's refusal of a
  /// download names the box even when the path is what is missing, so the box's own look-up
  /// decides.
  async fn download(&self, client: &dyn BoxClient, id: &str, path: &str) -> Result<ByteStream> {
    match client.download_files(id, path).await {
      Ok(stream) => Ok(stream),
      Err(error @ (Error::NotFound { .. } | Error::Api(_))) => match client.get_box(id).await {
        Ok(_) if error.is_not_found() || says_path_is_missing(&error) => Err(Error::FileNotFound {
          path: path.to_string(),
        }),
        Ok(_) => Err(error),
        Err(box_error) if box_error.is_not_found() => Err(box_error),
        Err(_) => Err(error),
      },
      Err(error) => Err(error),
    }
  }
}

/// Removes a staged archive from the box once its stream is dropped (read, failed or abandoned).
struct StageCleanup {
  client: std::sync::Arc<dyn BoxClient>,
  id: String,
  stage: String,
  runtime: Option<tokio::runtime::Handle>,
}

impl Drop for StageCleanup {
  fn drop(&mut self) {
    let (client, id) = (self.client.clone(), self.id.clone());
    let remove = script("sandbank-cleanup", r#"rm -f -- "$1""#, &[&self.stage]);
    if let Some(runtime) = &self.runtime {
      runtime.spawn(async move {
        let _ = client.exec(&id, remove).await;
      });
    }
  }
}

/// A server error whose text says the source path is missing: the SSE-era reference server
/// answers a missing path with 500 and the guest's "not found: source path does not exist".
fn says_path_is_missing(error: &Error) -> bool {
  let text = error.to_string().to_lowercase();
  ["does not exist", "no such file"]
    .iter()
    .any(|w| text.contains(w))
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn a_server_error_saying_the_source_is_missing_reads_as_a_missing_path() {
    let api = |message: &str| {
      Error::Api(Box::new(crate::error::ApiError {
        status: 500,
        error_type: None,
        code: None,
        message: message.into(),
        method: "GET".into(),
        path: "/v1/default/boxes/b/files".into(),
      }))
    };
    assert!(says_path_is_missing(&api(
      "not found: source path does not exist"
    )));
    assert!(!says_path_is_missing(&api("Internal Server Error")));
  }

  #[test]
  fn tmpfs_paths_are_tmp_and_dev_shm_and_nothing_that_merely_starts_alike() {
    for path in ["/tmp", "/tmp/a", "/tmp/a/b", "/dev/shm", "/dev/shm/x"] {
      assert!(on_tmpfs(path), "{path}");
    }
    for path in ["/", "/tmpfoo", "/root/tmp", "/dev", "/var/tmp/x"] {
      assert!(!on_tmpfs(path), "{path}");
    }
  }

  #[test]
  fn paths_must_be_absolute_and_lose_trailing_slashes() {
    assert_eq!(absolute_path("destDir", "/a/b/").unwrap(), "/a/b");
    assert_eq!(absolute_path("destDir", "/").unwrap(), "/");
    assert_eq!(absolute_path("destDir", "///").unwrap(), "/");
    assert_eq!(absolute_path("path", "/root/../tmp/x").unwrap(), "/tmp/x");
    assert_eq!(absolute_path("path", "/a/./b//c/").unwrap(), "/a/b/c");
    assert_eq!(absolute_path("path", "/../../etc").unwrap(), "/etc");
    assert!(on_tmpfs(&absolute_path("path", "/root/../tmp/x").unwrap()));
    let err = absolute_path("path", "relative.txt").unwrap_err();
    assert_eq!(
      err.to_string(),
      "path must be an absolute path (e.g. '/root/file.txt'), got 'relative.txt'"
    );
  }

  #[test]
  fn file_paths_split_into_parent_and_name() {
    assert_eq!(
      split_file_path("/root/a b/it's $(x).txt").unwrap(),
      ("/root/a b".into(), "it's $(x).txt".into())
    );
    assert_eq!(
      split_file_path("/top.txt").unwrap(),
      ("/".into(), "top.txt".into())
    );
    assert!(split_file_path("/").is_err());
    assert!(split_file_path("/a/..").is_err());
  }

  #[test]
  fn scripts_pass_paths_as_arguments_not_as_shell_text() {
    let hostile = "/tmp/x'; rm -rf / #";
    let request = script("sandbank-extract", r#"mkdir -p -- "$1""#, &[hostile]);
    assert_eq!(
      request.cmd,
      ["bash", "-c", r#"mkdir -p -- "$1""#, "sandbank-extract", hostile]
    );
  }

  #[test]
  fn failures_naming_a_missing_file_become_file_not_found() {
    let err = command_failure("/x", Some(1), "base64: /x: No such file or directory\n");
    assert_eq!(err.code(), "file_not_found");
    let err = command_failure("/x", Some(2), "tar: something else");
    assert!(err.to_string().contains("exit 2"), "{err}");
  }
}
