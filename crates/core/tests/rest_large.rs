//! Large transfers stream in both directions with bounded memory: a generated archive goes up
//! (never held whole) and comes back down (never collected), checked by POSIX `cksum` on both
//! sides. 64 MiB by default; `BOXLITE_TEST_TRANSFER_MB=1000` runs the 1 GB version (scripts/test.sh does).

mod rest_common;

use std::time::Instant;

use boxlite_core::client::BoxClient;
use boxlite_core::files::Cksum;
use futures_util::StreamExt;
use rest_common::*;
use serde_json::json;

/// Walks a tar stream, feeding the contents of the entry named `*/<name>` to `sum`.
struct TarWalker {
  header: Vec<u8>,
  remaining: u64,
  padding: u64,
  wanted: bool,
}

impl TarWalker {
  fn feed(&mut self, mut chunk: &[u8], name: &str, sum: &mut Cksum) {
    while !chunk.is_empty() {
      if self.remaining > 0 {
        let take = (self.remaining as usize).min(chunk.len());
        if self.wanted {
          sum.update(&chunk[..take]);
        }
        self.remaining -= take as u64;
        chunk = &chunk[take..];
      } else if self.padding > 0 {
        let take = (self.padding as usize).min(chunk.len());
        self.padding -= take as u64;
        chunk = &chunk[take..];
      } else {
        let take = (512 - self.header.len()).min(chunk.len());
        self.header.extend_from_slice(&chunk[..take]);
        chunk = &chunk[take..];
        if self.header.len() == 512 {
          let h = std::mem::take(&mut self.header);
          if h.iter().all(|&b| b == 0) {
            continue;
          }
          let end = h[..100].iter().position(|&b| b == 0).unwrap_or(100);
          let entry = String::from_utf8_lossy(&h[..end]).to_string();
          let size_text = String::from_utf8_lossy(&h[124..136])
            .trim_matches(|c: char| c == '\0' || c == ' ')
            .to_string();
          let size = u64::from_str_radix(&size_text, 8).unwrap_or(0);
          self.wanted =
            (h[156] == b'0' || h[156] == 0) && (entry == name || entry.ends_with(&format!("/{name}")));
          self.remaining = size;
          self.padding = (512 - size % 512) % 512;
        }
      }
    }
  }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_archive_streams_up_and_down_with_bounded_memory() {
  // A through the server's tar endpoints, B through an exec's stdin over the attach socket.
  for dialect in ["sse", "current"] {
    transfer(dialect).await;
  }
}

async fn transfer(dialect: &str) {
  let tb = Testbed::start(&["--dialect", dialect, "--auth", "none", "--max-upload-bytes", "0"]).await;
  let mib: u64 = std::env::var("BOXLITE_TEST_TRANSFER_MB")
    .ok()
    .and_then(|v| v.parse().ok())
    .unwrap_or(64);
  let size = mib * 1024 * 1024;
  let client = tb.client(json!({}));
  let id = create_running_box(&client).await;
  client
    .exec(&id, argv(&["mkdir", "-p", "/root/big"]))
    .await
    .unwrap();
  let rss_before = rss_kib().unwrap_or(0);
  let mut rss_peak = rss_before;

  let (tar, _) = generated_tar("blob", size);
  let mut expected = Cksum::default();
  for i in 0..size.div_ceil(1024 * 1024) {
    expected.update(&pattern_chunk(i, (1024 * 1024).min(size - i * 1024 * 1024)));
  }
  let expected = expected.finish();
  let begun = Instant::now();
  client.upload_files(&id, "/root/big/", tar).await.expect("upload");
  let up = begun.elapsed();
  rss_peak = rss_peak.max(rss_kib().unwrap_or(0));
  let out = client
    .exec(&id, argv(&["cksum", "/root/big/blob"]))
    .await
    .unwrap();
  let mut fields = out.stdout.split_whitespace();
  let in_box = (
    fields.next().unwrap().parse::<u32>().unwrap(),
    fields.next().unwrap().parse::<u64>().unwrap(),
  );
  assert_eq!(in_box, expected, "the box holds exactly the bytes sent");

  let begun = Instant::now();
  let mut stream = client.download_files(&id, "/root/big").await.expect("download");
  let mut walker = TarWalker {
    header: Vec::new(),
    remaining: 0,
    padding: 0,
    wanted: false,
  };
  let mut got = Cksum::default();
  let mut chunks = 0u64;
  while let Some(chunk) = stream.next().await {
    walker.feed(&chunk.expect("chunk"), "blob", &mut got);
    chunks += 1;
    if chunks & 63 == 0 {
      rss_peak = rss_peak.max(rss_kib().unwrap_or(0));
    }
  }
  let down = begun.elapsed();
  assert_eq!(
    got.finish(),
    expected,
    "the download carries exactly the bytes in the box"
  );
  let growth_mib = rss_peak.saturating_sub(rss_before) / 1024;
  eprintln!(
    "{dialect}: {mib} MiB: upload {up:?}, download {down:?} ({chunks} chunks), RSS growth {growth_mib} MiB"
  );
  assert!(
    growth_mib < 48,
    "memory grew by {growth_mib} MiB for a {mib} MiB transfer"
  );
}
