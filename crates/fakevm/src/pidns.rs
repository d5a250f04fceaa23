//! One PID namespace per box lifetime, as a VM has its own: an init process (pid 1 inside,
//! reaping orphans) and every command of the box forked into it, so `ps`/`pgrep` in a box see
//! that box's processes only. Killing the init ends every process of the box at once.

use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::fs::File;
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often (ms) the init reaps orphans while it watches for the daemon's end.
const INIT_POLL_MS: i32 = 200;

pub struct PidNamespace {
  /// The namespace's init, as the host sees it.
  init: tokio::sync::Mutex<tokio::process::Child>,
  ended: AtomicBool,
  /// The init's stdin: never written; it closes when the daemon dies, and the init then exits.
  _lifeline: Option<tokio::process::ChildStdin>,
  ns: File,
}

/// Runs `f` on a short-lived thread whose children land in the PID namespace `enter` selects
/// (setns/unshare with CLONE_NEWPID change where the calling thread's *future children* go):
/// no runtime worker is ever left pointing into a box.
fn on_thread_in<T: Send>(
  enter: impl FnOnce() -> nix::Result<()> + Send,
  f: impl FnOnce() -> std::io::Result<T> + Send,
) -> Result<T, String> {
  let handle = tokio::runtime::Handle::current();
  std::thread::scope(|s| {
    s.spawn(move || {
      let _runtime = handle.enter();
      enter().map_err(|e| format!("enter the box's PID namespace: {e}"))?;
      f().map_err(|e| e.to_string())
    })
    .join()
    .unwrap_or_else(|_| Err("the PID namespace thread panicked".into()))
  })
}

impl PidNamespace {
  /// A new namespace whose init is `self_exe pid-init`.
  pub fn create(self_exe: &std::path::Path) -> Result<PidNamespace, String> {
    let mut cmd = tokio::process::Command::new(self_exe);
    cmd
      .arg("pid-init")
      .env_clear()
      .stdin(std::process::Stdio::piped())
      .stdout(std::process::Stdio::null())
      .kill_on_drop(true);
    let mut init = on_thread_in(|| unshare(CloneFlags::CLONE_NEWPID), || cmd.spawn())
      .map_err(|e| format!("cannot start the box's PID namespace: {e}"))?;
    let pid = init.id().ok_or("the PID namespace's init exited at once")?;
    let ns = File::open(format!("/proc/{pid}/ns/pid"))
      .map_err(|e| format!("cannot open the PID namespace of {pid}: {e}"))?;
    Ok(PidNamespace {
      _lifeline: init.stdin.take(),
      init: tokio::sync::Mutex::new(init),
      ended: AtomicBool::new(false),
      ns,
    })
  }

  /// `f` (which forks, e.g. a `Command::spawn`) with its children created inside the box.
  pub fn spawn_inside<T: Send>(&self, f: impl FnOnce() -> std::io::Result<T> + Send) -> Result<T, String> {
    if self.ended.load(Ordering::SeqCst) {
      return Err("the box is powered off".into());
    }
    let ns = self.ns.as_fd();
    on_thread_in(move || setns(ns, CloneFlags::CLONE_NEWPID), f)
  }

  /// Ends the namespace: the kernel kills every process left in it when its init dies.
  pub async fn kill(&self) {
    self.ended.store(true, Ordering::SeqCst);
    let mut init = self.init.lock().await;
    if let Some(pid) = init.id() {
      let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), init.wait()).await;
  }
}

/// The process's pid inside its own PID namespace (the last `NSpid` of its status), which is
/// what the real guest reports; `host_pid` when it cannot be read.
pub fn pid_in_box(host_pid: i32) -> i32 {
  std::fs::read_to_string(format!("/proc/{host_pid}/status"))
    .ok()
    .and_then(|s| {
      s.lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .and_then(|v| v.split_whitespace().last()?.parse().ok())
    })
    .unwrap_or(host_pid)
}

/// `pid-init`: pid 1 of a box's namespace. Reaps orphaned processes, and exits when the daemon
/// that started it is gone (its stdin closes), which kills every process of the box.
pub fn init_main() -> ExitCode {
  loop {
    while let Ok(status) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
      if status == WaitStatus::StillAlive {
        break;
      }
    }
    let mut fd = libc::pollfd {
      fd: 0,
      events: libc::POLLIN,
      revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    let ready = unsafe { libc::poll(&mut fd, 1, INIT_POLL_MS) };
    // The daemon never writes: readable or hung up means its end is closed.
    if ready > 0 || (ready < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted) {
      return ExitCode::SUCCESS;
    }
  }
}
