//! The Edge pool, as the vendor guide's Trunk Group: priorities, weights,
//! and which Edge a new dialog goes to.
//!
//! Spreading rule among equal priorities: weighted rendezvous hashing of
//! the Call-ID. Every Edge gets a score from hash(Call-ID, Edge name) scaled
//! by its weight; the highest score wins. The choice is stable (the same
//! Call-ID picks the same Edge on either host of a pair, with no shared
//! state), proportional to the weights, and when one Edge goes the calls
//! of the others do not move. The next-best scores give the failover order.

use std::net::SocketAddr;

use crate::config::EdgeConfig;
use crate::hash::fnv1a;

#[derive(Debug)]
pub(crate) struct Edge {
    pub(crate) config: EdgeConfig,
    pub(crate) healthy: bool,
    /// When the Edge last sent us anything: an Edge that answers other
    /// traffic is alive, however late one INVITE's answer is.
    pub(crate) last_heard: Option<std::time::Instant>,
    name_hash: u64,
}

#[derive(Debug)]
pub(crate) struct EdgePool {
    pub(crate) edges: Vec<Edge>,
}

impl EdgePool {
    pub(crate) fn new(configs: &[EdgeConfig]) -> Self {
        EdgePool {
            edges: configs
                .iter()
                .map(|c| Edge {
                    name_hash: fnv1a(c.name.as_bytes()),
                    config: c.clone(),
                    // Optimistic start: calls flow at once, and fast
                    // failover covers an Edge that is in fact down.
                    healthy: true,
                    last_heard: None,
                })
                .collect(),
        }
    }

    /// The Edge a message came from: exact address first, then IP alone
    /// (TCP sources use ephemeral ports).
    pub(crate) fn by_source(&self, src: SocketAddr) -> Option<usize> {
        let ip = canonical(src.ip());
        self.edges
            .iter()
            .position(|e| {
                canonical(e.config.address.ip()) == ip && e.config.address.port() == src.port()
            })
            .or_else(|| {
                // Not on loopback, where carrier, Edges and proxy share one
                // address and only the port tells them apart.
                if ip.is_loopback() {
                    return None;
                }
                self.edges
                    .iter()
                    .position(|e| canonical(e.config.address.ip()) == ip)
            })
    }

    pub(crate) fn by_name(&self, name: &[u8]) -> Option<usize> {
        self.edges
            .iter()
            .position(|e| e.config.name.as_bytes() == name)
    }

    pub(crate) fn any_healthy(&self) -> bool {
        self.edges.iter().any(|e| e.healthy)
    }

    /// Healthy Edges in the order a new dialog tries them: best priority
    /// first, by weighted rendezvous score within a priority. Written into
    /// `out` (priority, score, Edge), which the caller reuses.
    pub(crate) fn candidates_into(&self, call_id: &[u8], out: &mut Vec<(u8, f64, u16)>) {
        let key = fnv1a(call_id);
        out.clear();
        out.extend(
            self.edges
                .iter()
                .enumerate()
                .filter(|(_, e)| e.healthy)
                .map(|(n, e)| {
                    (
                        e.config.priority,
                        score(key, e.name_hash, e.config.weight),
                        n as u16,
                    )
                }),
        );
        out.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)));
    }

    #[cfg(test)]
    pub(crate) fn candidates(&self, call_id: &[u8]) -> Vec<u16> {
        let mut c = Vec::new();
        self.candidates_into(call_id, &mut c);
        c.into_iter().map(|x| x.2).collect()
    }
}

fn canonical(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
        v4 => v4,
    }
}

/// Weighted rendezvous score: -weight / ln(u), u uniform in (0, 1).
fn score(key: u64, edge: u64, weight: u32) -> f64 {
    let h = crate::hash::mix(key ^ edge.rotate_left(17));
    let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -(weight as f64) / u.ln()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::Transport;

    fn pool(spec: &[(&str, u8, u32)]) -> EdgePool {
        let cfgs: Vec<_> = spec
            .iter()
            .enumerate()
            .map(|(n, (name, p, w))| EdgeConfig {
                name: name.to_string(),
                uri: format!("sip:198.51.100.{}:5060", 21 + n),
                address: format!("198.51.100.{}:5060", 21 + n).parse().unwrap(),
                transport: Transport::Udp,
                priority: *p,
                weight: *w,
            })
            .collect();
        EdgePool::new(&cfgs)
    }

    #[test]
    fn active_passive_prefers_priority_one() {
        let mut p = pool(&[("b", 2, 1), ("a", 1, 1)]);
        for n in 0..100 {
            assert_eq!(p.candidates(format!("call-{n}").as_bytes()), vec![1, 0]);
        }
        p.edges[1].healthy = false;
        assert_eq!(p.candidates(b"x"), vec![0]);
        p.edges[0].healthy = false;
        assert!(p.candidates(b"x").is_empty());
    }

    #[test]
    fn active_active_spreads_by_weight_and_is_stable() {
        let p = pool(&[("a", 1, 1), ("b", 1, 3), ("c", 2, 1)]);
        let mut count = [0usize; 3];
        for n in 0..20000 {
            let c = p.candidates(format!("call-{n}@host").as_bytes());
            assert_eq!(c.len(), 3);
            assert_eq!(c[2], 2, "priority 2 comes last");
            count[c[0] as usize] += 1;
            assert_eq!(c, p.candidates(format!("call-{n}@host").as_bytes()));
        }
        let share_b = count[1] as f64 / 20000.0;
        assert!(
            (0.72..0.78).contains(&share_b),
            "share of weight 3 of 4: {share_b}"
        );
    }

    #[test]
    fn losing_an_edge_moves_only_its_calls() {
        let mut p = pool(&[("a", 1, 1), ("b", 1, 1), ("c", 1, 1)]);
        let before: Vec<_> = (0..3000)
            .map(|n| p.candidates(format!("k{n}").as_bytes())[0])
            .collect();
        p.edges[2].healthy = false;
        for (n, b) in before.iter().enumerate() {
            let now = p.candidates(format!("k{n}").as_bytes())[0];
            if *b != 2 {
                assert_eq!(now, *b);
            }
        }
    }

    #[test]
    fn source_matching() {
        let p = pool(&[("a", 1, 1), ("b", 1, 1)]);
        assert_eq!(p.by_source("198.51.100.22:5060".parse().unwrap()), Some(1));
        assert_eq!(p.by_source("198.51.100.22:40000".parse().unwrap()), Some(1));
        assert_eq!(
            p.by_source("[::ffff:198.51.100.21]:5060".parse().unwrap()),
            Some(0)
        );
        assert_eq!(p.by_source("198.51.100.2:5060".parse().unwrap()), None);
    }

    #[test]
    fn loopback_sources_match_by_port_only() {
        let mut p = pool(&[("a", 1, 1)]);
        p.edges[0].config.address = "127.0.0.1:5071".parse().unwrap();
        assert_eq!(p.by_source("127.0.0.1:5071".parse().unwrap()), Some(0));
        assert_eq!(p.by_source("127.0.0.1:5060".parse().unwrap()), None);
    }
}
