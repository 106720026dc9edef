//! Real processes timed against `examples/limited_server.rs` on loopback, in a binary of their
//! own so that the CPU-bound properties of `tests/suite.rs` do not share the machine with them:
//! two `discover` processes on one OpenAI key, and one on Claude's token limits. The two run
//! side by side; each mostly waits on its server.

#[path = "support/loopback.rs"]
mod loopback;

#[path = "anthropic_loopback.rs"]
mod anthropic_loopback;
#[path = "shared_key_loopback.rs"]
mod shared_key_loopback;
