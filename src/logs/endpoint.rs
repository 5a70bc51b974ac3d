//! The sidecar's log endpoint (`<backend>/log?aid=<action id>`) and the one keep-alive HTTP
//! client that posts to it.
//!
//! A plain hyper client: the sidecar is a fixed local address, so what a general HTTP client
//! adds per request (redirect handling, proxy lookup, URL parsing and re-parsing) is cost
//! without use. The address is worked out once at start; each request gets its URI once; a
//! POST clones it (a reference count) and sends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// The sidecar is on the same host; it answers in milliseconds or not at all.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Longest wait for one POST, answer included (a 4 MiB message relayed by the sidecar too).
const POST_TIMEOUT: Duration = Duration::from_secs(5);

/// The read buffer of each pooled connection. The sidecar answers a POST with a head of a few
/// hundred bytes at most and a short body, if any; hyper's adaptive default starts at 8 KiB and
/// grows, about 15 KiB per connection, and at 16 concurrent requests there are 16 of them.
/// A head longer than this is refused as too large, far beyond what a sidecar sends.
const READ_BUFFER: usize = 4096;

/// The body's type, sent with every POST.
const TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");

/// Why a POST did not deliver.
#[derive(Debug)]
pub(crate) enum PostError {
    /// No HTTP answer at all: nothing listens, the connection broke, or no answer in time.
    /// Said of the sidecar as a whole, once (see [`Endpoint::note_silent`]).
    NoAnswer(String),
    /// The sidecar answered, but not 2xx: about this request (an action id it forgot, say).
    Refused(String),
}

impl std::fmt::Display for PostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PostError::NoAnswer(error) | PostError::Refused(error) => f.write_str(error),
        }
    }
}

/// The log endpoint: where to connect, the client's pool of connections to it, and whether
/// the sidecar answered lately.
pub(crate) struct Endpoint {
    client: Client<HttpConnector, Full<Bytes>>,
    /// `http://<address>/<path>/log?aid=`: each request's URI is this and its escaped id.
    uri_prefix: String,
    /// The backend's host and port as configured (`localhost:8889`), for the Host header.
    host: HeaderValue,
    /// The backend as configured, for what the runner says about it.
    backend: String,
    /// False from a POST that got no answer at all until one that did: one state for every
    /// request, so an absent sidecar is said once, not per request, and later requests do not
    /// each wait through the retries.
    answering: AtomicBool,
}

impl Endpoint {
    /// The endpoint under `backend` (the sidecar's base URL, `http://host[:port][/path]`).
    /// `localhost` is 127.0.0.1 without a name lookup: scratch and distroless images have no
    /// /etc/hosts. Any other name is resolved when a connection is made.
    pub(crate) fn new(backend: &str) -> Result<Endpoint, String> {
        let uri: Uri = backend
            .parse()
            .map_err(|error| format!("'{backend}' is not a URL ({error})"))?;
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err(format!("'{backend}' has no scheme or host"));
        };
        let address = match authority.host() {
            host if host.eq_ignore_ascii_case("localhost") => match authority.port() {
                Some(port) => format!("127.0.0.1:{port}"),
                None => "127.0.0.1".to_owned(),
            },
            _ => authority.as_str().to_owned(),
        };
        let path = uri.path().trim_end_matches('/');
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|error| format!("'{backend}': {error}"))?;
        Ok(Endpoint {
            client: build_client(),
            uri_prefix: format!("{scheme}://{address}{path}/log?aid="),
            host,
            backend: backend.to_owned(),
            answering: AtomicBool::new(true),
        })
    }

    /// Whether the sidecar answered the last POST that reached a verdict (true until one
    /// did not).
    pub(crate) fn answering(&self) -> bool {
        self.answering.load(Ordering::Relaxed)
    }

    /// Records that a POST got no answer at all; says so only when the sidecar had answered
    /// until now, so the runner's log gets one line, however many requests follow.
    pub(crate) fn note_silent(&self, error: &str) {
        if self.answering.swap(false, Ordering::Relaxed) {
            tracing::error!(
                sidecar = %self.backend,
                %error,
                "the sidecar does not answer; log lines go to stdout with their action id in \
                 front until it does (without a sidecar, set DIREKTIV_DEV_MODE=1)"
            );
        }
    }

    /// Records that a POST got an answer; says so when the sidecar had been silent.
    pub(crate) fn note_answer(&self) {
        if !self.answering.swap(true, Ordering::Relaxed) {
            tracing::info!(sidecar = %self.backend, "the sidecar answers again");
        }
    }

    /// The URI one request's lines go to (the action id escaped for a query).
    pub(crate) fn uri_for(&self, action_id: &str) -> Result<Uri, String> {
        let escaped: String = form_urlencoded::byte_serialize(action_id.as_bytes()).collect();
        format!("{}{escaped}", self.uri_prefix)
            .parse()
            .map_err(|error| format!("no log URI for action id '{action_id}': {error}"))
    }

    /// One POST of `body` to `uri`; any answer but 2xx is a failure. The answer is read to
    /// its end so the connection goes back to the pool.
    pub(crate) async fn post(&self, uri: &Uri, body: Bytes) -> Result<(), PostError> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(uri.clone())
            .header(HOST, self.host.clone())
            .header(CONTENT_TYPE, TEXT_PLAIN)
            .body(Full::new(body))
            .map_err(|error| PostError::Refused(error_chain(&error)))?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|error| {
                PostError::NoAnswer(format!("error sending request: {}", error_chain(&error)))
            })?;
            let status = response.status();
            let _ = response.into_body().collect().await;
            if status.is_success() {
                Ok(())
            } else {
                Err(PostError::Refused(format!(
                    "the endpoint answered {status}"
                )))
            }
        };
        tokio::time::timeout(POST_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(PostError::NoAnswer(format!(
                    "no answer within {POST_TIMEOUT:?}"
                )))
            })
    }
}

