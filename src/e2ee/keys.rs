//! Master keys from `info.json`, unlocked with the master password into a [`Keyring`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::cipher::{self, CipherError, Method};
use crate::exit::Refusal;

/// Env var holding the master password (never take it on the command line alone: argv is
/// visible to every user of the machine).
pub const PASSWORD_ENV: &str = "JOPLIN_RESTORE_MASTER_PASSWORD";

/// One entry of `info.json` `masterKeys`.
#[derive(Debug, Clone)]
pub struct MasterKey {
    pub id: String,
    pub method: Option<Method>,
    pub method_id: u32,
    pub content: String,
    pub checksum: String,
    pub enabled: bool,
}

/// What `info.json` says about encryption.
#[derive(Debug, Clone, Default)]
pub struct E2eeInfo {
    pub enabled: bool,
    pub active_key_id: String,
    pub keys: Vec<MasterKey>,
}

impl E2eeInfo {
    pub fn from_info(info: &Value) -> E2eeInfo {
        let keys = info
            .get("masterKeys")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(parse_key).collect())
            .unwrap_or_default();
        E2eeInfo {
            enabled: info
                .pointer("/e2ee/value")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            active_key_id: info
                .pointer("/activeMasterKeyId/value")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            keys,
        }
    }
}

fn parse_key(v: &Value) -> Option<MasterKey> {
    let method_id = v.get("encryption_method")?.as_u64()? as u32;
    Some(MasterKey {
        id: v.get("id")?.as_str()?.to_ascii_lowercase(),
        method: Method::from_id(method_id),
        method_id,
        content: v.get("content")?.as_str()?.to_string(),
        checksum: v
            .get("checksum")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        // Missing ⇒ enabled (`masterKeyEnabled`).
        enabled: v.get("enabled").and_then(Value::as_i64).unwrap_or(1) != 0,
    })
}

/// Decrypt one master key; returns its 512-hex item key.
pub fn unlock_key(key: &MasterKey, password: &str) -> Result<Zeroizing<String>, CipherError> {
    let method = match key.method {
        Some(Method::Custom) | None => return Err(CipherError::Unsupported(key.method_id)),
        Some(m) => m,
    };
    let plain = Zeroizing::new(cipher::decrypt_to_string(method, password, &key.content)?);
    if method == Method::Sjcl2 && !key.checksum.is_empty() {
        let sum = hex::encode(Sha256::digest(plain.as_bytes()));
        if sum != key.checksum {
            return Err(CipherError::Auth);
        }
    }
    Ok(plain)
}

/// Unlocked master keys plus the one new data is encrypted with.
pub struct Keyring {
    keys: HashMap<String, Zeroizing<String>>,
    pub active_id: String,
    /// Method for items and blobs, mirroring what clients of this target write (§1.1).
    pub string_method: Method,
    pub file_method: Method,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Keyring")
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .field("active_id", &self.active_id)
            .finish()
    }
}

impl Keyring {
    /// Unlock the target's keys with `password`. The active key must open; others that do not
    /// are only reported (they matter for decrypting older items).
    pub fn unlock(info: &E2eeInfo, password: &str, target: &str) -> Result<Keyring> {
        let active = info
            .keys
            .iter()
            .find(|k| k.id == info.active_key_id)
            .ok_or_else(|| {
                Refusal(format!(
                    "{target}: info.json names active master key {:?} but holds no such key. The \
                     target is damaged: let a Joplin client with the key sync it once, then rerun.",
                    info.active_key_id
                ))
            })?;
        let mut keys = HashMap::new();
        match unlock_key(active, password) {
            Ok(k) => {
                keys.insert(active.id.clone(), k);
            }
            Err(CipherError::Auth) => {
                return Err(Refusal(format!(
                    "{target}: the master password does not open the target's active master key \
                     {}. Nothing was changed. Give the master password you set in Joplin \
                     (Encryption settings) via {PASSWORD_ENV}, --master-password-file or the \
                     prompt.",
                    active.id
                ))
                .into())
            }
            Err(e) => {
                return Err(Refusal(format!(
                    "{target}: cannot use the active master key {} ({e}). Nothing was changed.",
                    active.id
                ))
                .into())
            }
        }
        for k in info.keys.iter().filter(|k| k.id != active.id) {
            match unlock_key(k, password) {
                Ok(plain) => {
                    keys.insert(k.id.clone(), plain);
                }
                Err(e) => tracing::warn!(
                    "master key {} could not be opened with this password ({e}); items encrypted \
                     with it cannot be compared",
                    k.id
                ),
            }
        }
        let (string_method, file_method) = match active.method {
            Some(Method::KeyV1) => (Method::StringV1, Method::FileV1),
            // An SJCL-era key: write what every client since 2020 reads.
            _ => (Method::Sjcl1a, Method::Sjcl1a),
        };
        Ok(Keyring {
            keys,
            active_id: active.id.clone(),
            string_method,
            file_method,
        })
    }

    /// A keyring from one known key (tests, and targets set up by this tool).
    pub fn single(id: &str, key: &str, string_method: Method, file_method: Method) -> Keyring {
        let mut keys = HashMap::new();
        keys.insert(id.to_string(), Zeroizing::new(key.to_string()));
        Keyring {
            keys,
            active_id: id.to_string(),
            string_method,
            file_method,
        }
    }

