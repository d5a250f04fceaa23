//! What an ELF addon (Linux) asks of its loader: architecture, NEEDED libraries, exported and
//! undefined dynamic symbols, and the glibc symbol versions it binds to.

use object::elf;
use object::read::elf::{ElfFile64, Sym};
use object::{Endianness, Object};

use crate::{arch_name, sorted, Format, Report, Version};

pub(crate) fn inspect(data: &[u8]) -> Result<Report, String> {
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
