//! The whole local client against the SDK simulator (python/testbed, whose boxes run commands
//! under bubblewrap), through the embedded interpreter of python/testbed/.venv: every method,
//! concurrency, streaming order and timing, a 100 MB round trip, hostile names, SDK errors.
//! Set BOXLITE_TEST_SDK_PYTHON to run the same suite against another interpreter (the real SDK,
//! where VMs boot) and BOXLITE_TEST_ROOTFS to create boxes from a local OCI layout.
//! Run: cargo test -p boxlite-core --features local --test local_client

mod local_common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use boxlite_core::client::{BoxClient, CreateBoxParams, ExecEvent, ExecRequest};
use boxlite_core::LocalConfig;
use bytes::Bytes;
use futures_util::StreamExt;
use local_common::*;

fn python() -> String {
  std::env::var("BOXLITE_TEST_SDK_PYTHON").unwrap_or_else(|_| {
    repo_root()
      .join("python/testbed/.venv/bin/python")
      .to_string_lossy()
      .into_owned()
  })
}

fn client(home: &Path) -> Arc<dyn BoxClient> {
  boxlite_core::local::connect(&LocalConfig {
    python_path: python(),
    boxlite_home: Some(home.to_path_buf()),
  })
  .unwrap()
}

/// Box options every test starts from: a local OCI rootfs when BOXLITE_TEST_ROOTFS names one
/// (the real SDK cannot pull images here), else the SDK's default image.
fn params() -> CreateBoxParams {
  CreateBoxParams {
    rootfs_path: std::env::var("BOXLITE_TEST_ROOTFS").ok(),
    ..Default::default()
  }
}

fn req(cmd: &[&str]) -> ExecRequest {
  ExecRequest {
    cmd: cmd.iter().map(|s| s.to_string()).collect(),
    ..Default::default()
  }
}

/// A client on a fresh home with one started box.
async fn with_box(tag: &str) -> Result<(Arc<dyn BoxClient>, String, PathBuf), String> {
  let home = temp_home(tag);
  let c = client(&home);
  let b = c.create_box(params()).await.or_fail("create")?;
  c.start_box(&b.id).await.or_fail("start")?;
  Ok((c, b.id, home))
}

