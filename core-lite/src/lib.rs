//! core-lite: the light core of the VPN service module pair. It keeps service modules
//! (templates), products, signed offerings, channels, credentials, sessions and usage in
//! SQLite, applies the billing rules, serves the Service API over HTTP/JSON to the two
//! adapters and, between an agent's core and a client's, the market protocol. The wire
//! contract is the `service-api` crate.
//!
//! Layers, each using only those below it:
//!
//! | module | holds |
//! |---|---|
//! | [`cli`] | the `core-lite` command line |
//! | [`server`] | HTTP: the Service API router, the market router, extractors, errors |
//! | [`market`] | the market: agent side, client side (fetch, accept, payer), its HTTP client, signing |
//! | [`admin`] | admin commands (modules, products, offerings, channels, access, tokens), file helpers |
//! | [`service`] | the Service API operations on a [`Core`](service::Core) |
//! | [`error`] | [`CoreError`](error::CoreError) and its wire codes |
//! | [`store`] | all SQL: the SQLite pool, migrations, one module per table |
//! | [`offering`], [`template`] | offerings (terms, rules, signing) and module templates |
//! | [`billing`] | money (cost, deposits), the status rules and timers: pure functions of a channel's state |
//! | [`signing`] | signed messages between cores: the agent's signed access message, what a signature covers |
//! | [`keys`], [`jcs`], [`validation`] | keys and secrets, canonical JSON and hashes, field errors |
//! | [`openapi`] | the OpenAPI document served at `/openapi.json` |
//! | [`metrics`] | Prometheus metrics (`GET /metrics`): the request layer, the store's commits, numbers read from the database |
//! | [`ui`] | the web console at `/ui` and its admin JSON endpoints under `/v1/admin/` |
//! | [`usage_series`] | a channel's usage over time at a fixed resolution (the console's plot) |
//!
//! With the cargo feature `testkit`, `testkit` runs an in-process core for tests (a real
//! server on loopback over a temporary data dir); production builds do not contain it.

// The OpenAPI document is one large json! literal.
#![recursion_limit = "512"]

pub mod admin;
pub mod billing;
pub mod cli;
pub mod config;
pub mod error;
pub mod jcs;
pub mod keys;
pub mod market;
pub mod metrics;
pub mod offering;
pub mod openapi;
pub mod server;
pub mod service;
pub mod signing;
pub mod store;
pub mod template;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod ui;
pub mod usage_series;
pub mod validation;
