//! What a Mach-O addon (macOS) asks of dyld: architecture, linked dylibs, exports, the imports
//! and the library each is bound to (bind opcodes or chained fixups), and the minimum macOS.

use object::macho;
use object::read::macho::{MachOFile64, Nlist};
use object::{Endianness, Object, ObjectSymbol};

use crate::{arch_name, sorted, Format, Report, Version};

/// Mach-O's library ordinal meaning "look the symbol up in whatever is loaded" (`-undefined
/// dynamic_lookup`): how a Node addon reaches Node's own napi functions.
const DYNAMIC_LOOKUP_ORDINAL: u8 = 0xfe;

pub(crate) fn inspect(data: &[u8]) -> Result<Report, String> {
  let file = MachOFile64::<Endianness>::parse(data).map_err(|e| format!("bad Mach-O: {e}"))?;
  let endian = file.endian();
  let err = |e: object::Error| format!("bad Mach-O: {e}");

  let (mut needed, mut min_macos) = (Vec::new(), None);
  let mut commands = file.macho_load_commands().map_err(err)?;
  while let Some(command) = commands.next().map_err(err)? {
    match command.variant().map_err(err)? {
      object::read::macho::LoadCommandVariant::Dylib(dylib)
        if command.cmd() != macho::LC_ID_DYLIB && command.cmd() != macho::LC_LOAD_DYLINKER =>
      {
        let name = command.string(endian, dylib.dylib.name).map_err(err)?;
        needed.push(String::from_utf8_lossy(name).into_owned());
      }
      object::read::macho::LoadCommandVariant::BuildVersion(build)
        if build.platform.get(endian) == macho::PLATFORM_MACOS =>
      {
        min_macos = Some(Version::from_macho(build.minos.get(endian)));
      }
      object::read::macho::LoadCommandVariant::VersionMin(version)
        if command.cmd() == macho::LC_VERSION_MIN_MACOSX =>
      {
        min_macos = Some(Version::from_macho(version.version.get(endian)));
      }
      _ => {}
    }
  }

  let imports = macho_imports(&file, data)?;
  let (mut exports, mut unbound, mut bound) = (Vec::new(), Vec::new(), 0);
  for symbol in file.symbols() {
    let Ok(name) = symbol.name() else { continue };
    let bare = name.strip_prefix('_').unwrap_or(name).to_string();
    let nlist = symbol.macho_symbol();
    if symbol.is_undefined() && imports.is_none() {
      // No dyld bind information (an object file): the symbol table's ordinal is all there is.
      let ordinal = (nlist.n_desc(endian) >> 8) as u8;
      if ordinal == DYNAMIC_LOOKUP_ORDINAL {
        unbound.push(bare);
      } else {
        bound += 1;
      }
    } else if !symbol.is_undefined() && symbol.is_global() && nlist.n_type() & macho::N_EXT != 0 {
      exports.push(bare);
    }
  }
  // A linked image: dyld binds what its bind information (or chained-fixup imports) says, and
  // linkers differ in what they leave in the symbol table's ordinal (zig writes 0 for a
  // dynamic lookup), so the bind information decides. Without MH_TWOLEVEL every import is
  // looked up in the flat namespace, whatever its ordinal.
  let two_level = file.macho_header().flags.get(endian) & macho::MH_TWOLEVEL != 0;
  for (name, ordinal) in imports.unwrap_or_default() {
    let bare = name.strip_prefix('_').unwrap_or(&name).to_string();
    if ordinal >= 1 && two_level {
      if ordinal as usize > needed.len() {
        return Err(format!(
          "bad Mach-O: {name} is bound to library #{ordinal}, but only {} are loaded",
          needed.len()
        ));
      }
      bound += 1;
    } else {
      // Flat lookup (-undefined dynamic_lookup), the main executable, a weak lookup, or
      // the image itself: whatever the process has loaded provides it.
      unbound.push(bare);
    }
  }
  Ok(Report {
    format: Format::MachO,
    arch: arch_name(file.architecture()),
    size: data.len() as u64,
    needed,
    exports: sorted(exports),
    unbound: sorted(unbound),
    bound,
    glibc_versions: Vec::new(),
    min_macos,
  })
}

