//! Client adapter of the VPN service module pair (DESIGN.md §5).
//!
//! - [`render`]: access message → OpenVPN client config (allow-list, pure).
//! - [`openvpn`]: the `openvpn` child (`OpenVpnCommand`).
//! - [`connect`]: the connection actor (sessions, reconnects, suspension, stop): the
//!   `openvpn` process behind a trait, core calls spawned with their answers as events,
//!   the connection state as enums with pure transitions.
//! - [`runtime`], [`state`]: the private runtime directory and the state file.
//! - [`dns`]: the DNS servers the VPN server pushes, applied through systemd-resolved or
//!   `/etc/resolv.conf` while the tunnel is up; [`lockdown`]: the kill switch (nftables);
//!   [`journal`]: what they changed, undone at the next start after a crash;
//!   [`netguard`]: the connection actor's hooks into them; [`tool`]: their programs.
//! - [`up`]: the end user's commands `up` (from an agent's address to a protected
//!   connection in one command), `ls` and `down`, on top of the client core's client-role
//!   Service API and [`connect`].
//! - [`cli`]: command line and config file.
//!
//! The management-interface protocol is the `openvpn-mgmt` crate and the `tc` shaping the
//! `tc-shaper` crate (`ShapingPlan`), both shared with adapter-server.

pub mod cli;
pub mod connect;
pub mod dns;
pub mod journal;
pub mod lockdown;
pub mod netguard;
pub mod openvpn;
pub mod render;
pub mod runtime;
pub mod state;
pub mod tool;
pub mod up;
