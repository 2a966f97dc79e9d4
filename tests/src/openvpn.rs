//! Builders for real OpenVPN servers and plain clients inside test namespaces.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::env::TestEnv;
use crate::netns::{run_cmd, Netns};
use crate::pki::Pki;
use crate::proc::{Proc, ProcBuilder};

/// OpenVPN's line once the tunnel is up (server: listening; client: connected).
pub const INIT_COMPLETED: &str = "Initialization Sequence Completed";
/// How long `OpenVpnServer::start` waits for `INIT_COMPLETED`.
const SERVER_START_TIMEOUT: Duration = Duration::from_secs(30);

/// Transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Udp,
    Tcp,
}

/// How `auth-user-pass-verify` hands over the credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthVia {
    /// A temporary file (first line username, second password) named in `$1`.
    File,
    /// Environment variables `username` and `password`.
    Env,
}

/// Control-channel wrapping with the PKI's static key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsWrap {
    /// `tls-crypt` (default).
    Crypt,
    /// `tls-auth` with key direction 0 (server) / 1 (client).
    Auth,
    /// Neither.
    None,
}

/// Quotes a config-file argument; rejects characters the quoting cannot carry.
fn quote(value: &str) -> Result<String> {
    if value.contains(['"', '\\', '\n', '\r']) {
        bail!("{value:?} cannot be written into an OpenVPN config (quote, backslash or newline)");
    }
    Ok(format!("\"{value}\""))
}

fn quote_path(path: &Path) -> Result<String> {
    match path.to_str() {
        Some(s) => quote(s),
        None => bail!("path {} is not UTF-8", path.display()),
    }
}

fn tls_wrap_line(out: &mut String, pki: &Pki, wrap: TlsWrap, direction: u8) -> Result<()> {
    match wrap {
        TlsWrap::Crypt => writeln!(out, "tls-crypt {}", quote_path(&pki.tls_crypt)?)?,
        TlsWrap::Auth => writeln!(out, "tls-auth {} {direction}", quote_path(&pki.tls_auth)?)?,
        TlsWrap::None => {}
    }
    Ok(())
}

/// Builder of an OpenVPN server config (tun, `topology subnet`, `server 10.8.X.0/24` with a
/// unique X, `dh none`, `verify-client-cert none`, `username-as-common-name`,
/// `script-security 2`), started inside a namespace.
pub struct OpenVpnServer<'a> {
    env: &'a TestEnv,
    ns: &'a Netns,
    pki: &'a Pki,
    proto: Proto,
    port: u16,
    local: Option<Ipv4Addr>,
    subnet: u8,
    dev: String,
    tls: TlsWrap,
    auth_verify: Option<(String, AuthVia)>,
    client_connect: Option<String>,
    client_disconnect: Option<String>,
    management: Option<PathBuf>,
    management_client_auth: bool,
    max_clients: Option<u32>,
    duplicate_cn: bool,
    keepalive: Option<(u32, u32)>,
    status: Option<(PathBuf, u32)>,
    setenv: Vec<(String, String)>,
    extra: Vec<String>,
}

impl<'a> OpenVpnServer<'a> {
    pub fn new(env: &'a TestEnv, ns: &'a Netns, pki: &'a Pki) -> Self {
        OpenVpnServer {
            env,
            ns,
            pki,
            proto: Proto::Udp,
            port: 1194,
            local: None,
            subnet: env.next_subnet(),
            dev: env.unique_name('t'),
            tls: TlsWrap::Crypt,
            auth_verify: None,
            client_connect: None,
            client_disconnect: None,
            management: None,
            management_client_auth: false,
            max_clients: None,
            duplicate_cn: false,
            keepalive: Some((10, 60)),
            status: None,
            setenv: Vec::new(),
            extra: Vec::new(),
        }
    }

    /// Default UDP.
    pub fn proto(mut self, proto: Proto) -> Self {
        self.proto = proto;
        self
    }

