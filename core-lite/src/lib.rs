//! core-lite: the light core of the VPN service module pair.
//!
//! - [`api`]: wire types and the typed client (always built; no server stack).
//! - with the `server` feature (default): templates and offerings ([`template`],
//!   [`offering`]), keys and secrets ([`keys`]), SQLite storage ([`db`]), the HTTP server
//!   ([`server`]), the command line ([`cli`]) and an in-process [`testkit`].

// The OpenAPI document is one large json! literal.
#![recursion_limit = "512"]

pub mod api;

#[cfg(feature = "server")]
pub mod billing;
#[cfg(feature = "server")]
pub mod cli;
#[cfg(feature = "server")]
pub mod db;
#[cfg(feature = "server")]
pub mod keys;
#[cfg(feature = "server")]
pub mod market;
#[cfg(feature = "server")]
pub mod offering;
#[cfg(feature = "server")]
pub mod openapi;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod service;
#[cfg(feature = "server")]
pub mod template;
#[cfg(feature = "server")]
pub mod testkit;
