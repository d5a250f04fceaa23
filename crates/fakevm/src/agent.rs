//! The guest agent of one box: `boxlite.v1` Guest, Container, Execution and Files served over
//! the box's transport socket, as the real guest serves them inside the VM — except that the
//! box's commands are host processes (no VM isolation).

// tonic's API returns `Status` (large) everywhere; boxing it here would only add noise.
#![allow(clippy::result_large_err)]

use crate::daemon::unix_socket_path;
use crate::exec::{self, Bind, Execution, Launch};
use boxlite_shared::tar::{PackContext, UnpackContext};
use boxlite_shared::{
  container_init_response, container_start_response, ContainerInitError, ContainerInitErrorKind,
  ContainerInitRequest, ContainerInitResponse, ContainerInitSuccess, ContainerServer, ContainerStartRequest,
  ContainerStartResponse, ContainerStartSuccess, DownloadChunk, DownloadRequest, ExecError, ExecOutput,
  ExecRequest, ExecResponse, ExecStdin, ExecutionServer, FilesServer, GuestInitRequest, GuestInitResponse,
  GuestServer, KillRequest, KillResponse, PingRequest, PingResponse, QuiesceRequest, QuiesceResponse,
  ResizeTtyRequest, ResizeTtyResponse, SendInputAck, ShutdownRequest, ShutdownResponse, ThawRequest,
  ThawResponse, UploadChunk, UploadResponse, WaitRequest, WaitResponse,
};
use futures::{Stream, StreamExt};
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{oneshot, watch};
use tonic::{Request, Response, Status, Streaming};

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

/// Test knob: a container env `BOXLITE_FAKEVM_BOOT_DELAY=<seconds>` (at most 600) holds the
/// box's start that long, as a slow VM boot would.
fn boot_delay(env: &[String]) -> Option<Duration> {
  let value = env
    .iter()
    .find_map(|kv| kv.strip_prefix("BOXLITE_FAKEVM_BOOT_DELAY="))?;
  let seconds: f64 = value.trim().parse().ok()?;
  (seconds.is_finite() && seconds > 0.0).then(|| Duration::from_secs_f64(seconds.min(600.0)))
}

