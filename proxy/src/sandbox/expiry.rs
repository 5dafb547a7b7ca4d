//! A map whose entries expire: a `HashMap` for lookups next to a queue of `(expiry, key)` in
//! insertion order. Each insert first pops the entries that have expired from the front of the
//! queue, so expiry costs O(1) amortised per insert (every pop pays for one earlier push) and the
//! map holds only live entries, plus those that expired since the last insert.
//!
//! The queue is ordered by expiry when every entry gets the same TTL from a clock that does not go
//! back. When it is not (two threads reading the clock in one order and locking in the other, a
//! clock stepped back), an expired entry waits behind a live one until that one expires: it is
//! removed late, never early, and lookups compare the expiry themselves.
//!
//! When a burst has passed and three quarters of the table's room is empty, the table shrinks to
//! twice what it holds: memory follows the live entries back down. That rehash is O(live) but
//! comes only after at least as many removals, so it stays O(1) amortised.

use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// 128 bits (a ticket, a UUID) aligned as a `u64`: a `u128` would pad the queue's entries from 24
/// to 32 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bits128([u64; 2]);

impl From<u128> for Bits128 {
    fn from(n: u128) -> Self {
        Self([(n >> 64) as u64, n as u64])
    }
}

/// Room below which the tables never shrink.
const MIN_CAPACITY: usize = 1024;

/// Keys with an expiry (Unix milliseconds) and a value each.
#[derive(Debug)]
pub struct ExpiringMap<K, V> {
    entries: HashMap<K, (u64, V)>,
    queue: VecDeque<(u64, K)>,
}

impl<K, V> Default for ExpiringMap<K, V> {
    fn default() -> Self {
        Self { entries: HashMap::new(), queue: VecDeque::new() }
    }
}

impl<K: Hash + Eq + Clone, V> ExpiringMap<K, V> {
    /// Entries held, expired or not.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Length of the expiry queue: [`len`](Self::len) plus keys inserted again while their
    /// earlier entry was still queued.
    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// The entry for `key` and its expiry, whether or not it has expired.
    pub fn get<Q>(&self, key: &Q) -> Option<(u64, &V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries.get(key).map(|(expires, value)| (*expires, value))
    }

    /// Removes the entries expired at `now` (`expires <= now`) from the front of the queue, then
    /// inserts `value` under `key` until `expires`, replacing any entry for `key`.
    pub fn insert(&mut self, key: K, value: V, expires: u64, now: u64) -> Option<V> {
        self.purge(now);
        self.queue.push_back((expires, key.clone()));
        self.entries.insert(key, (expires, value)).map(|(_, old)| old)
    }

    /// Removes the entries expired at `now` from the front of the queue.
    pub fn purge(&mut self, now: u64) {
        let before = self.queue.len();
        while let Some((expires, _)) = self.queue.front() {
            if *expires > now {
                break;
            }
            let (_, key) = self.queue.pop_front().expect("front exists");
            // The key may have been inserted again since, with a later expiry: keep that entry.
            if self.entries.get(&key).is_some_and(|(expires, _)| *expires <= now) {
                self.entries.remove(&key);
            }
        }
        if self.queue.len() < before {
            self.shrink_if_sparse();
        }
    }

    fn shrink_if_sparse(&mut self) {
        let (len, room) = (self.entries.len(), self.entries.capacity());
        if room > MIN_CAPACITY && len * 4 < room {
            self.entries.shrink_to((len * 2).max(MIN_CAPACITY));
        }
        let (len, room) = (self.queue.len(), self.queue.capacity());
        if room > MIN_CAPACITY && len * 4 < room {
            self.queue.shrink_to((len * 2).max(MIN_CAPACITY));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_thousand_expired_entries_and_one_insert_leave_one_entry() {
        let mut map = ExpiringMap::default();
        for i in 0..10_000u32 {
            map.insert(i, (), 1_000 + u64::from(i % 7), 500);
        }
        assert_eq!(map.len(), 10_000);
        map.insert(10_000, (), 3_000, 2_000);
        assert_eq!((map.len(), map.queued()), (1, 1));
        assert!(map.entries.capacity() <= 2 * MIN_CAPACITY && map.queue.capacity() <= 2 * MIN_CAPACITY, "shrunk");
        assert_eq!(map.get(&10_000), Some((3_000, &())));
        assert_eq!(map.get(&0), None);
    }

    #[test]
    fn live_entries_stay_and_expiry_is_inclusive() {
        let mut map = ExpiringMap::default();
        map.insert("a".to_owned(), 1, 100, 0);
        map.insert("b".to_owned(), 2, 200, 0);
        map.insert("c".to_owned(), 3, 300, 100);
        assert_eq!(map.get("a"), None, "expires at 100, removed at 100");
        assert_eq!(map.get("b"), Some((200, &2)));
        map.purge(199);
        assert_eq!(map.len(), 2);
        map.purge(200);
        assert_eq!((map.len(), map.get("c")), (1, Some((300, &3))));
    }

    #[test]
    fn a_key_inserted_again_keeps_its_new_expiry_when_its_old_one_passes() {
        let mut map = ExpiringMap::default();
        map.insert("n", 'x', 100, 0);
        map.insert("late", 'l', 500, 0);
        // Out of order: "n" again, expiring after "late" while its first entry is still queued.
        assert_eq!(map.insert("n", 'y', 900, 50), Some('x'));
        assert_eq!(map.queued(), 3);
        map.purge(100);
        assert_eq!(map.get("n"), Some((900, &'y')), "the old queue entry does not remove the new one");
        map.purge(500);
        assert_eq!((map.len(), map.queued()), (1, 1));
        map.purge(900);
        assert!(map.is_empty() && map.queued() == 0);
    }

    #[test]
    fn an_expired_entry_behind_a_live_one_goes_late_never_early() {
        let mut map = ExpiringMap::default();
        map.insert(1, (), 1_000, 0);
        map.insert(2, (), 10, 0);
        map.purge(500);
        assert_eq!(map.get(&2), Some((10, &())), "still held; callers compare the expiry");
        assert_eq!(map.get(&1), Some((1_000, &())));
        map.purge(1_000);
        assert!(map.is_empty());
    }
}
