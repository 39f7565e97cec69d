//! Which live conductor owns a node: a consistent hash ring per (conductor group, hardware type),
//! as Ironic's `hash_ring`. Each conductor holds `2^partition_exponent` points on the ring, so
//! when one joins or leaves only the nodes next to its points change owner.

use chrono::{DateTime, Utc};
use ferric_types::models::{ConductorRecord, NodeId};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// One ring: conductors' points, sorted.
#[derive(Debug, Clone, Default)]
pub struct HashRing {
    points: Vec<(u64, u32)>,
    hosts: Vec<String>,
}

fn point(bytes: &[u8]) -> u64 {
    let d = Sha256::digest(bytes);
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

impl HashRing {
    /// A ring over `hosts` (order does not matter).
    pub fn new<S: AsRef<str>>(hosts: &[S], partition_exponent: u32) -> HashRing {
        let mut hosts: Vec<String> = hosts.iter().map(|h| h.as_ref().to_string()).collect();
        hosts.sort();
        hosts.dedup();
        let per_host = 1u32 << partition_exponent.min(16);
        let mut points = Vec::with_capacity(hosts.len() * per_host as usize);
        for (i, h) in hosts.iter().enumerate() {
            for p in 0..per_host {
                points.push((point(format!("{h}-{p}").as_bytes()), i as u32));
            }
        }
        points.sort_unstable();
        HashRing { points, hosts }
    }

    /// The host owning `key`: the first point at or after the key's hash, round the ring.
    pub fn owner(&self, key: &[u8]) -> Option<&str> {
        if self.points.is_empty() {
            return None;
        }
        let h = point(key);
        let i = self.points.partition_point(|(p, _)| *p < h);
        let (_, host) = self.points[i % self.points.len()];
        Some(&self.hosts[host as usize])
    }

    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }
}

/// Every ring of the live conductors, with the records they registered (their RPC URLs).
#[derive(Debug, Clone, Default)]
pub struct Rings {
    /// conductor group → hardware type → ring: looked up by `&str`, no key built per lookup.
    rings: BTreeMap<String, BTreeMap<String, HashRing>>,
    live: BTreeMap<String, ConductorRecord>,
}

impl Rings {
    /// Rings over the conductors of `all` alive at `now` (heard from within `timeout` seconds):
    /// one per (conductor group, hardware type) that any serves.
    pub fn alive(all: &[ConductorRecord], now: DateTime<Utc>, timeout: u64, partition_exponent: u32) -> Rings {
        let live: Vec<&ConductorRecord> = all.iter().filter(|c| c.alive_at(now, timeout)).collect();
        let mut members: BTreeMap<String, BTreeMap<String, Vec<&str>>> = BTreeMap::new();
        for c in &live {
            for d in &c.drivers {
                members
                    .entry(c.conductor_group.clone())
                    .or_default()
                    .entry(d.clone())
                    .or_default()
                    .push(c.hostname.as_str());
            }
        }
        let rings = members
            .into_iter()
            .map(|(g, by)| {
                (g, by.into_iter().map(|(d, hosts)| (d, HashRing::new(&hosts, partition_exponent))).collect())
            })
            .collect();
        Rings { rings, live: live.into_iter().map(|c| (c.hostname.clone(), c.clone())).collect() }
    }

    /// The live conductor owning `node` of hardware type `driver` in `group`.
    pub fn owner(&self, group: &str, driver: &str, node: NodeId) -> Option<&ConductorRecord> {
        let ring = self.rings.get(group)?.get(driver)?;
        // The key is the node's UUID as text (as Ironic hashes it), encoded on the stack.
        let mut buf = uuid::Uuid::encode_buffer();
        let host = ring.owner(node.0.hyphenated().encode_lower(&mut buf).as_bytes())?;
        self.live.get(host)
    }

    pub fn is_live(&self, host: &str) -> bool {
        self.live.contains_key(host)
    }

    pub fn live(&self) -> impl Iterator<Item = &ConductorRecord> {
        self.live.values()
    }

    /// The live conductors' host names, sorted.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.live.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keys(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("00000000-0000-4000-8000-{i:012}")).collect()
    }

    #[test]
    fn an_empty_ring_owns_nothing() {
        assert_eq!(HashRing::new::<&str>(&[], 5).owner(b"x"), None);
    }

    #[test]
    fn every_host_gets_a_share() {
        let ring = HashRing::new(&["a", "b", "c"], 5);
        let mut counts = BTreeMap::new();
        for k in keys(3000) {
            *counts.entry(ring.owner(k.as_bytes()).unwrap().to_string()).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 3);
        for (_, c) in counts {
            assert!((500..=1500).contains(&c), "unbalanced: {c} of 3000");
        }
    }

    proptest! {
        /// Removing one host moves only the keys it owned; the others keep their owner.
        #[test]
        fn a_leaving_host_moves_only_its_keys(n in 2usize..7, gone in 0usize..7, exp in 2u32..7) {
            let hosts: Vec<String> = (0..n).map(|i| format!("conductor-{i}")).collect();
            let gone = &hosts[gone % n];
            let before = HashRing::new(&hosts, exp);
            let rest: Vec<&String> = hosts.iter().filter(|h| *h != gone).collect();
            let after = HashRing::new(&rest, exp);
            for k in keys(200) {
                let (b, a) = (before.owner(k.as_bytes()).unwrap(), after.owner(k.as_bytes()).unwrap());
                prop_assert_ne!(a, gone.as_str());
                if b != gone { prop_assert_eq!(a, b); }
            }
        }

        /// Host order does not change ownership (every process builds the same ring).
        #[test]
        fn order_does_not_matter(mut hosts in proptest::collection::vec("[a-z]{1,8}", 1..6)) {
            let a = HashRing::new(&hosts, 5);
            hosts.reverse();
            let b = HashRing::new(&hosts, 5);
            for k in keys(50) {
                prop_assert_eq!(a.owner(k.as_bytes()), b.owner(k.as_bytes()));
            }
        }
    }
}
