//! `cargo run -p joplin-server-emulator`: the Joplin Server EMULATOR (a test double, not a
//! server) on 127.0.0.1 for manual runs and profiling. Prints its URL and the test account,
//! serves until Ctrl-C; everything is in memory and gone when it stops.

use joplin_server_emulator::{Emulator, EmulatorConfig};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // No options: any argument (`--help`) gets this text rather than a server.
    if std::env::args().len() > 1 {
        println!(
            "joplin-server-emulator: a Joplin Server EMULATOR (a test double, not a server) on \
             127.0.0.1, in memory, for manual runs and profiling. It takes no options: run it \
             without arguments; it prints its URL and test account and serves until Ctrl-C."
        );
        return;
    }
    let cfg = EmulatorConfig::default();
    let (email, password) = cfg.users[0].clone();
    let emu = Emulator::start(cfg).await;
    println!("Joplin Server EMULATOR at {}", emu.url());
    println!(
        "joplin-restore: --target joplin-server+{}/ --username {email} (password {password:?} via \
         JOPLIN_RESTORE_PASSWORD)",
        emu.url()
    );
    let _ = tokio::signal::ctrl_c().await;
    let s = emu.stats();
    println!("stopped after {} requests", s.total);
}
