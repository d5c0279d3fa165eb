//! `cargo run -p joplin-server-emulator -- [OPTIONS]`: the Joplin Server EMULATOR (a test
//! double, not a server) on 127.0.0.1 for manual runs and profiling. Prints its URL and the
//! test account, serves until Ctrl-C; everything is in memory and gone when it stops.

use std::time::Duration;

use joplin_server_emulator::{Emulator, EmulatorConfig};

const HELP: &str = "\
joplin-server-emulator: a Joplin Server EMULATOR (a test double, not a server) on 127.0.0.1, in
memory, for manual runs and profiling. It prints its URL and test account and serves until
Ctrl-C.

Options (the defaults are what a real Joplin Server 3.1 does for its admin user):
  --port N               listen on 127.0.0.1:N (default: a free port)
  --max-item-size BYTES  the user's max_item_size: larger uploads get 413 (default 0, unlimited)
  --login-limit N        logins allowed per minute and client IP before 429 (default 10;
                         0 = no limit, as a server run with JOPLIN_IS_TESTING=1)
  --lock-ttl SECS        how long a lock lives without a refresh (default 180)
  --share ID             a share id that exists (items with another share_id get 422);
                         repeatable
  -h, --help             this text";

fn parse(args: &[String]) -> Result<EmulatorConfig, String> {
    let mut cfg = EmulatorConfig::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "-h" || a == "--help" {
            return Err(String::new());
        }
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let number = |name: &str, v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{name}: {v:?} is not a whole number"))
        };
        match a.as_str() {
            "--port" => {
                let v = value(a)?;
                cfg.port = number(a, v)?
                    .try_into()
                    .map_err(|_| "--port: above 65535".to_string())?;
            }
            "--max-item-size" => cfg.max_item_size = number(a, value(a)?)? as usize,
            "--login-limit" => {
                cfg.login_limit = match number(a, value(a)?)? {
                    0 => u32::MAX,
                    n => n.min(u32::MAX as u64) as u32,
                }
            }
            "--lock-ttl" => cfg.lock_ttl = Duration::from_secs(number(a, value(a)?)?),
            "--share" => cfg.shares.push(value(a)?),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    Ok(cfg)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cfg = match parse(&args) {
        Ok(cfg) => cfg,
        Err(e) if e.is_empty() => {
            println!("{HELP}");
            return;
        }
        Err(e) => {
            eprintln!("joplin-server-emulator: {e}\n\n{HELP}");
            std::process::exit(2);
        }
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_set_the_traps_and_bad_ones_are_refused() {
        let c = parse(&args(&[
            "--max-item-size",
            "1000",
            "--login-limit",
            "0",
            "--lock-ttl",
            "5",
            "--share",
            "abc",
            "--port",
            "23000",
        ]))
        .unwrap();
        assert_eq!(
            (c.max_item_size, c.login_limit, c.lock_ttl, c.port),
            (1000, u32::MAX, Duration::from_secs(5), 23000)
        );
        assert_eq!(c.shares, vec!["abc".to_string()]);
        assert_eq!(parse(&args(&["--help"])).unwrap_err(), "");
        assert!(parse(&args(&["--port", "99999"]))
            .unwrap_err()
            .contains("65535"));
        assert!(parse(&args(&["--max-item-size"]))
            .unwrap_err()
            .contains("needs a value"));
        assert!(parse(&args(&["--bogus"])).unwrap_err().contains("--bogus"));
    }
}
