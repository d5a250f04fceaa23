//! Remote mode: `BoxClient` over the HTTP dialects BoxLite and BoxRun servers speak (`sse-ref`,
//! `sse-serve`, `current`, `boxrun`; see `docs/dialects.md`).
//!
//! Layout:
//! * `dialect/` — one module per dialect behind the `Profile` trait: paths, request bodies,
//!   output and stdin mechanisms, kills, quirks, features. Start there to see what a server gets.
//! * `detect` — which dialect a server speaks, and its tenant prefix.
//! * `client` — the `BoxClient` implementation; `exec` — executions (output, stdin, kills,
//!   timeouts, ownership).
//! * `request` (requests as data) and `wire` (tolerant reply parsing), both sans IO.
//! * `transport` — the only module that sends: every HTTP request goes through
//!   `Transport::dispatch`, every WebSocket through `Transport::open_websocket`; `auth` holds
//!   the token cache rules, `tls` the TLS set-up, `proxy` the
//!   WebSocket's way through a proxy, `body` the bounds on streamed bodies.
//! * `sse` and `ws` decode event streams and attach frames; `events` turns them into exec
//!   events; `attach_upload` and `boxrun_files` carry tar transfers where servers cannot;
//!   `box_terminal` is BoxRun's own terminal WebSocket.

mod attach_upload;
mod auth;
mod body;
mod box_terminal;
mod boxrun_files;
mod client;
mod detect;
mod dialect;
mod events;
mod exec;
mod proxy;
mod request;
mod sse;
mod tls;
mod transport;
mod wire;
mod ws;

pub use client::{connect, connect_with, RestClient};
pub use dialect::Dialect;
pub use transport::Tuning;
