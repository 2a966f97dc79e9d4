//! The `core-lite` binary driven by the harness: CLI with JSON output, `serve` inside a
//! namespace, and `serve` on the host reached from a namespace through `forward_to_host`
//! (the way adapters inside namespaces reach a core on the host).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use e2e::*;

const TIMEOUT: Duration = Duration::from_secs(30);

fn http_get(mut stream: TcpStream, path: &str) -> Result<String> {
    stream.set_read_timeout(Some(TIMEOUT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: core\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

fn free_loopback_port() -> Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

#[test]
fn core_lite_serves_in_a_namespace_and_from_the_host_through_a_forward() -> Result<()> {
    let Some(env) = TestEnv::with_bins("core_lite_bin", &["core-lite"])? else {
        return Ok(());
    };
    let leaks = env.leak_checker();
    {
        let module_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../templates/vpn");
        let module_dir = module_dir.to_str().context("non-UTF-8 path")?;
        let agent = CoreLite::new(&env, "agent-core")?;
        let module = agent.cli_field(&["module", "register", module_dir], "module")?;
        ensure!(module == "vpn", "registered module {module:?}");

        let ns = env.netns()?;
        // A core inside the namespace, on the namespace's own loopback.
        let inside: SocketAddr = "127.0.0.1:7700".parse()?;
        let client_core = CoreLite::new(&env, "client-core")?;
        let _serve_inside = client_core.serve(&env, Some(&ns), inside)?;
        let reply = http_get(ns.tcp_connect(inside, TIMEOUT)?, "/openapi.json")?;
        ensure!(reply.starts_with("HTTP/1.1 200"), "inside: {reply:.200}");

        // A core on the host, reached from inside the namespace at 127.0.0.1:7701.
        let host_addr = free_loopback_port()?;
        let _serve_host = agent.serve(&env, None, host_addr)?;
        let forwarded: SocketAddr = "127.0.0.1:7701".parse()?;
        let _fwd = ns.forward_to_host(forwarded, host_addr)?;
        let reply = http_get(ns.tcp_connect(forwarded, TIMEOUT)?, "/openapi.json")?;
        ensure!(reply.starts_with("HTTP/1.1 200"), "forwarded: {reply:.200}");
    }
    leaks.wait_clean(TIMEOUT)?;
    Ok(())
}
