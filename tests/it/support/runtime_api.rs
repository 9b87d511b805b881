//! A local AWS Lambda Runtime API (version 2018-06-01), for running a function's real
//! `bootstrap` outside Lambda: it hands out one invocation and reports every call the runtime
//! makes, with the instant it arrived, so a caller can time a cold start.
//!
//! The documented endpoints: `GET /runtime/invocation/next` answers with the event and the
//! `Lambda-Runtime-Aws-Request-Id`, `-Deadline-Ms`, `-Invoked-Function-Arn` and `-Trace-Id`
//! headers; `POST /runtime/invocation/{id}/response`, `.../{id}/error` and
//! `POST /runtime/init/error` are answered `202 {"status":"OK"}`. Once the invocation is handed
//! out, a further `next` is held open (as Lambda holds a frozen environment's) until the API
//! is dropped.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::{mpsc, watch};

const VERSION: &str = "/2018-06-01";
const ERROR_TYPE_HEADER: &str = "lambda-runtime-function-error-type";

/// The one invocation the API hands out.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub request_id: String,
    /// The event, as the trigger's service sends it (API Gateway, SQS, EventBridge...).
    pub event: Vec<u8>,
    pub function_arn: String,
    pub trace_id: String,
    /// The function's timeout: `Lambda-Runtime-Deadline-Ms` is this far from the hand-out.
    pub timeout: Duration,
}

/// A call the runtime made, with when it arrived.
#[derive(Debug)]
pub enum Call {
    /// `GET /runtime/invocation/next`: the runtime is ready for an invocation.
    Next { at: Instant },
    /// The invocation was handed out in answer to the previous `Next`.
    HandedOut { at: Instant, request_id: String },
    /// `POST /runtime/invocation/{id}/response`.
    Response {
        at: Instant,
        request_id: String,
        body: Bytes,
    },
    /// `POST /runtime/invocation/{id}/error`.
    InvocationError {
        at: Instant,
        request_id: String,
        error_type: Option<String>,
        body: Bytes,
    },
    /// `POST /runtime/init/error`: the function could not start.
    InitError {
        at: Instant,
        error_type: Option<String>,
        body: Bytes,
    },
    /// Anything else: not part of the documented API.
    Unexpected { method: Method, uri: Uri },
}

/// The Runtime API on a free loopback port, serving until dropped.
pub struct RuntimeApi {
    address: SocketAddr,
    calls: mpsc::UnboundedReceiver<Call>,
    closed: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct Shared {
    invocation: Arc<Mutex<Option<Invocation>>>,
    calls: mpsc::UnboundedSender<Call>,
    closed: watch::Receiver<bool>,
}

impl RuntimeApi {
    /// Serves `invocation` (or none: every `next` is held) on 127.0.0.1.
    pub async fn start(invocation: Option<Invocation>) -> std::io::Result<RuntimeApi> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let (calls_tx, calls) = mpsc::unbounded_channel();
        let (closed, closed_rx) = watch::channel(false);
        let shared = Shared {
            invocation: Arc::new(Mutex::new(invocation)),
            calls: calls_tx,
            closed: closed_rx,
        };
        let app = axum::Router::new()
            .route(&format!("{VERSION}/runtime/invocation/next"), get(next))
            .route(
                &format!("{VERSION}/runtime/invocation/{{id}}/response"),
                post(response),
            )
            .route(
                &format!("{VERSION}/runtime/invocation/{{id}}/error"),
                post(invocation_error),
            )
            .route(&format!("{VERSION}/runtime/init/error"), post(init_error))
            .fallback(unexpected)
            .with_state(shared);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(RuntimeApi {
            address,
            calls,
            closed,
            server,
        })
    }

    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// The next call the runtime makes (waits for it).
    pub async fn call(&mut self) -> Option<Call> {
        self.calls.recv().await
    }

