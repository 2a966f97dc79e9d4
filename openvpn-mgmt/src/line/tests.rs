use super::*;
use crate::state::OvpnState;

/// Moved from adapter-server's mgmt. `>STATE:` and `>LOG:` now parse to their own
/// variants (the server's parser had them as plain notifications).
#[test]
fn line_table() {
    use ClientEventKind::*;
    let ok: Vec<(&str, Line)> = vec![
        (
            ">CLIENT:CONNECT,7,1",
            Line::ClientHeader {
                kind: Connect,
                cid: 7,
                kid: Some(1),
            },
        ),
        (
            ">CLIENT:REAUTH,7,2",
            Line::ClientHeader {
                kind: Reauth,
                cid: 7,
                kid: Some(2),
            },
        ),
        (
            ">CLIENT:ESTABLISHED,7",
            Line::ClientHeader {
                kind: Established,
                cid: 7,
                kid: None,
            },
        ),
        (
            ">CLIENT:DISCONNECT,7",
            Line::ClientHeader {
                kind: Disconnect,
                cid: 7,
                kid: None,
            },
        ),
        (
            ">CLIENT:CR_RESPONSE,7,3,dGVzdA==",
            Line::ClientHeader {
                kind: CrResponse,
                cid: 7,
                kid: Some(3),
            },
        ),
        (
            ">CLIENT:ENV,username=alice",
            Line::ClientEnv {
                name: "username".into(),
                value: "alice".into(),
            },
        ),
        (
            ">CLIENT:ENV,password=a=b,c",
            Line::ClientEnv {
                name: "password".into(),
                value: "a=b,c".into(),
            },
        ),
        (
            ">CLIENT:ENV,empty=",
            Line::ClientEnv {
                name: "empty".into(),
                value: String::new(),
            },
        ),
        (">CLIENT:ENV,END", Line::ClientEnvEnd),
        (
            ">CLIENT:ADDRESS,7,10.8.0.6,1",
            Line::ClientAddress {
                cid: 7,
                addr: "10.8.0.6".into(),
                primary: true,
            },
        ),
        (
            ">BYTECOUNT_CLI:7,1234,5678",
            Line::ByteCountCli {
                cid: 7,
                bytes_in: 1234,
                bytes_out: 5678,
            },
        ),
        (
            ">BYTECOUNT:1,2",
            Line::ByteCount {
                bytes_in: 1,
                bytes_out: 2,
            },
        ),
        (
            ">HOLD:Waiting for hold release:0",
            Line::Hold("Waiting for hold release:0".into()),
        ),
        (
            ">INFO:OpenVPN Management Interface Version 5 -- type 'help' for more info",
            Line::Info(
                "OpenVPN Management Interface Version 5 -- type 'help' for more info".into(),
            ),
        ),
        (">FATAL:boom", Line::Fatal("boom".into())),
        (
            ">STATE:1700000000,CONNECTED,SUCCESS,10.8.0.1,,,,",
            Line::State(StateChange {
                time: 1_700_000_000,
                state: OvpnState::Connected,
                description: "SUCCESS".into(),
                tun_ipv4: Some("10.8.0.1".into()),
                remote_ip: None,
                remote_port: None,
                local_ip: None,
                local_port: None,
                tun_ipv6: None,
            }),
        ),
        (
            ">LOG:1700000000,I,hello",
            Line::Log("1700000000,I,hello".into()),
        ),
        (
            "SUCCESS: bytecount interval changed",
            Line::Success("bytecount interval changed".into()),
        ),
        (
            "ERROR: client-kill command failed",
            Line::Error("client-kill command failed".into()),
        ),
        (
            "ENTER PASSWORD:SUCCESS: password is correct",
            Line::Success("password is correct".into()),
        ),
        ("END", Line::End),
        (
            "TITLE\tOpenVPN 2.6.14",
            Line::Data("TITLE\tOpenVPN 2.6.14".into()),
        ),
        ("", Line::Data(String::new())),
    ];
    for (input, want) in ok {
        assert_eq!(parse_line(input), Ok(want), "{input:?}");
    }
    let bad = [
        ">BYTECOUNT_CLI:7,12",
        ">BYTECOUNT_CLI:7,12,34,56",
        ">BYTECOUNT_CLI:x,1,2",
        ">BYTECOUNT_CLI:7,-1,2",
        ">BYTECOUNT_CLI:7,99999999999999999999999,2",
        ">BYTECOUNT_CLI:7,+1,2",
        ">BYTECOUNT_CLI:7, 1,2",
        ">BYTECOUNT:1",
        ">BYTECOUNT:+1,2",
        ">BYTECOUNT:1, 2",
        ">CLIENT:CONNECT,7",
        ">CLIENT:CONNECT,,1",
        ">CLIENT:ESTABLISHED,7,1",
        ">CLIENT:ENV,novalue",
        ">CLIENT:ENV,=v",
        ">CLIENT:WHATEVER,1",
        ">CLIENT:ADDRESS,7,10.8.0.6",
        ">nocolon",
        ">lower:x",
        ">:x",
    ];
    for input in bad {
        assert!(parse_line(input).is_err(), "{input:?} accepted");
    }
    assert_eq!(
        parse_line(&"x".repeat(MAX_LINE + 1)),
        Err(LineError::TooLong)
    );
}

fn st(
    time: u64,
    state: OvpnState,
    description: &str,
    tun: Option<&str>,
    remote: Option<(&str, u16)>,
) -> Line {
    Line::State(StateChange {
        time,
        state,
        description: description.into(),
        tun_ipv4: tun.map(str::to_string),
        remote_ip: remote.map(|r| r.0.to_string()),
        remote_port: remote.map(|r| r.1),
        local_ip: None,
        local_port: None,
        tun_ipv6: None,
    })
}