/// The pooled keep-alive client. It never consults HTTP_PROXY (Direktiv sets it in user
/// containers; the sidecar is local and must not be reached through it).
fn build_client() -> Client<HttpConnector, Full<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        // Idle connections are dropped after the pool's idle timeout, which needs a timer.
        .pool_timer(TokioTimer::new())
        .http1_read_buf_exact_size(READ_BUFFER)
        .build(connector)
}

/// An error with its causes ("client error (Connect): tcp connect error: Connection refused").
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint_at(backend: &str) -> Endpoint {
        Endpoint::new(backend).unwrap()
    }

    #[tokio::test]
    async fn localhost_is_the_loopback_address_and_the_host_header_stays() {
        let endpoint = endpoint_at("http://localhost:8889");
        assert_eq!(
            endpoint.uri_for("a1").unwrap(),
            "http://127.0.0.1:8889/log?aid=a1"
        );
        assert_eq!(endpoint.host, "localhost:8889");
        let endpoint = endpoint_at("http://LocalHost");
        assert_eq!(
            endpoint.uri_for("a1").unwrap(),
            "http://127.0.0.1/log?aid=a1"
        );
    }

    #[tokio::test]
    async fn other_hosts_and_a_base_path_are_kept() {
        let endpoint = endpoint_at("http://sidecar.local:9000/base/");
        assert_eq!(
            endpoint.uri_for("a1").unwrap(),
            "http://sidecar.local:9000/base/log?aid=a1"
        );
    }

    #[tokio::test]
    async fn the_action_id_is_escaped_for_the_query() {
        let endpoint = endpoint_at("http://127.0.0.1:8889");
        assert_eq!(
            endpoint.uri_for("a b&c=d/é").unwrap(),
            "http://127.0.0.1:8889/log?aid=a+b%26c%3Dd%2F%C3%A9"
        );
    }

    #[test]
    fn what_is_not_a_url_is_refused() {
        assert!(Endpoint::new("not a url").is_err());
        assert!(Endpoint::new("127.0.0.1:8889").is_err());
        assert!(Endpoint::new("/log").is_err());
    }

    /// A sidecar whose answers carry a long head (2.5 KiB of headers, as a proxy or a chatty
    /// server may add) and a body longer than the read buffer: each POST is read whole, and
    /// the kept connection serves the next one.
    #[tokio::test]
    async fn long_answers_from_the_sidecar_are_read_whole() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let padding: String = (0..50)
            .map(|n| format!("x-pad-{n:02}: {:040}\r\n", n))
            .collect();
        assert!(padding.len() > 2500, "the head must be long");
        let body = "b".repeat(3 * READ_BUFFER);
        let answer = format!(
            "HTTP/1.1 200 OK\r\n{padding}content-length: {}\r\n\r\n{body}",
            body.len()
        );
        let server = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            for _ in 0..2 {
                // Each POST's head and its 5-byte body, then the answer.
                let mut seen = Vec::new();
                while !seen.ends_with(b"\r\n\r\nlines") {
                    let mut chunk = [0u8; 1024];
                    let n = tcp.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "the client closed the connection");
                    seen.extend_from_slice(&chunk[..n]);
                }
                tcp.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        let endpoint = endpoint_at(&format!("http://{address}"));
        let uri = endpoint.uri_for("a1").unwrap();
        for _ in 0..2 {
            let posted = endpoint.post(&uri, Bytes::from_static(b"lines")).await;
            assert!(posted.is_ok(), "{posted:?}");
        }
        server.await.unwrap();
    }
}
