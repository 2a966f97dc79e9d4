//! The usual layout of a VPN test.

use std::net::Ipv4Addr;

use anyhow::Result;

use crate::env::TestEnv;
use crate::netns::{Netns, Veth};
use crate::pki::Pki;

/// An OpenVPN server host and a client host (two namespaces) joined by a veth pair
/// (`10.99.X.1` on the server side, `10.99.X.2` on the client side), plus a fresh PKI.
/// Declare it before the processes that run in it, so they are stopped first.
pub struct TwoHosts {
    pub server_ns: Netns,
    pub client_ns: Netns,
    pub link: Veth,
    pub pki: Pki,
}

impl TwoHosts {
    pub fn new(env: &TestEnv) -> Result<TwoHosts> {
        let server_ns = env.netns()?;
        let client_ns = env.netns()?;
        let link = env.veth(&server_ns, &client_ns)?;
        let pki = Pki::generate(env)?;
        Ok(TwoHosts {
            server_ns,
            client_ns,
            link,
            pki,
        })
    }

    /// The server host's address on the link (what clients use as `remote`).
    pub fn server_addr(&self) -> Ipv4Addr {
        self.link.addr_a()
    }

    /// The client host's address on the link.
    pub fn client_addr(&self) -> Ipv4Addr {
        self.link.addr_b()
    }
}
