//! The VMs' resolver: a small DNS server on the host's address on the VM bridge (port 53, UDP
//! and TCP: a guest retries over TCP when a UDP answer was truncated).
//!
//! - `<vm>.banger.internal` is answered from the store: the VM's address (`A`), nothing else
//!   (`NODATA` for other types, `NXDOMAIN` for a VM that does not exist). `.internal` is
//!   reserved for private use and never delegated on the Internet, so these names cannot
//!   collide with real ones.
//! - Every other question is forwarded, as it came, to the host's own resolvers (the
//!   `nameserver` lines of `/etc/resolv.conf`, read for each question, so a host that moves to
//!   another network is followed at once), and their answer relayed.
//!   That is how guests use the host's upstream servers, including a local stub such as
//!   systemd-resolved's 127.0.0.53 that a guest could not reach itself.
//!
//! It listens only on the bridge address (bound with `IP_FREEBIND`, so before the bridge
//! exists), never on the host's other networks, so it is no open resolver. Messages are parsed
//! and built with hickory-proto; nothing here trusts a packet it did not parse. At most
//! [`MAX_IN_FLIGHT`] forwarded questions wait at once, each at most [`UPSTREAM_TIMEOUT`] per
//! upstream server.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::FromRawFd;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType, rdata::A};

/// The domain VMs are named under: `<vm>.banger.internal`.
pub use banger_api::names::VM_DNS_DOMAIN;

/// Forwarded questions waiting for an answer at once, at most; more are refused (`REFUSED`).
pub const MAX_IN_FLIGHT: usize = 256;
/// How long an upstream server may take to answer one question.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(3);
/// The time-to-live of a VM's record: short, as VMs come and go.
pub const VM_TTL: u32 = 5;
/// The largest message read (UDP).
const MAX_MESSAGE: usize = 4096;

/// What to do with one question.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Answer with these bytes.
    Reply(Vec<u8>),
    /// Forward the question as it came.
    Forward,
    /// Not a question banger answers (malformed, not a query): drop it.
    Drop,
}

/// Decides about the message `packet`, looking VM names up with `lookup` (the part before
/// `.banger.internal`, lowercase).
pub fn decide(packet: &[u8], lookup: impl Fn(&str) -> Option<Ipv4Addr>) -> Decision {
    let Ok(req) = Message::from_vec(packet) else {
        return Decision::Drop;
    };
    if req.metadata.message_type != MessageType::Query {
        return Decision::Drop;
    }
    let domain = Name::from_str(VM_DNS_DOMAIN).expect("the VM domain is a valid name");
    let reply = |code: ResponseCode, answers: Vec<Record>| {
        let mut m = Message::response(req.metadata.id, req.metadata.op_code);
        m.metadata.recursion_desired = req.metadata.recursion_desired;
        m.metadata.recursion_available = true;
        m.metadata.authoritative = code == ResponseCode::NoError || code == ResponseCode::NXDomain;
        m.metadata.response_code = code;
        m.add_queries(req.queries.clone());
        m.add_answers(answers);
        m.to_vec().map(Decision::Reply).unwrap_or(Decision::Drop)
    };
    if req.metadata.op_code != OpCode::Query || req.queries.len() != 1 {
        return reply(ResponseCode::NotImp, vec![]);
    }
    let q = &req.queries[0];
    let name = q.name().to_lowercase();
    let mut fqdn = name.clone();
    fqdn.set_fqdn(true);
    let mut zone = domain.clone();
    zone.set_fqdn(true);
    if !zone.zone_of(&fqdn) {
        return Decision::Forward;
    }
    if fqdn.num_labels() != zone.num_labels() + 1 {
        // The domain itself, or deeper names: nothing lives there.
        return reply(
            if fqdn == zone {
                ResponseCode::NoError
            } else {
                ResponseCode::NXDomain
            },
            vec![],
        );
    }
    let label = fqdn
        .iter()
        .next()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .unwrap_or_default();
    match lookup(&label) {
        None => reply(ResponseCode::NXDomain, vec![]),
        Some(addr) if q.query_type() == RecordType::A => reply(
            ResponseCode::NoError,
            vec![Record::from_rdata(
                q.name().clone(),
                VM_TTL,
                RData::A(A(addr)),
            )],
        ),
        Some(_) => reply(ResponseCode::NoError, vec![]),
    }
}

