//! The first lookup of a fresh process: one-shot mDNS queries (RFC 6762 §5.1), sent from a port
//! of our own so that responders answer at once, by unicast (§6.7).
//!
//! A browsing daemon asks from port 5353, and a responder delays its answer to that query by
//! 20–120 ms and, when it multicast the same records in the last second (as every service does
//! when it registers), does not answer at all (§6): a process that starts just after a service
//! waited for the service's second announcement, a second later. A legacy query is exempt from
//! both, so what answers it arrives within a millisecond on this host. Only the loopback
//! interface is asked; services on other hosts are still found by browsing.
//!
//! The parser reads what a one-shot reply holds (PTR, SRV, TXT and A/AAAA records, compressed
//! names) and nothing more; it is small enough not to justify a DNS crate in every service's
//! build, and it bounds every read, so a malformed packet is skipped, never a panic.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

const MDNS_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 251);
const MDNS_PORT: u16 = 5353;
const PTR: u16 = 12;
const SRV: u16 = 33;
const TXT: u16 = 16;
const A: u16 = 1;
const AAAA: u16 = 28;
/// The most instances taken from one reply.
const MAX_PER_PACKET: usize = 64;

/// One instance from a reply.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Instance {
    /// The full instance name, labels joined by dots as they are (no escapes).
    pub(crate) fullname: String,
    pub(crate) port: u16,
    pub(crate) addresses: Vec<IpAddr>,
    /// TXT entries as `key=value`, split at the first `=`.
    pub(crate) txt: Vec<(String, Vec<u8>)>,
}

impl Instance {
    /// The value of TXT entry `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&[u8]> {
        self.txt.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.as_slice())
    }
}

/// A one-shot query for the PTR records of `service_type`, with message id `id`.
pub(crate) fn query(service_type: &str, id: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in service_type.trim_end_matches('.').split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&PTR.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out
}

/// Reads DNS wire data, every read bounded.
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.buf.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    /// A name at the cursor, following compression pointers (at most 16, and names of at most
    /// 255 bytes).
    fn name(&mut self) -> Option<String> {
        let (name, end) = name_at(self.buf, self.at)?;
        self.at = end;
        Some(name)
    }
}

/// The name at `at` and where the data after it starts.
fn name_at(buf: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut name = String::new();
    let mut end = None;
    for _ in 0..16 {
        loop {
            let len = *buf.get(at)? as usize;
            if len == 0 {
                let after = end.unwrap_or(at + 1);
                if name.is_empty() {
                    name.push('.');
                }
                return Some((name, after));
            }
            if len & 0xc0 == 0xc0 {
                let target = ((len & 0x3f) << 8) | *buf.get(at + 1)? as usize;
                end.get_or_insert(at + 2);
                at = target;
                break;
            }
            if len & 0xc0 != 0 {
                return None;
            }
            let label = buf.get(at + 1..at + 1 + len)?;
            name.push_str(std::str::from_utf8(label).ok()?);
            name.push('.');
            if name.len() > 255 {
                return None;
            }
            at += 1 + len;
        }
    }
    None
}

