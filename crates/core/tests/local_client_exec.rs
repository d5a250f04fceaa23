//! Executions in local mode: argv/env/cwd passed verbatim, exec after stop and start, timeouts
//! that really stop the command, tty output, real-time ordered streams, bounded replay logs,
//! stdin/signal/resize and a hundred concurrent executions.
//!
//! The local client against the SDK simulator (python/testbed, whose boxes run commands under
//! bubblewrap), through the embedded interpreter of python/testbed/.venv; helpers shared by the
//! `local_client_*` suites live in `local_client_common/`.
//! Set BOXLITE_TEST_SDK_PYTHON to run the same suite against another interpreter (the real SDK,
//! where VMs boot) and BOXLITE_TEST_ROOTFS to create boxes from a local OCI layout.
//! Run: cargo test -p boxlite-core --features local --test local_client_exec

mod local_client_common;
mod local_common;

use std::time::{Duration, Instant};

use boxlite_core::client::ExecEvent;
use bytes::Bytes;
use futures_util::StreamExt;
use local_client_common::*;
use local_common::*;

fn main() {
  require_python();
  run(&[
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
  ]);
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
  let events = output_events(&c, &id, &e.id).await?;
  let out = stdout_of(&events);
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
  let events = output_events(&c, &id, &e.id).await?;
  let out = stdout_of(&events);
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
