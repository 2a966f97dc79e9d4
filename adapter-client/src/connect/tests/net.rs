//! The actor's hooks into the DNS code (`NetGuard`), through the process trait with an
//! in-memory `openvpn` and core in virtual time: the pushed servers go into a resolv.conf
//! (a temporary file) on CONNECTED, the original comes back on every drop and at the stop.

use std::time::Duration;

use service_api::{ClientKey, Secret, ServiceStatus, SpeedLimits};
use tokio_util::sync::CancellationToken;

use super::fakes::{state_dir, until, FakeCore, FakeLauncher, PATIENCE};
use crate::connect::actor::Actor;
use crate::connect::{ConnectSettings, Outcome};
use crate::dns::DnsMode;
use crate::netguard::NetGuard;

fn read(p: &std::path::Path) -> String {
    std::fs::read_to_string(p).expect("read resolv.conf")
}

#[tokio::test(start_paused = true)]
async fn pushed_dns_is_applied_while_connected_and_restored_on_drops_and_stop() {
    let (dir, state_file) = state_dir();
    let resolv = dir.path().join("resolv.conf");
    let original = "nameserver 192.0.2.53\noptions edns0\n";
    std::fs::write(&resolv, original).expect("write");
    let journal = dir.path().join("rt.net.json");
    let mut s = ConnectSettings::new(
        ClientKey("ck-1".into()),
        "http://core.invalid".into(),
        Secret("token".into()),
    );
    s.state_file = state_file;
    s.shaping = false;
    s.backoff_initial = Duration::from_secs(1);
    s.net.dns = DnsMode::ResolvConf;
    s.net.dns_tools.resolv_conf = resolv.clone();
    let guard = NetGuard::start(&s.net, &journal, None)
        .await
        .expect("net guard");
    let launcher = FakeLauncher::default();
    let core = FakeCore::new(ServiceStatus::Active);
    let actor = Actor::new(
        s,
        core.clone(),
        launcher.clone(),
        "vpn.example.net:1194".into(),
        SpeedLimits::default(),
    )
    .with_net(guard);
    let cancel = CancellationToken::new();
    let h = tokio::spawn(actor.run(cancel.clone()));

    let mut p = launcher.next().await;
    p.connect().await;
    p.expect("log on").await;
    p.say(">HOLD:Waiting for hold release:0").await;
    p.expect("hold release").await;
    p.say(">LOG:1,,PUSH: Received control message: 'PUSH_REPLY,dhcp-option DNS 10.8.0.1,dhcp-option DNS 127.0.0.1,redirect-gateway def1,dhcp-option DOMAIN vpn.example'").await;
    p.say(">STATE:2,CONNECTED,SUCCESS,10.8.0.6,192.0.2.1,1194,,")
        .await;
    until("the pushed server in resolv.conf", || {
        read(&resolv).contains("nameserver 10.8.0.1").then_some(())
    })
    .await;
    let text = read(&resolv);
    assert!(!text.contains("127.0.0.1"), "a loopback server is refused");
    assert!(!text.contains("192.0.2.53"), "{text}");
    assert!(text.contains("search vpn.example\n") && text.contains("options edns0\n"));
    assert!(journal.is_file(), "journaled while applied");

    // A drop restores; the next connection applies its own push.
    p.say(">STATE:3,RECONNECTING,ping-restart,,,,,").await;
    until("resolv.conf restored on the drop", || {
        (read(&resolv) == original).then_some(())
    })
    .await;
    assert!(!journal.exists());
    p.say(">HOLD:Waiting for hold release:5").await;
    p.expect("hold release").await;
    p.say(">LOG:4,,PUSH: Received control message: 'PUSH_REPLY,dhcp-option DNS 10.8.0.9'")
        .await;
    p.say(">STATE:5,CONNECTED,SUCCESS,10.8.0.6,192.0.2.1,1194,,")
        .await;
    until("the new server in resolv.conf", || {
        read(&resolv).contains("nameserver 10.8.0.9").then_some(())
    })
    .await;
    assert!(
        !read(&resolv).contains("10.8.0.1"),
        "the old push is forgotten"
    );

    // The stop restores the file exactly and removes the journal.
    cancel.cancel();
    p.expect("signal SIGTERM").await;
    p.exit("exit status: 0").await;
    let outcome = tokio::time::timeout(PATIENCE, h)
        .await
        .expect("the actor returned")
        .expect("no panic");
    assert_eq!(outcome, Outcome::Stopped);
    assert_eq!(read(&resolv), original);
    assert!(!journal.exists());
}
