//! Uploaded evaluation keys, by content hash, under two quotas: expanded keys in memory and
//! compressed keys on disk, each evicting the least recently used keys first.
//!
//! A client can upload as many distinct keys as it likes; without quotas every upload would
//! stay in memory and on disk forever. An evicted key is simply uploaded again by its client
//! (`fheml client` does so when the server answers 404 for its key).
//!
//! The compressed bytes live behind [`KeyBytes`]: a local directory (`--key-dir`, the
//! default, whose disk quota this server enforces) or an object store shared by replicas
//! (`--key-store URL`), which no replica evicts from: a key one replica has not used lately
//! may be in use through another. A replica that misses a key in memory looks it up in the
//! backing store (another replica may have uploaded it) and checks that its bytes hash to
//! its id before using it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use object_store::ObjectStore;
use sha2::{Digest, Sha256};

use crate::error::{Error as CliError, Result};

/// One stored key as listed: its id, size in bytes and last modification.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Listed {
    /// Last modification (oldest keys are evicted first after a restart).
    pub modified: SystemTime,
    /// The content id (64 lowercase hex digits).
    pub id: String,
    /// Size of the compressed key in bytes.
    pub bytes: u64,
}

/// The durable bytes of keys, by content id. Calls block (on I/O): call them from a
/// blocking thread (`tokio::task::spawn_blocking`) or outside any runtime, never from an
/// async task.
pub trait KeyBytes: Send + Sync {
    /// Stores `bytes` as key `id` (replacing what was there; ids are content hashes).
    fn put(&self, id: &str, bytes: &[u8]) -> std::io::Result<()>;
    /// The bytes of key `id`, `None` if there is no such key; an error if it holds more
    /// than `limit` bytes.
    fn get(&self, id: &str, limit: usize) -> std::io::Result<Option<Vec<u8>>>;
    /// Removes key `id` (no error if it is gone already).
    fn delete(&self, id: &str) -> std::io::Result<()>;
    /// Every key stored (other names are skipped).
    fn list(&self) -> std::io::Result<Vec<Listed>>;
}

/// Where the keys of a server live.
#[derive(Debug, Clone)]
pub enum KeyLocation {
    /// A local directory of `<id>.key` files, owned by this server (or by replicas on the
    /// same host); the disk quota is enforced by evicting files.
    Dir(PathBuf),
    /// An object store shared by replicas, keys under `prefix` as `<id>.key`; never
    /// evicted by a server (the store's own lifecycle rules bound it).
    Shared(Arc<dyn ObjectStore>, object_store::path::Path),
}

impl KeyLocation {
    /// The same kind of location for a sub-collection (`public` keys).
    pub fn child(&self, name: &str) -> KeyLocation {
        match self {
            KeyLocation::Dir(dir) => KeyLocation::Dir(dir.join(name)),
            KeyLocation::Shared(store, prefix) => KeyLocation::Shared(store.clone(), prefix.clone().join(name)),
        }
    }

    /// The location named by `--key-store`: `file:///path` or a plain path (a local
    /// directory through object_store), or with the `cloud-keys` feature `s3://bucket/prefix`,
    /// `gs://bucket/prefix`, `az://container/prefix` (credentials and region from the
    /// environment, as object_store's `from_env` builders read them).
    pub fn parse(url: &str) -> Result<KeyLocation> {
        let (scheme, rest) = url.split_once("://").unwrap_or(("file", url));
        match scheme {
            "file" => {
                let dir = PathBuf::from(rest);
                std::fs::create_dir_all(&dir).map_err(|e| CliError::io(&dir, e))?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| CliError::Usage(format!("--key-store {url}: {e}")))?;
                Ok(KeyLocation::Shared(Arc::new(store), object_store::path::Path::default()))
            }
            "s3" | "s3a" | "gs" | "az" | "azure" | "abfs" | "abfss" => cloud(scheme, url),
            _ => Err(CliError::Usage(format!(
                "--key-store {url}: unknown scheme `{scheme}` (file://, or with the cloud-keys feature s3://, gs://, az://)"
            ))),
        }
    }
}

