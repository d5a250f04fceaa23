//! The daemon: accepts one connection per box from our `boxlite-shim`, serves that box's guest
//! agent on the transport socket named in its InstanceSpec, signals readiness, and tears the
//! box down when the agent is told to shut down, when its init exits, or when the shim dies
//! (its connection closes).

use crate::agent::BoxState;
use std::os::linux::net::SocketAddrExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

#[derive(serde::Deserialize)]
struct Hello {
  #[serde(default)]
  box_id: String,
  spec: serde_json::Value,
}

pub async fn serve(socket: String) -> Result<(), String> {
  if !nix::unistd::geteuid().is_root() {
    return Err(
      "the fake VM must run as root: it gives every box command its own mount \
                    namespace and chroot (run it as root, e.g. in CI or a container)"
        .into(),
    );
  }
  let addr = std::os::unix::net::SocketAddr::from_abstract_name(socket.as_bytes())
    .map_err(|e| format!("bad socket name {socket:?}: {e}"))?;
  let std_listener = std::os::unix::net::UnixListener::bind_addr(&addr)
    .map_err(|e| format!("cannot listen on @{socket}: {e} (is another fake VM daemon using that name?)"))?;
  std_listener.set_nonblocking(true).map_err(|e| e.to_string())?;
  let listener = UnixListener::from_std(std_listener).map_err(|e| e.to_string())?;
  let (stop_tx, stop_rx) = watch::channel(false);
  let sessions = Arc::new(tokio::sync::Mutex::new(tokio::task::JoinSet::new()));
  println!("BOXLITE_FAKEVM_READY @{socket}");
  eprintln!(
    "boxlite-fakevm: listening on @{socket} (test only: box commands run on this host, \
         NO VM isolation)"
  );
  let mut sigterm =
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(|e| e.to_string())?;
  loop {
    tokio::select! {
        accepted = listener.accept() => match accepted {
            Ok((stream, _)) => {
                let stop = stop_rx.clone();
                sessions.lock().await.spawn(session(stream, stop));
            }
            Err(e) => eprintln!("boxlite-fakevm: accept failed: {e}"),
        },
        _ = sigterm.recv() => break,
        _ = tokio::signal::ctrl_c() => break,
    }
  }
  // Daemon stopping: every box goes down the way a dying VM would.
  let _ = stop_tx.send(true);
  let mut set = sessions.lock().await;
  let _ = tokio::time::timeout(Duration::from_secs(20), async {
    while set.join_next().await.is_some() {}
  })
  .await;
  Ok(())
}

async fn send(wr: &mut tokio::net::unix::OwnedWriteHalf, msg: serde_json::Value) {
  let mut line = msg.to_string();
  line.push('\n');
  let _ = wr.write_all(line.as_bytes()).await;
}

async fn session(stream: UnixStream, mut stop_all: watch::Receiver<bool>) {
  let (rd, mut wr) = stream.into_split();
  let mut lines = BufReader::new(rd).lines();
  let hello: Hello = match lines.next_line().await {
    Ok(Some(line)) => match serde_json::from_str(&line) {
      Ok(h) => h,
      Err(e) => {
        send(
          &mut wr,
          serde_json::json!({"log": format!("bad hello: {e}"), "exit": 1}),
        )
        .await;
        return;
      }
    },
    _ => return,
  };
  let vm = match BoxState::start(&hello.box_id, hello.spec).await {
    Ok(vm) => vm,
    Err(e) => {
      eprintln!("boxlite-fakevm: box {}: {e}", hello.box_id);
      send(&mut wr, serde_json::json!({"log": e, "exit": 1})).await;
      return;
    }
  };
  send(
    &mut wr,
    serde_json::json!({"log": format!(
            "box {} runs on the fake VM (host processes, NO VM isolation)", vm.box_id)}),
  )
  .await;
  let mut stopped = vm.stopped_rx();
  let reason = tokio::select! {
      _ = async { while let Ok(Some(_)) = lines.next_line().await {} } => None,
      r = async { loop {
          if let Some(r) = stopped.borrow().clone() { break r; }
          if stopped.changed().await.is_err() { break "agent gone".to_string(); }
      } } => Some(r),
      _ = stop_all.changed() => Some("fake VM daemon stopping".to_string()),
  };
  match reason {
    None => {
      eprintln!("boxlite-fakevm: box {}: shim died, tearing down", vm.box_id);
      vm.teardown().await;
    }
    Some(r) => {
      eprintln!("boxlite-fakevm: box {}: {r}, powering off", vm.box_id);
      vm.teardown().await;
      send(
        &mut wr,
        serde_json::json!({"log": format!("powered off: {r}"), "exit": 0}),
      )
      .await;
    }
  }
}

/// `{"Unix": {"socket_path": P}}` (serde's form of `BoxTransport`).
pub fn unix_socket_path(transport: &serde_json::Value) -> Option<PathBuf> {
  transport
    .get("Unix")
    .and_then(|u| u.get("socket_path"))
    .and_then(|p| p.as_str())
    .map(PathBuf::from)
}
