//! Every `BoxClient` method against the test bed, in each dialect and auth mode: the same tour
//! runs everywhere, and methods a dialect has no endpoint for must fail as `unsupported`.

mod rest_common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use boxlite_core::client::{BoxClient, CreateBoxParams, ExecEvent, ExecRequest};
use boxlite_core::rest::{Dialect, RestClient};
use bytes::Bytes;
use futures_util::StreamExt;
use rest_common::*;
use serde_json::json;

/// On `sse-serve` (the SSE-era `boxlite serve`) an execution is forgotten once its output is
/// opened (stdin and signals must come first there).
async fn tour(client: &RestClient, dialect: Dialect) {
  assert_eq!(client.dialect().await.unwrap(), dialect);
  // What the tour expects of each dialect, answered for every one of them.
  let (evicting, boxlite, boxrun) = match dialect {
    Dialect::SseServe => (true, true, false),
    Dialect::SseRef | Dialect::Current => (false, true, false),
    Dialect::Boxrun => (false, false, true),
  };

  let config = client.get_config().await.expect("getConfig");
  assert!(config.is_object(), "{config}");

  // Boxes: create, get, list.
  eprintln!("tour step: Boxes: create, get, list.");
  let name = unique("tour");
  let mut env = BTreeMap::new();
  env.insert("BOX_VAR".to_string(), "box-value".to_string());
  let params = CreateBoxParams {
    image: Some("alpine:latest".into()),
    name: Some(name.clone()),
    cpu: Some(1),
    memory_mb: Some(512),
    env: Some(env),
    labels: Some(BTreeMap::new()),
    ..Default::default()
  };
  let created = client.create_box(params).await.expect("createBox");
  assert!(!created.id.is_empty());
  assert_eq!(created.name.as_deref(), Some(name.as_str()));
  let id = created.id.clone();
  let got = client.get_box(&id).await.expect("getBox");
  assert_eq!(got.id, id);
  assert_eq!(got.cpu, Some(1));
  assert_eq!(got.memory_mb, Some(512));
  let listed = client.list_boxes(None, None).await.expect("listBoxes");
  assert!(listed.iter().any(|b| b.id == id), "{listed:?}");
  client.start_box(&id).await.expect("startBox");
  let running = client
    .list_boxes(Some("running".into()), Some(10))
    .await
    .expect("listBoxes(running)");
  assert!(running.iter().any(|b| b.id == id));
  assert!(
    running.iter().all(|b| b.status == "running"),
    "the status filter holds everywhere: {running:?}"
  );

  // exec: output, stderr, exit codes, env, working directory (with quotes and spaces).
  eprintln!("tour step: exec: output, stderr, exit codes, env, working directory (with quotes and spaces).");
  let out = client
    .exec(&id, argv(&["echo", "hello"]))
    .await
    .expect("exec echo");
  assert_eq!(
    (out.stdout.as_str(), out.stderr.as_str(), out.exit_code),
    ("hello\n", "", 0)
  );
  let out = client
    .exec(&id, sh("echo out; echo err >&2; exit 3"))
    .await
    .unwrap();
  assert_eq!(
    (out.stdout.as_str(), out.stderr.as_str(), out.exit_code),
    ("out\n", "err\n", 3)
  );
  let mut env = BTreeMap::new();
  env.insert("GREETING".to_string(), "hi there".to_string());
  let out = client
    .exec(
      &id,
      ExecRequest {
        env: Some(env),
        ..sh("printf %s \"$GREETING\"")
      },
    )
    .await
    .unwrap();
  assert_eq!(out.stdout, "hi there");
  let dir = "/root/it's a \"dir\"";
  client.exec(&id, argv(&["mkdir", "-p", dir])).await.unwrap();
  let out = client
    .exec(
      &id,
      ExecRequest {
        working_dir: Some(dir.into()),
        ..argv(&["pwd"])
      },
    )
    .await
    .unwrap();
  assert_eq!(out.stdout.trim_end(), dir);
  let out = client.exec(&id, argv(&["sh", "-c", "kill -9 $$"])).await.unwrap();
  assert!(
    out.exit_code < 0 || out.exit_code == 137,
    "signal death: {}",
    out.exit_code
  );

  // exec timeout: killed client-side, reported as a timeout quickly.
  eprintln!("tour step: exec timeout: killed client-side, reported as a timeout quickly.");
  let begun = Instant::now();
  let error = client
    .exec(
      &id,
      ExecRequest {
        timeout_seconds: Some(1.0),
        ..argv(&["sleep", "30"])
      },
    )
    .await
    .unwrap_err();
  assert_eq!(error.code(), "timeout", "{error}");
  assert!(begun.elapsed() < Duration::from_secs(12), "{:?}", begun.elapsed());

  // execStream: the first chunk arrives before the command ends.
  eprintln!("tour step: execStream: the first chunk arrives before the command ends.");
  let begun = Instant::now();
  let mut events = client
    .exec_stream(&id, sh("echo first; sleep 2; echo second >&2; exit 4"))
    .await
    .unwrap();
  let first = events.next().await.unwrap().unwrap();
  assert_eq!(first, ExecEvent::Stdout(Bytes::from_static(b"first\n")));
  assert!(
    begun.elapsed() < Duration::from_millis(1800),
    "first chunk after {:?}",
    begun.elapsed()
  );
  let mut rest = Vec::new();
  while let Some(event) = events.next().await {
    rest.push(event.unwrap());
  }
  assert_eq!(
    rest,
    vec![
      ExecEvent::Stderr(Bytes::from_static(b"second\n")),
      ExecEvent::Exit(Some(4))
    ]
  );
  assert!(begun.elapsed() >= Duration::from_secs(2));

  // execAsync + getExecOutput + stdin + signal + resize.
  eprintln!("tour step: execAsync + getExecOutput + stdin + signal + resize.");
  let execution = client.exec_async(&id, argv(&["cat"])).await.expect("execAsync");
  assert_eq!(execution.status, "running");
  if boxrun {
    let error = client
      .send_exec_input(&id, &execution.id, Bytes::from_static(b"x"), true)
      .await
      .unwrap_err();
    assert_eq!(error.code(), "unsupported", "{error}");
    client.signal_exec(&id, &execution.id, 9).await.expect("cancel");
    let mut output = client.get_exec_output(&id, &execution.id).await.unwrap();
    let mut last = None;
    while let Some(event) = output.next().await {
      last = Some(event.unwrap());
    }
    assert!(matches!(last, Some(ExecEvent::Exit(_))), "{last:?}");
  } else {
    let early = if evicting {
      None
    } else {
      Some(
        client
          .get_exec_output(&id, &execution.id)
          .await
          .expect("getExecOutput"),
      )
    };
    client
      .send_exec_input(&id, &execution.id, Bytes::from_static(b"piped "), false)
      .await
      .expect("stdin");
    client
      .send_exec_input(&id, &execution.id, Bytes::from_static(b"input"), true)
      .await
      .expect("stdin + close");
    let mut output = match early {
      Some(output) => output,
      None => client
        .get_exec_output(&id, &execution.id)
        .await
        .expect("getExecOutput"),
    };
    let mut stdout = Vec::new();
    let mut exit = None;
    while let Some(event) = output.next().await {
      match event.unwrap() {
        ExecEvent::Stdout(b) => stdout.extend_from_slice(&b),
        ExecEvent::Stderr(_) => {}
        ExecEvent::Exit(code) => exit = Some(code),
      }
    }
    assert_eq!(String::from_utf8_lossy(&stdout), "piped input");
    assert_eq!(exit, Some(Some(0)));

    let sleeper = client.exec_async(&id, argv(&["sleep", "30"])).await.unwrap();
    let early = if evicting {
      None
    } else {
      Some(client.get_exec_output(&id, &sleeper.id).await.unwrap())
    };
    client.signal_exec(&id, &sleeper.id, 9).await.expect("signalExec");
    let mut output = match early {
      Some(output) => output,
      None => client.get_exec_output(&id, &sleeper.id).await.unwrap(),
    };
    let mut exit = None;
    while let Some(event) = tokio::time::timeout(Duration::from_secs(10), output.next())
      .await
      .unwrap()
    {
      if let ExecEvent::Exit(code) = event.unwrap() {
        exit = Some(code);
      }
    }
    let code = exit.expect("exit after signal");
    assert!(code.is_none_or(|c| c != 0), "killed exec exit code {code:?}");

    let tty = client
      .exec_async(
        &id,
        ExecRequest {
          tty: Some(true),
          ..argv(&["sleep", "1"])
        },
      )
      .await
      .unwrap();
    client
      .resize_exec(&id, &tty.id, 120, 40)
      .await
      .expect("resizeExec");
  }
  if boxrun {
    assert_eq!(
      client
        .resize_exec(&id, &execution.id, 80, 24)
        .await
        .unwrap_err()
        .code(),
      "unsupported"
    );
  }

  // Files: a tar goes in and comes back out.
  eprintln!("tour step: Files: a tar goes in and comes back out.");
  let tar = tar_of(&[("a.txt", b"alpha"), ("sub/b.txt", b"beta")]);
  client
    .upload_files(&id, "/root/uploaded", stream_of(tar))
    .await
    .expect("uploadFiles");
  let out = client
    .exec(
      &id,
      sh("find /root/uploaded -type f | sort; cat $(find /root/uploaded -name a.txt)"),
    )
    .await
    .unwrap();
  assert!(
    out.stdout.contains("a.txt") && out.stdout.contains("b.txt") && out.stdout.ends_with("alpha"),
    "{out:?}"
  );
  client
    .exec(
      &id,
      sh("mkdir -p /root/down/inner && printf gamma > /root/down/inner/c.txt"),
    )
    .await
    .unwrap();
  let tar = read_all(
    client
      .download_files(&id, "/root/down")
      .await
      .expect("downloadFiles"),
  )
  .await;
  let entries = tar_entries(&tar);
  let c = entries
    .iter()
    .find(|(n, _)| n.ends_with("inner/c.txt"))
    .unwrap_or_else(|| panic!("{entries:?}"));
  assert_eq!(c.1, b"gamma");
  assert!(
    c.0.trim_start_matches("./").starts_with("down/"),
    "top-level entry is the basename: {}",
    c.0
  );

  // Snapshots, clone, export/import, metrics.
  eprintln!("tour step: Snapshots, clone, export/import, metrics.");
  if boxlite {
    let metrics = client.get_metrics().await.expect("getMetrics");
    assert!(metrics.is_object());
    let box_metrics = client.get_box_metrics(&id).await.expect("getBoxMetrics");
    assert!(box_metrics.is_object());
    client.stop_box(&id).await.expect("stopBox");
    assert_eq!(
      client.get_box(&id).await.unwrap().status,
      "stopped",
      "stop keeps the box (auto_remove false)"
    );
    let snapshot = client
      .create_snapshot(&id, "snap-1")
      .await
      .expect("createSnapshot");
    assert_eq!(snapshot.name, "snap-1");
    let snapshots = client.list_snapshots(&id).await.expect("listSnapshots");
    assert!(snapshots.iter().any(|s| s.name == "snap-1"), "{snapshots:?}");
    client
      .create_snapshot(&id, "snap-2")
      .await
      .expect("createSnapshot 2");
    client
      .restore_snapshot(&id, "snap-1")
      .await
      .expect("restoreSnapshot");
    // The restored disk depends on snap-1, so the other one is the one that can go.
    client
      .delete_snapshot(&id, "snap-2")
      .await
      .expect("deleteSnapshot");
    let names: Vec<_> = client
      .list_snapshots(&id)
      .await
      .unwrap()
      .into_iter()
      .map(|s| s.name)
      .collect();
    assert_eq!(names, vec!["snap-1"]);
    let clone = client
      .clone_box(&id, Some(unique("clone")))
      .await
      .expect("cloneBox");
    assert_ne!(clone.id, id);
    let archive = read_all(client.export_box(&id).await.expect("exportBox")).await;
    assert!(!archive.is_empty());
    let imported = client.import_box(stream_of(archive)).await.expect("importBox");
    assert_ne!(imported.id, id);
    client.delete_box(&clone.id, true).await.unwrap();
    client.delete_box(&imported.id, true).await.unwrap();
  } else {
    for error in [
      client.get_metrics().await.unwrap_err(),
      client.get_box_metrics(&id).await.unwrap_err(),
      client.create_snapshot(&id, "s").await.unwrap_err(),
      client.list_snapshots(&id).await.unwrap_err(),
      client.restore_snapshot(&id, "s").await.unwrap_err(),
      client.delete_snapshot(&id, "s").await.unwrap_err(),
      client.clone_box(&id, None).await.unwrap_err(),
      client.export_box(&id).await.map(|_| ()).unwrap_err(),
      client.import_box(stream_of(vec![1, 2, 3])).await.unwrap_err(),
    ] {
      assert_eq!(error.code(), "unsupported", "{error}");
      assert!(
        error.to_string().contains("BoxRun server (dialect boxrun)"),
        "{error}"
      );
    }
    client.stop_box(&id).await.expect("stopBox");
  }

  // Delete, then not-found is structural.
  eprintln!("tour step: Delete, then not-found is structural.");
  client.delete_box(&id, true).await.expect("deleteBox");
  let error = client.get_box(&id).await.unwrap_err();
  assert_eq!(error.code(), "not_found", "{error}");
  assert!(
    error.to_string().starts_with("BoxLite API error 404: "),
    "{error}"
  );
  let again = client.delete_box(&id, true).await.unwrap_err();
  assert_eq!(again.code(), "not_found", "deleting twice: {again}");

  client.dispose().await.unwrap();
  client.dispose().await.unwrap();
  assert_eq!(client.get_config().await.unwrap_err().code(), "disposed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_dialect_with_client_credentials_serves_every_method() {
  let tb = Testbed::start(&["--dialect", "sse-ref", "--auth", "client-credentials"]).await;
  tour(&tb.client(json!({})), Dialect::SseRef).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_dialect_of_boxlite_serve_with_lf_framing_and_default_prefix_serves_every_method() {
  let tb = Testbed::start(&["--dialect", "sse-serve", "--auth", "token", "--prefix", "default"]).await;
  tour(&tb.client(json!({"dialect": "sse"})), Dialect::SseServe).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_dialect_without_auth_serves_every_method() {
  let tb = Testbed::start(&["--dialect", "sse-ref", "--auth", "none"]).await;
  tour(&tb.client(json!({"prefix": "tenant-1"})), Dialect::SseRef).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn current_dialect_with_token_serves_every_method() {
  let tb = Testbed::start(&["--dialect", "current", "--auth", "token"]).await;
  tour(&tb.client(json!({})), Dialect::Current).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn current_dialect_with_discovered_prefix_serves_every_method() {
  let tb = Testbed::start(&[
    "--dialect",
    "current",
    "--auth",
    "none",
    "--prefix",
    "us-east/team-42",
    "--me-prefix-key",
    "path_prefix",
  ])
  .await;
  let client = tb.client(json!({}));
  assert_eq!(client.prefix().await.unwrap().as_deref(), Some("us-east/team-42"));
  tour(&client, Dialect::Current).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boxrun_dialect_serves_every_method_it_has_and_refuses_the_rest() {
  let tb = Testbed::start(&["--dialect", "boxrun"]).await;
  tour(&tb.client(json!({})), Dialect::Boxrun).await;
}
