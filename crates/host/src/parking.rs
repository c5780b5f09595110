//! Requests parked until the store changes (the contract is `mcp_edge_domain::park`): a
//! component with nothing to answer yet asks to be parked on a key; the request then waits
//! here, holding no instance, until the key is written (`crate::kv::changes`) or its time
//! runs out, and is dispatched again. Parked requests are capped overall (503), per client
//! address and per client (429).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use mcp_edge_domain::ApiError;
use mcp_edge_domain::park::{MAX_WAITING_PER_CLIENT, too_many_waiting};

#[derive(Debug, Clone)]
pub struct ParkLimits {
    /// Requests parked at once in this process.
    pub total: usize,
    /// Requests parked at once from one client address.
    pub per_address: usize,
    /// Requests parked at once for one client (a group member).
    pub per_client: usize,
}

impl Default for ParkLimits {
    fn default() -> Self {
        Self {
            total: 10_000,
            per_address: 1_000,
            per_client: MAX_WAITING_PER_CLIENT,
        }
    }
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
    by_client: HashMap<String, usize>,
}

pub struct Parking {
    limits: ParkLimits,
    counts: Mutex<Counts>,
}

/// A request's place among the parked (a waiting receive, an open stream); given back when
/// dropped.
pub struct Held {
    parking: Arc<Parking>,
    address: IpAddr,
    client: String,
}

fn release<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

impl Parking {
    pub fn new(limits: ParkLimits) -> Self {
        Self {
            limits,
            counts: Mutex::default(),
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for a request from `address` for `client`, or the error that refuses it.
    pub fn hold(self: &Arc<Self>, address: IpAddr, client: &str) -> Result<Held, ApiError> {
        let mut counts = self.counts();
        if counts.total >= self.limits.total {
            return Err(too_many_waiting(None));
        }
        let by_address = counts.by_address.get(&address).copied().unwrap_or(0);
        let by_client = counts.by_client.get(client).copied().unwrap_or(0);
        if by_address >= self.limits.per_address || by_client >= self.limits.per_client {
            let whose = if by_client >= self.limits.per_client {
                "this client"
            } else {
                "this address"
            };
            return Err(too_many_waiting(Some(whose)));
        }
        counts.total += 1;
        *counts.by_address.entry(address).or_default() += 1;
        *counts.by_client.entry(client.to_owned()).or_default() += 1;
        Ok(Held {
            parking: self.clone(),
            address,
            client: client.to_owned(),
        })
    }

    /// Requests parked now.
    pub fn parked(&self) -> usize {
        self.counts().total
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut counts = self.parking.counts();
        counts.total -= 1;
        release(&mut counts.by_address, &self.address);
        release(&mut counts.by_client, &self.client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cap_refuses_with_its_own_status_and_places_come_back() {
        let parking = Arc::new(Parking::new(ParkLimits {
            total: 3,
            per_address: 2,
            per_client: 1,
        }));
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap());
        let first = parking.hold(a, "g/c1").unwrap();
        assert_eq!(parking.hold(a, "g/c1").err().unwrap().status, 429);
        let _second = parking.hold(a, "g/c2").unwrap();
        let refused = parking.hold(a, "g/c3").err().unwrap();
        assert_eq!((refused.status, refused.code), (429, "too_many_waiting"));
        let _third = parking.hold(b, "g/c3").unwrap();
        assert_eq!(parking.hold(b, "g/c4").err().unwrap().status, 503);
        drop(first);
        assert_eq!(parking.parked(), 2);
        assert!(parking.hold(b, "g/c1").is_ok());
    }
}