    /// `setenv NAME "VALUE"`: OpenVPN runs its scripts with a clean environment (no PATH,
    /// nothing of its own environment), so this is how a hook gets variables such as
    /// `ADAPTER_SERVER_*`; script arguments also work (`client_connect("/x hook --flag")`).
    pub fn setenv(mut self, name: &str, value: &str) -> Self {
        self.setenv.push((name.to_string(), value.to_string()));
        self
    }

    /// Default 1194.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// `local ADDR` (default: all addresses of the namespace).
    pub fn local(mut self, addr: Ipv4Addr) -> Self {
        self.local = Some(addr);
        self
    }

    /// X of `10.8.X.0/24` (default: unique per process).
    pub fn subnet(mut self, x: u8) -> Self {
        self.subnet = x;
        self
    }

    /// Default `TlsWrap::Crypt`.
    pub fn tls_wrap(mut self, wrap: TlsWrap) -> Self {
        self.tls = wrap;
        self
    }

    /// `auth-user-pass-verify "CMD" via-file|via-env`. `cmd` is a program path optionally
    /// followed by space-separated arguments (no quotes or backslashes).
    pub fn auth_user_pass_verify(mut self, cmd: &str, via: AuthVia) -> Self {
        self.auth_verify = Some((cmd.to_string(), via));
        self
    }

    /// `client-connect "CMD"` (same form as `auth_user_pass_verify`).
    pub fn client_connect(mut self, cmd: &str) -> Self {
        self.client_connect = Some(cmd.to_string());
        self
    }

    /// `client-disconnect "CMD"`.
    pub fn client_disconnect(mut self, cmd: &str) -> Self {
        self.client_disconnect = Some(cmd.to_string());
        self
    }

    /// `management PATH unix` (a unix socket reachable from any namespace).
    pub fn management_unix(mut self, path: impl Into<PathBuf>) -> Self {
        self.management = Some(path.into());
        self
    }

    /// `management-client-auth` (needs `management_unix`).
    pub fn management_client_auth(mut self, on: bool) -> Self {
        self.management_client_auth = on;
        self
    }

    pub fn max_clients(mut self, n: u32) -> Self {
        self.max_clients = Some(n);
        self
    }

    pub fn duplicate_cn(mut self, on: bool) -> Self {
        self.duplicate_cn = on;
        self
    }

    /// `keepalive PING RESTART` (default 10 60; `None` omits it).
    pub fn keepalive(mut self, ping_restart: Option<(u32, u32)>) -> Self {
        self.keepalive = ping_restart;
        self
    }

    /// `status PATH SECONDS` with `status-version 2` (read it with
    /// `OpenVpnServerHandle::clients`).
    pub fn status_file(mut self, path: impl Into<PathBuf>, seconds: u32) -> Self {
        self.status = Some((path.into(), seconds));
        self
    }

    /// Any further directive line, written verbatim at the end.
    pub fn extra(mut self, directive: &str) -> Self {
        self.extra.push(directive.to_string());
        self
    }

