//! Whom a request comes from, for the per-address limits (`QYS_SDK_RATE`, `QYS_CALLBACK_RATE`)
//! and the log: the TCP peer, unless the peer is a reverse proxy the operator trusts
//! (`QYS_TRUSTED_PROXIES`), whose `X-Forwarded-For` or `X-Real-IP` names the client.
//!
//! Only a listed peer's headers are read: a private peer is no proof of a reverse proxy (an L4
//! load balancer, Kubernetes' `externalTrafficPolicy: Cluster` or Docker's userland proxy hand
//! over internet clients from a private address with their headers untouched). `Forwarded` is
//! not read: nginx and most reverse proxies pass it on as the client wrote it, so a client's own
//! would be taken for theirs.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;

/// Default `QYS_TRUSTED_PROXIES`: only someone on the host can connect from loopback, and a
/// reverse proxy on the same host is the common deployment.
pub const DEFAULT_TRUSTED_PROXIES: &str = "127.0.0.0/8,::1";

/// Headers a reverse proxy adds to name the client it forwards for.
const FORWARDING_HEADERS: [&str; 3] = ["forwarded", "x-forwarded-for", "x-real-ip"];

/// The address blocks whose forwarding headers are believed (`QYS_TRUSTED_PROXIES`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Block>);

/// One block: an address and a prefix length, with no bits set past the prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Block {
    network: IpAddr,
    len: u8,
}

/// A `QYS_TRUSTED_PROXIES` entry that is not an address or block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadBlock {
    /// The entry as written.
    pub entry: String,
    /// What is wrong with it.
    pub why: String,
}

impl fmt::Display for BadBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QYS_TRUSTED_PROXIES entry {:?} {}", self.entry, self.why)
    }
}

impl std::error::Error for BadBlock {}

impl Default for TrustedProxies {
    fn default() -> Self {
        Self::parse(DEFAULT_TRUSTED_PROXIES).expect("the default parses")
    }
}

impl TrustedProxies {
    /// Nobody's headers are believed.
    pub const NONE: Self = Self(Vec::new());

    /// Comma-separated addresses and CIDR blocks (`10.0.0.0/8`, `fd00::/8`, `127.0.0.1`); empty
    /// or `none`: [`Self::NONE`].
    pub fn parse(list: &str) -> Result<Self, BadBlock> {
        if list.trim().eq_ignore_ascii_case("none") {
            return Ok(Self::NONE);
        }
        list.split(',').map(str::trim).filter(|e| !e.is_empty()).map(Block::parse).collect::<Result<_, _>>().map(Self)
    }

    /// Whether `ip` (IPv4-mapped IPv6 as its IPv4 address) is in one of the blocks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|block| block.contains(ip))
    }
}

/// The list as the start-up log names it: `127.0.0.0/8, ::1/128`, or `none`.
impl fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (n, block) in self.0.iter().enumerate() {
            write!(f, "{}{}/{}", if n == 0 { "" } else { ", " }, block.network, block.len)?;
        }
        Ok(())
    }
}

impl Block {
    fn parse(entry: &str) -> Result<Self, BadBlock> {
        let bad = |why: String| BadBlock { entry: entry.to_owned(), why };
        let (address, len) = match entry.split_once('/') {
            Some((address, len)) => (address, Some(len)),
            None => (entry, None),
        };
        let network: IpAddr =
            address.parse().map_err(|_| bad("is not an IP address or a CIDR block like 10.0.0.0/8".into()))?;
        let network = network.to_canonical();
        let max = if network.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(len) => len.parse::<u8>().ok().filter(|l| *l <= max).ok_or_else(|| bad(format!("needs a prefix length of 0 to {max}")))?,
        };
        let block = Self { network, len };
        let masked = block.mask(network);
        if masked != network {
            return Err(bad(format!("has bits set past its prefix: did you mean {masked}/{len}?")));
        }
        Ok(block)
    }

    /// `ip` with the bits past the prefix cleared.
    fn mask(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let keep = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                IpAddr::V4((u32::from(v4) & keep).into())
            }
            IpAddr::V6(v6) => {
                let keep = u128::MAX.checked_shl(128 - u32::from(self.len)).unwrap_or(0);
                IpAddr::V6((u128::from(v6) & keep).into())
            }
        }
    }

    fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.network.is_ipv4() && self.mask(ip) == self.network
    }
}

