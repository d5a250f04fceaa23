//! Release checks of a built addon file (ELF for Linux, Mach-O for macOS): reads what the loader of
//! the target system will need from it ([`inspect`]) and judges that against the target's limits
//! ([`check`]): architecture, newest glibc symbol version, NEEDED libraries, the napi entry point,
//! which undefined symbols are left for Node (or the embedded Python) to provide, minimum macOS.
//! docs/release.md says why each rule exists.

use object::elf;
use object::macho;
use object::read::elf::{ElfFile64, Sym};
use object::read::macho::{MachOFile64, Nlist};
use object::{Architecture, Endianness, Object, ObjectSymbol};

/// The symbol Node looks up to initialise a napi addon (`_`-prefixed in Mach-O).
pub const NAPI_ENTRY: &str = "napi_register_module_v1";

/// Mach-O's library ordinal meaning "look the symbol up in whatever is loaded" (`-undefined
/// dynamic_lookup`): how a Node addon reaches Node's own napi functions.
const DYNAMIC_LOOKUP_ORDINAL: u8 = 0xfe;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
  Elf,
  MachO,
}

/// What a loader sees in an addon file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
  pub format: Format,
  /// `x86_64` or `aarch64`.
  pub arch: String,
  pub size: u64,
  /// ELF: DT_NEEDED entries; Mach-O: LC_LOAD_DYLIB (and weak/reexport) paths.
  pub needed: Vec<String>,
  /// Exported (defined, global) dynamic symbols, without Mach-O's leading `_`.
  pub exports: Vec<String>,
  /// Undefined symbols left to whatever is loaded in the process (ELF: unversioned, not weak;
  /// Mach-O: bound by flat lookup, as `-undefined dynamic_lookup` makes it), without Mach-O's
  /// leading `_`.
  pub unbound: Vec<String>,
  /// How many imported symbols are bound to a named library (ELF: by a symbol version;
  /// Mach-O: by the two-level library ordinal of the bind information).
  pub bound: usize,
  /// ELF: every `GLIBC_x.y[.z]` version the file needs, parsed.
  pub glibc_versions: Vec<Version>,
  /// Mach-O: minimum macOS of LC_BUILD_VERSION / LC_VERSION_MIN_MACOSX.
  pub min_macos: Option<Version>,
}

/// A dotted version (`2.17`, `11.0`), compared numerically (`11.0.0` equals `11.0`).
#[derive(Debug, Clone)]
pub struct Version(pub Vec<u32>);

impl PartialEq for Version {
  fn eq(&self, other: &Self) -> bool {
    self.cmp(other) == std::cmp::Ordering::Equal
  }
}
impl Eq for Version {}
impl PartialOrd for Version {
  fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
    Some(self.cmp(other))
  }
}
impl Ord for Version {
  fn cmp(&self, other: &Self) -> std::cmp::Ordering {
    let len = self.0.len().max(other.0.len());
    let part = |v: &Version, i: usize| v.0.get(i).copied().unwrap_or(0);
    (0..len)
      .map(|i| part(self, i).cmp(&part(other, i)))
      .find(|o| o.is_ne())
      .unwrap_or(std::cmp::Ordering::Equal)
  }
}

impl Version {
  pub fn parse(text: &str) -> Result<Version, String> {
    let parts: Result<Vec<u32>, _> = text.split('.').map(str::parse).collect();
    match parts {
      Ok(parts) if !parts.is_empty() => Ok(Version(parts)),
      _ => Err(format!("'{text}' is not a dotted version such as 2.17 or 11.0")),
    }
  }

  /// Mach-O encodes X.Y.Z in nibbles xxxx.yy.zz.
  fn from_macho(encoded: u32) -> Version {
    Version(vec![encoded >> 16, (encoded >> 8) & 0xff, encoded & 0xff])
  }
}

impl std::fmt::Display for Version {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    let text: Vec<String> = self.0.iter().map(u32::to_string).collect();
    f.write_str(&text.join("."))
  }
}

/// The flavour of addon: the main one must never need Python; the local one leaves CPython's
/// symbols to the libpython that JS loads globally first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
  Main,
  Local,
}

/// The C library of a Linux target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Libc {
  /// glibc, with the oldest version the addon must load on.
  Gnu(Version),
  Musl,
}

/// What the target system offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
  pub arch: String,
  pub flavour: Flavour,
  /// Linux targets only.
  pub libc: Option<Libc>,
  /// macOS targets only: the oldest macOS the addon must load on.
  pub macos: Option<Version>,
}

