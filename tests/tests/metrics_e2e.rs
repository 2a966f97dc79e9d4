//! Issue 15 end to end: the metrics of the agent core (`/metrics`) and of the server
//! adapter's monitor (`--metrics-listen`) scraped during a real OpenVPN session in network
//! namespaces, every scrape checked by `promtool check metrics`.
//!
//! Shown here: the values move as the life cycle goes: the management connection, a login
//! (AuthClient on both sides), the session opened and shaped (tc commands), usage reported
//! (UpdateSession calls, bytes counted), a refused login counted under its code, the channel
//! terminated (a kill, status changes), the client gone (gauges back to 0). A Prometheus
//! server scrapes both during the run (OpenMetrics, the core with its metrics token): both
//! targets are up, every query of the example dashboard (`docs/grafana-dashboard.json`)
//! gives a series, and a preview of the dashboard is saved as a screenshot under
//! `target/test-artifacts/dashboard/`.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use e2e::adapters::{echo_exchange, AgentCore};
use e2e::dashboard::{evaluate, preview_html, Prometheus, Target};
use e2e::prom::{sample, scrape};
use e2e::webdriver::{artifacts_dir, Browser};
use e2e::*;
use service_api::ServiceStatus;

const TIMEOUT: Duration = Duration::from_secs(30);
const AGENT_LISTEN: &str = "127.0.0.1:7700";
const MONITOR_METRICS: &str = "127.0.0.1:9187";
const PROMETHEUS: &str = "127.0.0.1:9090";
const ECHO_PORT: u16 = 7007;
const PORT: u16 = 1194;

