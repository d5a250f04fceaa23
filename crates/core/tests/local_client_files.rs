//! File transfer in local mode: hostile names, gzip uploads into a new directory, a 100 MB round
//! trip and tmpfs destinations reached through an exec's stdin.
//!
//! The local client against the SDK simulator (python/testbed, whose boxes run commands under
//! bubblewrap), through the embedded interpreter of python/testbed/.venv; helpers shared by the
//! `local_client_*` suites live in `local_client_common/`.
//! Set BOXLITE_TEST_SDK_PYTHON to run the same suite against another interpreter (the real SDK,
//! where VMs boot) and BOXLITE_TEST_ROOTFS to create boxes from a local OCI layout.
//! Run: cargo test -p boxlite-core --features local --test local_client_files

mod local_client_common;
mod local_common;

use std::time::Instant;

use boxlite_core::client::ExecEvent;
use bytes::Bytes;
use futures_util::StreamExt;
use local_client_common::*;
use local_common::*;

fn main() {
  require_python();
  run(&[
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
  ]);
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
