//! `mode: "ttyd"`: the original's behaviour: ttyd downloaded into the box, started there and
//! reached through the box's port mapping (nothing is served by the addon).

use super::TerminalInfo;
use crate::adapter::Adapter;
use crate::error::{Error, Result};
use crate::sandbox::ExecOptions;

/// The guest port and URL path of the original's in-box ttyd (`mode: "ttyd"`).
pub const TTYD_PORT: u16 = 7681;

/// `'<s>'` for sh, any content.
fn sh_quote(s: &str) -> String {
  format!("'{}'", s.replace('\'', r"'\''"))
}

/// Downloads ttyd 1.7.7 into `/usr/local/bin` (curl, then wget, then apt-get + wget), as the
/// original did; exits non-zero when it cannot.
pub const TTYD_INSTALL_SCRIPT: &str = r#"set -u
case "$(uname -m)" in aarch64|arm64) arch=aarch64 ;; x86_64) arch=x86_64 ;; *) echo "unsupported architecture $(uname -m)" >&2; exit 1 ;; esac
url="https://github.com/tsl0922/ttyd/releases/download/1.7.7/ttyd.$arch"
dest=/usr/local/bin/ttyd
if command -v curl >/dev/null 2>&1; then curl -fsSL -o "$dest" "$url"
elif command -v wget >/dev/null 2>&1; then wget -qO "$dest" "$url"
else apt-get update >/dev/null && apt-get install -y wget >/dev/null && wget -qO "$dest" "$url"
fi && chmod +x "$dest" && "$dest" --version >/dev/null"#;

/// Starts ttyd writable on 7681 in the background.
pub fn ttyd_start_command(shell: &str) -> String {
  format!(
    "nohup ttyd -W -p {TTYD_PORT} {} > /dev/null 2>&1 &",
    sh_quote(shell)
  )
}

/// Waits up to 10 s for ttyd to run; exits 1 when it does not.
pub const TTYD_WAIT_COMMAND: &str =
  "for i in $(seq 1 20); do pgrep -x ttyd > /dev/null && exit 0; sleep 0.5; done; exit 1";

impl Adapter {
  /// The original's behaviour: ttyd downloaded into the box if missing, started on port 7681,
  /// reached through the port mapping. Unlike the original, each step is checked.
  pub async fn start_ttyd_in_box(
    &self,
    id: &str,
    shell: &str,
    hostname: Option<&str>,
  ) -> Result<TerminalInfo> {
    let run = |command: String, timeout_ms: Option<f64>| async move {
      self
        .exec(
          id,
          &command,
          &ExecOptions {
            cwd: None,
            timeout: timeout_ms,
          },
        )
        .await
    };
    if run("which ttyd".into(), Some(30_000.0)).await?.exit_code != 0 {
      let install = run(TTYD_INSTALL_SCRIPT.into(), Some(300_000.0)).await?;
      if install.exit_code != 0 {
        let detail = install.stderr.trim();
        return Err(Error::InvalidState {
          message: format!(
            "ttyd could not be installed in box {id} (exit {}{}); mode 'ttyd' needs network access and curl, wget or \
             apt-get in the box — the default mode needs nothing in the box",
            install.exit_code,
            if detail.is_empty() { String::new() } else { format!(": {}", detail.chars().take(300).collect::<String>()) }
          ),
        });
      }
    }
    run(ttyd_start_command(shell), Some(30_000.0)).await?;
    if run(TTYD_WAIT_COMMAND.into(), Some(30_000.0)).await?.exit_code != 0 {
      return Err(Error::InvalidState {
        message: format!("ttyd did not start in box {id} within 10 s"),
      });
    }
    let http = self.expose_port(id, TTYD_PORT as u32, hostname)?;
    let url = format!("ws://{}/ws", http.trim_start_matches("http://"));
    Ok(TerminalInfo { url, port: TTYD_PORT })
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn ttyd_mode_commands_quote_the_shell_and_check_the_start() {
    assert_eq!(
      ttyd_start_command("/bin/bash"),
      "nohup ttyd -W -p 7681 '/bin/bash' > /dev/null 2>&1 &"
    );
    assert_eq!(
      ttyd_start_command("it's"),
      r"nohup ttyd -W -p 7681 'it'\''s' > /dev/null 2>&1 &"
    );
    assert!(TTYD_WAIT_COMMAND.ends_with("exit 1"));
    assert!(TTYD_INSTALL_SCRIPT.contains("ttyd/releases/download/1.7.7/ttyd.$arch"));
  }
}
