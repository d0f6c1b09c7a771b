//! Compiled components on disk, so that a restart does not recompile.
//!
//! A file is named `<sha256 of the component>-<engine key>.cwasm`, where
//! the engine key hashes every engine setting that affects compiled code
//! (and the wasmtime version), so a changed setting misses instead of
//! loading incompatible code. Each file starts with a magic and the
//! sha256 of the rest, checked before the artifact is handed to wasmtime:
//! a torn or damaged file is recompiled, never loaded.
//!
//! Trust: loading an artifact runs its native code, so the cache directory
//! must be writable only by the user running Eddy (as for wasmtime's own
//! cache). The checksum protects against damage, not against someone who
//! can write there.

use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::Digest;
use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"EDDYCW01";
const HEADER_BYTES: usize = MAGIC.len() + 32;

#[derive(Debug)]
pub(crate) struct ArtifactCache {
    dir: PathBuf,
    engine_key: String,
}

impl ArtifactCache {
    /// The cache in `dir` for code compiled by `engine`; `tag` tells apart
    /// engines whose compiled code is alike but not interchangeable (a
    /// pooled and an on-demand one).
    pub(crate) fn open(dir: &Path, engine: &Engine, tag: &str) -> Result<ArtifactCache> {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        // Private to the user: whoever can write here can run native code.
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(|source| Error::Cache {
            op: "creating the compile cache directory",
            path: dir.to_owned(),
            source,
        })?;
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        tag.hash(&mut hasher);
        Ok(ArtifactCache {
            dir: dir.to_owned(),
            engine_key: format!("{:016x}", hasher.finish()),
        })
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", self.engine_key))
    }

    /// The cached compilation of the component with `digest`, if there is
    /// a sound one.
    pub(crate) fn load(&self, engine: &Engine, digest: &Digest) -> Option<Component> {
        let path = self.path(digest);
        let bytes = fs::read(&path).ok()?;
        let body = match checked_body(&bytes) {
            Some(body) => body,
            None => {
                tracing::warn!(path = %path.display(), "damaged compile cache entry; recompiling");
                let _ = fs::remove_file(&path);
                return None;
            }
        };
        // SAFETY: `body` was produced by `Component::serialize` of this
        // engine configuration (the file name carries the engine key) and
        // its checksum matches what we wrote; the cache directory is
        // trusted (see the module docs). wasmtime itself also refuses
        // artifacts from another version or configuration.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize(engine, body) };
        match loaded {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "unusable compile cache entry; recompiling");
                let _ = fs::remove_file(&path);
                None
            }
        }
    }

    /// Saves a compilation: written to a temporary file, then renamed, so
    /// readers never see half a file.
    pub(crate) fn store(&self, digest: &Digest, component: &Component) -> Result<()> {
        let path = self.path(digest);
        let io_err = |op: &'static str| {
            let path = path.clone();
            move |source| Error::Cache { op, path, source }
        };
        let body = component
            .serialize()
            .map_err(|e| Error::Engine(format!("serializing a compiled component: {e}")))?;
        let tmp = self.dir.join(format!(
            ".{digest}-{}.{}.tmp",
            self.engine_key,
            std::process::id()
        ));
        let mut file = fs::File::create(&tmp).map_err(io_err("creating a compile cache entry"))?;
        file.write_all(MAGIC)
            .and_then(|()| file.write_all(&Sha256::digest(&body)))
            .and_then(|()| file.write_all(&body))
            .and_then(|()| file.sync_all())
            .map_err(io_err("writing a compile cache entry"))?;
        fs::rename(&tmp, &path).map_err(io_err("installing a compile cache entry"))
    }
}

fn checked_body(bytes: &[u8]) -> Option<&[u8]> {
    if bytes.len() < HEADER_BYTES || &bytes[..MAGIC.len()] != MAGIC {
        return None;
    }
    let (header, body) = bytes.split_at(HEADER_BYTES);
    (Sha256::digest(body).as_slice() == &header[MAGIC.len()..]).then_some(body)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn engine(epochs: bool) -> Engine {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true).epoch_interruption(epochs);
        Engine::new(&config).unwrap()
    }

    fn passthrough() -> Vec<u8> {
        eddy_test_plugins::read(eddy_test_plugins::PASSTHROUGH).unwrap()
    }

    #[test]
    fn engines_with_different_settings_use_different_entries() {
        let tmp = tempfile::tempdir().unwrap();
        let with = ArtifactCache::open(tmp.path(), &engine(true), "t").unwrap();
        let without = ArtifactCache::open(tmp.path(), &engine(false), "t").unwrap();
        let digest = Digest::of(&passthrough());
        assert_ne!(with.path(&digest), without.path(&digest));
    }

    #[test]
    fn an_entry_compiled_with_other_settings_is_recompiled_not_loaded() {
        // As if the key failed to tell two configurations apart: wasmtime's
        // own check must still refuse the foreign code, and the entry goes.
        let tmp = tempfile::tempdir().unwrap();
        let bytes = passthrough();
        let digest = Digest::of(&bytes);
        let (ours, theirs) = (engine(true), engine(false));
        let cache = ArtifactCache::open(tmp.path(), &ours, "t").unwrap();
        let foreign = Component::from_binary(&theirs, &bytes).unwrap();
        cache.store(&digest, &foreign).unwrap();
        assert!(cache.path(&digest).exists());
        assert!(cache.load(&ours, &digest).is_none());
        assert!(!cache.path(&digest).exists());
        let own = Component::from_binary(&ours, &bytes).unwrap();
        cache.store(&digest, &own).unwrap();
        assert!(cache.load(&ours, &digest).is_some());
    }
}
