//! Uploaded evaluation keys, by content hash, under two quotas: expanded keys in memory and
//! compressed keys on disk, each evicting the least recently used keys first.
//!
//! A client can upload as many distinct keys as it likes; without quotas every upload would
//! stay in memory and on disk forever. An evicted key is simply uploaded again by its client
//! (`fheml client` does so when the server answers 404 for its key).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{CliError, Result};

/// Where a stored key lives and how big it is.
struct Slot {
    bytes: u64,
    last_used: u64,
}

struct Index<K> {
    clock: u64,
    memory: HashMap<String, (Arc<K>, Slot)>,
    memory_used: u64,
    disk: HashMap<String, Slot>,
    disk_used: u64,
}

impl<K> Index<K> {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }
}

/// Why a key could not be stored.
#[derive(Debug)]
pub enum StoreError {
    /// The key alone exceeds a quota: no eviction can make room.
    TooLarge(String),
    /// Writing it to disk failed.
    Io(String),
}

impl<K> Default for Index<K> {
    fn default() -> Self {
        Index { clock: 0, memory: HashMap::new(), memory_used: 0, disk: HashMap::new(), disk_used: 0 }
    }
}

/// The key store of one server; `K` is the expanded key (generic so the eviction logic is
/// tested without generating real keys).
pub struct KeyStore<K> {
    dir: PathBuf,
    memory_quota: u64,
    disk_quota: u64,
    index: Mutex<Index<K>>,
}

