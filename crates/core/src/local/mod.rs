//! LocalClient: `BoxClient` over the boxlite Python SDK, run in-process by an embedded CPython.
//! `connect` does no I/O; the first call starts the process's one interpreter (`engine`) and
//! opens — or joins — the one SDK runtime of the client's `boxliteHome`; `dispose` leaves it,
//! and the last client to leave shuts the runtime down on the loop thread, releasing the home.
//! Every SDK call is a coroutine of the bridge (`bridge/`) running on the loop thread (see
//! `docs/local-engine.md`). Executions' requests and event streams live in `exec.rs`.

// A job's failure carries the whole Python exception description; it is the rare path.
#![allow(clippy::result_large_err)]

mod convert;
mod engine;
mod exec;
mod files;
mod probe;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::OnceCell;

pub use convert::{kind_of, Kind, PyFailure, EXCEPTION_KINDS};
pub use probe::{probe, Probe, MIN_PYTHON};

use crate::client::{
  BoxClient, BoxRecord, ByteStream, CreateBoxParams, ExecDone, ExecEventStream, ExecOutput, ExecRequest,
  Execution, Snapshot,
};
use crate::config::LocalConfig;
use crate::error::{Error, Result};
use convert::{to_error, Ctx, Reply};
use engine::Engine;
use exec::exec_args;

/// Builds the local client; starts no interpreter (that happens on first use).
pub fn connect(config: &LocalConfig) -> Result<Arc<dyn BoxClient>> {
  Ok(Arc::new(LocalClient::new(config)))
}

/// The home the SDK would use: the configured one, else `$BOXLITE_HOME`, else `~/.boxlite`.
pub fn resolve_home(config: &LocalConfig) -> PathBuf {
  let home = config
    .boxlite_home
    .clone()
    .or_else(|| {
      std::env::var_os("BOXLITE_HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
    })
    .unwrap_or_else(|| {
      std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
        .join(".boxlite")
    });
  std::path::absolute(&home).unwrap_or(home)
}

pub struct LocalClient {
  python_path: String,
  home: String,
  /// The engine, once this client has joined its home's runtime.
  session: OnceCell<&'static Engine>,
  disposed: AtomicBool,
}

impl LocalClient {
  pub fn new(config: &LocalConfig) -> Self {
    LocalClient {
      python_path: config.python_path.clone(),
      home: resolve_home(config).to_string_lossy().into_owned(),
      session: OnceCell::new(),
      disposed: AtomicBool::new(false),
    }
  }

  async fn engine(&self) -> Result<&'static Engine> {
    if self.disposed.load(Ordering::SeqCst) {
      return Err(Error::Disposed);
    }
    self
      .session
      .get_or_try_init(|| async {
        let engine = engine::engine(&self.python_path).await?;
        let ctx = Ctx {
          operation: "open the boxlite runtime",
          what: "home",
          id: &self.home,
        };
        engine
          .call(
            "acquire",
            json!({"home": self.home, "python_path": self.python_path}),
            None,
          )
          .await
          .map_err(|f| to_error(f, ctx))?;
        tracing::debug!(home = %self.home, "boxlite runtime joined");
        Ok::<_, Error>(engine)
      })
      .await
      .copied()
  }

  /// Runs bridge op `op` with `args` (plus `home`); errors name `what` `id`.
  async fn call(
    &self,
    op: &'static str,
    what: &'static str,
    id: &str,
    mut args: Value,
    blob: Option<Bytes>,
  ) -> Result<Reply> {
    let engine = self.engine().await?;
    args["home"] = Value::String(self.home.clone());
    let began = std::time::Instant::now();
    let result = engine.call(op, args, blob).await.map_err(|f| {
      to_error(
        f,
        Ctx {
          operation: op,
          what,
          id,
        },
      )
    });
    let ms = crate::diag::ms(began);
    let id = if id.is_empty() { "-" } else { id };
    match &result {
      // Stream polls are as frequent as output chunks: trace level.
      Ok(_) if op == "exec_next" => tracing::trace!(%op, %id, %ms, "sdk call"),
      Ok(_) => tracing::debug!(%op, %id, %ms, "sdk call"),
      Err(e) => tracing::debug!(%op, %id, %ms, error = %e, "sdk call failed"),
    }
    result
  }
}

