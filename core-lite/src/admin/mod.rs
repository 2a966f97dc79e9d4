//! The admin commands behind the `core-lite` command line: opening a data dir, modules,
//! products, offerings, channels, access messages and tokens, and the file helpers they
//! use (bounded reads, 0600 atomic writes).
//!
//! | module | holds |
//! |---|---|
//! | `open` | [`Core::open`](crate::service::Core::open): the data dir |
//! | `tokens` | the admin token file, client tokens |
//! | `modules` | `module register`, `module list` ([`Registered`]) |
//! | `products` | `product create`, `list`, `show` ([`ProductInfo`]) |
//! | `offerings` | `offering publish`, `list`, `show`, `verify` ([`OfferingInfo`]) |
//! | `channels` | `channel create`, `list`, `show`, `set-status` |
//! | `access` | `access export`, `access import` |
//! | `files` | [`read_json_file`], [`write_private_file`] |

mod access;
mod channels;
mod files;
mod modules;
mod offerings;
mod open;
mod products;
mod tokens;

pub use files::{read_bounded, read_json_file, write_private_file, MAX_INPUT_FILE};
pub use modules::Registered;
pub use offerings::OfferingInfo;
pub use products::ProductInfo;
