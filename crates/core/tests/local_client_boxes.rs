//! Boxes in local mode: listing a home, the lifecycle and its SDK statuses, create options,
//! snapshots, clone/export/import, metrics and config, SDK errors keeping their kind, and dispose
//! releasing the home.
//!
//! The local client against the SDK simulator (python/testbed, whose boxes run commands under
//! bubblewrap), through the embedded interpreter of python/testbed/.venv; helpers shared by the
//! `local_client_*` suites live in `local_client_common/`.
//! Set BOXLITE_TEST_SDK_PYTHON to run the same suite against another interpreter (the real SDK,
//! where VMs boot) and BOXLITE_TEST_ROOTFS to create boxes from a local OCI layout.
//! Run: cargo test -p boxlite-core --features local --test local_client_boxes

mod local_client_common;
mod local_common;

use boxlite_core::client::CreateBoxParams;
use local_client_common::*;
use local_common::*;

fn main() {
  require_python();
  run(&[
    ("lists_every_box_in_the_home", || {
      Box::pin(lists_every_box_in_the_home())
    }),
    ("lifecycle_reports_sdk_status", || {
      Box::pin(lifecycle_reports_sdk_status())
    }),
    ("create_passes_options", || Box::pin(create_passes_options())),
    ("snapshots_leave_the_box_as_it_was", || {
      Box::pin(snapshots_leave_the_box_as_it_was())
    }),
    ("clone_export_import", || Box::pin(clone_export_import())),
    ("metrics_and_config", || Box::pin(metrics_and_config())),
    ("sdk_errors_keep_their_kind", || {
      Box::pin(sdk_errors_keep_their_kind())
    }),
    ("dispose_releases_the_home", || {
      Box::pin(dispose_releases_the_home())
    }),
  ]);
}

async fn lists_every_box_in_the_home() -> Result<(), String> {
  let home = temp_home("list");
  // A box made by another process before this one opened the home.
  let other = python_process(
    &home,
    "import asyncio, os, boxlite\n\
     async def main():\n    rt = boxlite.Boxlite(boxlite.Options(home_dir=os.environ['HOME_DIR']))\n    \
     b = await rt.create(boxlite.BoxOptions(auto_remove=False), name='from-elsewhere')\n    print(b.id)\n\
     asyncio.run(main())",
  )?;
  let c = client(&home);
  let mine = c
    .create_box(CreateBoxParams {
      name: Some("mine".into()),
      ..params()
    })
    .await
    .or_fail("create")?;
  let all = c.list_boxes(None, None).await.or_fail("list")?;
  check!(
    all.iter().any(|b| b.id == other) && all.iter().any(|b| b.id == mine.id),
    "{all:?}"
  );
  check!(all.iter().all(|b| b.status != "unknown"), "{all:?}");
  check!(c.list_boxes(None, Some(1)).await.or_fail("list")?.len() == 1);
  c.dispose().await.or_fail("dispose")
}

async fn lifecycle_reports_sdk_status() -> Result<(), String> {
  let home = temp_home("life");
  let c = client(&home);
  let b = c.create_box(params()).await.or_fail("create")?;
  check!(b.status == "configured" && !b.created_at.is_empty(), "{b:?}");
  c.start_box(&b.id).await.or_fail("start")?;
  check!(c.get_box(&b.id).await.or_fail("get")?.status == "running");
  check!(c
    .list_boxes(Some("running".into()), None)
    .await
    .or_fail("list")?
    .iter()
    .any(|x| x.id == b.id));
  c.stop_box(&b.id).await.or_fail("stop")?;
  let stopped = c
    .get_box(&b.id)
    .await
    .or_fail("get after stop (box survives stop)")?;
  check!(
    stopped.status == "stopped" || stopped.status == "configured",
    "{stopped:?}"
  );
  c.start_box(&b.id).await.or_fail("start again (fresh handle)")?;
  check!(c.get_box(&b.id).await.or_fail("get")?.status == "running");
  let err = c.delete_box(&b.id, false).await;
  if let Err(e) = &err {
    check!(
      e.code() == "invalid_state",
      "delete of a running box without force: {e}"
    );
  }
  c.delete_box(&b.id, true).await.or_fail("force delete")?;
  check!(c.get_box(&b.id).await.unwrap_err().code() == "not_found");
  c.dispose().await.or_fail("dispose")
}