fn is_key_id(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

impl<K> KeyStore<K> {
    /// Opens (creating) `dir`, indexes the keys already there (oldest modification first,
    /// as least recently used) and evicts down to `disk_quota`.
    pub fn open(dir: &Path, memory_quota: u64, disk_quota: u64) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| CliError::io(dir, e))?;
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| CliError::io(dir, e))?.flatten() {
            let path = entry.path();
            let Some(id) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".key")) else {
                continue;
            };
            if !is_key_id(id) {
                continue;
            }
            if let Ok(meta) = entry.metadata() {
                let modified = meta.modified().unwrap_or(std::time::SystemTime::UNIX_EPOCH);
                found.push((modified, id.to_string(), meta.len()));
            }
        }
        found.sort();
        let store = KeyStore { dir: dir.to_path_buf(), memory_quota, disk_quota, index: Mutex::new(Index::default()) };
        {
            let mut index = store.lock();
            for (_, id, bytes) in found {
                let last_used = index.tick();
                index.disk.insert(id, Slot { bytes, last_used });
                index.disk_used += bytes;
            }
            store.evict_disk(&mut index, 0, "");
        }
        Ok(store)
    }

    // A poisoned lock only means another request panicked while holding it; the index is
    // a cache whose every state is valid, so keep serving.
    fn lock(&self) -> MutexGuard<'_, Index<K>> {
        self.index.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The file of key `id` (a checked 64-hex-digit id).
    pub fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.key"))
    }

    /// The expanded key `id` if it is in memory (and marks it used).
    pub fn in_memory(&self, id: &str) -> Option<Arc<K>> {
        let mut index = self.lock();
        let now = index.tick();
        let (key, slot) = index.memory.get_mut(id)?;
        slot.last_used = now;
        let key = key.clone();
        if let Some(slot) = index.disk.get_mut(id) {
            slot.last_used = now;
        }
        Some(key)
    }

    /// Whether `id` is stored on disk (by this server or another replica sharing the folder).
    pub fn on_disk(&self, id: &str) -> bool {
        self.lock().disk.contains_key(id) || self.path(id).is_file()
    }

    /// Stores a checked key: its compressed bytes on disk (if not already there) and its
    /// expansion (`expanded_bytes` big) in memory, evicting least recently used keys to
    /// stay within both quotas.
    pub fn insert(
        &self,
        id: &str,
        compressed: &[u8],
        key: Arc<K>,
        expanded_bytes: u64,
    ) -> std::result::Result<(), StoreError> {
        let disk_bytes = compressed.len() as u64;
        if disk_bytes > self.disk_quota {
            return Err(StoreError::TooLarge(format!(
                "the key takes {disk_bytes} bytes; this server keeps at most {} bytes of keys on disk",
                self.disk_quota
            )));
        }
        if expanded_bytes > self.memory_quota {
            return Err(StoreError::TooLarge(format!(
                "the key expands to {expanded_bytes} bytes; this server keeps at most {} bytes of keys in memory",
                self.memory_quota
            )));
        }
        let path = self.path(id);
        if !path.is_file() {
            crate::model_file::write_atomically(&path, compressed).map_err(|e| StoreError::Io(e.to_string()))?;
        }
        let mut index = self.lock();
        let now = index.tick();
        if let Some(old) = index.disk.insert(id.to_string(), Slot { bytes: disk_bytes, last_used: now }) {
            index.disk_used -= old.bytes;
        }
        index.disk_used += disk_bytes;
        self.evict_disk(&mut index, 0, id);
        if let Some((_, old)) = index.memory.remove(id) {
            index.memory_used -= old.bytes;
        }
        while index.memory_used + expanded_bytes > self.memory_quota {
            let Some(oldest) = index.memory.iter().min_by_key(|(_, (_, s))| s.last_used).map(|(k, _)| k.clone()) else {
                break;
            };
            if let Some((_, slot)) = index.memory.remove(&oldest) {
                index.memory_used -= slot.bytes;
            }
        }
        index.memory.insert(id.to_string(), (key, Slot { bytes: expanded_bytes, last_used: now }));
        index.memory_used += expanded_bytes;
        Ok(())
    }

    /// Removes least recently used files (never `keep`) until `extra` more bytes fit.
    fn evict_disk(&self, index: &mut Index<K>, extra: u64, keep: &str) {
        while index.disk_used + extra > self.disk_quota {
            let oldest = index
                .disk
                .iter()
                .filter(|(k, _)| k.as_str() != keep)
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone());
            let Some(oldest) = oldest else { break };
            if let Some(slot) = index.disk.remove(&oldest) {
                index.disk_used -= slot.bytes;
            }
            // Another replica may have removed it already; either way it is gone.
            let _ = std::fs::remove_file(self.path(&oldest));
        }
    }

    /// Bytes of expanded keys in memory and of compressed keys on disk.
    #[cfg(test)]
    pub fn usage(&self) -> (u64, u64) {
        let index = self.lock();
        (index.memory_used, index.disk_used)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn id(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    #[test]
    fn least_recently_used_keys_are_evicted_within_both_quotas() {
        let dir = std::env::temp_dir().join(format!("fheml-key-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // Room for two keys on disk (10 bytes each) and two in memory (100 bytes each).
        let store = KeyStore::open(&dir, 250, 25).unwrap();
        let bytes = [7u8; 10];
        store.insert(&id(1), &bytes, Arc::new(1), 100).unwrap();
        store.insert(&id(2), &bytes, Arc::new(2), 100).unwrap();
        assert_eq!(store.in_memory(&id(1)).as_deref(), Some(&1), "key 1 is now the most recent");
        store.insert(&id(3), &bytes, Arc::new(3), 100).unwrap();
        assert!(store.in_memory(&id(2)).is_none(), "key 2 was least recently used");
        assert!(store.in_memory(&id(1)).is_some() && store.in_memory(&id(3)).is_some());
        assert!(!store.path(&id(2)).exists(), "its file is gone too");
        assert!(store.path(&id(1)).exists() && store.path(&id(3)).exists());
        assert_eq!(store.usage(), (200, 20));
        // A key larger than a quota is refused, and evicts nothing.
        assert!(matches!(store.insert(&id(4), &[0; 26], Arc::new(4), 1), Err(StoreError::TooLarge(_))));
        assert!(matches!(store.insert(&id(4), &bytes, Arc::new(4), 251), Err(StoreError::TooLarge(_))));
        assert_eq!(store.usage(), (200, 20));
        // Reopening indexes the files already there; a tighter disk quota evicts the oldest.
        drop(store);
        let reopened: KeyStore<u8> = KeyStore::open(&dir, 250, 15).unwrap();
        assert_eq!(reopened.usage(), (0, 10));
        assert!(reopened.on_disk(&id(1)) != reopened.on_disk(&id(3)), "exactly one key is left");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
