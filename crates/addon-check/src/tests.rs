use super::*;
use object::{macho, Endianness};

fn elf_report() -> Report {
  Report {
    format: Format::Elf,
    arch: "x86_64".into(),
    size: 6_000_000,
    needed: vec!["libc.so.6".into(), "libgcc_s.so.1".into()],
    exports: vec![NAPI_ENTRY.into()],
    unbound: vec!["napi_create_object".into()],
    bound: 3,
    glibc_versions: vec![Version::parse("2.2.5").unwrap(), Version::parse("2.17").unwrap()],
    min_macos: None,
  }
}

fn gnu(version: &str, flavour: Flavour) -> Expect {
  Expect {
    arch: "x86_64".into(),
    flavour,
    libc: Some(Libc::Gnu(Version::parse(version).unwrap())),
    macos: None,
  }
}

#[test]
fn versions_compare_numerically_not_as_text() {
  assert!(Version::parse("2.17").unwrap() > Version::parse("2.5").unwrap());
  assert!(Version::parse("10.15").unwrap() < Version::parse("11.0").unwrap());
  assert_eq!(Version::parse("11.0.0").unwrap(), Version::parse("11").unwrap());
  assert_eq!(Version::from_macho(0x000b_0000).to_string(), "11.0.0");
  assert!(Version::parse("2.x")
    .unwrap_err()
    .contains("not a dotted version"));
}

#[test]
fn a_portable_glibc_addon_passes() {
  assert_eq!(
    check(&elf_report(), &gnu("2.17", Flavour::Main)),
    Vec::<String>::new()
  );
}

#[test]
fn a_glibc_symbol_newer_than_the_target_fails() {
  let mut report = elf_report();
  report.glibc_versions.push(Version::parse("2.34").unwrap());
  let problems = check(&report, &gnu("2.17", Flavour::Main));
  assert_eq!(
    problems,
    vec!["needs GLIBC_2.34, newer than the target's glibc 2.17"]
  );
}

#[test]
fn libpython_in_needed_or_python_symbols_fail_the_main_flavour() {
  let mut report = elf_report();
  report.needed.push("libpython3.11.so.1.0".into());
  report.unbound.push("PyObject_Repr".into());
  let problems = check(&report, &gnu("2.17", Flavour::Main)).join("\n");
  assert!(problems.contains("links libpython3.11.so.1.0"), "{problems}");
  assert!(
    problems.contains("PyObject_Repr (a Python symbol in the main flavour)"),
    "{problems}"
  );
}

#[test]
fn the_local_flavour_may_leave_python_symbols_but_nothing_else() {
  let mut report = elf_report();
  report.unbound.extend([
    "PyObject_Repr".to_string(),
    "_Py_Dealloc".into(),
    "SSL_new".into(),
  ]);
  let problems = check(&report, &gnu("2.17", Flavour::Local));
  assert_eq!(
    problems,
    vec!["undefined symbol SSL_new is left for the process to provide"]
  );
}

#[test]
fn missing_entry_point_wrong_arch_and_foreign_libraries_fail() {
  let mut report = elf_report();
  report.exports.clear();
  report.needed.push("libssl.so.3".into());
  let mut expect = gnu("2.17", Flavour::Main);
  expect.arch = "aarch64".into();
  let problems = check(&report, &expect).join("\n");
  assert!(
    problems.contains("architecture is x86_64, the target needs aarch64"),
    "{problems}"
  );
  assert!(
    problems.contains("does not export napi_register_module_v1"),
    "{problems}"
  );
  assert!(problems.contains("needs libssl.so.3"), "{problems}");
}

#[test]
fn a_musl_addon_must_need_only_libc_so_and_no_glibc_versions() {
  let mut report = elf_report();
  let musl = Expect {
    libc: Some(Libc::Musl),
    ..gnu("2.17", Flavour::Main)
  };
  let problems = check(&report, &musl).join("\n");
  assert!(problems.contains("needs GLIBC_2.17: a musl addon"), "{problems}");
  assert!(
    problems.contains("needs libc.so.6; a musl system offers only libc.so"),
    "{problems}"
  );
  report.needed = vec!["libc.so".into()];
  report.glibc_versions.clear();
  report
    .unbound
    .extend(["malloc".to_string(), "pthread_create".into()]);
  assert_eq!(check(&report, &musl), Vec::<String>::new());
  report.unbound.push("PyObject_Repr".into());
  assert_eq!(check(&report, &musl), vec!["undefined symbol PyObject_Repr (a Python symbol in the main flavour) is left for the process to provide"]);
}

