//! The gzip writer of `contents_archive`: fast deflate, with pieces that do not compress stored
//! as they are, in one ordinary gzip member.

use std::io::{self, Write};

/// Input bytes compressed (or stored) as one unit by `GzipWriter`.
const GZIP_PIECE: usize = 64 * 1024;
/// After a piece that deflate shrank by less than 10 %, this many pieces are stored as they are.
const GZIP_STORE_RUN: u32 = 16;

/// A gzip writer for data of unknown kind (a directory may hold text or media): deflate at the
/// fastest level, but pieces that do not compress are stored instead of compressed, which
/// costs a copy where deflate would burn CPU for nothing (deflate at level 1 gains nothing on
/// random or already-compressed bytes and is ~20× slower than a copy). Every piece ends with a
/// full flush, so the deflate stream is byte-aligned and refers to nothing before it; stored
/// blocks can then go in between (RFC 1951 §3.2.4) and the result is one ordinary gzip member.
pub(super) struct GzipWriter<W: Write> {
  out: W,
  deflate: flate2::Compress,
  crc: flate2::Crc,
  piece: Vec<u8>,
  scratch: Vec<u8>,
  /// Pieces still to store before deflate is tried again.
  store: u32,
}

impl<W: Write> GzipWriter<W> {
  pub(super) fn new(out: W) -> Self {
    let mut scratch = Vec::with_capacity(2 * GZIP_PIECE);
    // The header (no name, no time, OS unknown) goes out with the first piece.
    scratch.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
    GzipWriter {
      out,
      deflate: flate2::Compress::new(flate2::Compression::fast(), false),
      crc: flate2::Crc::new(),
      piece: Vec::with_capacity(GZIP_PIECE),
      scratch,
      store: 0,
    }
  }

  /// Runs deflate over `input` with `flush` until all of it is consumed and flushed.
  fn run_deflate(&mut self, mut input: &[u8], flush: flate2::FlushCompress) -> io::Result<()> {
    loop {
      self.scratch.reserve(input.len() / 2 + 4096);
      let before = self.deflate.total_in();
      let status = self
        .deflate
        .compress_vec(input, &mut self.scratch, flush)
        .map_err(io::Error::other)?;
      input = &input[(self.deflate.total_in() - before) as usize..];
      let room_left = self.scratch.len() < self.scratch.capacity();
      let finishing = matches!(flush, flate2::FlushCompress::Finish);
      if status == flate2::Status::StreamEnd || (!finishing && input.is_empty() && room_left) {
        return Ok(());
      }
    }
  }

  fn write_piece(&mut self) -> io::Result<()> {
    if self.piece.is_empty() {
      return Ok(());
    }
    let piece = std::mem::take(&mut self.piece);
    self.crc.update(&piece);
    if self.store > 0 {
      self.store -= 1;
      // Non-final stored blocks (at most 65535 bytes each): BFINAL=0, BTYPE=00, padding to
      // the byte, LEN, NLEN, the bytes.
      for block in piece.chunks(u16::MAX as usize) {
        let len = block.len() as u16;
        self.scratch.push(0);
        self.scratch.extend_from_slice(&len.to_le_bytes());
        self.scratch.extend_from_slice(&(!len).to_le_bytes());
        self.scratch.extend_from_slice(block);
      }
    } else {
      let start = self.scratch.len();
      self.run_deflate(&piece, flate2::FlushCompress::Full)?;
      if (self.scratch.len() - start) * 10 > piece.len() * 9 {
        self.store = GZIP_STORE_RUN;
      }
    }
    self.out.write_all(&self.scratch)?;
    self.scratch.clear();
    self.piece = piece;
    self.piece.clear();
    Ok(())
  }

  /// Ends the gzip member (final empty block, CRC-32, size mod 2^32) and returns the writer.
  pub(super) fn finish(mut self) -> io::Result<W> {
    self.write_piece()?;
    self.run_deflate(&[], flate2::FlushCompress::Finish)?;
    self.scratch.extend_from_slice(&self.crc.sum().to_le_bytes());
    self.scratch.extend_from_slice(&self.crc.amount().to_le_bytes());
    self.out.write_all(&self.scratch)?;
    self.out.flush()?;
    Ok(self.out)
  }
}

impl<W: Write> Write for GzipWriter<W> {
  fn write(&mut self, data: &[u8]) -> io::Result<usize> {
    let n = data.len().min(GZIP_PIECE - self.piece.len());
    self.piece.extend_from_slice(&data[..n]);
    if self.piece.len() == GZIP_PIECE {
      self.write_piece()?;
    }
    Ok(n)
  }

  fn flush(&mut self) -> io::Result<()> {
    Ok(())
  }
}
