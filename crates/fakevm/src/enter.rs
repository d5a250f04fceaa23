//! `exec-in-box`: runs as the box command's own process (single-threaded, started by the
//! daemon), enters the box — new session, private mount namespace with the box's /proc, /dev,
//! per-box /tmp and /dev/shm and volumes, chroot into its rootfs, workdir, user — then execs
//! the program, which keeps this pid. Failures before the exec go to the status fd.

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::unistd::{chdir, chroot, execvp, setgid, setgroups, setsid, setuid, Gid, Uid};
use std::ffi::CString;
use std::io::Write;
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Default)]
struct Args {
  status_fd: i32,
  root: PathBuf,
  tmp: PathBuf,
  shm: PathBuf,
  workdir: String,
  uid: u32,
  gid: u32,
  groups: Vec<u32>,
  binds: Vec<(PathBuf, String, bool)>,
  tty: bool,
  argv: Vec<String>,
}

fn parse(args: &[String]) -> Result<Args, String> {
  let mut a = Args {
    status_fd: -1,
    workdir: "/".into(),
    ..Default::default()
  };
  let mut i = 0;
  let val = |i: usize| {
    args
      .get(i + 1)
      .cloned()
      .ok_or_else(|| format!("{} needs a value", args[i]))
  };
  while i < args.len() {
    match args[i].as_str() {
      "--status-fd" => a.status_fd = val(i)?.parse().map_err(|_| "bad --status-fd")?,
      "--root" => a.root = val(i)?.into(),
      "--tmp" => a.tmp = val(i)?.into(),
      "--shm" => a.shm = val(i)?.into(),
      "--workdir" => a.workdir = val(i)?,
      "--uid" => a.uid = val(i)?.parse().map_err(|_| "bad --uid")?,
      "--gid" => a.gid = val(i)?.parse().map_err(|_| "bad --gid")?,
      "--groups" => {
        a.groups = val(i)?
          .split(',')
          .filter(|s| !s.is_empty())
          .map(|s| s.parse().map_err(|_| "bad --groups"))
          .collect::<Result<_, _>>()?
      }
      "--bind" | "--ro-bind" => {
        let host = val(i)?;
        let guest = args.get(i + 2).cloned().ok_or("--bind needs HOST GUEST")?;
        a.binds.push((host.into(), guest, args[i] == "--ro-bind"));
        i += 3;
        continue;
      }
      "--tty" => {
        a.tty = true;
        i += 1;
        continue;
      }
      "--" => {
        a.argv = args[i + 1..].to_vec();
        break;
      }
      other => return Err(format!("unknown argument {other}")),
    }
    i += 2;
  }
  if a.argv.is_empty() || a.root.as_os_str().is_empty() {
    return Err("need --root and a program".into());
  }
  Ok(a)
}

/// `guest` (absolute, inside the box) under the box root on the host.
fn under(root: &Path, guest: &str) -> PathBuf {
  root.join(guest.trim_start_matches('/'))
}

fn bind(src: &Path, dst: &Path, read_only: bool, recursive: bool) -> Result<(), String> {
  if src.is_dir() {
    std::fs::create_dir_all(dst).map_err(|e| format!("mkdir {}: {e}", dst.display()))?;
  } else if !dst.exists() {
    if let Some(p) = dst.parent() {
      let _ = std::fs::create_dir_all(p);
    }
    std::fs::write(dst, b"").map_err(|e| format!("create {}: {e}", dst.display()))?;
  }
  let mut flags = MsFlags::MS_BIND;
  if recursive {
    flags |= MsFlags::MS_REC;
  }
  mount(Some(src), dst, None::<&str>, flags, None::<&str>)
    .map_err(|e| format!("bind {} on {}: {e}", src.display(), dst.display()))?;
  if read_only {
    mount(
      None::<&str>,
      dst,
      None::<&str>,
      MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
      None::<&str>,
    )
    .map_err(|e| format!("read-only {}: {e}", dst.display()))?;
  }
  Ok(())
}

fn enter(a: &Args) -> Result<(), String> {
  setsid().map_err(|e| format!("setsid: {e}"))?;
  if a.tty {
    // SAFETY: makes stdin (the pty slave) this session's controlling terminal.
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } < 0 {
      return Err(format!("TIOCSCTTY: {}", std::io::Error::last_os_error()));
    }
  }
  unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare mount namespace: {e}"))?;
  mount(
    None::<&str>,
    "/",
    None::<&str>,
    MsFlags::MS_REC | MsFlags::MS_PRIVATE,
    None::<&str>,
  )
  .map_err(|e| format!("make mounts private: {e}"))?;
  let root = &a.root;
  let proc_dir = under(root, "/proc");
  std::fs::create_dir_all(&proc_dir).map_err(|e| format!("mkdir /proc: {e}"))?;
  mount(
    Some("proc"),
    &proc_dir,
    Some("proc"),
    MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
    None::<&str>,
  )
  .map_err(|e| format!("mount /proc: {e}"))?;
  bind(Path::new("/dev"), &under(root, "/dev"), false, true)?;
  bind(&a.shm, &under(root, "/dev/shm"), false, false)?;
  bind(&a.tmp, &under(root, "/tmp"), false, false)?;
  for (host, guest, ro) in &a.binds {
    bind(host, &under(root, guest), *ro, true)?;
  }
  chroot(root).map_err(|e| format!("chroot {}: {e}", root.display()))?;
  chdir("/").map_err(|e| format!("chdir /: {e}"))?;
  let wd = if a.workdir.is_empty() { "/" } else { &a.workdir };
  // Like runc, a missing working directory is created.
  let _ = std::fs::create_dir_all(wd);
  chdir(wd).map_err(|e| format!("workdir {wd}: {e}"))?;
  let groups: Vec<Gid> = a.groups.iter().map(|g| Gid::from_raw(*g)).collect();
  setgroups(&groups).map_err(|e| format!("setgroups: {e}"))?;
  setgid(Gid::from_raw(a.gid)).map_err(|e| format!("setgid {}: {e}", a.gid))?;
  setuid(Uid::from_raw(a.uid)).map_err(|e| format!("setuid {}: {e}", a.uid))?;
  let argv: Vec<CString> = a
    .argv
    .iter()
    .map(|s| CString::new(s.as_str()))
    .collect::<Result<_, _>>()
    .map_err(|_| "argument contains a NUL byte".to_string())?;
  let err = execvp(&argv[0], &argv).unwrap_err();
  Err(format!(
    "Failed to spawn '{}': {}",
    a.argv[0],
    std::io::Error::from_raw_os_error(err as i32)
  ))
}

pub fn main(args: &[String]) -> ExitCode {
  let parsed = parse(args);
  let status_fd = parsed.as_ref().map(|a| a.status_fd).unwrap_or(-1);
  let result = parsed.and_then(|a| {
    if a.status_fd >= 0 {
      // SAFETY: close-on-exec again so a successful exec closes the status pipe.
      unsafe { libc::fcntl(a.status_fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    enter(&a)
  });
  let msg = result.err().unwrap_or_default();
  if status_fd >= 0 {
    // SAFETY: the daemon handed us this fd for exactly this report.
    let mut f = unsafe { std::fs::File::from_raw_fd(status_fd) };
    let _ = f.write_all(msg.as_bytes());
  } else {
    eprintln!("exec-in-box: {msg}");
  }
  ExitCode::from(127)
}
