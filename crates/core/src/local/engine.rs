//! The one embedded CPython of the process and its single owner. Started lazily on first local
//! use: the user's interpreter is probed and its libpython loaded (`probe.rs`), Python is
//! initialised on a thread that then parks forever (so Python never counts the loop thread as
//! its main thread and never takes Node's signals), and one `py-asyncio` thread runs a
//! persistent asyncio loop. Callers never take the GIL: a job goes into a queue, one byte on a
//! socketpair wakes the loop, and the result comes back as plain data (JSON text and bytes),
//! either on a oneshot channel (`call`) or to a callback run on the loop thread itself
//! (`submit_with`: a JS promise settled from there skips a hop through a tokio thread).

use std::collections::VecDeque;
use std::ffi::CString;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::oneshot;

use super::convert::{PyFailure, Reply};
use super::probe::{load_global, probe, Probe, MIN_SDK};
use crate::error::{Error, Result};

/// One part of the bridge: its name and its source (`bridge/<name>.py`).
macro_rules! bridge_part {
  ($name:literal) => {
    ($name, include_str!(concat!("bridge/", $name, ".py")))
  };
}

/// The bridge's parts (`bridge/`), in load order: each is registered as `boxlite_bridge.<part>`
/// and may import the parts before it.
const BRIDGE_PARTS: [(&str, &str); 6] = [
  bridge_part!("state"),
  bridge_part!("jobs"),
  bridge_part!("runtimes"),
  bridge_part!("boxes"),
  bridge_part!("execs"),
  bridge_part!("files"),
];

/// The entry module, `boxlite_bridge` itself: the table of ops, `setup` and `run_forever`.
const BRIDGE_ENTRY: &str = include_str!("bridge/__init__.py");

/// Loads the bridge into the interpreter: an empty `boxlite_bridge` package first (so the parts
/// can import each other by their dotted names), then each part, then the entry module's code
/// into that package.
fn load_bridge(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
  let package = PyModule::new(py, "boxlite_bridge")?;
  py.import("sys")?
    .getattr("modules")?
    .set_item("boxlite_bridge", &package)?;
  for (part, source) in BRIDGE_PARTS {
    let code = CString::new(source).expect("the bridge's sources have no NUL");
    let file = CString::new(format!("boxlite_bridge/{part}.py")).expect("part names have no NUL");
    let name = CString::new(format!("boxlite_bridge.{part}")).expect("part names have no NUL");
    PyModule::from_code(py, &code, &file, &name)?;
  }
  let code = CString::new(BRIDGE_ENTRY).expect("the bridge's sources have no NUL");
  PyModule::from_code(py, &code, c"boxlite_bridge/__init__.py", c"boxlite_bridge")
}

// ---------------------------------------------------------------------------------------------
// Jobs

/// What a job's outcome is handed to, on the loop thread; it must not block.
pub type JobDone = Box<dyn FnOnce(std::result::Result<Reply, PyFailure>) + Send>;

struct Job {
  op: &'static str,
  args: String,
  blob: Option<Bytes>,
  reply: Once,
}

/// A job's `JobDone`, called exactly once: with the outcome, or with an error if the job is
/// dropped unanswered (the loop thread died), so no caller waits forever.
struct Once(Option<JobDone>);

impl Once {
  fn send(mut self, outcome: std::result::Result<Reply, PyFailure>) {
    if let Some(done) = self.0.take() {
      done(outcome);
    }
  }
}

impl Drop for Once {
  fn drop(&mut self) {
    if let Some(done) = self.0.take() {
      done(Err(PyFailure::bridge("the Python loop thread dropped the job")));
    }
  }
}

struct Queue {
  jobs: Mutex<VecDeque<Job>>,
  waker: UnixStream,
}

/// The queue `take_jobs` empties; one per process, like the interpreter.
static QUEUE: OnceLock<Arc<Queue>> = OnceLock::new();

