use super::blocks::{is_base64_line, KEY_BEGIN, KEY_END};
use super::*;

const CA: &str = include_str!("../../tests/fixtures/ca.pem");
const TA: &str = include_str!("../../tests/fixtures/ta.key");

fn opts() -> RenderOptions {
    RenderOptions {
        auth_file: PathBuf::from("/run/adapter-client/ck1/auth.txt"),
        mgmt_socket: PathBuf::from("/run/adapter-client/ck1/mgmt.sock"),
        tun_dev: "tunac42".into(),
        verb: 3,
    }
}

/// The access message the VPN template produces (docs/INTERFACES.md keys).
fn vpn_message() -> AccessMessage {
    AccessMessage {
        template_hash: "ab".repeat(32),
        username: ClientKey("ck1".into()),
        password: Secret("s3cret-pass".into()),
        service_endpoint_address: "vpn.example.net:1194".into(),
        additional_params: params(&[
            ("proto", "udp"),
            ("port", "1194"),
            ("dev", "tun"),
            ("cipher", "AES-256-GCM"),
            ("dataCiphers", "AES-256-GCM:AES-128-GCM"),
            ("auth", "SHA256"),
            ("tlsVersionMin", "1.2"),
            ("ca", CA),
            ("tlsCrypt", TA),
            ("minUploadSpeed", "1"),
            ("maxUploadSpeed", "4"),
            ("minDownloadSpeed", "1"),
            ("maxDownloadSpeed", "8"),
        ]),
    }
}

fn with(key: &str, value: &str) -> AccessMessage {
    let mut m = vpn_message();
    m.additional_params.insert(key.into(), value.into());
    m
}

fn without(key: &str) -> AccessMessage {
    let mut m = vpn_message();
    m.additional_params.remove(key);
    m
}