    /// The config file text.
    pub fn config_text(&self) -> Result<String> {
        let mut c = String::new();
        writeln!(c, "# OpenVPN server written by the e2e harness")?;
        writeln!(c, "server 10.8.{}.0 255.255.255.0", self.subnet)?;
        writeln!(c, "topology subnet")?;
        writeln!(c, "dev {}", self.dev)?;
        writeln!(c, "dev-type tun")?;
        writeln!(c, "disable-dco")?;
        match self.proto {
            Proto::Udp => writeln!(c, "proto udp")?,
            Proto::Tcp => writeln!(c, "proto tcp-server")?,
        }
        writeln!(c, "port {}", self.port)?;
        if let Some(local) = self.local {
            writeln!(c, "local {local}")?;
        }
        writeln!(c, "ca {}", quote_path(&self.pki.ca_cert)?)?;
        writeln!(c, "cert {}", quote_path(&self.pki.server_cert)?)?;
        writeln!(c, "key {}", quote_path(&self.pki.server_key)?)?;
        writeln!(c, "dh none")?;
        tls_wrap_line(&mut c, self.pki, self.tls, 0)?;
        writeln!(c, "verify-client-cert none")?;
        writeln!(c, "username-as-common-name")?;
        writeln!(c, "script-security 2")?;
        writeln!(c, "tmp-dir {}", quote_path(self.env.dir())?)?;
        for (name, value) in &self.setenv {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
            {
                bail!("bad environment variable name {name:?}");
            }
            writeln!(c, "setenv {name} {}", quote(value)?)?;
        }
        if let Some((cmd, via)) = &self.auth_verify {
            let via = match via {
                AuthVia::File => "via-file",
                AuthVia::Env => "via-env",
            };
            writeln!(c, "auth-user-pass-verify {} {via}", quote(cmd)?)?;
        }
        if let Some(cmd) = &self.client_connect {
            writeln!(c, "client-connect {}", quote(cmd)?)?;
        }
        if let Some(cmd) = &self.client_disconnect {
            writeln!(c, "client-disconnect {}", quote(cmd)?)?;
        }
        if let Some(path) = &self.management {
            writeln!(c, "management {} unix", quote_path(path)?)?;
        }
        if self.management_client_auth {
            if self.management.is_none() {
                bail!("management_client_auth needs management_unix");
            }
            writeln!(c, "management-client-auth")?;
        }
        if let Some(n) = self.max_clients {
            writeln!(c, "max-clients {n}")?;
        }
        if self.duplicate_cn {
            writeln!(c, "duplicate-cn")?;
        }
        if let Some((ping, restart)) = self.keepalive {
            writeln!(c, "keepalive {ping} {restart}")?;
        }
        if let Some((path, secs)) = &self.status {
            writeln!(c, "status {} {secs}", quote_path(path)?)?;
            writeln!(c, "status-version 2")?;
        }
        writeln!(c, "verb 3")?;
        for line in &self.extra {
            writeln!(c, "{line}")?;
        }
        Ok(c)
    }

    /// Writes the config, starts `openvpn` in the namespace and waits for
    /// "Initialization Sequence Completed".
    pub fn start(self) -> Result<OpenVpnServerHandle> {
        let handle = self.start_no_wait()?;
        handle
            .proc
            .wait_for_line(INIT_COMPLETED, SERVER_START_TIMEOUT)
            .context("starting the OpenVPN server")?;
        Ok(handle)
    }

    /// Like `start` without waiting (e.g. with `management-hold` in `extra`).
    pub fn start_no_wait(self) -> Result<OpenVpnServerHandle> {
        let config = self.env.path(&format!("{}.server.conf", self.dev));
        std::fs::write(&config, self.config_text()?)
            .with_context(|| format!("writing {}", config.display()))?;
        let proc = ProcBuilder::new("openvpn")
            .arg("--config")
            .arg(&config)
            .netns(self.ns)
            .label("openvpn-server")
            .current_dir(self.env.dir())
            .spawn(self.env)?;
        Ok(OpenVpnServerHandle {
            proc,
            config,
            dev: self.dev,
            proto: self.proto,
            port: self.port,
            subnet: self.subnet,
            management: self.management,
            status: self.status.map(|(path, _)| path),
        })
    }
}

/// A running OpenVPN server (the process stops when this is dropped).
pub struct OpenVpnServerHandle {
    pub proc: Proc,
    config: PathBuf,
    dev: String,
    proto: Proto,
    port: u16,
    subnet: u8,
    management: Option<PathBuf>,
    status: Option<PathBuf>,
}