fn macho_report() -> Report {
  Report {
    format: Format::MachO,
    arch: "aarch64".into(),
    size: 5_000_000,
    needed: vec![
      "/usr/lib/libSystem.B.dylib".into(),
      "/System/Library/Frameworks/Security.framework/Versions/A/Security".into(),
    ],
    exports: vec![NAPI_ENTRY.into()],
    unbound: vec!["napi_create_object".into()],
    bound: 3,
    glibc_versions: vec![],
    min_macos: Some(Version::parse("11.0.0").unwrap()),
  }
}

fn macos(version: &str, flavour: Flavour) -> Expect {
  Expect {
    arch: "aarch64".into(),
    flavour,
    libc: None,
    macos: Some(Version::parse(version).unwrap()),
  }
}

#[test]
fn a_macho_addon_for_an_older_macos_passes_and_one_for_a_newer_fails() {
  assert_eq!(
    check(&macho_report(), &macos("11.0", Flavour::Main)),
    Vec::<String>::new()
  );
  let mut report = macho_report();
  report.min_macos = Some(Version::parse("15.0.0").unwrap());
  assert_eq!(
    check(&report, &macos("11.0", Flavour::Main)),
    vec!["needs macOS 15.0.0, newer than the target's 11.0"]
  );
  report.min_macos = None;
  assert!(check(&report, &macos("11.0", Flavour::Main))[0].contains("states no minimum macOS"));
}

#[test]
fn a_macho_addon_loading_a_non_system_dylib_fails() {
  let mut report = macho_report();
  report.needed.push("/opt/homebrew/lib/libssl.3.dylib".into());
  let problems = check(&report, &macos("11.0", Flavour::Main));
  assert_eq!(
    problems,
    vec!["loads /opt/homebrew/lib/libssl.3.dylib, which is not part of macOS"]
  );
}

#[test]
fn inspecting_this_test_binary_reads_its_glibc_versions_and_libraries() {
  if !cfg!(all(
    target_os = "linux",
    target_env = "gnu",
    target_pointer_width = "64"
  )) {
    eprintln!("skipped: only a 64-bit glibc Linux test binary is an ELF that needs glibc");
    return;
  }
  let data = std::fs::read(std::env::current_exe().unwrap()).unwrap();
  let report = inspect(&data).unwrap();
  assert_eq!(report.format, Format::Elf);
  assert_eq!(report.arch, std::env::consts::ARCH);
  assert!(
    report.needed.iter().any(|lib| lib == "libc.so.6"),
    "{:?}",
    report.needed
  );
  assert!(
    report.glibc_versions.iter().any(|v| v.0[0] == 2),
    "{:?}",
    report.glibc_versions
  );
}

#[test]
fn inspecting_a_macho_object_reads_arch_min_macos_exports_and_dynamic_lookups() {
  use object::write;
  let mut obj = write::Object::new(
    object::BinaryFormat::MachO,
    Architecture::Aarch64,
    Endianness::Little,
  );
  let mut build = object::write::MachOBuildVersion::default();
  build.platform = macho::PLATFORM_MACOS;
  build.minos = 0x000a_0f00; // 10.15
  obj.set_macho_build_version(build);
  let text = obj.section_id(write::StandardSection::Text);
  obj.append_section_data(text, &[0xc0, 0x03, 0x5f, 0xd6], 4);
  let symbol = |name: &str, section| write::Symbol {
    name: name.as_bytes().to_vec(),
    value: 0,
    size: 0,
    kind: object::SymbolKind::Text,
    scope: object::SymbolScope::Dynamic,
    weak: false,
    section,
    flags: object::SymbolFlags::MachO {
      n_desc: if section == write::SymbolSection::Undefined {
        0xfe00
      } else {
        0
      },
    },
  };
  obj.add_symbol(symbol(
    "napi_register_module_v1",
    write::SymbolSection::Section(text),
  ));
  obj.add_symbol(symbol("napi_create_object", write::SymbolSection::Undefined));
  let data = obj.write().unwrap();
  let report = inspect(&data).unwrap();
  assert_eq!(report.format, Format::MachO);
  assert_eq!(report.arch, "aarch64");
  assert_eq!(report.min_macos, Some(Version::parse("10.15.0").unwrap()));
  assert_eq!(report.exports, vec![NAPI_ENTRY.to_string()]);
  assert_eq!(report.unbound, vec!["napi_create_object".to_string()]);
  assert_eq!(
    check(&report, &macos("11.0", Flavour::Main)),
    Vec::<String>::new()
  );
}