async fn create_passes_options() -> Result<(), String> {
  let c = client(&temp_home("opts"));
  let params = CreateBoxParams {
    name: Some("opts box".into()),
    cpu: Some(2),
    memory_mb: Some(512),
    working_dir: Some("/root".into()),
    env: Some([("GREETING".to_string(), "hello world".to_string())].into()),
    ..params()
  };
  let b = c.create_box(params).await.or_fail("create")?;
  check!(
    b.cpu == Some(2) && b.memory_mb == Some(512) && b.name.as_deref() == Some("opts box"),
    "{b:?}"
  );
  let out = c
    .exec(&b.id, req(&["sh", "-c", "echo \"$GREETING\"; pwd"]))
    .await
    .or_fail("exec")?;
  check!(out.stdout == "hello world\n/root\n", "{out:?}");
  c.dispose().await.or_fail("dispose")
}

async fn snapshots_leave_the_box_as_it_was() -> Result<(), String> {
  let (c, id, _) = with_box("snap").await?;
  c.exec(&id, req(&["sh", "-c", "echo v1 > /root/state"]))
    .await
    .or_fail("write v1")?;
  let s1 = c
    .create_snapshot(&id, "s1")
    .await
    .or_fail("snapshot of a running box")?;
  check!(s1.name == "s1" && s1.box_id == id && s1.created_at > 0, "{s1:?}");
  check!(
    c.get_box(&id).await.or_fail("get")?.status == "running",
    "the box did not come back after the snapshot"
  );
  c.exec(&id, req(&["sh", "-c", "echo v2 > /root/state"]))
    .await
    .or_fail("write v2")?;
  let dup = c.create_snapshot(&id, "s1").await.unwrap_err();
  check!(dup.to_string().contains("already exists"), "{dup}");
  c.restore_snapshot(&id, "s1")
    .await
    .or_fail("restore on a running box")?;
  check!(c.get_box(&id).await.or_fail("get")?.status == "running");
  let out = c.exec(&id, req(&["cat", "/root/state"])).await.or_fail("read")?;
  check!(out.stdout == "v1\n", "{out:?}");
  c.stop_box(&id).await.or_fail("stop")?;
  let s2 = c
    .create_snapshot(&id, "s2")
    .await
    .or_fail("snapshot of a stopped box")?;
  check!(
    c.get_box(&id).await.or_fail("get")?.status != "running",
    "a stopped box was started"
  );
  let names: Vec<String> = c
    .list_snapshots(&id)
    .await
    .or_fail("list")?
    .into_iter()
    .map(|s| s.name)
    .collect();
  check!(
    names.contains(&"s1".to_string()) && names.contains(&s2.name),
    "{names:?}"
  );
  c.restore_snapshot(&id, "s1").await.or_fail("restore s1")?;
  c.delete_snapshot(&id, "s2").await.or_fail("delete s2")?;
  check!(c.delete_snapshot(&id, "nope").await.unwrap_err().code() == "not_found");
  check!(c.restore_snapshot(&id, "nope").await.unwrap_err().code() == "not_found");
  c.dispose().await.or_fail("dispose")
}

async fn clone_export_import() -> Result<(), String> {
  let (c, id, _) = with_box("clone").await?;
  c.exec(&id, req(&["sh", "-c", "echo original > /root/mark"]))
    .await
    .or_fail("write")?;
  c.stop_box(&id).await.or_fail("stop")?;
  let clone = c
    .clone_box(&id, Some("the clone".into()))
    .await
    .or_fail("clone")?;
  check!(
    clone.id != id && clone.name.as_deref() == Some("the clone") && clone.status != "unknown",
    "{clone:?}"
  );
  let out = c
    .exec(&clone.id, req(&["cat", "/root/mark"]))
    .await
    .or_fail("read clone")?;
  check!(out.stdout == "original\n", "{out:?}");
  let archive = collect(c.export_box(&id).await.or_fail("export")?).await?;
  check!(!archive.is_empty());
  let imported = c
    .import_box(bytes_stream(vec![archive]))
    .await
    .or_fail("import")?;
  check!(imported.id != id, "{imported:?}");
  let out = c
    .exec(&imported.id, req(&["cat", "/root/mark"]))
    .await
    .or_fail("read import")?;
  check!(out.stdout == "original\n", "{out:?}");
  c.dispose().await.or_fail("dispose")
}

