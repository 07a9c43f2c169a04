//! The bucket's side of recordings: upload a spooled session, list, download, delete.
//!
//! A session's objects are `<prefix>/YYYY/MM/DD/<id>/<file>`, the files of its recording
//! directory. Uploads and downloads stream: memory per transfer is bounded by the multipart
//! part size (at most [`MAX_PARTS_IN_FLIGHT`] parts plus the one being filled), whatever the
//! recording's size.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use futures::StreamExt;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::StoreError;

/// Files up to this size are one `PUT`; larger ones are multipart uploads in parts of this
/// size (S3 wants parts of at least 5 MiB).
pub const PART_SIZE: usize = 8 << 20;
/// Parts of one multipart upload sent at the same time.
pub const MAX_PARTS_IN_FLIGHT: usize = 2;
/// Bytes read from the spool file per read.
const READ_CHUNK: usize = 1 << 20;

/// A bucket (and key prefix) holding recordings.
#[derive(Debug, Clone)]
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    url: String,
}

/// What the bucket holds of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    /// The session id.
    pub id: String,
    /// Its objects: file name and size.
    pub files: BTreeMap<String, u64>,
    /// Unix time of the newest object (the seal's upload for a sealed session).
    pub last_modified: u64,
    /// Where it is, for messages and the audit log (`s3://bucket/prefix/YYYY/MM/DD/id`).
    pub location: String,
}

impl StoredSession {
    /// Total bytes.
    pub fn bytes(&self) -> u64 {
        self.files.values().sum()
    }
}

impl Bucket {
    pub(crate) fn new(store: Arc<dyn ObjectStore>, prefix: &str, url: String) -> Bucket {
        Bucket {
            store,
            prefix: prefix.to_owned(),
            url: url.trim_end_matches('/').to_owned(),
        }
    }

    /// `s3://bucket/prefix`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The key prefix of session `id`'s objects (rejects anything not a session id).
    fn session_key(&self, id: &str) -> Result<Key, StoreError> {
        let rel = jitssh_recording::session_dir(Path::new(&self.prefix), id)?;
        Ok(Key::from(rel.to_string_lossy().as_ref()))
    }

    /// Uploads the recording of session `id` from `dir` (seal last), then checks that the
    /// bucket holds every file with its size. Returns the bytes uploaded. The caller removes
    /// `dir` only after this returns `Ok`.
    pub async fn upload(&self, id: &str, dir: &Path) -> Result<u64, StoreError> {
        let base = self.session_key(id)?;
        let mut files = local_files(dir)?;
        // The seal goes last: a reader that finds it finds everything it vouches for.
        files.sort_by_key(|(name, _)| (name.starts_with("seal.json"), name.clone()));
        let mut total = 0;
        for (name, _) in &files {
            total += self
                .put_file(&base.clone().join(name.as_str()), &dir.join(name))
                .await?;
        }
        let stored = self.session(id).await?.map(|s| s.files).unwrap_or_default();
        for (name, size) in &files {
            match stored.get(name) {
                Some(s) if s == size => {}
                Some(s) => {
                    return Err(StoreError::NotConfirmed {
                        id: id.to_owned(),
                        why: format!("{name} is {s} bytes in the bucket, {size} in the spool"),
                    });
                }
                None => {
                    return Err(StoreError::NotConfirmed {
                        id: id.to_owned(),
                        why: format!("{name} is not in the bucket"),
                    });
                }
            }
        }
        Ok(total)
    }

