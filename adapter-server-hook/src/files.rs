//! Files named by OpenVPN or by a peer (`auth_control_file`, `auth_failed_reason_file`,
//! the via-file credentials file) and the hook's own state files.
//!
//! Rules: such a file is never opened through a symbolic link (`O_NOFOLLOW`: a link there
//! is refused, so it cannot redirect a write onto another file), must be a regular file
//! with one link (no FIFO that blocks, no device, no hard link to another file), and is
//! never created: OpenVPN creates the answer files before it runs the script, so an absent
//! one is an error (the answer is not written and OpenVPN denies the login when its
//! deferred-auth time runs out). Only the hook's own state files in its private state
//! directory are created (mode 0600, also without following links).
//!
//! The monitor writes the answer files of a handed-off login as root on behalf of the hook
//! (OpenVPN's user): it uses [`write_existing_owned_by`], which also requires the file to
//! belong to the user whose hook handed the login over, so a peer on the hand-off socket
//! can never make it write a file that this user could not write itself.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// `O_NOFOLLOW`: a symlink as the last component fails with `ELOOP`. `O_NONBLOCK`: opening
/// a FIFO never waits for a peer (the file is checked to be regular right after).
const FLAGS: i32 = libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;

fn check_regular(f: &File, owner: Option<u32>) -> std::io::Result<()> {
    let m = f.metadata()?;
    if !m.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    if m.nlink() != 1 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the file has other hard links",
        ));
    }
    if let Some(uid) = owner {
        if m.uid() != uid {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("owned by uid {}, not by uid {uid}", m.uid()),
            ));
        }
    }
    Ok(())
}

/// Replaces the contents of an existing regular file (never a link, never created).
pub fn write_existing(path: &Path, data: &[u8]) -> std::io::Result<()> {
    write_existing_checked(path, data, None)
}

/// [`write_existing`] for a file that must also belong to user `uid` (checked on the open
/// file, so the check and the write concern the same file).
pub fn write_existing_owned_by(path: &Path, data: &[u8], uid: u32) -> std::io::Result<()> {
    write_existing_checked(path, data, Some(uid))
}

fn write_existing_checked(path: &Path, data: &[u8], owner: Option<u32>) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .custom_flags(FLAGS)
        .open(path)?;
    check_regular(&f, owner)?;
    f.set_len(0)?;
    f.write_all(data)
}

/// Reads at most `max` bytes of an existing regular file (never through a link); a larger
/// file is an error.
pub fn read_bounded_nofollow(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(FLAGS)
        .open(path)?;
    check_regular(&f, None)?;
    let mut buf = Vec::new();
    f.take(max + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {max} bytes"),
        ));
    }
    Ok(buf)
}

/// Creates or replaces a private (0600) file, never through a link.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(FLAGS)
        .open(path)?;
    check_regular(&f, None)?;
    f.set_len(0)?;
    f.write_all(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_absent_files_and_fifos_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").expect("victim");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&victim, &link).expect("symlink");
        assert!(write_existing(&link, b"0").is_err());
        assert!(write_private(&link, b"0").is_err());
        assert!(read_bounded_nofollow(&link, 100).is_err());
        let hard = dir.path().join("hard");
        std::fs::hard_link(&victim, &hard).expect("hard link");
        assert!(write_existing(&hard, b"0").is_err());
        assert_eq!(std::fs::read(&victim).expect("victim"), b"precious");

        let absent = dir.path().join("absent");
        assert!(write_existing(&absent, b"1").is_err());
        assert!(!absent.exists(), "created a file");

        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        assert!(write_existing(&fifo, b"1").is_err());
        assert!(read_bounded_nofollow(&fifo, 10).is_err());

        let real = dir.path().join("real");
        std::fs::write(&real, b"old contents").expect("real");
        write_existing(&real, b"1").expect("write");
        assert_eq!(std::fs::read(&real).expect("read"), b"1");
        assert_eq!(read_bounded_nofollow(&real, 1).expect("read"), b"1");
        assert!(read_bounded_nofollow(&real, 0).is_err());
        let private = dir.path().join("private");
        write_private(&private, b"abc").expect("private");
        write_private(&private, b"d").expect("private again");
        assert_eq!(std::fs::read(&private).expect("read"), b"d");
    }

    #[test]
    fn owned_by_checks_the_owner_of_the_opened_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("acf");
        std::fs::write(&f, b"").expect("acf");
        let me = nix::unistd::geteuid().as_raw();
        write_existing_owned_by(&f, b"1", me).expect("own file");
        assert_eq!(std::fs::read(&f).expect("read"), b"1");
        let err = write_existing_owned_by(&f, b"0", me.wrapping_add(1)).expect_err("other uid");
        assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
        assert_eq!(std::fs::read(&f).expect("read"), b"1", "written anyway");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&f, &link).expect("symlink");
        assert!(write_existing_owned_by(&link, b"0", me).is_err());
        assert!(write_existing_owned_by(&dir.path().join("absent"), b"0", me).is_err());
    }
}