#[test]
fn core_and_monitor_metrics_follow_a_session() -> Result<()> {
    let Some(env) = TestEnv::with_bins("metrics_e2e", &["core-lite", "adapter-server"])? else {
        return Ok(());
    };
    let leaks = env.leak_checker();
    {
        let hosts = TwoHosts::new(&env)?;
        let (srv_ns, cli_ns) = (&hosts.server_ns, &hosts.client_ns);
        let endpoint = format!("{}:{PORT}", hosts.server_addr());
        let agent = AgentCore::create(
            &env,
            AGENT_LISTEN.parse()?,
            &endpoint,
            1000,
            Some(("8", "4")),
        )?;
        let channel = agent.new_channel(&env)?;
        let _agent_serve = agent.core.serve(&env, Some(srv_ns), agent.listen)?;
        let token = agent.core.metrics_token()?;
        let core_url = format!("{}/metrics", agent.url());
        let monitor_url = format!("http://{MONITOR_METRICS}/metrics");
        let core_metrics = || scrape(srv_ns, &core_url, Some(&token));
        let monitor_metrics = || scrape(srv_ns, &monitor_url, None);

        let mgmt = env.path("mgmt.sock");
        let server = OpenVpnServer::new(&env, srv_ns, &hosts.pki)
            .local(hosts.server_addr())
            .port(PORT)
            .management_unix(&mgmt)
            .management_client_auth(true)
            .start()?;
        let tun = server.dev().to_string();
        let ifb = env.unique_name('i');
        let monitor = agent.monitor(
            &env,
            srv_ns,
            &mgmt,
            &[
                "--client-auth",
                "--tun",
                &tun,
                "--ifb",
                &ifb,
                "--link-capacity",
                "100mbit",
                "--max-clients",
                "16",
                "--metrics-listen",
                MONITOR_METRICS,
            ],
        )?;
        monitor.wait_for_line("shaping set up", TIMEOUT)?;
        let token_file = agent.core.data_dir().join("metrics.token");
        let prometheus = Prometheus::start(
            &env,
            srv_ns,
            PROMETHEUS.parse()?,
            &[
                Target {
                    job: "core-lite",
                    addr: agent.listen,
                    token_file: Some(&token_file),
                },
                Target {
                    job: "adapter-server",
                    addr: MONITOR_METRICS.parse()?,
                    token_file: None,
                },
            ],
        )?;
        let started = unix_now();

        // Before any client.
        let m0 = wait_for(TIMEOUT, "the monitor's metrics", || {
            let m = monitor_metrics()?;
            Ok((sample(&m, "adapter_server_management_connected") == 1.0).then_some(m))
        })?;
        ensure!(sample(&m0, "adapter_server_management_connects_total") == 1.0);
        ensure!(sample(&m0, "adapter_server_clients_connected") == 0.0);
        let tc0 = sample(&m0, "adapter_server_tc_commands_total");
        ensure!(tc0 > 0.0, "the tc setup ran no command?\n{m0}");
        ensure!(
            sample(&m0, "adapter_server_tc_failures_total") == 0.0,
            "{m0}"
        );
        let c0 = core_metrics()?;
        ensure!(sample(&c0, "core_lite_sessions_open{side=\"agent\"}") == 0.0);
        ensure!(
            sample(
                &c0,
                "core_lite_channels{side=\"agent\",status=\"activating\"}"
            ) == 1.0,
            "{c0}"
        );

        // A client logs in: both sides count the login, the session and the shaping.
        let echo_addr = SocketAddr::new(server.tunnel_ip().into(), ECHO_PORT);
        let _echo = srv_ns.tcp_echo(echo_addr)?;
        let new_client = |user: &str, password: &str| {
            OpenVpnClient::new(&env, cli_ns, &hosts.pki, hosts.server_addr(), PORT)
                .credentials(user, password)
                .start()
        };
        let client = new_client(&channel.key, &channel.password)?;
        client.wait_connected(TIMEOUT)?;
        let m1 = wait_for(
            TIMEOUT,
            "the monitor to count the session and shaping",
            || {
                let m = monitor_metrics()?;
                Ok((sample(&m, "adapter_server_clients_connected") == 1.0
                    && sample(&m, "adapter_server_sessions_open") == 1.0
                    && sample(&m, "adapter_server_clients_shaped") == 1.0)
                    .then_some(m))
            },
        )?;
        ensure!(
            sample(
                &m1,
                "adapter_server_core_calls_total{call=\"AuthClient\",result=\"ok\"}"
            ) == 1.0,
            "{m1}"
        );
        ensure!(
            sample(
                &m1,
                "adapter_server_core_calls_total{call=\"StartSession\",result=\"ok\"}"
            ) == 1.0,
            "{m1}"
        );
        ensure!(
            sample(&m1, "adapter_server_tc_commands_total") > tc0,
            "{m1}"
        );
        let c1 = wait_for(TIMEOUT, "the core to count the open session", || {
            let c = core_metrics()?;
            Ok((sample(&c, "core_lite_sessions_open{side=\"agent\"}") == 1.0).then_some(c))
        })?;
        ensure!(
            sample(
                &c1,
                "core_lite_http_requests_total{operation=\"AuthClient\",code=\"ok\"}"
            ) == 1.0,
            "{c1}"
        );
        ensure!(
            sample(&c1, "core_lite_channels{side=\"agent\",status=\"active\"}") == 1.0,
            "{c1}"
        );
        ensure!(sample(&c1, "core_lite_status_changes_total{status=\"active\"}") == 1.0);

        // Usage: the reports (one UpdateSessions batch per tick at the core) and the bytes
        // counted grow.
        let updates_before = sample(
            &m1,
            "adapter_server_core_calls_total{call=\"UpdateSession\",result=\"ok\"}",
        );
        cli_ns.wait_for_tcp(echo_addr, TIMEOUT)?;
        let data: Vec<u8> = (0..1_500_000).map(|i| (i % 251) as u8).collect();
        echo_exchange(cli_ns.tcp_connect(echo_addr, TIMEOUT)?, &data, TIMEOUT)?;
        let c2 = wait_for(TIMEOUT, "the core's bytes to cover the echo", || {
            let c = core_metrics()?;
            Ok((sample(&c, "core_lite_usage_bytes_total{side=\"agent\"}")
                >= 2.0 * data.len() as f64)
                .then_some(c))
        })?;
        ensure!(
            sample(
                &c2,
                "core_lite_http_requests_total{operation=\"UpdateSessions\",code=\"ok\"}"
            ) >= 1.0,
            "{c2}"
        );
        ensure!(
            sample(
                &c2,
                "core_lite_http_request_duration_seconds_count{operation=\"UpdateSessions\"}"
            ) >= 1.0
        );
        let m2 = monitor_metrics()?;
        ensure!(
            sample(
                &m2,
                "adapter_server_core_calls_total{call=\"UpdateSession\",result=\"ok\"}"
            ) > updates_before,
            "{m2}"
        );

        // A wrong password: refused by the core, counted under its code on both sides.
        let bad = new_client(&channel.key, "not-the-password")?;
        bad.wait_auth_failed(TIMEOUT)?;
        let m3 = wait_for(TIMEOUT, "the monitor to count the refused login", || {
            let m = monitor_metrics()?;
            Ok((sample(
                &m,
                "adapter_server_core_calls_total{call=\"AuthClient\",result=\"auth_failed\"}",
            ) == 1.0)
                .then_some(m))
        })?;
        ensure!(
            sample(
                &m3,
                "adapter_server_core_errors_total{call=\"AuthClient\",kind=\"refused\"}"
            ) == 1.0,
            "{m3}"
        );
        let c3 = core_metrics()?;
        ensure!(
            sample(
                &c3,
                "core_lite_http_requests_total{operation=\"AuthClient\",code=\"auth_failed\"}"
            ) == 1.0,
            "{c3}"
        );

        // Terminated: the monitor kills the client; the gauges go back to 0.
        let kills_before = sample(&m3, "adapter_server_kills_total");
        agent.set_status(&channel.key, "terminating")?;
        client.proc.wait_exit(TIMEOUT)?;
        let m4 = wait_for(
            TIMEOUT,
            "the monitor to count the kill and the departure",
            || {
                let m = monitor_metrics()?;
                Ok((sample(&m, "adapter_server_kills_total") > kills_before
                    && sample(&m, "adapter_server_clients_connected") == 0.0
                    && sample(&m, "adapter_server_clients_closing") == 0.0)
                    .then_some(m))
            },
        )?;
        ensure!(sample(&m4, "adapter_server_sessions_open") == 0.0, "{m4}");
        ensure!(sample(&m4, "adapter_server_clients_shaped") == 0.0, "{m4}");
        ensure!(
            sample(
                &m4,
                "adapter_server_core_calls_total{call=\"StopSession\",result=\"ok\"}"
            ) >= 1.0,
            "{m4}"
        );
        ensure!(
            sample(&m4, "adapter_server_tc_failures_total") == 0.0,
            "{m4}"
        );
        let c4 = wait_for(TIMEOUT, "the core to count the terminated channel", || {
            let c = core_metrics()?;
            Ok((sample(
                &c,
                "core_lite_channels{side=\"agent\",status=\"terminated\"}",
            ) == 1.0)
                .then_some(c))
        })?;
        ensure!(sample(&c4, "core_lite_sessions_open{side=\"agent\"}") == 0.0);
        ensure!(
            sample(
                &c4,
                "core_lite_status_changes_total{status=\"terminating\"}"
            ) == 1.0
        );
        ensure!(sample(&c4, "core_lite_status_changes_total{status=\"terminated\"}") == 1.0);
        ensure!(sample(&c4, "core_lite_storage_writable") == 1.0);
        ensure!(
            agent.channel(&channel.key)?.status == ServiceStatus::Terminated,
            "channel not terminated"
        );
        // No client key in either.
        for text in [&c4, &m4] {
            ensure!(!text.contains(&channel.key), "a client key in the metrics");
        }

        // Prometheus scraped both (OpenMetrics; the core with its token), and every query of
        // the dashboard gives a series.
        wait_until(
            TIMEOUT,
            "prometheus to have scraped the final state",
            || {
                let q = |expr: &str| prometheus.instant(srv_ns, expr);
                let kills = q("max(adapter_server_kills_total)");
                let connected = q("max(adapter_server_clients_connected)");
                let open = q("max(core_lite_sessions_open{side=\"agent\"})");
                let up = |job: &str| q(&format!("up{{job=\"{job}\"}}"));
                matches!(kills, Ok(Some(k)) if k >= 1.0)
                    && matches!(connected, Ok(Some(c)) if c == 0.0)
                    && matches!(open, Ok(Some(o)) if o == 0.0)
                    && matches!(up("core-lite"), Ok(Some(u)) if u == 1.0)
                    && matches!(up("adapter-server"), Ok(Some(u)) if u == 1.0)
            },
        )
        .with_context(|| format!("prometheus log:\n{}", prometheus.proc.log_tail(20)))?;
        // Steps of 1 s ending now, so the last point is the state just checked.
        let end = unix_now();
        let data = evaluate(&prometheus, srv_ns, end - (end - started).floor(), end)?;
        let shots = artifacts_dir("dashboard");
        std::fs::create_dir_all(&shots)?;
        let page = shots.join("dashboard-preview.html");
        std::fs::write(&page, preview_html(&data)?)?;
        if let Some(browser) = Browser::start(&env)? {
            browser.set_window_size(1400, 1800)?;
            browser.goto(&format!("file://{}", page.display()))?;
            browser.wait_for("body[data-ready=yes]", TIMEOUT)?;
            browser.screenshot(&shots.join("dashboard.png"))?;
            eprintln!("dashboard preview: {}", shots.display());
        }

        let status = monitor.terminate(TIMEOUT)?;
        ensure!(status.success(), "monitor exited with {status}");
    }
    leaks.wait_clean(TIMEOUT)?;
    Ok(())
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
