//! Confinement of requested names to a served root (shared by TFTP and the HTTP boot server).

use std::path::{Component, Path, PathBuf};

/// Why a requested name is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error("file not found")]
    NotFound,
    #[error("access violation")]
    AccessViolation,
}

/// Longest name we look up (a DHCP boot file or pxelinux config name is far shorter).
const MAX_NAME: usize = 1024;

/// Resolves a client-supplied name against `root` without touching sockets.
///
/// Leading slashes are stripped (a PXE ROM may ask for `/pxelinux.0`; like tftpd-hpa's
/// `--secure`, the root is `/`), backslashes count as separators, and any `..` component, NUL
/// or over-long name is an access violation. The survivor is canonicalized and must still lie
/// inside the canonicalized root and be a regular file, so a symlink out of the root is refused
/// even when its target exists.
pub fn resolve(root: &Path, requested: &str) -> Result<PathBuf, PathError> {
    if requested.len() > MAX_NAME || requested.contains('\0') {
        return Err(PathError::AccessViolation);
    }
    let normalized = requested.replace('\\', "/");
    let rel = Path::new(normalized.trim_start_matches('/'));
    let mut joined = root.to_path_buf();
    for comp in rel.components() {
        match comp {
            Component::Normal(c) => joined.push(c),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(PathError::AccessViolation);
            }
        }
    }
    if joined == root {
        return Err(PathError::NotFound);
    }
    let root = root.canonicalize().map_err(|_| PathError::NotFound)?;
    let real = match joined.canonicalize() {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(PathError::AccessViolation);
        }
        Err(_) => return Err(PathError::NotFound),
    };
    if !real.starts_with(&root) {
        return Err(PathError::AccessViolation);
    }
    match real.metadata() {
        Ok(m) if m.is_file() => Ok(real),
        Ok(_) => Err(PathError::NotFound),
        Err(_) => Err(PathError::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confinement() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        std::fs::create_dir_all(root.join("pxelinux.cfg")).unwrap();
        std::fs::write(root.join("pxelinux.0"), b"x").unwrap();
        std::fs::write(root.join("pxelinux.cfg/default"), b"x").unwrap();
        std::fs::write(outer.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(outer.path().join("secret"), root.join("escape")).unwrap();
        std::os::unix::fs::symlink(root.join("pxelinux.0"), root.join("inside")).unwrap();

        let ok = |p: &str| resolve(&root, p).unwrap();
        assert!(ok("pxelinux.0").ends_with("pxelinux.0"));
        assert!(ok("/pxelinux.0").ends_with("pxelinux.0"));
        assert!(ok("pxelinux.cfg\\default").ends_with("default"));
        assert!(ok("./inside").ends_with("pxelinux.0"));
        let err = |p: &str| resolve(&root, p).unwrap_err();
        assert_eq!(err("../secret"), PathError::AccessViolation);
        assert_eq!(err("pxelinux.cfg/../../secret"), PathError::AccessViolation);
        assert_eq!(err("..\\secret"), PathError::AccessViolation);
        assert_eq!(err("escape"), PathError::AccessViolation);
        assert_eq!(err("/etc/passwd"), PathError::NotFound);
        assert_eq!(err("pxelinux.cfg"), PathError::NotFound);
        assert_eq!(err("missing"), PathError::NotFound);
        assert_eq!(err("/"), PathError::NotFound);
        assert_eq!(err("a\0b"), PathError::AccessViolation);
    }
}
