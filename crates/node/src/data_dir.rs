//! The data directory and the files in it.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A node's data directory. Several nodes run side by side on one machine
/// by giving each its own.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The directory at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }

    /// The platform's usual place: `$XDG_DATA_HOME/nestwork`, else
    /// `~/.local/share/nestwork`, else `./nestwork-data`.
    pub fn default_location() -> Self {
        let base = std::env::var_os("XDG_DATA_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")));
        match base {
            Some(b) => DataDir::new(b.join("nestwork")),
            None => DataDir::new("nestwork-data"),
        }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The member's secret key.
    pub fn key_file(&self) -> PathBuf {
        self.root.join("member.key")
    }

    /// The device tag that makes this node's Automerge actor ids unique.
    pub fn device_file(&self) -> PathBuf {
        self.root.join("device")
    }

    /// The sled store.
    pub fn store_dir(&self) -> PathBuf {
        self.root.join("store")
    }

    /// Written by a running node: where its API listens.
    pub fn api_file(&self) -> PathBuf {
        self.root.join("api.json")
    }

    /// The API token (owner-only).
    pub fn token_file(&self) -> PathBuf {
        self.root.join("api.token")
    }

    /// The optional config file.
    pub fn config_file(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    /// Create the directory (owner-only) if it does not exist.
    pub fn ensure(&self) -> std::io::Result<()> {
        if !self.root.exists() {
            fs::create_dir_all(&self.root)?;
            fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700))?;
        }
        Ok(())
    }
}

/// Replace `path` with `contents` atomically: write a temporary file with
/// `mode`, flush it to disk, rename it over the target, flush the directory.
/// A crash leaves either the old file or the new one, never half of one.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

/// Create `path` with `contents` only if it does not exist yet; `false`
/// when it already existed.
pub fn create_new(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<bool> {
    if path.exists() {
        return Ok(false);
    }
    write_atomic(path, contents, mode)?;
    Ok(true)
}
