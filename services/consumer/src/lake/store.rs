//! Where the lake is: a local directory (the default) or S3-compatible object storage
//! (`s3://bucket/prefix`, configured by the standard AWS environment variables: credentials,
//! `AWS_REGION`, `AWS_ENDPOINT_URL` for MinIO and the like, `AWS_ALLOW_HTTP=true` for a plain
//! HTTP endpoint).
//!
//! Both make a file visible atomically, whole or not at all. Locally it is written under a
//! hidden temporary name, fsynced, renamed, and the directory fsynced (a new directory's parents
//! too), so a crash at any instant (power loss included) leaves no partial file under a real
//! name and no file without its directory. On S3 a single PUT is atomic.
//! The listing of the lake is also the sink's offset store: see [`LakeOffsets`].

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use super::layout::{self, Resume, Span, Table};
use crate::source::{OffsetStore, PartitionKey};

#[derive(Clone)]
pub enum Store {
    Local {
        root: PathBuf,
        /// Directories whose entries are known to be on disk (see [`create_durably`]).
        durable: Arc<Mutex<HashSet<PathBuf>>>,
    },
    S3 {
        store: Arc<dyn ObjectStore>,
        prefix: String,
        url: String,
    },
}

impl Store {
    pub fn open(location: &str) -> anyhow::Result<Store> {
        if let Some(rest) = location.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                anyhow::bail!("{location:?}: expected s3://BUCKET/PREFIX");
            }
            let mut builder =
                object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
            // The variable the AWS CLI and SDKs read; object_store's own is AWS_ENDPOINT.
            if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") {
                builder = builder.with_endpoint(endpoint);
            }
            let store = builder
                .build()
                .with_context(|| format!("configuring S3 for {location}"))?;
            let prefix = prefix.trim_matches('/').to_owned();
            return Ok(Store::S3 {
                store: Arc::new(store),
                prefix,
                url: location.to_owned(),
            });
        }
        if location.contains("://") && !location.starts_with("file://") {
            anyhow::bail!(
                "{location:?}: the lake is a directory, file://DIR or s3://BUCKET/PREFIX"
            );
        }
        let dir = PathBuf::from(location.strip_prefix("file://").unwrap_or(location));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating the lake directory {}", dir.display()))?;
        Ok(Store::Local {
            root: dir,
            durable: Arc::default(),
        })
    }

    pub fn describe(&self) -> String {
        match self {
            Store::Local { root, .. } => root.display().to_string(),
            Store::S3 { url, .. } => url.clone(),
        }
    }

    /// Makes `bytes` visible at `path` (below the root), whole.
    pub async fn put(&self, path: &str, bytes: bytes::Bytes) -> anyhow::Result<()> {
        match self {
            Store::Local { root, durable } => {
                let (root, durable) = (root.clone(), durable.clone());
                let path = path.to_owned();
                tokio::task::spawn_blocking(move || {
                    write_local(&root, &durable, &root.join(&path), &bytes)
                })
                .await
                .context("the file writer panicked")?
            }
            Store::S3 { store, prefix, url } => {
                let key = object_key(prefix, path);
                store
                    .put(&key, bytes.into())
                    .await
                    .with_context(|| format!("writing {key} to {url}"))?;
                Ok(())
            }
        }
    }

    /// Makes `bytes` visible at `path` only if nothing is there yet: `None` when it did, or
    /// what is there instead (another writer's). Locally a hard link, which fails on an
    /// existing name; on S3 a PUT with `If-None-Match: *`.
    pub async fn create_once(
        &self,
        path: &str,
        bytes: bytes::Bytes,
    ) -> anyhow::Result<Option<bytes::Bytes>> {
        match self {
            Store::Local { root, durable } => {
                let (root, durable) = (root.clone(), durable.clone());
                let path = path.to_owned();
                tokio::task::spawn_blocking(move || {
                    create_local_once(&root, &durable, &root.join(&path), &bytes)
                })
                .await
                .context("the file writer panicked")?
            }
            Store::S3 { store, prefix, url } => {
                let key = object_key(prefix, path);
                let created = store
                    .put_opts(&key, bytes.into(), object_store::PutMode::Create.into())
                    .await;
                match created {
                    Ok(_) => Ok(None),
                    Err(object_store::Error::AlreadyExists { .. }) => self
                        .read(path)
                        .await?
                        .map(Some)
                        .with_context(|| format!("{key} in {url} existed, then did not")),
                    Err(e) => Err(e).with_context(|| format!("creating {key} in {url}")),
                }
            }
        }
    }

    /// Checks that the store refuses a second create of one name, which span claims rely on:
    /// some S3-compatible servers ignore `If-None-Match` and overwrite. Such a store still
    /// works, without fencing paused instances, so it is said loudly rather than refused. A
    /// client configured without conditional puts could claim no span at all: that fails the
    /// start. A store that does not answer is only warned about; the writes retry.
    pub async fn check_create_once(&self) -> anyhow::Result<()> {
        let Store::S3 { url, .. } = self else {
            // A hard link never replaces a name.
            return Ok(());
        };
        let probe = format!("_spans/.probe-{}", uuid::Uuid::new_v4().simple());
        let twice = async {
            self.create_once(&probe, bytes::Bytes::from_static(b"first"))
                .await?;
            let second = self
                .create_once(&probe, bytes::Bytes::from_static(b"second"))
                .await?;
            self.delete(&probe).await?;
            anyhow::Ok(second)
        };
        let second = match twice.await {
            Ok(second) => second,
            Err(error) => {
                let unsupported = error.chain().any(|cause| {
                    matches!(
                        cause.downcast_ref::<object_store::Error>(),
                        Some(object_store::Error::NotImplemented { .. })
                    )
                });
                if unsupported {
                    return Err(error.context(format!(
                        "{url}: span claims need conditional PUTs (unset AWS_CONDITIONAL_PUT=disabled)"
                    )));
                }
                tracing::warn!(lake = url, error = %format!("{error:#}"), "could not check the store's conditional PUTs");
                return Ok(());
            }
        };
        if second.is_none() {
            tracing::error!(
                lake = url,
                "this store overwrote an object a conditional PUT (If-None-Match: *) should have kept: span claims cannot fence an instance paused past its session here"
            );
        }
        Ok(())
    }

    /// What is at `path` (below the root), if anything.
    pub async fn read(&self, path: &str) -> anyhow::Result<Option<bytes::Bytes>> {
        match self {
            Store::Local { root, .. } => {
                let file = root.join(path);
                match tokio::fs::read(&file).await {
                    Ok(bytes) => Ok(Some(bytes.into())),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(e).with_context(|| format!("reading {}", file.display())),
                }
            }
            Store::S3 { store, prefix, url } => {
                let key = object_key(prefix, path);
                let read = async { store.get(&key).await?.bytes().await };
                match read.await {
                    Ok(bytes) => Ok(Some(bytes)),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e).with_context(|| format!("reading {key} from {url}")),
                }
            }
        }
    }

    /// Every data file of `table`: its path below the root, and its span.
    pub async fn files(&self, table: Table) -> anyhow::Result<Vec<(String, Span)>> {
        match self {
            Store::Local { root, .. } => {
                let root = root.clone();
                tokio::task::spawn_blocking(move || local_files(&root, table))
                    .await
                    .context("listing panicked")?
            }
            Store::S3 { store, prefix, url } => {
                let key = object_key(prefix, table.dir());
                let objects: Vec<_> = store
                    .list(Some(&key))
                    .try_collect()
                    .await
                    .with_context(|| format!("listing {key} in {url}"))?;
                // Keys below the prefix, as `put` and `delete` take them.
                let below = |location: &ObjectPath| {
                    let full = location.as_ref();
                    full.strip_prefix(prefix.as_str())
                        .map_or(full, |rest| rest.trim_start_matches('/'))
                        .to_owned()
                };
                Ok(objects
                    .iter()
                    .filter_map(|o| {
                        let span = o.location.filename().and_then(Span::parse)?;
                        Some((below(&o.location), span))
                    })
                    .collect())
            }
        }
    }

    /// The lowest first offset claimed in a partition (see [`layout::Claim`]), for a partition
    /// without files: its spans so far were all poison, or its first is not written yet.
    pub async fn first_claim(
        &self,
        table: Table,
        topic: &str,
        partition: i32,
    ) -> anyhow::Result<Option<i64>> {
        let dir = layout::claim_path(table, topic, partition, 0);
        let dir = dir.rsplit_once('/').map_or(dir.as_str(), |(dir, _)| dir);
        let names: Vec<String> = match self {
            Store::Local { root, .. } => match std::fs::read_dir(root.join(dir)) {
                Ok(entries) => entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(e).with_context(|| format!("listing {dir}")),
            },
            Store::S3 { store, prefix, url } => {
                let key = object_key(prefix, dir);
                let objects: Vec<_> = store
                    .list(Some(&key))
                    .try_collect()
                    .await
                    .with_context(|| format!("listing {key} in {url}"))?;
                objects
                    .iter()
                    .filter_map(|o| o.location.filename().map(str::to_owned))
                    .collect()
            }
        };
        let offset = |name: &String| {
            (name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit()))
                .then(|| name.parse::<i64>().ok())
                .flatten()
        };
        Ok(names.iter().filter_map(offset).min())
    }

    /// Where each partition of `topic` in `table` resumes, from the lake's own listing.
    pub async fn resume(&self, table: Table, topic: &str) -> anyhow::Result<HashMap<i32, Resume>> {
        let files = self.files(table).await?;
        let mut by_partition: HashMap<i32, Vec<(&str, &Span)>> = HashMap::new();
        for (path, span) in files.iter().filter(|(_, s)| s.topic == topic) {
            by_partition
                .entry(span.partition)
                .or_default()
                .push((path.as_str(), span));
        }
        Ok(by_partition
            .into_iter()
            .map(|(partition, files)| (partition, layout::resume(files)))
            .collect())
    }

    /// Removes `path` (below the root); a file already gone is not an error.
    pub async fn delete(&self, path: &str) -> anyhow::Result<()> {
        match self {
            Store::Local { root, .. } => {
                let file = root.join(path);
                match tokio::fs::remove_file(&file).await {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        Err(e).with_context(|| format!("deleting {}", file.display()))
                    }
                    _ => Ok(()),
                }
            }
            Store::S3 { store, prefix, url } => {
                let key = object_key(prefix, path);
                match store.delete(&key).await {
                    Err(object_store::Error::NotFound { .. }) | Ok(()) => Ok(()),
                    Err(e) => Err(e).with_context(|| format!("deleting {key} from {url}")),
                }
            }
        }
    }
}