/// Called by the bridge (`bridge/jobs.py`) on the loop thread: every pending job as `(op, args, blob, done)`.
#[pyfunction]
fn take_jobs(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
  let jobs: Vec<Job> = match QUEUE.get() {
    Some(q) => q
      .jobs
      .lock()
      .unwrap_or_else(|p| p.into_inner())
      .drain(..)
      .collect(),
    None => Vec::new(),
  };
  let list = PyList::empty(py);
  for job in jobs {
    let blob = job.blob.as_ref().map(|b| PyBytes::new(py, b));
    let done = Py::new(
      py,
      Done {
        reply: Mutex::new(Some(job.reply)),
      },
    )?;
    list.append(PyTuple::new(
      py,
      [
        job.op.into_pyobject(py)?.into_any(),
        job.args.into_pyobject(py)?.into_any(),
        blob.into_pyobject(py)?.into_any(),
        done.into_bound(py).into_any(),
      ],
    )?)?;
  }
  Ok(list)
}

/// The completion callback of one job; converts the outcome to plain data on the loop thread.
#[pyclass(frozen)]
struct Done {
  reply: Mutex<Option<Once>>,
}

#[pymethods]
impl Done {
  fn __call__(&self, ok: bool, payload: &Bound<'_, PyAny>) {
    let outcome = if ok {
      Reply::from_python(payload)
    } else {
      Err(PyFailure::from_python(payload))
    };
    if let Some(reply) = self.reply.lock().unwrap_or_else(|p| p.into_inner()).take() {
      reply.send(outcome);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The engine

/// Facts about the running interpreter, reported by bridge.setup().
#[derive(Debug, Clone, Deserialize)]
pub struct Facts {
  pub python_version: (u32, u32, u32),
  pub sdk_version: Option<String>,
  pub sdk_file: Option<String>,
  pub sdk_import_error: Option<String>,
  pub sys_path: Vec<String>,
  pub executable: String,
}

pub struct Engine {
  queue: Arc<Queue>,
  /// The `pythonPath` the engine was started with, and its probe.
  pub python_path: String,
  pub probe: Probe,
  pub facts: Facts,
  /// Every pythonPath string accepted so far (they all resolved to the same environment).
  accepted: Mutex<Vec<String>>,
}

/// The engine, once started; a failure after Python was initialised is kept too (it cannot be
/// retried in this process). Failures before that (probe errors) are not cached.
static ENGINE: Mutex<Option<std::result::Result<&'static Engine, Error>>> = Mutex::new(None);

/// The process's engine, starting it for `python_path` on first use. Blocks (probe and
/// interpreter start, ~100 ms): call it from a thread that may block (see `engine()`).
pub fn engine_blocking(python_path: &str) -> Result<&'static Engine> {
  let mut slot = ENGINE.lock().unwrap_or_else(|p| p.into_inner());
  if let Some(started) = slot.as_ref() {
    let engine = started.clone()?;
    engine.accept(python_path)?;
    return Ok(engine);
  }
  let began = std::time::Instant::now();
  let probe = probe(python_path)?;
  let (major, minor, micro) = probe.version;
  tracing::debug!(%python_path, python = %format_args!("{major}.{minor}.{micro}"), prefix = %probe.prefix, "interpreter probed");
  let libpython = probe.libpython(python_path)?;
  // Checked before anything is loaded: a refused interpreter must not commit the process.
  probe.require_sdk(python_path)?;
  load_global(&libpython)?;
  tracing::debug!(libpython = %libpython.display(), "libpython loaded");
  let started = Engine::boot(python_path, probe).map(|e| &*Box::leak(Box::new(e)));
  match &started {
    Ok(engine) => tracing::debug!(
      executable = %engine.facts.executable,
      sdk_version = engine.facts.sdk_version.as_deref().unwrap_or("none"),
      sdk_file = engine.facts.sdk_file.as_deref().unwrap_or("-"),
      ms = %crate::diag::ms(began),
      "local engine started"
    ),
    Err(e) => tracing::debug!(error = %e, "local engine failed to start"),
  }
  *slot = Some(started.clone());
  started
}

/// `engine_blocking` from async code: the blocking part runs on its own thread.
pub async fn engine(python_path: &str) -> Result<&'static Engine> {
  if let Some(Ok(engine)) = ENGINE.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
    if engine
      .accepted
      .lock()
      .unwrap_or_else(|p| p.into_inner())
      .iter()
      .any(|p| p == python_path)
    {
      return Ok(engine);
    }
  }
  let path = python_path.to_string();
  run_blocking(move || engine_blocking(&path)).await
}

