//! Environment errors of local mode, each with what to do about it: a pythonPath that does not
//! exist or is not Python, a Python without a shared libpython, one too old, a venv without the
//! SDK (refused before it is embedded, so a correct interpreter still works afterwards), a second
//! interpreter in the same process.
//! Run: cargo test -p boxlite-core --features local --test local_errors

mod local_common;

use boxlite_core::{Error, LocalConfig};
use local_common::*;

fn base_python() -> String {
  std::env::var("BOXLITE_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

async fn first_error(python_path: &str) -> Error {
  let config = LocalConfig {
    python_path: python_path.into(),
    boxlite_home: Some(temp_home("err")),
  };
  let client = boxlite_core::local::connect(&config).expect("connect does no I/O and cannot fail");
  let err = client
    .list_boxes(None, None)
    .await
    .expect_err("the environment is unusable");
  println!("    [{}] {err}", err.code());
  err
}

fn fake(name: &str) -> String {
  fixtures()
    .join("fakepython")
    .join(name)
    .to_string_lossy()
    .into_owned()
}

fn main() {
  run(&[
    ("missing_interpreter_says_not_found", || {
      Box::pin(missing_interpreter_says_not_found())
    }),
    ("something_that_is_not_python", || {
      Box::pin(something_that_is_not_python())
    }),
    ("python_without_shared_libpython_says_how_to_get_one", || {
      Box::pin(python_without_shared_libpython())
    }),
    ("python_older_than_3_10_is_refused", || {
      Box::pin(python_older_than_3_10_is_refused())
    }),
    ("venv_without_boxlite_says_pip_install", || {
      Box::pin(venv_without_boxlite_says_pip_install())
    }),
    ("a_program_that_prints_nothing_gets_a_complete_message", || {
      Box::pin(a_program_that_prints_nothing_gets_a_complete_message())
    }),
    ("a_refused_interpreter_does_not_commit_the_process", || {
      Box::pin(a_refused_interpreter_does_not_commit_the_process())
    }),
    ("second_interpreter_in_one_process_is_refused", || {
      Box::pin(second_interpreter_in_one_process_is_refused())
    }),
  ]);
}

async fn missing_interpreter_says_not_found() -> Result<(), String> {
  let err = first_error("/nonexistent/bin/python3").await;
  check!(err.code() == "environment", "{err}");
  check!(
    err
      .to_string()
      .starts_with("Python interpreter not found: config.pythonPath is '/nonexistent/bin/python3'"),
    "{err}"
  );
  Ok(())
}

async fn something_that_is_not_python() -> Result<(), String> {
  let err = first_error(&fake("not-python")).await;
  check!(
    err.code() == "environment" && err.to_string().contains("is not a working Python interpreter"),
    "{err}"
  );
  Ok(())
}

async fn python_without_shared_libpython() -> Result<(), String> {
  let err = first_error(&fake("static-python")).await;
  let text = err.to_string();
  check!(err.code() == "environment", "{err}");
  check!(
    text.contains("without a shared libpython")
      && text.contains("--enable-shared")
      && text.contains("libpython3.11"),
    "{text}"
  );
  Ok(())
}

async fn python_older_than_3_10_is_refused() -> Result<(), String> {
  let err = first_error(&fake("old-python")).await;
  check!(
    err.code() == "environment"
      && err
        .to_string()
        .contains("is Python 3.9.18; local mode needs Python 3.10 or newer"),
    "{err}"
  );
  Ok(())
}

/// A venv made from the base interpreter, without pip or boxlite.
fn empty_venv() -> Result<String, String> {
  let dir = temp_home("venv").join("venv");
  let status = std::process::Command::new(base_python())
    .args(["-m", "venv", "--without-pip"])
    .arg(&dir)
    .status()
    .map_err(|e| format!("python -m venv: {e}"))?;
  check!(status.success(), "python -m venv failed");
  Ok(dir.join("bin/python").to_string_lossy().into_owned())
}

async fn venv_without_boxlite_says_pip_install() -> Result<(), String> {
  let python = empty_venv()?;
  let err = first_error(&python).await;
  let text = err.to_string();
  check!(err.code() == "environment", "{err}");
  check!(
    text.contains("not importable") && text.contains(&format!("{python} -m pip install boxlite")),
    "{text}"
  );
  Ok(())
}

async fn a_program_that_prints_nothing_gets_a_complete_message() -> Result<(), String> {
  let err = first_error("/bin/true").await;
  let text = err.to_string();
  check!(err.code() == "environment", "{err}");
  check!(
    text.contains("did not answer like CPython: it exited successfully without printing anything")
      && text.ends_with("(e.g. a venv's bin/python)"),
    "{text}"
  );
  Ok(())
}

/// The SDK simulator's venv (python/testbed/.venv), made by scripts/setup.sh.
fn sdk_python() -> String {
  std::env::var("BOXLITE_TEST_SDK_PYTHON").unwrap_or_else(|_| {
    repo_root()
      .join("python/testbed/.venv/bin/python")
      .to_string_lossy()
      .into_owned()
  })
}

async fn a_refused_interpreter_does_not_commit_the_process() -> Result<(), String> {
  // Every earlier test was refused; a venv without the SDK was among them.
  let config = LocalConfig {
    python_path: sdk_python(),
    boxlite_home: Some(temp_home("ok")),
  };
  let client = boxlite_core::local::connect(&config).expect("connect does no I/O");
  let boxes = client
    .list_boxes(None, None)
    .await
    .or_fail("list with the SDK's venv")?;
  check!(boxes.is_empty(), "a fresh home has no boxes: {boxes:?}");
  client.dispose().await.or_fail("dispose")?;
  Ok(())
}

async fn second_interpreter_in_one_process_is_refused() -> Result<(), String> {
  // The previous test started this process's interpreter from the SDK's venv.
  let other = empty_venv()?;
  let err = first_error(&other).await;
  check!(
    err.code() == "environment" && err.to_string().contains("one interpreter per process"),
    "{err}"
  );
  Ok(())
}
