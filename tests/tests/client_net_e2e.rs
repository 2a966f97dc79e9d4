//! Issue 16, items 2–4, end to end with the whole pair (`e2e::pair`): the agent's OpenVPN
//! server pushes `dhcp-option DNS <its tunnel address>` and `redirect-gateway def1`; a DNS
//! responder answers on the tunnel address (`TUNNEL_DNS_ANSWER`) and an "underlay" one on
//! the agent's public address (`UNDERLAY_DNS_ANSWER`), which each client namespace's own
//! resolv.conf (`/etc/netns/NS/resolv.conf`, never the host's) names.
//!
//! - DNS: lookups in the client namespace go through the tunnel while connected (answered
//!   by the agent-side responder from the client's VPN address; counted on the tun, not on
//!   the veth), and resolv.conf is restored exactly after a stop, and after a SIGKILL by the
//!   next start.
//! - Full tunnel: traffic to a host outside the VPN subnet (an "internet" namespace behind
//!   the agent) goes through the tunnel.
//! - Kill switch: with `--lockdown`, the OpenVPN server is killed in the middle of a
//!   transfer; until the client reconnects nothing leaves the client namespace outside the
//!   tunnel (nftables counters at postrouting on the veth), a host on the underlay that is
//!   not the VPN server is unreachable, and DNS does not leak; the rules go on exit, and
//!   after a SIGKILL at the next start.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use e2e::netcheck::{lookup, whoami, NftCounters};
use e2e::pair::*;
use e2e::{wait_for, wait_until, Netns};
use nix::sys::signal::Signal;

const SHORT: Duration = Duration::from_secs(3);
/// A port on the agent's public address that is not the VPN server's.
const UNDERLAY_PORT: u16 = 7008;
/// Options a server may push that the client's allow-list ignores.
const IGNORED_PUSHES: [&str; 3] = [
    "setenv-safe E2E_PUSHED yes",
    "dhcp-option NTP 10.8.0.1",
    "inactive 3600",
];

fn offering() -> OfferingSpec {
    OfferingSpec::new(100_000, "100", "100")
}

/// The kill-switch tables (`inet adapter_client_<pid>`) in `ns`.
fn lockdown_tables(ns: &Netns) -> Result<Vec<String>> {
    Ok(ns
        .run(&["nft", "list", "tables", "inet"])?
        .lines()
        .filter_map(|l| l.trim().strip_prefix("table inet "))
        .filter(|t| t.starts_with("adapter_client_"))
        .map(str::to_string)
        .collect())
}

fn adapter_pid(client: &ClientHost<'_>) -> Result<u32> {
    client.with_adapter(|p| p.pid())
}

/// SIGKILLs the client adapter (its openvpn keeps running, orphaned).
fn kill_adapter(client: &ClientHost<'_>) -> Result<()> {
    let status = client.with_adapter(|p| -> Result<_> {
        p.signal(Signal::SIGKILL)?;
        p.wait_exit(PAIR_TIMEOUT)
    })??;
    ensure!(
        status.signal() == Some(libc::SIGKILL),
        "adapter ended with {status}"
    );
    Ok(())
}

fn tcp_reachable(ns: &Netns, addr: SocketAddr) -> bool {
    ns.tcp_connect(addr, SHORT).is_ok()
}

