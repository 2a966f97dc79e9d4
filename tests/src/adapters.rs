//! The adapters (`adapter-server`, `adapter-client`) with their cores, as the end-to-end
//! tests of issues 3 and 4 run them: an agent core with a product, an offering and
//! channels; a client core holding an imported access message; the server adapter's hook
//! command line and monitor; the client adapter's `connect` and its state file; and an
//! independent recorder of OpenVPN's own final byte counters.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use service_api::ChannelInfo;

use crate::corelite::CoreLite;
use crate::env::{bin_path, TestEnv};
use crate::netns::Netns;
use crate::proc::{Proc, ProcBuilder};

/// How long the helpers here wait for a process to report readiness.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// `templates/vpn` of this workspace, as a string for the CLI.
pub fn vpn_module_dir() -> Result<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../templates/vpn");
    dir.to_str()
        .map(str::to_string)
        .context("the workspace path is not UTF-8")
}

/// An offering input (the fields the agent fills) for the VPN module: 0.001 PRIX per MB,
/// `max_units` MB, download/upload speeds in Mbit/s (min 1).
pub fn offering_input(max_units: u64, speeds: Option<(&str, &str)>) -> Value {
    core_lite::testkit::vpn_offering_input(max_units, speeds)
}

/// One channel of the agent core: the OpenVPN username is the client key.
#[derive(Clone, Debug)]
pub struct Channel {
    pub id: String,
    pub key: String,
    pub password: String,
    /// The exported signed access message (0600 file; the message is under `access`).
    pub access_file: PathBuf,
}

/// The agent's core-lite data dir with the VPN module, one product (its adapter token in
/// `token_file`) and one published offering. Serve it with `core.serve` at `listen`.
pub struct AgentCore {
    pub core: CoreLite,
    pub token_file: PathBuf,
    pub product: String,
    pub offering_hash: String,
    pub listen: SocketAddr,
}

impl AgentCore {
    /// Registers the module, creates product `vpn-e2e` with `endpoint`, publishes an
    /// offering from `offering_input(max_units, speeds)`.
    pub fn create(
        env: &TestEnv,
        listen: SocketAddr,
        endpoint: &str,
        max_units: u64,
        speeds: Option<(&str, &str)>,
    ) -> Result<AgentCore> {
        let core = CoreLite::new(env, "agent-core")?;
        let module = core.cli_field(&["module", "register", &vpn_module_dir()?], "module")?;
        ensure!(module == "vpn", "registered module {module:?}");
        let token_file = env.path("agent-product.token");
        let token_arg = path_str(&token_file)?;
        let product = "vpn-e2e".to_string();
        core.cli(&[
            "product",
            "create",
            "--name",
            &product,
            "--module",
            "vpn",
            "--endpoint",
            endpoint,
            "--token-out",
            token_arg,
        ])?;
        ensure!(token_file.is_file(), "product create wrote no token file");
        let input = env.path("offering-input.json");
        std::fs::write(
            &input,
            serde_json::to_vec_pretty(&offering_input(max_units, speeds))?,
        )
        .with_context(|| format!("writing {}", input.display()))?;
        let signed = env.path("offering.signed.json");
        let offering_hash = core.cli_field(
            &[
                "offering",
                "publish",
                "--product",
                &product,
                "--input",
                path_str(&input)?,
                "--out",
                path_str(&signed)?,
            ],
            "offeringHash",
        )?;
        Ok(AgentCore {
            core,
            token_file,
            product,
            offering_hash,
            listen,
        })
    }

    /// `http://LISTEN` (reachable inside the namespace the core is served in).
    pub fn url(&self) -> String {
        format!("http://{}", self.listen)
    }

    /// A new channel under the offering (default deposit: all of `maxUnits`) with its
    /// access message exported to `<env dir>/access-<key>.json`.
    pub fn new_channel(&self, env: &TestEnv) -> Result<Channel> {
        let created = self
            .core
            .cli(&["channel", "create", "--offering", &self.offering_hash])?;
        let field = |k: &str| -> Result<String> {
            created
                .get(k)
                .and_then(Value::as_str)
                .map(str::to_string)
                .with_context(|| format!("channel create: no `{k}` in {created}"))
        };
        let (id, key) = (field("channelId")?, field("clientKey")?);
        self.export_access(env, id, key)
    }

