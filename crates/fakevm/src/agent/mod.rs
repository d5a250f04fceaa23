//! The guest agent of one box: `boxlite.v1` Guest, Container, Execution and Files served over
//! the box's transport socket, as the real guest serves them inside the VM — except that the
//! box's commands are host processes (no VM isolation).

// tonic's API returns `Status` (large) everywhere; boxing it here would only add noise.
#![allow(clippy::result_large_err)]

mod execution;
mod files;
mod guest;

use crate::daemon::unix_socket_path;
use crate::exec::{self, Bind, Execution, Launch};
use crate::pidns::PidNamespace;
use boxlite_shared::{ContainerServer, ExecutionServer, FilesServer, GuestServer};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{oneshot, watch};
use tonic::Status;

/// Reported by Guest.Ping (the runtime requires at least 0.9.8).
const AGENT_VERSION: &str = "0.11.0";
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Largest gRPC message accepted (upload chunks are far smaller).
const MAX_MESSAGE: usize = 64 << 20;

static BOX_COUNTER: AtomicU64 = AtomicU64::new(0);

struct ContainerConf {
  id: String,
  env: Vec<String>,
  workdir: String,
  user: String,
  entrypoint: Vec<String>,
  binds: Vec<Bind>,
  init_exec_id: String,
}

pub struct BoxState {
  pub box_id: String,
  box_dir: PathBuf,
  disks: HashMap<String, PathBuf>,
  shares: HashMap<String, (PathBuf, bool)>,
  scratch: PathBuf,
  self_exe: PathBuf,
  /// The box's own PID namespace, for this lifetime (a restart makes a new one).
  pid_ns: PidNamespace,
  transport: PathBuf,
  rootfs: Mutex<Option<PathBuf>>,
  container: Mutex<Option<Arc<ContainerConf>>>,
  guest_volumes: Mutex<Vec<(String, bool)>>,
  execs: Mutex<HashMap<String, Arc<Execution>>>,
  stopped: watch::Sender<Option<String>>,
  server_stop: Mutex<Option<oneshot::Sender<()>>>,
  ready_conn: Mutex<Option<UnixStream>>,
  exec_counter: AtomicU64,
}

fn now_ms() -> u64 {
  SystemTime::now()
    .duration_since(UNIX_EPOCH)
    .map(|d| d.as_millis() as u64)
    .unwrap_or(0)
}

fn mkdir_mode(path: &Path, mode: u32) -> Result<(), String> {
  use std::os::unix::fs::PermissionsExt;
  std::fs::create_dir_all(path).map_err(|e| format!("mkdir {}: {e}", path.display()))?;
  std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    .map_err(|e| format!("chmod {}: {e}", path.display()))
}

