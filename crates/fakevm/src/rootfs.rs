//! The box's root filesystem: a directory materialised once per box from its disk image (the
//! ext4 at the end of the qcow2 overlay's backing chain, extracted with `debugfs rdump`, no
//! mount needed) and kept beside the box's other files, so it survives stop/start and goes
//! away with the box.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

const QCOW2_MAGIC: &[u8; 4] = b"QFI\xfb";

/// The backing file named in a qcow2 header, if `path` is qcow2 and has one.
fn qcow2_backing(path: &Path) -> std::io::Result<Option<(bool, Option<PathBuf>)>> {
  let mut f = std::fs::File::open(path)?;
  let mut header = [0u8; 20];
  if f.read_exact(&mut header).is_err() || &header[..4] != QCOW2_MAGIC {
    return Ok(Some((false, None)));
  }
  let offset = u64::from_be_bytes(header[8..16].try_into().unwrap());
  let size = u32::from_be_bytes(header[16..20].try_into().unwrap()) as usize;
  if offset == 0 || size == 0 {
    return Ok(Some((true, None)));
  }
  let mut name = vec![0u8; size];
  use std::io::Seek;
  f.seek(std::io::SeekFrom::Start(offset))?;
  f.read_exact(&mut name)?;
  let name = PathBuf::from(String::from_utf8_lossy(&name).into_owned());
  let full = if name.is_absolute() {
    name
  } else {
    path.parent().unwrap_or(Path::new("/")).join(name)
  };
  Ok(Some((true, Some(full))))
}

/// The raw filesystem image at the bottom of `disk`'s backing chain.
pub fn base_image(disk: &Path) -> Result<PathBuf, String> {
  let mut current = disk.to_path_buf();
  for _ in 0..64 {
    match qcow2_backing(&current).map_err(|e| format!("{}: {e}", current.display()))? {
      Some((false, _)) | None => return Ok(current),
      Some((true, Some(next))) => current = next,
      Some((true, None)) => {
        return Err(format!(
          "{} is a qcow2 image without a backing file: the fake VM reads only \
                     overlays over a raw ext4 image",
          current.display()
        ))
      }
    }
  }
  Err(format!("{}: backing chain too deep", disk.display()))
}

/// The box's rootfs directory (`<box dir>/fakevm-rootfs`), extracted from `disk` the first
/// time.
pub fn prepare(box_dir: &Path, disk: &Path) -> Result<PathBuf, String> {
  let root = box_dir.join("fakevm-rootfs");
  let done = box_dir.join("fakevm-rootfs.done");
  if done.exists() && root.is_dir() {
    return Ok(root);
  }
  let base = base_image(disk)?;
  let partial = box_dir.join("fakevm-rootfs.partial");
  let _ = std::fs::remove_dir_all(&partial);
  std::fs::create_dir_all(&partial).map_err(|e| format!("mkdir {}: {e}", partial.display()))?;
  let out = Command::new("debugfs")
    .arg("-R")
    .arg(format!("rdump / {}", partial.display()))
    .arg(&base)
    .output()
    .map_err(|e| format!("cannot run debugfs (install e2fsprogs): {e}"))?;
  if !out.status.success() {
    return Err(format!(
      "debugfs rdump of {} failed: {}",
      base.display(),
      String::from_utf8_lossy(&out.stderr).trim()
    ));
  }
  let _ = std::fs::remove_dir_all(&root);
  std::fs::rename(&partial, &root).map_err(|e| format!("rename rootfs: {e}"))?;
  std::fs::write(&done, b"").map_err(|e| format!("mark rootfs: {e}"))?;
  Ok(root)
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn the_backing_chain_ends_at_the_first_non_qcow2_file() {
    let dir = std::env::temp_dir().join(format!("fakevm-qcow-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("base.ext4"), vec![0u8; 4096]).unwrap();
    let overlay = |name: &str, backing: &str| {
      let mut h = Vec::new();
      h.extend_from_slice(QCOW2_MAGIC);
      h.extend_from_slice(&3u32.to_be_bytes());
      h.extend_from_slice(&104u64.to_be_bytes());
      h.extend_from_slice(&(backing.len() as u32).to_be_bytes());
      h.resize(104, 0);
      h.extend_from_slice(backing.as_bytes());
      std::fs::write(dir.join(name), h).unwrap();
    };
    overlay("mid.qcow2", "base.ext4");
    overlay("top.qcow2", dir.join("mid.qcow2").to_str().unwrap());
    assert_eq!(base_image(&dir.join("top.qcow2")).unwrap(), dir.join("base.ext4"));
    let mut lone = QCOW2_MAGIC.to_vec();
    lone.resize(104, 0);
    std::fs::write(dir.join("lone.qcow2"), lone).unwrap();
    assert!(base_image(&dir.join("lone.qcow2"))
      .unwrap_err()
      .contains("without a backing file"));
  }
}
