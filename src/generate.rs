//! A generator of large, realistic backups (real JEX files) for tests and benchmarks: notes over
//! nested notebooks, to-dos, tags, attachments with a spread of sizes. Deterministic per seed.

use std::io::Write;
use std::path::Path;

use anyhow::Result;

use crate::item::format_time;

#[derive(Debug, Clone)]
pub struct GenSpec {
    pub notes: usize,
    pub notebooks: usize,
    pub tags: usize,
    pub attachments: usize,
    /// Average attachment size in bytes. Sizes are skewed like a real notebook's: most
    /// attachments are small (screenshots, icons), a few are large (PDFs, photos); see
    /// [`attachment_size`].
    pub attachment_bytes: usize,
    pub seed: u64,
}

impl Default for GenSpec {
    fn default() -> Self {
        GenSpec {
            notes: 100,
            notebooks: 10,
            tags: 5,
            attachments: 10,
            attachment_bytes: 64 * 1024,
            seed: 1,
        }
    }
}

/// Small xorshift PRNG: deterministic data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn id(&mut self) -> String {
        format!("{:016x}{:016x}", self.next(), self.next())
    }
}

const BASE_MS: i64 = 1_700_000_000_000;

/// One attachment size with mean ≈ `avg`: 60 % small (0.05–0.45×), 30 % medium (0.5–1.5×),
/// 10 % large (2–6×), each range uniform. Mean: 0.6·0.25 + 0.3·1 + 0.1·4 = 0.85, so scaled
/// by 1/0.85 to make `avg` the real average.
fn attachment_size(rng: &mut Rng, avg: usize) -> usize {
    let avg = avg.max(8) as f64 / 0.85;
    let u = (rng.next() % 1_000_000) as f64 / 1_000_000.0;
    let (lo, hi) = match rng.below(10) {
        0..=5 => (0.05, 0.45),
        6..=8 => (0.5, 1.5),
        _ => (2.0, 6.0),
    };
    ((lo + (hi - lo) * u) * avg).max(1.0) as usize
}

fn common(id: &str, t: i64) -> String {
    let ts = format_time(t);
    format!(
        "id: {id}\ncreated_time: {ts}\nupdated_time: {ts}\nuser_created_time: {ts}\nuser_updated_time: {ts}\nencryption_cipher_text: \nencryption_applied: 0"
    )
}

fn folder(id: &str, title: &str, parent: &str, t: i64) -> String {
    format!(
        "{title}\n\n{}\nparent_id: {parent}\nis_shared: 0\nshare_id: \nmaster_key_id: \nicon: \nuser_data: \ndeleted_time: 0\ntype_: 2",
        common(id, t)
    )
}

fn note(id: &str, title: &str, body: &str, parent: &str, todo: bool, t: i64) -> String {
    let ts = format_time(t);
    format!(
        "{title}\n\n{body}\n\nid: {id}\nparent_id: {parent}\ncreated_time: {ts}\nupdated_time: {ts}\nis_conflict: 0\nlatitude: 0.00000000\nlongitude: 0.00000000\naltitude: 0.0000\nauthor: \nsource_url: \nis_todo: {}\ntodo_due: 0\ntodo_completed: 0\nsource: joplin\nsource_application: joplin-restore-generator\napplication_data: \norder: {t}\nuser_created_time: {ts}\nuser_updated_time: {ts}\nencryption_cipher_text: \nencryption_applied: 0\nmarkup_language: 1\nis_shared: 0\nshare_id: \nconflict_original_id: \nmaster_key_id: \nuser_data: \ndeleted_time: 0\ntype_: 1",
        u8::from(todo)
    )
}

fn resource(id: &str, title: &str, size: usize, t: i64) -> String {
    let ts = format_time(t);
    format!(
        "{title}\n\nid: {id}\nmime: application/octet-stream\nfilename: \ncreated_time: {ts}\nupdated_time: {ts}\nuser_created_time: {ts}\nuser_updated_time: {ts}\nfile_extension: bin\nencryption_cipher_text: \nencryption_applied: 0\nencryption_blob_encrypted: 0\nsize: {size}\nis_shared: 0\nshare_id: \nmaster_key_id: \nuser_data: \nblob_updated_time: {t}\nocr_text: \nocr_details: \nocr_status: 0\nocr_error: \nocr_driver_id: 1\ntype_: 4"
    )
}

fn tag(id: &str, title: &str, t: i64) -> String {
    format!(
        "{title}\n\n{}\nis_shared: 0\nparent_id: \nuser_data: \ntype_: 5",
        common(id, t)
    )
}

