//! Reading a file in the box through exec output, for the paths no file endpoint reaches (tmpfs
//! mounts): piece by piece, each piece checked against POSIX `cksum` computed in the box, and
//! read again, in a smaller piece, when it arrives damaged. Exec output is not lossless on
//! every server: `boxlite serve` 0.11 silently drops output for a reader that falls behind a
//! fast command (see `docs/dialects.md`), so a read that is not checked could return a file
//! with holes in it.

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;

use super::{command_failure, script};
use crate::client::{BoxClient, ByteStream};
use crate::error::{Error, Result};

/// `dd` block size; piece sizes and offsets are whole blocks.
const BLOCK: u64 = 64 * 1024;
/// A piece while they arrive whole (8 MiB), and the smallest one after failures (256 KiB).
const MAX_PIECE_BLOCKS: u64 = 128;
const MIN_PIECE_BLOCKS: u64 = 4;
/// Damaged arrivals of one piece before the read fails.
const ATTEMPTS: u32 = 6;

/// Prints the piece's `cksum` (CRC and length) on stderr and the piece in base64 on stdout; the
/// checksum is computed alongside the output (it takes a third of the time).
const READ_PIECE: &str = r#"test -f "$1" || { echo "$1: No such file or directory" >&2; exit 1; }
dd if="$1" bs=65536 skip="$2" count="$3" 2>/dev/null | cksum >&2 &
dd if="$1" bs=65536 skip="$2" count="$3" 2>/dev/null | base64
wait $!"#;

/// POSIX `cksum`, fed in pieces: CRC-32 (polynomial 0x04C11DB7, not reflected) over the data,
/// then over its length in as few octets as needed (least significant first), complemented.
pub struct Cksum {
  digest: crc::Digest<'static, u32>,
  len: u64,
}

const CKSUM: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_CKSUM);

impl Default for Cksum {
  fn default() -> Self {
    Cksum {
      digest: CKSUM.digest(),
      len: 0,
    }
  }
}

impl Cksum {
  pub fn update(&mut self, data: &[u8]) {
    self.digest.update(data);
    self.len += data.len() as u64;
  }

  /// `(crc, length)`, as `cksum` prints them.
  pub fn finish(mut self) -> (u32, u64) {
    let mut length = self.len;
    while length > 0 {
      self.digest.update(&[(length & 0xff) as u8]);
      length >>= 8;
    }
    (self.digest.finalize(), self.len)
  }
}

/// The POSIX `cksum` CRC of `data`.
pub fn cksum(data: &[u8]) -> u32 {
  let mut sum = Cksum::default();
  sum.update(data);
  sum.finish().0
}

/// What `cksum` printed: `(crc, length)` from the last line of two numbers.
fn parse_cksum(stderr: &str) -> Option<(u32, u64)> {
  stderr.lines().rev().find_map(|line| {
    let mut words = line.split_whitespace();
    let crc = words.next()?.parse().ok()?;
    let length = words.next()?.parse().ok()?;
    words.next().is_none().then_some((crc, length))
  })
}

/// One piece as it arrived: its bytes when they match the box's `cksum`, or why not.
fn check_piece(stdout: &str, stderr: &str) -> std::result::Result<Bytes, String> {
  let (crc, length) = parse_cksum(stderr).ok_or("no checksum line")?;
  let text: Vec<u8> = stdout.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
  let data = base64::engine::general_purpose::STANDARD
    .decode(&text)
    .map_err(|e| format!("damaged base64 ({e})"))?;
  if data.len() as u64 != length {
    return Err(format!("{} of {length} bytes arrived", data.len()));
  }
  if cksum(&data) != crc {
    return Err("checksum mismatch".into());
  }
  Ok(Bytes::from(data))
}

struct Reader {
  client: Arc<dyn BoxClient>,
  id: String,
  path: String,
  /// Where the next piece starts, in blocks.
  offset: u64,
  piece: u64,
  done: bool,
}

