//! The terminal's wire protocol, free of I/O: access tokens and URL paths, the two framings
//! (core's and ttyd's) a client may speak, their decoding and encoding, UTF-8-safe output chunks.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bytes::Bytes;
use serde_json::Value;

use crate::error::{Error, Result};

/// Bytes of randomness in a terminal token (hex in the URL).
const TOKEN_BYTES: usize = 32;

/// A fresh token: 32 bytes from the operating system's CSPRNG, in lowercase hex.
pub fn new_token() -> Result<String> {
  let mut bytes = [0u8; TOKEN_BYTES];
  getrandom::fill(&mut bytes)
    .map_err(|e| Error::Internal(format!("no randomness for a terminal token: {e}")))?;
  Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Compares two secrets in time independent of where they differ.
pub fn token_matches(expected: &str, given: &str) -> bool {
  let (a, b) = (expected.as_bytes(), given.as_bytes());
  if a.len() != b.len() {
    return false;
  }
  a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What a request path asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathCheck {
  /// `/terminal/<the token>/ws`.
  Granted,
  /// `/terminal/<another token>/ws`: 403.
  WrongToken,
  /// Anything else: 404.
  NotFound,
}

/// Checks `/terminal/<token>/ws` (a query string is ignored).
pub fn check_path(path: &str, token: &str) -> PathCheck {
  let path = path.split('?').next().unwrap_or("");
  match path
    .strip_prefix("/terminal/")
    .and_then(|rest| rest.strip_suffix("/ws"))
  {
    Some(given) if !given.is_empty() && !given.contains('/') => {
      if token_matches(token, given) {
        PathCheck::Granted
      } else {
        PathCheck::WrongToken
      }
    }
    _ => PathCheck::NotFound,
  }
}

/// Whether a `Sec-WebSocket-Protocol` offer includes ttyd's `tty`.
pub fn offers_tty(header: Option<&str>) -> bool {
  header.is_some_and(|h| h.split(',').any(|p| p.trim() == "tty"))
}

/// The address to serve on: loopback only.
pub fn bind_address(hostname: Option<&str>) -> Result<IpAddr> {
  let host = hostname.map(str::trim).unwrap_or("");
  if host.is_empty() || host.eq_ignore_ascii_case("localhost") {
    return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
  }
  let bare = host
    .strip_prefix('[')
    .and_then(|h| h.strip_suffix(']'))
    .unwrap_or(host);
  match bare.parse::<IpAddr>() {
    Ok(ip) if ip.is_loopback() => Ok(ip),
    _ => Err(Error::InvalidArgument {
      argument: "options.hostname".into(),
      problem: format!(
        "must be a loopback address (127.0.0.1, ::1 or localhost), got '{host}': the terminal is served only on \
         loopback (use mode: 'ttyd' for the original's ttyd inside the box)"
      ),
    }),
  }
}

/// The terminal URL for a bound address.
pub fn terminal_url(addr: SocketAddr, token: &str) -> String {
  let host = match addr.ip() {
    IpAddr::V4(ip) => ip.to_string(),
    IpAddr::V6(ip) => format!("[{ip}]"),
  };
  format!("ws://{host}:{}/terminal/{token}/ws", addr.port())
}

/// The two framings a client may speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
  /// `@sandbank.dev/core`'s `connectTerminal`: binary type bytes 0x00 / 0x01.
  Core,
  /// ttyd 1.7: ASCII type bytes '0'…'3' and the `{…}` opening message.
  Ttyd,
}

/// A terminal size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
  pub cols: u16,
  pub rows: u16,
}

/// One client message, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
  Input(Bytes),
  Resize(Size),
  /// ttyd's opening message.
  Handshake {
    auth_token: Option<String>,
    size: Option<Size>,
  },
  Pause,
  Resume,
  /// Unknown type, empty frame or malformed payload: ignored (as ttyd does).
  Ignore,
}

