//! A bounded cache of immutable answers, and merging of identical calls in flight.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::jsonrpc::Answer;

/// Bytes counted per entry beyond its key and value.
const ENTRY_OVERHEAD: usize = 96;

#[derive(Default)]
struct CacheInner {
    map: HashMap<Arc<str>, Bytes>,
    order: VecDeque<Arc<str>>,
    bytes: usize,
}

/// Answers that cannot change, bounded by bytes; oldest entries go first.
pub struct AnswerCache {
    capacity: usize,
    inner: Mutex<CacheInner>,
}

impl AnswerCache {
    /// A cache of at most `capacity` bytes (0 disables it).
    pub fn new(capacity: usize) -> Self {
        AnswerCache {
            capacity,
            inner: Mutex::new(CacheInner::default()),
        }
    }

    /// The cached `result` for `key`.
    pub fn get(&self, key: &str) -> Option<Bytes> {
        if self.capacity == 0 {
            return None;
        }
        self.inner.lock().map.get(key).cloned()
    }

    /// Remember a `result`. Entries larger than an eighth of the cache are not kept.
    pub fn put(&self, key: &str, result: Bytes) {
        let size = key.len() + result.len() + ENTRY_OVERHEAD;
        if self.capacity == 0 || size > self.capacity / 8 {
            return;
        }
        let mut inner = self.inner.lock();
        if inner.map.contains_key(key) {
            return;
        }
        while inner.bytes + size > self.capacity {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            if let Some(value) = inner.map.remove(&old) {
                inner.bytes = inner
                    .bytes
                    .saturating_sub(old.len() + value.len() + ENTRY_OVERHEAD);
            }
        }
        let key: Arc<str> = Arc::from(key);
        inner.order.push_back(key.clone());
        inner.map.insert(key, result);
        inner.bytes += size;
    }

    /// Bytes in use.
    pub fn bytes(&self) -> usize {
        self.inner.lock().bytes
    }
}

/// A shared outcome of a merged call.
pub type Shared = Arc<Result<Answer, crate::server::Failure>>;

/// Merges identical calls in flight: the first caller does the work, the
/// others wait for its outcome.
#[derive(Default)]
pub struct Coalescer {
    waiting: Mutex<HashMap<Arc<str>, Vec<oneshot::Sender<Shared>>>>,
}

/// What a caller of [`Coalescer::join`] does.
pub enum Turn<'a> {
    /// Do the call, then [`Leader::finish`].
    Lead(Leader<'a>),
    /// Wait for the leader's outcome (an error means the leader gave up: do it yourself).
    Follow(oneshot::Receiver<Shared>),
}

/// The caller doing the work for everyone waiting on its key.
pub struct Leader<'a> {
    coalescer: &'a Coalescer,
    key: Arc<str>,
    done: bool,
}

impl Coalescer {
    /// Join the call with this key.
    pub fn join(&self, key: &str) -> Turn<'_> {
        let mut waiting = self.waiting.lock();
        if let Some(list) = waiting.get_mut(key) {
            let (tx, rx) = oneshot::channel();
            list.push(tx);
            return Turn::Follow(rx);
        }
        let key: Arc<str> = Arc::from(key);
        waiting.insert(key.clone(), Vec::new());
        Turn::Lead(Leader {
            coalescer: self,
            key,
            done: false,
        })
    }
}

impl Leader<'_> {
    /// Hand the outcome to every follower.
    pub fn finish(mut self, outcome: Shared) {
        let followers = self.coalescer.waiting.lock().remove(&self.key);
        self.done = true;
        for follower in followers.into_iter().flatten() {
            let _ = follower.send(outcome.clone());
        }
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        // The leader was cancelled: followers see a closed channel and retry alone.
        if !self.done {
            self.coalescer.waiting.lock().remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_is_bounded_by_bytes() {
        let cache = AnswerCache::new(10_000);
        for i in 0..1000 {
            cache.put(&format!("k{i}"), Bytes::from(vec![b'x'; 100]));
            assert!(cache.bytes() <= 10_000);
        }
        assert!(cache.get("k999").is_some());
        assert!(cache.get("k0").is_none());
        cache.put("big", Bytes::from(vec![b'x'; 5000]));
        assert!(cache.get("big").is_none());
        assert!(AnswerCache::new(0).get("k999").is_none());
    }

    #[tokio::test]
    async fn identical_calls_in_flight_are_merged() {
        let coalescer = Coalescer::default();
        let Turn::Lead(leader) = coalescer.join("a") else {
            panic!("first caller must lead")
        };
        let Turn::Follow(rx) = coalescer.join("a") else {
            panic!("second caller must follow")
        };
        let Turn::Lead(other) = coalescer.join("b") else {
            panic!("another key leads")
        };
        drop(other);
        leader.finish(Arc::new(Ok(Answer::Result(Bytes::from_static(b"1")))));
        let got = rx.await.expect("outcome");
        assert_eq!(*got, Ok(Answer::Result(Bytes::from_static(b"1"))));
        assert!(matches!(coalescer.join("a"), Turn::Lead(_)));
    }

    #[tokio::test]
    async fn a_cancelled_leader_releases_followers() {
        let coalescer = Coalescer::default();
        let Turn::Lead(leader) = coalescer.join("a") else {
            panic!("lead")
        };
        let Turn::Follow(rx) = coalescer.join("a") else {
            panic!("follow")
        };
        drop(leader);
        assert!(rx.await.is_err());
    }
}