impl Reader {
  /// The next piece (empty at the end), read again in smaller pieces while it arrives damaged.
  async fn next_piece(&mut self) -> Result<Bytes> {
    let mut failures = Vec::new();
    loop {
      let request = script(
        "sandbank-read",
        READ_PIECE,
        &[&self.path, &self.offset.to_string(), &self.piece.to_string()],
      );
      let output = self.client.exec(&self.id, request).await?;
      if output.exit_code != 0 {
        return Err(command_failure(
          &self.path,
          Some(output.exit_code),
          &output.stderr,
        ));
      }
      match check_piece(&output.stdout, &output.stderr) {
        Ok(data) => {
          self.done = (data.len() as u64) < self.piece * BLOCK;
          self.offset += self.piece;
          // Grow back after a success, as far as pieces keep arriving whole.
          self.piece = (self.piece * 2).min(MAX_PIECE_BLOCKS);
          return Ok(data);
        }
        Err(why) => {
          failures.push(why);
          if failures.len() as u32 >= ATTEMPTS {
            return Err(Error::Transport {
              method: "exec".into(),
              path: self.path.clone(),
              message: format!(
                "reading '{}' through command output: the piece at byte {} arrived damaged {} times ({}); \
                 the server drops output (boxlite serve does when its reader falls behind), try again",
                self.path,
                self.offset * BLOCK,
                failures.len(),
                failures.join("; ")
              ),
            });
          }
          self.piece = (self.piece / 2).max(MIN_PIECE_BLOCKS);
        }
      }
    }
  }
}

/// The bytes of the regular file `path` in box `id`, read through exec output and checked.
pub fn read(client: Arc<dyn BoxClient>, id: &str, path: &str) -> ByteStream {
  let reader = Reader {
    client,
    id: id.to_string(),
    path: path.to_string(),
    offset: 0,
    piece: MAX_PIECE_BLOCKS,
    done: false,
  };
  Box::pin(futures_util::stream::unfold(reader, |mut reader| async move {
    if reader.done {
      return None;
    }
    match reader.next_piece().await {
      Ok(data) if data.is_empty() => None,
      Ok(data) => Some((Ok(data), reader)),
      Err(error) => {
        reader.done = true;
        Some((Err(error), reader))
      }
    }
  }))
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn cksum_matches_posix_cksum() {
    // Values printed by `printf … | cksum` (GNU coreutils).
    assert_eq!(cksum(b""), 4_294_967_295);
    assert_eq!(cksum(b"hello\n"), 3_015_617_425);
    assert_eq!(
      cksum(b"The quick brown fox jumps over the lazy dog"),
      2_074_844_392
    );
  }

  #[test]
  fn a_piece_is_accepted_only_when_length_and_checksum_match() {
    let data = b"hello\n";
    let text = base64::engine::general_purpose::STANDARD.encode(data);
    let line = format!("{} {}\n", cksum(data), data.len());
    assert_eq!(check_piece(&text, &line).unwrap(), Bytes::from_static(data));
    // A lost chunk of output: fewer bytes than the box counted.
    let short = base64::engine::general_purpose::STANDARD.encode(&data[..3]);
    assert!(check_piece(&short, &line).unwrap_err().contains("3 of 6 bytes"));
    // Same length, other bytes.
    let other = base64::engine::general_purpose::STANDARD.encode(b"HELLO\n");
    assert_eq!(check_piece(&other, &line).unwrap_err(), "checksum mismatch");
    // Misaligned base64 (a lost piece of text) and a missing checksum line.
    assert!(check_piece(&text[1..], &line)
      .unwrap_err()
      .starts_with("damaged base64"));
    assert_eq!(check_piece(&text, "").unwrap_err(), "no checksum line");
  }

  #[test]
  fn the_checksum_line_is_found_after_other_stderr_lines() {
    assert_eq!(parse_cksum("warning: x\n123 456\n"), Some((123, 456)));
    assert_eq!(parse_cksum("123 456 extra\n"), None);
  }
}