fn validate_id(argument: &str, value: &str) -> Result<()> {
  if value.is_empty() {
    return Err(Error::InvalidArgument {
      argument: argument.into(),
      problem: "must not be empty".into(),
    });
  }
  Ok(())
}

#[async_trait]
impl BoxClient for LocalClient {
  async fn create_box(&self, params: CreateBoxParams) -> Result<BoxRecord> {
    let id = params.name.clone().unwrap_or_default();
    let args = json!({"params": serde_json::to_value(&params).map_err(|e| Error::Internal(e.to_string()))?});
    self
      .call("create_box", "box", &id, args, None)
      .await?
      .parse("box")
  }

  async fn get_box(&self, box_id: &str) -> Result<BoxRecord> {
    validate_id("boxId", box_id)?;
    self
      .call("get_box", "box", box_id, json!({"box_id": box_id}), None)
      .await?
      .parse("box")
  }

  async fn list_boxes(&self, status: Option<String>, page_size: Option<u32>) -> Result<Vec<BoxRecord>> {
    let mut boxes: Vec<BoxRecord> = self
      .call("list_boxes", "box", "", json!({}), None)
      .await?
      .parse("boxes")?;
    if let Some(status) = status.filter(|s| !s.is_empty()) {
      boxes.retain(|b| b.status == status);
    }
    if let Some(n) = page_size.filter(|n| *n > 0) {
      boxes.truncate(n as usize);
    }
    Ok(boxes)
  }

  async fn delete_box(&self, box_id: &str, force: bool) -> Result<()> {
    validate_id("boxId", box_id)?;
    self
      .call(
        "delete_box",
        "box",
        box_id,
        json!({"box_id": box_id, "force": force}),
        None,
      )
      .await
      .map(drop)
  }

  async fn start_box(&self, box_id: &str) -> Result<()> {
    self.start_box_record(box_id).await.map(drop)
  }

  async fn start_box_record(&self, box_id: &str) -> Result<Option<BoxRecord>> {
    validate_id("boxId", box_id)?;
    self
      .call("start_box", "box", box_id, json!({"box_id": box_id}), None)
      .await?
      .parse("box")
      .map(Some)
  }

  async fn stop_box(&self, box_id: &str) -> Result<()> {
    validate_id("boxId", box_id)?;
    self
      .call("stop_box", "box", box_id, json!({"box_id": box_id}), None)
      .await
      .map(drop)
  }

  async fn exec(&self, box_id: &str, request: ExecRequest) -> Result<ExecOutput> {
    validate_id("boxId", box_id)?;
    let args = json!({"box_id": box_id, "request": exec_args(&request)?});
    self
      .call("exec", "box", box_id, args, None)
      .await?
      .parse("exec result")
  }

  fn exec_now(
    &self,
    box_id: &str,
    request: ExecRequest,
    done: ExecDone,
  ) -> std::result::Result<(), ExecDone> {
    // Before the first job (interpreter start, runtime acquire) or after dispose: the async path.
    let Some(engine) = self
      .session
      .get()
      .copied()
      .filter(|_| !self.disposed.load(Ordering::SeqCst))
    else {
      return Err(done);
    };
    let args = match validate_id("boxId", box_id).and_then(|()| exec_args(&request)) {
      Ok(request) => json!({"box_id": box_id, "request": request, "home": self.home}),
      Err(error) => {
        done(Err(error));
        return Ok(());
      }
    };
    let box_id = box_id.to_string();
    let began = std::time::Instant::now();
    engine.submit_with(
      "exec",
      args,
      None,
      Box::new(move |outcome| {
        let ctx = Ctx {
          operation: "exec",
          what: "box",
          id: &box_id,
        };
        let result = outcome
          .map_err(|f| to_error(f, ctx))
          .and_then(|reply| reply.parse("exec result"));
        // The same diagnostics as `call` gives every other SDK call.
        let (op, id, ms) = ("exec", &box_id, crate::diag::ms(began));
        match &result {
          Ok(_) => tracing::debug!(%op, %id, %ms, "sdk call"),
          Err(e) => tracing::debug!(%op, %id, %ms, error = %e, "sdk call failed"),
        }
        done(result);
      }),
    );
    Ok(())
  }

