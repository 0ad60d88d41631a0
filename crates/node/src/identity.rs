//! The member key and the device tag, on disk.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nestwork_core::MemberKey;

use crate::data_dir::{create_new, write_atomic, DataDir};

/// What can go wrong with the identity files.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// `init` on a directory that already has a key.
    #[error("{dir} already has a member key ({id}); nothing was changed")]
    AlreadyInitialised {
        /// The data directory.
        dir: String,
        /// The existing member id.
        id: String,
    },
    /// No key yet.
    #[error("no member key in {0}")]
    NotInitialised(String),
    /// Import over an existing key without `--force`.
    #[error("{dir} already has a member key ({existing}); importing {incoming} would replace it")]
    WouldReplace {
        /// The data directory.
        dir: String,
        /// The key in place.
        existing: String,
        /// The key being imported.
        incoming: String,
    },
    /// Export to a file that exists without `--force`.
    #[error("{0} already exists")]
    WouldOverwrite(String),
    /// A key file that does not parse.
    #[error("{file}: {reason}")]
    BadKeyFile {
        /// The file.
        file: String,
        /// Why.
        reason: String,
    },
    /// The disk.
    #[error("{what} {path}: {source}")]
    Io {
        /// What we were doing.
        what: &'static str,
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> IdentityError + 'a {
    move |source| IdentityError::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

/// Create a new member key in `dir`; refuses if one exists.
pub fn init(dir: &DataDir) -> Result<MemberKey, IdentityError> {
    if let Ok(existing) = load(dir) {
        return Err(IdentityError::AlreadyInitialised {
            dir: dir.root().display().to_string(),
            id: existing.id().to_string(),
        });
    }
    dir.ensure().map_err(io("creating", dir.root()))?;
    let key = MemberKey::generate();
    let path = dir.key_file();
    if !create_new(&path, key.to_file_text().as_bytes(), 0o600).map_err(io("writing", &path))? {
        // Present but unreadable as a key: never overwrite it silently.
        return Err(load(dir)
            .err()
            .unwrap_or(IdentityError::NotInitialised(path.display().to_string())));
    }
    device_tag(dir)?;
    Ok(key)
}

/// The member key of `dir`.
pub fn load(dir: &DataDir) -> Result<MemberKey, IdentityError> {
    let path = dir.key_file();
    if !path.exists() {
        return Err(IdentityError::NotInitialised(
            dir.root().display().to_string(),
        ));
    }
    read_key_file(&path)
}

/// The member key of `dir`, created on first run.
pub fn load_or_init(dir: &DataDir) -> Result<(MemberKey, bool), IdentityError> {
    match load(dir) {
        Ok(key) => Ok((key, false)),
        Err(IdentityError::NotInitialised(_)) => init(dir).map(|k| (k, true)),
        Err(e) => Err(e),
    }
}

/// Read and parse a key file, warning if others can read it.
pub fn read_key_file(path: &Path) -> Result<MemberKey, IdentityError> {
    let meta = std::fs::metadata(path).map_err(io("reading", path))?;
    if meta.len() > 4096 {
        return Err(IdentityError::BadKeyFile {
            file: path.display().to_string(),
            reason: "too large to be a key file".into(),
        });
    }
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(file = %path.display(), "key file is readable by others; run chmod 600 on it");
    }
    let text = std::fs::read_to_string(path).map_err(|e| IdentityError::BadKeyFile {
        file: path.display().to_string(),
        reason: format!("not a readable text file ({e})"),
    })?;
    MemberKey::from_file_text(&text).map_err(|e| IdentityError::BadKeyFile {
        file: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Write the key of `dir` to `file` (owner-only).
pub fn export(dir: &DataDir, file: &Path, force: bool) -> Result<MemberKey, IdentityError> {
    let key = load(dir)?;
    if file.exists() && !force {
        return Err(IdentityError::WouldOverwrite(file.display().to_string()));
    }
    write_atomic(file, key.to_file_text().as_bytes(), 0o600).map_err(io("writing", file))?;
    Ok(key)
}

/// Restore the key in `file` into `dir`. Replacing a different existing key
/// needs `force`; the file is fully checked before anything is written.
pub fn import(dir: &DataDir, file: &Path, force: bool) -> Result<MemberKey, IdentityError> {
    let incoming = read_key_file(file)?;
    match load(dir) {
        Ok(existing) if existing.id() == incoming.id() => return Ok(existing),
        Ok(existing) if !force => {
            return Err(IdentityError::WouldReplace {
                dir: dir.root().display().to_string(),
                existing: existing.id().to_string(),
                incoming: incoming.id().to_string(),
            })
        }
        _ => {}
    }
    dir.ensure().map_err(io("creating", dir.root()))?;
    let path = dir.key_file();
    write_atomic(&path, incoming.to_file_text().as_bytes(), 0o600).map_err(io("writing", &path))?;
    device_tag(dir)?;
    Ok(incoming)
}

/// This device's tag, created on first use. Two devices of one member get
/// different tags, so their Automerge actor ids never collide.
pub fn device_tag(dir: &DataDir) -> Result<[u8; 8], IdentityError> {
    let path = dir.device_file();
    let fresh: [u8; 8] = rand::random();
    create_new(&path, hex::encode(fresh).as_bytes(), 0o600).map_err(io("writing", &path))?;
    let text = std::fs::read_to_string(&path).map_err(io("reading", &path))?;
    hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| IdentityError::BadKeyFile {
            file: path.display().to_string(),
            reason: "device tag is not 16 hex characters".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_export_import_round_trip() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        let dir_a = DataDir::new(a.path().join("node"));
        let dir_b = DataDir::new(b.path().join("node"));
        let key = init(&dir_a).expect("init");
        assert!(matches!(
            init(&dir_a),
            Err(IdentityError::AlreadyInitialised { .. })
        ));
        let mode = std::fs::metadata(dir_a.key_file())
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        let backup = a.path().join("backup.key");
        export(&dir_a, &backup, false).expect("export");
        assert!(matches!(
            export(&dir_a, &backup, false),
            Err(IdentityError::WouldOverwrite(_))
        ));

        let other = init(&dir_b).expect("init b");
        assert!(matches!(
            import(&dir_b, &backup, false),
            Err(IdentityError::WouldReplace { .. })
        ));
        assert_eq!(
            load(&dir_b).expect("load").id(),
            other.id(),
            "refused import changed the key"
        );
        assert_eq!(import(&dir_b, &backup, true).expect("force").id(), key.id());
        assert_eq!(load(&dir_b).expect("load").id(), key.id());
    }

    #[test]
    fn a_malformed_key_file_is_refused_and_nothing_changes() {
        let a = tempfile::tempdir().expect("tempdir");
        let dir = DataDir::new(a.path().join("node"));
        let key = init(&dir).expect("init");
        let bad = a.path().join("bad.key");
        std::fs::write(&bad, "not a key").expect("write");
        assert!(matches!(
            import(&dir, &bad, true),
            Err(IdentityError::BadKeyFile { .. })
        ));
        assert_eq!(load(&dir).expect("load").id(), key.id());
    }

    #[test]
    fn device_tag_is_stable() {
        let a = tempfile::tempdir().expect("tempdir");
        let dir = DataDir::new(a.path());
        assert_eq!(
            device_tag(&dir).expect("tag"),
            device_tag(&dir).expect("tag")
        );
    }
}
