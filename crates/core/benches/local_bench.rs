//! Local mode at the core level (no napi): the embedded interpreter and the whole client over
//! the SDK simulator (python/testbed/.venv, or BOXLITE_TEST_SDK_PYTHON). Prints a table.
//! Run: cargo bench -p boxlite-core --features local --bench local_bench

#[path = "../tests/local_common/mod.rs"]
mod local_common;

use std::time::{Duration, Instant};

use boxlite_core::client::{CreateBoxParams, ExecRequest};
use boxlite_core::local::testing;
use boxlite_core::LocalConfig;
use futures_util::StreamExt;
use local_common::*;
use serde_json::json;

fn python() -> String {
  std::env::var("BOXLITE_TEST_SDK_PYTHON").unwrap_or_else(|_| {
    repo_root()
      .join("python/testbed/.venv/bin/python")
      .to_string_lossy()
      .into_owned()
  })
}

fn req(cmd: &[&str]) -> ExecRequest {
  ExecRequest {
    cmd: cmd.iter().map(|s| s.to_string()).collect(),
    ..Default::default()
  }
}

fn stats(mut samples: Vec<Duration>) -> (Duration, Duration) {
  samples.sort();
  let p = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
  (p(0.5), p(0.99))
}

fn row(name: &str, value: String, note: &str) {
  println!("| {name:<44} | {value:>22} | {note} |");
}

fn main() {
  let rt = tokio::runtime::Builder::new_current_thread()
    .enable_all()
    .build()
    .unwrap();
  rt.block_on(bench());
}

async fn bench() {
  let py = python();
  let started = Instant::now();
  testing::start(&py).await.expect("start the engine");
  let boot = started.elapsed();
  let home = temp_home("bench");
  let client = boxlite_core::local::connect(&LocalConfig {
    python_path: py.clone(),
    boxlite_home: Some(home.clone()),
  })
  .unwrap();

  println!("\n| measurement | result | notes |\n| --- | ---: | --- |");
  row(
    "interpreter start (probe + init + loop)",
    format!("{:.1} ms", boot.as_secs_f64() * 1e3),
    "once per process",
  );

  for _ in 0..200 {
    testing::call(&py, "echo", json!({"value": 1}), None)
      .await
      .unwrap();
  }
  let mut samples = Vec::new();
  for _ in 0..2000 {
    let t = Instant::now();
    testing::call(&py, "echo", json!({"value": 1}), None)
      .await
      .unwrap();
    samples.push(t.elapsed());
  }
  let (p50, p99) = stats(samples);
  row(
    "in-process call round trip (echo job)",
    format!("{} / {} µs", p50.as_micros(), p99.as_micros()),
    "p50 / p99, 2000 sequential",
  );

  let t = Instant::now();
  let calls = (0..2000).map(|i| testing::call(&py, "echo", json!({"value": i}), None));
  futures_util::future::join_all(calls).await;
  row(
    "in-process call throughput",
    format!("{:.0} calls/s", 2000.0 / t.elapsed().as_secs_f64()),
    "2000 concurrent",
  );

  let b = client.create_box(CreateBoxParams::default()).await.unwrap();
  client.start_box(&b.id).await.unwrap();
  let mut samples = Vec::new();
  for _ in 0..200 {
    let t = Instant::now();
    client.get_box(&b.id).await.unwrap();
    samples.push(t.elapsed());
  }
  let (p50, p99) = stats(samples);
  row(
    "getBox round trip (SDK get_info)",
    format!("{} / {} µs", p50.as_micros(), p99.as_micros()),
    "p50 / p99",
  );

  for _ in 0..5 {
    client.exec(&b.id, req(&["true"])).await.unwrap();
  }
  let mut samples = Vec::new();
  for _ in 0..50 {
    let t = Instant::now();
    client.exec(&b.id, req(&["true"])).await.unwrap();
    samples.push(t.elapsed());
  }
  let (p50, p99) = stats(samples);
  row(
    "exec round trip (`true`)",
    format!(
      "{:.2} / {:.2} ms",
      p50.as_secs_f64() * 1e3,
      p99.as_secs_f64() * 1e3
    ),
    "p50 / p99 of 50",
  );

  let mut samples = Vec::new();
  for _ in 0..20 {
    let t = Instant::now();
    let mut s = client
      .exec_stream(&b.id, req(&["sh", "-c", "echo first; sleep 0.2"]))
      .await
      .unwrap();
    s.next().await.unwrap().unwrap();
    samples.push(t.elapsed());
    while s.next().await.is_some() {}
  }
  let (p50, p99) = stats(samples);
  row(
    "execStream time to first byte",
    format!(
      "{:.2} / {:.2} ms",
      p50.as_secs_f64() * 1e3,
      p99.as_secs_f64() * 1e3
    ),
    "p50 / p99 of 20; command runs 200 ms",
  );

  const SIZE: usize = 100 * 1024 * 1024;
  let data = vec![0x5au8; SIZE];
  let tar = make_tar(&[("big.bin", &data)]);
  let chunks: Vec<Vec<u8>> = tar.chunks(1 << 20).map(|c| c.to_vec()).collect();
  drop(tar);
  let t = Instant::now();
  client
    .upload_files(&b.id, "/root/big", bytes_stream(chunks))
    .await
    .unwrap();
  let up = t.elapsed();
  row(
    "upload 100 MB (tar → copy_in)",
    format!("{:.0} MB/s", 100.0 / up.as_secs_f64()),
    &format!("{:.2} s", up.as_secs_f64()),
  );
  let t = Instant::now();
  let back = collect(client.download_files(&b.id, "/root/big/big.bin").await.unwrap())
    .await
    .unwrap();
  let down = t.elapsed();
  assert!(back.len() > SIZE);
  row(
    "download 100 MB (copy_out → tar)",
    format!("{:.0} MB/s", 100.0 / down.as_secs_f64()),
    &format!("{:.2} s", down.as_secs_f64()),
  );

  let t = Instant::now();
  let runs = (0..100).map(|i| {
    let (c, id) = (client.clone(), b.id.clone());
    async move { c.exec(&id, req(&["echo", &i.to_string()])).await.unwrap() }
  });
  futures_util::future::join_all(runs).await;
  row(
    "100 concurrent execs (wall)",
    format!("{:.0} ms", t.elapsed().as_secs_f64() * 1e3),
    "all complete",
  );

  client.delete_box(&b.id, true).await.unwrap();
  client.dispose().await.unwrap();
  let _ = std::fs::remove_dir_all(&home);
  println!();
  std::process::exit(0);
}
