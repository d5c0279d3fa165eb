//! Checks on end-to-end encrypted filesystem targets.

use std::path::Path;

/// Every item file is in its encrypted form and every blob is a JED container: the target holds
/// no plaintext. Returns (items, blobs) checked.
pub fn assert_no_plaintext(target: &Path) -> (usize, usize) {
    let mut items = 0;
    for e in std::fs::read_dir(target).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            let text = std::fs::read_to_string(&p).unwrap();
            assert!(
                text.lines().any(|l| l == "encryption_applied: 1"),
                "{} is not encrypted:\n{text}",
                p.display()
            );
            items += 1;
        }
    }
    let mut blobs = 0;
    if let Ok(rd) = std::fs::read_dir(target.join(".resource")) {
        for e in rd {
            let p = e.unwrap().path();
            let data = std::fs::read(&p).unwrap();
            assert!(
                data.starts_with(b"JED01"),
                "{} is not a JED container",
                p.display()
            );
            blobs += 1;
        }
    }
    (items, blobs)
}