#[cfg(feature = "cloud-keys")]
fn cloud(scheme: &str, url: &str) -> Result<KeyLocation> {
    let failed = |e: object_store::Error| CliError::Usage(format!("--key-store {url}: {e}"));
    let store: Arc<dyn ObjectStore> = match scheme {
        "s3" | "s3a" => Arc::new(object_store::aws::AmazonS3Builder::from_env().with_url(url).build().map_err(failed)?),
        "gs" => {
            Arc::new(object_store::gcp::GoogleCloudStorageBuilder::from_env().with_url(url).build().map_err(failed)?)
        }
        _ => Arc::new(object_store::azure::MicrosoftAzureBuilder::from_env().with_url(url).build().map_err(failed)?),
    };
    // The prefix is what follows the bucket (or container) in the URL.
    let after_scheme = url.split_once("://").map_or("", |(_, rest)| rest);
    let path = after_scheme.split_once('/').map_or("", |(_, path)| path);
    let prefix =
        object_store::path::Path::parse(path).map_err(|e| CliError::Usage(format!("--key-store {url}: {e}")))?;
    Ok(KeyLocation::Shared(store, prefix))
}

#[cfg(not(feature = "cloud-keys"))]
fn cloud(_scheme: &str, url: &str) -> Result<KeyLocation> {
    Err(CliError::Usage(format!(
        "--key-store {url}: this fheml was built without cloud key stores; rebuild with `--features cloud-keys` \
         (S3, GCS, Azure), or use a file:// store"
    )))
}

fn is_key_id(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// The id of a `<id>.key` name, if it is one.
fn key_id_of(name: &str) -> Option<&str> {
    name.strip_suffix(".key").filter(|id| is_key_id(id))
}

/// Keys as `<id>.key` files in a local directory.
pub struct LocalDir {
    dir: PathBuf,
}

impl LocalDir {
    /// Opens (creating) `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| CliError::io(dir, e))?;
        Ok(LocalDir { dir: dir.to_path_buf() })
    }

    /// The file of key `id`.
    pub fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.key"))
    }
}

impl KeyBytes for LocalDir {
    fn put(&self, id: &str, bytes: &[u8]) -> std::io::Result<()> {
        crate::model_file::write_atomically(&self.path(id), bytes).map_err(|e| std::io::Error::other(e.to_string()))
    }

    fn get(&self, id: &str, limit: usize) -> std::io::Result<Option<Vec<u8>>> {
        let path = self.path(id);
        if !path.is_file() {
            return Ok(None);
        }
        crate::model_file::read_limited(&path, limit).map(Some).map_err(|e| std::io::Error::other(e.to_string()))
    }

    fn delete(&self, id: &str) -> std::io::Result<()> {
        match std::fs::remove_file(self.path(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn list(&self) -> std::io::Result<Vec<Listed>> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&self.dir)?.flatten() {
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(key_id_of) else { continue };
            if let Ok(meta) = entry.metadata() {
                let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                found.push(Listed { modified, id: id.to_string(), bytes: meta.len() });
            }
        }
        Ok(found)
    }
}

/// Keys as `<prefix>/<id>.key` objects of an object store. object_store is async: each
/// call runs on a small runtime of its own and the calling (blocking) thread waits for it,
/// so the server's runtime workers are never blocked and no call needs to be made from
/// inside that runtime.
pub struct ObjectKeys {
    store: Arc<dyn ObjectStore>,
    prefix: object_store::path::Path,
    runtime: Option<tokio::runtime::Runtime>,
}

impl ObjectKeys {
    /// Keys under `prefix` in `store`.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: object_store::path::Path) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fheml-key-store")
            .enable_all()
            .build()
            .map_err(|e| CliError::Usage(format!("cannot start the key store's runtime: {e}")))?;
        Ok(ObjectKeys { store, prefix, runtime: Some(runtime) })
    }

    fn location(&self, id: &str) -> object_store::path::Path {
        self.prefix.clone().join(format!("{id}.key"))
    }

    /// Runs `work` on the store's runtime and waits for its result.
    fn wait<T: Send + 'static>(
        &self,
        work: impl std::future::Future<Output = std::io::Result<T>> + Send + 'static,
    ) -> std::io::Result<T> {
        let runtime = self.runtime.as_ref().ok_or_else(|| std::io::Error::other("key store closed"))?;
        let (send, receive) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let _ = send.send(work.await);
        });
        receive.recv().map_err(|_| std::io::Error::other("key store task failed"))?
    }
}