/// The instances of `service_type` in a reply with message id `id`; `None` for anything else.
pub(crate) fn parse(packet: &[u8], service_type: &str, id: u16) -> Option<Vec<Instance>> {
    let mut r = Reader { buf: packet, at: 0 };
    let (got_id, flags) = (r.u16()?, r.u16()?);
    if got_id != id || flags & 0x8000 == 0 {
        return None;
    }
    let counts = [r.u16()?, r.u16()?, r.u16()?, r.u16()?];
    for _ in 0..counts[0] {
        r.name()?;
        r.take(4)?;
    }
    let (mut ptrs, mut srvs, mut txts, mut addrs) = (vec![], vec![], vec![], vec![]);
    // An instance of this type is named under it.
    let under = format!(".{}", service_type.to_lowercase());
    let records = counts[1] as usize + counts[2] as usize + counts[3] as usize;
    for _ in 0..records {
        let name = r.name()?.to_lowercase();
        let (kind, _class) = (r.u16()?, r.u16()?);
        r.take(4)?;
        let len = r.u16()? as usize;
        let start = r.at;
        let data = r.take(len)?;
        match kind {
            PTR if name.eq_ignore_ascii_case(service_type) => {
                let target = name_at(packet, start)?.0;
                let key = target.to_lowercase();
                if key.ends_with(&under) {
                    ptrs.push((key, target));
                }
            }
            SRV if len >= 7 => srvs.push((name, u16::from_be_bytes([data[4], data[5]]), name_at(packet, start + 6)?.0)),
            TXT => txts.push((name, txt_entries(data))),
            A if len == 4 => addrs.push((name, IpAddr::from([data[0], data[1], data[2], data[3]]))),
            AAAA if len == 16 => addrs.push((name, IpAddr::from(<[u8; 16]>::try_from(data).ok()?))),
            _ => {}
        }
    }
    // One instance per name, and a bounded number per packet: a packet repeating one pointer
    // must not cost the decoding of its record many times.
    ptrs.sort();
    ptrs.dedup_by(|a, b| a.0 == b.0);
    ptrs.truncate(MAX_PER_PACKET);
    Some(
        ptrs.into_iter()
            .filter_map(|(key, fullname)| {
                let (_, port, host) = srvs.iter().find(|(n, _, _)| *n == key)?;
                let host = host.to_lowercase();
                let txt = txts.iter().find(|(n, _)| *n == key).map(|(_, t)| t.clone()).unwrap_or_default();
                let addresses = addrs.iter().filter(|(n, _)| *n == host).map(|(_, a)| *a).collect();
                Some(Instance { fullname, port: *port, addresses, txt })
            })
            .collect(),
    )
}

fn txt_entries(mut data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![];
    while let Some((&len, rest)) = data.split_first() {
        let Some(entry) = rest.get(..len as usize) else { break };
        data = &rest[len as usize..];
        let (key, value) = match entry.iter().position(|&b| b == b'=') {
            Some(eq) => (&entry[..eq], entry[eq + 1..].to_vec()),
            None => (entry, vec![]),
        };
        if let Ok(key) = std::str::from_utf8(key) {
            out.push((key.to_string(), value));
        }
    }
    out
}

