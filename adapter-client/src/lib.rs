//! Client adapter of the VPN service module pair (DESIGN.md §5).
//!
//! - [`render`]: access message → OpenVPN client config (allow-list, pure).
//! - [`mgmt`]: management interface line parser (pure) and commands.
//! - [`openvpn`]: the `openvpn` child (`OpenVpnCommand`).
//! - [`shaping`]: speed limits with tc (`TcCommand`, `ShapingPlan`).
//! - [`connect`]: the connection actor (sessions, reconnects, stop).
//! - [`runtime`], [`state`]: the private runtime directory and the state file.
//! - [`cli`]: command line and config file.

pub mod cli;
pub mod connect;
pub mod mgmt;
pub mod openvpn;
pub mod render;
pub mod runtime;
pub mod shaping;
pub mod state;