/// Runs `f` on a fresh thread and awaits its result without blocking the caller's executor.
pub async fn run_blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
  let (tx, rx) = oneshot::channel();
  std::thread::Builder::new()
    .name("boxlite-blocking".into())
    .spawn(move || {
      let _ = tx.send(f());
    })
    .map_err(|e| Error::Internal(format!("cannot spawn a thread: {e}")))?;
  rx.await
    .map_err(|_| Error::Internal("a blocking task panicked".into()))?
}

impl Engine {
  fn boot(python_path: &str, probe: Probe) -> Result<Engine> {
    let (reader, writer) = UnixStream::pair().map_err(|e| Error::Internal(format!("socketpair: {e}")))?;
    reader
      .set_nonblocking(true)
      .and_then(|_| writer.set_nonblocking(true))
      .map_err(|e| Error::Internal(e.to_string()))?;
    let queue = Arc::new(Queue {
      jobs: Mutex::new(VecDeque::new()),
      waker: writer,
    });
    if QUEUE.set(queue.clone()).is_err() {
      return Err(Error::Internal("the Python engine was started twice".into()));
    }

    // Python is initialised on a thread that never exits: the thread that initialises it is
    // Python's main thread, the only one allowed to install signal handlers, and glibc would
    // hand a joined thread's identity to the next thread created.
    let (init_tx, init_rx) = std::sync::mpsc::channel::<()>();
    std::thread::Builder::new()
      .name("py-init".into())
      .spawn(move || {
        Python::initialize();
        let _ = init_tx.send(());
        loop {
          std::thread::park();
        }
      })
      .map_err(|e| Error::Internal(format!("cannot spawn the Python init thread: {e}")))?;
    init_rx.recv().map_err(|_| Error::Environment {
      message: "the Python interpreter failed to initialise".into(),
    })?;

    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::result::Result<String, String>>();
    let probe_json = serde_json::json!({
      "sys_path": probe.sys_path, "executable": probe.executable, "min_sdk": [MIN_SDK.0, MIN_SDK.1, MIN_SDK.2],
    })
    .to_string();
    let path = python_path.to_string();
    std::thread::Builder::new()
      .name("py-asyncio".into())
      .spawn(move || {
        // Keep the read end alive for as long as the loop polls it.
        let reader = reader;
        Python::attach(|py| {
          let started = (|| -> PyResult<Bound<'_, PyModule>> {
            let bridge = load_bridge(py)?;
            let take = wrap_pyfunction!(take_jobs, py)?;
            let facts: String = bridge
              .call_method1("setup", (take, reader.as_raw_fd(), path, probe_json))?
              .extract()?;
            let _ = ready_tx.send(Ok(facts));
            Ok(bridge)
          })();
          match started {
            Ok(bridge) => {
              if let Err(e) = bridge.call_method0("run_forever") {
                e.print(py);
              }
            }
            Err(e) => {
              let _ = ready_tx.send(Err(format!("{e}")));
            }
          }
        });
      })
      .map_err(|e| Error::Internal(format!("cannot spawn the py-asyncio thread: {e}")))?;