/// `SERVFAIL` for `packet` (when no upstream answered), or nothing if it does not parse.
pub fn servfail(packet: &[u8], code: ResponseCode) -> Option<Vec<u8>> {
    let req = Message::from_vec(packet).ok()?;
    let mut m = Message::error_msg(req.metadata.id, req.metadata.op_code, code);
    m.metadata.recursion_desired = req.metadata.recursion_desired;
    m.add_queries(req.queries);
    m.to_vec().ok()
}

/// The `nameserver` addresses of a resolv.conf, except `skip` (the bridge address: asking
/// ourselves would loop).
pub fn upstreams(resolv_conf: &str, skip: Ipv4Addr) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver")).then(|| w.next()).flatten()
        })
        .filter_map(|a| IpAddr::from_str(a.split('%').next().unwrap_or(a)).ok())
        .filter(|a| *a != IpAddr::V4(skip))
        .map(|a| SocketAddr::new(a, 53))
        .collect()
}

/// A socket of `kind` (`SOCK_DGRAM`, `SOCK_STREAM`) bound to `addr` even when `addr` is not on
/// any interface yet (`IP_FREEBIND`); a stream socket also listens.
#[allow(unsafe_code)]
fn bind_freebind_fd(addr: SocketAddr, kind: libc::c_int) -> std::io::Result<std::os::fd::OwnedFd> {
    let SocketAddr::V4(v4) = addr else {
        return Err(std::io::Error::other("only IPv4 is served"));
    };
    // SAFETY: plain socket calls on a descriptor this function owns (the OwnedFd closes it on
    // every error path); the option and address structures are fully initialized and outlive
    // the calls.
    unsafe {
        let fd = libc::socket(
            libc::AF_INET,
            kind | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        );
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let owned = std::os::fd::OwnedFd::from_raw_fd(fd);
        let one: libc::c_int = 1;
        if libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_FREEBIND,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        if kind == libc::SOCK_STREAM
            && libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_REUSEADDR,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        if libc::bind(
            fd,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        if kind == libc::SOCK_STREAM && libc::listen(fd, 128) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(owned)
    }
}

/// A UDP socket on `addr`, bound even when `addr` is not on any interface yet (`IP_FREEBIND`).
pub fn bind_freebind(addr: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
    let fd = bind_freebind_fd(addr, libc::SOCK_DGRAM)?;
    tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(fd))
}

/// A TCP listener on `addr`, bound the same way.
pub fn listen_freebind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let fd = bind_freebind_fd(addr, libc::SOCK_STREAM)?;
    tokio::net::TcpListener::from_std(std::net::TcpListener::from(fd))
}

/// TCP connections served at once, at most; more wait in the listen queue.
pub const MAX_TCP_CONNECTIONS: usize = 64;
/// How long a TCP client may stay silent before its connection is closed.
pub const TCP_IDLE: Duration = Duration::from_secs(10);
/// Questions answered on one TCP connection, at most.
pub const TCP_QUESTIONS: usize = 16;

/// Reads one length-prefixed DNS message (RFC 1035 4.2.2).
async fn read_framed<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let len = r.read_u16().await?;
    let mut buf = vec![0u8; usize::from(len)];
    r.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Writes one length-prefixed DNS message.
async fn write_framed<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    msg: &[u8],
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let len = u16::try_from(msg.len()).map_err(std::io::Error::other)?;
    w.write_u16(len).await?;
    w.write_all(msg).await
}