    /// Streams one file to `key`: one `PUT` if small, else a multipart upload.
    async fn put_file(&self, key: &Key, path: &Path) -> Result<u64, StoreError> {
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(StoreError::local("open", path))?;
        let len = file
            .metadata()
            .await
            .map_err(StoreError::local("stat", path))?
            .len();
        if len <= PART_SIZE as u64 {
            let mut buf = Vec::with_capacity(len as usize);
            (&mut file)
                .take(PART_SIZE as u64)
                .read_to_end(&mut buf)
                .await
                .map_err(StoreError::local("read", path))?;
            let n = buf.len() as u64;
            self.store.put(key, buf.into()).await?;
            return Ok(n);
        }
        let upload = self.store.put_multipart(key).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut chunk = vec![0u8; READ_CHUNK];
        let mut total = 0u64;
        loop {
            if let Err(e) = writer.wait_for_capacity(MAX_PARTS_IN_FLIGHT).await {
                let _ = writer.abort().await;
                return Err(e.into());
            }
            let n = match file.read(&mut chunk).await {
                Ok(n) => n,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(StoreError::local("read", path)(e));
                }
            };
            if n == 0 {
                break;
            }
            writer.write(&chunk[..n]);
            total += n as u64;
        }
        writer.finish().await?;
        Ok(total)
    }

    /// What the bucket holds of session `id`, if anything.
    pub async fn session(&self, id: &str) -> Result<Option<StoredSession>, StoreError> {
        let base = self.session_key(id)?;
        let mut found = None;
        let mut list = self.store.list(Some(&base));
        while let Some(meta) = list.next().await {
            let meta = meta?;
            let Some(name) = meta.location.prefix_match(&base).and_then(single_part) else {
                continue;
            };
            let s = found.get_or_insert_with(|| StoredSession {
                id: id.to_owned(),
                files: BTreeMap::new(),
                last_modified: 0,
                location: format!("{}/{}", self.url_root(), base),
            });
            s.files.insert(name, meta.size);
            s.last_modified = s.last_modified.max(unix(&meta.last_modified));
        }
        Ok(found)
    }

    /// Every session in the bucket, oldest id first.
    pub async fn sessions(&self) -> Result<Vec<StoredSession>, StoreError> {
        let root = Key::from(self.prefix.as_str());
        let mut by_id: BTreeMap<String, StoredSession> = BTreeMap::new();
        let mut list = self.store.list((!self.prefix.is_empty()).then_some(&root));
        while let Some(meta) = list.next().await {
            let meta = meta?;
            let parts: Vec<String> = match meta.location.prefix_match(&root) {
                Some(parts) => parts.map(|p| p.as_ref().to_owned()).collect(),
                None => continue,
            };
            // YYYY/MM/DD/<id>/<file>, where the id's date is the path's.
            let [y, m, d, id, name] = parts.as_slice() else {
                continue;
            };
            if !is_file_name(name) {
                continue;
            }
            match jitssh_recording::session_dir(Path::new(""), id) {
                Ok(dir) if dir == Path::new(y).join(m).join(d).join(id) => {}
                _ => continue,
            }
            let location = format!("{}/{}", self.url_root(), self.session_key(id)?);
            let s = by_id.entry(id.clone()).or_insert_with(|| StoredSession {
                id: id.clone(),
                files: BTreeMap::new(),
                last_modified: 0,
                location,
            });
            s.files.insert(name.clone(), meta.size);
            s.last_modified = s.last_modified.max(unix(&meta.last_modified));
        }
        Ok(by_id.into_values().collect())
    }

    /// Downloads session `id`'s objects into `dest` (created; replaced if it exists),
    /// through a hidden temporary directory beside it so `dest` is never half there.
    /// `Ok(false)` if the bucket has no such session.
    pub async fn download(&self, id: &str, dest: &Path) -> Result<bool, StoreError> {
        let Some(stored) = self.session(id).await? else {
            return Ok(false);
        };
        let parent = dest.parent().unwrap_or(Path::new("."));
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(StoreError::local("create directory", parent))?;
        let partial = parent.join(format!(".{id}.partial"));
        let _ = tokio::fs::remove_dir_all(&partial).await;
        tokio::fs::create_dir(&partial)
            .await
            .map_err(StoreError::local("create directory", &partial))?;
        let base = self.session_key(id)?;
        for name in stored.files.keys() {
            let path = partial.join(name);
            let mut file = tokio::fs::File::create(&path)
                .await
                .map_err(StoreError::local("create", &path))?;
            let mut body = self
                .store
                .get(&base.clone().join(name.as_str()))
                .await?
                .into_stream();
            while let Some(bytes) = body.next().await {
                file.write_all(&bytes?)
                    .await
                    .map_err(StoreError::local("write", &path))?;
            }
            file.flush()
                .await
                .map_err(StoreError::local("write", &path))?;
        }
        let _ = tokio::fs::remove_dir_all(dest).await;
        tokio::fs::rename(&partial, dest)
            .await
            .map_err(StoreError::local("rename", &partial))?;
        Ok(true)
    }

    /// One small object of session `id` (such as the seal), at most `max` bytes; `None` if
    /// absent.
    pub async fn read_small(
        &self,
        id: &str,
        name: &str,
        max: usize,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let key = self.session_key(id)?.join(name);
        let mut body = match self.store.get(&key).await {
            Ok(found) => found.into_stream(),
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        while let Some(bytes) = body.next().await {
            let bytes = bytes?;
            if out.len() + bytes.len() > max {
                return Ok(None);
            }
            out.extend_from_slice(&bytes);
        }
        Ok(Some(out))
    }

    /// Deletes every object of session `id`.
    pub async fn delete(&self, id: &str) -> Result<(), StoreError> {
        let base = self.session_key(id)?;
        let Some(stored) = self.session(id).await? else {
            return Ok(());
        };
        for name in stored.files.keys() {
            self.store.delete(&base.clone().join(name.as_str())).await?;
        }
        Ok(())
    }

    /// `s3://bucket` (the prefix is part of every key).
    fn url_root(&self) -> &str {
        match self.url.strip_suffix(&self.prefix) {
            Some(root) if !self.prefix.is_empty() => root.trim_end_matches('/'),
            _ => &self.url,
        }
    }
}