    /// A call already made and not yet taken, without waiting.
    pub fn pending_call(&mut self) -> Option<Call> {
        self.calls.try_recv().ok()
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        // Releases the held `next` requests, then stops accepting connections.
        let _ = self.closed.send(true);
        self.server.abort();
    }
}

async fn next(State(shared): State<Shared>) -> Response {
    let _ = shared.calls.send(Call::Next { at: Instant::now() });
    let invocation = shared
        .invocation
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take();
    let Some(invocation) = invocation else {
        let mut closed = shared.closed.clone();
        let _ = closed.wait_for(|closed| *closed).await;
        return StatusCode::GONE.into_response();
    };
    let deadline_ms = (SystemTime::now() + invocation.timeout)
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_millis())
        .unwrap_or_default();
    let response = Response::builder()
        .status(StatusCode::OK)
        .header("lambda-runtime-aws-request-id", &invocation.request_id)
        .header("lambda-runtime-deadline-ms", deadline_ms.to_string())
        .header(
            "lambda-runtime-invoked-function-arn",
            &invocation.function_arn,
        )
        .header("lambda-runtime-trace-id", &invocation.trace_id)
        .header("content-type", "application/json")
        .body(Body::from(invocation.event));
    let _ = shared.calls.send(Call::HandedOut {
        at: Instant::now(),
        request_id: invocation.request_id,
    });
    response.unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn accepted() -> Response {
    (
        StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({ "status": "OK" })),
    )
        .into_response()
}