/// The framing of a client's first frame, when its type byte belongs to one.
pub fn detect(first: &[u8]) -> Option<Framing> {
  match first.first()? {
    0x00 | 0x01 => Some(Framing::Core),
    b'{' | b'0' | b'1' | b'2' | b'3' => Some(Framing::Ttyd),
    _ => None,
  }
}

fn dimension(value: Option<&Value>) -> Option<u16> {
  let n = value?.as_f64()?;
  (n.is_finite() && n >= 1.0).then(|| n.min(u16::MAX as f64) as u16)
}

/// `{"columns": c, "rows": r}` → a size (both must be numbers ≥ 1).
pub fn parse_size(json: &[u8]) -> Option<Size> {
  let value: Value = serde_json::from_slice(json).ok()?;
  Some(Size {
    cols: dimension(value.get("columns"))?,
    rows: dimension(value.get("rows"))?,
  })
}

/// Decodes a frame of a client speaking `framing`.
pub fn decode(framing: Framing, frame: &[u8]) -> ClientMessage {
  let Some((&kind, payload)) = frame.split_first() else {
    return ClientMessage::Ignore;
  };
  match (framing, kind) {
    (Framing::Core, 0x00) | (Framing::Ttyd, b'0') => ClientMessage::Input(Bytes::copy_from_slice(payload)),
    (Framing::Core, 0x01) | (Framing::Ttyd, b'1') => {
      parse_size(payload).map_or(ClientMessage::Ignore, ClientMessage::Resize)
    }
    (Framing::Ttyd, b'2') => ClientMessage::Pause,
    (Framing::Ttyd, b'3') => ClientMessage::Resume,
    (Framing::Ttyd, b'{') => match serde_json::from_slice::<Value>(frame) {
      Ok(value) if value.is_object() => ClientMessage::Handshake {
        auth_token: value.get("AuthToken").and_then(Value::as_str).map(str::to_string),
        size: dimension(value.get("columns"))
          .zip(dimension(value.get("rows")))
          .map(|(cols, rows)| Size { cols, rows }),
      },
      _ => ClientMessage::Ignore,
    },
    _ => ClientMessage::Ignore,
  }
}

/// A terminal output frame (`0x00` or `'0'` + bytes).
pub fn encode_output(framing: Framing, data: &[u8]) -> Bytes {
  let mut frame = Vec::with_capacity(data.len() + 1);
  frame.push(match framing {
    Framing::Core => 0x00,
    Framing::Ttyd => b'0',
  });
  frame.extend_from_slice(data);
  Bytes::from(frame)
}

/// ttyd's greeting: `'1'` + window title, `'2'` + preferences (none).
pub fn ttyd_preamble(title: &str) -> [Bytes; 2] {
  let mut set_title = vec![b'1'];
  set_title.extend_from_slice(title.as_bytes());
  [Bytes::from(set_title), Bytes::from_static(b"2{}")]
}

/// Whether ttyd's opening message may open this terminal: an empty or absent `AuthToken` (the
/// token in the URL already authenticated the client) or the terminal's own token.
pub fn handshake_allowed(token: &str, auth_token: Option<&str>) -> bool {
  match auth_token {
    None | Some("") => true,
    Some(given) => token_matches(token, given),
  }
}

/// Keeps UTF-8 sequences whole across output chunks (core's client decodes each frame on its
/// own), holding back at most 3 bytes of an incomplete trailing sequence.
#[derive(Debug, Default)]
pub struct Utf8Carry {
  held: Vec<u8>,
}

impl Utf8Carry {
  /// The bytes that can be sent now.
  pub fn push(&mut self, data: &[u8]) -> Vec<u8> {
    let mut all = std::mem::take(&mut self.held);
    all.extend_from_slice(data);
    let cut = incomplete_tail(&all);
    self.held = all.split_off(all.len() - cut);
    all
  }

  /// Whatever is held (at the end of the output).
  pub fn finish(&mut self) -> Vec<u8> {
    std::mem::take(&mut self.held)
  }
}