/// The one remaining path part, as a plain file name.
fn single_part<'a>(
    mut parts: impl Iterator<Item = object_store::path::PathPart<'a>>,
) -> Option<String> {
    let first = parts.next()?;
    let name = first.as_ref();
    (parts.next().is_none() && is_file_name(name)).then(|| name.to_owned())
}

/// A recording's file name: what the recorder writes (`events.jsonl`, `chan-1.cast`...),
/// never a hidden, relative or odd name a planted object could use to write elsewhere.
fn is_file_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
}

fn unix(t: &chrono::DateTime<chrono::Utc>) -> u64 {
    u64::try_from(t.timestamp()).unwrap_or(0)
}

/// The regular files of a recording directory (never following a symlink), with sizes.
fn local_files(dir: &Path) -> Result<Vec<(String, u64)>, StoreError> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(StoreError::local("read directory", dir))? {
        let entry = entry.map_err(StoreError::local("read directory", dir))?;
        let meta = entry
            .metadata()
            .map_err(StoreError::local("stat", &entry.path()))?;
        if !meta.is_file() {
            continue;
        }
        if let Some(name) = entry.file_name().to_str() {
            files.push((name.to_owned(), meta.len()));
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    const ID: &str = "20260102T030405Z-0badcafe";

    fn bucket() -> Bucket {
        Bucket::new(Arc::new(InMemory::new()), "site", "s3://b/site".into())
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn upload_list_download_delete_round_trip_with_a_multipart_file() {
        let rt = runtime();
        let b = bucket();
        let spool = tempfile::tempdir().unwrap();
        let dir = jitssh_recording::session_dir(spool.path(), ID).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        let big: Vec<u8> = (0..(PART_SIZE * 2 + 12345))
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(dir.join("chan-1.cast"), &big).unwrap();
        std::fs::write(dir.join("events.jsonl"), b"{}\n").unwrap();
        std::fs::write(dir.join("seal.json"), b"{\"ended_at\":1}").unwrap();
        let sent = rt.block_on(b.upload(ID, &dir)).unwrap();
        assert_eq!(sent, big.len() as u64 + 3 + 14);

        let stored = rt.block_on(b.session(ID)).unwrap().unwrap();
        assert_eq!(stored.files.len(), 3);
        assert_eq!(stored.files["chan-1.cast"], big.len() as u64);
        assert_eq!(stored.location, format!("s3://b/site/2026/01/02/{ID}"));
        let all = rt.block_on(b.sessions()).unwrap();
        assert_eq!(all, vec![stored.clone()]);

        let cache = tempfile::tempdir().unwrap();
        let dest = cache.path().join("x").join(ID);
        assert!(rt.block_on(b.download(ID, &dest)).unwrap());
        assert_eq!(std::fs::read(dest.join("chan-1.cast")).unwrap(), big);
        assert_eq!(
            rt.block_on(b.read_small(ID, "seal.json", 100))
                .unwrap()
                .unwrap(),
            b"{\"ended_at\":1}"
        );
        assert_eq!(rt.block_on(b.read_small(ID, "seal.json", 5)).unwrap(), None);

        rt.block_on(b.delete(ID)).unwrap();
        assert_eq!(rt.block_on(b.session(ID)).unwrap(), None);
        assert!(!rt.block_on(b.download(ID, &dest)).unwrap());
    }

    #[test]
    fn objects_that_are_not_recording_files_are_ignored_and_ids_are_checked() {
        let rt = runtime();
        let b = bucket();
        rt.block_on(async {
            let key = |k: &str| Key::from(k);
            b.store
                .put(
                    &key(&format!("site/2026/01/02/{ID}/events.jsonl")),
                    b"{}\n".to_vec().into(),
                )
                .await
                .unwrap();
            b.store
                .put(
                    &key(&format!("site/2026/01/02/{ID}/.hidden")),
                    b"x".to_vec().into(),
                )
                .await
                .unwrap();
            b.store
                .put(
                    &key(&format!("site/2026/01/02/{ID}/sub/deep")),
                    b"x".to_vec().into(),
                )
                .await
                .unwrap();
            // An id under the wrong date, and a stray object.
            b.store
                .put(
                    &key(&format!("site/2025/01/02/{ID}/events.jsonl")),
                    b"x".to_vec().into(),
                )
                .await
                .unwrap();
            b.store
                .put(&key("site/README"), b"x".to_vec().into())
                .await
                .unwrap();
        });
        let all = rt.block_on(b.sessions()).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(
            all[0].files.keys().collect::<Vec<_>>(),
            vec!["events.jsonl"]
        );
        assert!(rt.block_on(b.session("../../etc")).is_err());
    }
}
