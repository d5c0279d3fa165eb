//! Unpack the Backup plugin's 7z archives (plain or AES-256 with encrypted headers) and zip
//! files a user made by hand, into a private temporary folder.
//!
//! Unpacking is unavoidable here: a JEX must be seekable to read blobs on demand, and 7z
//! streams (LZMA2, AES) are not. The folder is created 0700 by `tempfile` and removed when the
//! [`tempfile::TempDir`] is dropped.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use sevenz_rust2::{ArchiveReader, Error as SzError, Password};
use tempfile::TempDir;

use super::password::{PasswordSource, Secret};

/// What the first bytes of a file say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Magic {
    SevenZ,
    Zip,
    Other,
}

pub fn sniff(path: &Path) -> Result<Magic> {
    let mut head = [0u8; 6];
    let mut f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let n = f.read(&mut head)?;
    Ok(match &head[..n] {
        [b'7', b'z', 0xbc, 0xaf, 0x27, 0x1c] => Magic::SevenZ,
        [b'P', b'K', 3, 4, ..] | [b'P', b'K', 5, 6, ..] => Magic::Zip,
        _ => Magic::Other,
    })
}

/// Every folder [`temp_dir`] made, for [`remove_unpacked`].
static UNPACKED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

pub fn temp_dir() -> Result<TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("joplin-restore-")
        .tempdir()
        .context("cannot create a temporary folder to unpack the backup (set TMPDIR to a folder with room)")?;
    if let Ok(mut all) = UNPACKED.lock() {
        all.push(dir.path().to_path_buf());
    }
    Ok(dir)
}

/// Remove every folder a backup was unpacked into, for an exit that runs no destructors (the
/// signal watcher's `process::exit`): the notes in them must not stay behind in the
/// temp folder. Folders already removed are skipped; one still being written into may need a
/// second pass.
pub fn remove_unpacked() {
    let Ok(all) = UNPACKED.lock() else { return };
    for dir in all.iter() {
        for _ in 0..3 {
            if std::fs::remove_dir_all(dir).is_ok() || !dir.exists() {
                break;
            }
        }
    }
}

/// A relative, `..`-free path inside `dest` for an archive entry name, or an error naming it.
fn safe_join(dest: &Path, archive: &Path, name: &str) -> Result<PathBuf> {
    let rel = Path::new(name);
    let ok = !name.is_empty()
        && !name.contains('\0')
        && !name.contains('\\')
        && rel.components().all(|c| matches!(c, Component::Normal(_)));
    if !ok {
        return Err(refusal(format!(
            "{}: entry {name:?} would land outside the unpack folder (absolute path or `..`); \
             refusing this archive. Use the archive exactly as the Backup plugin wrote it.",
            archive.display()
        )));
    }
    Ok(dest.join(rel))
}

/// Refuse to start writing `size` bytes (unpacking an archive, by the sizes its own index
/// gives; packing a RAW export) into `dest` when its filesystem has less free room: a
/// half-written backup fails anyway, and filling the disk of a machine that may also run the
/// sync server harms more than this run. The margin leaves room for the other files a run
/// writes (journal, snapshot). `needs` says what wants the room ("backup.7z unpacks to"),
/// `instead` what the user can do besides setting TMPDIR.
pub(super) fn check_room(needs: &str, dest: &Path, size: u64, instead: &str) -> Result<()> {
    match fs4::available_space(dest) {
        Ok(free) => refuse_without_room(needs, dest, size, free, instead),
        // No answer (unusual filesystem): writing reports a full disk when it happens.
        Err(_) => Ok(()),
    }
}

pub(super) fn refuse_without_room(
    needs: &str,
    dest: &Path,
    size: u64,
    free: u64,
    instead: &str,
) -> Result<()> {
    const MARGIN: u64 = 64 << 20;
    if size.saturating_add(MARGIN) > free {
        bail!(
            "{needs} {} but {} has only {} free. Set TMPDIR to a folder with more room{instead}.",
            human_bytes(size),
            dest.display(),
            human_bytes(free)
        );
    }
    Ok(())
}