    pub fn key(&self, id: &str) -> Option<&str> {
        self.keys.get(&id.to_ascii_lowercase()).map(|k| k.as_str())
    }

    pub fn active_key(&self) -> &str {
        self.key(&self.active_id).expect("active key is unlocked")
    }
}

/// Where the master password may come from, in order: a file, the environment, a prompt.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PasswordArgs {
    /// File holding the target's E2EE master password (first line). Or set
    /// JOPLIN_RESTORE_MASTER_PASSWORD; with neither, it is asked for on a terminal.
    #[arg(long, value_name = "FILE")]
    pub master_password_file: Option<PathBuf>,
}

fn read_password_file(p: &Path) -> Result<Zeroizing<String>> {
    let s = Zeroizing::new(std::fs::read_to_string(p).with_context(|| {
        format!(
            "cannot read the master password file {}: check the path and its permissions",
            p.display()
        )
    })?);
    let first = s.lines().next().unwrap_or("");
    Ok(Zeroizing::new(first.to_string()))
}

impl PasswordArgs {
    /// The password, or None when no source gives one (no file, no env, no terminal).
    pub fn password(&self, target: &str) -> Result<Option<Zeroizing<String>>> {
        if let Some(p) = &self.master_password_file {
            return read_password_file(p).map(Some);
        }
        if let Some(v) = std::env::var_os(PASSWORD_ENV) {
            let v = Zeroizing::new(v.to_string_lossy().into_owned());
            if !v.is_empty() {
                return Ok(Some(v));
            }
        }
        use std::io::IsTerminal;
        if std::io::stdin().is_terminal() {
            let pw = rpassword::prompt_password(format!(
                "Master password of the end-to-end encrypted target {target}: "
            ))
            .context("reading the master password from the terminal")?;
            return Ok((!pw.is_empty()).then(|| Zeroizing::new(pw)));
        }
        Ok(None)
    }

    /// The password from a file or the environment, never asked for: for a target whose
    /// E2EE is off that may still hold items encrypted before it was turned off.
    pub fn given(&self) -> Result<Option<Zeroizing<String>>> {
        if self.master_password_file.is_none()
            && std::env::var_os(PASSWORD_ENV).is_none_or(|v| v.is_empty())
        {
            return Ok(None);
        }
        self.password("")
    }

    /// A password for a new master key: as [`PasswordArgs::password`], but a terminal prompt
    /// asks twice (a typo would lock everyone out).
    pub fn new_password(&self, target: &str) -> Result<Option<Zeroizing<String>>> {
        use std::io::IsTerminal;
        if self.master_password_file.is_some()
            || std::env::var_os(PASSWORD_ENV).is_some_and(|v| !v.is_empty())
            || !std::io::stdin().is_terminal()
        {
            return self.password(target);
        }
        let pw = Zeroizing::new(
            rpassword::prompt_password(format!("New master password for {target}: "))
                .context("reading the master password from the terminal")?,
        );
        let again = Zeroizing::new(
            rpassword::prompt_password("Repeat the new master password: ")
                .context("reading the master password from the terminal")?,
        );
        if *pw != *again {
            return Err(Refusal(
                "the two passwords differ; nothing was changed. Run the command again.".into(),
            )
            .into());
        }
        Ok((!pw.is_empty()).then_some(pw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_sjcl4_key_opens_and_selects_sjcl1a_for_writing() {
        // spec e2ee.md §7.1 SJCL4 vector as a master key.
        let content = r#"{"iv":"Y9Cq3Euxy4+BPGFz7Fv2pA==","v":1,"iter":10000,"ks":256,"ts":64,"mode":"ccm","adata":"","cipher":"aes","salt":"gvsInWO02Oo=","ct":"EVnLqM9tNRBYltRp0F4QR7X7HoBqRk0VoP0dytUq5OxhltZ4+W2NmQ=="}"#;
        let id = "0123456789abcdef0123456789abcdef";
        let info = json!({
            "version": 3,
            "e2ee": {"value": true, "updatedTime": 1},
            "activeMasterKeyId": {"value": id, "updatedTime": 1},
            "masterKeys": [
                {"checksum": "", "encryption_method": 4, "content": content, "id": id},
                {"checksum": "", "encryption_method": 6, "content": "{}", "id": "f".repeat(32)}
            ]
        });
        let e = E2eeInfo::from_info(&info);
        let ring = Keyring::unlock(&e, "correct horse ß", "t").unwrap();
        assert_eq!(ring.active_key(), "00112233445566778899aabbccddeeff");
        assert_eq!(
            (ring.string_method, ring.file_method),
            (Method::Sjcl1a, Method::Sjcl1a)
        );
        assert!(
            ring.key(&"f".repeat(32)).is_none(),
            "Custom (share) keys are skipped"
        );
        assert!(
            !format!("{ring:?}").contains("0011"),
            "Debug never shows key material"
        );
    }

    #[test]
    fn a_missing_active_key_is_refused() {
        let info =
            json!({"e2ee": {"value": true}, "activeMasterKeyId": {"value": "x"}, "masterKeys": []});
        let e = Keyring::unlock(&E2eeInfo::from_info(&info), "pw", "t").unwrap_err();
        assert!(e.to_string().contains("holds no such key"));
    }
}