/// The address a request is charged to and logged as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Client {
    /// The client; `None` without connect info (all such requests share one bucket).
    pub ip: Option<IpAddr>,
    /// The client is the TCP peer itself, on loopback: only someone on the host connects from
    /// there, so its bucket may start full. Never so for an address a header named: a forwarder
    /// on the host that does not append (frpc, stunnel, HAProxy in TCP mode) lets its clients
    /// write any 127.x address.
    pub local: bool,
    /// Forwarding headers that were there but not used, for the operator's hint.
    pub unheeded: Option<Unheeded>,
}

/// Why a request's forwarding headers were not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Unheeded {
    /// A peer outside the list that is not a public address sent one: likely a reverse proxy
    /// or load balancer missing from `QYS_TRUSTED_PROXIES`.
    Untrusted(IpAddr),
    /// A listed peer sent an `X-Forwarded-For` entry or `X-Real-IP` that is not an address
    /// (`raw`, for an escaped log line): the peer is charged.
    Garbled { peer: IpAddr, raw: String },
    /// A listed peer sent `Forwarded` alone, which is not read.
    ForwardedOnly(IpAddr),
}

/// The request's [`Client`]. A peer in `trusted`: the right-most `X-Forwarded-For` entry that is
/// not itself in `trusted` (each reverse proxy appends the address it got the request from, so
/// entries to its left are whatever the client wrote), else the last `X-Real-IP` unless it is in
/// `trusted` too, else the peer; an entry or `X-Real-IP` that is not an address gives the peer.
/// Any other peer is the client, whatever its headers say.
pub(super) fn client(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &TrustedProxies) -> Client {
    let only = |ip: IpAddr| Client { ip: Some(ip), local: false, unheeded: None };
    let Some(peer) = peer else { return Client { ip: None, local: false, unheeded: None } };
    let itself = |unheeded| Client { ip: Some(peer), local: peer.to_canonical().is_loopback(), unheeded };
    if !trusted.contains(peer) {
        let forwarding = FORWARDING_HEADERS.iter().any(|name| headers.contains_key(*name));
        return itself((forwarding && !is_public(peer)).then_some(Unheeded::Untrusted(peer)));
    }
    let garbled = |raw: &[u8]| itself(Some(Unheeded::Garbled { peer, raw: String::from_utf8_lossy(raw).into_owned() }));
    // Right to left over the raw bytes: only the entries examined are decoded, so what a client
    // wrote on the left, whatever its bytes, cannot spoil the entries its reverse proxies appended.
    let values = headers.get_all("x-forwarded-for").iter().rev();
    let entries = values.flat_map(|value| value.as_bytes().rsplit(|b| *b == b',')).map(<[u8]>::trim_ascii);
    for entry in entries.filter(|entry| !entry.is_empty()) {
        match std::str::from_utf8(entry).ok().and_then(address) {
            Some(ip) if trusted.contains(ip) => continue,
            Some(ip) => return only(ip),
            None => return garbled(entry),
        }
    }
    // The last one: a reverse proxy that adds rather than sets the header puts its own there.
    if let Some(real) = headers.get_all("x-real-ip").iter().next_back() {
        match std::str::from_utf8(real.as_bytes().trim_ascii()).ok().and_then(address) {
            Some(ip) if trusted.contains(ip) => {}
            Some(ip) => return only(ip),
            None => return garbled(real.as_bytes()),
        }
    }
    itself(headers.contains_key("forwarded").then_some(Unheeded::ForwardedOnly(peer)))
}

