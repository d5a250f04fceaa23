//! Sandbox-level methods of `NativeAdapter` (the `AdapterSandbox` of sandbank), keyed by box id.
//! Each converts arguments, awaits `boxlite_core::Adapter` and converts the result.

use bytes::Bytes;
use napi::bindgen_prelude::*;
use napi_derive::napi;
use serde_json::Value;

use boxlite_core::client::ExecDone;
use boxlite_core::sandbox::{CreateConfig, ExecOptions, ListFilter};

use crate::adapter::NativeAdapter;
use crate::client::{byte_stream_from_js, exec_bytes, from_js, js_bytes, to_js, JsBytes};
use crate::error::to_napi;

fn options(value: Option<Value>) -> Result<ExecOptions> {
  match value {
    None | Some(Value::Null) => Ok(ExecOptions::default()),
    Some(value) => from_js("options", value),
  }
}

#[napi]
impl NativeAdapter {
  #[napi(
    ts_return_type = "Promise<{ id: string; state: string; createdAt: string; image: string; status: string }>"
  )]
  pub async fn create_sandbox(&self, config: Value) -> Result<Value> {
    let config: CreateConfig = from_js("config", config)?;
    to_js(self.core().create_sandbox(&config).await.map_err(to_napi)?)
  }

  #[napi(
    ts_return_type = "Promise<{ id: string; state: string; createdAt: string; image: string; status: string }>"
  )]
  pub async fn get_sandbox(&self, id: String) -> Result<Value> {
    to_js(self.core().get_sandbox(&id).await.map_err(to_napi)?)
  }

  #[napi(ts_return_type = "Promise<Array<{ id: string; state: string; createdAt: string; image: string }>>")]
  pub async fn list_sandboxes(&self, filter: Option<Value>) -> Result<Value> {
    let filter: ListFilter = match filter {
      None | Some(Value::Null) => ListFilter::default(),
      Some(value) => from_js("filter", value)?,
    };
    to_js(self.core().list_sandboxes(&filter).await.map_err(to_napi)?)
  }

  #[napi]
  pub async fn destroy_sandbox(&self, id: String) -> Result<()> {
    self.core().destroy_sandbox(&id).await.map_err(to_napi)
  }

  // The promise is settled straight from the thread that has the result when the core can
  // (`exec_now`: local mode), else from an awaited `exec` on the tokio runtime.
  #[napi(ts_return_type = "Promise<{ exitCode: number; stdout: string; stderr: string }>")]
  pub fn sandbox_exec<'env>(
    &self,
    env: &'env Env,
    id: String,
    command: String,
    options_value: Option<Value>,
  ) -> Result<Object<'env>> {
    let options = options(options_value)?;
    let (deferred, promise) = env.create_deferred()?;
    let done: ExecDone = Box::new(move |result| match result.map_err(to_napi).and_then(to_js) {
      Ok(value) => deferred.resolve(move |_| Ok(value)),
      Err(error) => deferred.reject(error),
    });
    let core = self.core();
    if let Err(done) = core.exec_now(&id, &command, &options, done) {
      napi::bindgen_prelude::spawn(async move { done(core.exec(&id, &command, &options).await) });
    }
    Ok(promise)
  }

  #[napi(ts_return_type = "Promise<ReadableStream<Uint8Array>>")]
  pub fn sandbox_exec_stream<'env>(
    &self,
    env: &'env Env,
    id: String,
    command: String,
    options_value: Option<Value>,
  ) -> Result<PromiseRaw<'env, JsBytes<'env>>> {
    let options = options(options_value)?;
    let core = self.core();
    env.spawn_future_with_callback(
      async move { core.exec_stream(&id, &command, &options).await.map_err(to_napi) },
      |env, events| ReadableStream::create_with_stream_bytes(env, exec_bytes(events)),
    )
  }

  #[napi]
  pub async fn write_file(
    &self,
    id: String,
    path: String,
    content: Either<String, Uint8Array>,
  ) -> Result<()> {
    let data = match content {
      Either::A(text) => Bytes::from(text.into_bytes()),
      Either::B(array) => Bytes::copy_from_slice(&array),
    };
    self.core().write_file(&id, &path, data).await.map_err(to_napi)
  }

  #[napi]
  pub async fn read_file(&self, id: String, path: String) -> Result<Uint8Array> {
    let core = self.core();
    let stream = core.read_file(&id, &path).await.map_err(to_napi)?;
    let bytes = boxlite_core::archive::collect(stream).await.map_err(to_napi)?;
    Ok(Uint8Array::from(bytes))
  }

  #[napi(ts_return_type = "Promise<void>")]
  pub fn upload_archive<'env>(
    &self,
    env: &'env Env,
    id: String,
    #[napi(ts_arg_type = "Uint8Array | ReadableStream<Uint8Array>")] archive: Either<
      Uint8Array,
      ReadableStream<Uint8Array>,
    >,
    dest_dir: String,
  ) -> Result<PromiseRaw<'env, ()>> {
    let archive = byte_stream_from_js(archive)?;
    let core = self.core();
    env.spawn_future(async move {
      core
        .upload_archive(&id, archive, &dest_dir)
        .await
        .map_err(to_napi)
    })
  }

  #[napi(ts_return_type = "Promise<ReadableStream<Uint8Array>>")]
  pub fn download_archive<'env>(
    &self,
    env: &'env Env,
    id: String,
    src_dir: String,
  ) -> Result<PromiseRaw<'env, JsBytes<'env>>> {
    let core = self.core();
    env.spawn_future_with_callback(
      async move { core.download_archive(&id, &src_dir).await.map_err(to_napi) },
      |env, stream| ReadableStream::create_with_stream_bytes(env, js_bytes(stream)),
    )
  }

  #[napi]
  pub async fn sleep(&self, id: String) -> Result<()> {
    self.core().sleep(&id).await.map_err(to_napi)
  }

  #[napi]
  pub async fn wake(&self, id: String) -> Result<()> {
    self.core().wake(&id).await.map_err(to_napi)
  }

  /// Returns the snapshot id (its name, as in the original).
  #[napi]
  pub async fn sandbox_create_snapshot(&self, id: String, name: String) -> Result<String> {
    self.core().create_snapshot(&id, &name).await.map_err(to_napi)
  }

  #[napi]
  pub async fn sandbox_restore_snapshot(&self, id: String, name: String) -> Result<()> {
    self.core().restore_snapshot(&id, &name).await.map_err(to_napi)
  }

  #[napi]
  pub fn expose_port(&self, id: String, port: u32, hostname: Option<String>) -> Result<String> {
    self
      .core()
      .expose_port(&id, port, hostname.as_deref())
      .map_err(to_napi)
  }
}
