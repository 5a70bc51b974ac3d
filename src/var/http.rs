//! The sidecar's `/var` over plain blocking HTTP/1.1: one connection per call, bodies streamed
//! both ways. A full client would add nothing here: the sidecar is a fixed local address that
//! speaks HTTP/1.1 (Go's `net/http`), and a process that makes one call needs no pool.
//!
//! Direktiv's quirks (direktiv-protocol.md §2.2): v0.10 answers a GET of a missing variable
//! with status 200 and the text `resource with key K not found in scope S` (taken for "missing",
//! exit 4; a variable holding exactly that text reads as missing too); an unknown action id is
//! 404; a POST body over 2 MiB must carry `Content-Length`, so every POST carries one (stdin of
//! unknown length is spooled to a file first when it is larger than that).

use std::io::{self, BufRead, BufReader, Cursor, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::{Failed, Source, ENV_HTTP_BACKEND};
use crate::direktiv::{ENV_ACTION_ID, ENV_TEMP_DIR};

/// The sidecar is on the same host: it connects at once or not at all.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest wait for one read or write of the connection.
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// Bodies up to this size are held in memory to learn their length; a larger stdin is spooled
/// to a file (Direktiv wants `Content-Length` above 2 MiB).
const IN_MEMORY: usize = 2 * 1024 * 1024;

/// Longest response head read.
const MAX_HEAD: usize = 64 * 1024;

/// A GET of the variable: its value as a stream, or `Missing`.
pub(super) fn get(
    backend: &str,
    action_id: &str,
    name: &str,
    scope: &str,
) -> Result<Box<dyn Read>, Failed> {
    let endpoint = Endpoint::parse(backend)?;
    let mut stream = endpoint.connect()?;
    let head = endpoint.head("GET", action_id, name, scope, &[]);
    stream
        .write_all(head.as_bytes())
        .map_err(|error| endpoint.broken(&error))?;
    let mut response = Response::read(stream).map_err(|error| endpoint.broken(&error))?;
    if response.status != 200 {
        return Err(refused(&mut response, action_id, "read", name, scope));
    }
    // Read as much as the not-found text could be: when the body is exactly that, the
    // variable does not exist.
    let not_found = format!("resource with key {name} not found in scope {scope}");
    let mut prefix = Vec::new();
    (&mut response.body)
        .take(not_found.len() as u64 + 2)
        .read_to_end(&mut prefix)
        .map_err(|error| endpoint.broken(&error))?;
    let ended = prefix.len() <= not_found.len() + 1;
    let text = prefix.strip_suffix(b"\n").unwrap_or(&prefix);
    if ended && text == not_found.as_bytes() {
        return Err(Failed::Missing(format!(
            "variable {name:?} does not exist in scope {scope}"
        )));
    }
    Ok(Box::new(Cursor::new(prefix).chain(response.body)))
}

/// A POST of `value` as the variable, with its length (and its mime type when given).
pub(super) fn set(
    backend: &str,
    action_id: &str,
    name: &str,
    scope: &str,
    value: Source,
    mime: Option<&str>,
) -> Result<(), Failed> {
    let endpoint = Endpoint::parse(backend)?;
    let what = value.what.clone();
    let (len, mut body) = sized(value)?;
    let mut headers = vec![format!("Content-Length: {len}")];
    if let Some(mime) = mime {
        if mime.contains(['\r', '\n']) {
            return Err(Failed::other("--type holds a line break"));
        }
        headers.push(format!("Content-Type: {mime}"));
    }
    let mut stream = endpoint.connect()?;
    let head = endpoint.head("POST", action_id, name, scope, &headers);
    stream
        .write_all(head.as_bytes())
        .map_err(|error| endpoint.broken(&error))?;
    let sent = io::copy(&mut (&mut body).take(len), &mut stream);
    match sent {
        Ok(sent) if sent == len => {}
        Ok(sent) => {
            return Err(Failed::other(format!(
                "{what} ended after {sent} of its {len} bytes (it changed while it was sent); \
                 nothing was set"
            )))
        }
        // The sidecar may have answered (and closed) before taking the whole body.
        Err(_) => {}
    }
    let mut response = Response::read(stream).map_err(|error| endpoint.broken(&error))?;
    if !(200..300).contains(&response.status) {
        return Err(refused(&mut response, action_id, "write", name, scope));
    }
    // v0.10 answers an unknown scope with 200 and the text; the scope is checked here, so only
    // another sidecar's oddity could say so.
    let text = response.text();
    if text.starts_with("unknown scope") {
        return Err(Failed::other(format!("the sidecar says: {text}")));
    }
    Ok(())
}

/// The value with its length: a file's size, or stdin read into memory, or spooled to a file
/// when larger than `IN_MEMORY`.
fn sized(value: Source) -> Result<(u64, Box<dyn Read>), Failed> {
    let Source {
        mut reader,
        len,
        what,
    } = value;
    if let Some(len) = len {
        return Ok((len, reader));
    }
    let failed = |error: io::Error| Failed::other(format!("cannot read {what}: {error}"));
    let mut head = Vec::new();
    (&mut reader)
        .take(IN_MEMORY as u64 + 1)
        .read_to_end(&mut head)
        .map_err(failed)?;
    if head.len() <= IN_MEMORY {
        return Ok((head.len() as u64, Box::new(Cursor::new(head))));
    }
    // In the temp dir (the one place a read-only image surely lets a command write), else
    // TMPDIR; the file has no name, so it goes when closed.
    let dir = std::env::var_os(ENV_TEMP_DIR)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let mut spool = tempfile::tempfile_in(&dir).map_err(|error| {
        Failed::other(format!(
            "{what} is larger than 2 MiB and cannot be spooled to learn its length (in {}): \
             {error}; give a file instead of stdin",
            dir.display()
        ))
    })?;
    let spool_failed = |error: io::Error| Failed::other(format!("cannot spool {what}: {error}"));
    spool.write_all(&head).map_err(spool_failed)?;
    let len = head.len() as u64 + io::copy(&mut reader, &mut spool).map_err(failed)?;
    io::Seek::rewind(&mut spool).map_err(spool_failed)?;
    Ok((len, Box::new(spool)))
}

/// The message for a status other than success.
fn refused(
    response: &mut Response,
    action_id: &str,
    doing: &str,
    name: &str,
    scope: &str,
) -> Failed {
    let text = response.text();
    match response.status {
        404 => Failed::other(format!(
            "the sidecar does not know action id {action_id:?} (404: {text}): variables can be \
             used only while the action's request runs, with the {ENV_ACTION_ID} the command \
             was given"
        )),
        status => Failed::other(format!(
            "the sidecar did not {doing} variable {name:?} in scope {scope} (HTTP {status}: \
             {text})"
        )),
    }
}

/// Where the sidecar listens.
struct Endpoint {
    backend: String,
    /// `host:port` as given, for the Host header.
    authority: String,
    /// The path before `/var`, without a trailing slash.
    path: String,
    address: String,
}

impl Endpoint {
    fn parse(backend: &str) -> Result<Endpoint, Failed> {
        let invalid = |why: &str| {
            Failed::other(format!(
                "{ENV_HTTP_BACKEND} {backend:?} {why}; expected e.g. http://127.0.0.1:8889"
            ))
        };
        let uri: http::Uri = backend
            .trim()
            .parse()
            .map_err(|_| invalid("is not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(invalid("is not an http:// URL"));
        }
        let authority = uri.authority().ok_or_else(|| invalid("names no host"))?;
        let port = authority.port_u16().unwrap_or(80);
        // `localhost` without a name lookup: scratch images have no /etc/hosts.
        let address = match authority.host() {
            host if host.eq_ignore_ascii_case("localhost") => format!("127.0.0.1:{port}"),
            host => format!("{host}:{port}"),
        };
        Ok(Endpoint {
            backend: backend.to_owned(),
            authority: authority.as_str().to_owned(),
            path: uri.path().trim_end_matches('/').to_owned(),
            address,
        })
    }

    fn connect(&self) -> Result<TcpStream, Failed> {
        let addresses: Vec<SocketAddr> = self
            .address
            .to_socket_addrs()
            .map_err(|error| self.broken(&error))?
            .collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        for address in addresses {
            match TcpStream::connect_timeout(&address, CONNECT_TIMEOUT) {
                Ok(stream) => {
                    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
                    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
                    return Ok(stream);
                }
                Err(error) => last = error,
            }
        }
        Err(self.broken(&last))
    }

    /// The request line and headers of a call.
    fn head(
        &self,
        method: &str,
        action_id: &str,
        name: &str,
        scope: &str,
        headers: &[String],
    ) -> String {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("aid", action_id)
            .append_pair("scope", scope)
            .append_pair("key", name)
            .finish();
        let mut head = format!(
            "{method} {}/var?{query} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.path, self.authority
        );
        for header in headers {
            head.push_str(header);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        head
    }

    fn broken(&self, error: &io::Error) -> Failed {
        Failed::other(format!(
            "cannot talk to the sidecar at {} ({ENV_HTTP_BACKEND}): {error}; outside Direktiv, \
             set {ENV_ACTION_ID}=development to keep variables in files",
            self.backend
        ))
    }
}

/// A response: its status and its body, read as it arrives.
struct Response {
    status: u16,
    body: Body,
}

impl Response {
    fn read(stream: TcpStream) -> io::Result<Response> {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        let mut head_len = reader.read_line(&mut line)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| invalid_data(format!("not an HTTP response: {:?}", line.trim())))?;
        let mut framing = Framing::UntilClose;
        loop {
            line.clear();
            head_len += reader.read_line(&mut line)?;
            if head_len > MAX_HEAD {
                return Err(invalid_data("a response head longer than 64 KiB".into()));
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let Some((name, value)) = header.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                if let Ok(len) = value.parse() {
                    framing = Framing::Length(len);
                }
            } else if name.eq_ignore_ascii_case("transfer-encoding")
                && value.to_ascii_lowercase().contains("chunked")
            {
                framing = Framing::Chunked(0);
            }
        }
        Ok(Response {
            status,
            body: Body {
                reader,
                framing,
                done: false,
            },
        })
    }

    /// The first KiB of the body as one line of text, for a message.
    fn text(&mut self) -> String {
        let mut bytes = Vec::new();
        let _ = (&mut self.body).take(1024).read_to_end(&mut bytes);
        let text = String::from_utf8_lossy(&bytes);
        crate::text::one_line(text.trim(), 1024)
    }
}

/// How the end of a body is known.
enum Framing {
    /// This many bytes are left.
    Length(u64),
    /// Chunked: this many bytes are left of the current chunk.
    Chunked(u64),
    /// Until the connection closes.
    UntilClose,
}

struct Body {
    reader: BufReader<TcpStream>,
    framing: Framing,
    done: bool,
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        let want = match self.framing {
            Framing::Length(0) => {
                self.done = true;
                return Ok(0);
            }
            Framing::Length(left) => left,
            Framing::Chunked(0) => match self.next_chunk()? {
                0 => {
                    self.done = true;
                    return Ok(0);
                }
                size => size,
            },
            Framing::Chunked(left) => left,
            Framing::UntilClose => u64::MAX,
        };
        let limit = buf.len().min(usize::try_from(want).unwrap_or(usize::MAX));
        let read = self.reader.read(&mut buf[..limit])?;
        if read == 0 {
            if matches!(self.framing, Framing::UntilClose) {
                self.done = true;
                return Ok(0);
            }
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        match &mut self.framing {
            Framing::Length(left) => *left -= read as u64,
            Framing::Chunked(left) => {
                *left -= read as u64;
                if *left == 0 {
                    self.end_of_chunk()?;
                }
            }
            Framing::UntilClose => {}
        }
        Ok(read)
    }
}

impl Body {
    /// Reads the next chunk's size line; 0 is the last chunk (its trailers are read too).
    fn next_chunk(&mut self) -> io::Result<u64> {
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = u64::from_str_radix(size, 16)
            .map_err(|_| invalid_data(format!("a bad chunk size {size:?}")))?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                line.clear();
                if self.reader.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
                    break;
                }
            }
        }
        self.framing = Framing::Chunked(size);
        Ok(size)
    }

    /// The CRLF after a chunk's data.
    fn end_of_chunk(&mut self) -> io::Result<()> {
        let mut crlf = String::new();
        self.reader.read_line(&mut crlf)?;
        Ok(())
    }
}

