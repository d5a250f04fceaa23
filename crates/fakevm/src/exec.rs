//! One execution of a box: a host process started through `exec-in-box` (so it runs inside
//! the box's root and PID namespace, in its own session and process group), its stdio (pipes, or a pty for
//! `tty` execs), its exit as `Wait` reports it, `Kill` of it or its whole process group,
//! `ResizeTty` and the exec timeout.

use boxlite_shared::{exec_output, ExecOutput, Stderr, Stdout};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

/// Output chunks buffered per execution before the writer blocks (like a full pipe).
const OUTPUT_CHUNKS_IN_FLIGHT: usize = 64;
const READ_CHUNK: usize = 64 * 1024;

/// A host directory bound into the box's root.
#[derive(Clone, Debug)]
pub struct Bind {
  pub host: PathBuf,
  pub guest: String,
  pub read_only: bool,
}

/// Everything `exec-in-box` needs to start one command.
pub struct Launch {
  pub root: PathBuf,
  pub tmp: PathBuf,
  pub shm: PathBuf,
  pub binds: Vec<Bind>,
  pub program: String,
  pub args: Vec<String>,
  pub env: Vec<(String, String)>,
  pub workdir: String,
  pub uid: u32,
  pub gid: u32,
  pub groups: Vec<u32>,
  pub tty: Option<(u16, u16, u16, u16)>,
  pub timeout: Option<Duration>,
}

#[derive(Clone, Copy, Debug)]
pub struct ExitInfo {
  pub code: i32,
  pub signal: i32,
  pub timed_out: bool,
  pub duration: Duration,
}

enum Input {
  Pipe(tokio::process::ChildStdin),
  Pty(Arc<AsyncFd<OwnedFd>>),
}

pub struct Execution {
  /// As the host sees it (signals go there).
  pub pid: i32,
  /// As the box sees it (what the guest reports).
  pub box_pid: i32,
  input: tokio::sync::Mutex<Option<Input>>,
  output: Mutex<Option<mpsc::Receiver<ExecOutput>>>,
  exit: watch::Receiver<Option<ExitInfo>>,
  pty: Option<Arc<AsyncFd<OwnedFd>>>,
  timed_out: Arc<AtomicBool>,
}

fn set_nonblocking(fd: &OwnedFd) -> std::io::Result<()> {
  use nix::fcntl::{fcntl, FcntlArg, OFlag};
  let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(std::io::Error::from)?;
  fcntl(
    fd,
    FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
  )
  .map_err(std::io::Error::from)?;
  Ok(())
}

fn chunk(stderr: bool, data: Vec<u8>) -> ExecOutput {
  ExecOutput {
    event: Some(if stderr {
      exec_output::Event::Stderr(Stderr {
        data,
        offset: None,
        total_bytes: None,
      })
    } else {
      exec_output::Event::Stdout(Stdout {
        data,
        offset: None,
        total_bytes: None,
      })
    }),
  }
}

async fn pump_reader<R: tokio::io::AsyncRead + Unpin>(mut r: R, stderr: bool, tx: mpsc::Sender<ExecOutput>) {
  let mut buf = vec![0u8; READ_CHUNK];
  loop {
    match r.read(&mut buf).await {
      Ok(0) | Err(_) => break,
      Ok(n) => {
        if tx.send(chunk(stderr, buf[..n].to_vec())).await.is_err() {
          break;
        }
      }
    }
  }
}

async fn pump_pty(master: Arc<AsyncFd<OwnedFd>>, tx: mpsc::Sender<ExecOutput>) {
  let mut buf = vec![0u8; READ_CHUNK];
  loop {
    let Ok(mut guard) = master.readable().await else {
      break;
    };
    match guard.try_io(|fd| nix::unistd::read(fd.get_ref(), &mut buf).map_err(std::io::Error::from)) {
      Ok(Ok(0)) => break,
      Ok(Ok(n)) => {
        if tx.send(chunk(false, buf[..n].to_vec())).await.is_err() {
          break;
        }
      }
      // EIO: every holder of the slave side is gone.
      Ok(Err(_)) => break,
      Err(_would_block) => continue,
    }
  }
}

