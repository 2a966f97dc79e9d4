//! `adapter-server check-config`: every problem of a config file, with file, line and key,
//! without starting; the token's value is never shown.

use std::process::Command;

#[test]
fn check_config_reports_every_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("config.toml");
    std::fs::write(
        &conf,
        "core_url = \"core:7700\"\ntoken = \"tok en-secret\"\nmax_clients = 0\n\
         management = \"\"\nlink_capacity = \"lots\"\ncolour = \"blue\"\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_adapter-server"))
        .env_remove("ADAPTER_SERVER_CONFIG")
        .arg("check-config")
        .arg(&conf)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let f = conf.display();
    // An unknown key hides nothing: the types are checked key by key, the values after.
    assert_eq!(
        stdout,
        format!("{f}:6: key `colour`: unknown key\n{f}: 1 problem\n")
    );
    std::fs::write(
        &conf,
        "core_url = \"core:7700\"\ntoken = \"tok en-secret\"\nmax_clients = 0\n\
         management = \"\"\nlink_capacity = \"lots\"\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_adapter-server"))
        .arg("--config")
        .arg(&conf)
        .arg("check-config")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for key in [
        "1: key `core_url`",
        "2: key `token`",
        "3: key `max_clients`",
        "4: key `management`",
        "5: key `link_capacity`",
    ] {
        assert!(
            stdout.contains(&format!("{f}:{key}: ")),
            "missing {key} in:\n{stdout}"
        );
    }
    assert!(!stdout.contains("secret"), "the token was shown:\n{stdout}");
}
