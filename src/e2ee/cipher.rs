//! Joplin's encryption methods, one block at a time (`EncryptionService.encrypt/decrypt`).
//!
//! Joplin treats every plaintext as a JS string; so do we, as UTF-16 code units (a decrypted
//! note may hold a lone surrogate). The "password" is the master password for master keys and
//! the 512-hex master key *string* for items and files: always PBKDF2 input, never an AES key.

use aes::{Aes128, Aes256};
use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::Aes256Gcm;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ccm::consts::{U11, U12, U13, U8};
use ccm::Ccm;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Sha256, Sha512};
use zeroize::Zeroizing;

use super::jsescape;

/// `EncryptionMethod` ids as they appear in info.json and JED headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Sjcl,
    Sjcl2,
    Sjcl3,
    Sjcl4,
    Sjcl1a,
    Custom,
    Sjcl1b,
    KeyV1,
    FileV1,
    StringV1,
}

impl Method {
    pub fn from_id(id: u32) -> Option<Method> {
        Some(match id {
            1 => Method::Sjcl,
            2 => Method::Sjcl2,
            3 => Method::Sjcl3,
            4 => Method::Sjcl4,
            5 => Method::Sjcl1a,
            6 => Method::Custom,
            7 => Method::Sjcl1b,
            8 => Method::KeyV1,
            9 => Method::FileV1,
            10 => Method::StringV1,
            _ => return None,
        })
    }
    pub fn id(self) -> u32 {
        match self {
            Method::Sjcl => 1,
            Method::Sjcl2 => 2,
            Method::Sjcl3 => 3,
            Method::Sjcl4 => 4,
            Method::Sjcl1a => 5,
            Method::Custom => 6,
            Method::Sjcl1b => 7,
            Method::KeyV1 => 8,
            Method::FileV1 => 9,
            Method::StringV1 => 10,
        }
    }
    fn is_native(self) -> bool {
        matches!(self, Method::KeyV1 | Method::FileV1 | Method::StringV1)
    }
    /// sjcl parameters (iterations, key bits) Joplin writes with; None for non-sjcl methods.
    fn sjcl_params(self) -> Option<(u32, u32)> {
        match self {
            Method::Sjcl => Some((1000, 128)),
            Method::Sjcl2 => Some((10000, 256)),
            Method::Sjcl3 => Some((1000, 128)),
            Method::Sjcl4 => Some((10000, 256)),
            Method::Sjcl1a => Some((101, 128)),
            Method::Sjcl1b => Some((101, 256)),
            _ => None,
        }
    }
    fn escapes(self) -> bool {
        matches!(self, Method::Sjcl1a | Method::Sjcl1b)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    #[error("wrong key or password, or damaged data (authentication failed)")]
    Auth,
    #[error("damaged ciphertext: {0}")]
    Format(String),
    #[error("encryption method {0} is not supported")]
    Unsupported(u32),
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rng().fill_bytes(&mut b);
    b
}

fn b64(data: &[u8]) -> String {
    B64.encode(data)
}

fn unb64(s: &str, what: &str) -> Result<Vec<u8>, CipherError> {
    B64.decode(s)
        .map_err(|e| CipherError::Format(format!("{what} is not base64: {e}")))
}

fn units_to_string(units: &[u16]) -> String {
    String::from_utf16_lossy(units)
}

// ---- KeyV1 / FileV1 / StringV1: PBKDF2-SHA512 + AES-256-GCM (WebCrypto layout) ----

#[derive(Serialize, Deserialize)]
struct NativeBlock {
    salt: String,
    iv: String,
    ct: String,
}

fn native_iterations(m: Method) -> u32 {
    if m == Method::KeyV1 {
        220_000
    } else {
        3
    }
}

fn native_key(m: Method, password: &str, salt: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut key = Zeroizing::new([0u8; 32]);
    pbkdf2::pbkdf2_hmac::<Sha512>(
        password.as_bytes(),
        salt,
        native_iterations(m),
        key.as_mut(),
    );
    key
}

fn native_encrypt(m: Method, password: &str, data: &[u8]) -> String {
    let salt: [u8; 32] = random();
    let iv: [u8; 12] = random();
    let key = native_key(m, password, &salt);
    let ct = Aes256Gcm::new_from_slice(key.as_ref())
        .expect("32-byte key")
        .encrypt(aes_gcm::Nonce::from_slice(&iv), data)
        .expect("AES-GCM encryption cannot fail for in-memory data");
    serde_json::to_string(&NativeBlock {
        salt: b64(&salt),
        iv: b64(&iv),
        ct: b64(&ct),
    })
    .expect("serialises")
}

fn native_decrypt(m: Method, password: &str, block: &str) -> Result<Vec<u8>, CipherError> {
    let b: NativeBlock = serde_json::from_str(block)
        .map_err(|e| CipherError::Format(format!("block is not {{salt, iv, ct}} JSON: {e}")))?;
    let salt = unb64(&b.salt, "salt")?;
    let iv = unb64(&b.iv, "iv")?;
    let ct = unb64(&b.ct, "ct")?;
    if iv.len() != 12 {
        return Err(CipherError::Format(format!(
            "iv is {} bytes, not 12",
            iv.len()
        )));
    }
    let key = native_key(m, password, &salt);
    Aes256Gcm::new_from_slice(key.as_ref())
        .expect("32-byte key")
        .decrypt(aes_gcm::Nonce::from_slice(&iv), ct.as_slice())
        .map_err(|_| CipherError::Auth)
}

// ---- sjcl: PBKDF2-SHA256 + AES-CCM, 64-bit tag ----

/// sjcl's JSON, in the exact key order and compact form sjcl writes (old readers parse it with
/// a regex, not a JSON parser).
#[derive(Serialize)]
struct SjclOut<'a> {
    iv: String,
    v: u32,
    iter: u32,
    ks: u32,
    ts: u32,
    mode: &'a str,
    adata: &'a str,
    cipher: &'a str,
    salt: String,
    ct: String,
}