/// The `exec-in-box` argument list for `l`, status pipe on fd `status_fd`.
fn helper_args(l: &Launch, status_fd: i32) -> Vec<String> {
  let mut a = vec![
    "exec-in-box".to_string(),
    "--status-fd".into(),
    status_fd.to_string(),
    "--root".into(),
    l.root.display().to_string(),
    "--tmp".into(),
    l.tmp.display().to_string(),
    "--shm".into(),
    l.shm.display().to_string(),
    "--workdir".into(),
    l.workdir.clone(),
    "--uid".into(),
    l.uid.to_string(),
    "--gid".into(),
    l.gid.to_string(),
    "--groups".into(),
    l.groups.iter().map(u32::to_string).collect::<Vec<_>>().join(","),
  ];
  for b in &l.binds {
    a.push(if b.read_only { "--ro-bind" } else { "--bind" }.into());
    a.push(b.host.display().to_string());
    a.push(b.guest.clone());
  }
  if l.tty.is_some() {
    a.push("--tty".into());
  }
  a.push("--".into());
  a.push(l.program.clone());
  a.extend(l.args.iter().cloned());
  a
}

pub async fn spawn(
  self_exe: &std::path::Path,
  pid_ns: &crate::pidns::PidNamespace,
  l: Launch,
) -> Result<Arc<Execution>, String> {
  use nix::fcntl::OFlag;
  let (status_r, status_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
  let status_fd = status_w.as_raw_fd();
  let mut cmd = tokio::process::Command::new(self_exe);
  cmd
    .args(helper_args(&l, status_fd))
    .env_clear()
    .envs(l.env.iter().map(|(k, v)| (k, v)));
  let mut master = None;
  if let Some((rows, cols, xp, yp)) = l.tty {
    let ws = nix::pty::Winsize {
      ws_row: rows,
      ws_col: cols,
      ws_xpixel: xp,
      ws_ypixel: yp,
    };
    let pty = nix::pty::openpty(Some(&ws), None).map_err(|e| format!("openpty: {e}"))?;
    let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| format!("dup pty: {e}"));
    cmd
      .stdin(Stdio::from(dup(&pty.slave)?))
      .stdout(Stdio::from(dup(&pty.slave)?))
      .stderr(Stdio::from(pty.slave));
    set_nonblocking(&pty.master).map_err(|e| format!("pty: {e}"))?;
    // SAFETY: the master is an OwnedFd that this AsyncFd alone owns from here on.
    let master_fd = unsafe { AsyncFd::register(pty.master) }
      .map_err(|_| "pty: cannot register the master with the reactor".to_string())?;
    master = Some(Arc::new(master_fd));
  } else {
    cmd
      .stdin(Stdio::piped())
      .stdout(Stdio::piped())
      .stderr(Stdio::piped());
  }
  // SAFETY: only async-signal-safe calls (fcntl) between fork and exec.
  unsafe {
    cmd.pre_exec(move || {
      if libc::fcntl(status_fd, libc::F_SETFD, 0) < 0 {
        return Err(std::io::Error::last_os_error());
      }
      Ok(())
    });
  }
  let started = Instant::now();
  let mut child = pid_ns
    .spawn_inside(|| cmd.spawn())
    .map_err(|e| format!("cannot start {}: {e}", self_exe.display()))?;
  drop(cmd);
  drop(status_w);
  // The helper reports a failure to enter the box or to exec the program on the status
  // pipe; a successful exec closes it (close-on-exec) with nothing written.
  let report = tokio::task::spawn_blocking(move || {
    let mut s = String::new();
    let _ = std::io::Read::read_to_string(&mut std::fs::File::from(status_r), &mut s);
    s
  })
  .await
  .unwrap_or_default();
  if !report.is_empty() {
    let _ = child.wait().await;
    return Err(report);
  }
  let pid = child.id().unwrap_or(0) as i32;
  let (tx, rx) = mpsc::channel(OUTPUT_CHUNKS_IN_FLIGHT);
  let input = if let Some(m) = &master {
    tokio::spawn(pump_pty(m.clone(), tx));
    Some(Input::Pty(m.clone()))
  } else {
    let out = child.stdout.take().expect("piped stdout");
    let err = child.stderr.take().expect("piped stderr");
    tokio::spawn(pump_reader(out, false, tx.clone()));
    tokio::spawn(pump_reader(err, true, tx));
    child.stdin.take().map(Input::Pipe)
  };
  let timed_out = Arc::new(AtomicBool::new(false));
  let (exit_tx, exit_rx) = watch::channel(None);
  let flag = timed_out.clone();
  tokio::spawn(async move {
    let status = child.wait().await;
    let (code, signal) = match status {
      Ok(s) => match (s.code(), s.signal()) {
        (Some(c), _) => (c, 0),
        (None, Some(sig)) => (0, sig),
        _ => (-1, 0),
      },
      Err(_) => (-1, 0),
    };
    let _ = exit_tx.send(Some(ExitInfo {
      code,
      signal,
      timed_out: flag.load(Ordering::SeqCst),
      duration: started.elapsed(),
    }));
  });
  let exec = Arc::new(Execution {
    pid,
    box_pid: crate::pidns::pid_in_box(pid),
    input: tokio::sync::Mutex::new(input),
    output: Mutex::new(Some(rx)),
    exit: exit_rx,
    pty: master,
    timed_out,
  });
  if let Some(limit) = l.timeout {
    let e = exec.clone();
    tokio::spawn(async move {
      let mut exit = e.exit.clone();
      if tokio::time::timeout(limit, exit.wait_for(Option::is_some))
        .await
        .is_err()
      {
        e.timed_out.store(true, Ordering::SeqCst);
        let _ = killpg(Pid::from_raw(e.pid), Signal::SIGKILL);
      }
    });
  }
  Ok(exec)
}

