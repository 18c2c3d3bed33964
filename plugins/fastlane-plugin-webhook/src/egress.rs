//! Where webhooks may go: the egress policy.
//!
//! Link-local and cloud-metadata addresses (`169.254.0.0/16`, `fe80::/10`,
//! `fd00:ec2::254`, and the IPv4-mapped, IPv4-compatible and NAT64 forms of
//! the IPv4 ones) are always refused. Loopback, private, shared (CGNAT),
//! unspecified, multicast, broadcast and reserved addresses are "the local
//! network": refused unless `WEBHOOKS_ALLOW_LOCAL_NETWORK` is on or the host
//! is listed in `WEBHOOKS_ALLOWED_HOSTS` (host names, IP addresses or CIDR
//! blocks). Everything else is allowed.
//!
//! A literal address in a URL is checked with [`EgressPolicy::check_url`]
//! (at submission, before each call and on each redirect); a host name is
//! checked after DNS resolution, address by address, by
//! [`EgressPolicy::check_addr`], which the notifier's resolver calls so the
//! connection goes only to an address that passed.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The setting that opens the local network to webhooks.
pub const ALLOW_LOCAL_NETWORK_KEY: &str = "WEBHOOKS_ALLOW_LOCAL_NETWORK";
/// The setting that lists hosts webhooks may call on the local network.
pub const ALLOWED_HOSTS_KEY: &str = "WEBHOOKS_ALLOWED_HOSTS";

/// What the policy says about one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// Link-local or cloud metadata: never called.
    Forbidden,
    /// Loopback, private and other non-public ranges: called only when allowed.
    Local,
    /// Anything else.
    Public,
}

/// Why an address or URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// A link-local or cloud-metadata address.
    #[error(
        "webhook address {address} is link-local or a cloud metadata address, which webhooks may never call"
    )]
    Forbidden {
        /// The address refused.
        address: IpAddr,
    },
    /// A local-network address that the configuration does not allow.
    #[error(
        "webhook address {address}{via} is on the local network; set {ALLOW_LOCAL_NETWORK_KEY}=true or list it in {ALLOWED_HOSTS_KEY} to allow it",
        via = .host.as_ref().map(|h| format!(" (of {h})")).unwrap_or_default()
    )]
    Local {
        /// The address refused.
        address: IpAddr,
        /// The host name it was resolved from, if any.
        host: Option<String>,
    },
    /// Not an `http://` or `https://` URL with a host.
    #[error("{0}")]
    BadUrl(String),
}

/// A `WEBHOOKS_ALLOWED_HOSTS` entry that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{ALLOWED_HOSTS_KEY}: {entry:?} is not a host name, an IP address or a CIDR block")]
pub struct BadAllowedHost {
    /// The entry as written.
    pub entry: String,
}

/// One `WEBHOOKS_ALLOWED_HOSTS` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Allowed {
    /// A host name, lower case, without a trailing dot.
    Name(String),
    /// An address block (a single address is a block of its full length).
    Block { network: IpAddr, prefix: u8 },
}

/// Where webhooks may go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    allow_local_network: bool,
    allowed: Vec<Allowed>,
}

impl EgressPolicy {
    /// The policy from `WEBHOOKS_ALLOW_LOCAL_NETWORK` and the entries of
    /// `WEBHOOKS_ALLOWED_HOSTS`.
    pub fn new<S: AsRef<str>>(
        allow_local_network: bool,
        allowed_hosts: &[S],
    ) -> Result<Self, BadAllowedHost> {
        let allowed = allowed_hosts
            .iter()
            .map(AsRef::as_ref)
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(parse_allowed)
            .collect::<Result<_, _>>()?;
        Ok(Self {
            allow_local_network,
            allowed,
        })
    }

    /// Splits a comma-separated `WEBHOOKS_ALLOWED_HOSTS` value.
    pub fn split_list(text: &str) -> Vec<String> {
        text.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Whether a call to `address`, found as an address of `host` (a name,
    /// when there is one), is allowed.
    pub fn check_addr(&self, host: Option<&str>, address: IpAddr) -> Result<(), Refusal> {
        match classify(address) {
            AddressClass::Public => Ok(()),
            AddressClass::Forbidden => Err(Refusal::Forbidden { address }),
            AddressClass::Local => {
                if self.allow_local_network || self.lists(host, address) {
                    Ok(())
                } else {
                    Err(Refusal::Local {
                        address,
                        host: host.map(str::to_owned),
                    })
                }
            }
        }
    }

    /// Whether `url` may be called as far as can be told without DNS: its
    /// scheme is `http` or `https`, and a literal address in it passes
    /// [`check_addr`](Self::check_addr). A host name passes here; its
    /// addresses are checked when it is resolved.
    pub fn check_url(&self, url: &str) -> Result<(), Refusal> {
        let parsed =
            reqwest::Url::parse(url).map_err(|e| Refusal::BadUrl(format!("not a URL ({e})")))?;
        self.check_parsed_url(&parsed)
    }

    /// [`check_url`](Self::check_url) on a parsed URL.
    pub fn check_parsed_url(&self, url: &reqwest::Url) -> Result<(), Refusal> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refusal::BadUrl(format!(
                "{}: URLs are not followed, only http:// and https://",
                url.scheme()
            )));
        }
        let host = url
            .host_str()
            .ok_or_else(|| Refusal::BadUrl("the URL has no host".to_owned()))?;
        // The URL parser writes literal addresses in their canonical form
        // (`http://0x7f.1/` is `127.0.0.1`), IPv6 ones in brackets.
        match host.trim_start_matches('[').trim_end_matches(']').parse() {
            Ok(address) => self.check_addr(None, address),
            Err(_) => Ok(()),
        }
    }

    /// Whether `WEBHOOKS_ALLOWED_HOSTS` names `host` or holds `address`.
    fn lists(&self, host: Option<&str>, address: IpAddr) -> bool {
        let name = host.map(|h| h.trim_end_matches('.').to_ascii_lowercase());
        let plain = canonical(address);
        self.allowed.iter().any(|entry| match entry {
            Allowed::Name(allowed) => name.as_deref() == Some(allowed.as_str()),
            Allowed::Block { network, prefix } => {
                in_block(address, *network, *prefix) || in_block(plain, *network, *prefix)
            }
        })
    }
}

