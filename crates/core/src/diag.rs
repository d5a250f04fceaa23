//! Opt-in diagnostics: which environment variables turn the core's `tracing` events on, and the
//! one-line stderr format they are printed in. Off by default; when off no subscriber is
//! installed, so every event site costs one relaxed atomic load and its fields are never built.
//!
//! Switches (read once per process, by the first adapter):
//! - `DEBUG` in the Node `debug` convention: a comma- or space-separated list of namespaces,
//!   `*` as a wildcard, `-name` to exclude. `sandbank:boxlite`, `sandbank:*` and `*` turn the
//!   diagnostics on at `debug` level.
//! - `BOXLITE_LOG=error|warn|info|debug|trace|off` picks the level (and wins over `DEBUG`).
//!
//! Events never carry a credential: the fields are methods, paths without their query, status
//! codes, durations, ids and counts; a `Secret` prints as `[REDACTED]` even if one slipped in.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_core::Stream;
use tracing::level_filters::LevelFilter;
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::client::{ExecEvent, ExecEventStream};

/// The `DEBUG` namespace of this package, and the tag of every line it prints.
pub const NAMESPACE: &str = "sandbank:boxlite";

/// What the environment asks for: a level (`None` = off) and, when a switch could not be read,
/// a warning to print once (diagnostics cannot fail an adapter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
  pub level: Option<LevelFilter>,
  pub warning: Option<String>,
}

/// Reads `DEBUG` and `BOXLITE_LOG` (given as values, so that tests need no process env).
pub fn choose(debug: Option<&str>, boxlite_log: Option<&str>) -> Choice {
  let from_debug = debug
    .filter(|d| debug_enables(d, NAMESPACE))
    .map(|_| LevelFilter::DEBUG);
  match boxlite_log.map(str::trim).filter(|v| !v.is_empty()) {
    None => Choice {
      level: from_debug,
      warning: None,
    },
    Some(value) => match parse_level(value) {
      Some(level) => Choice {
        level: (level != LevelFilter::OFF).then_some(level),
        warning: None,
      },
      None => Choice {
        level: from_debug,
        warning: Some(format!(
          "{NAMESPACE} BOXLITE_LOG={value:?} is not a level; use error, warn, info, debug, trace or off \
           (diagnostics are {})",
          if from_debug.is_some() {
            "on at debug level because of DEBUG"
          } else {
            "off"
          }
        )),
      },
    },
  }
}

fn parse_level(value: &str) -> Option<LevelFilter> {
  Some(match value.to_ascii_lowercase().as_str() {
    "off" | "0" | "false" | "none" => LevelFilter::OFF,
    "error" => LevelFilter::ERROR,
    "warn" | "warning" => LevelFilter::WARN,
    "info" => LevelFilter::INFO,
    "debug" | "1" | "true" | "on" => LevelFilter::DEBUG,
    "trace" => LevelFilter::TRACE,
    _ => return None,
  })
}

/// Whether the Node `debug` pattern list `debug` enables `namespace`: some entry matches and no
/// `-`excluded entry does.
pub fn debug_enables(debug: &str, namespace: &str) -> bool {
  let mut included = false;
  for entry in debug.split([',', ' ', '\t', '\n']).filter(|e| !e.is_empty()) {
    match entry.strip_prefix('-') {
      Some(excluded) if wildcard_match(excluded, namespace) => return false,
      Some(_) => {}
      None => included |= wildcard_match(entry, namespace),
    }
  }
  included
}

/// `*` matches any run of characters (possibly empty); everything else matches itself.
fn wildcard_match(pattern: &str, text: &str) -> bool {
  let mut parts = pattern.split('*');
  let first = parts.next().unwrap_or("");
  let Some(mut rest) = text.strip_prefix(first) else {
    return false;
  };
  let parts: Vec<&str> = parts.collect();
  let Some((last, middle)) = parts.split_last() else {
    return rest.is_empty();
  };
  for part in middle {
    match rest.find(part) {
      Some(i) => rest = &rest[i + part.len()..],
      None => return false,
    }
  }
  rest.len() >= last.len() && rest.ends_with(last)
}

/// Milliseconds since `since` with one decimal, the `ms` field of timed events.
pub fn ms(since: Instant) -> Ms {
  Ms(since.elapsed())
}

#[derive(Debug, Clone, Copy)]
pub struct Ms(pub Duration);

impl fmt::Display for Ms {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "{:.1}", self.0.as_secs_f64() * 1000.0)
  }
}

/// `events` with diagnostics of its life: opened, then closed with the exit code, failed, or
/// dropped before the exit (a cancelled reader). Returned unwrapped when diagnostics are off.
pub fn traced_exec(events: ExecEventStream, exec_id: &str, via: &'static str) -> ExecEventStream {
  if !tracing::enabled!(tracing::Level::DEBUG) {
    return events;
  }
  tracing::debug!(target: "boxlite_core::exec", %exec_id, %via, "stream open");
  Box::pin(TracedExec {
    inner: events,
    exec_id: exec_id.to_string(),
    via,
    began: Instant::now(),
    bytes: 0,
    ended: false,
  })
}