fn error_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(ERROR_TYPE_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

async fn response(
    State(shared): State<Shared>,
    Path(request_id): Path<String>,
    body: Bytes,
) -> Response {
    let _ = shared.calls.send(Call::Response {
        at: Instant::now(),
        request_id,
        body,
    });
    accepted()
}

async fn invocation_error(
    State(shared): State<Shared>,
    Path(request_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let _ = shared.calls.send(Call::InvocationError {
        at: Instant::now(),
        request_id,
        error_type: error_type(&headers),
        body,
    });
    accepted()
}

async fn init_error(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let _ = shared.calls.send(Call::InitError {
        at: Instant::now(),
        error_type: error_type(&headers),
        body,
    });
    accepted()
}

async fn unexpected(State(shared): State<Shared>, method: Method, uri: Uri) -> Response {
    let _ = shared.calls.send(Call::Unexpected { method, uri });
    StatusCode::NOT_FOUND.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::lambda_runtime::{self, service_fn, LambdaEvent};
    use serde_json::{json, Value};

    /// The Lambda runtime client reads its endpoint from the environment, which the tests
    /// share: one at a time.
    static ENVIRONMENT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    fn invocation(event: Value) -> Invocation {
        Invocation {
            request_id: "8476a536-e9f4-11e8-9739-2dfe598c3fcd".into(),
            event: event.to_string().into_bytes(),
            function_arn: "arn:aws:lambda:us-east-1:123456789012:function:echo".into(),
            trace_id: "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Sampled=1".into(),
            timeout: Duration::from_secs(10),
        }
    }

    /// The next call, or a failure if the client made none for a long while (it died).
    async fn call(api: &mut RuntimeApi) -> Call {
        tokio::time::timeout(Duration::from_secs(10), api.call())
            .await
            .expect("the runtime client made no call within 10 s")
            .expect("the API is serving")
    }

    /// The real Lambda runtime client (`lambda_runtime`, as the functions link it) against
    /// the API, with `handler`.
    fn run_client<F, Fut>(api: &RuntimeApi, handler: F) -> tokio::task::JoinHandle<()>
    where
        F: Fn(LambdaEvent<Value>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<Value, lambda_runtime::Error>> + Send + 'static,
    {
        for (name, value) in [
            ("AWS_LAMBDA_RUNTIME_API", api.address()),
            ("AWS_LAMBDA_FUNCTION_NAME", "echo".into()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".into()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "stream".into()),
            ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/echo".into()),
        ] {
            std::env::set_var(name, value);
        }
        tokio::spawn(async move {
            let _ = lambda_runtime::run(service_fn(handler)).await;
        })
    }

    #[tokio::test]
    async fn the_runtime_gets_the_event_with_its_context_and_its_answer_is_reported() {
        let _environment = ENVIRONMENT.lock().await;
        let mut api = RuntimeApi::start(Some(invocation(json!({ "n": 1 }))))
            .await
            .expect("start");
        let client = run_client(&api, |event: LambdaEvent<Value>| async move {
            Ok(json!({
                "echo": event.payload,
                "request_id": event.context.request_id,
                "arn": event.context.invoked_function_arn,
                "trace": event.context.xray_trace_id,
                "deadline": event.context.deadline,
            }))
        });

        let Call::Next { at: ready } = call(&mut api).await else {
            panic!("the runtime asks for an invocation first");
        };
        let Call::HandedOut {
            at: handed_out,
            request_id,
        } = call(&mut api).await
        else {
            panic!("the invocation is handed out");
        };
        assert_eq!(request_id, "8476a536-e9f4-11e8-9739-2dfe598c3fcd");
        assert!(handed_out >= ready);
        let Call::Response {
            at: answered,
            request_id,
            body,
        } = call(&mut api).await
        else {
            panic!("the runtime posts its response");
        };
        assert_eq!(request_id, "8476a536-e9f4-11e8-9739-2dfe598c3fcd");
        assert!(answered >= handed_out);
        let answer: Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(answer["echo"], json!({ "n": 1 }));
        assert_eq!(answer["request_id"], "8476a536-e9f4-11e8-9739-2dfe598c3fcd");
        assert_eq!(
            answer["arn"],
            "arn:aws:lambda:us-east-1:123456789012:function:echo"
        );
        assert_eq!(
            answer["trace"],
            "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Sampled=1"
        );
        // The deadline is the timeout from now, in Unix milliseconds.
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_millis();
        let deadline = u128::from(answer["deadline"].as_u64().expect("deadline"));
        assert!(
            deadline > now_ms && deadline <= now_ms + 10_000,
            "{deadline}"
        );

        // The runtime asks again and is held: one invocation is handed out, never two.
        assert!(matches!(call(&mut api).await, Call::Next { .. }));
        assert!(api.pending_call().is_none());
        client.abort();
    }

    #[tokio::test]
    async fn a_failed_invocation_is_reported_as_an_error_not_a_response() {
        let _environment = ENVIRONMENT.lock().await;
        let mut api = RuntimeApi::start(Some(invocation(json!({}))))
            .await
            .expect("start");
        let client = run_client(&api, |_: LambdaEvent<Value>| async move {
            Err::<Value, lambda_runtime::Error>("the handler failed".into())
        });
        assert!(matches!(call(&mut api).await, Call::Next { .. }));
        assert!(matches!(call(&mut api).await, Call::HandedOut { .. }));
        let Call::InvocationError {
            request_id,
            error_type,
            body,
            ..
        } = call(&mut api).await
        else {
            panic!("the failure is posted to .../error");
        };
        assert_eq!(request_id, "8476a536-e9f4-11e8-9739-2dfe598c3fcd");
        assert!(error_type.is_some(), "the error type header is sent");
        let error: Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(error["errorMessage"], "the handler failed");
        client.abort();
    }

    #[tokio::test]
    async fn calls_outside_the_documented_api_are_reported() {
        let mut api = RuntimeApi::start(None).await.expect("start");
        let mut stream = tokio::net::TcpStream::connect(api.address())
            .await
            .expect("connect");
        tokio::io::AsyncWriteExt::write_all(
            &mut stream,
            b"GET /2018-06-01/runtime/invocation/previous HTTP/1.1\r\nhost: x\r\n\r\n",
        )
        .await
        .expect("write");
        let Call::Unexpected { method, uri } = call(&mut api).await else {
            panic!("reported");
        };
        assert_eq!(method, Method::GET);
        assert_eq!(uri.path(), "/2018-06-01/runtime/invocation/previous");
    }
}