#[test]
fn pushed_dns_goes_through_the_tunnel_and_resolv_conf_is_restored() -> Result<()> {
    run_pair_test("client_net_dns", |env| {
        let opts = PairOptions {
            shaping: false,
            ..PairOptions::default()
        };
        let pair = Pair::start(env, opts)?;
        let hash = pair.agent.publish(&offering())?;
        let client = pair.client(0)?;
        let resolv = client.resolv_conf()?;
        let original = resolv.read()?;
        let tunnel_dns = pair.agent.dns_tunnel()?;
        let underlay_dns = pair.agent.dns_underlay()?;
        let journal = env.path("client0-rt.net.json");

        // Before the tunnel: the host's own resolver answers.
        ensure!(
            lookup(&client.ns, "before.vpn.test")? == [IpAddr::V4(UNDERLAY_DNS_ANSWER)],
            "the underlay resolver does not answer"
        );

        client.accept_and_connect(&pair.agent, &hash, None)?;
        let vpn_ip = IpAddr::V4(client.vpn_ip()?);
        let pushed = format!("nameserver {}", tunnel_dns.addr().ip());
        wait_until(PAIR_TIMEOUT, "resolv.conf names the pushed server", || {
            resolv.read().is_ok_and(|t| t.lines().any(|l| l == pushed))
        })
        .with_context(|| client.adapter_log_tail(40))?;
        let text = resolv.read()?;
        ensure!(
            !text.contains(&underlay_dns.addr().ip().to_string()),
            "the host's resolver is still in resolv.conf:\n{text}"
        );
        ensure!(
            text.contains("options timeout:1 attempts:1"),
            "options kept"
        );
        ensure!(journal.is_file(), "the change is journaled while connected");

        let counters = NftCounters::install(
            &client.ns,
            &[
                (
                    "dns-veth",
                    &format!("oifname \"{}\" udp dport 53", client.link.name_b()),
                ),
                (
                    "dns-tun",
                    &format!("oifname \"{}\" udp dport 53", client.tun_dev()),
                ),
            ],
        )?;
        let got = lookup(&client.ns, "probe.vpn.test")?;
        ensure!(
            got == [IpAddr::V4(TUNNEL_DNS_ANSWER)],
            "lookup through the tunnel answered {got:?}"
        );
        let asked = tunnel_dns.queries_for("probe.vpn.test");
        ensure!(
            !asked.is_empty() && asked.iter().all(|q| q.from.ip() == vpn_ip),
            "the agent-side server saw {asked:?}, expected queries from {vpn_ip}"
        );
        ensure!(
            underlay_dns.queries_for("probe.vpn.test").is_empty(),
            "the lookup leaked to the underlay resolver"
        );
        let (on_veth, _) = counters.get("dns-veth")?;
        let (on_tun, _) = counters.get("dns-tun")?;
        ensure!(
            on_veth == 0 && on_tun >= 1,
            "DNS packets: {on_veth} on the veth, {on_tun} on the tun"
        );

        // A clean stop restores the file exactly.
        let st = client.stop()?;
        ensure!(st.success(), "adapter exit {st}");
        ensure!(
            resolv.read()? == original,
            "resolv.conf not restored after stop"
        );
        ensure!(
            !journal.exists(),
            "the journal is removed after a clean stop"
        );

        // SIGKILL: the file stays changed (and journaled) until the next start restores it.
        client.connect()?;
        client.wait_connected(PAIR_TIMEOUT)?;
        wait_until(PAIR_TIMEOUT, "resolv.conf names the pushed server", || {
            resolv.read().is_ok_and(|t| t.lines().any(|l| l == pushed))
        })?;
        kill_adapter(client)?;
        ensure!(
            resolv.read()?.lines().any(|l| l == pushed),
            "a killed adapter cannot have restored resolv.conf"
        );
        ensure!(journal.is_file(), "the journal outlives the killed adapter");
        // The next start (with DNS off, so it applies nothing itself) restores it.
        client.connect_with(&["--dns", "off"])?;
        client.wait_connected(PAIR_TIMEOUT)?;
        ensure!(
            resolv.read()? == original,
            "resolv.conf not restored at the next start"
        );
        client.with_adapter(|p| {
            p.wait_for_line(
                "restored the DNS settings an earlier run left behind",
                SHORT,
            )
        })??;
        ensure!(!journal.exists(), "the journal is removed after recovery");
        ensure!(
            lookup(&client.ns, "after.vpn.test")? == [IpAddr::V4(UNDERLAY_DNS_ANSWER)],
            "with --dns off the host's resolver answers"
        );
        let st = client.stop()?;
        ensure!(st.success(), "adapter exit {st}");
        ensure!(
            resolv.read()? == original,
            "resolv.conf changed by --dns off"
        );
        Ok(())
    })
}

