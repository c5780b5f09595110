//! Time-bucketed indexes: how the scheduled cleanup finds what expired without listing keys.
//! The store has no TTL and no prefix listing, so every write that creates something to be
//! expired later also lists it here, under the time bucket in which it may expire.
//!
//! An index is split into [`SHARDS`] shards by a hash of the listed ID, and a shard's bucket
//! is an append-only log of single keys:
//!
//! | key | value |
//! |---|---|
//! | `index/{name}/{shard}/{bucket}/n` | atomic counter: entries appended so far |
//! | `index/{name}/{shard}/{bucket}/{i}` | the `i`-th listed ID (1-based) |
//! | `index/{name}/{shard}/{bucket}/done` | entries already processed, when a run stopped mid-way |
//! | `index/{name}/cursor` | the oldest bucket not yet processed |
//!
//! Appending is an atomic increment and a plain write: it cannot lose a race, so listing never
//! fails a request for contention, and its cost does not grow with what is already listed.
//! The only key all writers share is the cursor, which they read and create once.
//!
//! A bucket is processed only once it lies wholly in the past by the index's expiry age, and
//! writers list only under the current time (or a later one), so nothing is appended to a
//! bucket while a cleanup run empties it.

use crate::store::{KvStore, StoreError};

/// Shards per index: bounds how many writers share one counter.
pub const SHARDS: u64 = 8;

/// One index, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Index(&'static str);

/// Clients by the bucket of their last heartbeat (expired after the client timeout).
pub const HEARTBEATS: Index = Index("heartbeat");
/// Groups by the bucket of their messages (trimmed after the retention).
pub const MESSAGES: Index = Index("messages");
/// Rate-limit bucket keys by the bucket in which they are full again.
pub const RATE_LIMITS: Index = Index("ratelimit");
/// Group-held records that are forgotten after the retention: idempotency keys and the
/// cursors of expired members (listed by their full key).
pub const RETAINED: Index = Index("retained");

/// Stored credentials with a lifetime (refresh tokens and their sessions), listed by their
/// full key under the bucket in which they expire.
pub const CREDENTIALS: Index = Index("credentials");

/// The shard an ID belongs to (FNV-1a: stable across platforms and releases).
pub fn shard_of(id: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash % SHARDS
}

/// What a run found in one shard of one bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardEntries {
    pub shard: u64,
    /// Entries appended (the counter).
    pub appended: u64,
    /// Entries processed by an earlier, interrupted run.
    pub done: u64,
    /// IDs of entries `done+1 ..= appended`; `None` where a writer has taken a number but
    /// not written it (it failed between the two steps).
    pub ids: Vec<Option<String>>,
}

impl Index {
    pub fn cursor_key(&self) -> String {
        format!("index/{}/cursor", self.0)
    }

    fn prefix(&self, shard: u64, bucket: u64) -> String {
        format!("index/{}/{shard}/{bucket}", self.0)
    }

    /// Lists `id` under `bucket`. Listing twice is harmless: cleanup's visits are idempotent.
    pub async fn add(&self, store: &dyn KvStore, bucket: u64, id: &str) -> Result<(), StoreError> {
        let cursor = self.cursor_key();
        if store.get(&cursor).await?.is_none() {
            // Whoever comes first says where the index starts; later buckets never move it back.
            store
                .compare_and_swap(&cursor, None, bucket.to_string().as_bytes())
                .await?;
        }
        let prefix = self.prefix(shard_of(id), bucket);
        let n = store.increment(&format!("{prefix}/n"), 1).await?;
        store.set(&format!("{prefix}/{n}"), id.as_bytes()).await
    }

    /// The oldest bucket not yet processed, if anything was ever listed.
    pub async fn cursor(&self, store: &dyn KvStore) -> Result<Option<u64>, StoreError> {
        Ok(store
            .get(&self.cursor_key())
            .await?
            .and_then(|b| std::str::from_utf8(&b).ok()?.trim().parse().ok()))
    }

    /// Moves the cursor past `bucket` (never backwards: overlapping runs may race).
    pub async fn finish_bucket(&self, store: &dyn KvStore, bucket: u64) -> Result<(), StoreError> {
        let key = self.cursor_key();
        for _ in 0..16 {
            let raw = store.get(&key).await?;
            let current = raw
                .as_deref()
                .and_then(|b| std::str::from_utf8(b).ok()?.trim().parse::<u64>().ok());
            if current.is_some_and(|c| c > bucket) {
                return Ok(());
            }
            let next = (bucket + 1).to_string();
            if store
                .compare_and_swap(&key, raw.as_deref(), next.as_bytes())
                .await?
            {
                return Ok(());
            }
        }
        // Another run keeps moving it: it is past us by now, or will be.
        Ok(())
    }

