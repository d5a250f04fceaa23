//! Local mode against the real `boxlite` wheel, for what works without a bootable VM: the
//! calling convention (Futures bound to the loop thread), status from `info.state.status`,
//! errors keeping their kind, the home lock across processes, dispose releasing the home, and
//! a failed VM start explained. Where VMs boot, the start test execs instead.
//! Needs an interpreter with the SDK: BOXLITE_TEST_REAL_PYTHON=/path/to/venv/bin/python
//! (e.g. `python3 -m venv /tmp/realsdk && /tmp/realsdk/bin/pip install boxlite==0.10.8`), and
//! BOXLITE_TEST_ROOTFS=<OCI layout dir> (scripts/build-oci-rootfs.sh) for the start test.
//! Run: cargo test -p boxlite-core --features local --test local_real

mod local_common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use boxlite_core::client::{BoxClient, CreateBoxParams, ExecRequest};
use boxlite_core::LocalConfig;
use local_common::*;

fn python() -> Option<String> {
  std::env::var("BOXLITE_TEST_REAL_PYTHON")
    .ok()
    .filter(|p| !p.is_empty())
}

fn client(home: &Path) -> Arc<dyn BoxClient> {
  let python_path = python().unwrap();
  boxlite_core::local::connect(&LocalConfig {
    python_path,
    boxlite_home: Some(home.to_path_buf()),
  })
  .unwrap()
}

fn main() {
  if python().is_none() {
    println!("local_real: BOXLITE_TEST_REAL_PYTHON is not set; nothing to run against the real SDK");
    run(&[]);
  }
  run(&[
    ("boxes_without_a_vm", || Box::pin(boxes_without_a_vm())),
    ("sdk_errors_keep_their_kind", || {
      Box::pin(sdk_errors_keep_their_kind())
    }),
    ("start_boots_or_explains_why_not", || {
      Box::pin(start_boots_or_explains_why_not())
    }),
    ("home_locked_by_another_process", || {
      Box::pin(home_locked_by_another_process())
    }),
    ("dispose_releases_the_home", || {
      Box::pin(dispose_releases_the_home())
    }),
  ]);
}

async fn boxes_without_a_vm() -> Result<(), String> {
  let c = client(&temp_home("real-boxes"));
  let b = c
    .create_box(CreateBoxParams {
      name: Some("real one".into()),
      cpu: Some(2),
      memory_mb: Some(512),
      ..Default::default()
    })
    .await
    .or_fail("create")?;
  check!(
    b.status == "configured" && b.cpu == Some(2) && b.memory_mb == Some(512),
    "{b:?}"
  );
  check!(
    b.name.as_deref() == Some("real one") && !b.created_at.is_empty(),
    "{b:?}"
  );
  check!(c.get_box("real one").await.or_fail("get by name")?.id == b.id);
  check!(c
    .list_boxes(None, None)
    .await
    .or_fail("list")?
    .iter()
    .any(|x| x.id == b.id && x.status == "configured"));
  // 0.10.8 needs the container disk, which only a first start creates.
  match c.clone_box(&b.id, Some("real clone".into())).await {
    Ok(clone) => {
      check!(clone.id != b.id && clone.status == "stopped", "{clone:?}");
      c.delete_box(&clone.id, false).await.or_fail("delete clone")?;
    }
    Err(e) => check!(
      e.to_string()
        .starts_with("StorageError: storage error: Container disk not found"),
      "{e}"
    ),
  }
  c.stop_box(&b.id).await.or_fail("stop of a configured box")?;
  check!(
    c.get_box(&b.id).await.is_ok(),
    "the box did not survive stop (auto_remove)"
  );
  c.delete_box(&b.id, true).await.or_fail("delete")?;
  check!(c.get_box(&b.id).await.unwrap_err().is_not_found());
  let m = c.get_metrics().await.or_fail("metrics")?;
  check!(m.get("boxes_created_total").is_some(), "{m}");
  c.dispose().await.or_fail("dispose")
}