/// What `check_room` says of an archive, and what else the user can do.
fn unpacking(archive: &Path) -> String {
    format!("{} unpacks to", archive.display())
}
const UNPACK_YOURSELF: &str = " (or unpack the archive yourself and pass the folder)";

pub(super) fn human_bytes(n: u64) -> String {
    const MIB: f64 = (1u64 << 20) as f64;
    if n >= 1 << 30 {
        format!("{:.1} GiB", n as f64 / (MIB * 1024.0))
    } else {
        format!("{:.1} MiB", n as f64 / MIB)
    }
}

/// Which side of an entry's copy failed: reading it from the archive (damage, a wrong
/// password: the backup's fault) or writing it to disk (no room, a quota: ours).
enum EntryError {
    Read(std::io::Error),
    Write(std::io::Error),
}

/// Write one entry; it keeps the time the archive stored for it, which dates a set of the
/// plugin's folder when its name carries no date (else every unpacked set would read "now").
fn write_entry(
    path: &Path,
    reader: &mut dyn Read,
    modified: Option<SystemTime>,
) -> std::result::Result<u64, EntryError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(EntryError::Write)?;
    }
    let mut out = File::create(path).map_err(EntryError::Write)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    loop {
        let got = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(got) => got,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(EntryError::Read(e)),
        };
        out.write_all(&buf[..got]).map_err(EntryError::Write)?;
        n += got as u64;
    }
    out.flush().map_err(EntryError::Write)?;
    if let Some(t) = modified {
        // Best effort: a file system that keeps no times dates the set by the unpacking.
        let _ = out.set_modified(t);
    }
    Ok(n)
}

/// A 7z entry's time (100 ns ticks since 1601, UTC).
fn nt_time(ticks: u64) -> Option<SystemTime> {
    const UNIX_EPOCH_IN_TICKS: u64 = 116_444_736_000_000_000;
    let since_epoch = ticks.checked_sub(UNIX_EPOCH_IN_TICKS)?;
    Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(since_epoch.saturating_mul(100)))
}

/// A zip entry's time (MS-DOS: local time, 2-second steps).
fn dos_time(t: zip::DateTime) -> Option<SystemTime> {
    use chrono::TimeZone;
    let date = chrono::NaiveDate::from_ymd_opt(t.year().into(), t.month().into(), t.day().into())?;
    let local = date.and_hms_opt(t.hour().into(), t.minute().into(), t.second().into())?;
    Some(chrono::Local.from_local_datetime(&local).earliest()?.into())
}

/// Unpack a 7z archive into `dest`, asking `passwords` only if the archive is encrypted: its
/// headers (7-Zip's `-mhe`, as the Backup plugin writes) or only its contents (7-Zip's default
/// `-p` without `-mhe`, which opens without a password and fails at the first entry).
pub fn extract_7z(archive: &Path, dest: &Path, passwords: &PasswordSource) -> Result<()> {
    if is_empty_7z(archive) {
        return Err(refusal(format!(
            "{} is an empty 7z archive: it holds no files. Use another copy of the backup, \
             or the .jex file itself.",
            archive.display()
        )));
    }
    let mut secret: Option<Secret> = None;
    let mut reader = match ArchiveReader::open(archive, Password::empty()) {
        Ok(r) => r,
        Err(SzError::PasswordRequired) => {
            let s = passwords.get(archive)?;
            let r = ArchiveReader::open(archive, Password::new(&s.value))
                .map_err(|e| sz_error(archive, e, Some(&s)))?;
            secret = Some(s);
            r
        }
        Err(e) => return Err(sz_error(archive, e, None)),
    };
    let declared: u64 = reader.archive().files.iter().map(|f| f.size).sum();
    check_room(&unpacking(archive), dest, declared, UNPACK_YOURSELF)?;
    match unpack_7z(&mut reader, archive, dest)? {
        Err(SzError::PasswordRequired) if secret.is_none() => {
            let s = passwords.get(archive)?;
            let mut reader = ArchiveReader::open(archive, Password::new(&s.value))
                .map_err(|e| sz_error(archive, e, Some(&s)))?;
            unpack_7z(&mut reader, archive, dest)?.map_err(|e| sz_error(archive, e, Some(&s)))
        }
        res => res.map_err(|e| sz_error(archive, e, secret.as_ref())),
    }
}