/// `path` inside the box, as a host path under `root` (no `..`, like the real guest).
fn in_rootfs(root: &Path, path: &str) -> Result<PathBuf, Status> {
  let p = Path::new(path);
  if p.components().any(|c| matches!(c, Component::ParentDir)) {
    return Err(Status::invalid_argument("path must not contain .."));
  }
  Ok(root.join(p.strip_prefix("/").unwrap_or(p)))
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
    let (stopped, _) = watch::channel(None);
    let state = Arc::new(BoxState {
      box_id,
      box_dir,
      disks,
      shares,
      scratch,
      self_exe,
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

  /// Kills every process of the box: each execution's process group, then anything still
  /// running with the box's rootfs as its root.
  async fn kill_all(&self) {
    let execs: Vec<_> = self.execs.lock().unwrap().values().cloned().collect();
    for e in &execs {
      let _ = e.kill(9, true);
    }
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

#[tonic::async_trait]
impl boxlite_shared::Guest for Agent {
  async fn init(&self, request: Request<GuestInitRequest>) -> Result<Response<GuestInitResponse>, Status> {
    let req = request.into_inner();
    let mut vols = self.0.guest_volumes.lock().unwrap();
    for v in req.volumes {
      if let Some(boxlite_shared::volume::Source::Virtiofs(fs)) = v.source {
        vols.push((fs.tag, fs.read_only));
      }
    }
    Ok(Response::new(GuestInitResponse {
      result: Some(boxlite_shared::guest_init_response::Result::Success(
        boxlite_shared::GuestInitSuccess {},
      )),
    }))
  }

  async fn ping(&self, _: Request<PingRequest>) -> Result<Response<PingResponse>, Status> {
    Ok(Response::new(PingResponse {
      version: AGENT_VERSION.into(),
    }))
  }

  async fn shutdown(&self, _: Request<ShutdownRequest>) -> Result<Response<ShutdownResponse>, Status> {
    self.0.kill_all().await;
    // SAFETY: sync(2) has no preconditions; it flushes what the box wrote.
    unsafe { libc::sync() };
    let state = self.0.clone();
    tokio::spawn(async move {
      // Let the response leave before the agent goes away.
      tokio::time::sleep(Duration::from_millis(100)).await;
      state.stop("Guest.Shutdown".into());
    });
    Ok(Response::new(ShutdownResponse {}))
  }

  async fn quiesce(&self, _: Request<QuiesceRequest>) -> Result<Response<QuiesceResponse>, Status> {
    // SAFETY: as above.
    unsafe { libc::sync() };
    Ok(Response::new(QuiesceResponse { frozen_count: 0 }))
  }

  async fn thaw(&self, _: Request<ThawRequest>) -> Result<Response<ThawResponse>, Status> {
    Ok(Response::new(ThawResponse { thawed_count: 0 }))
  }
}

fn init_error(reason: String, kind: ContainerInitErrorKind) -> ContainerInitResponse {
  ContainerInitResponse {
    result: Some(container_init_response::Result::Error(ContainerInitError {
      reason,
      kind: kind as i32,
    })),
  }
}

#[tonic::async_trait]
impl boxlite_shared::Container for Agent {
  async fn init(
    &self,
    request: Request<ContainerInitRequest>,
  ) -> Result<Response<ContainerInitResponse>, Status> {
    let req = request.into_inner();
    let state = &self.0;
    if let Some(delay) = req.container_config.as_ref().and_then(|c| boot_delay(&c.env)) {
      // Test knob: a box that boots slowly (deadline and cleanup tests of the adapter).
      tokio::time::sleep(delay).await;
    }
    let device = match req.rootfs.as_ref().and_then(|r| r.strategy.as_ref()) {
      Some(boxlite_shared::rootfs_init::Strategy::Disk(d)) => d.device.clone(),
      other => {
        return Ok(Response::new(init_error(
          format!("the fake VM supports only the disk rootfs strategy, got {other:?}"),
          ContainerInitErrorKind::Unsupported,
        )))
      }
    };
    let block_id = device.trim_start_matches("/dev/").to_string();
    let Some(disk) = state.disks.get(&block_id).cloned() else {
      return Ok(Response::new(init_error(
        format!("rootfs device {device} is not among the box's block devices"),
        ContainerInitErrorKind::Internal,
      )));
    };
    let box_dir = state.box_dir.clone();
    let root = match tokio::task::spawn_blocking(move || crate::rootfs::prepare(&box_dir, &disk)).await {
      Ok(Ok(root)) => root,
      Ok(Err(e)) => return Ok(Response::new(init_error(e, ContainerInitErrorKind::Internal))),
      Err(e) => {
        return Ok(Response::new(init_error(
          e.to_string(),
          ContainerInitErrorKind::Internal,
        )))
      }
    };
    let mut binds = Vec::new();
    for m in &req.mounts {
      let share = state.shares.get(&m.volume_name).cloned().or_else(|| {
        let vols = state.guest_volumes.lock().unwrap();
        vols
          .iter()
          .find(|(tag, _)| tag == &m.volume_name)
          .and_then(|(tag, _)| state.shares.get(tag).cloned())
      });
      let Some((host, share_ro)) = share else {
        return Ok(Response::new(init_error(
          format!("volume {} has no shared directory", m.volume_name),
          ContainerInitErrorKind::Internal,
        )));
      };
      let host = if m.subpath.is_empty() {
        host
      } else {
        host.join(m.subpath.trim_start_matches('/'))
      };
      binds.push(Bind {
        host,
        guest: m.destination.clone(),
        read_only: m.read_only || share_ro,
      });
    }
    let config = req.container_config.unwrap_or_default();
    let id = if req.container_id.is_empty() {
      state.box_id.clone()
    } else {
      req.container_id.clone()
    };
    let init_exec_id = if req.execution_id.is_empty() {
      id.clone()
    } else {
      req.execution_id.clone()
    };
    *state.rootfs.lock().unwrap() = Some(root);
    *state.container.lock().unwrap() = Some(Arc::new(ContainerConf {
      id: id.clone(),
      env: config.env,
      workdir: config.workdir,
      user: config.user,
      entrypoint: config.entrypoint,
      binds,
      init_exec_id,
    }));
    Ok(Response::new(ContainerInitResponse {
      result: Some(container_init_response::Result::Success(ContainerInitSuccess {
        container_id: id,
      })),
    }))
  }

  async fn start(
    &self,
    _: Request<ContainerStartRequest>,
  ) -> Result<Response<ContainerStartResponse>, Status> {
    let state = self.0.clone();
    let conf = state
      .container
      .lock()
      .unwrap()
      .clone()
      .ok_or_else(|| Status::failed_precondition("container not initialized"))?;
    if let Some((program, args)) = conf.entrypoint.split_first() {
      // The image's init is the box's main command: its exit powers the box off.
      let init = state
        .launch(
          program.clone(),
          args.to_vec(),
          &HashMap::new(),
          "",
          None,
          None,
          None,
        )
        .await
        .map_err(Status::internal)?;
      state
        .execs
        .lock()
        .unwrap()
        .insert(conf.init_exec_id.clone(), init.clone());
      let watcher = state.clone();
      tokio::spawn(async move {
        let exit = init.wait().await;
        watcher.stop(format!(
          "container init exited (code {}, signal {})",
          exit.code, exit.signal
        ));
      });
    }
    Ok(Response::new(ContainerStartResponse {
      result: Some(container_start_response::Result::Success(ContainerStartSuccess {
        container_id: conf.id.clone(),
      })),
    }))
  }
}

type OutputStream = Pin<Box<dyn Stream<Item = Result<ExecOutput, Status>> + Send>>;
type DownloadStream = Pin<Box<dyn Stream<Item = Result<DownloadChunk, Status>> + Send>>;

#[tonic::async_trait]
impl boxlite_shared::Execution for Agent {
  async fn exec(&self, request: Request<ExecRequest>) -> Result<Response<ExecResponse>, Status> {
    let req = request.into_inner();
    eprintln!(
      "boxlite-fakevm: box {}: exec {:?} {} {:?} (tty: {})",
      self.0.box_id,
      req.execution_id,
      req.program,
      req.args,
      req.tty.is_some()
    );
    let id = req
      .execution_id
      .clone()
      .filter(|s| !s.is_empty())
      .unwrap_or_else(|| self.0.next_exec_id());
    let tty = req.tty.as_ref().map(|t| {
      let or = |v: u32, d: u16| if v == 0 { d } else { v.min(u16::MAX as u32) as u16 };
      (
        or(t.rows, 24),
        or(t.cols, 80),
        or(t.x_pixels, 0),
        or(t.y_pixels, 0),
      )
    });
    let timeout = (req.timeout_ms > 0).then(|| Duration::from_millis(req.timeout_ms));
    let started_at_ms = now_ms();
    match self
      .0
      .launch(
        req.program.clone(),
        req.args.clone(),
        &req.env,
        &req.workdir,
        req.user.as_deref(),
        tty,
        timeout,
      )
      .await
    {
      Ok(e) => {
        let pid = e.pid as u32;
        self.0.execs.lock().unwrap().insert(id.clone(), e);
        Ok(Response::new(ExecResponse {
          execution_id: id,
          pid,
          started_at_ms,
          error: None,
        }))
      }
      Err(reason) => Ok(Response::new(ExecResponse {
        execution_id: id,
        pid: 0,
        started_at_ms,
        error: Some(ExecError {
          reason,
          detail: String::new(),
        }),
      })),
    }
  }

  type AttachStream = OutputStream;

  async fn attach(
    &self,
    request: Request<boxlite_shared::AttachRequest>,
  ) -> Result<Response<Self::AttachStream>, Status> {
    let e = self.0.exec(&request.into_inner().execution_id)?;
    let rx = e
      .attach()
      .ok_or_else(|| Status::failed_precondition("execution already attached"))?;
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok);
    Ok(Response::new(Box::pin(stream)))
  }

  async fn send_input(
    &self,
    request: Request<Streaming<ExecStdin>>,
  ) -> Result<Response<SendInputAck>, Status> {
    let mut stream = request.into_inner();
    let mut exec = None;
    while let Some(msg) = stream.message().await? {
      if exec.is_none() {
        exec = Some(self.0.exec(&msg.execution_id)?);
      }
      let e = exec.as_ref().expect("set above");
      if !msg.data.is_empty() {
        e.write_input(&msg.data).await.map_err(Status::internal)?;
      }
      if msg.close {
        e.close_input().await;
      }
    }
    Ok(Response::new(SendInputAck {}))
  }

  async fn wait(&self, request: Request<WaitRequest>) -> Result<Response<WaitResponse>, Status> {
    let e = self.0.exec(&request.into_inner().execution_id)?;
    let exit = e.wait().await;
    Ok(Response::new(WaitResponse {
      exit_code: exit.code,
      signal: exit.signal,
      timed_out: exit.timed_out,
      duration_ms: exit.duration.as_millis() as u64,
      error_message: String::new(),
    }))
  }

  async fn kill(&self, request: Request<KillRequest>) -> Result<Response<KillResponse>, Status> {
    let req = request.into_inner();
    let signal = if req.signal == 0 { 9 } else { req.signal };
    eprintln!(
      "boxlite-fakevm: box {}: kill {} signal {signal} (process group: {})",
      self.0.box_id, req.execution_id, req.process_group
    );
    let e = self.0.exec(&req.execution_id)?;
    Ok(Response::new(match e.kill(signal, req.process_group) {
      Ok(()) => KillResponse {
        success: true,
        error: None,
      },
      Err(err) => KillResponse {
        success: false,
        error: Some(err),
      },
    }))
  }

  async fn resize_tty(
    &self,
    request: Request<ResizeTtyRequest>,
  ) -> Result<Response<ResizeTtyResponse>, Status> {
    let req = request.into_inner();
    let e = self.0.exec(&req.execution_id)?;
    let c = |v: u32| v.min(u16::MAX as u32) as u16;
    Ok(Response::new(
      match e.resize(c(req.rows), c(req.cols), c(req.x_pixels), c(req.y_pixels)) {
        Ok(()) => ResizeTtyResponse {
          success: true,
          error: None,
        },
        Err(err) => ResizeTtyResponse {
          success: false,
          error: Some(err),
        },
      },
    ))
  }
}

#[tonic::async_trait]
impl boxlite_shared::Files for Agent {
  async fn upload(
    &self,
    request: Request<Streaming<UploadChunk>>,
  ) -> Result<Response<UploadResponse>, Status> {
    let mut stream = request.into_inner();
    let first = stream
      .message()
      .await?
      .ok_or_else(|| Status::invalid_argument("empty upload stream"))?;
    if first.dest_path.is_empty() {
      return Err(Status::invalid_argument("dest_path is required in first chunk"));
    }
    eprintln!(
      "boxlite-fakevm: box {}: upload to {:?} (source_is_dir {:?}, mkdir_parents {}, overwrite {})",
      self.0.box_id, first.dest_path, first.source_is_dir, first.mkdir_parents, first.overwrite
    );
    let root = self.0.rootfs()?;
    let dest = in_rootfs(&root, &first.dest_path)?;
    let force_directory = first.dest_path.ends_with('/');
    let opts = |force_directory| UnpackContext {
      overwrite: first.overwrite,
      mkdir_parents: first.mkdir_parents,
      force_directory,
    };
    let head = std::io::Result::Ok(first.data.clone());
    let rest = stream.map(|m| {
      m.map(|c| c.data)
        .map_err(|s| std::io::Error::other(s.message().to_string()))
    });
    let bytes: boxlite_shared::BoxByteStream =
      Box::pin(futures::stream::once(async move { head }).chain(rest));
    let result = match first.source_is_dir {
      Some(is_dir) => boxlite_shared::tar::unpack_stream(bytes, dest, opts(is_dir || force_directory))
        .await
        .map(|_| ()),
      None => {
        // No shape hint: spool the tar, then let the archive decide (file-based path).
        let spool = self
          .0
          .scratch
          .join(format!("upload-{}.tar", self.0.next_exec_id()));
        let mut file = tokio::fs::File::create(&spool)
          .await
          .map_err(|e| Status::internal(format!("failed to create temp file: {e}")))?;
        let mut bytes = bytes;
        let mut total = 0usize;
        while let Some(chunk) = bytes.next().await {
          let chunk = chunk.map_err(|e| Status::internal(e.to_string()))?;
          total += chunk.len();
          tokio::io::AsyncWriteExt::write_all(&mut file, &chunk)
            .await
            .map_err(|e| Status::internal(format!("failed to write temp file: {e}")))?;
        }
        // tokio's File hands writes to a blocking thread: without this flush the unpack below
        // could read the spool before its last bytes land (an empty tar: nothing extracted).
        tokio::io::AsyncWriteExt::flush(&mut file)
          .await
          .map_err(|e| Status::internal(format!("failed to flush temp file: {e}")))?;
        drop(file);
        eprintln!(
          "boxlite-fakevm: box {}: upload spooled {total} bytes",
          self.0.box_id
        );
        let r = boxlite_shared::tar::unpack(spool.clone(), dest, opts(force_directory)).await;
        let _ = tokio::fs::remove_file(&spool).await;
        r
      }
    };
    if let Err(e) = &result {
      eprintln!("boxlite-fakevm: box {}: upload failed: {e}", self.0.box_id);
    }
    result.map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(UploadResponse {
      success: true,
      error: None,
    }))
  }

  type DownloadStream = DownloadStream;

  async fn download(
    &self,
    request: Request<DownloadRequest>,
  ) -> Result<Response<Self::DownloadStream>, Status> {
    let req = request.into_inner();
    if req.src_path.is_empty() {
      return Err(Status::invalid_argument("src_path is required"));
    }
    let root = self.0.rootfs()?;
    let src = in_rootfs(&root, &req.src_path)?;
    if !src.exists() {
      return Err(Status::not_found("source path does not exist"));
    }
    let (is_dir, stream) = boxlite_shared::tar::pack_stream(
      src,
      PackContext {
        follow_symlinks: req.follow_symlinks,
        include_parent: req.include_parent,
      },
    )
    .await
    .map_err(|e| Status::internal(e.to_string()))?;
    let mut first = true;
    let out = stream.map(move |item| {
      let hint = first.then_some(is_dir);
      first = false;
      item
        .map(|data| DownloadChunk {
          data,
          source_is_dir: hint,
        })
        .map_err(|e| Status::internal(e.to_string()))
    });
    Ok(Response::new(Box::pin(out)))
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn boot_delay_is_read_from_the_container_env_and_bounded() {
    let env = |v: &str| vec!["PATH=/bin".to_string(), format!("BOXLITE_FAKEVM_BOOT_DELAY={v}")];
    assert_eq!(boot_delay(&env("2.5")), Some(Duration::from_millis(2500)));
    assert_eq!(boot_delay(&env("100000")), Some(Duration::from_secs(600)));
    assert_eq!(boot_delay(&env("soon")), None);
    assert_eq!(boot_delay(&env("-1")), None);
    assert_eq!(boot_delay(&["PATH=/bin".to_string()]), None);
  }
}
