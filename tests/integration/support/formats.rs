//! Backup-plugin layouts under `tests/fixtures/backup-sets/`, and helpers to restore them.

use std::path::{Path, PathBuf};

pub fn sets() -> PathBuf {
    super::repo().join("tests/fixtures/backup-sets")
}

/// The plugin's folder for one layout (`folder`, `per-item-7z`, …).
pub fn layout(name: &str) -> PathBuf {
    sets().join(name).join("JoplinBackup")
}

/// The password of `one-7z-password`, as the fixture's `PASSWORD.txt` states it.
pub fn password() -> String {
    let t = std::fs::read_to_string(sets().join("one-7z-password/PASSWORD.txt")).unwrap();
    t.trim_end()
        .rsplit_once(": ")
        .map(|(_, p)| p.to_string())
        .expect("PASSWORD.txt reads `Password of …: <password>`")
}

/// Zip a folder the way a user would (paths relative to its parent, so the zip holds the
/// folder itself).
pub fn zip_folder(dir: &Path, zip_path: &Path) {
    use std::io::Write;
    let f = std::fs::File::create(zip_path).unwrap();
    let mut z = zip::ZipWriter::new(f);
    let base = dir.parent().unwrap();
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    fn walk(
        z: &mut zip::ZipWriter<std::fs::File>,
        base: &Path,
        dir: &Path,
        opts: zip::write::SimpleFileOptions,
    ) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p
                .strip_prefix(base)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            if p.is_dir() {
                z.add_directory(format!("{rel}/"), opts).unwrap();
                walk(z, base, &p, opts);
            } else {
                // As zip tools do: the file's time goes along (MS-DOS: local time).
                let t = std::fs::metadata(&p).unwrap().modified().unwrap();
                let t = chrono::DateTime::<chrono::Local>::from(t).naive_local();
                use chrono::{Datelike, Timelike};
                let when = zip::DateTime::from_date_and_time(
                    t.year() as u16,
                    t.month() as u8,
                    t.day() as u8,
                    t.hour() as u8,
                    t.minute() as u8,
                    t.second() as u8,
                )
                .unwrap();
                z.start_file(rel, opts.last_modified_time(when)).unwrap();
                z.write_all(&std::fs::read(&p).unwrap()).unwrap();
            }
        }
    }
    walk(&mut z, base, dir, opts);
    z.finish().unwrap();
}
