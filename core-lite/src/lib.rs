//! core-lite: the light core of the VPN service module pair.
//!
//! Templates and offerings ([`template`], [`offering`]), keys and secrets ([`keys`]), SQLite
//! storage ([`db`]), the HTTP server ([`server`]), the command line ([`cli`]) and an
//! in-process [`testkit`]. The wire contract is the `service-api` crate.

// The OpenAPI document is one large json! literal.
#![recursion_limit = "512"]

pub mod billing;
pub mod cli;
pub mod db;
pub mod keys;
pub mod market;
pub mod offering;
pub mod openapi;
pub mod server;
pub mod service;
pub mod template;
pub mod testkit;
