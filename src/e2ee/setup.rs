//! Turn E2EE on for a new target (`generateMasterKeyAndEnableEncryption`): a new master key,
//! encrypted with the master password, made active in `info.json`.

use anyhow::Result;
use rand::RngCore;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::cipher::{self, Method};
use super::keys::Keyring;
use crate::target::{default_info_json, now_ms};

/// What we write as a key's `source_application` (shown in Joplin's Encryption screen).
const SOURCE_APPLICATION: &str = "joplin-restore";

/// `info` (or a fresh one) with a new KeyV1 master key, active and E2EE on, and the keyring that
/// encrypts with it (StringV1 items, FileV1 blobs, as Joplin ≥ 3.4 writes).
pub fn enable(info: Option<&Value>, password: &str) -> Result<(Value, Keyring)> {
    let mut raw = Zeroizing::new([0u8; 256]);
    rand::rng().fill_bytes(raw.as_mut());
    let key = Zeroizing::new(hex::encode(raw.as_ref()));
    let units: Vec<u16> = key.encode_utf16().collect();
    let content = cipher::encrypt(Method::KeyV1, password, &units)?;
    let id = crate::item::new_id();
    let now = now_ms();
    let entry = json!({
        "checksum": "",
        "encryption_method": Method::KeyV1.id(),
        "content": content,
        "created_time": now,
        "updated_time": now,
        "source_application": SOURCE_APPLICATION,
        "hasBeenUsed": true,
        "id": id,
    });
    let mut info = info.cloned().unwrap_or_else(default_info_json);
    info["e2ee"] = json!({"value": true, "updatedTime": now});
    info["activeMasterKeyId"] = json!({"value": id, "updatedTime": now});
    match info.get_mut("masterKeys").and_then(Value::as_array_mut) {
        Some(keys) => keys.push(entry),
        None => info["masterKeys"] = json!([entry]),
    }
    let ring = Keyring::single(&id, &key, Method::StringV1, Method::FileV1);
    Ok((info, ring))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e2ee::E2eeInfo;

    #[test]
    fn the_new_key_opens_with_the_password_and_is_active() {
        let (info, ring) = enable(None, "pw ß").unwrap();
        let e = E2eeInfo::from_info(&info);
        assert!(e.enabled);
        assert_eq!(e.active_key_id, ring.active_id);
        let reopened = Keyring::unlock(&e, "pw ß", "test").unwrap();
        assert_eq!(reopened.active_key(), ring.active_key());
        assert_eq!(reopened.active_key().len(), 512);
        assert!(Keyring::unlock(&e, "other", "test").is_err());
        assert_eq!(info["version"], 3);
    }
}
