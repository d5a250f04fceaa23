//! Only for the `local` feature's interpreter tests: test executables link libpython normally
//! (the addon does not: PYO3_BUILD_EXTENSION_MODULE=1), but nothing tells the dynamic loader
//! which libpython, so it would take the first one with that SONAME (e.g. a distribution's
//! 3.11.2 instead of pyenv's 3.11.7). A RUNPATH to the build interpreter's LIBDIR fixes that.

use std::process::Command;

fn main() {
  println!("cargo:rerun-if-changed=build.rs");
  println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
  println!("cargo:rerun-if-env-changed=PYO3_BUILD_EXTENSION_MODULE");
  if std::env::var_os("CARGO_FEATURE_LOCAL").is_none()
    || std::env::var_os("PYO3_BUILD_EXTENSION_MODULE").is_some()
  {
    return;
  }
  let python = std::env::var("PYO3_PYTHON").unwrap_or_else(|_| "python3".into());
  let Ok(out) = Command::new(&python)
    .args([
      "-c",
      "import sysconfig; print(sysconfig.get_config_var('LIBDIR') or '')",
    ])
    .output()
  else {
    return;
  };
  let libdir = String::from_utf8_lossy(&out.stdout).trim().to_string();
  if !libdir.is_empty() {
    println!("cargo:rustc-link-arg-tests=-Wl,-rpath,{libdir}");
  }
}
