//! The low-level client methods of `NativeAdapter` (`getClient()` in JS): each converts its
//! arguments, awaits the core client and converts the result. Byte streams cross as web
//! `ReadableStream`s in both directions.

use bytes::Bytes;
use futures_util::StreamExt;
use napi::bindgen_prelude::*;
use napi_derive::napi;
use serde_json::Value;

use boxlite_core::client::{ByteStream, CreateBoxParams, ExecEvent, ExecEventStream, ExecRequest};

use crate::adapter::NativeAdapter;
use crate::error::to_napi;

pub(crate) type JsBytes<'env> = ReadableStream<'env, BufferSlice<'env>>;

pub(crate) fn from_js<T: serde::de::DeserializeOwned>(argument: &str, value: Value) -> Result<T> {
  serde_json::from_value(value).map_err(|e| {
    to_napi(boxlite_core::Error::InvalidArgument {
      argument: argument.into(),
      problem: format!("is invalid: {e}"),
    })
  })
}

pub(crate) fn to_js<T: serde::Serialize>(value: T) -> Result<Value> {
  serde_json::to_value(value).map_err(|e| to_napi(boxlite_core::Error::Internal(e.to_string())))
}

/// stdout and stderr bytes in the order produced; the exit event ends the stream.
pub(crate) fn exec_bytes(
  events: ExecEventStream,
) -> impl futures_util::Stream<Item = Result<Vec<u8>>> + Send + Unpin {
  events.filter_map(|event| {
    std::future::ready(match event {
      Ok(ExecEvent::Stdout(chunk)) | Ok(ExecEvent::Stderr(chunk)) => Some(Ok(chunk.to_vec())),
      Ok(ExecEvent::Exit(_)) => None,
      Err(error) => Some(Err(to_napi(error))),
    })
  })
}

pub(crate) fn js_bytes(
  stream: ByteStream,
) -> impl futures_util::Stream<Item = Result<Vec<u8>>> + Send + Unpin {
  stream.map(|chunk| chunk.map(|bytes| bytes.to_vec()).map_err(to_napi))
}

/// Turns a JS `Uint8Array | ReadableStream<Uint8Array>` into a core byte stream. Must run on
/// the JS thread (the reader is taken synchronously).
pub(crate) fn byte_stream_from_js(
  input: Either<Uint8Array, ReadableStream<Uint8Array>>,
) -> Result<ByteStream> {
  Ok(match input {
    Either::A(array) => {
      let bytes = Bytes::copy_from_slice(&array);
      Box::pin(futures_util::stream::once(async move { Ok(bytes) }))
    }
    Either::B(stream) => {
      let reader = stream.read()?;
      Box::pin(reader.map(|chunk| {
        chunk
          .map(|array| Bytes::copy_from_slice(&array))
          .map_err(|e| boxlite_core::Error::InvalidArgument {
            argument: "data".into(),
            problem: e.reason.clone(),
          })
      }))
    }
  })
}

#[napi]
impl NativeAdapter {
  #[napi(ts_return_type = "Promise<BoxLiteBox>")]
  pub async fn create_box(&self, params: Value) -> Result<Value> {
    let params: CreateBoxParams = from_js("params", params)?;
    to_js(self.client()?.create_box(params).await.map_err(to_napi)?)
  }

  #[napi(ts_return_type = "Promise<BoxLiteBox>")]
  pub async fn get_box(&self, box_id: String) -> Result<Value> {
    to_js(self.client()?.get_box(&box_id).await.map_err(to_napi)?)
  }

  #[napi(ts_return_type = "Promise<BoxLiteBox[]>")]
  pub async fn list_boxes(&self, status: Option<String>, page_size: Option<u32>) -> Result<Value> {
    to_js(
      self
        .client()?
        .list_boxes(status, page_size)
        .await
        .map_err(to_napi)?,
    )
  }