impl OpenVpnServerHandle {
    /// The connected clients from the status file (needs `status_file`; OpenVPN rewrites it
    /// every SECONDS, so poll with `wait_for`). Empty while the file does not exist yet.
    pub fn clients(&self) -> Result<Vec<StatusClient>> {
        let Some(path) = &self.status else {
            bail!("the server has no status file (use OpenVpnServer::status_file)");
        };
        match std::fs::read_to_string(path) {
            Ok(text) => parse_status_v2(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn proto(&self) -> Proto {
        self.proto
    }

    /// The tun device name (inside the server's namespace).
    pub fn dev(&self) -> &str {
        &self.dev
    }

    /// X of `10.8.X.0/24`.
    pub fn subnet(&self) -> u8 {
        self.subnet
    }

    /// The server's tunnel address `10.8.X.1`.
    pub fn tunnel_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 8, self.subnet, 1)
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    pub fn management_path(&self) -> Option<&Path> {
        self.management.as_deref()
    }
}

/// Builder of a plain OpenVPN client (no adapter): `client`, tun, `remote-cert-tls server`,
/// `auth-user-pass FILE`, `auth-retry none` (so AUTH_FAILED ends the process).
pub struct OpenVpnClient<'a> {
    env: &'a TestEnv,
    ns: &'a Netns,
    pki: &'a Pki,
    remote: Ipv4Addr,
    port: u16,
    proto: Proto,
    dev: String,
    tls: TlsWrap,
    credentials: Option<(String, String)>,
    extra: Vec<String>,
}

impl<'a> OpenVpnClient<'a> {
    pub fn new(env: &'a TestEnv, ns: &'a Netns, pki: &'a Pki, remote: Ipv4Addr, port: u16) -> Self {
        OpenVpnClient {
            env,
            ns,
            pki,
            remote,
            port,
            proto: Proto::Udp,
            dev: env.unique_name('t'),
            tls: TlsWrap::Crypt,
            credentials: None,
            extra: Vec::new(),
        }
    }

    /// Default UDP.
    pub fn proto(mut self, proto: Proto) -> Self {
        self.proto = proto;
        self
    }

    /// Default `TlsWrap::Crypt`.
    pub fn tls_wrap(mut self, wrap: TlsWrap) -> Self {
        self.tls = wrap;
        self
    }

    /// Username and password for `auth-user-pass` (written to a 0600 file).
    pub fn credentials(mut self, user: &str, password: &str) -> Self {
        self.credentials = Some((user.to_string(), password.to_string()));
        self
    }

    /// Any further directive line, written verbatim at the end.
    pub fn extra(mut self, directive: &str) -> Self {
        self.extra.push(directive.to_string());
        self
    }

    fn auth_file(&self) -> PathBuf {
        self.env.path(&format!("{}.auth", self.dev))
    }

    /// The config file text.
    pub fn config_text(&self) -> Result<String> {
        let mut c = String::new();
        writeln!(c, "# OpenVPN client written by the e2e harness")?;
        writeln!(c, "client")?;
        writeln!(c, "dev {}", self.dev)?;
        writeln!(c, "dev-type tun")?;
        writeln!(c, "disable-dco")?;
        match self.proto {
            Proto::Udp => writeln!(c, "proto udp")?,
            Proto::Tcp => writeln!(c, "proto tcp-client")?,
        }
        writeln!(c, "remote {} {}", self.remote, self.port)?;
        writeln!(c, "nobind")?;
        writeln!(c, "connect-retry 1")?;
        writeln!(c, "ca {}", quote_path(&self.pki.ca_cert)?)?;
        tls_wrap_line(&mut c, self.pki, self.tls, 1)?;
        writeln!(c, "remote-cert-tls server")?;
        if self.credentials.is_some() {
            writeln!(c, "auth-user-pass {}", quote_path(&self.auth_file())?)?;
            writeln!(c, "auth-retry none")?;
        }
        if self.proto == Proto::Udp {
            writeln!(c, "explicit-exit-notify 1")?;
        }
        writeln!(c, "verb 3")?;
        for line in &self.extra {
            writeln!(c, "{line}")?;
        }
        Ok(c)
    }