/// An address as reverse proxies write one: `203.0.113.9`, `2001:db8::1`, or either with a port
/// (`203.0.113.9:4711`, `[2001:db8::1]:4711`).
fn address(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>().ok().or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// Whether `ip` can be reached on the internet: not loopback, private (RFC 1918), shared
/// (RFC 6598: carrier NAT, and the source range of some cloud load balancers), link-local,
/// unspecified, or IPv6 unique-local or link-local.
pub(super) fn is_public(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let shared = v4.octets()[0] == 100 && v4.octets()[1] & 0xc0 == 64;
            !(v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified() || shared)
        }
        IpAddr::V6(v6) => {
            let unique_local = v6.segments()[0] & 0xfe00 == 0xfc00;
            let link_local = v6.segments()[0] & 0xffc0 == 0xfe80;
            !(v6.is_loopback() || v6.is_unspecified() || unique_local || link_local)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{header::HeaderName, HeaderValue};

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn client_of(peer: &str, pairs: &[(&'static str, &'static str)], trusted: &str) -> Client {
        client(Some(ip(peer)), &headers(pairs), &TrustedProxies::parse(trusted).unwrap())
    }

    /// A client a header named.
    fn only(addr: &str) -> Client {
        Client { ip: Some(ip(addr)), local: false, unheeded: None }
    }

    /// The peer itself as the client.
    fn itself(addr: &str, unheeded: Option<Unheeded>) -> Client {
        Client { ip: Some(ip(addr)), local: ip(addr).to_canonical().is_loopback(), unheeded }
    }

    #[test]
    fn the_list_is_addresses_and_blocks() {
        let default = TrustedProxies::default();
        for (addr, inside) in [("127.0.0.1", true), ("127.255.0.9", true), ("::1", true), ("::ffff:127.0.0.1", true),
                               ("10.0.0.1", false), ("::2", false), ("128.0.0.1", false)] {
            assert_eq!(default.contains(ip(addr)), inside, "{addr}");
        }
        let list = TrustedProxies::parse(" 10.0.0.0/8, fd00::/8 ,192.0.2.7, 2001:db8::1/128,").unwrap();
        for (addr, inside) in [("10.255.255.255", true), ("11.0.0.0", false), ("fdff::1", true), ("fe00::1", false),
                               ("192.0.2.7", true), ("192.0.2.8", false), ("2001:db8::1", true), ("::ffff:10.1.2.3", true),
                               ("127.0.0.1", false)] {
            assert_eq!(list.contains(ip(addr)), inside, "{addr}");
        }
        assert!(TrustedProxies::parse("0.0.0.0/0").unwrap().contains(ip("203.0.113.9")));
        assert!(!TrustedProxies::parse("0.0.0.0/0").unwrap().contains(ip("2001:db8::1")), "one family per block");
        for none in ["", " ", "none", "NONE", ","] {
            assert_eq!(TrustedProxies::parse(none), Ok(TrustedProxies::NONE), "{none:?}");
        }
        assert_eq!(default.to_string(), "127.0.0.0/8, ::1/128");
        assert_eq!(list.to_string(), "10.0.0.0/8, fd00::/8, 192.0.2.7/32, 2001:db8::1/128");
        assert_eq!(TrustedProxies::NONE.to_string(), "none");
        for (entry, why) in [("10.0.0.1/8", "did you mean 10.0.0.0/8?"), ("10.0.0.0/33", "0 to 32"), ("::/129", "0 to 128"),
                             ("localhost", "not an IP address"), ("10.0.0.0/", "0 to 32"), ("none,10.0.0.0/8", "not an IP address")] {
            let error = TrustedProxies::parse(entry).unwrap_err();
            assert!(error.to_string().contains(why), "{entry}: {error}");
        }
    }

    #[test]
    fn a_trusted_peer_names_the_right_most_address_it_does_not_trust() {
        let lb = "127.0.0.0/8,10.0.0.0/8";
        assert_eq!(client_of("127.0.0.1", &[("x-forwarded-for", "203.0.113.9")], lb), only("203.0.113.9"));
        // What the client wrote is on the left; each trusted hop appends the address it saw.
        assert_eq!(client_of("127.0.0.1", &[("x-forwarded-for", "192.0.2.1, 203.0.113.9")], lb), only("203.0.113.9"));
        assert_eq!(client_of("127.0.0.1", &[("x-forwarded-for", "192.0.2.1, 203.0.113.9, 10.0.0.5")], lb), only("203.0.113.9"));
        assert_eq!(client_of("127.0.0.1", &[("x-forwarded-for", "192.0.2.1"), ("x-forwarded-for", "203.0.113.9")], lb),
                   only("203.0.113.9"), "several headers are one list");
        assert_eq!(client_of("10.1.1.1", &[("x-forwarded-for", "[2001:db8::7]:4711,203.0.113.9:80")], lb), only("203.0.113.9"));
        assert_eq!(client_of("::1", &[("x-forwarded-for", "2001:db8::7")], DEFAULT_TRUSTED_PROXIES), only("2001:db8::7"));
        assert_eq!(client_of("::ffff:127.0.0.1", &[("x-real-ip", "203.0.113.9")], lb), only("203.0.113.9"));
        // X-Forwarded-For first; X-Real-IP when it names nobody outside the list; else the peer.
        assert_eq!(client_of("127.0.0.1", &[("x-forwarded-for", "203.0.113.9"), ("x-real-ip", "192.0.2.1")], lb), only("203.0.113.9"));
        assert_eq!(client_of("127.0.0.1", &[("x-forwarded-for", "10.0.0.5, 127.0.0.2"), ("x-real-ip", "192.0.2.1")], lb), only("192.0.2.1"));
        assert_eq!(client_of("127.0.0.1", &[("x-forwarded-for", "10.0.0.5")], lb), itself("127.0.0.1", None));
        assert_eq!(client_of("127.0.0.1", &[], lb), itself("127.0.0.1", None));
        assert_eq!(client(None, &headers(&[("x-forwarded-for", "203.0.113.9")]), &TrustedProxies::default()),
                   Client { ip: None, local: false, unheeded: None }, "no connect info");
        // The last X-Real-IP: a reverse proxy that adds the header puts its own after the client's.
        assert_eq!(client_of("127.0.0.1", &[("x-real-ip", "192.0.2.1"), ("x-real-ip", "203.0.113.9")], lb), only("203.0.113.9"));
        // An X-Real-IP in the list is a hop, not a client: the peer, which may start full only as itself.
        assert_eq!(client_of("127.0.0.1", &[("x-real-ip", "127.0.0.9")], lb), itself("127.0.0.1", None));
        assert_eq!(client_of("10.1.1.1", &[("x-real-ip", "10.0.0.5")], lb), itself("10.1.1.1", None));
    }

    /// Only the TCP peer itself on loopback is local (its bucket may start full): never a 127.x
    /// address a header named, which a same-host forwarder that does not append lets clients pick.
    #[test]
    fn only_a_loopback_peer_itself_is_local() {
        let lb = "127.0.0.1,10.0.0.0/8";
        assert!(client_of("127.0.0.1", &[], lb).local);
        assert!(client_of("::1", &[("x-forwarded-for", "203.0.113.9")], "none").local, "untrusted, charged as itself");
        for (name, value, named) in [("x-forwarded-for", "127.0.0.5", "127.0.0.5"), ("x-forwarded-for", "[::1]:80", "::1"),
                                     ("x-real-ip", "127.0.0.5", "127.0.0.5")] {
            assert_eq!(client_of("127.0.0.1", &[(name, value)], lb), only(named), "{name}: {value}");
        }
        assert!(!client_of("10.1.1.1", &[], lb).local, "a private peer is not loopback");
    }

    #[test]
    fn garbled_or_unread_headers_leave_the_peer_charged_and_are_reported() {
        let lb = DEFAULT_TRUSTED_PROXIES;
        let garbled = |raw: &str| itself("127.0.0.1", Some(Unheeded::Garbled { peer: ip("127.0.0.1"), raw: raw.into() }));
        assert_eq!(client_of("127.0.0.1", &[("x-forwarded-for", "unknown")], lb), garbled("unknown"));
        // Not an address where the search stopped: nothing left of it can be told from a forgery.
        assert_eq!(client_of("127.0.0.1", &[("x-forwarded-for", "203.0.113.9, bogus, 127.0.0.2")], lb), garbled("bogus"));
        assert_eq!(client_of("127.0.0.1", &[("x-forwarded-for", "bogus, 203.0.113.9")], lb), only("203.0.113.9"));
        assert_eq!(client_of("127.0.0.1", &[("x-real-ip", "fe80::1%eth0")], lb), garbled("fe80::1%eth0"));
        // Bytes that are not UTF-8: only the entries examined are decoded, so a client's on the left
        // are never looked at, in the same header or an earlier one.
        let raw = |values: &[&[u8]]| {
            let mut map = HeaderMap::new();
            for value in values {
                map.append("x-forwarded-for", HeaderValue::from_bytes(value).unwrap());
            }
            client(Some(ip("127.0.0.1")), &map, &TrustedProxies::default())
        };
        assert_eq!(raw(&[b"\xff\xfe, 192.0.2.\xe9, 203.0.113.9"]), only("203.0.113.9"));
        assert_eq!(raw(&[b"\xc3\xa9t\xe9", b"203.0.113.9, 127.0.0.2"]), only("203.0.113.9"), "several headers");
        assert_eq!(raw(&[b"203.0.113.9, 198.51.100.\xff, 127.0.0.2"]), garbled("198.51.100.\u{fffd}"));
        assert_eq!(raw(&[b"203.0.113.9", b"\xff"]), garbled("\u{fffd}"), "the last header's entry is the right-most");
        assert_eq!(client_of("127.0.0.1", &[("forwarded", "for=203.0.113.9")], lb),
                   itself("127.0.0.1", Some(Unheeded::ForwardedOnly(ip("127.0.0.1")))));
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends() {
        let spoofed: &[(&'static str, &'static str)] = &[("x-forwarded-for", "203.0.113.9"), ("x-real-ip", "192.0.2.1")];
        assert_eq!(client_of("127.0.0.1", spoofed, "none"), itself("127.0.0.1", Some(Unheeded::Untrusted(ip("127.0.0.1")))));
        // A non-public peer with a forwarding header is likely a reverse proxy missing from the list.
        for peer in ["10.1.2.3", "172.31.0.1", "192.168.1.1", "100.64.0.1", "169.254.0.1", "fd00::1", "fe80::1", "::ffff:10.0.0.1"] {
            for name in FORWARDING_HEADERS {
                let got = client_of(peer, &[(name, "203.0.113.9")], DEFAULT_TRUSTED_PROXIES);
                assert_eq!(got, itself(peer, Some(Unheeded::Untrusted(ip(peer)))), "{peer} {name}");
            }
            assert_eq!(client_of(peer, &[], DEFAULT_TRUSTED_PROXIES), itself(peer, None), "{peer} without a header");
        }
        // A public peer's header is anyone's: no hint.
        for peer in ["203.0.113.9", "100.128.0.1", "172.32.0.1", "2001:db8::1", "::ffff:198.51.100.1"] {
            assert_eq!(client_of(peer, spoofed, DEFAULT_TRUSTED_PROXIES), itself(peer, None), "{peer}");
        }
    }
}
