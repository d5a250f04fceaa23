//! `addon-check FILE --arch ARCH --flavour main|local (--glibc X.Y | --musl | --macos X.Y)`:
//! prints what a loader sees in a built addon and exits 1 with every problem if the target
//! could not load it (scripts/check-release.sh runs it on each addon of each target).
use addon_check::{check, inspect, summary, Expect, Flavour, Libc, Version};
use std::process::ExitCode;

const USAGE: &str =
  "usage: addon-check FILE --arch x86_64|aarch64 --flavour main|local (--glibc X.Y | --musl | --macos X.Y)";

fn parse(args: &[String]) -> Result<(String, Expect), String> {
  let mut file = None;
  let (mut arch, mut flavour, mut libc, mut macos) = (None, None, None, None);
  let mut iter = args.iter();
  while let Some(arg) = iter.next() {
    let mut value = || iter.next().cloned().ok_or_else(|| format!("{arg} needs a value"));
    match arg.as_str() {
      "--arch" => arch = Some(value()?),
      "--flavour" => {
        flavour = Some(match value()?.as_str() {
          "main" => Flavour::Main,
          "local" => Flavour::Local,
          other => return Err(format!("--flavour is main or local, not '{other}'")),
        })
      }
      "--glibc" => libc = Some(Libc::Gnu(Version::parse(&value()?)?)),
      "--musl" => libc = Some(Libc::Musl),
      "--macos" => macos = Some(Version::parse(&value()?)?),
      other if other.starts_with("--") => return Err(format!("unknown option {other}")),
      other => file = Some(other.to_string()),
    }
  }
  let file = file.ok_or("no addon file given")?;
  let arch = arch.ok_or("--arch is required")?;
  let flavour = flavour.ok_or("--flavour is required")?;
  if libc.is_none() && macos.is_none() {
    return Err("give the target: --glibc X.Y, --musl or --macos X.Y".into());
  }
  Ok((
    file,
    Expect {
      arch,
      flavour,
      libc,
      macos,
    },
  ))
}

fn main() -> ExitCode {
  let args: Vec<String> = std::env::args().skip(1).collect();
  let (file, expect) = match parse(&args) {
    Ok(parsed) => parsed,
    Err(message) => {
      eprintln!("addon-check: {message}\n{USAGE}");
      return ExitCode::from(2);
    }
  };
  let data = match std::fs::read(&file) {
    Ok(data) => data,
    Err(e) => {
      eprintln!("addon-check: cannot read {file}: {e}");
      return ExitCode::from(2);
    }
  };
  let report = match inspect(&data) {
    Ok(report) => report,
    Err(message) => {
      eprintln!("addon-check: {file}: {message}");
      return ExitCode::FAILURE;
    }
  };
  println!("{file}: {}", summary(&report));
  let problems = check(&report, &expect);
  for problem in &problems {
    eprintln!("  FAIL {file}: {problem}");
  }
  if problems.is_empty() {
    ExitCode::SUCCESS
  } else {
    ExitCode::FAILURE
  }
}
