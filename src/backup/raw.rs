//! RAW exports: the Backup plugin's `exportFormat = raw` writes the notes as Joplin's RAW
//! export, a folder of `<id>.md` items and `resources/<id>.<ext>` blobs. That is exactly what
//! a JEX holds (Joplin makes a JEX by taring a RAW export), IDs included, so a RAW export is
//! packed into a JEX in the private temp folder and read as one. The Markdown + Front Matter
//! export (`md_frontmatter`) has no IDs and cannot be restored: [`is_raw_export`] tells them
//! apart.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Entries a RAW export never holds this deep; a deeper tree is not one.
const MAX_DEPTH: usize = 2;

/// Whether `dir` holds a RAW export: at least one `<32 hex>.md` item file at its top.
pub fn is_raw_export(dir: &Path) -> bool {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return false;
    };
    rd.flatten().any(|e| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        let is_file = e.file_type().map(|t| t.is_file()).unwrap_or(false);
        is_file
            && name
                .strip_suffix(".md")
                .is_some_and(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
    })
}

/// Whether `dir` holds Markdown files anywhere (a Markdown + Front Matter export), as opposed
/// to nothing at all.
pub fn holds_markdown(dir: &Path) -> bool {
    fn walk(dir: &Path, depth: usize) -> bool {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return false;
        };
        rd.flatten().any(|e| {
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            if is_dir {
                depth < 8 && walk(&e.path(), depth + 1)
            } else {
                e.file_name().to_string_lossy().ends_with(".md")
            }
        })
    }
    walk(dir, 0)
}

/// Pack the RAW export in `dir` into the JEX `jex`: its top-level files and those in
/// `resources/`, as a JEX lays them out. Anything else (a link, a device, a deeper folder) is
/// refused by name: a JEX holds only files, and a restore must not read a file elsewhere
/// through a link.
pub fn pack(dir: &Path, jex: &Path) -> Result<PathBuf> {
    let temp = jex.parent().unwrap_or(Path::new("."));
    let size = super::locate::tree_size(dir, 0);
    super::archive::check_room(&packing(dir), temp, size, "")?;
    let no_room = |e: std::io::Error| -> anyhow::Error {
        if e.kind() == std::io::ErrorKind::StorageFull {
            anyhow::anyhow!(
                "no room left in {} to pack the RAW export {} into a JEX. Set TMPDIR to a \
                 folder with more room.",
                temp.display(),
                dir.display()
            )
        } else {
            anyhow::anyhow!("cannot write {}: {e}", jex.display())
        }
    };
    let out = File::create(jex).map_err(no_room)?;
    let mut tar = tar::Builder::new(BufWriter::new(out));
    tar.follow_symlinks(false);
    add_files(&mut tar, dir, "", 0, &no_room)?;
    tar.into_inner()
        .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
        .and_then(|f| f.sync_all())
        .map_err(no_room)?;
    Ok(jex.to_path_buf())
}

/// What `check_room` says of a RAW export being packed.
fn packing(dir: &Path) -> String {
    format!("the RAW export {}, packed into a JEX, takes", dir.display())
}

fn add_files(
    tar: &mut tar::Builder<BufWriter<File>>,
    dir: &Path,
    prefix: &str,
    depth: usize,
    no_room: &dyn Fn(std::io::Error) -> anyhow::Error,
) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("cannot list {}", dir.display()))?;
    // Name order: the same folder always packs into the same JEX.
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let kind = e
            .file_type()
            .with_context(|| format!("cannot read {}", path.display()))?;
        if kind.is_dir() && depth + 1 < MAX_DEPTH {
            add_files(tar, &path, &format!("{prefix}{name}/"), depth + 1, no_room)?;
        } else if kind.is_file() {
            // Opened here: a failed read names the user's file, a full disk the temp folder.
            let mut file =
                File::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
            tar.append_file(format!("{prefix}{name}"), &mut file)
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::StorageFull => no_room(e),
                    _ => anyhow::anyhow!("cannot read {}: {e}", path.display()),
                })?;
        } else {
            crate::refuse!(
                "{}: {} in a RAW export, which holds only files (`<id>.md` and \
                 `resources/<id>.<ext>`). Remove it or restore from an untouched copy of the \
                 backup.",
                path.display(),
                if kind.is_dir() {
                    "a folder nested too deep"
                } else {
                    "a link or special file"
                }
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raw_export_packs_into_a_jex_with_its_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let raw = tmp.path().join("notes");
        std::fs::create_dir_all(raw.join("resources")).unwrap();
        let id = "0123456789abcdef0123456789abcdef";
        std::fs::write(raw.join(format!("{id}.md")), "T\n\nid: x\ntype_: 2").unwrap();
        std::fs::write(raw.join("resources").join(format!("{id}.png")), b"png").unwrap();
        assert!(is_raw_export(&raw));
        assert!(!is_raw_export(&raw.join("resources")));

        let jex = pack(&raw, &tmp.path().join("packed")).unwrap();
        let mut names: Vec<String> = tar::Archive::new(File::open(&jex).unwrap())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [format!("{id}.md"), format!("resources/{id}.png")],
            "directories are not entries; names are relative"
        );
    }

    #[test]
    fn markdown_exports_are_no_raw_exports() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("Notebook")).unwrap();
        std::fs::write(
            tmp.path().join("Notebook/A note.md"),
            "---\ntitle: A\n---\n",
        )
        .unwrap();
        std::fs::write(tmp.path().join("README.md"), "x").unwrap();
        assert!(!is_raw_export(tmp.path()));
    }

    #[test]
    fn packing_without_room_says_to_set_tmpdir() {
        let refuse = |size, free| {
            let needs = packing(Path::new("set/notes"));
            super::super::archive::refuse_without_room(&needs, Path::new("/tmp/x"), size, free, "")
        };
        let err = refuse(5 << 30, 1 << 30).unwrap_err().to_string();
        assert!(
            err.contains("set/notes") && err.contains("5.0 GiB") && err.contains("TMPDIR"),
            "{err}"
        );
        refuse(1 << 20, 1 << 30).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_link_inside_is_refused_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        let raw = tmp.path().join("notes");
        std::fs::create_dir_all(raw.join("resources")).unwrap();
        std::fs::write(raw.join("0123456789abcdef0123456789abcdef.md"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", raw.join("resources/a.txt")).unwrap();
        let err = pack(&raw, &tmp.path().join("packed")).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("resources/a.txt") && msg.contains("link"),
            "{msg}"
        );
        assert!(crate::exit::is_refusal(&err), "a refusal, exit 4: {msg}");
    }
}