  async fn exec_stream(&self, box_id: &str, request: ExecRequest) -> Result<ExecEventStream> {
    validate_id("boxId", box_id)?;
    let args = json!({"box_id": box_id, "request": exec_args(&request)?, "owned": true});
    let execution: Execution = self
      .call("exec_open", "box", box_id, args, None)
      .await?
      .parse("execution")?;
    Ok(exec::events(self.engine().await?, box_id, execution.id, true))
  }

  async fn exec_async(&self, box_id: &str, request: ExecRequest) -> Result<Execution> {
    validate_id("boxId", box_id)?;
    let args = json!({"box_id": box_id, "request": exec_args(&request)?, "owned": false});
    self
      .call("exec_open", "box", box_id, args, None)
      .await?
      .parse("execution")
  }

  async fn get_exec_output(&self, box_id: &str, exec_id: &str) -> Result<ExecEventStream> {
    validate_id("boxId", box_id)?;
    validate_id("execId", exec_id)?;
    Ok(exec::events(
      self.engine().await?,
      box_id,
      exec_id.to_string(),
      false,
    ))
  }

  async fn send_exec_input(&self, box_id: &str, exec_id: &str, data: Bytes, close: bool) -> Result<()> {
    validate_id("execId", exec_id)?;
    let args = json!({"box_id": box_id, "exec_id": exec_id, "close": close});
    self
      .call("exec_input", "execution", exec_id, args, Some(data))
      .await
      .map(drop)
  }

  async fn signal_exec(&self, box_id: &str, exec_id: &str, signal: i32) -> Result<()> {
    validate_id("execId", exec_id)?;
    let args = json!({"box_id": box_id, "exec_id": exec_id, "signal": signal});
    self
      .call("exec_signal", "execution", exec_id, args, None)
      .await
      .map(drop)
  }

  async fn resize_exec(&self, box_id: &str, exec_id: &str, cols: u16, rows: u16) -> Result<()> {
    validate_id("execId", exec_id)?;
    let args = json!({"box_id": box_id, "exec_id": exec_id, "cols": cols, "rows": rows});
    self
      .call("exec_resize", "execution", exec_id, args, None)
      .await
      .map(drop)
  }

  async fn upload_files(&self, box_id: &str, path: &str, tar: ByteStream) -> Result<()> {
    validate_id("boxId", box_id)?;
    validate_id("path", path)?;
    self.engine().await?;
    let staging = files::staging_dir("boxlite-upload-")?;
    let archive = staging.path().join("archive");
    let root = staging.path().join("root");
    files::save_stream(tar, &archive).await?;
    let (a, r) = (archive.clone(), root.clone());
    engine::run_blocking(move || files::unpack(&a, &r)).await?;
    let args = json!({"box_id": box_id, "host_dir": root.to_string_lossy(), "dest": path});
    let result = self.call("copy_in", "path", path, args, None).await.map(drop);
    drop(staging);
    result
  }

  async fn download_files(&self, box_id: &str, path: &str) -> Result<ByteStream> {
    validate_id("boxId", box_id)?;
    validate_id("path", path)?;
    self.engine().await?;
    let staging = files::staging_dir("boxlite-download-")?;
    let out = staging.path().join("out");
    std::fs::create_dir_all(&out)
      .map_err(|e| Error::Internal(format!("cannot create a staging directory: {e}")))?;
    let args = json!({"box_id": box_id, "src": path, "host_dir": out.to_string_lossy()});
    self.call("copy_out", "path", path, args, None).await?;
    let archive = staging.path().join("archive.tar");
    let name = files::entry_name(path);
    let (o, a) = (out.clone(), archive.clone());
    engine::run_blocking(move || {
      let entry = files::single_entry(&o)?;
      files::pack(&entry, &name, &a)
    })
    .await?;
    files::file_stream(archive, staging)
  }

