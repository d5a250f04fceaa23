//! Remote mode at the core level (no napi) against the test bed server in each dialect: per-call
//! overhead of a metadata call next to a bare loopback HTTP round trip, exec round trip,
//! streaming time to first byte, upload/download throughput and 100-way concurrency. Prints a
//! table. Run: cargo bench -p boxlite-core --bench rest_bench
//! (`BOXLITE_BENCH_DIALECTS=sse,current,boxrun`, `BOXLITE_BENCH_TRANSFER_MB=64`).

#[path = "../tests/rest_common/mod.rs"]
mod rest_common;

use std::time::{Duration, Instant};

use boxlite_core::client::BoxClient;
use futures_util::StreamExt;
use rest_common::*;
use serde_json::json;

const SAMPLES: usize = 200;
const EXEC_SAMPLES: usize = 50;

fn stats(mut samples: Vec<Duration>) -> (Duration, Duration) {
  samples.sort();
  let p = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
  (p(0.5), p(0.99))
}

fn row(dialect: &str, name: &str, value: String, note: &str) {
  println!("| {dialect:<8} | {name:<40} | {value:>24} | {note} |");
}

fn ms(d: Duration) -> String {
  format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
  let rt = tokio::runtime::Builder::new_multi_thread()
    .worker_threads(2)
    .enable_all()
    .build()
    .unwrap();
  rt.block_on(bench());
}

async fn bench() {
  let dialects = std::env::var("BOXLITE_BENCH_DIALECTS").unwrap_or_else(|_| "sse,current,boxrun".into());
  let mib: u64 = std::env::var("BOXLITE_BENCH_TRANSFER_MB")
    .ok()
    .and_then(|v| v.parse().ok())
    .unwrap_or(64);
  println!("| dialect  | {:<40} | {:>24} | note |", "measure", "value");
  println!("| -------- | {} | {} | ---- |", "-".repeat(40), "-".repeat(24));
  for dialect in dialects.split(',').map(str::trim) {
    let args: Vec<&str> = match dialect {
      "sse" => vec![
        "--dialect",
        "sse",
        "--auth",
        "client-credentials",
        "--max-upload-bytes",
        "0",
      ],
      "current" => vec![
        "--dialect",
        "current",
        "--auth",
        "token",
        "--max-upload-bytes",
        "0",
      ],
      _ => vec!["--dialect", "boxrun"],
    };
    let tb = Testbed::start(&args).await;
    let client = tb.client(json!({}));
    let id = create_running_box(&client).await;

    // Baseline: the same server's cheapest route over a plain reqwest client (keep-alive).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let plain = reqwest::Client::new();
    let info = format!("{}/__testbed/info", tb.url);
    let mut base = Vec::new();
    for _ in 0..SAMPLES {
      let t = Instant::now();
      plain.get(&info).send().await.unwrap().bytes().await.unwrap();
      base.push(t.elapsed());
    }
    let (base50, base99) = stats(base);
    row(
      dialect,
      "loopback HTTP round trip (plain reqwest)",
      format!("{} / {}", ms(base50), ms(base99)),
      "p50 / p99",
    );

    client.get_box(&id).await.unwrap();
    let mut calls = Vec::new();
    for _ in 0..SAMPLES {
      let t = Instant::now();
      client.get_box(&id).await.unwrap();
      calls.push(t.elapsed());
    }
    let (call50, call99) = stats(calls);
    row(
      dialect,
      "getBox",
      format!("{} / {}", ms(call50), ms(call99)),
      "p50 / p99",
    );
    let overhead = call50.saturating_sub(base50);
    row(
      dialect,
      "getBox minus loopback round trip",
      ms(overhead),
      "p50 difference (server work + client)",
    );

    let mut execs = Vec::new();
    for _ in 0..EXEC_SAMPLES {
      let t = Instant::now();
      client.exec(&id, argv(&["true"])).await.unwrap();
      execs.push(t.elapsed());
    }
    let (exec50, exec99) = stats(execs);
    row(
      dialect,
      "exec round trip (`true`)",
      format!("{} / {}", ms(exec50), ms(exec99)),
      "p50 / p99",
    );

    let mut ttfb = Vec::new();
    for _ in 0..EXEC_SAMPLES {
      let t = Instant::now();
      let mut events = client.exec_stream(&id, argv(&["echo", "x"])).await.unwrap();
      events.next().await.unwrap().unwrap();
      ttfb.push(t.elapsed());
      while events.next().await.is_some() {}
    }
    let (ttfb50, ttfb99) = stats(ttfb);
    row(
      dialect,
      "execStream time to first byte",
      format!("{} / {}", ms(ttfb50), ms(ttfb99)),
      "p50 / p99",
    );

    client
      .exec(&id, argv(&["mkdir", "-p", "/root/bench"]))
      .await
      .unwrap();
    let size = mib * 1024 * 1024;
    let (tar, _) = generated_tar("blob", size);
    let t = Instant::now();
    client.upload_files(&id, "/root/bench/", tar).await.unwrap();
    let up = t.elapsed();
    row(
      dialect,
      &format!("upload {mib} MiB"),
      format!("{:.1} MiB/s", mib as f64 / up.as_secs_f64()),
      "uploadFiles, streamed",
    );
    let t = Instant::now();
    let mut stream = client.download_files(&id, "/root/bench").await.unwrap();
    let mut bytes = 0u64;
    while let Some(chunk) = stream.next().await {
      bytes += chunk.unwrap().len() as u64;
    }
    let down = t.elapsed();
    row(
      dialect,
      &format!("download {mib} MiB"),
      format!("{:.1} MiB/s", bytes as f64 / 1048576.0 / down.as_secs_f64()),
      "downloadFiles, streamed",
    );

    let t = Instant::now();
    let all = futures_util::future::join_all((0..100).map(|_| client.get_box(&id))).await;
    let took = t.elapsed();
    assert!(all.iter().all(|r| r.is_ok()));
    row(
      dialect,
      "100 concurrent getBox",
      format!("{} total", ms(took)),
      &format!("{:.0} calls/s", 100.0 / took.as_secs_f64()),
    );
    let t = Instant::now();
    let all = futures_util::future::join_all((0..100).map(|_| client.exec(&id, argv(&["true"])))).await;
    let took = t.elapsed();
    let failed = all.iter().filter(|r| r.is_err()).count();
    row(
      dialect,
      "100 concurrent exec",
      format!("{} total", ms(took)),
      &format!("{:.0} execs/s, {failed} failed", 100.0 / took.as_secs_f64()),
    );
    client.delete_box(&id, true).await.unwrap();
  }
}