fn main() {
  if !Path::new(&python()).exists() {
    eprintln!(
      "the simulator's venv is missing: python3 -m venv python/testbed/.venv && \
       python/testbed/.venv/bin/pip install -e 'python/testbed[test]' (or set BOXLITE_TEST_SDK_PYTHON)"
    );
    std::process::exit(1);
  }
  run(&[
    ("lists_every_box_in_the_home", || {
      Box::pin(lists_every_box_in_the_home())
    }),
    ("lifecycle_reports_sdk_status", || {
      Box::pin(lifecycle_reports_sdk_status())
    }),
    ("create_passes_options", || Box::pin(create_passes_options())),
    ("exec_argv_env_cwd_are_verbatim", || {
      Box::pin(exec_argv_env_cwd_are_verbatim())
    }),
    ("exec_after_stop_and_start", || {
      Box::pin(exec_after_stop_and_start())
    }),
    ("exec_timeout_really_stops_the_command", || {
      Box::pin(exec_timeout_really_stops_the_command())
    }),
    ("exec_tty_merges_output", || Box::pin(exec_tty_merges_output())),
    ("exec_stream_is_real_time_and_ordered", || {
      Box::pin(exec_stream_is_real_time_and_ordered())
    }),
    ("exec_stream_merges_small_chunks", || {
      Box::pin(exec_stream_merges_small_chunks())
    }),
    ("exec_async_input_signal_resize", || {
      Box::pin(exec_async_input_signal_resize())
    }),
    ("replayable_output_is_bounded_to_the_most_recent_bytes", || {
      Box::pin(replayable_output_is_bounded_to_the_most_recent_bytes())
    }),
    ("a_terminal_shell_keeps_bounded_output_while_it_runs", || {
      Box::pin(a_terminal_shell_keeps_bounded_output_while_it_runs())
    }),
    (
      "hundred_concurrent_execs",
      || Box::pin(hundred_concurrent_execs()),
    ),
    ("upload_download_hostile_names", || {
      Box::pin(upload_download_hostile_names())
    }),
    ("upload_gzip_into_new_directory", || {
      Box::pin(upload_gzip_into_new_directory())
    }),
    ("hundred_mb_round_trip", || Box::pin(hundred_mb_round_trip())),
    ("tmpfs_destination_via_exec_stdin", || {
      Box::pin(tmpfs_destination_via_exec_stdin())
    }),
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

/// Runs `script` in a separate Python process (the simulator's interpreter) with `HOME_DIR` set.
fn python_process(home: &Path, script: &str) -> Result<String, String> {
  let out = std::process::Command::new(python())
    .arg("-c")
    .arg(script)
    .env("HOME_DIR", home)
    .output()
    .map_err(|e| format!("spawn python: {e}"))?;
  check!(
    out.status.success(),
    "python failed ({}): {}",
    out.status,
    String::from_utf8_lossy(&out.stderr)
  );
  Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
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

async fn exec_argv_env_cwd_are_verbatim() -> Result<(), String> {
  let (c, id, _) = with_box("argv").await?;
  let hostile = "it's \"$(touch /pwned)\" `id`; $HOME";
  let mut r = req(&["printf", "%s|%s", hostile, "two words"]);
  r.working_dir = Some("/tmp".into());
  let out = c.exec(&id, r).await.or_fail("exec")?;
  check!(
    out.stdout == format!("{hostile}|two words") && out.exit_code == 0,
    "{out:?}"
  );
  let mut r = req(&[
    "sh",
    "-c",
    "printf '%s:%s' \"$A\" \"$(pwd)\"; echo oops >&2; exit 7",
  ]);
  r.env = Some([("A".to_string(), "x y".to_string())].into());
  r.working_dir = Some("/etc".into());
  let out = c.exec(&id, r).await.or_fail("exec")?;
  check!(
    out.stdout == "x y:/etc" && out.stderr == "oops\n" && out.exit_code == 7,
    "{out:?}"
  );
  check!(
    c.exec(&id, req(&["test", "-e", "/pwned"]))
      .await
      .or_fail("exec")?
      .exit_code
      == 1
  );
  c.dispose().await.or_fail("dispose")
}

async fn exec_after_stop_and_start() -> Result<(), String> {
  let (c, id, _) = with_box("restart").await?;
  c.exec(&id, req(&["sh", "-c", "echo kept > /root/f"]))
    .await
    .or_fail("write")?;
  c.stop_box(&id).await.or_fail("stop")?;
  // exec auto-starts the box with a fresh handle (the old ones are invalid after stop).
  let out = c
    .exec(&id, req(&["cat", "/root/f"]))
    .await
    .or_fail("exec after stop")?;
  check!(out.stdout == "kept\n", "{out:?}");
  c.dispose().await.or_fail("dispose")
}

async fn exec_timeout_really_stops_the_command() -> Result<(), String> {
  let (c, id, _) = with_box("timeout").await?;
  let mut r = req(&["sh", "-c", "sleep 2; touch /root/survived"]);
  r.timeout_seconds = Some(0.5);
  let started = Instant::now();
  let err = c.exec(&id, r).await.unwrap_err();
  check!(err.code() == "timeout", "{err}");
  check!(
    started.elapsed() < Duration::from_millis(1800),
    "{:?}",
    started.elapsed()
  );
  tokio::time::sleep(Duration::from_millis(2500)).await;
  let out = c
    .exec(&id, req(&["test", "-e", "/root/survived"]))
    .await
    .or_fail("exec")?;
  check!(out.exit_code == 1, "the command kept running after its timeout");
  c.dispose().await.or_fail("dispose")
}

async fn exec_tty_merges_output() -> Result<(), String> {
  let (c, id, _) = with_box("tty").await?;
  let mut r = req(&["sh", "-c", "test -t 1 && echo tty; echo err >&2"]);
  r.tty = Some(true);
  let out = c.exec(&id, r).await.or_fail("exec")?;
  check!(
    out.stdout.contains("tty") && out.stdout.contains("err") && out.stderr.is_empty(),
    "{out:?}"
  );
  c.dispose().await.or_fail("dispose")
}

async fn exec_stream_is_real_time_and_ordered() -> Result<(), String> {
  let (c, id, _) = with_box("stream").await?;
  let started = Instant::now();
  let script = "for i in 1 2 3; do echo out$i; sleep 0.3; done; echo done >&2; exit 5";
  let mut s = c
    .exec_stream(&id, req(&["sh", "-c", script]))
    .await
    .or_fail("open")?;
  let first = s.next().await.ok_or("no event")?.or_fail("event")?;
  let first_at = started.elapsed();
  check!(
    first == ExecEvent::Stdout(Bytes::from_static(b"out1\n")),
    "{first:?}"
  );
  check!(
    first_at < Duration::from_millis(700),
    "first chunk after {first_at:?}"
  );
  let mut stdout = b"out1\n".to_vec();
  let mut stderr = Vec::new();
  let mut exit = None;
  while let Some(e) = s.next().await {
    match e.or_fail("event")? {
      ExecEvent::Stdout(b) => stdout.extend_from_slice(&b),
      ExecEvent::Stderr(b) => stderr.extend_from_slice(&b),
      ExecEvent::Exit(code) => exit = Some(code),
    }
  }
  check!(
    stdout == b"out1\nout2\nout3\n" && stderr == b"done\n" && exit == Some(Some(5)),
    "{stdout:?} {stderr:?} {exit:?}"
  );
  check!(
    started.elapsed() >= Duration::from_millis(850),
    "the stream ended before the command did"
  );
  c.dispose().await.or_fail("dispose")
}

async fn exec_stream_merges_small_chunks() -> Result<(), String> {
  let (c, id, _) = with_box("merge").await?;
  let mut s = c
    .exec_stream(
      &id,
      req(&[
        "sh",
        "-c",
        "i=0; while [ $i -lt 2000 ]; do echo $i; i=$((i+1)); done",
      ]),
    )
    .await
    .or_fail("open")?;
  tokio::time::sleep(Duration::from_millis(500)).await; // let output pile up, as a slow reader would
  let (mut chunks, mut text) = (0, Vec::new());
  while let Some(e) = s.next().await {
    if let ExecEvent::Stdout(b) = e.or_fail("event")? {
      chunks += 1;
      text.extend_from_slice(&b);
    }
  }
  let expected: String = (0..2000).map(|i| format!("{i}\n")).collect();
  check!(text == expected.as_bytes(), "output differs");
  check!(
    chunks < 100,
    "{chunks} chunks for 2000 lines: small chunks were not merged"
  );
  c.dispose().await.or_fail("dispose")
}

/// What a terminal open for hours relies on: the log kept for replay does not grow without end.
async fn replayable_output_is_bounded_to_the_most_recent_bytes() -> Result<(), String> {
  let (c, id, _) = with_box("bounded").await?;
  // 12 MB of output while nobody reads, then a marker.
  let script = "head -c 12000000 /dev/zero | tr '\\0' x; echo; echo END";
  let e = c
    .exec_async(&id, req(&["sh", "-c", script]))
    .await
    .or_fail("exec_async")?;
  tokio::time::sleep(Duration::from_secs(3)).await;
  let events: Vec<ExecEvent> = c
    .get_exec_output(&id, &e.id)
    .await
    .or_fail("output")?
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<Result<_, _>>()
    .or_fail("events")?;
  let out: Vec<u8> = events
    .iter()
    .filter_map(|ev| match ev {
      ExecEvent::Stdout(b) => Some(b.to_vec()),
      _ => None,
    })
    .flatten()
    .collect();
  check!(out.len() <= 4 << 20, "the replay holds {} bytes", out.len());
  check!(
    out.len() >= 1 << 20,
    "the most recent output is kept: {} bytes",
    out.len()
  );
  check!(out.ends_with(b"\nEND\n"), "the newest bytes are the ones kept");
  check!(
    matches!(events.last(), Some(ExecEvent::Exit(Some(0)))),
    "{:?}",
    events.last()
  );
  Ok(())
}

/// A terminal's shell (a tty execution fed through stdin, as `startTerminal` runs it) that has
/// printed far more than the replay limit, still running: what a reader gets is the most recent
/// output only.
async fn a_terminal_shell_keeps_bounded_output_while_it_runs() -> Result<(), String> {
  let (c, id, _) = with_box("terminal-bounded").await?;
  let mut shell = req(&["sh"]);
  shell.tty = Some(true);
  let e = c.exec_async(&id, shell).await.or_fail("exec_async")?;
  let command = "head -c 12000000 /dev/zero | tr '\\0' x; echo; echo TERM-$((40+2))\n";
  c.send_exec_input(&id, &e.id, Bytes::from(command), false)
    .await
    .or_fail("input")?;
  tokio::time::sleep(Duration::from_secs(3)).await;
  let mut output = c.get_exec_output(&id, &e.id).await.or_fail("output")?;
  let mut seen: Vec<u8> = Vec::new();
  let read = tokio::time::timeout(Duration::from_secs(30), async {
    while let Some(event) = output.next().await {
      if let Ok(ExecEvent::Stdout(b)) = event {
        seen.extend_from_slice(&b);
        // The computed marker: the terminal's echo of the typed line does not contain it.
        if seen.windows(7).any(|w| w == b"TERM-42") {
          return;
        }
      }
    }
  })
  .await;
  let _ = c.signal_exec(&id, &e.id, 9).await;
  check!(read.is_ok(), "the marker never came ({} bytes)", seen.len());
  check!(
    seen.len() <= 4 << 20,
    "a reader of the running shell got {} bytes",
    seen.len()
  );
  check!(
    seen.len() >= 1 << 20,
    "the most recent output is kept: {} bytes",
    seen.len()
  );
  Ok(())
}

async fn exec_async_input_signal_resize() -> Result<(), String> {
  let (c, id, _) = with_box("async").await?;
  let e = c.exec_async(&id, req(&["cat"])).await.or_fail("exec_async")?;
  check!(
    e.status == "running" && e.box_id.as_deref() == Some(id.as_str()),
    "{e:?}"
  );
  c.send_exec_input(&id, &e.id, Bytes::from_static(b"line one\n"), false)
    .await
    .or_fail("input")?;
  c.send_exec_input(&id, &e.id, Bytes::from_static(b"line two\n"), true)
    .await
    .or_fail("input + close")?;
  let events: Vec<ExecEvent> = c
    .get_exec_output(&id, &e.id)
    .await
    .or_fail("output")?
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<Result<_, _>>()
    .or_fail("events")?;
  let out: Vec<u8> = events
    .iter()
    .flat_map(|e| {
      if let ExecEvent::Stdout(b) = e {
        b.to_vec()
      } else {
        vec![]
      }
    })
    .collect();
  check!(
    out == b"line one\nline two\n" && events.last() == Some(&ExecEvent::Exit(Some(0))),
    "{events:?}"
  );

  let sleeper = c
    .exec_async(&id, req(&["sleep", "60"]))
    .await
    .or_fail("exec_async")?;
  c.signal_exec(&id, &sleeper.id, 15).await.or_fail("signal")?;
  let last = c
    .get_exec_output(&id, &sleeper.id)
    .await
    .or_fail("output")?
    .collect::<Vec<_>>()
    .await
    .pop();
  check!(
    matches!(last, Some(Ok(ExecEvent::Exit(Some(code)))) if code == -15 || code == 143),
    "{last:?}"
  );

  let mut tty = req(&["sh", "-c", "read x; stty size"]);
  tty.tty = Some(true);
  let t = c.exec_async(&id, tty).await.or_fail("exec_async tty")?;
  c.resize_exec(&id, &t.id, 100, 40).await.or_fail("resize")?;
  c.send_exec_input(&id, &t.id, Bytes::from_static(b"\n"), false)
    .await
    .or_fail("input")?;
  let out: Vec<u8> = c
    .get_exec_output(&id, &t.id)
    .await
    .or_fail("output")?
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .flat_map(|e| {
      if let Ok(ExecEvent::Stdout(b)) = e {
        b.to_vec()
      } else {
        vec![]
      }
    })
    .collect();
  check!(
    String::from_utf8_lossy(&out).contains("40 100"),
    "{:?}",
    String::from_utf8_lossy(&out)
  );

  check!(
    c.get_exec_output(&id, "no-such-exec")
      .await
      .or_fail("open")?
      .next()
      .await
      .unwrap()
      .unwrap_err()
      .code()
      == "not_found"
  );
  check!(c.signal_exec(&id, "no-such-exec", 9).await.unwrap_err().code() == "not_found");
  c.dispose().await.or_fail("dispose")
}

async fn hundred_concurrent_execs() -> Result<(), String> {
  let (c, id, _) = with_box("many").await?;
  let started = Instant::now();
  let runs = (0..100).map(|i| {
    let (c, id) = (c.clone(), id.clone());
    async move {
      c.exec(&id, req(&["sh", "-c", &format!("echo {i}; echo e{i} >&2")]))
        .await
    }
  });
  let outs = futures_util::future::join_all(runs).await;
  for (i, o) in outs.into_iter().enumerate() {
    let o = o.or_fail("exec")?;
    check!(
      o.stdout == format!("{i}\n") && o.stderr == format!("e{i}\n") && o.exit_code == 0,
      "{o:?}"
    );
  }
  println!("    100 concurrent execs: {:?}", started.elapsed());
  c.dispose().await.or_fail("dispose")
}

async fn upload_download_hostile_names() -> Result<(), String> {
  let (c, id, _) = with_box("files").await?;
  let name = "it's \"$(touch pwned)\" `x`; rm -rf * .txt";
  let tar = make_tar(&[(&format!("sub dir/{name}"), b"payload"), ("plain.txt", b"p")]);
  let dest = "/root/dest 'q' $(x)";
  c.upload_files(&id, dest, bytes_stream(vec![tar]))
    .await
    .or_fail("upload")?;
  let out = c
    .exec(&id, req(&["cat", &format!("{dest}/sub dir/{name}")]))
    .await
    .or_fail("cat")?;
  check!(out.stdout == "payload", "{out:?}");
  let data = collect(c.download_files(&id, dest).await.or_fail("download")?).await?;
  let mut files = read_tar(&data);
  files.sort();
  let top = "dest 'q' $(x)";
  check!(
    files
      == vec![
        (format!("{top}/plain.txt"), b"p".to_vec()),
        (format!("{top}/sub dir/{name}"), b"payload".to_vec())
      ],
    "{files:?}"
  );
  check!(
    c.exec(&id, req(&["sh", "-c", "ls / /root | grep -c pwned"]))
      .await
      .or_fail("ls")?
      .stdout
      .trim()
      == "0"
  );
  let err = c
    .download_files(&id, "/root/does-not-exist")
    .await
    .err()
    .ok_or("download of a missing path succeeded")?;
  check!(err.code() == "file_not_found", "{err}");
  c.dispose().await.or_fail("dispose")
}

async fn upload_gzip_into_new_directory() -> Result<(), String> {
  let (c, id, _) = with_box("gzip").await?;
  let tar = make_tar(&[("test.txt", b"hello")]);
  let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
  std::io::Write::write_all(&mut gz, &tar).unwrap();
  c.upload_files(&id, "/root/new/nested", bytes_stream(vec![gz.finish().unwrap()]))
    .await
    .or_fail("upload")?;
  let out = c
    .exec(&id, req(&["cat", "/root/new/nested/test.txt"]))
    .await
    .or_fail("cat")?;
  check!(out.stdout == "hello", "{out:?}");
  c.dispose().await.or_fail("dispose")
}

async fn hundred_mb_round_trip() -> Result<(), String> {
  let (c, id, _) = with_box("big").await?;
  const SIZE: usize = 100 * 1024 * 1024;
  let mut data = vec![0u8; SIZE];
  let mut x: u64 = 0x9E3779B97F4A7C15;
  for chunk in data.chunks_mut(8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
  }
  let tar = make_tar(&[("big.bin", &data)]);
  let chunks: Vec<Vec<u8>> = tar.chunks(1 << 20).map(|c| c.to_vec()).collect();
  drop(tar);
  let started = Instant::now();
  c.upload_files(&id, "/root/big", bytes_stream(chunks))
    .await
    .or_fail("upload")?;
  let up = started.elapsed();
  let size = c
    .exec(&id, req(&["stat", "-c", "%s", "/root/big/big.bin"]))
    .await
    .or_fail("stat")?;
  check!(size.stdout.trim() == SIZE.to_string(), "{size:?}");
  let started = Instant::now();
  let back = collect(
    c.download_files(&id, "/root/big/big.bin")
      .await
      .or_fail("download")?,
  )
  .await?;
  let down = started.elapsed();
  let files = read_tar(&back);
  check!(
    files.len() == 1 && files[0].0 == "big.bin",
    "{:?}",
    files.iter().map(|f| &f.0).collect::<Vec<_>>()
  );
  check!(files[0].1 == data, "the 100 MB file came back different");
  println!("    100 MB upload {up:?}, download {down:?}");
  c.dispose().await.or_fail("dispose")
}

/// /tmp is a tmpfs in the guest, beneath which copy_in lands unseen (docs/dialects.md, "tmpfs paths"); the
/// sandbox layer routes such uploads through `tar -x` fed on stdin, which must be byte-exact.
async fn tmpfs_destination_via_exec_stdin() -> Result<(), String> {
  let (c, id, _) = with_box("tmpfs").await?;
  let binary: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
  let tar = make_tar(&[("bin.dat", &binary), ("it's $(x).txt", b"ok")]);
  let dest = "/tmp/up load";
  check!(
    c.exec(&id, req(&["mkdir", "-p", dest]))
      .await
      .or_fail("mkdir")?
      .exit_code
      == 0
  );
  let e = c
    .exec_async(&id, req(&["tar", "-x", "-f", "-", "-C", dest]))
    .await
    .or_fail("tar -x")?;
  for chunk in tar.chunks(64 * 1024) {
    c.send_exec_input(&id, &e.id, Bytes::copy_from_slice(chunk), false)
      .await
      .or_fail("input")?;
  }
  c.send_exec_input(&id, &e.id, Bytes::new(), true)
    .await
    .or_fail("close stdin")?;
  let last = c
    .get_exec_output(&id, &e.id)
    .await
    .or_fail("output")?
    .collect::<Vec<_>>()
    .await
    .pop();
  check!(matches!(last, Some(Ok(ExecEvent::Exit(Some(0))))), "{last:?}");
  let sum = c
    .exec(
      &id,
      req(&[
        "cksum",
        &format!("{dest}/bin.dat"),
        &format!("{dest}/it's $(x).txt"),
      ]),
    )
    .await
    .or_fail("cksum")?;
  let size_field = sum
    .stdout
    .lines()
    .next()
    .unwrap_or("")
    .split(' ')
    .nth(1)
    .unwrap_or("");
  check!(
    size_field == "300000" && sum.stdout.lines().count() == 2,
    "{sum:?}"
  );
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
