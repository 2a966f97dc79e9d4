//! Harness for the end-to-end tier: real OpenVPN (and later the adapters and core-lite) in
//! Linux network namespaces that the test creates itself.
//!
//! Every resource is an RAII guard that removes what it created on drop, also when the test
//! panics, and every name carries the test's unique prefix (`TestEnv::prefix`, built from the
//! pid and a counter) so parallel runs never collide and `LeakChecker` can prove that nothing
//! was left behind.
//!
//! ```no_run
//! use e2e::*;
//! # fn t() -> anyhow::Result<()> {
//! let Some(env) = TestEnv::new("example")? else { return Ok(()) }; // skipped without root
//! let leaks = env.leak_checker();
//! {
//!     let srv_ns = env.netns()?;
//!     let cli_ns = env.netns()?;
//!     let link = env.veth(&srv_ns, &cli_ns)?;
//!     let pki = Pki::generate(&env)?;
//!     let script = write_auth_script(&env, "alice", "secret")?;
//!     let server = OpenVpnServer::new(&env, &srv_ns, &pki)
//!         .auth_user_pass_verify(&script.to_string_lossy(), AuthVia::File)
//!         .start()?;
//!     let client = OpenVpnClient::new(&env, &cli_ns, &pki, link.addr_a(), server.port())
//!         .credentials("alice", "secret")
//!         .start()?;
//!     client.wait_connected(std::time::Duration::from_secs(30))?;
//! }
//! leaks.assert_clean()?;
//! # Ok(()) }
//! ```

pub mod adapters;
mod corelite;
pub mod dashboard;
mod env;
mod iperf;
mod leaks;
pub mod netcheck;
mod netns;
mod openvpn;
pub mod pair;
mod pki;
mod proc;
pub mod prom;
mod topo;
pub mod webdriver;

pub use corelite::CoreLite;
pub use env::{bin_path, check_requirements, TestEnv, REQUIRED_ENV, SCOPE_ENV};
pub use iperf::{iperf3_server, parse_iperf3_json, Iperf3Result, Iperf3Run};
pub use leaks::LeakChecker;
pub use netns::{run_cmd, tcp_echo_roundtrip, Netns, TcpEcho, TcpForward, Veth};
pub use openvpn::{
    parse_status_v2, write_auth_script, AuthVia, OpenVpnClient, OpenVpnClientHandle, OpenVpnServer,
    OpenVpnServerHandle, Proto, StatusClient, TlsWrap, INIT_COMPLETED,
};
pub use pki::Pki;
pub use proc::{wait_for, wait_for_log_line, wait_for_tcp, wait_until, Proc, ProcBuilder};
pub use topo::TwoHosts;
