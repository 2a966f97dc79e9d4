//! tc-shaper: speed limits with Linux `tc` for both adapters of the VPN module pair.
//!
//! - [`command`]: [`TcCommand`], one `tc` or `ip` invocation built without running
//!   anything (argument lists are unit-tested), and [`Tools`] (where `tc` and `ip` are).
//! - [`run`]: the runner — stderr kept in the [`ShapingError`], removals that find the
//!   object already gone are not errors ([`is_missing_error`]).
//! - [`rate`]: rates (`1gbit`, …), device names, HTB rate/ceil rules.
//! - [`filter`]: `u32` filters that send one address to one class, for IPv4
//!   (`match ip dst|src A/32`) and IPv6 (`match ip6 dst|src A/128`), in 256-bucket hash
//!   tables keyed on the address's last octet so a packet is classified in O(1).
//! - [`per_client`]: the server's plan — one HTB tree on the tun egress (download) and one
//!   on an IFB fed from the tun ingress (upload), a class and filters per client, ids from
//!   a [`SlotAllocator`]; [`Shaper`] runs it and remembers what each client has.
//! - [`tunnel`]: the client's plan ([`ShapingPlan`]) — the whole tunnel limited, upload on
//!   the tun egress and download through an IFB.
//!
//! Kernel facts this relies on (DESIGN.md §4): HTB, the ingress qdisc, `u32` (hash tables
//! too, IPv4 and IPv6), the `mirred` action and IFB devices exist; `flower`, `police` and
//! `gact` do not. A class directly under the root cannot borrow, so every shaped class
//! hangs under a parent class.

pub mod command;
pub mod error;
pub mod filter;
pub mod per_client;
pub mod rate;
pub mod run;
pub mod shaper;
pub mod slots;
pub mod tunnel;

pub use command::{Op, TcCommand, Tools};
pub use error::ShapingError;
pub use filter::{Direction, Family};
pub use per_client::{
    class_minor, client_add_commands, client_remove_commands, filter_item, ipv6_cleanup_commands,
    ipv6_setup_commands, setup_cleanup_commands, setup_commands, ClientAddrs, ClientShape,
    ShapingConfig, MAX_SLOTS,
};
pub use rate::{check_dev, class_rates, default_ifb, parse_rate, Rate, MIN_RATE_BPS};
pub use run::{is_missing_error, run_all, run_each};
pub use shaper::Shaper;
pub use slots::SlotAllocator;
pub use tunnel::ShapingPlan;
