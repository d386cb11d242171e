//! IP networks in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`, or a bare
//! address meaning a single host), for `trusted_proxies`.

use std::{fmt, net::IpAddr};

/// An IP network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `addr/prefix` or a bare address. Host bits must be zero, so a
    /// typo such as `10.1.2.3/8` is caught instead of silently widened.
    pub fn parse(text: &str) -> Result<Self, String> {
        let hint = "write a network such as \"10.0.0.0/8\", \"192.168.1.7\" or \"fd00::/8\"";
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an IP network; {hint}"))?;
        let max = max_prefix(network);
        let prefix = match prefix {
            None => max,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| {
                    format!("{text:?} has an invalid prefix length (0 to {max}); {hint}")
                })?,
        };
        let cidr = Self { network, prefix };
        if mask(network, prefix) != network {
            return Err(format!(
                "{text:?} has host bits set; did you mean \"{}\"?",
                Self {
                    network: mask(network, prefix),
                    prefix
                }
            ));
        }
        Ok(cidr)
    }

    /// Whether `addr` is inside this network (IPv4-mapped IPv6 addresses
    /// count as IPv4).
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        addr.is_ipv4() == self.network.is_ipv4() && mask(addr, self.prefix) == self.network
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    if addr.is_ipv4() { 32 } else { 128 }
}

/// `addr` with everything after the first `prefix` bits cleared.
pub(crate) fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let prefix = u32::from(prefix.min(32));
            let bits = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            IpAddr::V4((u32::from(v4) & bits).into())
        }
        IpAddr::V6(v6) => {
            let prefix = u32::from(prefix.min(128));
            let bits = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix)
            };
            IpAddr::V6((u128::from(v6) & bits).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches() {
        let cases = [
            ("10.0.0.0/8", "10.200.1.1", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("192.168.1.7", "192.168.1.7", true),
            ("192.168.1.7", "192.168.1.8", false),
            ("0.0.0.0/0", "8.8.8.8", true),
            ("fd00::/8", "fd12::1", true),
            ("fd00::/8", "fe80::1", false),
            ("127.0.0.0/8", "::ffff:127.0.0.1", true),
            ("::/0", "10.0.0.1", false),
        ];
        for (cidr, addr, expected) in cases {
            assert_eq!(
                Cidr::parse(cidr).unwrap().contains(addr.parse().unwrap()),
                expected,
                "{cidr} contains {addr}"
            );
        }
    }

    #[test]
    fn rejects_malformed_networks() {
        for text in [
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0/8",
            "fd00::/129",
            "10.1.2.3/8",
            "example.com",
            "",
        ] {
            assert!(Cidr::parse(text).is_err(), "{text} should be rejected");
        }
        assert!(
            Cidr::parse("10.1.2.3/8")
                .unwrap_err()
                .contains("10.0.0.0/8")
        );
    }

    #[test]
    fn masks_to_the_prefix() {
        assert_eq!(
            mask("2001:db8:1:2:3:4:5:6".parse().unwrap(), 64),
            "2001:db8:1:2::".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            mask("10.1.2.3".parse().unwrap(), 16),
            "10.1.0.0".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            mask("10.1.2.3".parse().unwrap(), 0),
            "0.0.0.0".parse::<IpAddr>().unwrap()
        );
    }
}