    /// Writes config and credentials and starts `openvpn` in the namespace (no waiting: use
    /// `wait_connected` or `wait_auth_failed`).
    pub fn start(self) -> Result<OpenVpnClientHandle> {
        if let Some((user, password)) = &self.credentials {
            let path = self.auth_file();
            write_private(&path, &format!("{user}\n{password}\n"))?;
        }
        let config = self.env.path(&format!("{}.client.conf", self.dev));
        std::fs::write(&config, self.config_text()?)
            .with_context(|| format!("writing {}", config.display()))?;
        let proc = ProcBuilder::new("openvpn")
            .arg("--config")
            .arg(&config)
            .netns(self.ns)
            .label("openvpn-client")
            .current_dir(self.env.dir())
            .spawn(self.env)?;
        Ok(OpenVpnClientHandle {
            proc,
            ns: self.ns.name().to_string(),
            dev: self.dev,
        })
    }
}

/// A running plain OpenVPN client (stopped on drop).
pub struct OpenVpnClientHandle {
    pub proc: Proc,
    ns: String,
    dev: String,
}

impl OpenVpnClientHandle {
    /// Waits for "Initialization Sequence Completed" (fails early if the client exits).
    pub fn wait_connected(&self, timeout: Duration) -> Result<()> {
        self.proc.wait_for_line(INIT_COMPLETED, timeout).map(|_| ())
    }

    /// Waits for the server's AUTH_FAILED and for the client to exit because of it.
    pub fn wait_auth_failed(&self, timeout: Duration) -> Result<()> {
        self.proc.wait_for_line("AUTH_FAILED", timeout)?;
        self.proc.wait_exit(timeout)?;
        Ok(())
    }

    /// The tun device name (inside the client's namespace).
    pub fn dev(&self) -> &str {
        &self.dev
    }

    /// The IPv4 address the server pushed (read from the tun device).
    pub fn tunnel_ip(&self) -> Result<Ipv4Addr> {
        let out = run_cmd(
            std::process::Command::new("ip")
                .args(["-n", &self.ns, "-o", "-4", "addr", "show", "dev", &self.dev]),
        )?;
        parse_ip_addr_show(&out)
            .with_context(|| format!("no IPv4 address on {} in {}: {out}", self.dev, self.ns))
    }
}

/// One `CLIENT_LIST` row of a `status-version 2` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusClient {
    pub common_name: String,
    /// `IP:PORT` the client connects from.
    pub real_address: String,
    pub virtual_address: String,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub username: String,
}

/// The `CLIENT_LIST` rows of a `status-version 2` file (columns located by its `HEADER`).
pub fn parse_status_v2(text: &str) -> Result<Vec<StatusClient>> {
    let mut header: Option<Vec<&str>> = None;
    let mut clients = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(',').collect();
        match fields.first() {
            Some(&"HEADER") if fields.get(1) == Some(&"CLIENT_LIST") => {
                header = Some(fields[1..].to_vec());
            }
            Some(&"CLIENT_LIST") => {
                let Some(h) = &header else {
                    bail!("CLIENT_LIST before its HEADER in the status file");
                };
                let col = |name: &str| -> Result<&str> {
                    let i = h
                        .iter()
                        .position(|c| *c == name)
                        .with_context(|| format!("status HEADER lacks {name:?}"))?;
                    fields
                        .get(i)
                        .copied()
                        .with_context(|| format!("short CLIENT_LIST line: {line}"))
                };
                let num = |name: &str| -> Result<u64> {
                    let v = col(name)?;
                    v.parse()
                        .with_context(|| format!("{name} {v:?} is not a number"))
                };
                clients.push(StatusClient {
                    common_name: col("Common Name")?.to_string(),
                    real_address: col("Real Address")?.to_string(),
                    virtual_address: col("Virtual Address")?.to_string(),
                    bytes_received: num("Bytes Received")?,
                    bytes_sent: num("Bytes Sent")?,
                    username: col("Username")?.to_string(),
                });
            }
            _ => {}
        }
    }
    Ok(clients)
}

/// First address of `ip -o -4 addr show` output.
fn parse_ip_addr_show(out: &str) -> Option<Ipv4Addr> {
    let mut words = out.split_whitespace();
    words.find(|w| *w == "inet")?;
    words.next()?.split('/').next()?.parse().ok()
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("making {} private", path.display()))
}