impl BoxState {
  pub async fn start(box_id: &str, spec: serde_json::Value) -> Result<Arc<BoxState>, String> {
    let transport =
      unix_socket_path(&spec["transport"]).ok_or("the InstanceSpec names no Unix transport socket")?;
    let ready = unix_socket_path(&spec["ready_transport"]);
    let mut disks = HashMap::new();
    for d in spec["block_devices"]["devices"].as_array().into_iter().flatten() {
      if let (Some(id), Some(path)) = (d["block_id"].as_str(), d["disk_path"].as_str()) {
        disks.insert(id.to_string(), PathBuf::from(path));
      }
    }
    let mut shares = HashMap::new();
    for s in spec["fs_shares"]["shares"].as_array().into_iter().flatten() {
      if let (Some(tag), Some(path)) = (s["tag"].as_str(), s["host_path"].as_str()) {
        shares.insert(
          tag.to_string(),
          (PathBuf::from(path), s["read_only"].as_bool().unwrap_or(false)),
        );
      }
    }
    let box_id = if box_id.is_empty() {
      spec["box_id"].as_str().unwrap_or("box").to_string()
    } else {
      box_id.to_string()
    };
    let box_dir = spec["exit_file"]
      .as_str()
      .and_then(|p| Path::new(p).parent().map(Path::to_path_buf))
      .or_else(|| {
        disks
          .values()
          .next()
          .and_then(|p| p.parent()?.parent().map(Path::to_path_buf))
      })
      .ok_or("the InstanceSpec names neither an exit file nor a disk")?;
    // One /tmp and one /dev/shm per box lifetime, in memory like the guest's tmpfs.
    let scratch = PathBuf::from("/dev/shm/boxlite-fakevm").join(format!(
      "{}-{}-{}",
      box_id,
      std::process::id(),
      BOX_COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    mkdir_mode(&scratch.join("tmp"), 0o1777)?;
    mkdir_mode(&scratch.join("shm"), 0o1777)?;
    let self_exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let pid_ns = PidNamespace::create(&self_exe)?;
    let (stopped, _) = watch::channel(None);
    let state = Arc::new(BoxState {
      box_id,
      box_dir,
      disks,
      shares,
      scratch,
      self_exe,
      pid_ns,
      transport: transport.clone(),
      rootfs: Mutex::new(None),
      container: Mutex::new(None),
      guest_volumes: Mutex::new(Vec::new()),
      execs: Mutex::new(HashMap::new()),
      stopped,
      server_stop: Mutex::new(None),
      ready_conn: Mutex::new(None),
      exec_counter: AtomicU64::new(0),
    });
    let _ = std::fs::remove_file(&transport);
    let listener =
      UnixListener::bind(&transport).map_err(|e| format!("cannot listen on {}: {e}", transport.display()))?;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    *state.server_stop.lock().unwrap() = Some(stop_tx);
    let agent = Agent(state.clone());
    let router = tonic::transport::Server::builder()
      .add_service(
        GuestServer::new(agent.clone())
          .max_decoding_message_size(MAX_MESSAGE)
          .max_encoding_message_size(MAX_MESSAGE),
      )
      .add_service(
        ContainerServer::new(agent.clone())
          .max_decoding_message_size(MAX_MESSAGE)
          .max_encoding_message_size(MAX_MESSAGE),
      )
      .add_service(
        ExecutionServer::new(agent.clone())
          .max_decoding_message_size(MAX_MESSAGE)
          .max_encoding_message_size(MAX_MESSAGE),
      )
      .add_service(
        FilesServer::new(agent)
          .max_decoding_message_size(MAX_MESSAGE)
          .max_encoding_message_size(MAX_MESSAGE),
      );
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    tokio::spawn(async move {
      let _ = router
        .serve_with_incoming_shutdown(incoming, async {
          let _ = stop_rx.await;
        })
        .await;
    });
    // The runtime waits for a connection to its ready socket: the agent is up.
    if let Some(ready) = ready {
      let mut last = String::new();
      for _ in 0..100 {
        match UnixStream::connect(&ready).await {
          Ok(conn) => {
            *state.ready_conn.lock().unwrap() = Some(conn);
            last.clear();
            break;
          }
          Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
      }
      if !last.is_empty() {
        state.teardown().await;
        return Err(format!(
          "cannot reach the ready socket {}: {last}",
          ready.display()
        ));
      }
    }
    Ok(state)
  }

  pub fn stopped_rx(&self) -> watch::Receiver<Option<String>> {
    self.stopped.subscribe()
  }

  fn stop(&self, reason: String) {
    self.stopped.send_if_modified(|v| {
      if v.is_none() {
        *v = Some(reason);
        true
      } else {
        false
      }
    });
  }

  fn exec(&self, id: &str) -> Result<Arc<Execution>, Status> {
    self
      .execs
      .lock()
      .unwrap()
      .get(id)
      .cloned()
      .ok_or_else(|| Status::not_found(format!("execution {id} not found")))
  }

  fn rootfs(&self) -> Result<PathBuf, Status> {
    self
      .rootfs
      .lock()
      .unwrap()
      .clone()
      .ok_or_else(|| Status::failed_precondition("container not initialized"))
  }

  /// Kills every process of the box: each execution's process group, then the box's PID
  /// namespace (its init's death kills everything left in it), then anything still running
  /// with the box's rootfs as its root.
  async fn kill_all(&self) {
    let execs: Vec<_> = self.execs.lock().unwrap().values().cloned().collect();
    for e in &execs {
      let _ = e.kill(9, true);
    }
    self.pid_ns.kill().await;
    let root = self.rootfs.lock().unwrap().clone();
    if let Some(root) = root {
      let canonical = root.canonicalize().unwrap_or(root);
      for _ in 0..3 {
        let mut found = false;
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
          let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
          };
          if std::fs::read_link(entry.path().join("root")).ok().as_deref() == Some(canonical.as_path()) {
            found = true;
            let _ =
              nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
          }
        }
        if !found {
          break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
      }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
      for e in &execs {
        e.wait().await;
      }
    })
    .await;
  }

  /// Powers the box off: processes killed, agent stopped, per-lifetime /tmp and /dev/shm
  /// gone. The rootfs stays (it is the box's disk).
  pub async fn teardown(&self) {
    self.kill_all().await;
    if let Some(stop) = self.server_stop.lock().unwrap().take() {
      let _ = stop.send(());
    }
    let _ = std::fs::remove_file(&self.transport);
    let _ = std::fs::remove_dir_all(&self.scratch);
    self.ready_conn.lock().unwrap().take();
    self.stop("powered off".into());
  }

  fn next_exec_id(&self) -> String {
    format!(
      "exec-{}-{}",
      now_ms(),
      self.exec_counter.fetch_add(1, Ordering::SeqCst)
    )
  }

  /// Starts `program` in the box with the container's defaults under the request's overrides.
  #[allow(clippy::too_many_arguments)]
  async fn launch(
    &self,
    program: String,
    args: Vec<String>,
    env: &HashMap<String, String>,
    workdir: &str,
    user: Option<&str>,
    tty: Option<(u16, u16, u16, u16)>,
    timeout: Option<Duration>,
  ) -> Result<Arc<Execution>, String> {
    let root = self.rootfs().map_err(|s| s.message().to_string())?;
    let conf = self
      .container
      .lock()
      .unwrap()
      .clone()
      .ok_or("container not initialized")?;
    let user = crate::users::resolve(&root, user.unwrap_or(&conf.user))?;
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| {
      if let Some(slot) = vars.iter_mut().find(|(key, _)| key == k) {
        slot.1 = v.to_string();
      } else {
        vars.push((k.to_string(), v.to_string()));
      }
    };
    for kv in &conf.env {
      if let Some((k, v)) = kv.split_once('=') {
        set(k, v);
      }
    }
    for (k, v) in env {
      set(k, v);
    }
    if !vars.iter().any(|(k, _)| k == "PATH") {
      vars.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    if !vars.iter().any(|(k, _)| k == "HOME") {
      vars.push(("HOME".into(), user.home.clone()));
    }
    if tty.is_some() && !vars.iter().any(|(k, _)| k == "TERM") {
      vars.push(("TERM".into(), "xterm".into()));
    }
    let workdir = if !workdir.is_empty() {
      workdir.to_string()
    } else if !conf.workdir.is_empty() {
      conf.workdir.clone()
    } else {
      "/".into()
    };
    exec::spawn(
      &self.self_exe,
      &self.pid_ns,
      Launch {
        root,
        tmp: self.scratch.join("tmp"),
        shm: self.scratch.join("shm"),
        binds: conf.binds.clone(),
        program,
        args,
        env: vars,
        workdir,
        uid: user.uid,
        gid: user.gid,
        groups: user.groups,
        tty,
        timeout,
      },
    )
    .await
  }
}

#[derive(Clone)]
struct Agent(Arc<BoxState>);