fn object_key(prefix: &str, path: &str) -> ObjectPath {
    if prefix.is_empty() {
        ObjectPath::from(path)
    } else {
        ObjectPath::from(format!("{prefix}/{path}"))
    }
}

/// Creates `dir` (below `root`) if needed and makes its entry durable: a new directory is only
/// on disk once its parent is fsynced. Without that, a power loss could take a new `dt=`
/// directory, and an earlier span's part in it, while a later span survived elsewhere; the
/// lake would then resume past rows it no longer has. Each level not yet recorded has its
/// parent fsynced, up to the first recorded one, so a new `dt=` costs one fsync more, once.
/// A writer that finds a directory made by another, not yet recorded, fsyncs it too: it must
/// not rely on the other's fsync, which may not have happened yet.
fn create_durably(root: &Path, known: &Mutex<HashSet<PathBuf>>, dir: &Path) -> std::io::Result<()> {
    let durable = || {
        known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    let below_root = |level: &&Path| *level != root && level.starts_with(root);
    // Checked on disk every time: a directory deleted behind the sink's back is created anew.
    if dir.is_dir() {
        if durable().contains(dir) {
            return Ok(());
        }
    } else {
        for level in dir.ancestors().take_while(below_root) {
            if !level.is_dir() {
                durable().remove(level);
            }
        }
        std::fs::create_dir_all(dir)?;
    }
    let fresh: Vec<&Path> = dir
        .ancestors()
        .take_while(below_root)
        .take_while(|level| !durable().contains(*level))
        .collect();
    // From the top down, and recorded only after: a level is durable once every level above.
    for level in fresh.iter().rev() {
        if let Some(parent) = level.parent() {
            std::fs::File::open(parent)?.sync_all()?;
        }
    }
    let mut durable = durable();
    durable.extend(fresh.into_iter().map(Path::to_path_buf));
    Ok(())
}

fn write_local(
    root: &Path,
    durable: &Mutex<HashSet<PathBuf>>,
    path: &Path,
    bytes: &[u8],
) -> anyhow::Result<()> {
    let dir = path.parent().context("a lake file has a directory")?;
    create_durably(root, durable, dir).with_context(|| format!("creating {}", dir.display()))?;
    let temporary = temporary_of(path);
    let write = || -> std::io::Result<()> {
        write_synced(&temporary, bytes)?;
        std::fs::rename(&temporary, path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().with_context(|| format!("writing {}", path.display()))
}

/// A hidden name beside `path`, not ending in .parquet (readers' globs and our own listing
/// skip it), and this write's own: an instance paused past its session may be writing the
/// same file as the one that took over, and a shared temporary file could be truncated under
/// the other's rename (a process id is no help: in containers every writer may be pid 1).
fn temporary_of(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()))
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn create_local_once(
    root: &Path,
    durable: &Mutex<HashSet<PathBuf>>,
    path: &Path,
    bytes: &[u8],
) -> anyhow::Result<Option<bytes::Bytes>> {
    let dir = path.parent().context("a lake file has a directory")?;
    create_durably(root, durable, dir).with_context(|| format!("creating {}", dir.display()))?;
    let temporary = temporary_of(path);
    let create = || -> std::io::Result<Option<bytes::Bytes>> {
        write_synced(&temporary, bytes)?;
        // Whole before it has its name: the link publishes a complete, fsynced file or fails.
        let linked = std::fs::hard_link(&temporary, path);
        std::fs::remove_file(&temporary)?;
        match linked {
            Ok(()) => {
                std::fs::File::open(dir)?.sync_all()?;
                Ok(None)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // Another writer's, perhaps not yet durable: this one relies on it from now on.
                std::fs::File::open(dir)?.sync_all()?;
                Ok(Some(std::fs::read(path)?.into()))
            }
            Err(e) => Err(e),
        }
    };
    create().with_context(|| format!("creating {}", path.display()))
}

fn local_files(root: &Path, table: Table) -> anyhow::Result<Vec<(String, Span)>> {
    let mut files = Vec::new();
    let mut pending = vec![root.join(table.dir())];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
        };
        for entry in entries {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if is_stale_temporary(&entry) {
                // Left by a writer killed mid-write. A writer paused that long finds it gone, fails
                // its rename and writes the file again.
                let _ = std::fs::remove_file(entry.path());
            } else if let Some(span) = entry.file_name().to_str().and_then(Span::parse) {
                let path = entry.path();
                let below = path.strip_prefix(root).unwrap_or(&path);
                files.push((below.to_string_lossy().into_owned(), span));
            }
        }
    }
    Ok(files)
}

