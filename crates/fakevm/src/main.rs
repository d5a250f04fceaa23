//! boxlite-fakevm: a test-only replacement for the micro-VM under the REAL boxlite runtime.
//! Box commands run on the host (own mount namespace + chroot into the box's rootfs): there is
//! NO VM isolation. See docs/testing.md ("The fake VM") for what it imitates and its limits.
//!
//! Subcommands:
//!   serve --socket NAME            the daemon that plays every box's guest agent
//!   install-runtime --socket NAME --dir DIR [--runtime-files DIR]
//!                                  writes DIR (for BOXLITE_RUNTIME_DIR) holding our boxlite-shim
//!   exec-in-box ...                internal: enters a box's root, then execs the command
//!   pid-init                       internal: pid 1 of a box's own PID namespace

mod agent;
mod daemon;
mod enter;
mod exec;
mod pidns;
mod rootfs;
mod runtime_dir;
mod users;

use std::process::ExitCode;

fn usage() -> ExitCode {
  eprintln!(
    "usage: boxlite-fakevm serve --socket NAME\n       \
         boxlite-fakevm install-runtime --socket NAME --dir DIR [--runtime-files DIR]\n\
         (a test-only fake VM for the boxlite runtime: box commands run on the host, no VM isolation)"
  );
  ExitCode::from(2)
}

/// Value of `--name VALUE` in `args`.
fn flag(args: &[String], name: &str) -> Option<String> {
  args
    .iter()
    .position(|a| a == name)
    .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> ExitCode {
  let args: Vec<String> = std::env::args().skip(1).collect();
  match args.first().map(String::as_str) {
    Some("exec-in-box") => enter::main(&args[1..]),
    Some("pid-init") => pidns::init_main(),
    Some("serve") => {
      let Some(socket) = flag(&args, "--socket") else {
        return usage();
      };
      let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
      match runtime.block_on(daemon::serve(socket)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
          eprintln!("boxlite-fakevm: {e}");
          ExitCode::FAILURE
        }
      }
    }
    Some("install-runtime") => {
      let (Some(socket), Some(dir)) = (flag(&args, "--socket"), flag(&args, "--dir")) else {
        return usage();
      };
      let files = flag(&args, "--runtime-files");
      match runtime_dir::install(&socket, dir.as_ref(), files.as_deref().map(AsRef::as_ref)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
          eprintln!("boxlite-fakevm install-runtime: {e}");
          ExitCode::FAILURE
        }
      }
    }
    _ => usage(),
  }
}