#[test]
fn full_tunnel_routes_traffic_outside_the_vpn_subnet_through_the_tunnel() -> Result<()> {
    run_pair_test("client_net_full_tunnel", |env| {
        let opts = PairOptions {
            shaping: false,
            internet: true,
            // Not on the client's allow-list: OpenVPN must drop them.
            push: IGNORED_PUSHES.iter().map(|p| p.to_string()).collect(),
            ..PairOptions::default()
        };
        let pair = Pair::start(env, opts)?;
        let hash = pair.agent.publish(&offering())?;
        let client = pair.client(0)?;
        let internet = pair.agent.internet()?;
        let target = internet.whoami.addr();
        let underlay_ip = IpAddr::V4(client.link.addr_b());

        // Without the tunnel the agent routes the client's underlay address.
        ensure!(
            whoami(&client.ns, target, PAIR_TIMEOUT)? == underlay_ip,
            "before connecting the internet host sees the underlay address"
        );

        client.accept_and_connect(&pair.agent, &hash, None)?;
        let vpn_ip = IpAddr::V4(client.vpn_ip()?);
        let route = client
            .ns
            .run(&["ip", "route", "get", &internet.addr().to_string()])?;
        ensure!(
            route.contains(&format!("dev {}", client.tun_dev())),
            "the internet host is not routed into the tunnel: {route}"
        );
        let counters = NftCounters::install(
            &client.ns,
            &[
                (
                    "internet-veth",
                    &format!(
                        "oifname \"{}\" ip daddr {}",
                        client.link.name_b(),
                        internet.addr()
                    ),
                ),
                (
                    "internet-tun",
                    &format!(
                        "oifname \"{}\" ip daddr {}",
                        client.tun_dev(),
                        internet.addr()
                    ),
                ),
            ],
        )?;
        let seen = whoami(&client.ns, target, PAIR_TIMEOUT)?;
        ensure!(
            seen == vpn_ip,
            "the internet host saw {seen}, expected the VPN address {vpn_ip}"
        );
        let (on_veth, _) = counters.get("internet-veth")?;
        let (on_tun, _) = counters.get("internet-tun")?;
        ensure!(
            on_veth == 0 && on_tun >= 1,
            "packets to the internet host: {on_veth} on the veth, {on_tun} on the tun"
        );
        // The client took only allowed options: the config filters what may be pushed.
        let conf = std::fs::read_to_string(env.path("client0-rt/client.conf"))?;
        ensure!(
            conf.contains("pull-filter accept \"redirect-gateway\"")
                && conf.contains("pull-filter ignore \"\""),
            "no pull-filter allow-list in the config:\n{conf}"
        );
        for p in IGNORED_PUSHES {
            client.with_adapter(|a| {
                a.wait_for_line(&format!("Pushed option removed by filter: '{p}'"), SHORT)
            })??;
        }

        let st = client.stop()?;
        ensure!(st.success(), "adapter exit {st}");
        wait_until(PAIR_TIMEOUT, "the tunnel's routes are gone", || {
            client
                .ns
                .run(&["ip", "route", "get", &internet.addr().to_string()])
                .is_ok_and(|r| !r.contains(&format!("dev {}", client.tun_dev())))
        })?;
        ensure!(
            whoami(&client.ns, target, PAIR_TIMEOUT)? == underlay_ip,
            "after the stop the underlay is used again"
        );
        Ok(())
    })
}