struct TracedExec {
  inner: ExecEventStream,
  exec_id: String,
  via: &'static str,
  began: Instant,
  bytes: u64,
  ended: bool,
}

impl Stream for TracedExec {
  type Item = crate::Result<ExecEvent>;

  fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
    let polled = self.inner.as_mut().poll_next(cx);
    if let Poll::Ready(Some(Ok(ExecEvent::Stdout(b) | ExecEvent::Stderr(b)))) = &polled {
      self.bytes += b.len() as u64;
    }
    let (exec_id, via, ms, bytes) = (&self.exec_id, self.via, ms(self.began), self.bytes);
    let ended = match &polled {
      Poll::Ready(Some(Ok(ExecEvent::Stdout(b) | ExecEvent::Stderr(b)))) => {
        tracing::trace!(target: "boxlite_core::exec", %exec_id, len = b.len(), "output");
        false
      }
      Poll::Ready(Some(Ok(ExecEvent::Exit(code)))) => {
        let exit_code = code.map_or_else(|| "unknown".to_string(), |c| c.to_string());
        tracing::debug!(target: "boxlite_core::exec", %exec_id, %via, %exit_code, bytes, %ms, "stream closed");
        true
      }
      Poll::Ready(Some(Err(e))) => {
        tracing::debug!(target: "boxlite_core::exec", %exec_id, %via, error = %e, bytes, %ms, "stream failed");
        true
      }
      Poll::Ready(None) => true,
      Poll::Pending => false,
    };
    self.ended |= ended;
    polled
  }
}

impl Drop for TracedExec {
  fn drop(&mut self) {
    if !self.ended {
      tracing::debug!(
        target: "boxlite_core::exec",
        exec_id = %self.exec_id, via = %self.via, bytes = self.bytes, ms = %ms(self.began),
        "stream dropped before the exit (cancelled)"
      );
    }
  }
}

/// The one-line format: `<UTC time> sandbank:boxlite <LEVEL> <module>: <message> key=value …`.
/// The time first and the namespace second is what Node's `debug` prints when stderr is not a
/// terminal, so mixed logs sort and grep alike.
pub struct OneLine;

impl<S, N> FormatEvent<S, N> for OneLine
where
  S: Subscriber + for<'a> LookupSpan<'a>,
  N: for<'a> FormatFields<'a> + 'static,
{
  fn format_event(
    &self,
    ctx: &FmtContext<'_, S, N>,
    mut writer: Writer<'_>,
    event: &Event<'_>,
  ) -> fmt::Result {
    SystemTime.format_time(&mut writer)?;
    let meta = event.metadata();
    let module = meta.target();
    let module = module.strip_prefix("boxlite_core::").unwrap_or(module);
    write!(writer, " {NAMESPACE} {:<5} {module}: ", meta.level())?;
    // Span fields (e.g. the box id of an operation) come before the event's own.
    if let Some(scope) = ctx.event_scope() {
      for span in scope.from_root() {
        if let Some(fields) = span
          .extensions()
          .get::<tracing_subscriber::fmt::FormattedFields<N>>()
          .filter(|f| !f.is_empty())
        {
          write!(writer, "{}{{{fields}}} ", span.name())?;
        }
      }
    }
    ctx.field_format().format_fields(writer.by_ref(), event)?;
    writeln!(writer)
  }
}

/// The subscriber diagnostics use at `level`, writing lines to `writer` (stderr in production;
/// tests and the benchmark pass a buffer or a sink). Only this package's events pass.
pub fn subscriber<W>(level: LevelFilter, writer: W) -> impl Subscriber + Send + Sync
where
  W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
  let filter = Targets::new()
    .with_target("boxlite_core", level)
    .with_target("sandbank_boxlite", level);
  tracing_subscriber::registry().with(
    tracing_subscriber::fmt::layer()
      .event_format(OneLine)
      .with_ansi(false)
      .with_writer(writer)
      .with_filter(filter),
  )
}

/// Installs the stderr subscriber if the environment asks for diagnostics; runs once per process
/// (later calls return the first answer). Returns the level in force.
pub fn init_from_env() -> Option<LevelFilter> {
  static LEVEL: OnceLock<Option<LevelFilter>> = OnceLock::new();
  *LEVEL.get_or_init(|| {
    let debug = std::env::var("DEBUG").ok();
    let boxlite_log = std::env::var("BOXLITE_LOG").ok();
    let choice = choose(debug.as_deref(), boxlite_log.as_deref());
    if let Some(warning) = &choice.warning {
      eprintln!("{warning}");
    }
    let level = choice.level?;
    // A host that already installed a global subscriber keeps it (and gets our events).
    match tracing::subscriber::set_global_default(subscriber(level, std::io::stderr)) {
      Ok(()) => {
        tracing::debug!(
          level = %level,
          version = %env!("CARGO_PKG_VERSION"),
          "diagnostics on"
        );
        Some(level)
      }
      Err(_) => None,
    }
  })
}