    /// The unprocessed entries of one shard of `bucket`.
    pub async fn read(
        &self,
        store: &dyn KvStore,
        bucket: u64,
        shard: u64,
    ) -> Result<ShardEntries, StoreError> {
        let prefix = self.prefix(shard, bucket);
        let appended =
            u64::try_from(store.increment(&format!("{prefix}/n"), 0).await?).unwrap_or(0);
        let done = if appended == 0 {
            0
        } else {
            store
                .get(&format!("{prefix}/done"))
                .await?
                .and_then(|b| std::str::from_utf8(&b).ok()?.trim().parse::<u64>().ok())
                .unwrap_or(0)
                .min(appended)
        };
        let keys: Vec<String> = (done + 1..=appended)
            .map(|i| format!("{prefix}/{i}"))
            .collect();
        let ids = store
            .get_many(&keys)
            .await?
            .into_iter()
            .map(|v| v.and_then(|b| String::from_utf8(b).ok()))
            .collect();
        Ok(ShardEntries {
            shard,
            appended,
            done,
            ids,
        })
    }

    /// Walks an index's buckets from its cursor up to `last`, calling `visit` on every listed
    /// ID (`last`: the newest bucket old enough, `None`: none is); `visit` spends budget and answers whether it is done with
    /// the ID. A shard's bucket is deleted once all its IDs are done. Each bucket costs one
    /// unit of budget too, so that a run over a long idle stretch stays bounded.
    pub async fn walk<E: From<StoreError>>(
        &self,
        store: &dyn KvStore,
        last: Option<u64>,
        budget: &mut usize,
        mut visit: impl AsyncFnMut(&str, &mut usize) -> Result<bool, E>,
    ) -> Result<bool, E> {
        let (Some(last), Some(mut bucket)) = (last, self.cursor(store).await?) else {
            return Ok(true);
        };
        while bucket <= last {
            if *budget == 0 {
                return Ok(false);
            }
            *budget -= 1;
            for shard in 0..SHARDS {
                let entries = self.read(store, bucket, shard).await?;
                if entries.appended == 0 {
                    continue;
                }
                for (offset, id) in entries.ids.iter().enumerate() {
                    let finished = match id {
                        Some(id) if *budget > 0 => visit(id, budget).await?,
                        Some(_) => false,
                        None => true,
                    };
                    if !finished {
                        let done = entries.done + offset as u64;
                        self.mark_done(store, bucket, shard, done).await?;
                        return Ok(false);
                    }
                }
                self.clear(store, bucket, &entries).await?;
            }
            self.finish_bucket(store, bucket).await?;
            bucket += 1;
        }
        Ok(true)
    }

    /// Records that the first `done` entries of a shard's bucket are processed, so that the
    /// next run resumes after them.
    pub async fn mark_done(
        &self,
        store: &dyn KvStore,
        bucket: u64,
        shard: u64,
        done: u64,
    ) -> Result<(), StoreError> {
        store
            .set(
                &format!("{}/done", self.prefix(shard, bucket)),
                done.to_string().as_bytes(),
            )
            .await
    }

    /// Deletes a fully processed shard's bucket: its entries, counter and progress.
    pub async fn clear(
        &self,
        store: &dyn KvStore,
        bucket: u64,
        entries: &ShardEntries,
    ) -> Result<(), StoreError> {
        let prefix = self.prefix(entries.shard, bucket);
        let mut keys: Vec<String> = (1..=entries.appended)
            .map(|i| format!("{prefix}/{i}"))
            .collect();
        keys.push(format!("{prefix}/done"));
        keys.push(format!("{prefix}/n"));
        store.delete_many(&keys).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[pollster::test]
    async fn entries_are_read_back_per_shard_and_cleared_without_leftovers() {
        let store = MemoryStore::new();
        for id in ["a", "b", "c", "a"] {
            MESSAGES.add(&store, 7, id).await.unwrap();
        }
        assert_eq!(MESSAGES.cursor(&store).await.unwrap(), Some(7));
        let mut seen = Vec::new();
        for shard in 0..SHARDS {
            let entries = MESSAGES.read(&store, 7, shard).await.unwrap();
            seen.extend(entries.ids.iter().flatten().cloned());
            MESSAGES.clear(&store, 7, &entries).await.unwrap();
        }
        seen.sort();
        assert_eq!(seen, ["a", "a", "b", "c"]);
        MESSAGES.finish_bucket(&store, 7).await.unwrap();
        assert_eq!(store.keys(), ["index/messages/cursor"]);
        assert_eq!(MESSAGES.cursor(&store).await.unwrap(), Some(8));
    }

    #[pollster::test]
    async fn progress_is_resumed_and_the_cursor_never_moves_back() {
        let store = MemoryStore::new();
        for i in 0..5 {
            HEARTBEATS.add(&store, 3, &format!("x{i}")).await.unwrap();
        }
        let shard = shard_of("x0");
        let first = HEARTBEATS.read(&store, 3, shard).await.unwrap();
        HEARTBEATS.mark_done(&store, 3, shard, 1).await.unwrap();
        let again = HEARTBEATS.read(&store, 3, shard).await.unwrap();
        assert_eq!(again.ids.len() + 1, first.ids.len());
        HEARTBEATS.finish_bucket(&store, 9).await.unwrap();
        HEARTBEATS.finish_bucket(&store, 4).await.unwrap();
        assert_eq!(HEARTBEATS.cursor(&store).await.unwrap(), Some(10));
    }

    #[test]
    fn shards_spread_ids() {
        let mut counts = [0; SHARDS as usize];
        for i in 0..800 {
            counts[shard_of(&format!("group-{i}")) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 50), "{counts:?}");
    }
}
