//! Calls refused for want of an identity (a TLS client without a usable certificate, which
//! the listeners accept for health checks), held against their peer address.
//!
//! Each such call is a failure for the same per-peer [`Throttle`] as a failed handshake, so
//! a peer that keeps calling without a certificate is soon refused at `accept`. And since the
//! audit log is fail-closed (a full disk stops every caller), one peer cannot fill it: per
//! peer and window, the first refusal is written as it happens, the block (if the peer trips
//! it) is written once, and the refusals in between are only counted, then written as one
//! line with their count when the peer's next window begins.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::Arc,
};

use dashmap::DashMap;
use jiff::{SignedDuration, Timestamp};

use crate::{
    audit::{Action, Actor, Audit, AuditError, Event},
    clock::Clock,
    throttle::Throttle,
};

/// Peers kept before stale ones are pruned.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Tally {
    start: Timestamp,
    /// Whether this window's first refusal was written.
    written: bool,
    /// Refusals of this window not written one by one.
    unwritten: u64,
}

/// What to write to the audit log for one refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denial {
    /// Refusals of the peer's previous window that were only counted: write one line with
    /// this count first (0: none).
    pub carried: u64,
    /// Refusals only counted, of other peers whose windows ended and whose entries were
    /// pruned to keep the table small: write one line with this count, for no peer in
    /// particular (0: none).
    pub pruned: u64,
    /// Write this refusal's own line (the first of its window).
    pub write: bool,
    /// This refusal started a block of the peer: write that too.
    pub blocked: bool,
}

/// Refusals per peer address, and the throttle they count toward.
#[derive(Debug)]
pub struct Denials {
    throttle: Arc<Throttle<IpAddr>>,
    window: SignedDuration,
    clock: Clock,
    state: DashMap<IpAddr, Tally>,
}

impl Denials {
    /// Counts refusals toward `throttle` (the listener's per-peer lock-out) and writes at
    /// most a few lines per peer per `window`.
    pub fn new(throttle: Arc<Throttle<IpAddr>>, window: SignedDuration, clock: Clock) -> Self {
        Denials { throttle, window, clock, state: DashMap::new() }
    }

    /// Counts one refusal of a call from `peer` (unknown: counted together as 0.0.0.0);
    /// returns what to write.
    pub fn deny(&self, peer: Option<SocketAddr>) -> Denial {
        let ip = peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.ip());
        let now = self.clock.now();
        let mut pruned = 0;
        if self.state.len() > PRUNE_ABOVE {
            let window = self.window;
            self.state.retain(|_, t| {
                let keep = now < t.start + window;
                if !keep {
                    pruned += t.unwritten;
                }
                keep
            });
        }
        let blocked = self.throttle.record_failure(&ip);
        let mut tally = self.state.entry(ip).or_insert(Tally { start: now, written: false, unwritten: 0 });
        let mut carried = 0;
        if now >= tally.start + self.window {
            carried = tally.unwritten;
            *tally = Tally { start: now, written: false, unwritten: 0 };
        }
        let write = !tally.written;
        if write {
            tally.written = true;
        } else {
            tally.unwritten += 1;
        }
        Denial { carried, pruned, write, blocked }
    }
}

/// Writes what `denial` calls for, in one write: the count carried from the peer's previous
/// window, this refusal (of `rpc`, because of `detail`), the block.
pub fn audit(
    audit: &Audit,
    denial: Denial,
    peer: Option<SocketAddr>,
    rpc: &str,
    detail: &str,
) -> Result<(), AuditError> {
    let mut events = Vec::new();
    if denial.pruned > 0 {
        let mut event = Event::new(Action::AuthFailed, "unauthenticated", Actor::Peer(None));
        event.count = Some(denial.pruned);
        event.detail = Some("more calls without a certificate, from peers whose windows ended");
        events.push(event);
    }
    if denial.carried > 0 {
        let mut event = Event::new(Action::AuthFailed, "unauthenticated", Actor::Peer(peer));
        event.count = Some(denial.carried);
        event.detail = Some("more calls without a certificate in the peer's previous window");
        events.push(event);
    }
    if denial.write {
        let mut event = Event::new(Action::AuthFailed, "unauthenticated", Actor::Peer(peer));
        event.rpc = Some(rpc);
        event.detail = Some(detail);
        events.push(event);
    }
    if denial.blocked {
        events.push(Event::new(Action::PeerThrottled, "resource_exhausted", Actor::Peer(peer)));
    }
    if events.is_empty() { Ok(()) } else { audit.record_all(&events) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_peer_and_window_then_the_count_of_the_rest() {
        let clock = Clock::manual("2026-12-03T15:00:00Z".parse().unwrap());
        let window = SignedDuration::from_mins(1);
        let throttle = Arc::new(Throttle::new(20, window, clock.clone()));
        let denials = Denials::new(throttle.clone(), window, clock.clone());
        let a: SocketAddr = "127.0.0.2:5000".parse().unwrap();
        let b: SocketAddr = "127.0.0.3:5000".parse().unwrap();
        let first = denials.deny(Some(a));
        assert_eq!(first, Denial { carried: 0, pruned: 0, write: true, blocked: false });
        let mut blocks = 0;
        for _ in 0..9_999 {
            let d = denials.deny(Some(a));
            assert!(!d.write && d.carried == 0);
            blocks += usize::from(d.blocked);
        }
        assert_eq!(blocks, 1, "the 21st refusal blocks the peer, once");
        assert!(throttle.is_blocked(&a.ip()));
        assert!(!throttle.is_blocked(&b.ip()), "per peer address");
        assert!(denials.deny(Some(b)).write, "another peer's first refusal is written");
        // The next window: the 9,999 only counted are carried into one line.
        clock.advance(SignedDuration::from_secs(61));
        assert_eq!(denials.deny(Some(a)), Denial { carried: 9_999, pruned: 0, write: true, blocked: false });
        assert_eq!(denials.deny(None), Denial { carried: 0, pruned: 0, write: true, blocked: false });
    }

    #[test]
    fn counts_of_pruned_peers_are_not_lost() {
        let clock = Clock::manual("2026-12-03T15:00:00Z".parse().unwrap());
        let window = SignedDuration::from_mins(1);
        let throttle = Arc::new(Throttle::new(1_000, window, clock.clone()));
        let denials = Denials::new(throttle, window, clock.clone());
        // More peers than the table keeps, each refused twice: one written, one counted.
        let peers = PRUNE_ABOVE + 1;
        for n in 0..peers {
            let peer = SocketAddr::from(([10, (n >> 16) as u8, (n >> 8) as u8, n as u8], 1));
            denials.deny(Some(peer));
            denials.deny(Some(peer));
        }
        clock.advance(SignedDuration::from_secs(61));
        let next = denials.deny(Some("192.0.2.1:1".parse().unwrap()));
        assert_eq!(next.pruned, peers as u64, "each pruned peer's counted refusal");
        assert!(denials.state.len() <= 2);
    }
}