fn parse_allowed(entry: &str) -> Result<Allowed, BadAllowedHost> {
    let bad = || BadAllowedHost {
        entry: entry.to_owned(),
    };
    let bare = entry.trim_start_matches('[').trim_end_matches(']');
    if let Some((address, prefix)) = entry.split_once('/') {
        let network: IpAddr = address.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(bad());
        }
        return Ok(Allowed::Block { network, prefix });
    }
    if let Ok(address) = bare.parse::<IpAddr>() {
        let prefix = if address.is_ipv4() { 32 } else { 128 };
        return Ok(Allowed::Block {
            network: address,
            prefix,
        });
    }
    let name = entry.trim_end_matches('.').to_ascii_lowercase();
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if valid {
        Ok(Allowed::Name(name))
    } else {
        Err(bad())
    }
}

/// Whether `address` is in `network/prefix` (of the same family).
fn in_block(address: IpAddr, network: IpAddr, prefix: u8) -> bool {
    match (address, network) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// The IPv4 address an IPv6 address stands for (IPv4-mapped `::ffff:a.b.c.d`,
/// IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`), else the address.
pub fn canonical(address: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = address else {
        return address;
    };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    let bits = u128::from(v6);
    let low = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    let nat64 = 0x0064_ff9b_u128 << 96;
    if bits >> 32 == nat64 >> 32 {
        return IpAddr::V4(low);
    }
    // IPv4-compatible (deprecated), but not `::` and `::1` themselves.
    if bits >> 32 == 0 && bits > 1 {
        return IpAddr::V4(low);
    }
    address
}

/// How the policy treats `address`.
pub fn classify(address: IpAddr) -> AddressClass {
    match canonical(address) {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(v4: Ipv4Addr) -> AddressClass {
    let blocks_local: [(u32, u8); 9] = [
        (0x0000_0000, 8),  // 0.0.0.0/8, "this network"
        (0x0a00_0000, 8),  // 10.0.0.0/8
        (0x6440_0000, 10), // 100.64.0.0/10, shared address space (CGNAT)
        (0x7f00_0000, 8),  // 127.0.0.0/8, loopback
        (0xac10_0000, 12), // 172.16.0.0/12
        (0xc000_0000, 24), // 192.0.0.0/24, IETF protocol assignments
        (0xc0a8_0000, 16), // 192.168.0.0/16
        (0xc612_0000, 15), // 198.18.0.0/15, benchmarking
        (0xe000_0000, 3),  // 224.0.0.0/4 multicast, 240.0.0.0/4 reserved, broadcast
    ];
    let ip = IpAddr::V4(v4);
    if in_block(ip, IpAddr::V4(Ipv4Addr::new(169, 254, 0, 0)), 16) {
        return AddressClass::Forbidden;
    }
    let local = blocks_local
        .iter()
        .any(|(network, prefix)| in_block(ip, IpAddr::V4(Ipv4Addr::from(*network)), *prefix));
    if local {
        AddressClass::Local
    } else {
        AddressClass::Public
    }
}

fn classify_v6(v6: Ipv6Addr) -> AddressClass {
    let ip = IpAddr::V6(v6);
    let block = |text: &str, prefix: u8| {
        text.parse::<Ipv6Addr>()
            .is_ok_and(|network| in_block(ip, IpAddr::V6(network), prefix))
    };
    // fe80::/10 link-local; fd00:ec2::254 is EC2's metadata service.
    if block("fe80::", 10) || block("fd00:ec2::254", 128) {
        return AddressClass::Forbidden;
    }
    let local = v6.is_unspecified()
        || v6.is_loopback()
        || block("fc00::", 7) // unique local
        || block("fec0::", 10) // site-local (deprecated)
        || block("ff00::", 8) // multicast
        || block("100::", 64); // discard-only
    if local {
        AddressClass::Local
    } else {
        AddressClass::Public
    }
}

impl fmt::Display for EgressPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "local network {}, {} allowed host entries",
            if self.allow_local_network {
                "allowed"
            } else {
                "refused"
            },
            self.allowed.len()
        )
    }
}

#[cfg(test)]
mod tests;
