//! Issue 11 item 13 (core side): access messages are signed by the agent on every path, and
//! the client's core checks them. `access export` writes the signed form (with the signed
//! offering); `access import` refuses a changed one (endpoint, proto, password, ...) with a
//! clear error and a bare unsigned one; GetAccess serves a stored message only while its
//! signatures check out.

use std::path::Path;
use std::process::{Command, Output};

use core_lite::testkit::{vpn_offering_input, TestCore};
use serde_json::Value;
use service_api::{Client, ErrorCode, GetAccessRequest};

fn core_lite(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_core-lite"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .expect("core-lite runs")
}

fn ok(data_dir: &Path, args: &[&str]) -> Value {
    let out = core_lite(data_dir, args);
    assert!(
        out.status.success(),
        "core-lite {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn module_dir() -> String {
    core_lite::testkit::vpn_module_dir()
        .to_str()
        .expect("utf-8 path")
        .to_string()
}

/// The access message inside an exported file (the signed form keeps it under `access`).
fn access_of(file: &mut Value) -> &mut Value {
    if file.get("access").is_some() {
        &mut file["access"]
    } else {
        file
    }
}

/// With the real binary, as an operator would: a changed access message is refused.
#[test]
fn access_import_refuses_a_changed_access_message() {
    let work = tempfile::tempdir().expect("tempdir");
    let (agent, client) = (work.path().join("agent"), work.path().join("client"));
    ok(&agent, &["module", "register", &module_dir()]);
    ok(
        &agent,
        &[
            "product",
            "create",
            "--name",
            "vpn-1",
            "--endpoint",
            "192.0.2.10:1194",
        ],
    );
    let input = work.path().join("offer.json");
    std::fs::write(
        &input,
        vpn_offering_input(100, Some(("8", "4"))).to_string(),
    )
    .expect("w");
    let offering = ok(
        &agent,
        &[
            "offering",
            "publish",
            "--product",
            "vpn-1",
            "--input",
            input.to_str().expect("path"),
        ],
    )["offeringHash"]
        .as_str()
        .expect("hash")
        .to_string();
    let key = ok(&agent, &["channel", "create", "--offering", &offering])["clientKey"]
        .as_str()
        .expect("key")
        .to_string();
    let exported = work.path().join("access.json");
    ok(
        &agent,
        &[
            "access",
            "export",
            &key,
            "--out",
            exported.to_str().expect("path"),
        ],
    );
    let original: Value =
        serde_json::from_str(&std::fs::read_to_string(&exported).expect("read")).expect("json");
    ok(&client, &["module", "register", &module_dir()]);

    type Change = fn(&mut Value);
    let changes: [(&str, Change); 4] = [
        ("endpoint", |m| {
            m["serviceEndpointAddress"] = "203.0.113.66:1194".into()
        }),
        ("proto", |m| m["additionalParams"]["proto"] = "tcp".into()),
        ("password", |m| {
            m["password"] = "chosen-by-the-attacker".into()
        }),
        ("speed", |m| {
            m["additionalParams"]["maxDownloadSpeed"] = "1000".into()
        }),
    ];
    for (what, change) in changes {
        let mut changed = original.clone();
        change(access_of(&mut changed));
        let file = work.path().join(format!("changed-{what}.json"));
        std::fs::write(&file, changed.to_string()).expect("write");
        let out = core_lite(&client, &["access", "import", file.to_str().expect("path")]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "a changed {what} was imported");
        assert!(
            stderr.contains("not signed by the offering's agent"),
            "{what}: {stderr}"
        );
    }
    // A bare access message (no signature) is refused too.
    let bare = work.path().join("bare.json");
    let mut copy = original.clone();
    std::fs::write(&bare, access_of(&mut copy).to_string()).expect("write");
    let out = core_lite(&client, &["access", "import", bare.to_str().expect("path")]);
    assert!(
        !out.status.success(),
        "an unsigned access message was imported"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not signed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Pinned to another offering: refused.
    let out = core_lite(
        &client,
        &[
            "access",
            "import",
            exported.to_str().expect("path"),
            "--offering",
            &"0".repeat(64),
        ],
    );
    assert!(!out.status.success(), "imported for another offering");
    // Nothing was stored so far; the signed file itself imports.
    assert!(ok(&client, &["channel", "list"])
        .as_array()
        .is_some_and(|a| a.is_empty()));
    let imported = ok(
        &client,
        &[
            "access",
            "import",
            exported.to_str().expect("path"),
            "--offering",
            &offering,
        ],
    );
    assert_eq!(imported["clientKey"], key.as_str());
}

/// GetAccess serves a stored signed access message only while its signatures check out.
#[tokio::test]
async fn get_access_serves_only_a_stored_message_that_checks_out() -> anyhow::Result<()> {
    let agent = TestCore::start().await?;
    agent.register_vpn_module()?;
    let (pid, _) = agent.create_product("vpn-1", "192.0.2.1:1194")?;
    let offering = agent.publish_offering(&pid, &vpn_offering_input(100, None))?;
    let (channel_id, key) = agent.create_channel(&offering, None)?;
    let signed = agent.export_signed_access(&channel_id)?;
    assert_eq!(signed.offering_hash, offering);
    core_lite::market::check_signed_access(&signed)?;

    let client = TestCore::start().await?;
    client.register_vpn_module()?;
    client.import_signed_access(&signed)?;
    let c = Client::new(
        &client.url,
        client.create_client_token()?,
        std::time::Duration::from_secs(5),
    )?;
    let req = GetAccessRequest {
        client_key: key.clone(),
    };
    assert_eq!(c.get_access(&req).await?, signed.access);

    // The stored message is changed behind the core's back: GetAccess no longer serves it.
    client.core().db.write(|tx| {
        let stored = tx.test_query_text(
            "SELECT access_message FROM channels WHERE client_key = ?1",
            &[&key.0],
        )?;
        let mut v: serde_json::Value = serde_json::from_str(&stored).expect("json");
        v["access"]["serviceEndpointAddress"] = serde_json::json!("203.0.113.66:1194");
        tx.test_exec(
            "UPDATE channels SET access_message = ?1 WHERE client_key = ?2",
            &[&v.to_string(), &key.0],
        )?;
        Ok::<_, core_lite::store::StoreError>(())
    })?;
    let e = c.get_access(&req).await.expect_err("tampered");
    assert_eq!(e.code(), Some(ErrorCode::NotFound));
    assert!(e.to_string().contains("does not check out"), "{e}");
    // A bare message stored by an older version is not served either.
    client.core().db.write(|tx| {
        let stored = tx.test_query_text(
            "SELECT access_message FROM channels WHERE client_key = ?1",
            &[&key.0],
        )?;
        let v: serde_json::Value = serde_json::from_str(&stored).expect("json");
        tx.test_exec(
            "UPDATE channels SET access_message = ?1 WHERE client_key = ?2",
            &[&v["access"].to_string(), &key.0],
        )?;
        Ok::<_, core_lite::store::StoreError>(())
    })?;
    let e = c.get_access(&req).await.expect_err("unsigned");
    assert_eq!(e.code(), Some(ErrorCode::NotFound));
    assert!(e.to_string().contains("not signed"), "{e}");
    // Importing the signed message again restores it.
    client.import_signed_access(&signed)?;
    assert_eq!(c.get_access(&req).await?, signed.access);
    Ok(())
}
