//! Asking the upstream servers a question the grant allows, as the daemon (an untagged process:
//! its own queries are not redirected).

use std::{
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    path::Path,
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, UdpSocket},
    time::timeout,
};

/// How long one server gets to answer before the next is asked.
const PER_SERVER: Duration = Duration::from_secs(3);

/// The `nameserver` lines of a resolv.conf, port 53.
pub fn from_resolv_conf(path: &Path) -> Vec<SocketAddr> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().split('%').next()?.parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// The answer of the first server that gives one, to `query` (a whole DNS message); over TCP
/// when `tcp` or when the UDP answer is truncated. None: no server answered.
pub async fn ask(servers: &[SocketAddr], query: &[u8], tcp: bool) -> Option<Vec<u8>> {
    for server in servers {
        let answer = if tcp { None } else { timeout(PER_SERVER, over_udp(*server, query)).await.ok().flatten() };
        let answer = match answer {
            Some(a) if !truncated(&a) => Some(a),
            _ => timeout(PER_SERVER, over_tcp(*server, query)).await.ok().flatten(),
        };
        if answer.is_some() {
            return answer;
        }
    }
    None
}

/// The TC bit of a DNS header (RFC 1035 4.1.1).
fn truncated(message: &[u8]) -> bool {
    message.len() > 2 && message[2] & 0x02 != 0
}

async fn over_udp(server: SocketAddr, query: &[u8]) -> Option<Vec<u8>> {
    let local: SocketAddr =
        if server.is_ipv4() { (Ipv4Addr::UNSPECIFIED, 0).into() } else { (Ipv6Addr::UNSPECIFIED, 0).into() };
    let socket = UdpSocket::bind(local).await.ok()?;
    socket.connect(server).await.ok()?;
    socket.send(query).await.ok()?;
    let mut buf = vec![0u8; 65_535];
    loop {
        let n = socket.recv(&mut buf).await.ok()?;
        // Only the answer to this question (same id): anything else is noise or a spoof.
        if n >= 2 && query.len() >= 2 && buf[..2] == query[..2] {
            buf.truncate(n);
            return Some(buf);
        }
    }
}

async fn over_tcp(server: SocketAddr, query: &[u8]) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect(server).await.ok()?;
    let len = u16::try_from(query.len()).ok()?;
    stream.write_all(&len.to_be_bytes()).await.ok()?;
    stream.write_all(query).await.ok()?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.ok()?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await.ok()?;
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers_are_read_with_port_53() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        std::fs::write(&path, "# x\nsearch example\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\nnameserver bogus\n")
            .unwrap();
        let got = from_resolv_conf(&path);
        assert_eq!(got, vec!["10.0.0.2:53".parse().unwrap(), "[fe80::1]:53".parse().unwrap()]);
    }
}
