//! Storage: all SQL of the core lives here and only here.
//!
//! [`Db`] is one database behind one interface, with two backends: SQLite (`sqlite`: one
//! writer with group commit, a few readers, migrations keyed by `user_version`), the default,
//! and PostgreSQL (`pg`: a pool of async connections, the same migrations as `pg_schema`,
//! versioned in a table), which several cores can share. Each table, or group of tables,
//! has a module of functions that take the opaque [`Tx`] handle of [`Db::write`] or
//! [`Db::read`] and give rows back as named structs; their SQL runs unchanged on both
//! engines ([`Row`] and [`Arg`] are the values in and out). The layers above see no SQL.
//! `stats` is what the storage reports about its commits for the metrics.
//!
//! | module | tables |
//! |---|---|
//! | [`modules`] | `modules` |
//! | [`products`] | `products` |
//! | [`tokens`] | `tokens` |
//! | [`offerings`] | `offerings` |
//! | [`channels`] | `channels` |
//! | [`sessions`] | `sessions` |
//! | [`status_history`] | `status_history` |
//! | [`market`] | `market_offerings`, `cheques` and the market columns of `channels` |
//! | [`buyer`] | the client's channels as ListChannels shows them (`channels`, `sessions`, `market_offerings`) |
//! | [`usage_series`] | `usage_buckets` (a channel's usage over time, for the console) |
//! | [`overview`] | read-only aggregates for the metrics, a channel's sessions for the console |

mod codec;
mod db;
mod error;
mod migrations;
mod pg;
mod pg_schema;
mod sqlite;
mod stats;

pub mod buyer;
pub mod channels;
pub mod claims;
pub mod market;
pub mod modules;
pub mod offerings;
pub mod overview;
pub mod products;
pub mod sessions;
pub mod status_history;
pub mod tokens;
pub mod usage_series;

pub use db::{Arg, Column, ColumnIndex, Db, Location, Row, Tx, WriteFault};
pub use error::StoreError;
pub use stats::{StoreStats, WriteFailure};