    /// Exports (again) the access message of channel `key`, e.g. after `push-config`
    /// changed the product config it carries.
    pub fn export_access(&self, env: &TestEnv, id: String, key: String) -> Result<Channel> {
        let access_file = env.path(&format!("access-{key}.json"));
        self.core
            .cli(&["access", "export", &key, "--out", path_str(&access_file)?])?;
        // The file is the signed access message: the message itself is under `access`.
        let signed = read_json(&access_file)?;
        let access = signed
            .get("access")
            .with_context(|| format!("access export wrote no signed access message: {signed}"))?;
        ensure!(
            access.get("username").and_then(Value::as_str) == Some(key.as_str()),
            "the access message's username is not the client key: {access}"
        );
        let password = access
            .get("password")
            .and_then(Value::as_str)
            .context("the access message has no password")?
            .to_string();
        Ok(Channel {
            id,
            key,
            password,
            access_file,
        })
    }

    /// `channel show KEY`.
    pub fn channel(&self, key: &str) -> Result<ChannelInfo> {
        let v = self.core.cli(&["channel", "show", key])?;
        serde_json::from_value(v.clone()).with_context(|| format!("channel show printed {v}"))
    }

    /// `channel set-status KEY STATUS`.
    pub fn set_status(&self, key: &str, status: &str) -> Result<()> {
        self.core
            .cli(&["channel", "set-status", key, status, "--reason", "e2e test"])?;
        Ok(())
    }

    /// The hook command line for `auth-user-pass-verify` (and client-connect/-disconnect):
    /// absolute binary, settings as flags (OpenVPN gives scripts a clean environment).
    pub fn hook_command(&self, state_dir: &Path) -> Result<String> {
        Ok(format!(
            "{} --core-url={} --token-file={} hook --state-dir={}",
            path_str(&bin_path("adapter-server")?)?,
            self.url(),
            path_str(&self.token_file)?,
            path_str(state_dir)?
        ))
    }

    /// `adapter-server --core-url … --token-file … ARGS` as a process inside `ns`.
    pub fn adapter_server(&self, env: &TestEnv, ns: &Netns, args: &[&str]) -> Result<Proc> {
        ProcBuilder::new(bin_path("adapter-server")?)
            .arg(format!("--core-url={}", self.url()))
            .arg(format!("--token-file={}", path_str(&self.token_file)?))
            .args(args)
            .netns(ns)
            .label(&format!(
                "adapter-server-{}",
                args.first().copied().unwrap_or("x")
            ))
            .spawn(env)
    }

    /// `adapter-server monitor --management SOCK ARGS` inside `ns` (the namespace of the
    /// OpenVPN server, so its tc commands see the tun device); returns once it is attached
    /// to the management interface.
    pub fn monitor(
        &self,
        env: &TestEnv,
        ns: &Netns,
        management: &Path,
        args: &[&str],
    ) -> Result<Proc> {
        let mut all = vec![
            "monitor",
            "--management",
            path_str(management)?,
            "--reconnect-max-secs",
            "1",
        ];
        all.extend_from_slice(args);
        let proc = self.adapter_server(env, ns, &all)?;
        proc.wait_for_line("connected to OpenVPN management", READY_TIMEOUT)?;
        Ok(proc)
    }
}

/// The client's core-lite: the VPN module, an imported access message, a client token.
pub struct ClientCore {
    pub core: CoreLite,
    pub token_file: PathBuf,
    pub listen: SocketAddr,
}

impl ClientCore {
    /// Registers the module, imports `channel`'s access message, creates a client token.
    pub fn create(env: &TestEnv, listen: SocketAddr, channel: &Channel) -> Result<ClientCore> {
        let core = CoreLite::new(env, "client-core")?;
        core.cli(&["module", "register", &vpn_module_dir()?])?;
        let key = core.cli_field(
            &["access", "import", path_str(&channel.access_file)?],
            "clientKey",
        )?;
        ensure!(
            key == channel.key,
            "imported {key}, exported {}",
            channel.key
        );
        let token_file = env.path("client-adapter.token");
        core.cli(&[
            "token",
            "create",
            "--role",
            "client",
            "--out",
            path_str(&token_file)?,
        ])?;
        ensure!(token_file.is_file(), "token create wrote no token file");
        Ok(ClientCore {
            core,
            token_file,
            listen,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.listen)
    }

    /// `channel show KEY` on the client's side.
    pub fn channel(&self, key: &str) -> Result<ChannelInfo> {
        let v = self.core.cli(&["channel", "show", key])?;
        serde_json::from_value(v.clone()).with_context(|| format!("channel show printed {v}"))
    }
}

/// A `client-disconnect` script that appends `$common_name $bytes_received $bytes_sent` to
/// a file: OpenVPN's own final counters of every connection, independent of the adapters.
pub struct DisconnectRecorder {
    pub script: PathBuf,
    pub file: PathBuf,
}

impl DisconnectRecorder {
    pub fn new(env: &TestEnv) -> Result<DisconnectRecorder> {
        Self::then(env, None)
    }