impl Execution {
  /// The output stream; only one client can attach.
  pub fn attach(&self) -> Option<mpsc::Receiver<ExecOutput>> {
    self.output.lock().unwrap().take()
  }

  pub async fn write_input(&self, data: &[u8]) -> Result<(), String> {
    let mut guard = self.input.lock().await;
    match guard.as_mut() {
      None => Err("stdin is closed".into()),
      Some(Input::Pipe(p)) => p.write_all(data).await.map_err(|e| format!("write stdin: {e}")),
      Some(Input::Pty(m)) => {
        let mut rest = data;
        while !rest.is_empty() {
          let mut g = m.writable().await.map_err(|e| e.to_string())?;
          match g.try_io(|fd| nix::unistd::write(fd.get_ref(), rest).map_err(std::io::Error::from)) {
            Ok(Ok(n)) => rest = &rest[n..],
            Ok(Err(e)) => return Err(format!("write tty: {e}")),
            Err(_would_block) => continue,
          }
        }
        Ok(())
      }
    }
  }

  /// End of input: the pipe closes (a pty stays open, as the terminal it is).
  pub async fn close_input(&self) {
    let mut guard = self.input.lock().await;
    if matches!(guard.as_ref(), Some(Input::Pipe(_))) {
      *guard = None;
    }
  }

  pub async fn wait(&self) -> ExitInfo {
    let mut rx = self.exit.clone();
    let v = rx.wait_for(Option::is_some).await.map(|v| *v);
    match v {
      Ok(Some(info)) => info,
      _ => ExitInfo {
        code: -1,
        signal: 0,
        timed_out: false,
        duration: Duration::ZERO,
      },
    }
  }

  pub fn exited(&self) -> bool {
    self.exit.borrow().is_some()
  }

  pub fn kill(&self, signal: i32, group: bool) -> Result<(), String> {
    let sig = Signal::try_from(signal).map_err(|_| format!("invalid signal {signal}"))?;
    let pid = Pid::from_raw(self.pid);
    let r = if group {
      killpg(pid, sig)
    } else if self.exited() {
      return Ok(());
    } else {
      kill(pid, sig)
    };
    match r {
      Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
      Err(e) => Err(format!("kill: {e}")),
    }
  }

  pub fn resize(&self, rows: u16, cols: u16, xp: u16, yp: u16) -> Result<(), String> {
    let Some(m) = &self.pty else {
      return Err("execution has no tty".into());
    };
    let ws = libc::winsize {
      ws_row: rows,
      ws_col: cols,
      ws_xpixel: xp,
      ws_ypixel: yp,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from a valid pointer.
    let r = unsafe { libc::ioctl(m.get_ref().as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if r < 0 {
      return Err(format!("resize: {}", std::io::Error::last_os_error()));
    }
    Ok(())
  }
}