/// The symbols a linked Mach-O image imports and the library ordinal dyld binds each with
/// (1-based index into the loaded dylibs, or a negative `BIND_SPECIAL_DYLIB_*`), from
/// `LC_DYLD_INFO[_ONLY]` (bind and lazy-bind opcodes) or `LC_DYLD_CHAINED_FIXUPS` (imports
/// table). `None` when the file has neither (an object file).
fn macho_imports(file: &MachOFile64<Endianness>, data: &[u8]) -> Result<Option<Vec<(String, i64)>>, String> {
  let endian = file.endian();
  let err = |e: object::Error| format!("bad Mach-O: {e}");
  let slice = |offset: u32, size: u32, what: &str| {
    data
      .get(offset as usize..offset as usize + size as usize)
      .ok_or_else(|| format!("bad Mach-O: {what} lies outside the file"))
  };
  let mut imports = None;
  let mut commands = file.macho_load_commands().map_err(err)?;
  while let Some(command) = commands.next().map_err(err)? {
    match command.variant().map_err(err)? {
      object::read::macho::LoadCommandVariant::DyldInfo(info) => {
        let list: &mut Vec<_> = imports.get_or_insert_with(Vec::new);
        let bind = slice(info.bind_off.get(endian), info.bind_size.get(endian), "bind info")?;
        let lazy = slice(
          info.lazy_bind_off.get(endian),
          info.lazy_bind_size.get(endian),
          "lazy bind info",
        )?;
        list.extend(decode_bind_opcodes(bind)?);
        list.extend(decode_bind_opcodes(lazy)?);
      }
      object::read::macho::LoadCommandVariant::LinkeditData(linkedit)
        if command.cmd() == macho::LC_DYLD_CHAINED_FIXUPS =>
      {
        let fixups = slice(
          linkedit.dataoff.get(endian),
          linkedit.datasize.get(endian),
          "chained fixups",
        )?;
        imports
          .get_or_insert_with(Vec::new)
          .extend(decode_chained_imports(fixups)?);
      }
      _ => {}
    }
  }
  if let Some(list) = imports.as_mut() {
    // A symbol can be bound both eagerly and lazily.
    list.sort();
    list.dedup();
  }
  Ok(imports)
}

/// Decodes a dyld bind-opcode stream into (symbol, library ordinal) for each bind it performs
/// (`<mach-o/loader.h>`: `BIND_OPCODE_*`). Addresses, types and addends are skipped.
pub fn decode_bind_opcodes(stream: &[u8]) -> Result<Vec<(String, i64)>, String> {
  let bad = |what: &str| format!("bad Mach-O bind opcodes: {what}");
  let mut bytes = object::read::Bytes(stream);
  let (mut binds, mut ordinal, mut name) = (Vec::new(), 0i64, None::<String>);
  while let Ok(&byte) = bytes.read::<u8>() {
    let immediate = byte & macho::BIND_IMMEDIATE_MASK;
    let mut uleb = || bytes.read_uleb128().map_err(|()| bad("truncated ULEB128"));
    match byte & macho::BIND_OPCODE_MASK {
      macho::BIND_OPCODE_DONE | macho::BIND_OPCODE_SET_TYPE_IMM => {}
      macho::BIND_OPCODE_SET_DYLIB_ORDINAL_IMM => ordinal = i64::from(immediate),
      macho::BIND_OPCODE_SET_DYLIB_ORDINAL_ULEB => ordinal = uleb()? as i64,
      // A 4-bit two's-complement value: 0 self, -1 main executable, -2 flat, -3 weak lookup.
      macho::BIND_OPCODE_SET_DYLIB_SPECIAL_IMM => {
        ordinal = if immediate == 0 {
          0
        } else {
          i64::from((immediate | macho::BIND_OPCODE_MASK) as i8)
        }
      }
      macho::BIND_OPCODE_SET_SYMBOL_TRAILING_FLAGS_IMM => {
        let text = bytes
          .read_string()
          .map_err(|()| bad("unterminated symbol name"))?;
        name = Some(String::from_utf8_lossy(text).into_owned());
      }
      macho::BIND_OPCODE_SET_ADDEND_SLEB => {
        bytes.read_sleb128().map_err(|()| bad("truncated SLEB128"))?;
      }
      macho::BIND_OPCODE_SET_SEGMENT_AND_OFFSET_ULEB | macho::BIND_OPCODE_ADD_ADDR_ULEB => {
        uleb()?;
      }
      opcode @ (macho::BIND_OPCODE_DO_BIND
      | macho::BIND_OPCODE_DO_BIND_ADD_ADDR_ULEB
      | macho::BIND_OPCODE_DO_BIND_ADD_ADDR_IMM_SCALED
      | macho::BIND_OPCODE_DO_BIND_ULEB_TIMES_SKIPPING_ULEB) => {
        match opcode {
          macho::BIND_OPCODE_DO_BIND_ADD_ADDR_ULEB => {
            uleb()?;
          }
          macho::BIND_OPCODE_DO_BIND_ULEB_TIMES_SKIPPING_ULEB => {
            uleb()?;
            uleb()?;
          }
          _ => {}
        }
        let symbol = name.clone().ok_or_else(|| bad("a bind before any symbol name"))?;
        binds.push((symbol, ordinal));
      }
      macho::BIND_OPCODE_THREADED => {
        if immediate == macho::BIND_SUBOPCODE_THREADED_SET_BIND_ORDINAL_TABLE_SIZE_ULEB {
          uleb()?;
        }
      }
      other => return Err(bad(&format!("unknown opcode {other:#04x}"))),
    }
  }
  Ok(binds)
}