  async fn create_snapshot(&self, box_id: &str, name: &str) -> Result<Snapshot> {
    validate_id("boxId", box_id)?;
    validate_id("name", name)?;
    let args = json!({"box_id": box_id, "name": name});
    self
      .call("snapshot_create", "box", box_id, args, None)
      .await?
      .parse("snapshot")
  }

  async fn list_snapshots(&self, box_id: &str) -> Result<Vec<Snapshot>> {
    validate_id("boxId", box_id)?;
    self
      .call("snapshot_list", "box", box_id, json!({"box_id": box_id}), None)
      .await?
      .parse("snapshots")
  }

  async fn restore_snapshot(&self, box_id: &str, name: &str) -> Result<()> {
    validate_id("boxId", box_id)?;
    validate_id("name", name)?;
    let args = json!({"box_id": box_id, "name": name});
    self
      .call("snapshot_restore", "snapshot", name, args, None)
      .await
      .map(drop)
  }

  async fn delete_snapshot(&self, box_id: &str, name: &str) -> Result<()> {
    validate_id("boxId", box_id)?;
    validate_id("name", name)?;
    let args = json!({"box_id": box_id, "name": name});
    self
      .call("snapshot_delete", "snapshot", name, args, None)
      .await
      .map(drop)
  }

  async fn clone_box(&self, box_id: &str, name: Option<String>) -> Result<BoxRecord> {
    validate_id("boxId", box_id)?;
    self
      .call(
        "clone_box",
        "box",
        box_id,
        json!({"box_id": box_id, "name": name}),
        None,
      )
      .await?
      .parse("box")
  }

  async fn export_box(&self, box_id: &str) -> Result<ByteStream> {
    validate_id("boxId", box_id)?;
    let staging = files::staging_dir("boxlite-export-")?;
    let args = json!({"box_id": box_id, "dest_dir": staging.path().to_string_lossy()});
    let path: String = self
      .call("export_box", "box", box_id, args, None)
      .await?
      .parse("archive path")?;
    files::file_stream(PathBuf::from(path), staging)
  }

  async fn import_box(&self, archive: ByteStream) -> Result<BoxRecord> {
    self.engine().await?;
    let staging = files::staging_dir("boxlite-import-")?;
    let path = staging.path().join("import.boxlite");
    files::save_stream(archive, &path).await?;
    let args = json!({"archive_path": path.to_string_lossy(), "name": Value::Null});
    let record = self
      .call("import_box", "archive", "", args, None)
      .await?
      .parse("box");
    drop(staging);
    record
  }

  async fn get_metrics(&self) -> Result<Value> {
    Ok(
      self
        .call("metrics", "home", &self.home, json!({}), None)
        .await?
        .value,
    )
  }

  async fn get_box_metrics(&self, box_id: &str) -> Result<Value> {
    validate_id("boxId", box_id)?;
    Ok(
      self
        .call("box_metrics", "box", box_id, json!({"box_id": box_id}), None)
        .await?
        .value,
    )
  }

  async fn get_config(&self) -> Result<Value> {
    let engine = self.engine().await?;
    let (major, minor, micro) = engine.facts.python_version;
    Ok(json!({
      "mode": "local",
      "boxliteHome": self.home,
      "pythonPath": self.python_path,
      "pythonExecutable": engine.facts.executable,
      "pythonVersion": format!("{major}.{minor}.{micro}"),
      "sdkVersion": engine.facts.sdk_version,
      "sdkPath": engine.facts.sdk_file,
    }))
  }

  async fn dispose(&self) -> Result<()> {
    if self.disposed.swap(true, Ordering::SeqCst) {
      return Ok(());
    }
    let Some(engine) = self.session.get() else {
      return Ok(());
    };
    let ctx = Ctx {
      operation: "dispose",
      what: "home",
      id: &self.home,
    };
    engine
      .call("release", json!({"home": self.home}), None)
      .await
      .map(drop)
      .map_err(|f| to_error(f, ctx))
  }
}

/// Hooks for the interpreter tests (`tests/local_*.rs`); not part of the API.
#[doc(hidden)]
pub mod testing;