  #[napi]
  pub async fn delete_box(&self, box_id: String, force: Option<bool>) -> Result<()> {
    self
      .client()?
      .delete_box(&box_id, force.unwrap_or(false))
      .await
      .map_err(to_napi)
  }

  #[napi]
  pub async fn start_box(&self, box_id: String) -> Result<()> {
    self.client()?.start_box(&box_id).await.map_err(to_napi)
  }

  #[napi]
  pub async fn stop_box(&self, box_id: String) -> Result<()> {
    self.client()?.stop_box(&box_id).await.map_err(to_napi)
  }

  #[napi(ts_return_type = "Promise<{ stdout: string; stderr: string; exitCode: number }>")]
  pub async fn exec(&self, box_id: String, request: Value) -> Result<Value> {
    let request: ExecRequest = from_js("request", request)?;
    to_js(self.client()?.exec(&box_id, request).await.map_err(to_napi)?)
  }

  #[napi(ts_return_type = "Promise<ReadableStream<Uint8Array>>")]
  pub fn exec_stream<'env>(
    &self,
    env: &'env Env,
    box_id: String,
    request: Value,
  ) -> Result<PromiseRaw<'env, JsBytes<'env>>> {
    let request: ExecRequest = from_js("request", request)?;
    let client = self.client()?;
    env.spawn_future_with_callback(
      async move { client.exec_stream(&box_id, request).await.map_err(to_napi) },
      |env, events| ReadableStream::create_with_stream_bytes(env, exec_bytes(events)),
    )
  }

  #[napi(ts_return_type = "Promise<BoxLiteExecution>")]
  pub async fn exec_async(&self, box_id: String, request: Value) -> Result<Value> {
    let request: ExecRequest = from_js("request", request)?;
    to_js(
      self
        .client()?
        .exec_async(&box_id, request)
        .await
        .map_err(to_napi)?,
    )
  }

  #[napi(ts_return_type = "Promise<ReadableStream<Uint8Array>>")]
  pub fn get_exec_output<'env>(
    &self,
    env: &'env Env,
    box_id: String,
    exec_id: String,
  ) -> Result<PromiseRaw<'env, JsBytes<'env>>> {
    let client = self.client()?;
    env.spawn_future_with_callback(
      async move { client.get_exec_output(&box_id, &exec_id).await.map_err(to_napi) },
      |env, events| ReadableStream::create_with_stream_bytes(env, exec_bytes(events)),
    )
  }

  /// Writes `data` to the execution's stdin; `close` ends stdin afterwards.
  #[napi]
  pub async fn send_exec_input(
    &self,
    box_id: String,
    exec_id: String,
    data: Either<String, Uint8Array>,
    close: Option<bool>,
  ) -> Result<()> {
    let bytes = match data {
      Either::A(text) => Bytes::from(text.into_bytes()),
      Either::B(array) => Bytes::copy_from_slice(&array),
    };
    self
      .client()?
      .send_exec_input(&box_id, &exec_id, bytes, close.unwrap_or(false))
      .await
      .map_err(to_napi)
  }

  #[napi]
  pub async fn signal_exec(&self, box_id: String, exec_id: String, signal: i32) -> Result<()> {
    self
      .client()?
      .signal_exec(&box_id, &exec_id, signal)
      .await
      .map_err(to_napi)
  }

  #[napi]
  pub async fn resize_exec(&self, box_id: String, exec_id: String, cols: u32, rows: u32) -> Result<()> {
    let (cols, rows) = (clamp_u16(cols), clamp_u16(rows));
    self
      .client()?
      .resize_exec(&box_id, &exec_id, cols, rows)
      .await
      .map_err(to_napi)
  }

  #[napi(ts_return_type = "Promise<void>")]
  pub fn upload_files<'env>(
    &self,
    env: &'env Env,
    box_id: String,
    path: String,
    #[napi(ts_arg_type = "Uint8Array | ReadableStream<Uint8Array>")] tar: Either<
      Uint8Array,
      ReadableStream<Uint8Array>,
    >,
  ) -> Result<PromiseRaw<'env, ()>> {
    let tar = byte_stream_from_js(tar)?;
    let client = self.client()?;
    env.spawn_future(async move { client.upload_files(&box_id, &path, tar).await.map_err(to_napi) })
  }

  #[napi(ts_return_type = "Promise<ReadableStream<Uint8Array>>")]
  pub fn download_files<'env>(
    &self,
    env: &'env Env,
    box_id: String,
    path: String,
  ) -> Result<PromiseRaw<'env, JsBytes<'env>>> {
    let client = self.client()?;
    env.spawn_future_with_callback(
      async move { client.download_files(&box_id, &path).await.map_err(to_napi) },
      |env, stream| ReadableStream::create_with_stream_bytes(env, js_bytes(stream)),
    )
  }

  #[napi(ts_return_type = "Promise<BoxLiteSnapshot>")]
  pub async fn create_snapshot(&self, box_id: String, name: String) -> Result<Value> {
    to_js(
      self
        .client()?
        .create_snapshot(&box_id, &name)
        .await
        .map_err(to_napi)?,
    )
  }

  #[napi(ts_return_type = "Promise<BoxLiteSnapshot[]>")]
  pub async fn list_snapshots(&self, box_id: String) -> Result<Value> {
    to_js(self.client()?.list_snapshots(&box_id).await.map_err(to_napi)?)
  }

  #[napi]
  pub async fn restore_snapshot(&self, box_id: String, name: String) -> Result<()> {
    self
      .client()?
      .restore_snapshot(&box_id, &name)
      .await
      .map_err(to_napi)
  }

  #[napi]
  pub async fn delete_snapshot(&self, box_id: String, name: String) -> Result<()> {
    self
      .client()?
      .delete_snapshot(&box_id, &name)
      .await
      .map_err(to_napi)
  }

  #[napi(ts_return_type = "Promise<BoxLiteBox>")]
  pub async fn clone_box(&self, box_id: String, name: Option<String>) -> Result<Value> {
    to_js(self.client()?.clone_box(&box_id, name).await.map_err(to_napi)?)
  }

  #[napi(ts_return_type = "Promise<ReadableStream<Uint8Array>>")]
  pub fn export_box<'env>(&self, env: &'env Env, box_id: String) -> Result<PromiseRaw<'env, JsBytes<'env>>> {
    let client = self.client()?;
    env.spawn_future_with_callback(
      async move { client.export_box(&box_id).await.map_err(to_napi) },
      |env, stream| ReadableStream::create_with_stream_bytes(env, js_bytes(stream)),
    )
  }

  #[napi(ts_return_type = "Promise<BoxLiteBox>")]
  pub fn import_box<'env>(
    &self,
    env: &'env Env,
    #[napi(ts_arg_type = "Uint8Array | ReadableStream<Uint8Array>")] data: Either<
      Uint8Array,
      ReadableStream<Uint8Array>,
    >,
  ) -> Result<PromiseRaw<'env, Value>> {
    let archive = byte_stream_from_js(data)?;
    let client = self.client()?;
    env.spawn_future(async move { to_js(client.import_box(archive).await.map_err(to_napi)?) })
  }

  #[napi(ts_return_type = "Promise<Record<string, unknown>>")]
  pub async fn get_metrics(&self) -> Result<Value> {
    self.client()?.get_metrics().await.map_err(to_napi)
  }

  #[napi(ts_return_type = "Promise<Record<string, unknown>>")]
  pub async fn get_box_metrics(&self, box_id: String) -> Result<Value> {
    self.client()?.get_box_metrics(&box_id).await.map_err(to_napi)
  }

  #[napi(ts_return_type = "Promise<Record<string, unknown>>")]
  pub async fn get_config(&self) -> Result<Value> {
    self.client()?.get_config().await.map_err(to_napi)
  }
}

fn clamp_u16(value: u32) -> u16 {
  u16::try_from(value).unwrap_or(u16::MAX)
}