/// An archive of no files is only its 32-byte signature header, with a next-header size of
/// 0; the crate reports it as a read error ("failed to fill whole buffer"), which would send
/// the user looking for damage.
fn is_empty_7z(archive: &Path) -> bool {
    if std::fs::metadata(archive).map(|m| m.len()).ok() != Some(32) {
        return false;
    }
    let Ok(bytes) = std::fs::read(archive) else {
        return false;
    };
    bytes.len() == 32
        && bytes[..6] == [b'7', b'z', 0xBC, 0xAF, 0x27, 0x1C]
        && bytes[20..28] == [0u8; 8]
}

/// Write every entry of `reader` under `dest`. Our own errors (they name the entry) come out
/// as the outer `Err`; the crate's (password, damage) as the inner one, for the caller to
/// classify.
fn unpack_7z(
    reader: &mut ArchiveReader<File>,
    archive: &Path,
    dest: &Path,
) -> Result<std::result::Result<(), SzError>> {
    let mut ours: Option<anyhow::Error> = None;
    let res = reader.for_each_entries(|entry, data| {
        if entry.is_anti_item {
            return Ok(true);
        }
        let path = match safe_join(dest, archive, &entry.name) {
            Ok(p) => p,
            Err(e) => {
                ours = Some(e);
                return Ok(false);
            }
        };
        if entry.is_directory {
            if let Err(e) = std::fs::create_dir_all(&path) {
                ours = Some(anyhow::anyhow!("cannot create {}: {e}", path.display()));
                return Ok(false);
            }
            return Ok(true);
        }
        let modified = entry
            .has_last_modified_date
            .then(|| nt_time(entry.last_modified_date.into()))
            .flatten();
        match write_entry(&path, data, modified) {
            Ok(_) => Ok(true),
            // A failed read is the decoder's: pass it back to the crate so it is classified
            // (bad password, checksum).
            Err(EntryError::Read(e)) => Err(SzError::from(e)),
            Err(EntryError::Write(e)) => {
                ours = Some(anyhow::anyhow!(
                    "cannot unpack {} into {}: {e}. Set TMPDIR to a folder with more room \
                     (or unpack the archive yourself and pass the folder).",
                    archive.display(),
                    dest.display()
                ));
                Ok(false)
            }
        }
    });
    match ours {
        Some(e) => Err(e),
        None => Ok(res),
    }
}

/// Turn a 7z error into a message that names the archive and says what to do.
fn sz_error(archive: &Path, e: SzError, secret: Option<&Secret>) -> anyhow::Error {
    let a = archive.display();
    if let Some(s) = secret {
        // With encrypted headers a wrong key yields garbage, which can fail in many ways;
        // the password is by far the likeliest cause.
        return match e {
            SzError::FileOpen(io, _) => anyhow::anyhow!("cannot open {a}: {io}"),
            other => {
                tracing::debug!("{a}: 7z error with a password: {other}");
                anyhow::Error::from(crate::exit::Refusal(format!(
                    "{a}: wrong password (from {}), or the archive is damaged. Check the \
                     password the Backup plugin was set to use.",
                    s.origin
                )))
            }
        };
    }
    match e {
        SzError::FileOpen(io, _) => anyhow::anyhow!("cannot open {a}: {io}"),
        SzError::PasswordRequired => refusal(format!("{a} is password-protected")),
        SzError::UnsupportedCompressionMethod(m) => refusal(format!(
            "{a} uses the compression method {m}, which this tool cannot unpack. Unpack it \
             with 7-Zip and pass the unpacked folder."
        )),
        SzError::Io(io, _) | SzError::MaybeBadPassword(io) => refusal(format!(
            "{a}: the 7z archive is damaged or truncated ({io}). Use an intact copy of the backup."
        )),
        other => refusal(format!(
            "{a}: the 7z archive is damaged or truncated ({other:?}). Use an intact copy of the \
             backup."
        )),
    }
}

