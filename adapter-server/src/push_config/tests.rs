use super::*;

const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const TA: &str =
    "-----BEGIN OpenVPN Static key V1-----\nabcd\n-----END OpenVPN Static key V1-----\n";

#[test]
fn tokenizer() {
    let cases: Vec<(&str, Result<Vec<&str>, ()>)> = vec![
        ("proto udp", Ok(vec!["proto", "udp"])),
        ("  port   1194  # comment", Ok(vec!["port", "1194"])),
        ("; whole comment", Ok(vec![])),
        ("# whole comment", Ok(vec![])),
        (
            "ca \"/etc/my dir/ca.crt\"",
            Ok(vec!["ca", "/etc/my dir/ca.crt"]),
        ),
        ("ca '/a b/c'", Ok(vec!["ca", "/a b/c"])),
        ("ca /a\\ b", Ok(vec!["ca", "/a b"])),
        ("ca \"a\\\"b\"", Ok(vec!["ca", "a\"b"])),
        ("ca \"open", Err(())),
        ("ca 'open", Err(())),
        ("x \\", Err(())),
        ("", Ok(vec![])),
    ];
    for (input, want) in cases {
        let got = tokenize(input).map_err(|_| ());
        let want = want.map(|v| v.into_iter().map(String::from).collect::<Vec<_>>());
        assert_eq!(got, want, "{input:?}");
    }
}

#[test]
fn parse_directives() {
    let text = String::from(
        "port 1195\nproto tcp-server\ndev tun3\ncipher AES-256-GCM\n--data-ciphers AES-256-GCM:AES-128-GCM\n\
auth SHA256\ntls-version-min 1.2\nkey /etc/openvpn/server.key\ndh none\nca ca.crt\n\
tls-auth ta.key 0\n<key>\n-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n</key>\n"
    );
    let c = parse_server_config(&text).expect("parse");
    assert_eq!(c.port, Some(1195));
    assert_eq!(c.proto.as_deref(), Some("tcp-server"));
    assert_eq!(c.dev.as_deref(), Some("tun3"));
    assert_eq!(c.data_ciphers.as_deref(), Some("AES-256-GCM:AES-128-GCM"));
    assert_eq!(c.ca, Some(Material::File("ca.crt".into())));
    assert_eq!(c.tls_auth, Some(Material::File("ta.key".into())));
    assert_eq!(c.key_direction, Some(0));
    assert_eq!(tun_device(&c).expect("tun"), "tun3");
    // The name decides only without dev-type.
    for (conf, want) in [
        ("dev vpn0\ndev-type tun\n", Some("vpn0")),
        ("dev tun\n", Some("tun0")),
        ("", Some("tun0")),
        ("dev vpn0\n", None),
        ("dev tap0\n", None),
        ("dev tun5\ndev-type tap\n", None),
    ] {
        let c = parse_server_config(conf).expect("parse");
        assert_eq!(tun_device(&c).ok().as_deref(), want, "{conf:?}");
    }

    for (bad, frag) in [
        ("port 0\n", "port"),
        ("port http\n", "port"),
        ("<ca>\nxx\n", "not closed"),
        ("</ca>\n", "without opening"),
        ("tls-auth ta.key 2\n", "0 or 1"),
        ("ca \"x\n", "line 1"),
        ("key-direction\n", "missing"),
    ] {
        let e = parse_server_config(bad).expect_err(bad);
        assert!(e.to_string().contains(frag), "{bad:?}: {e}");
    }
}

#[test]
fn product_config_from_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ca.crt"), CA).expect("ca");
    std::fs::write(dir.path().join("ta.key"), TA).expect("ta");
    std::fs::create_dir(dir.path().join("keys")).expect("mkdir");
    std::fs::write(dir.path().join("keys/tc.key"), TA).expect("tc");
    let conf = dir.path().join("server.conf");
    std::fs::write(
        &conf,
        "proto udp6\nport 1194\ndev tun\ncipher AES-256-GCM\nca ca.crt\ntls-auth ta.key 0\nkey server.key\n",
    )
    .expect("conf");
    let l = load(&conf, Some("vpn.example.net:1194")).expect("load");
    let want: BTreeMap<String, String> = [
        ("proto", "udp"),
        ("port", "1194"),
        ("dev", "tun"),
        ("cipher", "AES-256-GCM"),
        ("ca", CA),
        ("tlsAuth", TA),
        ("keyDirection", "1"),
        ("serviceEndpointAddress", "vpn.example.net:1194"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(l.config, want);
    assert_eq!(
        l.files,
        vec![
            conf.clone(),
            dir.path().join("ca.crt"),
            dir.path().join("ta.key")
        ]
    );

    // cd + tls-crypt + inline CA; no endpoint
    std::fs::write(
        &conf,
        format!("cd keys\nproto tcp\ntls-crypt tc.key\n<ca>\n{CA}</ca>\n"),
    )
    .expect("conf");
    let l = load(&conf, None).expect("load");
    assert_eq!(l.config.get("proto").map(String::as_str), Some("tcp"));
    assert_eq!(l.config.get("tlsCrypt").map(String::as_str), Some(TA));
    assert_eq!(l.config.get("ca").map(String::as_str), Some(CA));
    assert!(!l.config.contains_key("serviceEndpointAddress"));
    assert!(!l.config.contains_key("keyDirection"));
}

#[test]
fn product_config_refusals() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("bad-ca.crt"),
        format!("{CA}-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n"),
    )
    .expect("w");
    std::fs::write(
        dir.path().join("big.crt"),
        vec![b'a'; MAX_KEY_BYTES as usize + 1],
    )
    .expect("w");
    std::fs::write(dir.path().join("ca.crt"), CA).expect("w");
    let cases = [
        ("proto udp\n", "no `ca`"),
        ("ca missing.crt\n", "missing.crt"),
        ("ca bad-ca.crt\n", "private key"),
        ("ca big.crt\n", "larger than"),
        ("ca ca.crt\nproto icmp\n", "not a server transport"),
        ("ca ca.crt\ndev tap0\n", "only tun"),
        ("ca ca.crt\ntls-crypt-v2 server-v2.key\n", "tls-crypt-v2"),
        ("ca ca.crt\ntls-crypt ca.crt\n", "Static key"),
    ];
    for (text, frag) in cases {
        let conf = dir.path().join("s.conf");
        std::fs::write(&conf, text).expect("w");
        let e = load(&conf, None).expect_err(text);
        assert!(e.to_string().contains(frag), "{text:?}: {e}");
    }
    let huge = dir.path().join("huge.conf");
    std::fs::write(&huge, vec![b'#'; MAX_CONFIG_BYTES as usize + 1]).expect("w");
    assert!(load(&huge, None)
        .expect_err("huge")
        .to_string()
        .contains("larger than"));
}
