//! TLS for a whole stream, with rustls (ring provider): `config` builds client and server
//! settings from PEM, `session` runs a session over a socket, `errors` maps rustls failures to
//! Python's `ssl` errors.

mod config;
mod errors;
mod session;

pub use config::{server_config, server_name, ClientSettings, Pem};
pub use session::TlsSession;
