//! The embedding itself, over a tiny fake SDK (tests/fixtures/fakesdk on PYTHONPATH): job
//! round trips, concurrency, the loop thread's environment, and the client's plumbing
//! (handles re-acquired after stop, streaming, timeouts, staging of file transfers).
//! Run: cargo test -p boxlite-core --features local --test local_engine

mod local_common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use boxlite_core::client::{BoxClient, CreateBoxParams, ExecEvent, ExecRequest};
use boxlite_core::local::testing;
use boxlite_core::LocalConfig;
use bytes::Bytes;
use futures_util::StreamExt;
use local_common::*;
use serde_json::json;

fn python() -> String {
  std::env::var("BOXLITE_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn client(home: &std::path::Path) -> Arc<dyn BoxClient> {
  boxlite_core::local::connect(&LocalConfig {
    python_path: python(),
    boxlite_home: Some(home.to_path_buf()),
  })
  .unwrap()
}

fn req(cmd: &[&str]) -> ExecRequest {
  ExecRequest {
    cmd: cmd.iter().map(|s| s.to_string()).collect(),
    ..Default::default()
  }
}

fn main() {
  // The fake SDK is found through PYTHONPATH, which both the probe and the embedded
  // interpreter honour.
  std::env::set_var("PYTHONPATH", fixtures().join("fakesdk"));
  run(&[
    ("echo_round_trips_json_and_bytes", || {
      Box::pin(echo_round_trips_json_and_bytes())
    }),
    ("three_hundred_concurrent_jobs_finish_together", || {
      Box::pin(three_hundred_concurrent_jobs_finish_together())
    }),
    ("loop_thread_is_not_pythons_main_thread", || {
      Box::pin(loop_thread_is_not_pythons_main_thread())
    }),
    ("sys_executable_is_the_python_path", || {
      Box::pin(sys_executable_is_the_python_path())
    }),
    ("box_lifecycle_with_status_from_the_sdk", || {
      Box::pin(box_lifecycle_with_status_from_the_sdk())
    }),
    ("exec_after_stop_uses_a_fresh_handle", || {
      Box::pin(exec_after_stop_uses_a_fresh_handle())
    }),
    ("exec_passes_env_cwd_and_argv_verbatim", || {
      Box::pin(exec_passes_env_cwd_and_argv_verbatim())
    }),
    ("exec_timeout_kills_the_command", || {
      Box::pin(exec_timeout_kills_the_command())
    }),
    ("exec_stream_delivers_first_chunk_before_the_end", || {
      Box::pin(exec_stream_delivers_first_chunk_before_the_end())
    }),
    ("dropping_an_exec_stream_kills_its_command", || {
      Box::pin(dropping_an_exec_stream_kills_its_command())
    }),
    ("exec_async_takes_input_and_replays_output", || {
      Box::pin(exec_async_takes_input_and_replays_output())
    }),
    (
      "hundred_concurrent_execs",
      || Box::pin(hundred_concurrent_execs()),
    ),
    ("upload_download_hostile_names", || {
      Box::pin(upload_download_hostile_names())
    }),
    (
      "not_found_keeps_its_kind",
      || Box::pin(not_found_keeps_its_kind()),
    ),
    ("clients_of_one_home_share_its_runtime", || {
      Box::pin(clients_of_one_home_share_its_runtime())
    }),
    ("home_locked_elsewhere_is_an_environment_error", || {
      Box::pin(home_locked_elsewhere_is_an_environment_error())
    }),
    ("vm_start_failure_explains_kvm", || {
      Box::pin(vm_start_failure_explains_kvm())
    }),
    ("dispose_is_idempotent_and_final", || {
      Box::pin(dispose_is_idempotent_and_final())
    }),
  ]);
}

async fn echo_round_trips_json_and_bytes() -> Result<(), String> {
  let (value, blobs) = testing::call(
    &python(),
    "echo",
    json!({"value": {"a": [1, "x"]}}),
    Some(Bytes::from_static(b"\0\xff")),
  )
  .await
  .or_fail("echo")?;
  check!(value == json!({"a": [1, "x"]}), "{value}");
  check!(blobs == vec![Bytes::from_static(b"\0\xff")]);
  Ok(())
}

async fn three_hundred_concurrent_jobs_finish_together() -> Result<(), String> {
  let started = Instant::now();
  let py = python();
  let calls = (0..300).map(|i| testing::call(&py, "echo", json!({"value": i, "delay_ms": 20}), None));
  let results = futures_util::future::join_all(calls).await;
  for (i, r) in results.into_iter().enumerate() {
    check!(r.or_fail("echo")?.0 == json!(i));
  }
  check!(
    started.elapsed() < Duration::from_secs(2),
    "took {:?}",
    started.elapsed()
  );
  Ok(())
}

async fn loop_thread_is_not_pythons_main_thread() -> Result<(), String> {
  let src = "__import__('signal').signal(2, __import__('signal').SIG_DFL)";
  let err = testing::call(&python(), "eval", json!({"source": src}), None)
    .await
    .unwrap_err();
  check!(
    err.to_string().contains("ValueError") && err.to_string().contains("main thread"),
    "{err}"
  );
  Ok(())
}

async fn sys_executable_is_the_python_path() -> Result<(), String> {
  let facts = testing::facts(&python()).await.or_fail("facts")?;
  let probe = boxlite_core::local::probe(&python()).or_fail("probe")?;
  check!(facts["executable"] == json!(probe.executable), "{facts}");
  check!(facts["sdk_version"] == json!("0.10.8"), "{facts}");
  Ok(())
}

async fn box_lifecycle_with_status_from_the_sdk() -> Result<(), String> {
  let c = client(&temp_home("life"));
  let b = c
    .create_box(CreateBoxParams {
      name: Some("life".into()),
      cpu: Some(2),
      ..Default::default()
    })
    .await
    .or_fail("create")?;
  check!(
    b.status == "configured" && b.cpu == Some(2) && b.name.as_deref() == Some("life"),
    "{b:?}"
  );
  c.start_box(&b.id).await.or_fail("start")?;
  check!(c.get_box(&b.id).await.or_fail("get")?.status == "running");
  c.stop_box(&b.id).await.or_fail("stop")?;
  check!(c.get_box("life").await.or_fail("get by name")?.status == "stopped");
  let listed = c.list_boxes(None, None).await.or_fail("list")?;
  check!(listed.iter().any(|x| x.id == b.id));
  check!(c
    .list_boxes(Some("running".into()), None)
    .await
    .or_fail("list")?
    .is_empty());
  c.delete_box(&b.id, false).await.or_fail("delete")?;
  check!(c.get_box(&b.id).await.unwrap_err().is_not_found());
  c.dispose().await.or_fail("dispose")
}

async fn exec_after_stop_uses_a_fresh_handle() -> Result<(), String> {
  let c = client(&temp_home("fresh"));
  let b = c.create_box(CreateBoxParams::default()).await.or_fail("create")?;
  check!(c.exec(&b.id, req(&["true"])).await.or_fail("exec")?.exit_code == 0);
  c.stop_box(&b.id).await.or_fail("stop")?;
  let out = c
    .exec(&b.id, req(&["echo", "again"]))
    .await
    .or_fail("exec after stop")?;
  check!(out.stdout == "again\n", "{out:?}");
  c.dispose().await.or_fail("dispose")
}

async fn exec_passes_env_cwd_and_argv_verbatim() -> Result<(), String> {
  let c = client(&temp_home("argv"));
  let b = c.create_box(CreateBoxParams::default()).await.or_fail("create")?;
  let mut r = req(&[
    "sh",
    "-c",
    "printf '%s|%s|%s' \"$1\" \"$FOO\" \"$(pwd)\"",
    "x",
    "it's $(not run) `x`",
  ]);
  r.env = Some([("FOO".to_string(), "bar baz".to_string())].into());
  // The command enters the working directory itself (as in every mode); the fake SDK runs
  // commands on the host, so the directory is a host one.
  let dir = std::env::temp_dir().canonicalize().unwrap();
  r.working_dir = Some(dir.to_string_lossy().into_owned());
  let out = c.exec(&b.id, r).await.or_fail("exec")?;
  check!(
    out.stdout.starts_with("it's $(not run) `x`|bar baz|") && out.stdout.ends_with(&*dir.to_string_lossy()),
    "{out:?}"
  );
  let mut missing = req(&["true"]);
  missing.working_dir = Some("/no/such/dir-xyz".into());
  let out = c
    .exec(&b.id, missing)
    .await
    .or_fail("exec in a missing directory")?;
  check!(
    out.exit_code == 2 && out.stderr.contains("/no/such/dir-xyz"),
    "{out:?}"
  );
  let out = c
    .exec(&b.id, req(&["sh", "-c", "echo err >&2; exit 3"]))
    .await
    .or_fail("exec")?;
  check!(out.exit_code == 3 && out.stderr == "err\n", "{out:?}");
  c.dispose().await.or_fail("dispose")
}

async fn exec_timeout_kills_the_command() -> Result<(), String> {
  let home = temp_home("timeout");
  let c = client(&home);
  let b = c.create_box(CreateBoxParams::default()).await.or_fail("create")?;
  let mut r = req(&["sh", "-c", "sleep 3; touch survived"]);
  r.timeout_seconds = Some(0.5);
  let started = Instant::now();
  let err = c.exec(&b.id, r).await.unwrap_err();
  check!(err.is_timeout(), "{err}");
  check!(
    started.elapsed() < Duration::from_secs(2),
    "{:?}",
    started.elapsed()
  );
  tokio::time::sleep(Duration::from_millis(3500)).await;
  check!(
    !home.join("boxes").join(&b.id).join("survived").exists(),
    "the command kept running"
  );
  c.dispose().await.or_fail("dispose")
}

async fn exec_stream_delivers_first_chunk_before_the_end() -> Result<(), String> {
  let c = client(&temp_home("stream"));
  let b = c.create_box(CreateBoxParams::default()).await.or_fail("create")?;
  let started = Instant::now();
  let mut s = c
    .exec_stream(
      &b.id,
      req(&["sh", "-c", "echo one; sleep 1; echo two >&2; echo three; exit 4"]),
    )
    .await
    .or_fail("open")?;
  let first = s.next().await.ok_or("no event")?.or_fail("event")?;
  check!(
    first == ExecEvent::Stdout(Bytes::from_static(b"one\n")),
    "{first:?}"
  );
  check!(
    started.elapsed() < Duration::from_millis(800),
    "first chunk after {:?}",
    started.elapsed()
  );
  let mut rest = Vec::new();
  while let Some(e) = s.next().await {
    rest.push(e.or_fail("event")?);
  }
  check!(rest.last() == Some(&ExecEvent::Exit(Some(4))), "{rest:?}");
  check!(
    rest.contains(&ExecEvent::Stderr(Bytes::from_static(b"two\n"))),
    "{rest:?}"
  );
  c.dispose().await.or_fail("dispose")
}

async fn dropping_an_exec_stream_kills_its_command() -> Result<(), String> {
  let home = temp_home("drop");
  let c = client(&home);
  let b = c.create_box(CreateBoxParams::default()).await.or_fail("create")?;
  let mut s = c
    .exec_stream(&b.id, req(&["sh", "-c", "echo started; sleep 1; touch survived"]))
    .await
    .or_fail("open")?;
  check!(
    s.next().await.ok_or("no event")?.or_fail("event")?
      == ExecEvent::Stdout(Bytes::from_static(b"started\n"))
  );
  drop(s);
  tokio::time::sleep(Duration::from_millis(1500)).await;
  check!(
    !home.join("boxes").join(&b.id).join("survived").exists(),
    "the command outlived its dropped stream"
  );
  c.dispose().await.or_fail("dispose")
}

async fn exec_async_takes_input_and_replays_output() -> Result<(), String> {
  let c = client(&temp_home("async"));
  let b = c.create_box(CreateBoxParams::default()).await.or_fail("create")?;
  let e = c.exec_async(&b.id, req(&["cat"])).await.or_fail("exec_async")?;
  check!(e.status == "running");
  c.send_exec_input(&b.id, &e.id, Bytes::from_static(b"hello\n"), false)
    .await
    .or_fail("input")?;
  c.send_exec_input(&b.id, &e.id, Bytes::from_static(b"bye\n"), true)
    .await
    .or_fail("input+close")?;
  let events: Vec<_> = c
    .get_exec_output(&b.id, &e.id)
    .await
    .or_fail("output")?
    .collect()
    .await;
  let events: Vec<ExecEvent> = events.into_iter().collect::<Result<_, _>>().or_fail("events")?;
  let out = stdout_of(&events);
  check!(out == b"hello\nbye\n", "{events:?}");
  check!(events.last() == Some(&ExecEvent::Exit(Some(0))));
  // A second reader replays the same output.
  let again: Vec<_> = c
    .get_exec_output(&b.id, &e.id)
    .await
    .or_fail("output")?
    .collect()
    .await;
  // The same bytes and exit; chunk boundaries may differ (a replay reads merged batches).
  let again: Vec<ExecEvent> = again.into_iter().collect::<Result<_, _>>().or_fail("replay")?;
  let replayed = stdout_of(&again);
  check!(replayed == out, "{again:?}");
  check!(again.last() == Some(&ExecEvent::Exit(Some(0))));
  let e2 = c
    .exec_async(&b.id, req(&["sleep", "30"]))
    .await
    .or_fail("exec_async")?;
  c.signal_exec(&b.id, &e2.id, 9).await.or_fail("signal")?;
  let last = c
    .get_exec_output(&b.id, &e2.id)
    .await
    .or_fail("output")?
    .collect::<Vec<_>>()
    .await
    .pop();
  check!(matches!(last, Some(Ok(ExecEvent::Exit(Some(-9))))), "{last:?}");
  let err = c.signal_exec(&b.id, "nope", 9).await.unwrap_err();
  check!(err.is_not_found(), "{err}");
  c.dispose().await.or_fail("dispose")
}

async fn hundred_concurrent_execs() -> Result<(), String> {
  let c = client(&temp_home("many"));
  let b = c.create_box(CreateBoxParams::default()).await.or_fail("create")?;
  let started = Instant::now();
  let runs = (0..100).map(|i| {
    let c = c.clone();
    let id = b.id.clone();
    async move { c.exec(&id, req(&["echo", &i.to_string()])).await }
  });
  let outs = futures_util::future::join_all(runs).await;
  for (i, o) in outs.into_iter().enumerate() {
    let o = o.or_fail("exec")?;
    check!(o.stdout == format!("{i}\n"), "{o:?}");
  }
  println!("    100 concurrent execs in {:?}", started.elapsed());
  c.dispose().await.or_fail("dispose")
}

async fn upload_download_hostile_names() -> Result<(), String> {
  let c = client(&temp_home("files"));
  let b = c.create_box(CreateBoxParams::default()).await.or_fail("create")?;
  let name = "it's \"$(touch pwned)\" `x`; rm -rf .txt";
  let tar = make_tar(&[(&format!("d ir/{name}"), b"payload"), ("top.txt", b"t")]);
  c.upload_files(&b.id, "/dest dir/'q'", bytes_stream(vec![tar]))
    .await
    .or_fail("upload")?;
  let out = c
    .exec(&b.id, req(&["cat", &format!("dest dir/'q'/d ir/{name}")]))
    .await
    .or_fail("cat")?;
  check!(out.stdout == "payload", "{out:?}");
  let data = collect(
    c.download_files(&b.id, "/dest dir/'q'")
      .await
      .or_fail("download")?,
  )
  .await?;
  let mut files = read_tar(&data);
  files.sort();
  check!(
    files
      == vec![
        (format!("'q'/d ir/{name}"), b"payload".to_vec()),
        ("'q'/top.txt".into(), b"t".to_vec())
      ],
    "{files:?}"
  );
  check!(c
    .exec(&b.id, req(&["ls"]))
    .await
    .or_fail("ls")?
    .stdout
    .lines()
    .all(|l| l != "pwned"));
  c.dispose().await.or_fail("dispose")
}

async fn not_found_keeps_its_kind() -> Result<(), String> {
  let c = client(&temp_home("nf"));
  for err in [
    c.get_box("missing").await.unwrap_err(),
    c.delete_box("missing", true).await.unwrap_err(),
    c.exec("missing", req(&["true"])).await.unwrap_err(),
  ] {
    check!(err.is_not_found(), "{err}");
    check!(err.to_string() == "box 'missing' not found", "{err}");
  }
  c.dispose().await.or_fail("dispose")
}

async fn clients_of_one_home_share_its_runtime() -> Result<(), String> {
  let home = temp_home("shared");
  let (a, b) = (client(&home), client(&home));
  let x = a.create_box(CreateBoxParams::default()).await.or_fail("create")?;
  check!(b.get_box(&x.id).await.or_fail("get from the other client")?.id == x.id);
  a.dispose().await.or_fail("dispose a")?;
  check!(
    b.get_box(&x.id).await.is_ok(),
    "the runtime closed while a client still used it"
  );
  b.dispose().await.or_fail("dispose b")?;
  // The last client left: the home is free again for a new client.
  let c = client(&home);
  check!(c.list_boxes(None, None).await.is_ok());
  c.dispose().await.or_fail("dispose c")
}

async fn home_locked_elsewhere_is_an_environment_error() -> Result<(), String> {
  let home = temp_home("locked");
  let src = format!(
    "__import__('sys').modules['boxlite']._LOCKS.add({:?})",
    home.to_string_lossy()
  );
  testing::call(&python(), "eval", json!({"source": src}), None)
    .await
    .or_fail("lock")?;
  let err = client(&home).list_boxes(None, None).await.unwrap_err();
  check!(
    err.code() == "environment" && err.to_string().contains("in use by another BoxLite runtime"),
    "{err}"
  );
  Ok(())
}

async fn vm_start_failure_explains_kvm() -> Result<(), String> {
  let c = client(&temp_home("kvm"));
  let err = c
    .create_box(CreateBoxParams {
      image: Some("kvm-broken".into()),
      ..Default::default()
    })
    .await
    .unwrap_err();
  check!(
    err.code() == "environment"
      && err.to_string().contains("The VM failed to start")
      && err.to_string().contains("/dev/kvm"),
    "{err}"
  );
  c.dispose().await.or_fail("dispose")
}

async fn dispose_is_idempotent_and_final() -> Result<(), String> {
  let c = client(&temp_home("dispose"));
  c.list_boxes(None, None).await.or_fail("list")?;
  c.dispose().await.or_fail("dispose")?;
  c.dispose().await.or_fail("dispose again")?;
  check!(c.list_boxes(None, None).await.unwrap_err().code() == "disposed");
  Ok(())
}

/// The stdout bytes of an execution's events, in order.
fn stdout_of(events: &[ExecEvent]) -> Vec<u8> {
  events
    .iter()
    .filter_map(|e| match e {
      ExecEvent::Stdout(b) => Some(b.to_vec()),
      _ => None,
    })
    .flatten()
    .collect()
}