/// Read leniently: any key order, sjcl's defaults for missing keys.
#[derive(Deserialize)]
struct SjclIn {
    iv: String,
    #[serde(default = "default_iter")]
    iter: u32,
    #[serde(default = "default_ks")]
    ks: u32,
    #[serde(default = "default_ts")]
    ts: u32,
    #[serde(default = "default_mode")]
    mode: String,
    #[serde(default)]
    salt: String,
    ct: String,
}
fn default_iter() -> u32 {
    10000
}
fn default_ks() -> u32 {
    128
}
fn default_ts() -> u32 {
    64
}
fn default_mode() -> String {
    "ccm".into()
}

fn sjcl_key(password: &str, salt: &[u8], iter: u32, ks: u32) -> Zeroizing<Vec<u8>> {
    let mut key = Zeroizing::new(vec![0u8; (ks / 8) as usize]);
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iter, key.as_mut());
    key
}

/// CCM length-field size sjcl picks for a plaintext of `len` bytes.
fn ccm_l(len: usize) -> usize {
    let mut l = 2;
    while l < 4 && (len >> (8 * l)) != 0 {
        l += 1;
    }
    l
}

macro_rules! ccm_run {
    ($aes:ty, $key:expr, $nonce:expr, $op:ident, $data:expr) => {{
        let n = $nonce;
        match n.len() {
            13 => Ccm::<$aes, U8, U13>::new_from_slice($key)
                .map_err(|_| CipherError::Format("bad key size".into()))?
                .$op(n.into(), $data),
            12 => Ccm::<$aes, U8, U12>::new_from_slice($key)
                .map_err(|_| CipherError::Format("bad key size".into()))?
                .$op(n.into(), $data),
            _ => Ccm::<$aes, U8, U11>::new_from_slice($key)
                .map_err(|_| CipherError::Format("bad key size".into()))?
                .$op(n.into(), $data),
        }
    }};
}

fn sjcl_encrypt(m: Method, password: &str, plain: &[u8]) -> String {
    let (iter, ks) = m.sjcl_params().expect("sjcl method");
    let salt: [u8; 8] = random();
    let iv: [u8; 16] = random();
    let key = sjcl_key(password, &salt, iter, ks);
    let nonce = &iv[..15 - ccm_l(plain.len())];
    let ct: Result<Vec<u8>, CipherError> = (|| {
        Ok(if ks == 256 {
            ccm_run!(Aes256, &key, nonce, encrypt, plain)
        } else {
            ccm_run!(Aes128, &key, nonce, encrypt, plain)
        }
        .expect("CCM encryption of a small block cannot fail"))
    })();
    let ct = ct.expect("valid key size");
    serde_json::to_string(&SjclOut {
        iv: b64(&iv),
        v: 1,
        iter,
        ks,
        ts: 64,
        mode: "ccm",
        adata: "",
        cipher: "aes",
        salt: b64(&salt),
        ct: b64(&ct),
    })
    .expect("serialises")
}