/// A writer collecting every line in memory, for tests that read what diagnostics print.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
  /// Everything written so far, leaving the buffer empty.
  pub fn take(&self) -> String {
    let bytes = std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()));
    String::from_utf8_lossy(&bytes).into_owned()
  }
}

impl std::io::Write for Capture {
  fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
    self
      .0
      .lock()
      .unwrap_or_else(|p| p.into_inner())
      .extend_from_slice(buf);
    Ok(buf.len())
  }
  fn flush(&mut self) -> std::io::Result<()> {
    Ok(())
  }
}

impl<'w> MakeWriter<'w> for Capture {
  type Writer = Capture;
  fn make_writer(&'w self) -> Capture {
    self.clone()
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn off_unless_a_switch_names_this_package() {
    assert_eq!(choose(None, None).level, None);
    assert_eq!(choose(Some("express:*,vite"), None).level, None);
    assert_eq!(choose(Some(""), Some("")).level, None);
  }

  #[test]
  fn node_debug_namespaces_turn_on_debug_level() {
    for debug in [
      "sandbank:boxlite",
      "sandbank:*",
      "*",
      "express:*, sandbank:boxlite",
      "sandbank:box*",
      "a b sandbank:*",
    ] {
      assert_eq!(
        choose(Some(debug), None).level,
        Some(LevelFilter::DEBUG),
        "{debug}"
      );
    }
    assert_eq!(choose(Some("sandbank:core"), None).level, None);
    assert_eq!(choose(Some("sandbank:boxlite:extra"), None).level, None);
  }

  #[test]
  fn debug_exclusions_win_over_wildcards() {
    assert!(!debug_enables("*,-sandbank:boxlite", NAMESPACE));
    assert!(!debug_enables("-sandbank:*,sandbank:boxlite", NAMESPACE));
    assert!(debug_enables("*,-express:*", NAMESPACE));
  }

  #[test]
  fn boxlite_log_picks_the_level_and_wins_over_debug() {
    assert_eq!(choose(None, Some("trace")).level, Some(LevelFilter::TRACE));
    assert_eq!(choose(None, Some("DEBUG")).level, Some(LevelFilter::DEBUG));
    assert_eq!(choose(None, Some("info")).level, Some(LevelFilter::INFO));
    assert_eq!(
      choose(Some("sandbank:*"), Some("trace")).level,
      Some(LevelFilter::TRACE)
    );
    assert_eq!(choose(Some("sandbank:*"), Some("off")).level, None);
  }

  #[test]
  fn an_unknown_level_warns_and_names_the_accepted_ones() {
    let choice = choose(None, Some("verbose"));
    assert_eq!(choice.level, None);
    let warning = choice.warning.unwrap();
    assert!(
      warning.contains("BOXLITE_LOG=\"verbose\"")
        && warning.contains("debug, trace")
        && warning.contains("off"),
      "{warning}"
    );
    assert_eq!(
      choose(Some("sandbank:boxlite"), Some("loud")).level,
      Some(LevelFilter::DEBUG)
    );
  }

  #[test]
  fn wildcards_match_like_node_debug() {
    assert!(wildcard_match("a*c", "abbbc"));
    assert!(wildcard_match("a*", "a"));
    assert!(wildcard_match("*b*", "abc"));
    assert!(!wildcard_match("a*c", "ab"));
    assert!(!wildcard_match("abc", "abcd"));
    assert!(wildcard_match("a*b*c", "axbyc"));
    assert!(!wildcard_match("a*b*c", "axcyb"));
  }

  #[test]
  fn lines_are_one_per_event_with_time_namespace_level_module_and_fields() {
    let capture = Capture::default();
    tracing::subscriber::with_default(subscriber(LevelFilter::DEBUG, capture.clone()), || {
      let secret = crate::config::Secret::new("hunter2-secret");
      tracing::debug!(method = "GET", path = "/v1/boxes", status = 200u16, token = ?secret, "request");
      tracing::trace!("too detailed for debug");
      tracing::debug!(target: "hyper::client", "not ours");
    });
    let text = capture.take();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    let line = lines[0];
    let (time, rest) = line.split_once(' ').unwrap();
    assert!(time.ends_with('Z') && time.contains('T'), "{line}");
    assert!(
      rest.starts_with(
        "sandbank:boxlite DEBUG diag::tests: request method=\"GET\" path=\"/v1/boxes\" status=200"
      ),
      "{line}"
    );
    assert!(
      line.contains("token=[REDACTED]") && !line.contains("hunter2"),
      "{line}"
    );
  }

  #[test]
  fn span_fields_prefix_the_events_inside_them() {
    let capture = Capture::default();
    tracing::subscriber::with_default(subscriber(LevelFilter::DEBUG, capture.clone()), || {
      let span = tracing::debug_span!("create", image = "alpine");
      let _entered = span.enter();
      tracing::debug!(state = "running", "box state");
    });
    let text = capture.take();
    assert!(
      text.contains("create{image=\"alpine\"} box state state=\"running\""),
      "{text}"
    );
  }
}