pub fn inspect(data: &[u8]) -> Result<Report, String> {
  let kind = object::FileKind::parse(data).map_err(|e| format!("not an object file: {e}"))?;
  match kind {
    object::FileKind::Elf64 => inspect_elf(data),
    object::FileKind::MachO64 => inspect_macho(data),
    other => Err(format!(
      "unsupported file kind {other:?} (expected 64-bit ELF or Mach-O)"
    )),
  }
}

fn arch_name(arch: Architecture) -> String {
  match arch {
    Architecture::X86_64 => "x86_64".into(),
    Architecture::Aarch64 => "aarch64".into(),
    other => format!("{other:?}").to_lowercase(),
  }
}

fn sorted(mut names: Vec<String>) -> Vec<String> {
  names.sort();
  names.dedup();
  names
}

fn inspect_elf(data: &[u8]) -> Result<Report, String> {
  let file = ElfFile64::<Endianness>::parse(data).map_err(|e| format!("bad ELF: {e}"))?;
  let endian = file.endian();
  let sections = file.elf_section_table();
  let err = |e: object::Error| format!("bad ELF: {e}");

  let mut needed = Vec::new();
  if let Some((entries, strings_index)) = sections.dynamic(endian, data).map_err(err)? {
    let strings = sections.strings(endian, data, strings_index).map_err(err)?;
    for entry in entries {
      if entry.d_tag.get(endian) == u64::from(elf::DT_NEEDED) {
        let name = strings
          .get(entry.d_val.get(endian) as u32)
          .map_err(|()| "bad DT_NEEDED string")?;
        needed.push(String::from_utf8_lossy(name).into_owned());
      }
    }
  }

  let versions = sections.versions(endian, data).map_err(err)?;
  let symbols = file.elf_dynamic_symbol_table();
  let (mut exports, mut unbound, mut glibc, mut bound) = (Vec::new(), Vec::new(), Vec::new(), 0);
  for (index, symbol) in symbols.enumerate() {
    let name = String::from_utf8_lossy(symbols.symbol_name(endian, symbol).map_err(err)?).into_owned();
    if name.is_empty() {
      continue;
    }
    let version = match &versions {
      Some(table) => table.version(table.version_index(endian, index)).map_err(err)?,
      None => None,
    };
    if let Some(version) = version {
      if let Some(number) = String::from_utf8_lossy(version.name()).strip_prefix("GLIBC_") {
        if let Ok(parsed) = Version::parse(number) {
          glibc.push(parsed);
        }
      }
    }
    let global = matches!(symbol.st_bind(), elf::STB_GLOBAL | elf::STB_GNU_UNIQUE);
    if symbol.is_undefined(endian) {
      if version.is_none() && global {
        unbound.push(name);
      } else if version.is_some() {
        bound += 1;
      }
    } else if global || symbol.st_bind() == elf::STB_WEAK {
      exports.push(name);
    }
  }
  glibc.sort();
  glibc.dedup();
  Ok(Report {
    format: Format::Elf,
    arch: arch_name(file.architecture()),
    size: data.len() as u64,
    needed,
    exports: sorted(exports),
    unbound: sorted(unbound),
    bound,
    glibc_versions: glibc,
    min_macos: None,
  })
}

