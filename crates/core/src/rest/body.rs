//! Reply and request bodies in flight: JSON replies parsed with errors that show what came,
//! error bodies read up to a cap, streamed bodies bounded by an idle timeout, the progress
//! watchdog of streamed uploads, and error chains without URLs (queries may hold secrets).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_core::Stream;
use futures_util::StreamExt;
use reqwest::{header, Method};
use serde_json::Value;

use super::wire;
use crate::client::ByteStream;
use crate::error::{Error, Result};

pub(super) struct Progress {
  pub last: Instant,
  pub done_at: Option<Instant>,
}

pub(super) enum Stall {
  Upload,
  Reply,
}

/// Notes when the upload body last moved and when it ended.
pub(super) fn track(body: ByteStream, progress: Arc<Mutex<Progress>>) -> ByteStream {
  let on_chunk = progress.clone();
  let chunks = body.map(move |item| {
    on_chunk.lock().unwrap_or_else(|p| p.into_inner()).last = Instant::now();
    item
  });
  let end = futures_util::stream::poll_fn(move |_| {
    progress.lock().unwrap_or_else(|p| p.into_inner()).done_at = Some(Instant::now());
    std::task::Poll::Ready(None)
  });
  Box::pin(chunks.chain(end))
}

pub(super) async fn watchdog(progress: Arc<Mutex<Progress>>, idle: Duration, reply: Duration) -> Stall {
  let tick = (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
  loop {
    tokio::time::sleep(tick).await;
    let p = progress.lock().unwrap_or_else(|p| p.into_inner());
    match p.done_at {
      None if p.last.elapsed() > idle => return Stall::Upload,
      Some(done) if done.elapsed() > reply => return Stall::Reply,
      _ => {}
    }
  }
}

pub(super) fn content_type(response: &reqwest::Response) -> String {
  response
    .headers()
    .get(header::CONTENT_TYPE)
    .and_then(|v| v.to_str().ok())
    .unwrap_or("")
    .to_string()
}

/// Parses a JSON reply body; the error text names the content type and shows the body's start.
pub fn parse_json_body(body: &[u8], content_type: &str) -> std::result::Result<Value, String> {
  if body.iter().all(u8::is_ascii_whitespace) {
    return Ok(Value::Null);
  }
  serde_json::from_slice(body).map_err(|e| {
    let kind = if content_type.is_empty() {
      "no content type".to_string()
    } else {
      format!("content type '{content_type}'")
    };
    format!(
      "expected a JSON body, got one that does not parse ({e}; {kind}): {}",
      wire::excerpt(body)
    )
  })
}

pub(super) async fn read_capped(mut response: reqwest::Response, limit: usize) -> Vec<u8> {
  let mut body = Vec::new();
  while let Ok(Some(chunk)) = response.chunk().await {
    body.extend_from_slice(&chunk[..chunk.len().min(limit - body.len())]);
    if body.len() >= limit {
      break;
    }
  }
  body
}

/// The error and its sources, joined, without the URL reqwest would add.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
  let mut parts = Vec::new();
  let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
  while let Some(e) = current {
    let text = e.to_string();
    // reqwest's own Display names the URL (with its query); its sources say what happened.
    let text = match text.find(" for url (") {
      Some(i) => text[..i].to_string(),
      None => text,
    };
    if parts.last() != Some(&text) {
      parts.push(text);
    }
    current = e.source();
  }
  parts.join(": ")
}

/// Ends `inner` with a transport error when it yields nothing for `idle`.
pub fn idle_bounded<S, T>(
  inner: S,
  idle: Duration,
  method: Method,
  path: String,
) -> impl Stream<Item = Result<T>> + Send + 'static
where
  S: Stream<Item = Result<T>> + Send + 'static,
  T: Send + 'static,
{
  let inner: Pin<Box<dyn Stream<Item = Result<T>> + Send>> = Box::pin(inner);
  futures_util::stream::unfold(Some(inner), move |state| {
    let method = method.clone();
    let path = path.clone();
    async move {
      let mut inner = state?;
      match tokio::time::timeout(idle, inner.next()).await {
        Ok(Some(item)) => Some((item, Some(inner))),
        Ok(None) => None,
        Err(_) => Some((
          Err({
            tracing::debug!(%method, %path, idle_s = idle.as_secs_f64(), "stream idle timeout");
            Error::Transport {
              method: method.to_string(),
              path,
              message: format!(
                "no data for {} s; the server stopped answering",
                idle.as_secs_f64()
              ),
            }
          }),
          None,
        )),
      }
    }
  })
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn json_bodies_parse_and_empty_bodies_are_null() {
    assert_eq!(parse_json_body(b"  ", "application/json").unwrap(), Value::Null);
    assert_eq!(parse_json_body(br#"{"a":1}"#, "").unwrap()["a"], 1);
  }

  #[test]
  fn malformed_json_names_the_content_type_and_shows_the_body() {
    let message = parse_json_body(b"<html>oops</html>", "text/html").unwrap_err();
    assert!(
      message.contains("content type 'text/html'") && message.contains("<html>oops</html>"),
      "{message}"
    );
    let truncated = parse_json_body(br#"{"boxes": [{"box_id": "#, "application/json").unwrap_err();
    assert!(truncated.contains("does not parse"), "{truncated}");
  }
}
