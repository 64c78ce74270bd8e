//! [`SourceAllowlist`]: the networks a gateway's notices may come from.

use std::net::IpAddr;

/// The addresses notices may come from: networks in CIDR form. YooKassa signs nothing, so this is the first of
/// the two checks (the second is asking the gateway).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SourceAllowlist {
    networks: Vec<(IpAddr, u8)>,
}

/// A network that is not `address/bits` (or a bare address).
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("{0:?} is not an address or a network (a.b.c.d/n, x:y::/n)")]
pub struct NetworkError(pub String);

impl SourceAllowlist {
    /// YooKassa's published ranges.
    #[must_use]
    pub fn yookassa() -> SourceAllowlist {
        let ranges = [
            "185.71.76.0/27",
            "185.71.77.0/27",
            "77.75.153.0/25",
            "77.75.156.11",
            "77.75.156.35",
            "77.75.154.128/25",
            "2a02:5180::/32",
        ];
        match SourceAllowlist::parse(&ranges) {
            Ok(list) => list,
            Err(e) => panic!("invariant broken: a shipped range is invalid: {e}"),
        }
    }

    /// No address at all.
    #[must_use]
    pub fn none() -> SourceAllowlist {
        SourceAllowlist { networks: Vec::new() }
    }

    /// Reads networks such as `185.71.76.0/27`, `77.75.156.11`, `2a02:5180::/32`.
    ///
    /// # Errors
    /// [`NetworkError`] naming the first bad entry.
    pub fn parse(networks: &[&str]) -> Result<SourceAllowlist, NetworkError> {
        let mut parsed = Vec::with_capacity(networks.len());
        for text in networks {
            let bad = || NetworkError((*text).to_owned());
            let (addr, bits) = match text.split_once('/') {
                Some((a, b)) => (a.parse::<IpAddr>().map_err(|_| bad())?, b.parse::<u8>().map_err(|_| bad())?),
                None => {
                    let a = text.parse::<IpAddr>().map_err(|_| bad())?;
                    (a, if a.is_ipv4() { 32 } else { 128 })
                }
            };
            if bits > if addr.is_ipv4() { 32 } else { 128 } {
                return Err(bad());
            }
            parsed.push((addr, bits));
        }
        Ok(SourceAllowlist { networks: parsed })
    }

    /// `true` when `addr` is in one of the networks (an IPv4-mapped IPv6 address counts as its IPv4 address).
    #[must_use]
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        self.networks.iter().any(|(net, bits)| match (net, addr) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(u128::from(n.to_bits()), u128::from(a.to_bits()), 32, *bits),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(n.to_bits(), a.to_bits(), 128, *bits),
            _ => false,
        })
    }
}

/// `true` when the first `bits` of two `width`-bit numbers agree.
fn prefix_eq(a: u128, b: u128, width: u32, bits: u8) -> bool {
    let bits = u32::from(bits);
    if bits == 0 {
        return true;
    }
    let shift = width - bits;
    (a >> shift) == (b >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allowlist_admits_yookassas_ranges_and_nothing_else() {
        // Proves the first check of a notice: YooKassa's published networks in, everything else out.
        let list = SourceAllowlist::yookassa();
        for ok in [
            "185.71.76.1",
            "185.71.76.31",
            "77.75.153.127",
            "77.75.156.11",
            "2a02:5180:0:1509::1",
            "::ffff:185.71.77.5",
        ] {
            assert!(list.contains(ok.parse().expect("addr")), "{ok}");
        }
        for no in ["185.71.76.32", "77.75.156.12", "127.0.0.1", "10.0.0.1", "2a02:5181::1", "::1"] {
            assert!(!list.contains(no.parse().expect("addr")), "{no}");
        }
        assert!(SourceAllowlist::parse(&["10.0.0.0/33"]).is_err());
        assert!(SourceAllowlist::parse(&["not an address"]).is_err());
        assert!(SourceAllowlist::parse(&["0.0.0.0/0"]).expect("all").contains("8.8.8.8".parse().expect("addr")));
    }
}