/// A temporary file (see [`temporary_of`]) untouched for an hour.
fn is_stale_temporary(entry: &std::fs::DirEntry) -> bool {
    let name = entry.file_name();
    let name = name.to_string_lossy();
    let age = entry
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|at| at.elapsed().ok());
    name.starts_with('.') && name.ends_with(".tmp") && age.is_some_and(|age| age > STALE)
}

const STALE: Duration = Duration::from_secs(3600);

/// The next offset of a partition is one past the last offset of its last complete span: the
/// files (and the claim of a span left incomplete) are the only record of what the lake holds,
/// so there is nothing to get out of step (see [`layout::resume`] and [`LakeOffsets::settle`]).
pub struct LakeOffsets {
    pub store: Store,
    pub tables: Vec<(String, Table)>,
    pub runtime: tokio::runtime::Handle,
}

impl OffsetStore for LakeOffsets {
    fn load(&self, partitions: &[PartitionKey]) -> anyhow::Result<HashMap<PartitionKey, i64>> {
        // Runs on the Kafka polling thread, outside the runtime, so blocking here is allowed.
        self.runtime.block_on(async {
            let mut next = HashMap::new();
            for (topic, table) in &self.tables {
                let found = tokio::time::timeout(LISTING, self.store.resume(*table, topic))
                    .await
                    .context("timed out listing the lake")??;
                let without_files = partitions
                    .iter()
                    .filter(|(t, p)| t == topic && !found.contains_key(p));
                let mut claimed_only = Vec::new();
                for (_, partition) in without_files {
                    let first = self.store.first_claim(*table, topic, *partition);
                    let first = tokio::time::timeout(LISTING, first)
                        .await
                        .context("timed out listing claims")??;
                    if let Some(first) = first {
                        let resume = Resume {
                            next: Some(first),
                            unfinished: Vec::new(),
                        };
                        claimed_only.push((*partition, resume));
                    }
                }
                for (partition, resume) in found.into_iter().chain(claimed_only) {
                    let key = (topic.clone(), partition);
                    if !partitions.contains(&key) {
                        continue;
                    }
                    if let Some(offset) = self.settle(*table, &key, resume).await? {
                        next.insert(key, offset);
                    }
                }
            }
            Ok(next)
        })
    }
}

