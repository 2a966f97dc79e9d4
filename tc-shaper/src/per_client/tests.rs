use super::*;

fn cfg() -> ShapingConfig {
    ShapingConfig {
        tun: "tun0".into(),
        ifb: "ifb-tun0".into(),
        link_bps: 1_000_000_000,
        max_clients: 10,
        netns: None,
    }
}

fn argv(c: &TcCommand) -> String {
    c.display()
}

/// Moved from adapter-server's shaping.
#[test]
fn setup_argv_exact() {
    let t = Tools::default();
    let got: Vec<String> = setup_commands(&cfg(), &t).iter().map(argv).collect();
    let want = [
        "ip link add name ifb-tun0 type ifb",
        "ip link set dev ifb-tun0 up",
        "tc qdisc add dev tun0 handle ffff: ingress",
        "tc filter add dev tun0 parent ffff: protocol all prio 1 u32 match u32 0 0 action mirred egress redirect dev ifb-tun0",
        "tc qdisc add dev tun0 root handle 1: htb default 0",
        "tc class add dev tun0 parent 1: classid 1:1 htb rate 1000000000bit ceil 1000000000bit",
        "tc filter add dev tun0 parent 1: prio 1 handle 2: protocol ip u32 divisor 256",
        "tc filter add dev tun0 parent 1: prio 1 protocol ip u32 ht 800:: match u32 0 0 hashkey mask 0x000000ff at 16 link 2:",
        "tc qdisc add dev ifb-tun0 root handle 1: htb default 0",
        "tc class add dev ifb-tun0 parent 1: classid 1:1 htb rate 1000000000bit ceil 1000000000bit",
        "tc filter add dev ifb-tun0 parent 1: prio 1 handle 2: protocol ip u32 divisor 256",
        "tc filter add dev ifb-tun0 parent 1: prio 1 protocol ip u32 ht 800:: match u32 0 0 hashkey mask 0x000000ff at 12 link 2:",
    ];
    assert_eq!(got, want);
    let clean: Vec<String> = setup_cleanup_commands(&cfg(), &t)
        .iter()
        .map(argv)
        .collect();
    assert_eq!(
        clean,
        [
            "tc qdisc del dev tun0 root",
            "tc qdisc del dev tun0 ingress",
            "ip link del dev ifb-tun0"
        ]
    );
}

/// Moved from adapter-server's shaping.
#[test]
fn client_argv_exact() {
    let t = Tools::default();
    let speed = SpeedLimits {
        min_download_bps: Some(1_000_000),
        max_download_bps: Some(8_000_000),
        min_upload_bps: None,
        max_upload_bps: Some(4_000_000),
    };
    let addr = Ipv4Addr::new(10, 8, 0, 254);
    let (cmds, shape) = client_add_commands(&cfg(), &t, 13, addr.into(), &speed);
    let got: Vec<String> = cmds.iter().map(argv).collect();
    let want = [
        "tc class add dev tun0 parent 1:1 classid 1:f htb rate 1000000bit ceil 8000000bit quantum 1514",
        "tc filter add dev tun0 parent 1: prio 1 handle 2:fe:e protocol ip u32 ht 2:fe: match ip dst 10.8.0.254/32 flowid 1:f",
        "tc class add dev ifb-tun0 parent 1:1 classid 1:f htb rate 8000bit ceil 4000000bit quantum 1514",
        "tc filter add dev ifb-tun0 parent 1: prio 1 handle 2:fe:e protocol ip u32 ht 2:fe: match ip src 10.8.0.254/32 flowid 1:f",
    ];
    assert_eq!(got, want);
    let rm: Vec<String> = client_remove_commands(&cfg(), &t, &shape)
        .iter()
        .map(argv)
        .collect();
    let want_rm = [
        "tc filter del dev tun0 parent 1: prio 1 handle 2:fe:e protocol ip u32",
        "tc class del dev tun0 classid 1:f",
        "tc filter del dev ifb-tun0 parent 1: prio 1 handle 2:fe:e protocol ip u32",
        "tc class del dev ifb-tun0 classid 1:f",
    ];
    assert_eq!(rm, want_rm);
    assert_eq!(
        argv(&TcCommand::htb_class_del(&t, "tun0", &class_id(0)).in_netns(Some("ns1"))),
        "tc -n ns1 class del dev tun0 classid 1:2"
    );
    assert_eq!(
        argv(&TcCommand::ifb_add(&t, "ifb0").in_netns(Some("ns1"))),
        "ip -n ns1 link add name ifb0 type ifb"
    );
    assert_eq!(
        argv(&TcCommand::ifb_add(&t, "ifb0").in_netns(None)),
        "ip link add name ifb0 type ifb"
    );

    // Download only: nothing on the IFB; unlimited: nothing at all.
    let dl_only = SpeedLimits {
        max_download_bps: Some(2_000_000),
        ..Default::default()
    };
    let (cmds, shape) =
        client_add_commands(&cfg(), &t, 0, Ipv4Addr::new(10, 8, 0, 2).into(), &dl_only);
    assert_eq!(cmds.len(), 2);
    assert!(shape.download && !shape.upload);
    assert_eq!(client_remove_commands(&cfg(), &t, &shape).len(), 2);
    let (cmds, _) = client_add_commands(
        &cfg(),
        &t,
        0,
        Ipv4Addr::new(10, 8, 0, 2).into(),
        &SpeedLimits::default(),
    );
    assert!(cmds.is_empty());
}

