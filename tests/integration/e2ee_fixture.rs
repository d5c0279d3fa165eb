//! Known answers: a target encrypted by the real Joplin CLI 3.5.1 (`tests/fixtures/e2ee-target`,
//! password in `e2ee-target.README.md`) decrypts to exactly the plaintext of the same profile's
//! JEX export (`e2ee-source.jex`).

use std::path::PathBuf;

use joplin_restore::backup::Backup;
use joplin_restore::e2ee::{is_encrypted, jed, E2eeInfo, Keyring, Method};
use joplin_restore::item::{Item, ItemType};

const PASSWORD: &str = "correct horse battery staple";

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn info() -> E2eeInfo {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("e2ee-target/info.json")).unwrap())
            .unwrap();
    E2eeInfo::from_info(&v)
}

#[test]
fn readme_password_is_the_one_used() {
    let readme = std::fs::read_to_string(fixtures().join("e2ee-target.README.md")).unwrap();
    assert!(readme.contains(&format!("Master password: {PASSWORD}")));
}

#[test]
fn every_item_and_blob_decrypts_to_the_jex_plaintext() {
    let info = info();
    assert!(info.enabled);
    let ring = Keyring::unlock(&info, PASSWORD, "fixture").unwrap();
    assert_eq!(ring.active_id, "54be50af29fa4ae791819bc3d1c3c8e4");
    assert_eq!(ring.active_key().len(), 512);
    assert_eq!(
        (ring.string_method, ring.file_method),
        (Method::StringV1, Method::FileV1)
    );

    let backup = Backup::open(&fixtures().join("e2ee-source.jex")).unwrap();
    let dir = fixtures().join("e2ee-target");
    let mut seen = 0;
    for bi in &backup.items {
        let mine = backup.item(bi).unwrap();
        let raw = std::fs::read(dir.join(format!("{}.md", bi.id()))).unwrap();
        let outer = Item::parse_bytes(&raw).unwrap();
        assert!(
            is_encrypted(&outer),
            "{} is not encrypted on the target",
            bi.id()
        );
        let header = jed::parse_header(outer.get("encryption_cipher_text").unwrap()).unwrap();
        assert_eq!(header.method, Method::StringV1);
        let inner = ring.decrypt_item(&outer).unwrap();
        assert!(
            inner.same_content(&mine),
            "{} {}: fields differ: {:?}",
            bi.item_type(),
            bi.id(),
            inner.differing_fields(&mine)
        );
        if bi.item_type() == ItemType::Resource {
            let blob = std::fs::read(dir.join(".resource").join(bi.id())).unwrap();
            assert!(
                blob.starts_with(b"JED010000220954be50af"),
                "FileV1 with the active key"
            );
            assert_eq!(
                ring.decrypt_blob(&blob).unwrap(),
                backup.read_blob(bi.id()).unwrap()
            );
        }
        seen += 1;
    }
    assert_eq!(seen, 5, "folder, note, resource, tag, note-tag");
}

#[test]
fn our_encrypted_form_matches_joplins_outer_form_and_round_trips() {
    let ring = Keyring::unlock(&info(), PASSWORD, "fixture").unwrap();
    let backup = Backup::open(&fixtures().join("e2ee-source.jex")).unwrap();
    let dir = fixtures().join("e2ee-target");
    for bi in &backup.items {
        let mine = backup.item(bi).unwrap();
        let ours = ring.encrypt_item(&mine).unwrap();
        let theirs =
            Item::parse_bytes(&std::fs::read(dir.join(format!("{}.md", bi.id()))).unwrap())
                .unwrap();
        // Same keys in the same order, same clear values; only the ciphertext differs.
        let strip = |i: &Item| -> Vec<(String, String)> {
            i.props()
                .iter()
                .filter(|(k, _)| k != "encryption_cipher_text" && k != "updated_time")
                .cloned()
                .collect()
        };
        assert_eq!(strip(&ours), strip(&theirs), "{}", bi.id());
        assert_eq!(ours.title, None);
        let back = ring.decrypt_item(&ours).unwrap();
        assert!(
            back.same_content(&mine),
            "{:?}",
            back.differing_fields(&mine)
        );
    }
}

#[test]
fn wrong_password_is_refused_with_a_clear_message() {
    let e = Keyring::unlock(&info(), "not the password", "the fixture").unwrap_err();
    assert_eq!(
        joplin_restore::exit::code_for(&e),
        joplin_restore::exit::REFUSED
    );
    let msg = e.to_string();
    assert!(
        msg.contains("does not open") && msg.contains("54be50af29fa4ae791819bc3d1c3c8e4"),
        "{msg}"
    );
    assert!(msg.contains("Nothing was changed"), "{msg}");
}