fn inspect_macho(data: &[u8]) -> Result<Report, String> {
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

/// Libraries every glibc system has (and that Rust's std links).
const GLIBC_LIBRARIES: &[&str] = &[
  "libc.so.6",
  "libm.so.6",
  "libgcc_s.so.1",
  "libpthread.so.0",
  "libdl.so.2",
  "librt.so.1",
];

fn is_python_symbol(name: &str) -> bool {
  name.starts_with("Py") || name.starts_with("_Py")
}

fn is_system_dylib(path: &str) -> bool {
  path.starts_with("/usr/lib/") || path.starts_with("/System/Library/Frameworks/")
}

/// Every way `report` falls short of `expect`, as sentences (empty: the addon passes).
pub fn check(report: &Report, expect: &Expect) -> Vec<String> {
  let mut problems = Vec::new();
  if report.arch != expect.arch {
    problems.push(format!(
      "architecture is {}, the target needs {}",
      report.arch, expect.arch
    ));
  }
  if !report.exports.iter().any(|name| name == NAPI_ENTRY) {
    problems.push(format!("does not export {NAPI_ENTRY}: Node cannot initialise it"));
  }
  if let Some(lib) = report
    .needed
    .iter()
    .find(|lib| lib.contains("libpython") || lib.contains("Python.framework"))
  {
    problems.push(format!(
      "links {lib}: the addon must find libpython at run time, never link it"
    ));
  }
  // musl has no symbol versions: its libc's symbols are unversioned too, so there only Python
  // symbols tell anything (the NEEDED rule below keeps the libraries to musl's libc).
  let musl = expect.libc == Some(Libc::Musl);
  for name in &report.unbound {
    let allowed = (musl && !is_python_symbol(name))
      || name.starts_with("napi_")
      || name.starts_with("node_api_")
      || (expect.flavour == Flavour::Local && is_python_symbol(name));
    if !allowed {
      let from = if is_python_symbol(name) {
        " (a Python symbol in the main flavour)"
      } else {
        ""
      };
      problems.push(format!(
        "undefined symbol {name}{from} is left for the process to provide"
      ));
    }
  }
  match report.format {
    Format::Elf => check_elf(report, expect, &mut problems),
    Format::MachO => check_macho(report, expect, &mut problems),
  }
  problems
}

fn check_elf(report: &Report, expect: &Expect, problems: &mut Vec<String>) {
  match &expect.libc {
    None => problems.push("an ELF addon needs a Linux target (gnu or musl)".into()),
    Some(Libc::Gnu(max)) => {
      if let Some(newest) = report.glibc_versions.last() {
        if newest > max {
          problems.push(format!(
            "needs GLIBC_{newest}, newer than the target's glibc {max}"
          ));
        }
      }
      for lib in &report.needed {
        if !GLIBC_LIBRARIES.contains(&lib.as_str()) && !lib.starts_with("ld-linux") {
          problems.push(format!("needs {lib}, which a plain glibc system may not have"));
        }
      }
    }
    Some(Libc::Musl) => {
      if let Some(newest) = report.glibc_versions.last() {
        problems.push(format!(
          "needs GLIBC_{newest}: a musl addon must not use glibc symbol versions"
        ));
      }
      for lib in &report.needed {
        if lib != "libc.so" && !lib.starts_with("libc.musl-") && !lib.starts_with("ld-musl-") {
          problems.push(format!("needs {lib}; a musl system offers only libc.so"));
        }
      }
    }
  }
}

fn check_macho(report: &Report, expect: &Expect, problems: &mut Vec<String>) {
  match (&expect.macos, &report.min_macos) {
    (None, _) => problems.push("a Mach-O addon needs a macOS target".into()),
    (Some(_), None) => problems.push("states no minimum macOS (LC_BUILD_VERSION missing)".into()),
    (Some(max), Some(min)) if min > max => {
      problems.push(format!("needs macOS {min}, newer than the target's {max}"))
    }
    _ => {}
  }
  for lib in &report.needed {
    if !is_system_dylib(lib) {
      problems.push(format!("loads {lib}, which is not part of macOS"));
    }
  }
}

/// One line per fact, for the release check's log.
pub fn summary(report: &Report) -> String {
  let glibc = report
    .glibc_versions
    .last()
    .map(|v| format!(", newest GLIBC_{v}"))
    .unwrap_or_default();
  let macos = report
    .min_macos
    .as_ref()
    .map(|v| format!(", min macOS {v}"))
    .unwrap_or_default();
  let mut unbound_kinds = Vec::new();
  let napi = report
    .unbound
    .iter()
    .filter(|n| n.starts_with("napi_") || n.starts_with("node_api_"))
    .count();
  let python = report.unbound.iter().filter(|n| is_python_symbol(n)).count();
  unbound_kinds.push(format!("{napi} napi"));
  if python > 0 {
    unbound_kinds.push(format!("{python} Python"));
  }
  format!(
    "{:?} {}, {:.1} MB{glibc}{macos}, needs [{}], exports {} ({} symbols), {} imports bound to those libraries, left to the process: {}",
    report.format,
    report.arch,
    report.size as f64 / 1e6,
    report.needed.join(", "),
    if report.exports.iter().any(|n| n == NAPI_ENTRY) {
      NAPI_ENTRY
    } else {
      "no napi entry"
    },
    report.exports.len(),
    report.bound,
    unbound_kinds.join(", "),
  )
}

#[cfg(test)]
mod tests;
