//! Writes a runtime directory for `BOXLITE_RUNTIME_DIR`: our `boxlite-shim` (a small Python
//! script that hands the box to the fake VM daemon) plus, optionally, links to the real
//! runtime files (for a `boxlite serve` built without its own runtime).
//!
//! The shim is a script because the runtime runs it inside bubblewrap with a cleared
//! environment and only /usr, /lib, /bin of the host visible: the daemon's socket name has to
//! be baked into the file itself, and /usr/bin/python3 is there to run it.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const SHIM: &str = r#"#!/usr/bin/python3
# boxlite-shim of the sandbank fake VM (TEST ONLY, NO VM ISOLATION): hands this box's
# InstanceSpec (JSON on stdin) to the boxlite-fakevm daemon, which plays the guest agent on
# the host, and lives exactly as long as the box runs there. Killing this process stops it.
import json, os, socket, sys

SOCKET = "@SOCKET@"
raw = sys.stdin.read()
try:
    spec = json.loads(raw)
except ValueError as e:
    sys.stderr.write("[fakevm shim] the InstanceSpec on stdin is not JSON: %s\n" % e)
    sys.exit(1)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect("\0" + SOCKET)
except OSError as e:
    sys.stderr.write("[fakevm shim] cannot reach the fake VM daemon at @%s: %s "
                     "(start it with: boxlite-fakevm serve --socket %s)\n" % (SOCKET, e, SOCKET))
    sys.exit(1)
hello = {"box_id": os.environ.get("BOXLITE_BOX_ID", ""), "spec": spec}
s.sendall(json.dumps(hello).encode() + b"\n")
code = 1
for line in s.makefile("rb"):
    msg = json.loads(line)
    if "log" in msg:
        sys.stderr.write("[fakevm] %s\n" % msg["log"])
        sys.stderr.flush()
    if "exit" in msg:
        code = msg["exit"]
        break
sys.exit(code)
"#;

/// The shim script for the daemon listening on the abstract socket `socket`.
pub fn shim_script(socket: &str) -> String {
  SHIM.replace("@SOCKET@", socket)
}

pub fn install(socket: &str, dir: &Path, runtime_files: Option<&Path>) -> io::Result<()> {
  if socket.is_empty() || socket.contains(['"', '\\', '\n']) {
    return Err(io::Error::new(
      io::ErrorKind::InvalidInput,
      format!("socket name {socket:?} must be non-empty, without quotes, backslashes or newlines"),
    ));
  }
  fs::create_dir_all(dir)?;
  if let Some(files) = runtime_files {
    for entry in fs::read_dir(files)
      .map_err(|e| io::Error::new(e.kind(), format!("runtime files {}: {e}", files.display())))?
    {
      let entry = entry?;
      let name = entry.file_name();
      if name == "boxlite-shim" {
        continue;
      }
      let link = dir.join(&name);
      let _ = fs::remove_file(&link);
      std::os::unix::fs::symlink(entry.path(), &link)?;
    }
  }
  let shim = dir.join("boxlite-shim");
  let tmp = dir.join(".boxlite-shim.tmp");
  fs::write(&tmp, shim_script(socket))?;
  fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
  fs::rename(&tmp, &shim)?;
  Ok(())
}
