//! `adapter-client check-config`: every problem of a config file, with file, line and key,
//! without starting.

use std::process::Command;

#[test]
fn check_config_reports_every_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("c-1.toml");
    std::fs::write(
        &conf,
        "core_url = \"localhost:7701\"\nclient_key = \"\"\nverb = 99\n\
         report_interval_secs = 0\nlockdown_allow = [\"10.0.0.1\"]\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_adapter-client"))
        .env("ADAPTER_CLIENT_CONFIG", &conf)
        .arg("check-config")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let f = conf.display();
    for key in [
        "1: key `core_url`",
        "2: key `client_key`",
        "3: key `verb`",
        "4: key `report_interval_secs`",
        "5: key `lockdown_allow`",
    ] {
        assert!(
            stdout.contains(&format!("{f}:{key}: ")),
            "missing {key} in:\n{stdout}"
        );
    }
    assert!(stdout.ends_with(&format!("{f}: 6 problems\n")), "{stdout}");
}