/// Writes an `auth-user-pass-verify` script that accepts exactly `user`/`password` (works
/// with `AuthVia::File` and `AuthVia::Env`); returns its path. The expected credentials are
/// kept in a 0600 file next to it, so any characters are fine.
pub fn write_auth_script(env: &TestEnv, user: &str, password: &str) -> Result<PathBuf> {
    let n = env.unique_name('a');
    let expected = env.path(&format!("{n}.expected"));
    write_private(&expected, &format!("{user}\n{password}\n"))?;
    let script = env.path(&format!("{n}.auth.sh"));
    let expected = expected
        .to_str()
        .filter(|s| !s.contains(['\'', '\n']))
        .with_context(|| format!("unusable path {}", expected.display()))?;
    let text = format!(
        "#!/bin/sh\n\
         # via-file: $1 names a file with the username and password lines; via-env: env vars.\n\
         expected='{expected}'\n\
         if [ -n \"$1\" ]; then u=$(sed -n 1p \"$1\"); p=$(sed -n 2p \"$1\"); \
         else u=$username; p=$password; fi\n\
         [ \"$u\" = \"$(sed -n 1p \"$expected\")\" ] && [ \"$p\" = \"$(sed -n 2p \"$expected\")\" ]\n"
    );
    std::fs::write(&script, text).with_context(|| format!("writing {}", script.display()))?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("making {} executable", script.display()))?;
    Ok(script)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn fake_pki(dir: &Path) -> Pki {
        Pki {
            dir: dir.to_path_buf(),
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            tls_crypt: dir.join("tc.key"),
            tls_auth: dir.join("ta.key"),
        }
    }

    fn fake_netns(env: &TestEnv) -> Netns {
        Netns::unmanaged_for_tests(env.unique_name('n'))
    }

    #[test]
    fn server_config_has_the_requested_directives() -> Result<()> {
        let env = TestEnv::new_unchecked("ovpn-server-config")?;
        let pki = fake_pki(Path::new("/k"));
        let ns = fake_netns(&env);
        let server = OpenVpnServer::new(&env, &ns, &pki)
            .proto(Proto::Tcp)
            .port(1300)
            .subnet(42)
            .auth_user_pass_verify("/bin/hook auth", AuthVia::File)
            .client_connect("/bin/hook connect")
            .client_disconnect("/bin/hook disconnect")
            .management_unix("/run/m.sock")
            .management_client_auth(true)
            .max_clients(3)
            .duplicate_cn(true)
            .tls_wrap(TlsWrap::Auth)
            .setenv("ADAPTER_SERVER_CORE_URL", "http://127.0.0.1:7701")
            .extra("push \"route 10.9.0.0 255.255.0.0\"");
        let text = server.config_text()?;
        let lines: Vec<&str> = text.lines().collect();
        for want in [
            "server 10.8.42.0 255.255.255.0",
            "topology subnet",
            "proto tcp-server",
            "port 1300",
            "dh none",
            "tls-auth \"/k/ta.key\" 0",
            "verify-client-cert none",
            "username-as-common-name",
            "script-security 2",
            "auth-user-pass-verify \"/bin/hook auth\" via-file",
            "client-connect \"/bin/hook connect\"",
            "client-disconnect \"/bin/hook disconnect\"",
            "management \"/run/m.sock\" unix",
            "management-client-auth",
            "max-clients 3",
            "duplicate-cn",
            "keepalive 10 60",
            "push \"route 10.9.0.0 255.255.0.0\"",
            "setenv ADAPTER_SERVER_CORE_URL \"http://127.0.0.1:7701\"",
        ] {
            assert!(lines.contains(&want), "missing {want:?} in\n{text}");
        }
        assert!(!text.contains("tls-crypt"));
        Ok(())
    }

    #[test]
    fn server_config_rejects_bad_values() -> Result<()> {
        let env = TestEnv::new_unchecked("ovpn-bad")?;
        let pki = fake_pki(Path::new("/k"));
        let ns = fake_netns(&env);
        let quoted = OpenVpnServer::new(&env, &ns, &pki).client_connect("/bin/x \"y\"");
        assert!(quoted.config_text().is_err());
        let bad_name = OpenVpnServer::new(&env, &ns, &pki).setenv("A B", "x");
        assert!(bad_name.config_text().is_err());
        let mca = OpenVpnServer::new(&env, &ns, &pki).management_client_auth(true);
        assert!(mca.config_text().is_err());
        Ok(())
    }

    #[test]
    fn client_config_has_the_requested_directives() -> Result<()> {
        let env = TestEnv::new_unchecked("ovpn-client-config")?;
        let pki = fake_pki(Path::new("/k"));
        let ns = fake_netns(&env);
        let client = OpenVpnClient::new(&env, &ns, &pki, Ipv4Addr::new(10, 99, 1, 1), 1194)
            .credentials("alice", "pw");
        let text = client.config_text()?;
        let lines: Vec<&str> = text.lines().collect();
        for want in [
            "client",
            "proto udp",
            "remote 10.99.1.1 1194",
            "tls-crypt \"/k/tc.key\"",
            "remote-cert-tls server",
            "auth-retry none",
            "explicit-exit-notify 1",
        ] {
            assert!(lines.contains(&want), "missing {want:?} in\n{text}");
        }
        assert!(text.contains("auth-user-pass \""));
        let tcp = OpenVpnClient::new(&env, &ns, &pki, Ipv4Addr::new(10, 99, 1, 1), 443)
            .proto(Proto::Tcp)
            .config_text()?;
        assert!(tcp.lines().any(|l| l == "proto tcp-client"));
        assert!(!tcp.contains("explicit-exit-notify"));
        Ok(())
    }

    #[test]
    fn status_v2_is_parsed() -> Result<()> {
        let text = "TITLE,OpenVPN 2.6.14\n\
            TIME,2026-11-22 15:00:00,1795360000\n\
            HEADER,CLIENT_LIST,Common Name,Real Address,Virtual Address,Virtual IPv6 Address,\
            Bytes Received,Bytes Sent,Connected Since,Connected Since (time_t),Username,\
            Client ID,Peer ID,Data Channel Cipher\n\
            CLIENT_LIST,alice,10.99.1.2:40141,10.8.2.2,,5120,4096,2026-11-22 15:00:00,\
            1795360000,alice,0,0,AES-256-GCM\n\
            HEADER,ROUTING_TABLE,Virtual Address,Common Name,Real Address,Last Ref\n\
            ROUTING_TABLE,10.8.2.2,alice,10.99.1.2:40141,2026-11-22 15:00:00\n\
            GLOBAL_STATS,Max bcast/mcast queue length,0\n\
            END\n";
        let clients = parse_status_v2(text)?;
        assert_eq!(
            clients,
            vec![StatusClient {
                common_name: "alice".into(),
                real_address: "10.99.1.2:40141".into(),
                virtual_address: "10.8.2.2".into(),
                bytes_received: 5120,
                bytes_sent: 4096,
                username: "alice".into(),
            }]
        );
        assert!(parse_status_v2("TITLE,x\nEND\n")?.is_empty());
        assert!(parse_status_v2("CLIENT_LIST,alice\n").is_err());
        Ok(())
    }

    #[test]
    fn ip_addr_show_is_parsed() {
        let cases = [
            (
                "5: e0t1    inet 10.8.3.2/24 scope global e0t1\\       valid_lft forever",
                Some(Ipv4Addr::new(10, 8, 3, 2)),
            ),
            ("", None),
            ("5: x inet garbage/24", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_ip_addr_show(input), want, "{input}");
        }
    }

    #[test]
    fn auth_script_accepts_only_the_right_credentials() -> Result<()> {
        let env = TestEnv::new_unchecked("auth-script")?;
        let script = write_auth_script(&env, "alice", "s3cret with spaces")?;
        let creds = env.path("creds");
        let check = |user: &str, pass: &str| -> Result<bool> {
            std::fs::write(&creds, format!("{user}\n{pass}\n"))?;
            let via_file = Command::new(&script).arg(&creds).status()?.success();
            let via_env = Command::new(&script)
                .env("username", user)
                .env("password", pass)
                .status()?
                .success();
            assert_eq!(via_file, via_env, "{user}/{pass}");
            Ok(via_file)
        };
        assert!(check("alice", "s3cret with spaces")?);
        assert!(!check("alice", "wrong")?);
        assert!(!check("bob", "s3cret with spaces")?);
        assert!(!check("", "")?);
        Ok(())
    }
}
