//! No client can hold the embedded server: thousands of idle half-requests do not keep webhooks
//! or `/healthz` from being served (even under systemd's default open-file soft limit of
//! 1,024), a client that never finishes its headers or its body is cut off, an idle
//! keep-alive connection is closed, and beyond the connection limit a new connection waits
//! for a slot instead of being lost.

use std::time::{Duration, Instant};

use crate::support::process::{serve, Serve, ServeFiles};
use crate::support::serial;
use crate::support::{example_config, parse_config, sample, signed_webhook, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The idle sockets of the flood: well past 1,024 open files.
const IDLE_SOCKETS: usize = 2_000;
/// The deadline the webhook and `/healthz` must each be answered within during the flood.
const ANSWER_WITHIN: Duration = Duration::from_secs(1);
/// A ceiling for waits that must end, so that a regression fails instead of hanging.
const CEILING: Duration = Duration::from_secs(15);

/// The soft open-file limit a running `leadrelay serve` has, from /proc.
fn soft_open_files(serve: &Serve) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", serve.pid()))
        .expect("/proc/<pid>/limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    line.split_whitespace()
        .nth(3)
        .and_then(|n| n.parse().ok())
        .expect("a numeric soft limit")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_half_requests_hold_neither_webhooks_nor_healthz() {
    let _heavy = serial::heavy().await; // 2,000 open sockets and a one-second deadline
                                        // This process holds the idle sockets: it needs more than 1,024 files itself.
    let own = rlimit::increase_nofile_limit(u64::MAX).expect("raise the test's open-file limit");
    assert!(
        own > IDLE_SOCKETS as u64 + 200,
        "the hard open-file limit ({own}) is too low for this test"
    );
    // A long header timeout: the idle sockets stay open for the whole test, so what is proven
    // is that the server has room for them, not that it dropped them.
    let text = format!(
        "{}\n[server]\nheader_read_timeout_secs = 120\n",
        example_config()
    );
    let config = parse_config(&text);
    let files = ServeFiles::new(&text);
    // Started with systemd's default soft limit of 1,024.
    let serve = serve(&files).open_files_soft_limit(1024).spawn().await;
    let (port, base) = (serve.port, serve.base.clone());
    assert!(
        soft_open_files(&serve) > IDLE_SOCKETS as u64 + 200,
        "the server did not raise its open-file soft limit from 1,024 (now {})",
        soft_open_files(&serve)
    );

    let mut idle = Vec::with_capacity(IDLE_SOCKETS);
    let opened = tokio::time::timeout(CEILING, async {
        for _ in 0..IDLE_SOCKETS {
            let mut socket = TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect");
            socket
                .write_all(b"POST /webhooks/webs")
                .await
                .expect("half a request line");
            idle.push(socket);
        }
    })
    .await;
    assert!(
        opened.is_ok(),
        "the server stopped accepting: {} idle sockets opened in {CEILING:?}",
        idle.len()
    );

    // A fresh client each: no connection pooled before the flood.
    let http =
        leadrelay_https::client(|builder| builder.pool_max_idle_per_host(0)).expect("client");
    let body = sample("01-fallback-named-account.json");
    let request = signed_webhook(&http, &base, &config, "website", "evt-flood", &body);
    let started = Instant::now();
    let answer = tokio::time::timeout(ANSWER_WITHIN, request.send()).await;
    let log_text = || files.log_text();
    let answer = answer
        .unwrap_or_else(|_| {
            panic!(
                "the webhook was not answered within {ANSWER_WITHIN:?}; server log:\n{}",
                log_text()
            )
        })
        .expect("webhook request");
    assert_eq!(answer.status().as_u16(), 202, "{}", log_text());
    assert!(started.elapsed() < ANSWER_WITHIN);

    let started = Instant::now();
    let health = tokio::time::timeout(ANSWER_WITHIN, http.get(format!("{base}/healthz")).send())
        .await
        .unwrap_or_else(|_| panic!("/healthz was not answered within {ANSWER_WITHIN:?}"))
        .expect("healthz request");
    assert!(health.status().is_success());
    assert!(started.elapsed() < ANSWER_WITHIN);

    assert!(
        !log_text().contains("Too many open files"),
        "{}",
        log_text()
    );
    drop(idle);
    drop(serve);
}

/// Reads until the server closes the connection (EOF or reset); what it sent first.
async fn read_until_closed(socket: &mut TcpStream) -> Result<String, &'static str> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(CEILING, async {
        let mut buffer = [0u8; 4096];
        loop {
            match socket.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    match read {
        Ok(()) => Ok(String::from_utf8_lossy(&received).into_owned()),
        Err(_) => Err("the server kept the connection open"),
    }
}

fn with_server_section(section: &str) -> String {
    format!("{}\n[server]\n{section}\n", example_config())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_closed_after_the_header_timeout() {
    let server = Server::start_with(&with_server_section("header_read_timeout_secs = 1")).await;
    let mut socket = TcpStream::connect(("127.0.0.1", server.port()))
        .await
        .expect("connect");
    socket
        .write_all(b"POST /webhooks/website HTTP/1.1\r\nHost: leadrelay\r\nContent-Type: appl")
        .await
        .expect("partial headers");
    let answer = read_until_closed(&mut socket).await.expect("closed");
    assert!(!answer.contains("202"), "{answer}");
    assert_eq!(server.counts().await.leads, 0);

    // Nothing at all is bounded the same way.
    let mut silent = TcpStream::connect(("127.0.0.1", server.port()))
        .await
        .expect("connect");
    read_until_closed(&mut silent).await.expect("closed");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    let server = Server::start_with(&with_server_section("header_read_timeout_secs = 1")).await;
    let mut socket = TcpStream::connect(("127.0.0.1", server.port()))
        .await
        .expect("connect");
    socket
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: leadrelay\r\n\r\n")
        .await
        .expect("request");
    // The response, then nothing: the connection is kept alive, then closed when idle.
    let answer = read_until_closed(&mut socket).await.expect("closed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_arrives_gets_408_after_the_request_timeout() {
    let server = Server::start_with(&with_server_section(
        "header_read_timeout_secs = 1\nrequest_timeout_secs = 2",
    ))
    .await;
    let body = sample("01-fallback-named-account.json");
    let mut head = format!(
        "POST /webhooks/website HTTP/1.1\r\nHost: leadrelay\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in server.signed("website", "evt-slow", &body) {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut socket = TcpStream::connect(("127.0.0.1", server.port()))
        .await
        .expect("connect");
    socket.write_all(head.as_bytes()).await.expect("headers");
    socket.write_all(&body[..10]).await.expect("a little body");
    let answer = read_until_closed(&mut socket).await.expect("closed");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(server.counts().await.leads, 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_connection_limit_a_connection_waits_for_a_free_slot() {
    let server = Server::start_with(&with_server_section(
        "header_read_timeout_secs = 60\nmax_connections = 5",
    ))
    .await;
    let port = server.port();
    let mut idle = Vec::new();
    for _ in 0..5 {
        let mut socket = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        socket.write_all(b"GET /heal").await.expect("half");
        idle.push(socket);
    }
    let probe = tokio::spawn(async move {
        let mut socket = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect: waits in the backlog, not refused");
        socket
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: leadrelay\r\nConnection: close\r\n\r\n")
            .await
            .expect("request");
        read_until_closed(&mut socket).await
    });
    // Every slot is held: the probe is not served while they are.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!probe.is_finished(), "a sixth connection was served");
    // Slots free up: the probe, waiting in the backlog, is served.
    drop(idle);
    let answer = probe.await.expect("probe task").expect("answered");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    server.stop().await;
}