async fn metrics_and_config() -> Result<(), String> {
  let (c, id, home) = with_box("metrics").await?;
  c.exec(&id, req(&["true"])).await.or_fail("exec")?;
  let m = c.get_metrics().await.or_fail("metrics")?;
  check!(
    m.get("boxes_created_total").and_then(|v| v.as_u64()).unwrap_or(0) >= 1,
    "{m}"
  );
  let bm = c.get_box_metrics(&id).await.or_fail("box metrics")?;
  check!(
    bm.get("commands_executed_total")
      .and_then(|v| v.as_u64())
      .unwrap_or(0)
      >= 1,
    "{bm}"
  );
  let cfg = c.get_config().await.or_fail("config")?;
  check!(
    cfg["mode"] == "local" && cfg["boxliteHome"] == home.to_string_lossy().as_ref(),
    "{cfg}"
  );
  check!(
    cfg["sdkVersion"].as_str().is_some() && cfg["pythonVersion"].as_str().is_some(),
    "{cfg}"
  );
  c.dispose().await.or_fail("dispose")
}

async fn sdk_errors_keep_their_kind() -> Result<(), String> {
  let c = client(&temp_home("errors"));
  check!(c.get_box("nope").await.unwrap_err().code() == "not_found");
  check!(c.start_box("nope").await.unwrap_err().code() == "not_found");
  check!(c.delete_box("nope", false).await.unwrap_err().code() == "not_found");
  check!(c.exec("nope", req(&["true"])).await.unwrap_err().code() == "not_found");
  check!(c.list_snapshots("nope").await.unwrap_err().code() == "not_found");
  c.create_box(CreateBoxParams {
    name: Some("taken".into()),
    ..params()
  })
  .await
  .or_fail("create")?;
  let dup = c
    .create_box(CreateBoxParams {
      name: Some("taken".into()),
      ..params()
    })
    .await
    .unwrap_err();
  check!(
    dup.code() == "invalid_argument" && dup.to_string().contains("already exists"),
    "{dup}"
  );
  let b = c.create_box(params()).await.or_fail("create")?;
  let missing = c.exec(&b.id, req(&["/no/such/program"])).await;
  match missing {
    Ok(out) => check!(out.exit_code != 0, "{out:?}"),
    Err(e) => check!(
      e.code() == "python" && e.to_string().contains("ExecutionError"),
      "{e}"
    ),
  }
  check!(c.exec(&b.id, req(&[])).await.unwrap_err().code() == "invalid_argument");
  c.dispose().await.or_fail("dispose")
}

async fn dispose_releases_the_home() -> Result<(), String> {
  let home = temp_home("release");
  let c = client(&home);
  let b = c
    .create_box(CreateBoxParams {
      name: Some("survivor".into()),
      ..params()
    })
    .await
    .or_fail("create")?;
  c.start_box(&b.id).await.or_fail("start")?;
  c.dispose().await.or_fail("dispose")?;
  check!(c.get_box(&b.id).await.unwrap_err().code() == "disposed");
  // Another process can now open the home, and the box is still there.
  let seen = python_process(
    &home,
    "import asyncio, os, boxlite\n\
     async def main():\n    rt = boxlite.Boxlite(boxlite.Options(home_dir=os.environ['HOME_DIR']))\n    \
     print(','.join(i.name or '' for i in await rt.list_info()))\n\
     asyncio.run(main())",
  )?;
  check!(seen.contains("survivor"), "{seen}");
  Ok(())
}