fn note_tag(id: &str, note: &str, tag: &str, t: i64) -> String {
    let ts = format_time(t);
    format!(
        "id: {id}\nnote_id: {note}\ntag_id: {tag}\ncreated_time: {ts}\nupdated_time: {ts}\nuser_created_time: {ts}\nuser_updated_time: {ts}\nencryption_cipher_text: \nencryption_applied: 0\nis_shared: 0\ntype_: 6"
    )
}

fn append(b: &mut tar::Builder<impl Write>, name: &str, data: &[u8]) -> Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime((BASE_MS / 1000) as u64);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, name, data)?;
    Ok(())
}

/// Write a JEX to `out`. Returns the number of items written.
pub fn write_jex(spec: &GenSpec, out: &Path) -> Result<usize> {
    let mut rng = Rng(spec.seed.max(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let file = std::io::BufWriter::new(std::fs::File::create(out)?);
    let mut b = tar::Builder::new(file);
    let mut items = 0;
    let mut t = BASE_MS;
    let mut folders: Vec<String> = Vec::new();
    for i in 0..spec.notebooks.max(1) {
        let id = rng.id();
        // Nest up to three levels: each notebook's parent is an earlier one, or none.
        let parent = if i == 0 || rng.below(3) == 0 {
            String::new()
        } else {
            folders[rng.below(folders.len().min(i))].clone()
        };
        t += 7;
        append(
            &mut b,
            &format!("{id}.md"),
            folder(&id, &format!("Notebook {i}"), &parent, t).as_bytes(),
        )?;
        folders.push(id);
        items += 1;
    }
    let mut tags = Vec::new();
    for i in 0..spec.tags {
        let id = rng.id();
        t += 3;
        append(
            &mut b,
            &format!("{id}.md"),
            tag(&id, &format!("tag-{i}"), t).as_bytes(),
        )?;
        tags.push(id);
        items += 1;
    }
    let mut resources = Vec::new();
    for i in 0..spec.attachments {
        let id = rng.id();
        let size = attachment_size(&mut rng, spec.attachment_bytes);
        let mut blob = vec![0u8; size];
        for chunk in blob.chunks_mut(8) {
            let v = rng.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        t += 5;
        append(&mut b, &format!("resources/{id}.bin"), &blob)?;
        append(
            &mut b,
            &format!("{id}.md"),
            resource(&id, &format!("file-{i}.bin"), size, t).as_bytes(),
        )?;
        resources.push(id);
        items += 1;
    }
    for i in 0..spec.notes {
        let id = rng.id();
        let parent = &folders[rng.below(folders.len())];
        let mut body =
            format!("# Note {i}\n\nSome *markdown* text for note {i}.\n\n- item a\n- item b\n");
        for _ in 0..rng.below(6) {
            body.push_str(&format!(
                "\nParagraph {:x} with some words in it.\n",
                rng.next()
            ));
        }
        if !resources.is_empty() && i < resources.len() {
            body.push_str(&format!("\n[attachment](:/{})\n", resources[i]));
        }
        t += 11;
        let todo = rng.below(10) == 0;
        append(
            &mut b,
            &format!("{id}.md"),
            note(&id, &format!("Note {i}"), &body, parent, todo, t).as_bytes(),
        )?;
        items += 1;
        if !tags.is_empty() && rng.below(4) == 0 {
            let tid = rng.id();
            let tag_id = &tags[rng.below(tags.len())];
            append(
                &mut b,
                &format!("{tid}.md"),
                note_tag(&tid, &id, tag_id, t).as_bytes(),
            )?;
            items += 1;
        }
    }
    b.into_inner()?.flush()?;
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::Backup;
    use crate::validate::validate;

    #[test]
    fn generated_backups_validate_cleanly_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.jex");
        let spec = GenSpec {
            notes: 200,
            notebooks: 12,
            tags: 4,
            attachments: 6,
            attachment_bytes: 2000,
            seed: 7,
        };
        let n = write_jex(&spec, &p).unwrap();
        let b = Backup::open(&p).unwrap();
        assert_eq!(b.items.len(), n);
        let v = validate(&b);
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        for bi in &b.items {
            let raw = b.raw(bi).unwrap();
            assert_eq!(b.item(bi).unwrap().serialize().as_bytes(), &raw[..]);
        }
        assert_eq!(b.blobs.len(), 6);
    }

    #[test]
    fn attachment_sizes_average_to_the_spec_and_are_skewed() {
        let mut rng = Rng(12345);
        let sizes: Vec<usize> = (0..20_000)
            .map(|_| attachment_size(&mut rng, 100_000))
            .collect();
        let mean = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
        assert!((90_000.0..110_000.0).contains(&mean), "mean {mean}");
        let small = sizes.iter().filter(|&&s| s < 100_000).count();
        assert!(small > sizes.len() / 2, "most are below the mean");
        assert!(sizes.iter().any(|&s| s > 400_000), "a few are large");
    }
}