fn canonical_key() -> String {
    TA.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The `pull-filter` lines of every config (see `render::pull`).
fn pull_filters() -> String {
    super::pull::pull_filter_lines()
        .iter()
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn vpn_template_message_renders_expected_config() {
    let r = render(&vpn_message(), &opts()).expect("renders");
    let expected = format!(
        "# OpenVPN client config written by adapter-client. Do not edit: it is rewritten\n\
         # from the access message on every start.\n\
         client\n\
         dev tunac42\n\
         dev-type tun\n\
         proto udp\n\
         remote vpn.example.net 1194\n\
         nobind\n\
         persist-key\n\
         resolv-retry 60\n\
         remote-cert-tls server\n\
         auth-user-pass /run/adapter-client/ck1/auth.txt\n\
         auth-nocache\n\
         auth-retry none\n\
         {}\
         explicit-exit-notify 1\n\
         cipher AES-256-GCM\n\
         data-ciphers AES-256-GCM:AES-128-GCM\n\
         auth SHA256\n\
         tls-version-min 1.2\n\
         management /run/adapter-client/ck1/mgmt.sock unix\n\
         management-hold\n\
         verb 3\n\
         <ca>\n{CA}</ca>\n\
         <tls-crypt>\n{}</tls-crypt>\n",
        pull_filters(),
        canonical_key()
    );
    assert_eq!(r.text, expected);
    assert!(
        !r.text.contains("s3cret-pass"),
        "password must not be in the config"
    );
    assert_eq!(r.credentials.file_contents(), "ck1\ns3cret-pass\n");
    assert_eq!(
        (r.host.as_str(), r.port, r.proto),
        ("vpn.example.net", 1194, Proto::Udp)
    );
    assert_eq!(r.endpoint(), "vpn.example.net:1194");
    assert_eq!(r.speed.max_download_bps, Some(8_000_000));
    assert_eq!(r.speed.max_upload_bps, Some(4_000_000));
    assert_eq!(r.speed.min_upload_bps, Some(1_000_000));
    assert!(r.ignored_keys.is_empty());
    assert!(r.warnings.is_empty());
}

#[test]
fn every_rendered_line_is_an_allowed_directive_or_block_content() {
    let r = render(&vpn_message(), &opts()).expect("renders");
    let mut in_block = false;
    for l in r.text.lines() {
        if in_block {
            if l.starts_with("</") {
                in_block = false;
            } else {
                assert!(
                    l.starts_with("-----") || is_base64_line(l),
                    "unexpected block line {l:?}"
                );
            }
            continue;
        }
        if l.starts_with('#') {
            continue;
        }
        if matches!(l, "<ca>" | "<tls-crypt>" | "<tls-auth>") {
            in_block = true;
            continue;
        }
        let d = l.split(' ').next().unwrap_or_default();
        assert!(
            EMITTED_DIRECTIVES.contains(&d),
            "unexpected directive {l:?}"
        );
    }
    assert!(!in_block);
}

#[test]
fn tcp_tls_auth_and_endpoint_variants() {
    let mut m = without("tlsCrypt");
    m.additional_params.insert("tlsAuth".into(), TA.into());
    m.additional_params
        .insert("keyDirection".into(), "1".into());
    m.additional_params.insert("proto".into(), "tcp".into());
    m.additional_params.insert("port".into(), "443".into());
    m.service_endpoint_address = "10.1.2.3".into();
    let r = render(&m, &opts()).expect("renders");
    assert!(r.text.contains("\nproto tcp-client\n"), "{}", r.text);
    assert!(r.text.contains("\nremote 10.1.2.3 443\n"));
    assert!(!r.text.contains("explicit-exit-notify"), "udp only");
    assert!(r.text.contains(&format!(
        "key-direction 1\n<tls-auth>\n{}</tls-auth>\n",
        canonical_key()
    )));
    assert!(!r.text.contains("tls-crypt"));

    let mut m = vpn_message();
    m.service_endpoint_address = "[2001:db8::1]:1195".into();
    let r = render(&m, &opts()).expect("renders v6");
    assert!(r.text.contains("\nremote 2001:db8::1 1195\n"));
    assert_eq!(r.endpoint(), "[2001:db8::1]:1195");
    assert_eq!(
        r.warnings.len(),
        1,
        "port conflict is reported: {:?}",
        r.warnings
    );

    let mut m = without("port");
    m.service_endpoint_address = "vpn.example.net".into();
    assert_eq!(render(&m, &opts()).expect("renders").port, DEFAULT_PORT);
}

#[test]
fn unknown_keys_are_ignored_and_listed() {
    let mut m = with("futureKey", "x\ny");
    m.additional_params.insert("up".into(), "/bin/sh".into());
    m.additional_params.insert("compress".into(), "lz4".into());
    let r = render(&m, &opts()).expect("renders");
    assert_eq!(
        r.ignored_keys,
        vec!["futureKey".to_string(), "up".to_string()]
    );
    assert!(!r.text.contains("/bin/sh"));
    assert!(!r.text.contains("\nup"));
    assert!(!r.text.contains("compress"));
    assert_eq!(r.warnings.len(), 1);
}

/// Every injection attempt is refused with an error that names the field.
#[test]
fn injection_attempts_are_refused_with_named_errors() {
    let big_pem = format!("{CA}{}", "A".repeat(MAX_PEM_BYTES));
    let newline_user = {
        let mut m = vpn_message();
        m.username = ClientKey("ck1\nscript-security 2".into());
        m
    };
    let newline_pass = {
        let mut m = vpn_message();
        m.password = Secret("pw\nup /tmp/x".into());
        m
    };
    let endpoint_injection = {
        let mut m = vpn_message();
        m.service_endpoint_address = "vpn.example.net 1194\nup /tmp/evil".into();
        m
    };
    let endpoint_space = {
        let mut m = vpn_message();
        m.service_endpoint_address = "vpn.example.net 1194 udp".into();
        m
    };
    let endpoint_path = {
        let mut m = vpn_message();
        m.service_endpoint_address = "../../etc/passwd".into();
        m
    };
    let ca_breakout = format!("{CA}</ca>\nscript-security 2\nup /tmp/evil.sh\n<ca>\n{CA}");
    let ca_text = format!("Certificate:\n    Data: x\n{CA}");
    let key_breakout = format!("{TA}\n</tls-crypt>\nplugin /tmp/evil.so\n");
    let cases: Vec<(&str, AccessMessage, &str, Problem)> = vec![
        (
            "newline in cipher",
            with("cipher", "AES-256-GCM\nscript-security 2"),
            "additionalParams.cipher",
            Problem::Newline,
        ),
        (
            "CR in auth",
            with("auth", "SHA256\rup /x"),
            "additionalParams.auth",
            Problem::Newline,
        ),
        (
            "control char in dataCiphers",
            with("dataCiphers", "AES-256-GCM\u{0}"),
            "additionalParams.dataCiphers",
            Problem::ControlChar,
        ),
        (
            "extra directive after a space",
            with("cipher", "AES-256-GCM up"),
            "additionalParams.cipher",
            Problem::Charset {
                allowed: "[A-Za-z0-9_-]",
            },
        ),
        (
            "path in tlsVersionMin",
            with("tlsVersionMin", "../1"),
            "additionalParams.tlsVersionMin",
            Problem::TooLong { len: 4, max: 3 },
        ),
        (
            "quote in dataCiphers",
            with("dataCiphers", "AES\"x"),
            "additionalParams.dataCiphers",
            Problem::Charset {
                allowed: "[A-Za-z0-9_:-]",
            },
        ),
        (
            "newline in username",
            newline_user,
            "username",
            Problem::Newline,
        ),
        (
            "newline in password",
            newline_pass,
            "password",
            Problem::Newline,
        ),
        (
            "newline in endpoint",
            endpoint_injection,
            "serviceEndpointAddress",
            Problem::Newline,
        ),
        (
            "proto is a forbidden value",
            with("proto", "udp\nscript-security 2"),
            "additionalParams.proto",
            Problem::Newline,
        ),
        (
            "dev tap",
            with("dev", "tap"),
            "additionalParams.dev",
            Problem::NotAllowed("only \"tun\" is supported".into()),
        ),
        (
            "oversize cipher",
            with("cipher", &"A".repeat(65)),
            "additionalParams.cipher",
            Problem::TooLong { len: 65, max: 64 },
        ),
        (
            "oversize ca",
            with("ca", &big_pem),
            "additionalParams.ca",
            Problem::TooLong {
                len: big_pem.len(),
                max: MAX_PEM_BYTES,
            },
        ),
        (
            "keyDirection 2",
            with("keyDirection", "2"),
            "additionalParams.keyDirection",
            Problem::NotAllowed("expected 0 or 1".into()),
        ),
        (
            "both tls keys",
            with("tlsAuth", TA),
            "additionalParams.tlsAuth",
            Problem::NotAllowed("tlsCrypt and tlsAuth cannot both be used".into()),
        ),
        (
            "ca missing",
            without("ca"),
            "additionalParams.ca",
            Problem::Missing,
        ),
        (
            "empty cipher",
            with("cipher", ""),
            "additionalParams.cipher",
            Problem::Empty,
        ),
    ];
    for (name, msg, field, problem) in cases {
        let e = render(&msg, &opts()).expect_err(name);
        assert_eq!(e.field(), Some(field), "{name}: {e}");
        assert_eq!(e.problem(), Some(&problem), "{name}: {e}");
        assert!(
            e.to_string().starts_with(&format!("{field}: ")),
            "{name}: {e}"
        );
        assert!(
            !e.to_string().contains("s3cret"),
            "{name}: secret leaked: {e}"
        );
    }

    // Cases where the exact message is long: the field is what matters.
    let named: Vec<(&str, AccessMessage, &str)> = vec![
        ("space in endpoint", endpoint_space, "serviceEndpointAddress"),
        ("path as endpoint", endpoint_path, "serviceEndpointAddress"),
        ("ca block breakout", with("ca", &ca_breakout), "additionalParams.ca"),
        ("text around the PEM", with("ca", &ca_text), "additionalParams.ca"),
        ("ca not a certificate", with("ca", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), "additionalParams.ca"),
        ("ca unterminated", with("ca", "-----BEGIN CERTIFICATE-----\nAAAA\n"), "additionalParams.ca"),
        ("tls-crypt breakout", with("tlsCrypt", &key_breakout), "additionalParams.tlsCrypt"),
        ("tls-crypt short", with("tlsCrypt", "-----BEGIN OpenVPN Static key V1-----\nabcd\n-----END OpenVPN Static key V1-----\n"), "additionalParams.tlsCrypt"),
        ("tls-crypt path", with("tlsCrypt", "/etc/openvpn/ta.key"), "additionalParams.tlsCrypt"),
        ("port text", with("port", "1194 tcp"), "additionalParams.port"),
        ("port zero", with("port", "0"), "additionalParams.port"),
        ("port too big", with("port", "65536"), "additionalParams.port"),
        ("proto unknown", with("proto", "http"), "additionalParams.proto"),
        ("speed not a number", with("maxUploadSpeed", "fast"), "additionalParams.maxUploadSpeed"),
        ("speed min above max", with("minDownloadSpeed", "9"), "additionalParams.minDownloadSpeed"),
        ("tlsVersionMin garbage", with("tlsVersionMin", "1x2"), "additionalParams.tlsVersionMin"),
    ];
    for (name, msg, field) in named {
        let e = render(&msg, &opts()).expect_err(name);
        assert_eq!(e.field(), Some(field), "{name}: {e}");
    }
}

#[test]
fn size_limits_are_enforced() {
    let mut m = vpn_message();
    for i in 0..(MAX_PARAMS) {
        m.additional_params.insert(format!("k{i}"), "v".into());
    }
    assert!(matches!(
        render(&m, &opts()),
        Err(RenderError::TooManyParams { .. })
    ));

    let mut m = vpn_message();
    for i in 0..5 {
        m.additional_params
            .insert(format!("blob{i}"), "x".repeat(MAX_PEM_BYTES));
    }
    assert!(matches!(
        render(&m, &opts()),
        Err(RenderError::MessageTooLarge { .. })
    ));

    let e = render(&with(&"k".repeat(MAX_KEY_LEN + 1), "v"), &opts()).expect_err("long key");
    assert!(matches!(e.problem(), Some(Problem::TooLong { .. })), "{e}");
}

#[test]
fn local_paths_and_dev_names_are_checked() {
    let mut o = opts();
    o.auth_file = PathBuf::from("/tmp/has space/auth");
    assert!(matches!(
        render(&vpn_message(), &o),
        Err(RenderError::LocalPath { .. })
    ));
    let mut o = opts();
    o.mgmt_socket = PathBuf::from("relative.sock");
    assert!(matches!(
        render(&vpn_message(), &o),
        Err(RenderError::LocalPath { .. })
    ));
    for bad in ["", "tun0123456789abc", "tun 0", "tun/0"] {
        let mut o = opts();
        o.tun_dev = bad.into();
        assert!(
            matches!(
                render(&vpn_message(), &o),
                Err(RenderError::TunDevice { .. })
            ),
            "{bad:?} accepted"
        );
    }
}

#[test]
fn pem_and_key_canonical_forms() {
    // CRLF, indentation and blank lines are normalised; two certificates are kept.
    let crlf = format!("\r\n  {}\r\n\r\n{CA}", CA.replace('\n', "\r\n"));
    let out = canonical_certificates("f", &crlf).expect("crlf");
    assert_eq!(out, format!("{CA}{CA}"));
    // Comments around the key are dropped; the key is re-wrapped to 32 hex digits a line.
    let one_line: String = {
        let hex: String = canonical_key()
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        format!("{KEY_BEGIN}\n{hex}\n{KEY_END}\n")
    };
    assert_eq!(
        canonical_static_key("f", &one_line).expect("one line"),
        canonical_key()
    );
}

/// Issue 11 item 13: a host is an IPv4 or IPv6 literal or a DNS name whose last label is not
/// all digits (`70000` and `10.0.0.300` are neither); ports are 1..=65535.
#[test]
fn endpoint_hosts_and_ports_follow_the_rule() {
    let endpoint = |v: &str| {
        let mut m = vpn_message();
        m.service_endpoint_address = v.into();
        render(&m, &opts()).map(|r| (r.host, r.port))
    };
    for (v, host, port) in [
        ("10.1.2.3", "10.1.2.3", 1194),
        ("10.1.2.3:443", "10.1.2.3", 443),
        ("[2001:db8::1]", "2001:db8::1", 1194),
        ("[::ffff:10.0.0.1]:1", "::ffff:10.0.0.1", 1),
        ("vpn.example.net:65535", "vpn.example.net", 65535),
        ("vpn-1", "vpn-1", 1194),
        ("1vpn.example", "1vpn.example", 1194),
        ("example.123a", "example.123a", 1194),
    ] {
        assert_eq!(
            endpoint(v).map_err(|e| e.to_string()),
            Ok((host.to_string(), port)),
            "{v}"
        );
    }
    for v in [
        "70000",
        "70000:1194",
        "1194",
        "10.0.0.300",
        "10.1.2",
        "1.2.3.4.5",
        "vpn.example.123",
        "0x7f.1",
        "vpn.example.net:0",
        "vpn.example.net:65536",
        "vpn.example.net:",
        "[2001:db8::1]:0",
        "2001:db8::1",
        ".",
        "..",
        "vpn..example",
        "vpn.example.net.",
    ] {
        let e = endpoint(v).expect_err(v);
        assert_eq!(e.field(), Some("serviceEndpointAddress"), "{v}: {e}");
    }
    let e = endpoint("70000").expect_err("all digits");
    assert!(e.to_string().contains("all digits"), "{e}");
}