async fn sdk_errors_keep_their_kind() -> Result<(), String> {
  let c = client(&temp_home("real-errors"));
  check!(c.get_box("nope").await.unwrap_err().is_not_found());
  check!(c.delete_box("nope", true).await.unwrap_err().is_not_found());
  check!(c.start_box("nope").await.unwrap_err().is_not_found());
  c.create_box(CreateBoxParams {
    name: Some("taken".into()),
    ..Default::default()
  })
  .await
  .or_fail("create")?;
  let dup = c
    .create_box(CreateBoxParams {
      name: Some("taken".into()),
      ..Default::default()
    })
    .await
    .unwrap_err();
  check!(
    dup.code() == "invalid_argument" && dup.to_string().contains("already exists"),
    "{dup}"
  );
  c.dispose().await.or_fail("dispose")
}

async fn start_boots_or_explains_why_not() -> Result<(), String> {
  let Ok(rootfs) = std::env::var("BOXLITE_TEST_ROOTFS") else {
    return Err("SKIP: BOXLITE_TEST_ROOTFS is not set (the real SDK cannot pull images here)".into());
  };
  let c = client(&temp_home("real-start"));
  let b = c
    .create_box(CreateBoxParams {
      rootfs_path: Some(rootfs),
      ..Default::default()
    })
    .await
    .or_fail("create")?;
  match c.start_box(&b.id).await {
    Ok(()) => {
      let out = c
        .exec(
          &b.id,
          ExecRequest {
            cmd: vec!["echo".into(), "booted".into()],
            ..Default::default()
          },
        )
        .await
        .or_fail("exec")?;
      check!(out.stdout == "booted\n", "{out:?}");
    }
    Err(e) => {
      println!("    VM did not boot: [{}] {e}", e.code());
      check!(
        e.code() == "environment" && e.to_string().contains("/dev/kvm"),
        "{e}"
      );
    }
  }
  c.delete_box(&b.id, true).await.or_fail("delete")?;
  c.dispose().await.or_fail("dispose")
}

/// Opens `home` with the SDK in another process and keeps it open until stdin closes.
fn hold_home(home: &Path) -> Result<std::process::Child, String> {
  let script =
    "import sys, boxlite\nrt = boxlite.Boxlite(boxlite.Options(home_dir=sys.argv[1]))\nprint('ready', \
                flush=True)\nsys.stdin.read()\n";
  let mut child = Command::new(python().unwrap())
    .args(["-c", script])
    .arg(home)
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .spawn()
    .map_err(|e| format!("spawn: {e}"))?;
  let mut line = String::new();
  BufReader::new(child.stdout.as_mut().unwrap())
    .read_line(&mut line)
    .map_err(|e| e.to_string())?;
  check!(line.trim() == "ready", "the holder said {line:?}");
  Ok(child)
}

async fn home_locked_by_another_process() -> Result<(), String> {
  let home = temp_home("real-locked");
  let mut holder = hold_home(&home)?;
  let c = client(&home);
  let err = c.list_boxes(None, None).await.unwrap_err();
  drop(holder.stdin.take());
  let _ = holder.wait();
  println!("    [{}] {err}", err.code());
  check!(
    err.code() == "environment" && err.to_string().contains("in use by another BoxLite runtime"),
    "{err}"
  );
  // Once the other process is gone, the same client can open the home.
  check!(c.list_boxes(None, None).await.is_ok(), "the home stayed locked");
  c.dispose().await.or_fail("dispose")
}

async fn dispose_releases_the_home() -> Result<(), String> {
  let home = temp_home("real-release");
  let c = client(&home);
  c.create_box(CreateBoxParams {
    name: Some("kept".into()),
    ..Default::default()
  })
  .await
  .or_fail("create")?;
  c.dispose().await.or_fail("dispose")?;
  let mut holder = hold_home(&home).map_err(|e| format!("the home is still locked after dispose: {e}"))?;
  drop(holder.stdin.take());
  let _ = holder.wait();
  Ok(())
}