/// A backup that cannot be used as it is: refused (exit 4), as a damaged JEX is.
fn refusal(message: String) -> anyhow::Error {
    anyhow::Error::from(crate::exit::Refusal(message))
}

/// Unpack a zip file into `dest`. Only plain files and folders; no links, no encryption.
pub fn extract_zip(archive: &Path, dest: &Path) -> Result<()> {
    let a = archive.display();
    let file = File::open(archive).with_context(|| format!("cannot open {a}"))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| {
        refusal(format!(
            "{a}: the zip file is damaged or truncated ({e}). Use an intact copy."
        ))
    })?;
    // The sizes the central directory declares; an entry that unpacks to more is refused
    // below, at one byte past its declared size.
    let declared: u64 = (0..zip.len())
        .filter_map(|i| zip.by_index_raw(i).ok().map(|e| e.size()))
        .sum();
    check_room(&unpacking(archive), dest, declared, UNPACK_YOURSELF)?;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| match e {
            zip::result::ZipError::UnsupportedArchive(m) => refusal(format!(
                "{a}: {m}. Encrypted or unusual zip files are not supported: unzip it yourself \
                 and pass the folder."
            )),
            e => refusal(format!(
                "{a}: entry {i} is damaged ({e}). Use an intact copy."
            )),
        })?;
        let name = entry.name().to_string();
        if entry.is_symlink() {
            return Err(refusal(format!(
                "{a}: entry {name:?} is a link; refusing it. Zip only the backup's files."
            )));
        }
        let path = safe_join(dest, archive, name.trim_end_matches('/'))?;
        if entry.is_dir() {
            std::fs::create_dir_all(&path)?;
            continue;
        }
        let size = entry.size();
        let modified = entry.last_modified().and_then(dos_time);
        let written = match write_entry(
            &path,
            &mut (&mut entry).take(size.saturating_add(1)),
            modified,
        ) {
            Ok(n) => n,
            Err(EntryError::Read(e)) => {
                return Err(refusal(format!(
                    "{a}: entry {name:?} is damaged ({e}). Use an intact copy."
                )))
            }
            Err(EntryError::Write(e)) => anyhow::bail!(
                "{a}: cannot unpack {name:?} into {} ({e}). Set TMPDIR to a folder with more \
                 room (or unzip it yourself and pass the folder).",
                dest.display()
            ),
        };
        if written > size {
            return Err(refusal(format!(
                "{a}: entry {name:?} unpacks to more than the {size} bytes the zip declares: \
                 the zip is damaged or hostile. Use an intact copy."
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpacking_is_refused_without_room_and_the_message_says_where() {
        let (a, d) = (&unpacking(Path::new("/b/backup.7z")), Path::new("/tmp/x"));
        let refuse = |size, free| refuse_without_room(a, d, size, free, UNPACK_YOURSELF);
        let err = refuse(3 << 30, 1 << 30).unwrap_err().to_string();
        assert!(err.contains("backup.7z unpacks to 3.0 GiB"), "{err}");
        assert!(err.contains("/tmp/x has only 1.0 GiB free"), "{err}");
        assert!(err.contains("Set TMPDIR"), "{err}");
        // The margin counts: the journal and the snapshot need room too.
        assert!(refuse(1 << 30, (1 << 30) + (1 << 20)).is_err());
        assert!(refuse(1 << 30, 2 << 30).is_ok());
    }
}