/// A client with an IPv6 address gets one more filter per shaped direction, into the same
/// class, and loses exactly those again; the IPv6 tables are added and removed on their
/// own.
#[test]
fn client_with_ipv6_argv_exact() {
    let t = Tools::default();
    let speed = SpeedLimits {
        min_download_bps: Some(1_000_000),
        max_download_bps: Some(8_000_000),
        min_upload_bps: None,
        max_upload_bps: Some(4_000_000),
    };
    let addrs = ClientAddrs {
        v4: Ipv4Addr::new(10, 8, 0, 6),
        v6: Some("fd00:8::1006".parse().expect("addr")),
    };
    let (cmds, shape) = client_add_commands(&cfg(), &t, 0, addrs, &speed);
    let got: Vec<String> = cmds.iter().map(argv).collect();
    let want = [
        "tc class add dev tun0 parent 1:1 classid 1:2 htb rate 1000000bit ceil 8000000bit quantum 1514",
        "tc filter add dev tun0 parent 1: prio 1 handle 2:6:1 protocol ip u32 ht 2:6: match ip dst 10.8.0.6/32 flowid 1:2",
        "tc filter add dev tun0 parent 1: prio 2 handle 3:6:1 protocol ipv6 u32 ht 3:6: match ip6 dst fd00:8::1006/128 flowid 1:2",
        "tc class add dev ifb-tun0 parent 1:1 classid 1:2 htb rate 8000bit ceil 4000000bit quantum 1514",
        "tc filter add dev ifb-tun0 parent 1: prio 1 handle 2:6:1 protocol ip u32 ht 2:6: match ip src 10.8.0.6/32 flowid 1:2",
        "tc filter add dev ifb-tun0 parent 1: prio 2 handle 3:6:1 protocol ipv6 u32 ht 3:6: match ip6 src fd00:8::1006/128 flowid 1:2",
    ];
    assert_eq!(got, want);
    assert_eq!(shape.addrs, addrs);
    let rm: Vec<String> = client_remove_commands(&cfg(), &t, &shape)
        .iter()
        .map(argv)
        .collect();
    let want_rm = [
        "tc filter del dev tun0 parent 1: prio 1 handle 2:6:1 protocol ip u32",
        "tc filter del dev tun0 parent 1: prio 2 handle 3:6:1 protocol ipv6 u32",
        "tc class del dev tun0 classid 1:2",
        "tc filter del dev ifb-tun0 parent 1: prio 1 handle 2:6:1 protocol ip u32",
        "tc filter del dev ifb-tun0 parent 1: prio 2 handle 3:6:1 protocol ipv6 u32",
        "tc class del dev ifb-tun0 classid 1:2",
    ];
    assert_eq!(rm, want_rm);

    let v6: Vec<String> = ipv6_setup_commands(&cfg(), &t).iter().map(argv).collect();
    assert_eq!(
        v6,
        [
            "tc filter add dev tun0 parent 1: prio 2 handle 3: protocol ipv6 u32 divisor 256",
            "tc filter add dev tun0 parent 1: prio 2 protocol ipv6 u32 match u32 0 0 hashkey mask 0x000000ff at 36 link 3:",
            "tc filter add dev ifb-tun0 parent 1: prio 2 handle 3: protocol ipv6 u32 divisor 256",
            "tc filter add dev ifb-tun0 parent 1: prio 2 protocol ipv6 u32 match u32 0 0 hashkey mask 0x000000ff at 20 link 3:",
        ]
    );
    let v6_rm = ipv6_cleanup_commands(&cfg(), &t);
    assert!(v6_rm.iter().all(TcCommand::ignores_missing));
    let v6_rm: Vec<String> = v6_rm.iter().map(argv).collect();
    assert_eq!(
        v6_rm,
        [
            "tc filter del dev tun0 parent 1: prio 2 protocol ipv6 u32",
            "tc filter del dev ifb-tun0 parent 1: prio 2 protocol ipv6 u32",
        ]
    );
    // From an IPv4 address alone: no IPv6 filter.
    let only_v4: ClientAddrs = Ipv4Addr::new(10, 8, 0, 6).into();
    assert_eq!(only_v4.all().count(), 1);
}
