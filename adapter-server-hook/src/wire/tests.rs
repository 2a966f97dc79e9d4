//! Table-driven tests of the hand-off wire format: round trips, and every way a hostile
//! frame can be wrong.

use super::*;

fn req(kind: Kind, env: &[(&'static str, &[u8])], credentials: Option<&[u8]>) -> Request {
    Request {
        kind,
        env: env.iter().map(|(n, v)| (*n, v.to_vec())).collect(),
        credentials: credentials.map(<[u8]>::to_vec),
    }
}

/// A frame from a hand-written body.
fn frame(version: u8, body: &[u8]) -> Vec<u8> {
    let mut f = MAGIC.to_vec();
    f.push(version);
    f.extend_from_slice(&(body.len() as u32).to_be_bytes());
    f.extend_from_slice(body);
    f
}

fn field(id: u8, v: &[u8]) -> Vec<u8> {
    let mut f = vec![id];
    f.extend_from_slice(&(v.len() as u16).to_be_bytes());
    f.extend_from_slice(v);
    f
}

fn id(name: &str) -> u8 {
    (ENV_VARS.iter().position(|n| *n == name).expect("known") + 1) as u8
}

#[test]
fn requests_round_trip() {
    let long = vec![b'x'; MAX_VALUE];
    let cases = [
        req(Kind::Auth, &[], None),
        req(
            Kind::Auth,
            &[
                ("username", b"ck-1"),
                ("untrusted_ip", b"192.0.2.7"),
                ("untrusted_port", b"50123"),
                ("auth_control_file", b"/tmp/openvpn_acf_1.tmp"),
            ],
            Some(b"ck-1\nsecret\n"),
        ),
        req(
            Kind::Auth,
            &[("password", b"p\xffw"), ("username", b"")],
            None,
        ),
        req(
            Kind::ClientConnect,
            &[("time_unix", b"1700000000"), ("common_name", &long)],
            None,
        ),
        req(
            Kind::ClientDisconnect,
            &[("bytes_received", b"123"), ("bytes_sent", b"456")],
            None,
        ),
    ];
    for r in cases {
        let bytes = encode_request(&r).expect("encode");
        assert_eq!(decode_request(&bytes).expect("decode"), r, "{r:?}");
        let header: [u8; HEADER_LEN] = bytes[..HEADER_LEN].try_into().expect("header");
        assert_eq!(body_len(&header), Ok(bytes.len() - HEADER_LEN));
    }
    // Every variable and the largest credentials at once fit in MAX_BODY.
    let all = Request {
        kind: Kind::Auth,
        env: ENV_VARS
            .iter()
            .map(|n| (*n, vec![b'v'; MAX_VALUE]))
            .collect(),
        credentials: Some(vec![b'c'; MAX_CREDENTIALS]),
    };
    let bytes = encode_request(&all).expect("encode");
    assert_eq!(bytes.len() - HEADER_LEN, MAX_BODY);
    assert_eq!(decode_request(&bytes).expect("decode"), all);
}

#[test]
fn encode_refuses_what_decode_would_refuse() {
    let too_long = vec![b'x'; MAX_VALUE + 1];
    let cases: Vec<(Request, WireError)> = vec![
        (
            req(Kind::Auth, &[("username", &too_long)], None),
            WireError::ValueTooLong {
                name: "username",
                len: MAX_VALUE + 1,
                max: MAX_VALUE,
            },
        ),
        (
            req(Kind::Auth, &[], Some(&vec![b'c'; MAX_CREDENTIALS + 1])),
            WireError::ValueTooLong {
                name: "credentials",
                len: MAX_CREDENTIALS + 1,
                max: MAX_CREDENTIALS,
            },
        ),
        (
            req(Kind::ClientConnect, &[], Some(b"u\np\n")),
            WireError::CredentialsNotAllowed("client-connect"),
        ),
        (
            req(Kind::Auth, &[("PATH", b"/bin")], None),
            WireError::UnknownVariable("PATH".into()),
        ),
        (
            req(Kind::Auth, &[("username", b"a"), ("username", b"b")], None),
            WireError::Duplicate("username"),
        ),
    ];
    for (r, want) in cases {
        assert_eq!(encode_request(&r), Err(want), "{r:?}");
    }
}

#[test]
fn hostile_frames_are_refused() {
    let user = id("username");
    let big = (MAX_BODY as u32 + 1).to_be_bytes();
    let mut oversized = MAGIC.to_vec();
    oversized.push(VERSION);
    oversized.extend_from_slice(&big);
    let cases: Vec<(&str, Vec<u8>, WireError)> = vec![
        ("empty", vec![], WireError::Truncated { need: HEADER_LEN }),
        (
            "short header",
            b"ASHK\x01\x00".to_vec(),
            WireError::Truncated { need: 3 },
        ),
        (
            "bad magic",
            {
                let mut f = frame(VERSION, &[1]);
                f[0] = b'X';
                f
            },
            WireError::BadMagic,
        ),
        ("version 1", frame(1, &[1]), WireError::Version(1)),
        ("version 3", frame(3, &[1]), WireError::Version(3)),
        ("version 0", frame(0, &[1]), WireError::Version(0)),
        (
            "body larger than the bound",
            oversized,
            WireError::TooLarge {
                len: MAX_BODY + 1,
                max: MAX_BODY,
            },
        ),
        (
            "empty body",
            frame(VERSION, &[]),
            WireError::Truncated { need: 1 },
        ),
        (
            "body shorter than announced",
            {
                let mut f = frame(VERSION, &[1, user, 0, 1, b'a']);
                f.pop();
                f
            },
            WireError::Truncated { need: 1 },
        ),
        (
            "bytes after the frame",
            {
                let mut f = frame(VERSION, &[1]);
                f.push(0);
                f
            },
            WireError::Trailing(1),
        ),
        ("kind 0", frame(VERSION, &[0]), WireError::UnknownKind(0)),
        ("kind 4", frame(VERSION, &[4]), WireError::UnknownKind(4)),
        (
            "field id 0",
            frame(VERSION, &[[1].as_slice(), &field(0, b"x")].concat()),
            WireError::UnknownField(0),
        ),
        (
            "field id past the table",
            frame(
                VERSION,
                &[[1].as_slice(), &field(ENV_VARS.len() as u8 + 1, b"x")].concat(),
            ),
            WireError::UnknownField(ENV_VARS.len() as u8 + 1),
        ),
        (
            "field id 0xff",
            frame(VERSION, &[[1].as_slice(), &field(0xff, b"x")].concat()),
            WireError::UnknownField(0xff),
        ),
        (
            "field length cut",
            frame(VERSION, &[1, user, 0]),
            WireError::Truncated { need: 1 },
        ),
        (
            "field id without length",
            frame(VERSION, &[1, user]),
            WireError::Truncated { need: 2 },
        ),
        (
            "value longer than the frame",
            frame(VERSION, &[1, user, 0, 5, b'a', b'b']),
            WireError::Truncated { need: 3 },
        ),
        (
            "value beyond its bound",
            frame(
                VERSION,
                &[[1].as_slice(), &field(user, &vec![b'x'; MAX_VALUE + 1])].concat(),
            ),
            WireError::ValueTooLong {
                name: "username",
                len: MAX_VALUE + 1,
                max: MAX_VALUE,
            },
        ),
        (
            "variable twice",
            frame(
                VERSION,
                &[[1].as_slice(), &field(user, b"a"), &field(user, b"a")].concat(),
            ),
            WireError::Duplicate("username"),
        ),
        (
            "credentials twice",
            frame(
                VERSION,
                &[
                    [1].as_slice(),
                    &field(CREDENTIALS_ID, b"u\np\n"),
                    &field(CREDENTIALS_ID, b"u\np\n"),
                ]
                .concat(),
            ),
            WireError::Duplicate("credentials"),
        ),
        (
            "credentials of a disconnect",
            frame(
                VERSION,
                &[[3].as_slice(), &field(CREDENTIALS_ID, b"u\np\n")].concat(),
            ),
            WireError::CredentialsNotAllowed("client-disconnect"),
        ),
        (
            "credentials beyond their bound",
            frame(
                VERSION,
                &[
                    [1].as_slice(),
                    &field(CREDENTIALS_ID, &vec![b'c'; MAX_CREDENTIALS + 1]),
                ]
                .concat(),
            ),
            WireError::ValueTooLong {
                name: "credentials",
                len: MAX_CREDENTIALS + 1,
                max: MAX_CREDENTIALS,
            },
        ),
    ];
    for (what, bytes, want) in cases {
        assert_eq!(decode_request(&bytes), Err(want), "{what}");
    }
}

#[test]
fn debug_never_shows_secrets() {
    let r = req(
        Kind::Auth,
        &[("username", b"ck-1"), ("password", b"pw-secret-1")],
        Some(b"ck-1\nfile-secret-2\n"),
    );
    let shown = format!("{r:?}");
    assert!(shown.contains("ck-1"), "{shown}");
    assert!(!shown.contains("pw-secret-1"), "{shown}");
    assert!(!shown.contains("file-secret-2"), "{shown}");
}

#[test]
fn kinds() {
    for (s, k) in [
        ("user-pass-verify", Some(Kind::Auth)),
        ("auth-user-pass-verify", Some(Kind::Auth)),
        ("client-connect", Some(Kind::ClientConnect)),
        ("client-disconnect", Some(Kind::ClientDisconnect)),
        ("up", None),
        ("", None),
    ] {
        assert_eq!(Kind::from_script_type(s), k, "{s}");
    }
    assert_eq!(Kind::Auth.handed_off_exit_code(), 2);
    assert_eq!(Kind::ClientConnect.handed_off_exit_code(), 0);
    assert_eq!(Kind::ClientDisconnect.handed_off_exit_code(), 0);
}
