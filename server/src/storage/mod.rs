//! The content-addressed artifact store under the data directory.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Storage {
    root: PathBuf,
}

impl Storage {
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let root = data_dir.to_path_buf();
        std::fs::create_dir_all(root.join("artifact"))?;
        std::fs::create_dir_all(root.join("tmp"))?;
        Ok(Storage { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `artifact/ab/cdef...` for `sha256:abcdef...`: two-level fan-out like Pulp's.
    pub fn key_for(sha256_hex: &str) -> String {
        format!("artifact/{}/{}", &sha256_hex[..2], &sha256_hex[2..])
    }

    pub fn path_of(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// Bytes free on the file system holding the store.
    #[expect(unsafe_code, reason = "statvfs has no safe wrapper in std")]
    pub fn free_bytes(&self) -> Option<u64> {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(self.root.as_os_str().as_bytes()).ok()?;
        let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `path` is a valid NUL-terminated string and `stat` is a valid out-pointer.
        let rc = unsafe { libc::statvfs(path.as_ptr(), &mut stat) };
        (rc == 0).then(|| u64::from(stat.f_bavail) * u64::from(stat.f_frsize))
    }
}