/// Asks the upstream servers over TCP in turn (for answers too large for UDP).
async fn forward_tcp(packet: &[u8], upstreams: &[SocketAddr]) -> Option<Vec<u8>> {
    for up in upstreams {
        let asked = tokio::time::timeout(UPSTREAM_TIMEOUT, async {
            let mut c = tokio::net::TcpStream::connect(up).await.ok()?;
            write_framed(&mut c, packet).await.ok()?;
            let answer = read_framed(&mut c).await.ok()?;
            (answer.get(..2) == packet.get(..2)).then_some(answer)
        })
        .await;
        if let Ok(Some(answer)) = asked {
            return Some(answer);
        }
        tracing::debug!(upstream = %up, "no answer over TCP from an upstream resolver");
    }
    None
}

/// Serves DNS over TCP on `listener` until the task is dropped, like [`serve`].
pub async fn serve_tcp(listener: tokio::net::TcpListener, upstreams: Upstreams, lookup: Lookup) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_TCP_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (mut conn, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("VM resolver: accepting: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (upstreams, lookup) = (upstreams.clone(), lookup.clone());
        tokio::spawn(async move {
            let _slot = slot;
            for _ in 0..TCP_QUESTIONS {
                let Ok(Ok(packet)) = tokio::time::timeout(TCP_IDLE, read_framed(&mut conn)).await
                else {
                    return;
                };
                let answer = match decide(&packet, |name| lookup(name)) {
                    Decision::Reply(bytes) => Some(bytes),
                    Decision::Drop => return,
                    Decision::Forward => match forward_tcp(&packet, &upstreams()).await {
                        Some(a) => Some(a),
                        None => servfail(&packet, ResponseCode::ServFail),
                    },
                };
                let Some(answer) = answer else { return };
                if write_framed(&mut conn, &answer).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Asks the upstream servers in turn; the first answer with the question's id wins.
async fn forward(packet: &[u8], upstreams: &[SocketAddr]) -> Option<Vec<u8>> {
    let id = packet.get(..2)?;
    for up in upstreams {
        let local: SocketAddr = if up.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let Ok(sock) = tokio::net::UdpSocket::bind(local).await else {
            continue;
        };
        if sock.connect(up).await.is_err() || sock.send(packet).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; MAX_MESSAGE];
        let got = tokio::time::timeout(UPSTREAM_TIMEOUT, async {
            // A connected socket only hears from `up`; anything with another id is not ours.
            for _ in 0..8 {
                let n = sock.recv(&mut buf).await.ok()?;
                if buf.get(..2) == Some(id) {
                    return Some(buf[..n].to_vec());
                }
            }
            None
        })
        .await;
        if let Ok(Some(answer)) = got {
            return Some(answer);
        }
        tracing::debug!(upstream = %up, "no answer from an upstream resolver");
    }
    None
}

/// Where forwarded questions go, asked at each one (so a changed `/etc/resolv.conf` counts at
/// once).
pub type Upstreams = Arc<dyn Fn() -> Vec<SocketAddr> + Send + Sync>;

/// VM names to addresses.
pub type Lookup = Arc<dyn Fn(&str) -> Option<Ipv4Addr> + Send + Sync>;

/// Serves on `sock` until the task is dropped, answering VM names with `lookup` and forwarding
/// the rest to `upstreams`.
pub async fn serve(sock: tokio::net::UdpSocket, upstreams: Upstreams, lookup: Lookup) {
    let sock = Arc::new(sock);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("VM resolver: receiving: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let packet = buf[..n].to_vec();
        match decide(&packet, |name| lookup(name)) {
            Decision::Reply(bytes) => {
                let _ = sock.send_to(&bytes, peer).await;
            }
            Decision::Drop => {}
            Decision::Forward => {
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    if let Some(b) = servfail(&packet, ResponseCode::Refused) {
                        let _ = sock.send_to(&b, peer).await;
                    }
                    continue;
                };
                let (sock, upstreams) = (sock.clone(), upstreams());
                tokio::spawn(async move {
                    let _slot = slot;
                    let answer = match forward(&packet, &upstreams).await {
                        Some(a) => Some(a),
                        None => servfail(&packet, ResponseCode::ServFail),
                    };
                    if let Some(a) = answer {
                        let _ = sock.send_to(&a, peer).await;
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::Query;

    use super::*;

    fn ask(name: &str, t: RecordType) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_str(name).unwrap(), t));
        m.to_vec().unwrap()
    }

    fn vms(name: &str) -> Option<Ipv4Addr> {
        (name == "web1").then_some(Ipv4Addr::new(172, 30, 0, 2))
    }

    fn answer(d: Decision) -> Message {
        match d {
            Decision::Reply(b) => Message::from_vec(&b).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_vm_name_is_answered_from_the_store() {
        let q = ask("web1.banger.internal.", RecordType::A);
        let m = answer(decide(&q, vms));
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(m.metadata.id, Message::from_vec(&q).unwrap().metadata.id);
        assert!(m.metadata.authoritative);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].data, RData::A(A(Ipv4Addr::new(172, 30, 0, 2))));
        // Case does not matter, and a name without the final dot is the same name.
        let m = answer(decide(&ask("WEB1.Banger.Internal", RecordType::A), vms));
        assert_eq!(m.answers.len(), 1);
    }

    #[test]
    fn unknown_vms_other_types_and_other_names_under_the_domain() {
        let m = answer(decide(&ask("nope.banger.internal.", RecordType::A), vms));
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        let m = answer(decide(&ask("web1.banger.internal.", RecordType::AAAA), vms));
        assert_eq!(
            (m.metadata.response_code, m.answers.len()),
            (ResponseCode::NoError, 0),
            "NODATA: the VM exists but has no IPv6 address"
        );
        let m = answer(decide(&ask("a.web1.banger.internal.", RecordType::A), vms));
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        let m = answer(decide(&ask("banger.internal.", RecordType::A), vms));
        assert_eq!(
            (m.metadata.response_code, m.answers.len()),
            (ResponseCode::NoError, 0)
        );
    }

    #[test]
    fn everything_else_is_forwarded_and_garbage_is_dropped() {
        assert_eq!(
            decide(&ask("www.example.org.", RecordType::A), vms),
            Decision::Forward
        );
        assert_eq!(
            decide(&ask("internal.", RecordType::A), vms),
            Decision::Forward
        );
        assert_eq!(
            decide(&ask("xbanger.internal.", RecordType::A), vms),
            Decision::Forward,
            "a name that only ends like the domain is not in it"
        );
        assert_eq!(decide(b"\x00\x01garbage", vms), Decision::Drop);
        assert_eq!(decide(&[], vms), Decision::Drop);
        // A response is never answered (no reflection loops).
        let mut resp = Message::from_vec(&ask("web1.banger.internal.", RecordType::A)).unwrap();
        resp.metadata.message_type = MessageType::Response;
        assert_eq!(decide(&resp.to_vec().unwrap(), vms), Decision::Drop);
    }

    #[test]
    fn servfail_keeps_the_id_and_the_question() {
        let q = ask("www.example.org.", RecordType::A);
        let m = Message::from_vec(&servfail(&q, ResponseCode::ServFail).unwrap()).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(m.metadata.id, Message::from_vec(&q).unwrap().metadata.id);
        assert_eq!(m.queries.len(), 1);
        assert_eq!(servfail(b"x", ResponseCode::ServFail), None);
    }

    #[test]
    fn upstreams_come_from_resolv_conf_without_ourselves() {
        let conf = "# comment\nnameserver 192.0.2.254\nsearch lan\nnameserver 172.30.0.1\n\
                    nameserver fe80::1%eth0\nnameserver bogus\noptions edns0\n";
        assert_eq!(
            upstreams(conf, Ipv4Addr::new(172, 30, 0, 1)),
            vec![
                SocketAddr::from((Ipv4Addr::new(192, 0, 2, 254), 53)),
                SocketAddr::from((IpAddr::from_str("fe80::1").unwrap(), 53)),
            ]
        );
    }

    #[tokio::test]
    async fn a_forwarded_question_gets_the_upstream_answer_over_loopback() {
        // An "upstream" on loopback that answers every question with 192.0.2.7.
        let up = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let up_addr = up.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 512];
            for _ in 0..4 {
                let Ok((n, peer)) = up.recv_from(&mut buf).await else {
                    return;
                };
                let req = Message::from_vec(&buf[..n]).unwrap();
                let mut m = Message::response(req.metadata.id, OpCode::Query);
                m.add_queries(req.queries.clone());
                m.add_answer(Record::from_rdata(
                    req.queries[0].name().clone(),
                    60,
                    RData::A(A(Ipv4Addr::new(192, 0, 2, 7))),
                ));
                up.send_to(&m.to_vec().unwrap(), peer).await.unwrap();
            }
        });
        let server = bind_freebind("127.0.0.1:0".parse().unwrap()).unwrap();
        let server_addr = server.local_addr().unwrap();
        let task = tokio::spawn(serve(
            server,
            Arc::new(move || vec![up_addr]),
            Arc::new(vms),
        ));
        let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut buf = vec![0u8; 512];
        for (name, want) in [
            ("www.example.org.", Ipv4Addr::new(192, 0, 2, 7)),
            ("web1.banger.internal.", Ipv4Addr::new(172, 30, 0, 2)),
        ] {
            client
                .send_to(&ask(name, RecordType::A), server_addr)
                .await
                .unwrap();
            let n = tokio::time::timeout(Duration::from_secs(5), client.recv(&mut buf))
                .await
                .expect("an answer within 5 s")
                .unwrap();
            let m = Message::from_vec(&buf[..n]).unwrap();
            assert_eq!(m.answers[0].data, RData::A(A(want)), "{name}");
        }
        task.abort();
    }

    #[tokio::test]
    async fn tcp_questions_are_answered_and_forwarded_over_tcp() {
        // An "upstream" on loopback over TCP that answers every question with 192.0.2.9.
        let up = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up_addr = up.local_addr().unwrap();
        tokio::spawn(async move {
            for _ in 0..2 {
                let Ok((mut c, _)) = up.accept().await else {
                    return;
                };
                let q = read_framed(&mut c).await.unwrap();
                let req = Message::from_vec(&q).unwrap();
                let mut m = Message::response(req.metadata.id, OpCode::Query);
                m.add_queries(req.queries.clone());
                m.add_answer(Record::from_rdata(
                    req.queries[0].name().clone(),
                    60,
                    RData::A(A(Ipv4Addr::new(192, 0, 2, 9))),
                ));
                write_framed(&mut c, &m.to_vec().unwrap()).await.unwrap();
            }
        });
        let listener = listen_freebind("127.0.0.1:0".parse().unwrap()).unwrap();
        let at = listener.local_addr().unwrap();
        let task = tokio::spawn(serve_tcp(
            listener,
            Arc::new(move || vec![up_addr]),
            Arc::new(vms),
        ));
        let mut c = tokio::net::TcpStream::connect(at).await.unwrap();
        // Two questions on one connection: one forwarded, one from the store.
        for (name, want) in [
            ("big.example.org.", Ipv4Addr::new(192, 0, 2, 9)),
            ("web1.banger.internal.", Ipv4Addr::new(172, 30, 0, 2)),
        ] {
            write_framed(&mut c, &ask(name, RecordType::A))
                .await
                .unwrap();
            let a = tokio::time::timeout(Duration::from_secs(5), read_framed(&mut c))
                .await
                .expect("an answer within 5 s")
                .unwrap();
            let m = Message::from_vec(&a).unwrap();
            assert_eq!(m.answers[0].data, RData::A(A(want)), "{name}");
        }
        // Garbage ends the connection.
        write_framed(&mut c, b"\x00\x01junk").await.unwrap();
        let end = tokio::time::timeout(Duration::from_secs(5), read_framed(&mut c))
            .await
            .expect("closed within 5 s");
        assert!(end.is_err(), "a malformed question gets no answer: {end:?}");
        task.abort();
    }

    #[tokio::test]
    async fn no_upstream_answer_is_servfail() {
        // A bound socket that never answers.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let q = ask("www.example.org.", RecordType::A);
        assert_eq!(forward(&q, &[silent.local_addr().unwrap()]).await, None);
        assert_eq!(forward(&q, &[]).await, None, "no upstream at all");
    }
}
