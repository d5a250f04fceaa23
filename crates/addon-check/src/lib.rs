//! Release checks of a built addon file (ELF for Linux, Mach-O for macOS): reads what the loader of
//! the target system will need from it ([`inspect`]) and judges that against the target's limits
//! ([`check`]): architecture, newest glibc symbol version, NEEDED libraries, the napi entry point,
//! which undefined symbols are left for Node (or the embedded Python) to provide, minimum macOS.
//! docs/release.md says why each rule exists.

use object::Architecture;

mod elf;
mod macho;
pub use macho::{decode_bind_opcodes, decode_chained_imports};

/// The symbol Node looks up to initialise a napi addon (`_`-prefixed in Mach-O).
pub const NAPI_ENTRY: &str = "napi_register_module_v1";

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
    object::FileKind::Elf64 => elf::inspect(data),
    object::FileKind::MachO64 => macho::inspect(data),
    other => Err(format!(
      "unsupported file kind {other:?} (expected 64-bit ELF or Mach-O)"
    )),
  }
}

pub(crate) fn arch_name(arch: Architecture) -> String {
  match arch {
    Architecture::X86_64 => "x86_64".into(),
    Architecture::Aarch64 => "aarch64".into(),
    other => format!("{other:?}").to_lowercase(),
  }
}

pub(crate) fn sorted(mut names: Vec<String>) -> Vec<String> {
  names.sort();
  names.dedup();
  names
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