#[test]
fn kill_switch_lets_nothing_out_but_the_tunnel_while_reconnecting() -> Result<()> {
    run_pair_test("client_net_lockdown", |env| {
        let opts = PairOptions {
            shaping: false,
            internet: true,
            keepalive: (1, 5),
            ..PairOptions::default()
        };
        let pair = Pair::start(env, opts)?;
        let hash = pair.agent.publish(&offering())?;
        let client = pair.client(0)?;
        let public = pair.agent.public_addr();
        let internet = pair.agent.internet()?;
        let underlay_host = SocketAddr::from((public, UNDERLAY_PORT));
        let _underlay_echo = pair.agent.ns.tcp_echo(underlay_host)?;
        ensure!(
            tcp_reachable(&client.ns, underlay_host),
            "the underlay host is reachable without the kill switch"
        );
        let market = format!("{public}:{MARKET_PORT}");

        client.accept(&pair.agent, &hash, None)?;
        client.connect_with(&["--lockdown", "--lockdown-allow", &market])?;
        client.wait_connected(PAIR_TIMEOUT)?;
        let vpn_ip = IpAddr::V4(client.vpn_ip()?);
        let table = format!("adapter_client_{}", adapter_pid(client)?);
        ensure!(
            lockdown_tables(&client.ns)? == [table.clone()],
            "kill-switch table {table} not installed"
        );

        // From here on, every packet leaving on the veth is counted: the VPN server's and
        // the market API's (allowed), anything else is a leak.
        let veth = client.link.name_b();
        let counters = NftCounters::install(
            &client.ns,
            &[
                (
                    "vpn",
                    &format!("oifname \"{veth}\" ip daddr {public} udp dport {VPN_PORT}"),
                ),
                (
                    "market",
                    &format!("oifname \"{veth}\" ip daddr {public} tcp dport {MARKET_PORT}"),
                ),
                ("leak", &format!("oifname \"{veth}\"")),
                ("tunnel", &format!("oifname \"{}\"", client.tun_dev())),
            ],
        )?;
        let no_leak = |when: &str| -> Result<()> {
            let (packets, bytes) = counters.get("leak")?;
            ensure!(
                packets == 0,
                "{packets} packets ({bytes} bytes) left the client namespace outside the tunnel {when}"
            );
            Ok(())
        };
        ensure!(
            whoami(&client.ns, internet.whoami.addr(), PAIR_TIMEOUT)? == vpn_ip,
            "connected: the internet host is reached through the tunnel"
        );
        ensure!(
            !tcp_reachable(&client.ns, underlay_host),
            "the kill switch let a connection to a host on the underlay through"
        );

        // A transfer through the tunnel; the server dies in the middle of it.
        let echo = internet.echo.local_addr();
        std::thread::scope(|s| -> Result<()> {
            let transfer = s.spawn(|| {
                pump(
                    &client.ns,
                    echo,
                    4_000_000_000,
                    Duration::from_secs(10),
                    true,
                )
            });
            wait_until(PAIR_TIMEOUT, "the transfer runs", || {
                counters.get("tunnel").is_ok_and(|(_, b)| b > 2_000_000)
            })?;
            pair.agent.kill_openvpn()?;
            wait_until(PAIR_TIMEOUT, "the client notices the dead server", || {
                client.state().ok().flatten().is_some_and(|st| {
                    st.get("phase").and_then(|p| p.as_str()) == Some("reconnecting")
                })
            })
            .with_context(|| client.adapter_log_tail(30))?;
            wait_until(PAIR_TIMEOUT, "the tun is gone", || {
                e2e::adapters::link_exists(&client.ns, client.tun_dev()).is_ok_and(|e| !e)
            })?;
            // Without the tunnel the default route leads to the agent: blocked.
            ensure!(
                !tcp_reachable(&client.ns, internet.whoami.addr()),
                "reconnecting: the internet host was reached outside the tunnel"
            );
            ensure!(
                !tcp_reachable(&client.ns, underlay_host),
                "reconnecting: a host on the underlay was reached"
            );
            ensure!(
                lookup(&client.ns, "leak.vpn.test")?.is_empty(),
                "reconnecting: a name was resolved outside the tunnel"
            );
            ensure!(
                pair.agent
                    .dns_underlay()?
                    .queries_for("leak.vpn.test")
                    .is_empty(),
                "reconnecting: a DNS query reached the underlay resolver"
            );
            no_leak("while reconnecting")?;
            let moved = transfer
                .join()
                .map_err(|_| anyhow::anyhow!("transfer thread panicked"))??;
            ensure!(moved > 0, "no data went through before the server died");
            no_leak("after the transfer was cut")?;
            Ok(())
        })?;

        pair.agent.start_openvpn()?;
        client.wait_connections(2, PAIR_TIMEOUT)?;
        let vpn_ip = IpAddr::V4(client.vpn_ip()?);
        let seen = wait_for(
            PAIR_TIMEOUT,
            "the internet host through the new tunnel",
            || Ok(whoami(&client.ns, internet.whoami.addr(), SHORT).ok()),
        )?;
        ensure!(seen == vpn_ip, "reconnected: the internet host saw {seen}");
        no_leak("until the client reconnected")?;
        let (vpn_packets, _) = counters.get("vpn")?;
        ensure!(vpn_packets > 0, "the VPN server's traffic was not counted");

        // SIGKILL: the rules stay (failing closed) until the next start removes them.
        kill_adapter(client)?;
        ensure!(
            lockdown_tables(&client.ns)? == [table.clone()],
            "the kill switch of a killed adapter must stay until the next start"
        );
        no_leak("after the adapter was killed")?;
        client.connect()?;
        client.wait_connected(PAIR_TIMEOUT)?;
        client.with_adapter(|p| {
            p.wait_for_line(&format!("removed the kill-switch table {table}"), SHORT)
        })??;
        ensure!(
            lockdown_tables(&client.ns)?.is_empty(),
            "the next start (without --lockdown) left a kill-switch table"
        );

        // Control: without the kill switch the same host is reached, and counted as a leak.
        let st = client.stop()?;
        ensure!(st.success(), "adapter exit {st}");
        ensure!(
            tcp_reachable(&client.ns, underlay_host),
            "without the kill switch the underlay host is reachable"
        );
        let (leaked, _) = counters.get("leak")?;
        ensure!(leaked > 0, "the leak counter does not count");
        Ok(())
    })
}
