//! No client can hold the embedded server: thousands of idle half-requests do not keep webhooks
//! or `/healthz` from being served (even under systemd's default open-file soft limit of
//! 1,024), a client that never finishes its headers or its body is cut off, an idle
//! keep-alive connection is closed, and beyond the connection limit a new connection waits
//! for a slot instead of being lost.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use leadrelay::cli::signed_headers;
use crate::support::process::{binary, free_port, wait_healthy};
use crate::support::{example_config, parse_config, sample, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The idle sockets of the flood: well past 1,024 open files.
const IDLE_SOCKETS: usize = 2_000;
/// The deadline the webhook and `/healthz` must each be answered within during the flood.
const ANSWER_WITHIN: Duration = Duration::from_secs(1);
/// A ceiling for waits that must end, so that a regression fails instead of hanging.
const CEILING: Duration = Duration::from_secs(15);

/// `leadrelay serve`, started with an open-file soft limit of 1,024 (systemd's default), killed
/// and reaped when dropped so that a failing test leaves no process behind.
struct Serve(Child);

impl Serve {
    fn spawn(config: &Path, data_dir: &Path, port: u16, log: &Path) -> Serve {
        let log = std::fs::File::create(log).expect("log file");
        // `-S`: only the soft limit, as systemd sets it; the hard limit stays what it was.
        let child = Command::new("sh")
            .arg("-c")
            .arg("ulimit -S -n 1024 && exec \"$0\" \"$@\"")
            .arg(binary())
            .args(["serve", "--config"])
            .arg(config)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn leadrelay serve");
        Serve(child)
    }

    /// The soft open-file limit the running process has, from /proc.
    fn soft_open_files(&self) -> u64 {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", self.0.id()))
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
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_half_requests_hold_neither_webhooks_nor_healthz() {
    // This process holds the idle sockets: it needs more than 1,024 files itself.
    let own = rlimit::increase_nofile_limit(u64::MAX).expect("raise the test's open-file limit");
    assert!(
        own > IDLE_SOCKETS as u64 + 200,
        "the hard open-file limit ({own}) is too low for this test"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    // A long header timeout: the idle sockets stay open for the whole test, so what is proven
    // is that the server has room for them, not that it dropped them.
    let text = format!(
        "{}\n[server]\nheader_read_timeout_secs = 120\n",
        example_config()
    );
    let config = parse_config(&text);
    let config_path = dir.path().join("leadrelay.toml");
    std::fs::write(&config_path, &text).expect("write config");
    let log = dir.path().join("serve.log");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let serve = Serve::spawn(&config_path, &dir.path().join("data"), port, &log);
    wait_healthy(&reqwest::Client::new(), &base).await;
    assert!(
        serve.soft_open_files() > IDLE_SOCKETS as u64 + 200,
        "the server did not raise its open-file soft limit from 1,024 (now {})",
        serve.soft_open_files()
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
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let body = sample("01-fallback-named-account.json");
    let source = config.source("website").expect("website source");
    let headers = signed_headers(source, "evt-flood", &body).expect("sign");
    let mut request = http
        .post(format!("{base}/webhooks/website"))
        .header("content-type", "application/json")
        .body(body);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let started = Instant::now();
    let answer = tokio::time::timeout(ANSWER_WITHIN, request.send()).await;
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
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

fn port_of(server: &Server) -> u16 {
    server
        .base
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port in the base URL")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_closed_after_the_header_timeout() {
    let server = Server::start_with(&with_server_section("header_read_timeout_secs = 1")).await;
    let mut socket = TcpStream::connect(("127.0.0.1", port_of(&server)))
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
    let mut silent = TcpStream::connect(("127.0.0.1", port_of(&server)))
        .await
        .expect("connect");
    read_until_closed(&mut silent).await.expect("closed");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    let server = Server::start_with(&with_server_section("header_read_timeout_secs = 1")).await;
    let mut socket = TcpStream::connect(("127.0.0.1", port_of(&server)))
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
    let mut socket = TcpStream::connect(("127.0.0.1", port_of(&server)))
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
    let port = port_of(&server);
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