/// Length of an incomplete UTF-8 sequence at the end of `data` (0 when it ends cleanly or with
/// bytes that are not UTF-8 at all, which are passed on as they are).
fn incomplete_tail(data: &[u8]) -> usize {
  for back in 1..=data.len().min(3) {
    let byte = data[data.len() - back];
    if byte & 0xC0 == 0x80 {
      continue; // continuation byte: look further back for the lead
    }
    let needed = match byte {
      0xC0..=0xDF => 2,
      0xE0..=0xEF => 3,
      0xF0..=0xF7 => 4,
      _ => return 0,
    };
    return if needed > back { back } else { 0 };
  }
  0
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn tokens_are_64_hex_digits_and_differ() {
    let (a, b) = (new_token().unwrap(), new_token().unwrap());
    assert_eq!(a.len(), 64);
    assert!(a
      .chars()
      .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_ne!(a, b);
  }

  #[test]
  fn token_comparison_needs_every_byte() {
    assert!(token_matches("abc123", "abc123"));
    assert!(!token_matches("abc123", "abc124"));
    assert!(!token_matches("abc123", "abc12"));
    assert!(!token_matches("abc123", ""));
  }

  #[test]
  fn paths_grant_only_the_terminal_token() {
    let token = "f00d";
    assert_eq!(check_path("/terminal/f00d/ws", token), PathCheck::Granted);
    assert_eq!(check_path("/terminal/f00d/ws?x=1", token), PathCheck::Granted);
    assert_eq!(check_path("/terminal/beef/ws", token), PathCheck::WrongToken);
    assert_eq!(check_path("/terminal/f00d0/ws", token), PathCheck::WrongToken);
    assert_eq!(check_path("/terminal//ws", token), PathCheck::NotFound);
    assert_eq!(check_path("/terminal/f00d/x/ws", token), PathCheck::NotFound);
    assert_eq!(check_path("/ws", token), PathCheck::NotFound);
    assert_eq!(check_path("/terminal/f00d", token), PathCheck::NotFound);
  }

  #[test]
  fn the_tty_subprotocol_is_found_in_an_offer_list() {
    assert!(offers_tty(Some("tty")));
    assert!(offers_tty(Some("binary, tty")));
    assert!(!offers_tty(Some("ttyd")));
    assert!(!offers_tty(None));
  }

  #[test]
  fn only_loopback_addresses_are_served() {
    assert_eq!(bind_address(None).unwrap(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(
      bind_address(Some("localhost")).unwrap(),
      IpAddr::V4(Ipv4Addr::LOCALHOST)
    );
    assert_eq!(bind_address(Some("127.0.0.2")).unwrap().to_string(), "127.0.0.2");
    assert_eq!(bind_address(Some("[::1]")).unwrap().to_string(), "::1");
    let err = bind_address(Some("0.0.0.0")).unwrap_err();
    assert_eq!(err.code(), "invalid_argument");
    assert!(
      err
        .to_string()
        .starts_with("options.hostname must be a loopback address"),
      "{err}"
    );
    assert!(bind_address(Some("example.com")).is_err());
  }

  #[test]
  fn urls_name_the_bound_address_and_token() {
    let v4: SocketAddr = "127.0.0.1:4567".parse().unwrap();
    assert_eq!(terminal_url(v4, "ab"), "ws://127.0.0.1:4567/terminal/ab/ws");
    let v6: SocketAddr = "[::1]:80".parse().unwrap();
    assert_eq!(terminal_url(v6, "ab"), "ws://[::1]:80/terminal/ab/ws");
  }

  #[test]
  fn the_first_frame_tells_the_framing() {
    assert_eq!(detect(b"\x00ls\r"), Some(Framing::Core));
    assert_eq!(detect(b"\x01{\"columns\":80,\"rows\":24}"), Some(Framing::Core));
    assert_eq!(
      detect(br#"{"AuthToken":"","columns":80,"rows":24}"#),
      Some(Framing::Ttyd)
    );
    assert_eq!(detect(b"0ls\r"), Some(Framing::Ttyd));
    assert_eq!(detect(b"1{\"columns\":80,\"rows\":24}"), Some(Framing::Ttyd));
    assert_eq!(detect(b""), None);
    assert_eq!(detect(b"\x05"), None);
  }

  #[test]
  fn core_frames_decode() {
    assert_eq!(
      decode(Framing::Core, b"\x00echo hi\r"),
      ClientMessage::Input(Bytes::from_static(b"echo hi\r"))
    );
    assert_eq!(
      decode(Framing::Core, b"\x01{\"columns\":100,\"rows\":30}"),
      ClientMessage::Resize(Size { cols: 100, rows: 30 })
    );
    assert_eq!(
      decode(Framing::Core, b"\x01{\"columns\":0,\"rows\":30}"),
      ClientMessage::Ignore
    );
    assert_eq!(decode(Framing::Core, b"\x01not json"), ClientMessage::Ignore);
    // ttyd's type bytes mean nothing in core's framing.
    assert_eq!(decode(Framing::Core, b"0ls"), ClientMessage::Ignore);
    assert_eq!(decode(Framing::Core, b""), ClientMessage::Ignore);
  }

  #[test]
  fn ttyd_frames_decode() {
    assert_eq!(
      decode(Framing::Ttyd, b"0ls\r"),
      ClientMessage::Input(Bytes::from_static(b"ls\r"))
    );
    assert_eq!(
      decode(Framing::Ttyd, br#"1{"columns":132,"rows":43}"#),
      ClientMessage::Resize(Size { cols: 132, rows: 43 })
    );
    assert_eq!(decode(Framing::Ttyd, b"2"), ClientMessage::Pause);
    assert_eq!(decode(Framing::Ttyd, b"3"), ClientMessage::Resume);
    assert_eq!(
      decode(Framing::Ttyd, br#"{"AuthToken":"tok","columns":120,"rows":40}"#),
      ClientMessage::Handshake {
        auth_token: Some("tok".into()),
        size: Some(Size { cols: 120, rows: 40 })
      }
    );
    assert_eq!(
      decode(Framing::Ttyd, br#"{"AuthToken":""}"#),
      ClientMessage::Handshake {
        auth_token: Some(String::new()),
        size: None
      }
    );
    assert_eq!(decode(Framing::Ttyd, b"{broken"), ClientMessage::Ignore);
    assert_eq!(decode(Framing::Ttyd, b"\x00ls"), ClientMessage::Ignore);
  }

  #[test]
  fn output_frames_carry_the_framings_type_byte() {
    assert_eq!(&encode_output(Framing::Core, b"hi")[..], b"\x00hi");
    assert_eq!(&encode_output(Framing::Ttyd, b"hi")[..], b"0hi");
    let [title, prefs] = ttyd_preamble("/bin/bash (box1)");
    assert_eq!(&title[..], b"1/bin/bash (box1)");
    assert_eq!(&prefs[..], b"2{}");
  }

  #[test]
  fn the_handshake_token_may_be_empty_or_the_terminals() {
    assert!(handshake_allowed("t0k", None));
    assert!(handshake_allowed("t0k", Some("")));
    assert!(handshake_allowed("t0k", Some("t0k")));
    assert!(!handshake_allowed("t0k", Some("guess")));
  }

  #[test]
  fn utf8_sequences_stay_whole_across_chunks() {
    let text = "aé€😀z".as_bytes().to_vec();
    for split in 0..=text.len() {
      let mut carry = Utf8Carry::default();
      let mut out = carry.push(&text[..split]);
      assert!(std::str::from_utf8(&out).is_ok(), "split at {split}");
      let second = carry.push(&text[split..]);
      assert!(std::str::from_utf8(&second).is_ok(), "split at {split}");
      out.extend(second);
      out.extend(carry.finish());
      assert_eq!(out, text);
    }
    // Bytes that are not UTF-8 pass through instead of being held forever.
    let mut carry = Utf8Carry::default();
    assert_eq!(carry.push(b"\xff\xfe"), b"\xff\xfe");
    assert_eq!(carry.push(b"\xe2\x82"), b"");
    assert_eq!(carry.finish(), b"\xe2\x82");
  }
}
