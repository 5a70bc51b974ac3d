//! A minimal keep-alive HTTP/1.1 client: one TCP connection, requests sent one after another.
//!
//! The load generator gives every concurrent worker its own `Client`, so the number of open
//! connections is exactly the concurrency and no pool logic sits between the harness and the
//! server being measured.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Errors of the harness: it reports them and stops, so their type does not matter.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// How long one request may take before the harness gives up on it (the machine may be loaded).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A server's answer, read in full.
pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
}

/// One keep-alive connection to a server on the loopback interface.
pub struct Client {
    addr: SocketAddr,
    sender: SendRequest<Full<Bytes>>,
}

impl Client {
    /// Opens the connection; the request loop reuses it until the server closes it.
    pub async fn connect(addr: SocketAddr) -> Result<Self, Error> {
        let sender = handshake(addr).await?;
        Ok(Self { addr, sender })
    }

    /// `POST /` with the given body, a `Direktiv-ActionID` header and, when `temp_dir` is
    /// given, a `Direktiv-TempDir` header (without it the runner makes a private temp dir).
    pub async fn post(
        &mut self,
        action_id: &str,
        temp_dir: Option<&str>,
        body: Bytes,
    ) -> Result<Reply, Error> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri("/")
            .header("host", self.addr.to_string())
            .header("content-type", "application/json")
            .header("direktiv-actionid", action_id);
        if let Some(dir) = temp_dir {
            request = request.header("direktiv-tempdir", dir);
        }
        self.send(request.body(Full::new(body))?).await
    }

    /// Sends one request, reconnecting first when the server closed the previous connection.
    async fn send(&mut self, request: Request<Full<Bytes>>) -> Result<Reply, Error> {
        if self.sender.is_closed() {
            self.sender = handshake(self.addr).await?;
        }
        let exchange = async {
            self.sender.ready().await?;
            let response = self.sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, Error>(Reply { status, body })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("no response within {REQUEST_TIMEOUT:?}"))?
    }
}

/// Connects with Nagle off (as any latency-minded client does) and drives the connection in a
/// background task.
async fn handshake(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, Error> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // A closed connection shows up as `is_closed` on the next request.
        let _ = connection.await;
    });
    Ok(sender)
}

/// A single `GET /healthz` on a fresh connection: true when the answer is 200.
pub async fn healthy(addr: SocketAddr) -> bool {
    let Ok(stream) = TcpStream::connect(addr).await else {
        return false;
    };
    let _ = stream.set_nodelay(true);
    let Ok((mut sender, connection)) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await
    else {
        return false;
    };
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let Ok(request) = Request::builder()
        .uri("/healthz")
        .header("host", addr.to_string())
        .body(Empty::new())
    else {
        return false;
    };
    matches!(sender.send_request(request).await, Ok(r) if r.status() == StatusCode::OK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;
    use axum::routing::post;

    /// A server that answers with the `Direktiv-TempDir` it got, or `-` without one.
    async fn echo_temp_dir() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route(
            "/",
            post(|headers: HeaderMap| async move {
                match headers.get("direktiv-tempdir") {
                    Some(dir) => dir.as_bytes().to_vec(),
                    None => b"-".to_vec(),
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    #[tokio::test]
    async fn the_temp_dir_header_is_sent_only_when_given() {
        let mut client = Client::connect(echo_temp_dir().await).await.unwrap();
        let with = client
            .post("a1", Some("/tmp/x"), Bytes::new())
            .await
            .unwrap();
        assert_eq!(with.body, "/tmp/x");
        let without = client.post("a2", None, Bytes::new()).await.unwrap();
        assert_eq!(without.body, "-");
    }
}
