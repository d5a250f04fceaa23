//! The user's interpreter, examined before it is embedded: an out-of-process probe (version,
//! paths, shared libpython, where `import boxlite` would load the SDK from), the checks that
//! refuse an interpreter local mode cannot use, and loading its libpython with global symbols.
//! Everything here runs before Python is initialised, so a refusal leaves the process free to
//! use another interpreter.

use std::ffi::{CStr, CString};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use crate::error::{Error, Result};

/// The oldest CPython local mode supports (the SDK's wheels start there too).
pub const MIN_PYTHON: (u32, u32) = (3, 10);
/// The oldest boxlite SDK local mode supports.
pub const MIN_SDK: (u32, u32, u32) = (0, 10, 0);

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
// One script for the JS preloader and the addon; the npm package ships it in lib/.
const PROBE_SCRIPT: &str = include_str!("../../../../lib/python-probe.py");

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
pub fn load_global(path: &Path) -> Result<()> {
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

#[cfg(test)]
mod tests {
  use super::*;

  fn probe_of(version: (u32, u32, u32), shared: Option<i64>, instsoname: Option<&str>) -> Probe {
    Probe {
      executable: "/venv/bin/python".into(),
      version,
      prefix: "/venv".into(),
      base_prefix: "/nonexistent-base".into(),
      sys_path: Vec::new(),
      libdir: Some("/nonexistent-lib".into()),
      instsoname: instsoname.map(str::to_string),
      ldlibrary: None,
      shared,
      sdk_origin: Some("/venv/lib/boxlite/__init__.py".into()),
      sdk_error: None,
      sdk_version: Some("0.10.8".into()),
    }
  }

  #[test]
  fn sdk_versions_compare_by_their_numeric_parts() {
    assert_eq!(version_tuple("0.10.8rc1"), (0, 10, 8));
    assert_eq!(version_tuple("1.2"), (1, 2, 0));
    assert_eq!(version_tuple("dev"), (0, 0, 0));
  }

  #[test]
  fn an_interpreter_without_the_sdk_or_with_an_old_one_is_refused_with_the_pip_command() {
    let mut missing = probe_of((3, 12, 1), Some(1), Some("libpython3.12.so.1.0"));
    missing.sdk_origin = None;
    missing.sdk_error = Some("ModuleNotFoundError: No module named 'boxlite'".into());
    let error = missing.require_sdk("/venv/bin/python").unwrap_err();
    assert_eq!(error.code(), "environment");
    assert!(
      error
        .to_string()
        .contains("/venv/bin/python -m pip install boxlite"),
      "{error}"
    );

    let mut old = probe_of((3, 12, 1), Some(1), Some("libpython3.12.so.1.0"));
    old.sdk_version = Some("0.9.3".into());
    let error = old.require_sdk("/venv/bin/python").unwrap_err();
    assert!(error.to_string().contains("too old"), "{error}");
    assert!(probe_of((3, 12, 1), Some(1), Some("x.so"))
      .require_sdk("p")
      .is_ok());
  }

  #[test]
  fn libpython_needs_a_recent_shared_build_and_falls_back_to_the_loader_search() {
    let old = probe_of((3, 9, 18), Some(1), Some("libpython3.9.so.1.0"));
    assert!(old
      .libpython("p")
      .unwrap_err()
      .to_string()
      .contains("needs Python 3.10 or newer"));
    let static_build = probe_of((3, 12, 1), Some(0), Some("libpython3.12.a"));
    let error = static_build.libpython("p").unwrap_err().to_string();
    assert!(
      error.contains("built without a shared libpython (Py_ENABLE_SHARED=0)"),
      "{error}"
    );
    let shared = probe_of((3, 12, 1), Some(1), Some("libpython3.12.so.1.0"));
    assert_eq!(
      shared.libpython("p").unwrap(),
      PathBuf::from("libpython3.12.so.1.0")
    );
  }

  #[test]
  fn a_program_that_is_not_cpython_is_described_even_when_silent() {
    assert!(not_cpython("/bin/true", "", "EOF").contains("exited successfully without printing anything"));
    assert!(not_cpython("/bin/echo", "hello\n", "expected value").contains("printed \"hello\""));
  }
}
