//! The one embedded CPython of the process and its single owner. Started lazily on first local
//! use: the user's interpreter is probed out of process, its shared libpython is made global,
//! Python is initialised on a thread that then parks forever (so Python never counts the
//! loop thread as its main thread and never takes Node's signals), and one `py-asyncio` thread
//! runs a persistent asyncio loop. Callers never take the GIL: a job goes into a queue, one
//! byte on a socketpair wakes the loop, and the result comes back as plain data (JSON text and
//! bytes), either on a oneshot channel (`call`) or to a callback run on the loop thread itself
//! (`submit_with`: a JS promise settled from there skips a hop through a tokio thread).

use std::collections::VecDeque;
use std::ffi::{CStr, CString};
use std::io::{ErrorKind, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::oneshot;

use super::convert::{PyFailure, Reply};
use crate::error::{Error, Result};

/// The oldest CPython local mode supports (the SDK's wheels start there too).
pub const MIN_PYTHON: (u32, u32) = (3, 10);
/// The oldest boxlite SDK local mode supports.
pub const MIN_SDK: (u32, u32, u32) = (0, 10, 0);

const BRIDGE_SOURCE: &str = include_str!("bridge.py");

/// What the user's interpreter says about itself, asked out of process before embedding it.
#[derive(Debug, Clone, Deserialize)]
pub struct Probe {
  pub executable: String,
  pub version: (u32, u32, u32),
  pub prefix: String,
  pub base_prefix: String,
  pub sys_path: Vec<String>,
  pub libdir: Option<String>,
  pub instsoname: Option<String>,
  pub ldlibrary: Option<String>,
  pub shared: Option<i64>,
  /// Where `import boxlite` would load the SDK from, as the interpreter resolves it.
  #[serde(default)]
  pub sdk_origin: Option<String>,
  /// Why the SDK cannot be found (`find_spec` failing or finding nothing).
  #[serde(default)]
  pub sdk_error: Option<String>,
  /// The installed distribution's version, when it has metadata.
  #[serde(default)]
  pub sdk_version: Option<String>,
}

/// Also locates the SDK (without importing it: cheap, and no side effects), so an interpreter
/// that cannot run local mode is refused before it is embedded — an embedded interpreter cannot
/// be unloaded, and refusing it later would leave the process committed to it.
const PROBE_SCRIPT: &str = r#"
import json, sys, sysconfig as s
sdk_origin = sdk_error = sdk_version = None
try:
  import importlib.util
  spec = importlib.util.find_spec("boxlite")
  if spec is None:
    sdk_error = "ModuleNotFoundError: No module named 'boxlite'"
  else:
    sdk_origin = spec.origin or "namespace package"
except Exception as e:
  sdk_error = f"{type(e).__name__}: {e}"
try:
  from importlib.metadata import version
  sdk_version = version("boxlite")
except Exception:
  pass
print(json.dumps({
  "sdk_origin": sdk_origin, "sdk_error": sdk_error, "sdk_version": sdk_version,
  "executable": sys.executable, "version": list(sys.version_info[:3]),
  "prefix": sys.prefix, "base_prefix": sys.base_prefix, "sys_path": sys.path[1:],
  "libdir": s.get_config_var("LIBDIR"), "instsoname": s.get_config_var("INSTSONAME"),
  "ldlibrary": s.get_config_var("LDLIBRARY"), "shared": s.get_config_var("Py_ENABLE_SHARED"),
}))
"#;

/// Runs `python_path` once to learn its version, paths and libpython.
pub fn probe(python_path: &str) -> Result<Probe> {
  // Not isolated: PYTHONPATH and user site-packages count, as they would for the user.
  let output = Command::new(python_path).arg("-c").arg(PROBE_SCRIPT).output();
  let output = match output {
    Ok(o) => o,
    Err(e) if e.kind() == ErrorKind::NotFound => {
      return Err(Error::Environment {
        message: format!(
          "Python interpreter not found: config.pythonPath is '{python_path}' ({e}); install Python 3.10 or newer \
           with the boxlite package, or point pythonPath at it (e.g. a venv's bin/python)"
        ),
      })
    }
    Err(e) => {
      return Err(Error::Environment { message: format!("cannot run the Python interpreter '{python_path}': {e}") })
    }
  };
  if !output.status.success() {
    return Err(Error::Environment {
      message: format!(
        "'{python_path}' is not a working Python interpreter ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
      ),
    });
  }
  let text = String::from_utf8_lossy(&output.stdout);
  let line = text
    .lines()
    .rev()
    .find(|l| l.trim_start().starts_with('{'))
    .unwrap_or("");
  serde_json::from_str(line).map_err(|e| Error::Environment {
    message: not_cpython(python_path, &text, &e.to_string()),
  })
}

/// Why a probe answer was refused, complete even when the program printed nothing.
fn not_cpython(python_path: &str, stdout: &str, parse_error: &str) -> String {
  let said = stdout.trim();
  let said = if said.is_empty() {
    "it exited successfully without printing anything".to_string()
  } else {
    let cut: String = said.chars().take(300).collect();
    format!("it printed {cut:?} ({parse_error})")
  };
  format!(
    "'{python_path}' did not answer like CPython: {said}. config.pythonPath must name a Python {}.{}+ \
     interpreter that has the boxlite package (e.g. a venv's bin/python)",
    MIN_PYTHON.0, MIN_PYTHON.1
  )
}

impl Probe {
  /// Refuses an interpreter that cannot import a recent enough boxlite SDK (the same words as
  /// the bridge's own check after import).
  pub fn require_sdk(&self, python_path: &str) -> Result<()> {
    if self.sdk_origin.is_none() {
      let why = self.sdk_error.as_deref().unwrap_or("not found");
      return Err(Error::Environment {
        message: format!(
          "the boxlite Python SDK is not importable from {python_path} ({why}); install it into that \
           interpreter: {python_path} -m pip install boxlite"
        ),
      });
    }
    if let Some(version) = &self.sdk_version {
      if version_tuple(version) < MIN_SDK {
        return Err(Error::Environment {
          message: format!(
            "the boxlite Python SDK {version} at {python_path} is too old; local mode needs boxlite >= {}.{}.{}: \
             {python_path} -m pip install -U boxlite",
            MIN_SDK.0, MIN_SDK.1, MIN_SDK.2
          ),
        });
      }
    }
    Ok(())
  }

  /// The shared libpython to embed, or why this interpreter cannot be embedded.
  pub fn libpython(&self, python_path: &str) -> Result<PathBuf> {
    let (major, minor, micro) = self.version;
    if (major, minor) < MIN_PYTHON {
      return Err(Error::Environment {
        message: format!(
          "'{python_path}' is Python {major}.{minor}.{micro}; local mode needs Python {}.{} or newer",
          MIN_PYTHON.0, MIN_PYTHON.1
        ),
      });
    }
    let soname = self
      .instsoname
      .as_deref()
      .filter(|s| s.contains(".so") || s.contains(".dylib"));
    if self.shared != Some(1) || soname.is_none() {
      return Err(Error::Environment {
        message: format!(
          "'{python_path}' (Python {major}.{minor}.{micro}) was built without a shared libpython \
           (Py_ENABLE_SHARED={}), so it cannot be embedded. Use an interpreter with libpython{major}.{minor}.so: \
           with pyenv, reinstall with PYTHON_CONFIGURE_OPTS=--enable-shared pyenv install {major}.{minor}.{micro}; \
           on Debian/Ubuntu install libpython{major}.{minor} and use /usr/bin/python{major}.{minor}; \
           then create the venv from that interpreter and pip install boxlite",
          self.shared.map(|s| s.to_string()).unwrap_or_else(|| "unset".into())
        ),
      });
    }
    let soname = soname.unwrap_or_default();
    let candidates = [
      self.libdir.as_ref().map(|d| Path::new(d).join(soname)),
      Some(Path::new(&self.base_prefix).join("lib").join(soname)),
    ];
    for path in candidates.into_iter().flatten() {
      if path.exists() {
        return Ok(path);
      }
    }
    // Let the dynamic loader search its usual places (e.g. a distribution's /usr/lib/<triplet>).
    Ok(PathBuf::from(soname))
  }
}

/// `"0.10.8rc1"` → `(0, 10, 8)`; missing parts count as 0.
fn version_tuple(text: &str) -> (u32, u32, u32) {
  let mut parts = text.split('.').map(|p| {
    p.chars()
      .take_while(char::is_ascii_digit)
      .collect::<String>()
      .parse()
      .unwrap_or(0)
  });
  (
    parts.next().unwrap_or(0),
    parts.next().unwrap_or(0),
    parts.next().unwrap_or(0),
  )
}

// ---------------------------------------------------------------------------------------------
// dlopen, declared here so the crate needs no libc dependency (glibc ≥ 2.34 has it in libc).

const RTLD_NOW: i32 = 0x2;
const RTLD_GLOBAL: i32 = 0x100;
#[cfg(target_os = "linux")]
const RTLD_NODELETE: i32 = 0x1000;
#[cfg(not(target_os = "linux"))]
const RTLD_NODELETE: i32 = 0x80;

extern "C" {
  fn dlopen(filename: *const std::ffi::c_char, flag: i32) -> *mut std::ffi::c_void;
  fn dlerror() -> *mut std::ffi::c_char;
}

/// Loads libpython with global symbols (C extension modules are not linked against it) and
/// never unloads it. A no-op when the same library is already loaded (the JS preload).
fn load_global(path: &Path) -> Result<()> {
  let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|e| Error::Internal(e.to_string()))?;
  // SAFETY: plain dlopen/dlerror calls with a valid NUL-terminated path.
  let handle = unsafe { dlopen(c.as_ptr(), RTLD_NOW | RTLD_GLOBAL | RTLD_NODELETE) };
  if handle.is_null() {
    // SAFETY: dlerror returns a thread-local C string or NULL.
    let why = unsafe {
      let e = dlerror();
      if e.is_null() {
        "unknown error".to_string()
      } else {
        CStr::from_ptr(e).to_string_lossy().into_owned()
      }
    };
    return Err(Error::Environment {
      message: format!("cannot load {}: {why}", path.display()),
    });
  }
  Ok(())
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

/// Called by bridge.py on the loop thread: every pending job as `(op, args, blob, done)`.
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
            let code = CString::new(BRIDGE_SOURCE).expect("bridge.py has no NUL");
            let bridge = PyModule::from_code(py, &code, c"boxlite_bridge.py", c"boxlite_bridge")?;
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