/// Moved from adapter-client's mgmt. `END` is now [`Line::End`] (it was a data line there).
#[test]
fn parses_lines() {
    let connected = Line::State(StateChange {
        time: 1_700_000_000,
        state: OvpnState::Connected,
        description: "SUCCESS".into(),
        tun_ipv4: Some("10.8.0.6".into()),
        remote_ip: Some("192.0.2.1".into()),
        remote_port: Some(1194),
        local_ip: Some("192.0.2.9".into()),
        local_port: Some(40001),
        tun_ipv6: Some("fd00::1000".into()),
    });
    let table: Vec<(&str, Line)> = vec![
        (
            ">STATE:1700000000,CONNECTED,SUCCESS,10.8.0.6,192.0.2.1,1194,192.0.2.9,40001,fd00::1000",
            connected,
        ),
        (
            ">STATE:1700000001,RECONNECTING,ping-restart,,,,,\r",
            st(1_700_000_001, OvpnState::Reconnecting, "ping-restart", None, None),
        ),
        (
            ">STATE:1700000002,EXITING,server-pushed-halt,,,,,",
            st(1_700_000_002, OvpnState::Exiting, "server-pushed-halt", None, None),
        ),
        (
            ">STATE:1700000003,ASSIGN_IP,,10.8.0.6,,,,",
            st(1_700_000_003, OvpnState::AssignIp, "", Some("10.8.0.6"), None),
        ),
        (">STATE:5,WAIT,,,,,,", st(5, OvpnState::Wait, "", None, None)),
        (
            ">STATE:6,CONNECTED,SUCCESS,10.8.0.6,192.0.2.1,1194",
            st(
                6,
                OvpnState::Connected,
                "SUCCESS",
                Some("10.8.0.6"),
                Some(("192.0.2.1", 1194)),
            ),
        ),
        (
            ">STATE:7,NEW_STATE",
            st(7, OvpnState::Other("NEW_STATE".into()), "", None, None),
        ),
        (
            ">BYTECOUNT:12345,678",
            Line::ByteCount {
                bytes_in: 12345,
                bytes_out: 678,
            },
        ),
        (
            ">BYTECOUNT:18446744073709551615,0",
            Line::ByteCount {
                bytes_in: u64::MAX,
                bytes_out: 0,
            },
        ),
        (
            ">HOLD:Waiting for hold release:10",
            Line::Hold("Waiting for hold release:10".into()),
        ),
        (
            ">INFO:OpenVPN Management Interface Version 5 -- type 'help' for more info",
            Line::Info(
                "OpenVPN Management Interface Version 5 -- type 'help' for more info".into(),
            ),
        ),
        (
            ">FATAL:Cannot open TUN",
            Line::Fatal("Cannot open TUN".into()),
        ),
        (
            ">PASSWORD:Verification Failed: 'Auth'",
            Line::Password("Verification Failed: 'Auth'".into()),
        ),
        (">LOG:1,I,hello", Line::Log("1,I,hello".into())),
        (
            ">NOTIFY:info,server-pushed-halt,channel suspended, pay up",
            Line::Notify {
                severity: "info".into(),
                kind: "server-pushed-halt".into(),
                text: "channel suspended, pay up".into(),
            },
        ),
        (
            ">NOTIFY:info,server-pushed-connection-reset,",
            Line::Notify {
                severity: "info".into(),
                kind: "server-pushed-connection-reset".into(),
                text: String::new(),
            },
        ),
        (
            ">ECHO:1101519562,forget-passwords",
            Line::Notification {
                kind: "ECHO".into(),
                text: "1101519562,forget-passwords".into(),
            },
        ),
        (
            "SUCCESS: hold release succeeded",
            Line::Success("hold release succeeded".into()),
        ),
        (
            "ERROR: unknown command, enter 'help' for more options",
            Line::Error("unknown command, enter 'help' for more options".into()),
        ),
        ("END", Line::End),
        ("", Line::Data(String::new())),
    ];
    for (line, want) in table {
        assert_eq!(parse_line(line), Ok(want), "line {line:?}");
    }
}

/// Moved from adapter-client's mgmt; the error kinds are now the `kind` of
/// [`LineError::Malformed`].
#[test]
fn rejects_malformed_lines() {
    let table: Vec<(&str, &str)> = vec![
        (">STATE:abc,CONNECTED", "STATE"),
        (">STATE:1", "STATE"),
        (">STATE:", "STATE"),
        (">STATE:+1,CONNECTED", "STATE"),
        (">BYTECOUNT:1", "BYTECOUNT"),
        (">BYTECOUNT:-1,2", "BYTECOUNT"),
        (">BYTECOUNT:1,2,3", "BYTECOUNT"),
        (">BYTECOUNT:99999999999999999999999,1", "BYTECOUNT"),
        (">NOCOLON", "real-time"),
    ];
    for (line, want) in table {
        let e = parse_line(line).expect_err(line);
        assert!(
            matches!(&e, LineError::Malformed { kind, .. } if *kind == want),
            "{line:?} gave {e:?}"
        );
    }
}

/// Error messages quote at most a short piece of the peer's text.
#[test]
fn errors_are_bounded() {
    let long = format!(">BYTECOUNT:{},1", "9".repeat(5000));
    let e = parse_line(&long).expect_err("out of range");
    assert!(e.to_string().len() < 100, "{e}");
}