/// A bind-opcode stream as ld64 and zig write it: a symbol bound to library #2 eagerly, two napi
/// symbols bound by flat lookup (`-undefined dynamic_lookup`) lazily, with the address opcodes
/// between them.
#[test]
fn bind_opcodes_give_each_symbol_its_library_ordinal() {
  let mut stream = vec![macho::BIND_OPCODE_SET_DYLIB_ORDINAL_IMM | 2];
  stream.push(macho::BIND_OPCODE_SET_SYMBOL_TRAILING_FLAGS_IMM);
  stream.extend(b"_CFRelease\0");
  stream.extend([macho::BIND_OPCODE_SET_TYPE_IMM | 1]);
  stream.extend([macho::BIND_OPCODE_SET_SEGMENT_AND_OFFSET_ULEB | 2, 0x88, 0x01]);
  stream.push(macho::BIND_OPCODE_DO_BIND);
  stream.extend([macho::BIND_OPCODE_SET_ADDEND_SLEB, 0x7f]);
  // SET_DYLIB_SPECIAL_IMM with 0xe: the 4-bit value -2, flat lookup.
  stream.push(macho::BIND_OPCODE_SET_DYLIB_SPECIAL_IMM | 0x0e);
  stream.push(macho::BIND_OPCODE_SET_SYMBOL_TRAILING_FLAGS_IMM);
  stream.extend(b"_napi_create_object\0");
  stream.extend([macho::BIND_OPCODE_DO_BIND_ADD_ADDR_ULEB, 0x08]);
  stream.push(macho::BIND_OPCODE_DONE);
  stream.push(macho::BIND_OPCODE_SET_SYMBOL_TRAILING_FLAGS_IMM);
  stream.extend(b"_napi_throw\0");
  stream.extend([macho::BIND_OPCODE_DO_BIND_ULEB_TIMES_SKIPPING_ULEB, 0x02, 0x10]);
  stream.push(macho::BIND_OPCODE_SET_DYLIB_SPECIAL_IMM | 0x0f);
  stream.push(macho::BIND_OPCODE_DO_BIND_ADD_ADDR_IMM_SCALED | 1);
  assert_eq!(
    decode_bind_opcodes(&stream).unwrap(),
    vec![
      ("_CFRelease".to_string(), 2),
      ("_napi_create_object".to_string(), -2),
      ("_napi_throw".to_string(), -2),
      ("_napi_throw".to_string(), -1),
    ]
  );
  assert!(decode_bind_opcodes(&[macho::BIND_OPCODE_DO_BIND])
    .unwrap_err()
    .contains("a bind before any symbol name"));
  assert!(
    decode_bind_opcodes(&[macho::BIND_OPCODE_SET_DYLIB_ORDINAL_ULEB, 0x80])
      .unwrap_err()
      .contains("truncated ULEB128")
  );
  assert!(decode_bind_opcodes(&[0xe0])
    .unwrap_err()
    .contains("unknown opcode 0xe0"));
}

/// The chained-fixups imports table (what Apple's linker writes for newer deployment targets):
/// a `DYLD_CHAINED_IMPORT` entry packs the ordinal in its low byte, the name offset above bit 9.
#[test]
fn chained_fixup_imports_give_each_symbol_its_library_ordinal() {
  let names = b"\0_CFRelease\0_napi_throw\0";
  let entry = |ordinal: u8, weak: u32, name_offset: u32| u32::from(ordinal) | weak << 8 | name_offset << 9;
  let imports = [entry(2, 0, 1), entry(0xfe, 0, 12), entry(0xfd, 1, 12)];
  let (imports_offset, symbols_offset) = (28u32, 28 + 4 * imports.len() as u32);
  let mut blob = Vec::new();
  for word in [0, 0, imports_offset, symbols_offset, imports.len() as u32, 1, 0] {
    blob.extend(word.to_le_bytes());
  }
  for word in imports {
    blob.extend(word.to_le_bytes());
  }
  blob.extend(names);
  assert_eq!(
    decode_chained_imports(&blob).unwrap(),
    vec![
      ("_CFRelease".to_string(), 2),
      ("_napi_throw".to_string(), -2),
      ("_napi_throw".to_string(), -3),
    ]
  );
  blob[20] = 9;
  assert!(decode_chained_imports(&blob)
    .unwrap_err()
    .contains("unknown imports format 9"));
  assert!(decode_chained_imports(&blob[..10])
    .unwrap_err()
    .contains("truncated"));
}

#[test]
fn a_macho_system_symbol_left_to_flat_lookup_fails() {
  let mut report = macho_report();
  report.unbound.push("CFRelease".into());
  assert_eq!(
    check(&report, &macos("11.0", Flavour::Main)),
    vec!["undefined symbol CFRelease is left for the process to provide"]
  );
  report.unbound.pop();
  report.unbound.push("PyObject_Repr".into());
  assert_eq!(
    check(&report, &macos("11.0", Flavour::Local)),
    Vec::<String>::new()
  );
}