impl LakeOffsets {
    /// Where a partition resumes, once its unfinished spans are dealt with. Parts of a claimed
    /// span (see [`layout::Claim`]) stay: their writer may still be at work, and if the span
    /// starts where the complete ones end, the sink resumes there and writes it again exactly
    /// as claimed. Parts no claim accounts for (left by a build before claims) are deleted, as
    /// their rows may be cut differently the second time.
    async fn settle(
        &self,
        table: Table,
        key: &PartitionKey,
        resume: Resume,
    ) -> anyhow::Result<Option<i64>> {
        let mut next = resume.next;
        for unfinished in resume.unfinished {
            let at = layout::claim_path(table, &key.0, key.1, unfinished.first);
            let claim = tokio::time::timeout(LISTING, self.store.read(&at))
                .await
                .context("timed out reading a claim")??
                .and_then(|bytes| layout::Claim::parse(&bytes));
            let claimed = claim.is_some_and(|c| {
                c.last == unfinished.last && unfinished.paths.iter().all(|p| c.paths.contains(p))
            });
            if claimed {
                if next.is_none_or(|next| next == unfinished.first) {
                    tracing::info!(claim = at, "resuming at a claimed span not yet complete");
                    next = Some(unfinished.first);
                }
                continue;
            }
            for orphan in &unfinished.paths {
                tracing::info!(
                    path = orphan,
                    "deleting a part of an unclaimed, incomplete span"
                );
                tokio::time::timeout(LISTING, self.store.delete(orphan))
                    .await
                    .context("timed out deleting from the lake")??;
            }
        }
        // Past them, what a writer left claimed without files: records that were all poison.
        while let Some(at) = next {
            let path = layout::claim_path(table, &key.0, key.1, at);
            let claim = tokio::time::timeout(LISTING, self.store.read(&path))
                .await
                .context("timed out reading a claim")??
                .and_then(|bytes| layout::Claim::parse(&bytes));
            match claim {
                Some(poison) if poison.paths.is_empty() && poison.last >= at => {
                    next = Some(poison.last + 1);
                }
                _ => break,
            }
        }
        Ok(next)
    }
}

/// How long one listing or deletion may take before the assignment fails (and is retried).
const LISTING: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory recorded as durable and then deleted behind the sink's back is created
    /// again, instead of failing every later write into it.
    #[test]
    fn a_deleted_directory_is_created_again() {
        let root = bank_test_support::scratch_dir("lake-dirs");
        let durable = Mutex::default();
        let file = root.join("transactions/dt=2026-12-03/branch=1/a.parquet");
        write_local(&root, &durable, &file, b"one").expect("the first write");
        std::fs::remove_dir_all(root.join("transactions")).expect("deleted by an operator");
        write_local(&root, &durable, &file, b"two").expect("the second write");
        assert_eq!(std::fs::read(&file).expect("the file"), b"two");
        let _ = std::fs::remove_dir_all(&root);
    }
}
