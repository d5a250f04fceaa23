//! `boxlite.v1` Guest (init, ping, shutdown, quiesce/thaw) and Container (init from the box's
//! disk, start of the image's init) for one box.

#![allow(clippy::result_large_err)]

use super::{Agent, ContainerConf, AGENT_VERSION};
use crate::exec::Bind;
use boxlite_shared::{
  container_init_response, container_start_response, ContainerInitError, ContainerInitErrorKind,
  ContainerInitRequest, ContainerInitResponse, ContainerInitSuccess, ContainerStartRequest,
  ContainerStartResponse, ContainerStartSuccess, GuestInitRequest, GuestInitResponse, PingRequest,
  PingResponse, QuiesceRequest, QuiesceResponse, ShutdownRequest, ShutdownResponse, ThawRequest,
  ThawResponse,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status};
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

/// Test knob: a container env `BOXLITE_FAKEVM_BOOT_DELAY=<seconds>` (at most 600) holds the
/// box's start that long, as a slow VM boot would.
fn boot_delay(env: &[String]) -> Option<Duration> {
  let value = env
    .iter()
    .find_map(|kv| kv.strip_prefix("BOXLITE_FAKEVM_BOOT_DELAY="))?;
  let seconds: f64 = value.trim().parse().ok()?;
  (seconds.is_finite() && seconds > 0.0).then(|| Duration::from_secs_f64(seconds.min(600.0)))
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
