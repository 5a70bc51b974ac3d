//! Client connections seen from the outside: how many bytes the server side of a connection
//! has not read yet (from the kernel's /proc/net/tcp tables), and idle connections held by a
//! process of their own.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

/// The server side of one TCP connection, as the kernel lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerSide {
    /// Whether it is still established, i.e. the server has not closed it.
    pub established: bool,
    /// Bytes that arrived and that the server has not read yet.
    pub unread: u64,
}

/// The server side of the connection from `client` to port `server`; `None` while the kernel
/// lists no such connection (not yet accepted by the kernel, or gone).
pub fn server_side(server: u16, client: SocketAddr) -> Option<ServerSide> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .into_iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|table| table.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
        .find_map(|line| {
            let mut fields = line.split_whitespace().skip(1);
            let local = port_of(fields.next()?)?;
            let remote = port_of(fields.next()?)?;
            let state = fields.next()?;
            let unread = fields.next()?.split_once(':')?.1;
            (local == server && remote == client.port()).then(|| {
                Some(ServerSide {
                    // TCP_ESTABLISHED in include/net/tcp_states.h.
                    established: state == "01",
                    unread: u64::from_str_radix(unread, 16).ok()?,
                })
            })?
        })
}

/// The port of a `/proc/net/tcp` address (`0100007F:1F90`).
fn port_of(address: &str) -> Option<u16> {
    u16::from_str_radix(address.rsplit_once(':')?.1, 16).ok()
}

/// Connections to one address that never send a byte, held open by a child process (so that
/// their descriptors count against its limit, not the test process's, which every runner the
/// tests start would inherit). Dropping it closes them all.
pub struct IdleConnections {
    child: Child,
}

impl IdleConnections {
    /// Opens `count` connections to `addr`, the child's descriptor limit set to `nofile`;
    /// returns once all are open. Blocks the calling thread meanwhile.
    #[track_caller]
    pub fn open(addr: SocketAddr, count: usize, nofile: u64) -> IdleConnections {
        let hold = "use IO::Socket::INET; $| = 1; my ($addr, $count) = @ARGV; my @held; \
                    for my $n (1..$count) { push @held, IO::Socket::INET->new(PeerAddr => $addr) \
                    or die \"connection $n of $count: $!\\n\" } print \"open\\n\"; <STDIN>;";
        let mut child = Command::new("sh")
            .args([
                "-c",
                r#"ulimit -n "$1" && exec perl -e "$2" "$3" "$4""#,
                "sh",
            ])
            .arg(nofile.to_string())
            .arg(hold)
            .arg(addr.to_string())
            .arg(count.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start perl to hold the connections");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        if line.trim() != "open" {
            let _ = child.kill();
            let status = child.wait();
            panic!(
                "{count} connections to {addr} could not be opened (nofile {nofile}): {status:?}"
            );
        }
        IdleConnections { child }
    }
}

impl Drop for IdleConnections {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