/// Asks the loopback interface for `service_type` twice (now and 100 ms later, for a responder
/// that was just starting), and hands every instance heard to `heard` until `until`, or until
/// `heard` says to stop.
pub(crate) fn ask(
    service_type: &str,
    until: Instant,
    mut heard: impl FnMut(Instance) -> ControlFlow<()>,
) -> std::io::Result<()> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    socket.set_multicast_if_v4(&Ipv4Addr::LOCALHOST)?;
    socket.set_multicast_loop_v4(true)?;
    socket.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())?;
    let socket: UdpSocket = socket.into();
    let id = (std::process::id() as u16) | 1;
    let packet = query(service_type, id);
    let group = SocketAddr::from((MDNS_GROUP, MDNS_PORT));
    socket.send_to(&packet, group)?;
    let mut again = Some(Instant::now() + Duration::from_millis(100));
    let mut buf = vec![0u8; 9000];
    loop {
        let now = Instant::now();
        let next = again.map_or(until, |a| a.min(until));
        if now >= until {
            return Ok(());
        }
        if again.is_some_and(|a| now >= a) {
            again = None;
            socket.send_to(&packet, group)?;
            continue;
        }
        socket.set_read_timeout(Some(next.saturating_duration_since(now).max(Duration::from_millis(1))))?;
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => return Err(e),
        };
        // Answers to a one-shot query come from the responder's mDNS port, on this host.
        if from.port() != MDNS_PORT || !from.ip().is_loopback() {
            continue;
        }
        for instance in parse(&buf[..n], service_type, id).unwrap_or_default() {
            if heard(instance).is_break() {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply as a responder writes it: the question echoed, a PTR answer and its SRV, TXT and A
    /// records, names compressed.
    fn reply(id: u16) -> Vec<u8> {
        let mut p = vec![];
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&[0x84, 0x00, 0, 1, 0, 1, 0, 0, 0, 3]);
        let ty = p.len();
        p.extend_from_slice(b"\x06_micro\x04_tcp\x05local\x00");
        p.extend_from_slice(&[0, 12, 0, 1]);
        // PTR answer: the type's name by pointer, the instance "go.micro.x-1" under it.
        p.extend_from_slice(&[0xc0, ty as u8, 0, 12, 0, 1, 0, 0, 0, 120]);
        let inst_rdata = p.len() + 2;
        p.extend_from_slice(&[0, 15]);
        p.extend_from_slice(b"\x0cgo.micro.x-1");
        p.extend_from_slice(&[0xc0, ty as u8]);
        assert_eq!(p.len() - inst_rdata, 15);
        // SRV: port 8080, target host.local.
        p.extend_from_slice(&[0xc0, inst_rdata as u8, 0, 33, 0x80, 1, 0, 0, 0, 120, 0, 13, 0, 0, 0, 0, 0x1f, 0x90]);
        let host = p.len();
        p.extend_from_slice(b"\x04host\xc0");
        p.push((ty + 12) as u8);
        // TXT: v=1, a binary value with '=' in it.
        p.extend_from_slice(&[0xc0, inst_rdata as u8, 0, 16, 0x80, 1, 0, 0, 0, 120, 0, 10]);
        p.extend_from_slice(b"\x03v=1\x05r0=\x00=");
        // A: 127.0.0.1 for host.local.
        p.extend_from_slice(&[0xc0, host as u8, 0, 1, 0x80, 1, 0, 0, 0, 120, 0, 4, 127, 0, 0, 1]);
        p
    }

    #[test]
    fn a_reply_gives_its_instance_with_port_addresses_and_txt() {
        let got = parse(&reply(7), "_micro._tcp.local.", 7).expect("a reply");
        assert_eq!(got.len(), 1);
        let i = &got[0];
        assert_eq!(i.fullname, "go.micro.x-1._micro._tcp.local.");
        assert_eq!(i.port, 8080);
        assert_eq!(i.addresses, vec![IpAddr::from([127, 0, 0, 1])]);
        assert_eq!(i.get("v"), Some(&b"1"[..]));
        assert_eq!(i.get("r0"), Some(&b"\x00="[..]));
    }

    #[test]
    fn a_pointer_repeated_in_one_reply_gives_one_instance() {
        let mut p = reply(7);
        // The PTR answer (after the question) again, as an extra record at the end.
        let answer = 12 + 19 + 4;
        let ptr: Vec<u8> = p[answer..answer + 12 + 15].to_vec();
        p.extend_from_slice(&ptr);
        p[11] += 1;
        let got = parse(&p, "_micro._tcp.local.", 7);
        assert_eq!(got.map(|g| g.len()), Some(1));
    }

    #[test]
    fn replies_to_other_queries_and_queries_are_not_taken() {
        assert!(parse(&reply(7), "_micro._tcp.local.", 8).is_none(), "another id");
        let mut q = reply(7);
        q[2] = 0;
        assert!(parse(&q, "_micro._tcp.local.", 7).is_none(), "a query, not a reply");
        assert_eq!(parse(&reply(7), "_other._tcp.local.", 7), Some(vec![]));
    }

    #[test]
    fn every_truncation_and_a_pointer_loop_are_refused_without_panic() {
        let full = reply(7);
        for n in 0..full.len() {
            let _ = parse(&full[..n], "_micro._tcp.local.", 7);
        }
        // A name that points at itself.
        let mut looped = full.clone();
        let answer = 12 + 19 + 4;
        looped[answer] = 0xc0;
        looped[answer + 1] = answer as u8;
        assert!(parse(&looped, "_micro._tcp.local.", 7).is_none());
    }

    #[test]
    fn the_query_asks_for_the_type_pointer_records() {
        let q = query("_micro._tcp.local.", 0x1234);
        assert_eq!(&q[..6], &[0x12, 0x34, 0, 0, 0, 1]);
        assert_eq!(name_at(&q, 12), Some(("_micro._tcp.local.".to_string(), 12 + 19)));
        assert_eq!(&q[12 + 19..], &[0, 12, 0, 1]);
    }
}
