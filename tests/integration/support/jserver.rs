//! Joplin Server EMULATOR helpers for the end-to-end tests (the emulator itself is the crate
//! `tests/joplin-server-emulator`), and a generator of synthetic JEX files.

use std::path::Path;
use std::process::Output;

pub use joplin_server_emulator::{Emulator, EmulatorConfig};

pub const USER: &str = "admin@localhost";
pub const PASSWORD: &str = "admin";

/// An emulator on a background runtime; keep the runtime alive as long as the emulator.
pub fn start(cfg: EmulatorConfig) -> (tokio::runtime::Runtime, Emulator) {
    Emulator::start_blocking(cfg)
}

pub fn target(emu: &Emulator) -> String {
    format!("joplin-server+{}/", emu.url())
}

/// Point a real Joplin CLI profile at the emulator (`sync.target 9`, Joplin Server): it logs
/// in, takes its locks and downloads through the emulator's `delta` feed.
pub fn use_emulator(p: &super::joplin::Profile, emu: &Emulator) {
    p.configure(serde_json::json!({
        "sync.target": 9,
        "sync.9.path": emu.url(),
        "sync.9.username": USER,
        "sync.9.password": PASSWORD,
    }));
}

/// Run our binary against the emulator with the given password (env, never argv).
pub fn jr_server(emu: &Emulator, password: &str, args: &[&str]) -> Output {
    let t = target(emu);
    let mut all: Vec<&str> = args.to_vec();
    all.extend_from_slice(&["--target", &t, "--username", USER]);
    super::jr_env(&all, &[("JOPLIN_RESTORE_PASSWORD", password)])
}

fn folder(id: &str, title: &str) -> String {
    format!(
        "{title}\n\nid: {id}\ncreated_time: 2024-01-01T00:00:00.000Z\nupdated_time: 2024-01-01T00:00:00.000Z\n\
         user_created_time: 2024-01-01T00:00:00.000Z\nuser_updated_time: 2024-01-01T00:00:00.000Z\n\
         encryption_cipher_text: \nencryption_applied: 0\nparent_id: \nis_shared: 0\nshare_id: \n\
         master_key_id: \nicon: \nuser_data: \ndeleted_time: 0\ntype_: 2"
    )
}

fn note(id: &str, parent: &str, title: &str, body: &str) -> String {
    format!(
        "{title}\n\n{body}\n\nid: {id}\nparent_id: {parent}\ncreated_time: 2024-01-01T00:00:00.000Z\n\
         updated_time: 2024-01-01T00:00:00.000Z\nis_conflict: 0\nlatitude: 0.00000000\n\
         longitude: 0.00000000\naltitude: 0.0000\nauthor: \nsource_url: \nis_todo: 0\ntodo_due: 0\n\
         todo_completed: 0\nsource: joplin\nsource_application: net.cozic.joplin-cli\n\
         application_data: \norder: 0\nuser_created_time: 2024-01-01T00:00:00.000Z\n\
         user_updated_time: 2024-01-01T00:00:00.000Z\nencryption_cipher_text: \n\
         encryption_applied: 0\nmarkup_language: 1\nis_shared: 0\nshare_id: \n\
         conflict_original_id: \nmaster_key_id: \nuser_data: \ndeleted_time: 0\ntype_: 1"
    )
}

pub fn note_id(i: usize) -> String {
    format!("{:032x}", 0x1000_0000 + i)
}

pub const FOLDER_ID: &str = "f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0";

/// A JEX with one notebook and `notes` notes; note `big` (if any) gets a body of `big_len` bytes.
pub fn write_jex(path: &Path, notes: usize, big: Option<(usize, usize)>) {
    let file = std::fs::File::create(path).unwrap();
    let mut tar = tar::Builder::new(file);
    let mut add = |name: String, text: String| {
        let mut h = tar::Header::new_ustar();
        h.set_size(text.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        tar.append_data(&mut h, name, text.as_bytes()).unwrap();
    };
    add(format!("{FOLDER_ID}.md"), folder(FOLDER_ID, "Generated"));
    for i in 0..notes {
        let id = note_id(i);
        let body = match big {
            Some((b, len)) if b == i => "z".repeat(len),
            _ => format!("Body of generated note {i}."),
        };
        add(
            format!("{id}.md"),
            note(&id, FOLDER_ID, &format!("Note {i}"), &body),
        );
    }
    tar.into_inner().unwrap();
}