impl Drop for ObjectKeys {
    fn drop(&mut self) {
        // Dropping a runtime blocks; the server may drop its state from an async task.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn io_error(e: object_store::Error) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl KeyBytes for ObjectKeys {
    fn put(&self, id: &str, bytes: &[u8]) -> std::io::Result<()> {
        use object_store::ObjectStoreExt;
        let (store, location, payload) = (self.store.clone(), self.location(id), bytes.to_vec());
        self.wait(async move { store.put(&location, payload.into()).await.map(|_| ()).map_err(io_error) })
    }

    fn get(&self, id: &str, limit: usize) -> std::io::Result<Option<Vec<u8>>> {
        use object_store::ObjectStoreExt;
        let (store, location) = (self.store.clone(), self.location(id));
        self.wait(async move {
            let found = match store.get(&location).await {
                Ok(found) => found,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(io_error(e)),
            };
            if found.meta.size > limit as u64 {
                return Err(std::io::Error::other(format!("{location} holds over {limit} bytes")));
            }
            Ok(Some(found.bytes().await.map_err(io_error)?.to_vec()))
        })
    }

    fn delete(&self, id: &str) -> std::io::Result<()> {
        use object_store::ObjectStoreExt;
        let (store, location) = (self.store.clone(), self.location(id));
        self.wait(async move {
            match store.delete(&location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(io_error(e)),
            }
        })
    }

    fn list(&self) -> std::io::Result<Vec<Listed>> {
        use futures_util::TryStreamExt;
        let (store, prefix) = (self.store.clone(), self.prefix.clone());
        self.wait(async move {
            let objects: Vec<object_store::ObjectMeta> =
                store.list(Some(&prefix)).try_collect().await.map_err(io_error)?;
            Ok(objects
                .into_iter()
                // Only the objects directly under the prefix (not `public/…` below it).
                .filter(|o| o.location.prefix_match(&prefix).is_some_and(|rest| rest.count() == 1))
                .filter_map(|o| {
                    let id = key_id_of(o.location.filename()?)?.to_string();
                    Some(Listed { modified: SystemTime::from(o.last_modified), id, bytes: o.size })
                })
                .collect())
        })
    }
}

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

/// Why a key could not be stored or read back.
#[derive(Debug)]
pub enum StoreError {
    /// The key alone exceeds a quota: no eviction can make room.
    TooLarge(String),
    /// Writing it to (or reading it from) the backing store failed.
    Io(String),
    /// The stored bytes do not hash to their id: refused, never used.
    Corrupt(String),
}

impl<K> Default for Index<K> {
    fn default() -> Self {
        Index { clock: 0, memory: HashMap::new(), memory_used: 0, disk: HashMap::new(), disk_used: 0 }
    }
}

/// The key store of one server; `K` is the expanded key (generic so the eviction logic is
/// tested without generating real keys).
pub struct KeyStore<K> {
    backing: Box<dyn KeyBytes>,
    /// Whether the disk quota is enforced (a local directory) or not (a shared store).
    evicts: bool,
    memory_quota: u64,
    disk_quota: u64,
    index: Mutex<Index<K>>,
}

/// The SHA-256 of `bytes` in lowercase hex: the id of a key.
pub fn content_id(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

impl<K> KeyStore<K> {
    /// Opens the keys at `location`. A local directory is created, its keys indexed
    /// (oldest modification first, as least recently used) and evicted down to
    /// `disk_quota`; a shared store is neither listed nor evicted from.
    pub fn open(location: &KeyLocation, memory_quota: u64, disk_quota: u64) -> Result<Self> {
        let (backing, evicts): (Box<dyn KeyBytes>, bool) = match location {
            KeyLocation::Dir(dir) => (Box::new(LocalDir::open(dir)?), true),
            KeyLocation::Shared(store, prefix) => (Box::new(ObjectKeys::new(store.clone(), prefix.clone())?), false),
        };
        let store = KeyStore { backing, evicts, memory_quota, disk_quota, index: Mutex::new(Index::default()) };
        if evicts {
            let mut found =
                store.backing.list().map_err(|e| CliError::Usage(format!("cannot list the stored keys: {e}")))?;
            found.sort();
            let mut index = store.lock();
            for Listed { id, bytes, .. } in found {
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

    /// The compressed bytes of key `id` from the backing store (written by this server
    /// before an eviction, or by a replica), `None` if it holds no such key. The bytes are
    /// checked to hash to `id`: a shared store is not trusted to be consistent. Blocks.
    pub fn fetch(&self, id: &str, limit: usize) -> std::result::Result<Option<Vec<u8>>, StoreError> {
        let Some(bytes) = self.backing.get(id, limit).map_err(|e| StoreError::Io(e.to_string()))? else {
            return Ok(None);
        };
        if content_id(&bytes) != id {
            return Err(StoreError::Corrupt(format!("stored key `{id}` is corrupted")));
        }
        Ok(Some(bytes))
    }

    /// Stores a checked key: its compressed bytes in the backing store and its expansion
    /// (`expanded_bytes` big) in memory, evicting least recently used keys to stay within
    /// both quotas. Blocks.
    pub fn insert(
        &self,
        id: &str,
        compressed: &[u8],
        key: Arc<K>,
        expanded_bytes: u64,
    ) -> std::result::Result<(), StoreError> {
        self.check_quotas(compressed.len() as u64, expanded_bytes)?;
        self.backing.put(id, compressed).map_err(|e| StoreError::Io(e.to_string()))?;
        self.cache(id, compressed.len() as u64, key, expanded_bytes);
        Ok(())
    }

    /// Writes again the bytes of a key this replica holds in memory, when the store is
    /// shared (its object may have expired there while other replicas need it); nothing
    /// for a local directory. Blocks.
    pub fn restore(&self, id: &str, compressed: &[u8]) -> std::result::Result<(), StoreError> {
        if self.evicts {
            return Ok(());
        }
        self.backing.put(id, compressed).map_err(|e| StoreError::Io(e.to_string()))
    }

    /// Keeps in memory a key read back with [`KeyStore::fetch`] (already stored,
    /// `stored_bytes` big), within the quotas.
    pub fn remember(
        &self,
        id: &str,
        stored_bytes: u64,
        key: Arc<K>,
        expanded_bytes: u64,
    ) -> std::result::Result<(), StoreError> {
        self.check_quotas(stored_bytes, expanded_bytes)?;
        self.cache(id, stored_bytes, key, expanded_bytes);
        Ok(())
    }

    fn check_quotas(&self, disk_bytes: u64, expanded_bytes: u64) -> std::result::Result<(), StoreError> {
        if self.evicts && disk_bytes > self.disk_quota {
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
        Ok(())
    }

    fn cache(&self, id: &str, disk_bytes: u64, key: Arc<K>, expanded_bytes: u64) {
        let mut index = self.lock();
        let now = index.tick();
        if self.evicts {
            if let Some(old) = index.disk.insert(id.to_string(), Slot { bytes: disk_bytes, last_used: now }) {
                index.disk_used -= old.bytes;
            }
            index.disk_used += disk_bytes;
            self.evict_disk(&mut index, 0, id);
        }
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
            let _ = self.backing.delete(&oldest);
        }
    }

    /// Bytes of expanded keys in memory and of compressed keys on disk.
    #[cfg(test)]
    pub fn usage(&self) -> (u64, u64) {
        let index = self.lock();
        (index.memory_used, index.disk_used)
    }

    /// Whether the backing store holds key `id`.
    #[cfg(test)]
    pub fn stored(&self, id: &str) -> bool {
        self.backing.get(id, 1 << 30).is_ok_and(|b| b.is_some())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn id(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("fheml-key-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn least_recently_used_keys_are_evicted_within_both_quotas() {
        let dir = scratch("lru");
        let location = KeyLocation::Dir(dir.clone());
        let file = |n| dir.join(format!("{}.key", id(n)));
        // Room for two keys on disk (10 bytes each) and two in memory (100 bytes each).
        let store = KeyStore::open(&location, 250, 25).unwrap();
        let bytes = [7u8; 10];
        store.insert(&id(1), &bytes, Arc::new(1), 100).unwrap();
        store.insert(&id(2), &bytes, Arc::new(2), 100).unwrap();
        assert_eq!(store.in_memory(&id(1)).as_deref(), Some(&1), "key 1 is now the most recent");
        store.insert(&id(3), &bytes, Arc::new(3), 100).unwrap();
        assert!(store.in_memory(&id(2)).is_none(), "key 2 was least recently used");
        assert!(store.in_memory(&id(1)).is_some() && store.in_memory(&id(3)).is_some());
        assert!(!file(2).exists(), "its file is gone too");
        assert!(file(1).exists() && file(3).exists());
        assert_eq!(store.usage(), (200, 20));
        // A key larger than a quota is refused, and evicts nothing.
        assert!(matches!(store.insert(&id(4), &[0; 26], Arc::new(4), 1), Err(StoreError::TooLarge(_))));
        assert!(matches!(store.insert(&id(4), &bytes, Arc::new(4), 251), Err(StoreError::TooLarge(_))));
        assert_eq!(store.usage(), (200, 20));
        // Reopening indexes the files already there; a tighter disk quota evicts the oldest.
        drop(store);
        let reopened: KeyStore<u8> = KeyStore::open(&location, 250, 15).unwrap();
        assert_eq!(reopened.usage(), (0, 10));
        assert!(reopened.stored(&id(1)) != reopened.stored(&id(3)), "exactly one key is left");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_shared_store_serves_keys_across_replicas_and_refuses_corrupt_ones() {
        let dir = scratch("shared");
        let url = format!("file://{}", dir.display());
        let location = KeyLocation::parse(&url).unwrap();
        // Two replicas over the same store, each with its own memory; the shared store is
        // never evicted from, whatever the disk quota.
        let a: KeyStore<u8> = KeyStore::open(&location, 1000, 1).unwrap();
        let b: KeyStore<u8> = KeyStore::open(&location, 1000, 1).unwrap();
        let bytes = b"a compressed key".to_vec();
        let good = content_id(&bytes);
        a.insert(&good, &bytes, Arc::new(1), 10).unwrap();
        assert!(b.in_memory(&good).is_none(), "B has not seen it yet");
        assert_eq!(b.fetch(&good, 1 << 20).unwrap(), Some(bytes.clone()), "B reads what A uploaded");
        assert!(matches!(b.fetch(&good, 4), Err(StoreError::Io(_))), "over the limit: refused");
        b.remember(&good, bytes.len() as u64, Arc::new(1), 10).unwrap();
        assert!(b.in_memory(&good).is_some());
        // An object gone from the shared store (expired there) is written again by a
        // replica that still holds the key when it is uploaded again.
        std::fs::remove_file(dir.join(format!("{good}.key"))).unwrap();
        assert!(b.fetch(&good, 1 << 20).unwrap().is_none());
        a.restore(&good, &bytes).unwrap();
        assert_eq!(b.fetch(&good, 1 << 20).unwrap(), Some(bytes.clone()));
        assert!(b.fetch(&id(9), 1 << 20).unwrap().is_none(), "absent keys are absent");
        // An object whose bytes do not hash to its id is refused, not used.
        std::fs::write(dir.join(format!("{}.key", id(7))), b"not the key of this id").unwrap();
        assert!(matches!(b.fetch(&id(7), 1 << 20), Err(StoreError::Corrupt(_))));
        assert!(b.in_memory(&id(7)).is_none());
        // Sub-stores (public keys) are kept apart, and listing sees only its own level.
        let public: KeyStore<u8> = KeyStore::open(&location.child("public"), 1000, 1).unwrap();
        public.insert(&good, &bytes, Arc::new(2), 10).unwrap();
        assert!(dir.join("public").join(format!("{good}.key")).is_file());
        let KeyLocation::Shared(store, prefix) = &location else { panic!("file:// is a shared store") };
        let listed = ObjectKeys::new(store.clone(), prefix.clone()).unwrap().list().unwrap();
        let mut ids: Vec<_> = listed.iter().map(|l| (l.id.clone(), l.bytes)).collect();
        ids.sort();
        let mut expected = vec![(good.clone(), bytes.len() as u64), (id(7), 22)];
        expected.sort();
        assert_eq!(ids, expected);
        // Without the cloud-keys feature, cloud URLs are refused naming it.
        #[cfg(not(feature = "cloud-keys"))]
        {
            let Err(e) = KeyLocation::parse("s3://bucket/keys") else { panic!("s3 accepted") };
            assert!(e.to_string().contains("cloud-keys"), "{e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