fn invalid_data(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-shot server answering with `response` (bytes as sent) to one request.
    fn serve_once(response: &'static [u8]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            stream.write_all(response).unwrap();
        });
        format!("http://{address}")
    }

    fn read_all(mut value: Box<dyn Read>) -> Vec<u8> {
        let mut bytes = Vec::new();
        value.read_to_end(&mut bytes).unwrap();
        bytes
    }

    #[test]
    fn chunked_and_close_delimited_bodies_are_read_whole() {
        let chunked = serve_once(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: y\r\n\r\n",
        );
        let got = get(&chunked, "a", "v", "instance").map_err(|e| format!("{e:?}"));
        assert_eq!(read_all(got.unwrap()), b"hello, world");
        let close = serve_once(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end");
        let got = get(&close, "a", "v", "instance").map_err(|e| format!("{e:?}"));
        assert_eq!(read_all(got.unwrap()), b"until the end");
    }

    #[test]
    fn the_not_found_text_is_a_missing_variable_also_chunked() {
        let chunked = serve_once(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              2f\r\nresource with key v not found in scope instance\r\n0\r\n\r\n",
        );
        assert!(matches!(
            get(&chunked, "a", "v", "instance"),
            Err(Failed::Missing(_))
        ));
        // The same text with more after it is a value.
        let longer = serve_once(
            b"HTTP/1.1 200 OK\r\nContent-Length: 48\r\n\r\nresource with key v not found in scope instance!",
        );
        let got = get(&longer, "a", "v", "instance").map_err(|e| format!("{e:?}"));
        assert_eq!(read_all(got.unwrap()).len(), 48);
    }
}