fn sjcl_decrypt(password: &str, block: &str) -> Result<Vec<u8>, CipherError> {
    let b: SjclIn = serde_json::from_str(block)
        .map_err(|e| CipherError::Format(format!("block is not sjcl JSON: {e}")))?;
    if b.mode != "ccm" {
        return Err(CipherError::Format(format!(
            "sjcl mode {:?} (legacy OCB2) cannot be decrypted by this tool",
            b.mode
        )));
    }
    if b.ts != 64 || !(b.ks == 128 || b.ks == 256) {
        return Err(CipherError::Format(format!(
            "unsupported sjcl parameters ks={} ts={}",
            b.ks, b.ts
        )));
    }
    let iv = unb64(&b.iv, "iv")?;
    let salt = unb64(&b.salt, "salt")?;
    let ct = unb64(&b.ct, "ct")?;
    if iv.len() < 8 || ct.len() < 8 {
        return Err(CipherError::Format("iv or ct too short".into()));
    }
    let key = sjcl_key(password, &salt, b.iter, b.ks);
    let l = ccm_l(ct.len() - 8);
    let nonce_len = (15 - l).min(iv.len());
    if nonce_len < 11 {
        return Err(CipherError::Format("iv too short for CCM".into()));
    }
    let nonce = &iv[..nonce_len];
    let r = if b.ks == 256 {
        ccm_run!(Aes256, &key, nonce, decrypt, ct.as_slice())
    } else {
        ccm_run!(Aes128, &key, nonce, decrypt, ct.as_slice())
    };
    r.map_err(|_| CipherError::Auth)
}

// ---- The string-level primitive, as Joplin's EncryptionService sees it ----

/// Encrypt one JS string (given as UTF-16 units) with `method`; returns the block text.
pub fn encrypt(method: Method, password: &str, plain: &[u16]) -> Result<String, CipherError> {
    match method {
        Method::StringV1 => {
            let bytes: Vec<u8> = plain.iter().flat_map(|u| u.to_le_bytes()).collect();
            Ok(native_encrypt(method, password, &bytes))
        }
        Method::KeyV1 => {
            let hex = Zeroizing::new(
                hex::decode(units_to_string(plain))
                    .map_err(|_| CipherError::Format("KeyV1 plaintext must be hex".into()))?,
            );
            Ok(native_encrypt(method, password, &hex))
        }
        Method::FileV1 => {
            let data = unb64(&units_to_string(plain), "FileV1 plaintext")?;
            Ok(native_encrypt(method, password, &data))
        }
        m if m.escapes() => Ok(sjcl_encrypt(
            m,
            password,
            jsescape::escape(plain).as_bytes(),
        )),
        m if m.sjcl_params().is_some() && m != Method::Sjcl && m != Method::Sjcl2 => {
            Ok(sjcl_encrypt(m, password, units_to_string(plain).as_bytes()))
        }
        m => Err(CipherError::Unsupported(m.id())),
    }
}

/// Decrypt one block written with `method`; returns the JS string as UTF-16 units.
pub fn decrypt(method: Method, password: &str, block: &str) -> Result<Vec<u16>, CipherError> {
    if method.is_native() {
        let data = Zeroizing::new(native_decrypt(method, password, block)?);
        return Ok(match method {
            Method::StringV1 => {
                if data.len() % 2 != 0 {
                    return Err(CipherError::Format("odd UTF-16 byte count".into()));
                }
                data.chunks(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect()
            }
            Method::KeyV1 => hex::encode(&*data).encode_utf16().collect(),
            _ => b64(&data).encode_utf16().collect(),
        });
    }
    if method.sjcl_params().is_none() {
        return Err(CipherError::Unsupported(method.id()));
    }
    let bytes = sjcl_decrypt(password, block)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| CipherError::Format("sjcl plaintext is not UTF-8".into()))?;
    Ok(if method.escapes() {
        jsescape::unescape(&text)
    } else {
        text.encode_utf16().collect()
    })
}