    /// The recorder, then `then` (OpenVPN runs one `client-disconnect` command: the way an
    /// operator with the auth hook closes sessions with OpenVPN's exact final counters is
    /// `adapter-server … hook` as client-disconnect; here it runs after the recording).
    pub fn then(env: &TestEnv, then: Option<&str>) -> Result<DisconnectRecorder> {
        let n = env.unique_name('r');
        let file = env.path(&format!("{n}.disconnects"));
        let script = env.path(&format!("{n}.record.sh"));
        let file_str = path_str(&file)?;
        ensure!(!file_str.contains('\''), "unusable path {file_str}");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n\
                 echo \"$common_name $bytes_received $bytes_sent\" >> '{file_str}'\n\
                 {}\n",
                then.map(|c| format!("exec {c}")).unwrap_or_default()
            ),
        )
        .with_context(|| format!("writing {}", script.display()))?;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} executable", script.display()))?;
        Ok(DisconnectRecorder { script, file })
    }

    pub fn command(&self) -> Result<String> {
        Ok(path_str(&self.script)?.to_string())
    }

    /// `(bytes_received, bytes_sent)` of every recorded disconnect of `common_name`.
    pub fn connections(&self, common_name: &str) -> Result<Vec<(u64, u64)>> {
        let text = match std::fs::read_to_string(&self.file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.file.display())),
        };
        let mut out = Vec::new();
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let [cn, rx, tx] = f.as_slice() else {
                bail!("bad recorder line {line:?}");
            };
            if *cn == common_name {
                out.push((
                    rx.parse().with_context(|| format!("line {line:?}"))?,
                    tx.parse().with_context(|| format!("line {line:?}"))?,
                ));
            }
        }
        Ok(out)
    }

    /// Sum of received + sent over the recorded connections of `common_name`.
    pub fn total(&self, common_name: &str) -> Result<u64> {
        Ok(self
            .connections(common_name)?
            .iter()
            .map(|(rx, tx)| rx + tx)
            .sum())
    }
}

/// `tc ARGS` inside `ns` (stdout; an error when tc fails, e.g. the device is gone).
pub fn tc(ns: &Netns, args: &[&str]) -> Result<String> {
    let mut argv = vec!["tc"];
    argv.extend_from_slice(args);
    ns.run(&argv)
}

/// Whether network device `dev` exists in `ns`.
pub fn link_exists(ns: &Netns, dev: &str) -> Result<bool> {
    Ok(ns
        .output(&["ip", "link", "show", "dev", dev])?
        .status
        .success())
}

/// The per-client HTB classes (`parent 1:1`) of `dev`'s `tc class show`.
pub fn client_classes(ns: &Netns, dev: &str) -> Result<Vec<String>> {
    Ok(tc(ns, &["class", "show", "dev", dev])?
        .lines()
        .filter(|l| l.contains("parent 1:1"))
        .map(str::to_string)
        .collect())
}

/// A JSON file (e.g. `adapter-client`'s state file); `None` while it does not exist or is
/// being replaced.
pub fn read_json_opt(path: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

pub fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

/// A path as `&str` (the CLIs and OpenVPN configs here need UTF-8).
pub fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("path {} is not UTF-8", path.display()))
}

/// Sends `payload` to a `TcpEcho` on `stream` while a second thread reads the echo, then
/// checks it came back unchanged. Unlike `tcp_echo_roundtrip` (write everything, then
/// read) this cannot stall when the payload is larger than what the socket buffers along a
/// slow (shaped) path hold.
pub fn echo_exchange(stream: TcpStream, payload: &[u8], timeout: Duration) -> Result<()> {
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut reader = stream.try_clone().context("cloning the echo connection")?;
    let expected = payload.len();
    let read = std::thread::spawn(move || -> std::io::Result<Vec<u8>> {
        let mut back = Vec::with_capacity(expected);
        reader.read_to_end(&mut back)?;
        Ok(back)
    });
    let mut writer = stream;
    let sent = writer
        .write_all(payload)
        .context("sending to the echo server")
        .and_then(|()| {
            writer
                .shutdown(Shutdown::Write)
                .context("half-closing the echo connection")
        });
    if sent.is_err() {
        // Unblock the reader before reporting.
        let _ = writer.shutdown(Shutdown::Both);
    }
    let back = read
        .join()
        .map_err(|_| anyhow::anyhow!("the echo reader thread panicked"))?
        .context("reading the echo reply");
    sent?;
    let back = back?;
    ensure!(
        back == payload,
        "the echo returned {} bytes that differ from the {} sent",
        back.len(),
        payload.len()
    );
    Ok(())
}
