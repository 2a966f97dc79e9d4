//! Issue 11 item 5: idle and half-sent connections cannot starve the Service API. Thousands
//! of sockets that send nothing or half a request head are held open, a normal request is
//! answered meanwhile, and the server closes them after its idle / header timeouts; at the
//! connection cap, new connections wait until one closes.

use std::time::Duration;

use core_lite::server::ServerLimits;
use core_lite::testkit::{TestCore, TestOptions};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Room for both ends of every socket of these tests (client and server are this process).
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

/// Whether the server closed `s` before `deadline`: EOF or an error.
async fn closed_by(s: &TcpStream, deadline: tokio::time::Instant) -> bool {
    let mut buf = [0u8; 512];
    loop {
        if tokio::time::timeout_at(deadline, s.readable())
            .await
            .is_err()
        {
            return false;
        }
        match s.try_read(&mut buf) {
            Ok(0) => return true,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return true,
            // Whatever the server wrote before closing.
            Ok(_) => continue,
        }
    }
}

/// Still open right now (nothing to read, no EOF).
fn open_now(s: &TcpStream) -> bool {
    let mut buf = [0u8; 16];
    matches!(s.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

async fn health(url: &str) -> anyhow::Result<(u16, String)> {
    // A fresh client each time: a new connection, as a new caller would open.
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()?;
    let r = http.get(format!("{url}/health")).send().await?;
    Ok((r.status().as_u16(), r.text().await?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_sent_connections_are_closed_and_do_not_starve_requests() -> anyhow::Result<()>
{
    raise_fd_limit();
    let limits = ServerLimits {
        max_connections: 4_000,
        idle_timeout: Duration::from_secs(2),
        header_timeout: Duration::from_secs(5),
    };
    let core = TestCore::start_with(TestOptions {
        limits,
        ..TestOptions::default()
    })
    .await?;
    let addr = core.url.trim_start_matches("http://").to_string();
    // 1,250 sockets that send nothing; 1,250 that send half a request head (no token) and
    // then one more byte of it every second, so they are never idle for long and only the
    // header timeout ends them.
    let mut idle = Vec::new();
    let mut half_sent = Vec::new();
    for i in 0..2_500 {
        let mut s = TcpStream::connect(&addr).await?;
        if i % 2 == 0 {
            s.write_all(b"POST /v1/AuthClient HTTP/1.1\r\nHost: core\r\nX-Slow: ")
                .await?;
            half_sent.push(s);
        } else {
            idle.push(s);
        }
    }
    let half_sent = std::sync::Arc::new(half_sent);
    let trickle = {
        let socks = half_sent.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                for s in socks.iter() {
                    let _ = s.try_write(b"a");
                }
            }
        })
    };
    // A normal request is answered while they are all open.
    let (status, body) = health(&core.url).await?;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let still_open = idle
        .iter()
        .chain(half_sent.iter())
        .filter(|s| open_now(s))
        .count();
    assert_eq!(
        still_open, 2_500,
        "the sockets were open when it was answered"
    );

    // Then the server closes every one of them: the idle ones after the idle timeout, the
    // trickling ones after the header timeout.
    let deadline = tokio::time::Instant::now() + limits.header_timeout + Duration::from_secs(10);
    let mut not_closed = (0, 0);
    for s in &idle {
        not_closed.0 += usize::from(!closed_by(s, deadline).await);
    }
    for s in half_sent.iter() {
        not_closed.1 += usize::from(!closed_by(s, deadline).await);
    }
    trickle.abort();
    assert_eq!(not_closed, (0, 0), "(idle, half-sent) sockets never closed");
    // And it still answers.
    assert_eq!(health(&core.url).await?.0, 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_new_connections_wait_until_one_closes() -> anyhow::Result<()> {
    raise_fd_limit();
    let limits = ServerLimits {
        max_connections: 50,
        idle_timeout: Duration::from_secs(1),
        header_timeout: Duration::from_secs(2),
    };
    let core = TestCore::start_with(TestOptions {
        limits,
        ..TestOptions::default()
    })
    .await?;
    let addr = core.url.trim_start_matches("http://").to_string();
    let mut idle = Vec::new();
    for _ in 0..limits.max_connections {
        idle.push(TcpStream::connect(&addr).await?);
    }
    // The 51st connection waits until the idle ones are closed, then it is answered.
    let (status, _) = health(&core.url).await?;
    assert_eq!(status, 200);
    let closed_before_the_answer = idle.iter().filter(|s| !open_now(s)).count();
    assert!(
        closed_before_the_answer > 0,
        "answered while the {} idle connections held every slot",
        limits.max_connections
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for s in &idle {
        assert!(closed_by(s, deadline).await);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_is_closed_when_idle_after_its_answer() -> anyhow::Result<()> {
    let limits = ServerLimits {
        max_connections: 16,
        idle_timeout: Duration::from_secs(1),
        header_timeout: Duration::from_secs(3),
    };
    let core = TestCore::start_with(TestOptions {
        limits,
        ..TestOptions::default()
    })
    .await?;
    let mut s = TcpStream::connect(core.url.trim_start_matches("http://")).await?;
    // Two requests on one kept-alive connection, each answered.
    for _ in 0..2 {
        s.write_all(b"GET /health HTTP/1.1\r\nHost: core\r\n\r\n")
            .await?;
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        while !answer.ends_with(b"ok\n") {
            s.readable().await?;
            match s.try_read(&mut buf) {
                Ok(0) => anyhow::bail!("closed before the answer"),
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
        }
        assert!(answer.starts_with(b"HTTP/1.1 200"));
        assert!(open_now(&s), "kept alive after its answer");
    }
    // Then idle: closed by the server.
    let deadline = tokio::time::Instant::now() + limits.header_timeout + Duration::from_secs(5);
    assert!(
        closed_by(&s, deadline).await,
        "an idle kept-alive connection stayed open"
    );
    Ok(())
}