/// Decodes the imports table of an `LC_DYLD_CHAINED_FIXUPS` blob (`<mach-o/fixup-chains.h>`)
/// into (symbol, library ordinal); the ordinal is a signed 8-bit (16-bit in the 64-bit
/// format) value with the same special values as the bind opcodes.
pub fn decode_chained_imports(blob: &[u8]) -> Result<Vec<(String, i64)>, String> {
  let bad = |what: &str| format!("bad Mach-O chained fixups: {what}");
  let word = |offset: usize| -> Result<u32, String> {
    blob
      .get(offset..offset + 4)
      .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
      .ok_or_else(|| bad("truncated"))
  };
  // dyld_chained_fixups_header: version, starts, imports, symbols offsets, count, formats.
  let (imports_offset, symbols_offset) = (word(8)? as usize, word(12)? as usize);
  let (count, format) = (word(16)? as usize, word(20)?);
  if word(24)? != 0 {
    return Err(bad("compressed symbol names are not supported"));
  }
  let name = |offset: usize| -> Result<String, String> {
    let start = symbols_offset + offset;
    let tail = blob.get(start..).ok_or_else(|| bad("name outside the blob"))?;
    let end = tail
      .iter()
      .position(|&b| b == 0)
      .ok_or_else(|| bad("unterminated name"))?;
    Ok(String::from_utf8_lossy(&tail[..end]).into_owned())
  };
  let mut imports = Vec::with_capacity(count);
  for index in 0..count {
    let (ordinal, name_offset) = match format {
      // DYLD_CHAINED_IMPORT (4 bytes) and DYLD_CHAINED_IMPORT_ADDEND (4 + 4):
      // lib_ordinal:8, weak_import:1, name_offset:23.
      1 | 2 => {
        let entry = word(imports_offset + index * if format == 1 { 4 } else { 8 })?;
        (i64::from(entry as u8 as i8), (entry >> 9) as usize)
      }
      // DYLD_CHAINED_IMPORT_ADDEND64 (8 + 8): lib_ordinal:16, weak_import:1, reserved:15,
      // name_offset:32.
      3 => {
        let at = imports_offset + index * 16;
        let low = word(at)?;
        (i64::from(low as u16 as i16), word(at + 4)? as usize)
      }
      other => return Err(bad(&format!("unknown imports format {other}"))),
    };
    imports.push((name(name_offset)?, ordinal));
  }
  Ok(imports)
}