/// Convenience for ASCII/valid strings (master keys, test vectors).
pub fn decrypt_to_string(
    method: Method,
    password: &str,
    block: &str,
) -> Result<String, CipherError> {
    decrypt(method, password, block).map(|u| units_to_string(&u))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors from spec/e2ee.md §7.1 (checked there against Joplin 3.5.1's own code).
    #[test]
    fn decrypts_spec_vectors() {
        let kv1 = r#"{"salt":"flnzMSc87JK4K5FeGc6EOd3FU1kCRykk6FqggX1PM28=","iv":"VDTyVBWGEq0Qojqb","ct":"2CIMnHDNVGyD8co8wKS8KKnW+m6No+/WS0IFF9wxOXvSi4xmFXm1y+QQXMnoBDxg"}"#;
        assert_eq!(
            decrypt_to_string(Method::KeyV1, "correct horse ß", kv1).unwrap(),
            "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
        );
        let s1 = r#"{"salt":"R39VPg7Sdyi9BSz+9s6RLECdWw1IBZk1PaaZJk5h41Q=","iv":"qpAWpXADpZ1xEk7z","ct":"sPrWAzx84XS/oraEZ+A1jnogjcY29xcGZT8TDbbGElyVJpLrYlJkQw=="}"#;
        assert_eq!(
            decrypt_to_string(Method::StringV1, "kkkkkkkk0123abcd", s1).unwrap(),
            "héllo 😀 中文\n"
        );
        let f1 = r#"{"salt":"HaAJUpGiKXMgls8iiZmXKV8ODQnE5EDKmf/Kr/BptU4=","iv":"kwP3QciNEX3fA7E9","ct":"E8eWdX9dPYGeXw9bpMt+GKDACiwga3gEjdaQDnpCteMCHQaGtQ+g7XL2toqPrdzo5AUxB9NkRH8="}"#;
        assert_eq!(
            decrypt_to_string(Method::FileV1, "kkkkkkkk0123abcd", f1).unwrap(),
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJw=="
        );
        let a = r#"{"iv":"LjxN6E0OJuehCYz39fGvtg==","v":1,"iter":101,"ks":128,"ts":64,"mode":"ccm","adata":"","cipher":"aes","salt":"PGugFO4fRUA=","ct":"/zKWsGyfAnFcr9PyMVJz2IwNHvAaUXVBFDRCeEgkFGYh6OARK/9Y6c6H"}"#;
        assert_eq!(
            decrypt_to_string(Method::Sjcl1a, "kkkkkkkk0123abcd", a).unwrap(),
            "héllo 😀 = %"
        );
        let k4 = r#"{"iv":"Y9Cq3Euxy4+BPGFz7Fv2pA==","v":1,"iter":10000,"ks":256,"ts":64,"mode":"ccm","adata":"","cipher":"aes","salt":"gvsInWO02Oo=","ct":"EVnLqM9tNRBYltRp0F4QR7X7HoBqRk0VoP0dytUq5OxhltZ4+W2NmQ=="}"#;
        assert_eq!(
            decrypt_to_string(Method::Sjcl4, "correct horse ß", k4).unwrap(),
            "00112233445566778899aabbccddeeff"
        );
        assert_eq!(
            decrypt_to_string(Method::Sjcl4, "wrong", k4),
            Err(CipherError::Auth)
        );
    }

    #[test]
    fn round_trips_every_writable_method() {
        let text: Vec<u16> = "a\u{0}é😀".encode_utf16().chain([0xD83D]).collect();
        for m in [Method::StringV1, Method::Sjcl1a, Method::Sjcl1b] {
            let c = encrypt(m, "pw", &text).unwrap();
            assert_eq!(decrypt(m, "pw", &c).unwrap(), text, "{m:?}");
        }
        let hex: Vec<u16> = "00ff".encode_utf16().collect();
        for m in [Method::KeyV1, Method::Sjcl4] {
            let c = encrypt(m, "pw", &hex).unwrap();
            assert_eq!(decrypt(m, "pw", &c).unwrap(), hex, "{m:?}");
        }
        let b: Vec<u16> = "AAEC".encode_utf16().collect();
        let c = encrypt(Method::FileV1, "pw", &b).unwrap();
        assert_eq!(decrypt(Method::FileV1, "pw", &c).unwrap(), b);
        // sjcl output keeps sjcl's own key order.
        let c = encrypt(Method::Sjcl1a, "pw", &b).unwrap();
        assert!(c.starts_with(r#"{"iv":""#) && c.contains(r#","v":1,"iter":101,"ks":128,"ts":64,"mode":"ccm","adata":"","cipher":"aes","salt":""#), "{c}");
    }
}
