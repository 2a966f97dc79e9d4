//! Runs the README's walkthrough block exactly as written (bash, real binaries, real HTTP on
//! loopback) and checks what it prints.

use std::process::Command;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[test]
fn readme_walkthrough_runs_as_written() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let start = readme
        .find("<!-- walkthrough:begin -->")
        .expect("walkthrough begin marker");
    let end = readme.find("<!-- walkthrough:end -->").expect("end marker");
    let block = &readme[start..end];
    let code = block
        .split("```bash\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("bash block");
    for tool in ["jq", "curl"] {
        let ok = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok,
            "the walkthrough needs `{tool}` (scripts/test.sh installs it)"
        );
    }
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", code])
        .current_dir(&root)
        .env("AGENT_PORT", free_port().to_string())
        .env("CLIENT_PORT", free_port().to_string())
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "walkthrough failed: {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    // AuthClient accepted, then the wrong password refused with a stable code.
    assert!(stdout.contains(r#""status":"activating""#), "{stdout}");
    assert!(stdout.contains(r#""code":"auth_failed""#), "{stdout}");
    // Cumulative: the replayed older report did not change the totals; the stop's counts
    // are final: 1_600_000 + 800_000 bytes = 2 units.
    assert!(stdout.contains(r#""channelBytes":2200000"#), "{stdout}");
    assert!(stdout.contains(r#""channelBytes":2400000"#), "{stdout}");
    assert!(stdout.contains(r#""bytesTotal": 2400000"#), "{stdout}");
    assert!(stdout.contains(r#""unitsUsed": 2"#), "{stdout}");
    assert!(stdout.contains(r#""GetAccess""#), "{stdout}");
    assert!(stderr.contains("is valid"), "{stderr}");
    // The changed access message was refused, the signed one imported.
    assert!(
        stderr.contains("not signed by the offering's agent"),
        "{stderr}"
    );
    assert!(stderr.contains("checked and imported"), "{stderr}");
}