    let facts = match ready_rx.recv() {
      Ok(Ok(facts)) => facts,
      Ok(Err(why)) => {
        return Err(Error::Environment {
          message: format!("the embedded Python failed to start: {why}"),
        })
      }
      Err(_) => {
        return Err(Error::Environment {
          message: "the embedded Python thread died while starting".into(),
        })
      }
    };
    let facts: Facts =
      serde_json::from_str(&facts).map_err(|e| Error::Internal(format!("bridge facts: {e}")))?;
    if (facts.python_version.0, facts.python_version.1) != (probe.version.0, probe.version.1) {
      return Err(Error::Environment {
        message: format!(
          "'{python_path}' is Python {}.{}, but this process already runs Python {}.{} (another libpython was \
           loaded first); local mode needs the libpython of the interpreter it uses",
          probe.version.0, probe.version.1, facts.python_version.0, facts.python_version.1
        ),
      });
    }
    Ok(Engine {
      queue,
      python_path: python_path.to_string(),
      probe,
      facts,
      accepted: Mutex::new(vec![python_path.into()]),
    })
  }

  /// A second `pythonPath` is fine if it names the same environment; one interpreter per process.
  fn accept(&self, python_path: &str) -> Result<()> {
    let mut accepted = self.accepted.lock().unwrap_or_else(|p| p.into_inner());
    if accepted.iter().any(|p| p == python_path) {
      return Ok(());
    }
    let other = probe(python_path)?;
    if other.prefix != self.probe.prefix || other.version != self.probe.version {
      let advice = match &self.facts.sdk_import_error {
        // Found by the probe but failing to import in process: the rare case a refusal comes
        // too late to leave the process free.
        Some(why) => format!(
          "its boxlite SDK failed to import ({why}) after the interpreter was embedded, and an embedded \
           interpreter cannot be unloaded: fix that environment or restart the process to use another one"
        ),
        None => "use the same pythonPath for every adapter".to_string(),
      };
      return Err(Error::Environment {
        message: format!(
          "local mode already runs Python {}.{}.{} from '{}' in this process (one interpreter per process); \
           config.pythonPath '{python_path}' names another environment ({}); {advice}",
          self.probe.version.0, self.probe.version.1, self.probe.version.2, self.python_path, other.prefix
        ),
      });
    }
    accepted.push(python_path.to_string());
    Ok(())
  }

  /// Runs the bridge coroutine `op_<op>(blob, **args)` on the loop thread.
  pub async fn call(
    &self,
    op: &'static str,
    args: Value,
    blob: Option<Bytes>,
  ) -> std::result::Result<Reply, PyFailure> {
    let (tx, rx) = oneshot::channel();
    self.submit_with(
      op,
      args,
      blob,
      Box::new(move |outcome| {
        // The caller may have gone away (a dropped future); nothing to do then.
        let _ = tx.send(outcome);
      }),
    );
    rx.await
      .unwrap_or_else(|_| Err(PyFailure::bridge("the Python loop thread dropped the job")))
  }

  /// Submits `op`; `done` gets its outcome on the loop thread (holding the GIL: it must be quick
  /// and must not block).
  pub fn submit_with(&self, op: &'static str, args: Value, blob: Option<Bytes>, done: JobDone) {
    self.submit(Job {
      op,
      args: args.to_string(),
      blob,
      reply: Once(Some(done)),
    });
  }

  /// Submits `op` without waiting for (or caring about) its outcome; usable from `Drop`.
  pub fn call_detached(&self, op: &'static str, args: Value) {
    self.submit_with(op, args, None, Box::new(drop));
  }

  fn submit(&self, job: Job) {
    let was_empty = {
      let mut jobs = self.queue.jobs.lock().unwrap_or_else(|p| p.into_inner());
      let was_empty = jobs.is_empty();
      jobs.push_back(job);
      was_empty
    };
    if was_empty {
      // WouldBlock means a wake-up byte is already pending, which is as good.
      let _ = (&self.queue.waker).write(&[1]);
    }
  }
}
