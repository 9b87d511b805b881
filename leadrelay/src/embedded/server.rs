//! The embedded HTTP server: an accept loop over hyper's HTTP/1 connections with the limits
//! that keep a slow or idle client from holding the service (`[server]` in the config):
//! a header-read timeout (which also closes idle keep-alive connections), a whole-request
//! timeout, a connection limit below the open-file limit, and an accept loop that backs off
//! instead of spinning when the process runs out of file descriptors.

use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use leadrelay_shared::config::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tower_http::timeout::TimeoutLayer;
use tracing::{debug, error, info, warn};

/// File descriptors kept free of client connections: the SQLite files, outbound HTTP and SMTP
/// connections, logs.
const RESERVED_FDS: u64 = 256;
/// The pause after an accept error such as EMFILE before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The limits one server runs with, from `[server]` and the open-file limit.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    pub max_connections: usize,
}

impl Limits {
    /// `[server]`, with the connection limit lowered to fit `open_files` (the soft limit)
    /// less what the rest of the process needs, so that accepting never runs out first.
    pub fn new(config: &ServerConfig, open_files: Option<u64>) -> Self {
        let fit = open_files
            .map(|n| n.saturating_sub(RESERVED_FDS).max(1))
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(usize::MAX);
        // The drain waits for every permit at once, and a semaphore counts in u32.
        let max_connections = config
            .max_connections
            .min(fit)
            .min(u32::MAX as usize)
            .max(1);
        if max_connections < config.max_connections {
            warn!(
                configured = config.max_connections,
                open_files = open_files.unwrap_or_default(),
                max_connections,
                "server.max_connections lowered to fit the open-file limit (raise LimitNOFILE)"
            );
        }
        Limits {
            header_read_timeout: Duration::from_secs(config.header_read_timeout_secs),
            request_timeout: Duration::from_secs(config.request_timeout_secs),
            max_connections,
        }
    }
}

/// Raises the open-file soft limit to the hard limit (systemd's default soft limit of 1,024
/// is far below what a server holding client connections needs); returns the soft limit now
/// in force, or `None` where it cannot be read.
pub fn raise_open_file_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(error) => {
            warn!(%error, "could not raise the open-file limit");
            rlimit::Resource::NOFILE.get().ok().map(|(soft, _)| soft)
        }
    }
}

/// What the connection tasks are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    /// Finish the request in flight, then close.
    Draining,
    /// Close now.
    Closing,
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting, lets requests
/// in flight finish (for at most the header and request timeouts) and closes the rest.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let app = app.layer(TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        limits.request_timeout,
    ));
    let service = TowerToHyperService::new(app);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        // Counted from the connection's start and again after each response: it bounds both a
        // client that never finishes its headers and an idle keep-alive connection.
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let http = Arc::new(http);

    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (phase, _) = watch::channel(Phase::Serving);
    let mut shutdown = pin!(shutdown);
    let mut burst = ErrorBurst::default();
    loop {
        // A slot first: beyond the limit, new connections wait in the kernel's backlog (and
        // are served once a slot frees) rather than being accepted only to be refused.
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // closed: never happens while this loop runs
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => (stream, peer),
                Err(error) if is_connection_error(&error) => continue,
                Err(error) => {
                    // EMFILE and the like: the connection stays in the backlog; pause rather
                    // than spin, and try again.
                    if burst.failed() {
                        error!(%error, "accept failed; retrying every 100 ms until it succeeds");
                    }
                    drop(permit);
                    tokio::select! {
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                        () = &mut shutdown => break,
                    }
                }
            },
            () = &mut shutdown => break,
        };
        if let Some(failures) = burst.succeeded() {
            info!(failures, "accepting connections again");
        }
        if let Err(error) = stream.set_nodelay(true) {
            debug!(%error, "could not set TCP_NODELAY");
        }
        let http = http.clone();
        let service = service.clone();
        let mut phase = phase.subscribe();
        tokio::spawn(async move {
            // Every request on the connection learns its peer (a source's `allow_ips`).
            let peer = leadrelay_web::Peer(peer.ip());
            let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
                request.extensions_mut().insert(peer);
                hyper::service::Service::call(&service, request)
            });
            let mut connection = pin!(http.serve_connection(TokioIo::new(stream), service));
            loop {
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(error) = result {
                            debug!(%error, "connection closed with an error");
                        }
                        break;
                    }
                    changed = phase.changed() => {
                        let now = if changed.is_ok() { *phase.borrow_and_update() } else { Phase::Closing };
                        match now {
                            Phase::Serving => {}
                            Phase::Draining => connection.as_mut().graceful_shutdown(),
                            Phase::Closing => break,
                        }
                    }
                }
            }
            drop(permit);
        });
    }
    drop(listener);

    // Requests in flight finish; idle connections close at once, slow ones within the limits.
    phase.send_replace(Phase::Draining);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let drain = limits.header_read_timeout + limits.request_timeout;
    if tokio::time::timeout(drain, slots.acquire_many(all))
        .await
        .is_err()
    {
        let open = limits
            .max_connections
            .saturating_sub(slots.available_permits());
        warn!(open, "connections still open after the drain; closing them");
    }
    phase.send_replace(Phase::Closing);
    Ok(())
}

/// Accept errors in a row: logged when a burst starts and when it ends, not once per error.
#[derive(Debug, Default)]
struct ErrorBurst {
    failures: u64,
}

impl ErrorBurst {
    /// Counts a failure; true for the first of a burst, the one to log.
    fn failed(&mut self) -> bool {
        self.failures += 1;
        self.failures == 1
    }

    /// Ends a burst, if one was running: how many failures it had.
    fn succeeded(&mut self) -> Option<u64> {
        (self.failures > 0).then(|| std::mem::take(&mut self.failures))
    }
}

/// Errors about one connection that the peer ended before it was accepted: nothing to wait
/// for, accept the next.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_errors_are_logged_once_per_burst() {
        let mut burst = ErrorBurst::default();
        assert_eq!(burst.succeeded(), None);
        assert!(burst.failed());
        assert!(!burst.failed());
        assert!(!burst.failed());
        assert_eq!(burst.succeeded(), Some(3));
        assert_eq!(burst.succeeded(), None);
        assert!(burst.failed(), "a new burst is logged again");
    }

    #[test]
    fn the_connection_limit_fits_the_open_file_limit() {
        let config = ServerConfig::default();
        assert_eq!(Limits::new(&config, None).max_connections, 10_000);
        assert_eq!(
            Limits::new(&config, Some(1_048_576)).max_connections,
            10_000
        );
        assert_eq!(Limits::new(&config, Some(1024)).max_connections, 768);
        assert_eq!(Limits::new(&config, Some(10)).max_connections, 1);
        let limits = Limits::new(&config, Some(20_000));
        assert_eq!(limits.header_read_timeout, Duration::from_secs(10));
        assert_eq!(limits.request_timeout, Duration::from_secs(30));
    }
}
