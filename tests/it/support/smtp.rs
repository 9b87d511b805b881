//! A local SMTP server standing in for the mail relay: it speaks enough ESMTP for lettre
//! (EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT), records every accepted message with its
//! envelope, and can refuse recipients with a chosen reply (a 5xx or a 4xx) to test how
//! failures are classified.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One accepted message: the envelope as given to MAIL FROM / RCPT TO, and DATA un-dot-stuffed.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

#[derive(Default)]
struct State {
    mails: Vec<Mail>,
    /// RCPT TO addresses answered with this reply instead of 250, while the count lasts.
    refusals: Vec<(String, String, usize)>,
    connections: usize,
}

/// The running server; it stops when the test's runtime ends.
#[derive(Clone)]
pub struct SmtpSink {
    pub port: u16,
    state: Arc<Mutex<State>>,
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    // A client that hangs up mid-conversation is the client's business.
                    let _ = session(stream, state).await;
                });
            }
        });
        SmtpSink { port, state }
    }

    /// Answers `RCPT TO:<address>` with `reply` (such as `550 5.1.1 no such user`) the next
    /// `times` times.
    pub fn refuse(&self, address: &str, reply: &str, times: usize) {
        self.lock()
            .refusals
            .push((address.to_ascii_lowercase(), reply.to_owned(), times));
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.lock().mails.clone()
    }

    /// Messages whose envelope names `address` as a recipient.
    pub fn mails_to(&self, address: &str) -> Vec<Mail> {
        self.mails()
            .into_iter()
            .filter(|m| m.to.iter().any(|t| t.eq_ignore_ascii_case(address)))
            .collect()
    }

    pub fn connections(&self) -> usize {
        self.lock().connections
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The address inside `MAIL FROM:<a>` / `RCPT TO:<a>` (parameters after it ignored).
fn angle_address(argument: &str) -> String {
    let start = argument.find('<').map_or(0, |i| i + 1);
    let end = argument[start..]
        .find('>')
        .map_or(argument.len(), |i| start + i);
    argument[start..end].to_owned()
}

async fn session(stream: TcpStream, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    let lock = || state.lock().unwrap_or_else(|p| p.into_inner());
    lock().connections += 1;
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 sink.test ESMTP ready\r\n").await?;
    let mut from = String::new();
    let mut to = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        let verb = command
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply: String = match verb.as_str() {
            "EHLO" => "250-sink.test\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 OK".into(),
            "HELO" | "NOOP" => "250 OK".into(),
            "RSET" => {
                from.clear();
                to.clear();
                "250 OK".into()
            }
            "MAIL" => {
                from = angle_address(&command);
                to.clear();
                "250 OK".into()
            }
            "RCPT" => {
                let address = angle_address(&command);
                let mut state = lock();
                let refusal = state
                    .refusals
                    .iter_mut()
                    .find(|(a, _, n)| *n > 0 && a.eq_ignore_ascii_case(&address));
                match refusal {
                    Some((_, reply, n)) => {
                        *n -= 1;
                        reply.clone()
                    }
                    None => {
                        to.push(address);
                        "250 OK".into()
                    }
                }
            }
            "DATA" => {
                write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    // Dot-stuffing (RFC 5321 4.5.2): a leading dot was doubled by the client.
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                lock().mails.push(Mail {
                    from: from.clone(),
                    to: std::mem::take(&mut to),
                    data,
                });
                "250 queued".into()
            }
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => "502 command not implemented".into(),
        };
        write.write_all(reply.as_bytes()).await?;
        write.write_all(b"\r\n").await?;
    }
}
