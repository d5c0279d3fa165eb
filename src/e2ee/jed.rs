//! The JED container (`EncryptionService.encryptAbstract_`): header, then length-prefixed
//! blocks, each an independently authenticated ciphertext of one chunk.
//!
//! ```text
//! JED 01 000022 <method: 2 hex> <master key id: 32 hex> { <len: 6 hex> <block> }*
//! ```

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use super::cipher::{self, CipherError, Method};

const HEADER_LEN: usize = 3 + 2 + 6 + 2 + 32;
const MAX_BLOCK: usize = 0xFF_FFFF;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JedError {
    #[error("not a JED container (no `JED01` header)")]
    NotJed,
    #[error("JED header is damaged: {0}")]
    Header(String),
    #[error(
        "encrypted with master key {0}, which is not unlocked (unknown key or no password for it)"
    )]
    UnknownKey(String),
    #[error("block {block}: {error}")]
    Block { block: usize, error: CipherError },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub method: Method,
    pub master_key_id: String,
}

/// True when `data` starts like a JED container (Joplin's `fileIsEncrypted` check).
pub fn is_jed(data: &[u8]) -> bool {
    data.len() >= 5 && data.starts_with(b"JED") && data[3..5].iter().all(u8::is_ascii_digit)
}

pub fn parse_header(text: &str) -> Result<Header, JedError> {
    if !is_jed(text.as_bytes()) {
        return Err(JedError::NotJed);
    }
    if text.len() < HEADER_LEN || !text.is_char_boundary(HEADER_LEN) {
        return Err(JedError::Header("too short".into()));
    }
    let version = u32::from_str_radix(&text[3..5], 16).unwrap_or(0);
    if version != 1 {
        return Err(JedError::Header(format!(
            "version {version}, only 1 exists"
        )));
    }
    let meta_len = usize::from_str_radix(&text[5..11], 16)
        .map_err(|_| JedError::Header("metadata length is not hex".into()))?;
    if meta_len != 34 {
        return Err(JedError::Header(format!(
            "metadata length {meta_len}, not 34"
        )));
    }
    let method_id = u32::from_str_radix(&text[11..13], 16)
        .map_err(|_| JedError::Header("method is not hex".into()))?;
    let method = Method::from_id(method_id).ok_or(JedError::Header(format!(
        "unknown encryption method {method_id}"
    )))?;
    Ok(Header {
        method,
        master_key_id: text[13..45].to_ascii_lowercase(),
    })
}

fn header(method: Method, key_id: &str) -> String {
    format!("JED01000022{:02x}{key_id}", method.id())
}

fn push_block(out: &mut String, block: &str) {
    debug_assert!(block.len() <= MAX_BLOCK);
    out.push_str(&format!("{:06x}", block.len()));
    out.push_str(block);
}

fn blocks(text: &str) -> Result<Vec<&str>, JedError> {
    let mut rest = &text[HEADER_LEN..];
    let mut out = Vec::new();
    // Bounded by the input: every pass consumes at least the 6-char length.
    while !rest.is_empty() {
        if rest.len() < 6 || !rest.is_char_boundary(6) {
            return Err(JedError::Header("truncated block length".into()));
        }
        let n = usize::from_str_radix(&rest[..6], 16)
            .map_err(|_| JedError::Header("block length is not hex".into()))?;
        rest = &rest[6..];
        if rest.len() < n || !rest.is_char_boundary(n) {
            return Err(JedError::Header("truncated block".into()));
        }
        if n > 0 {
            out.push(&rest[..n]);
        }
        rest = &rest[n..];
    }
    Ok(out)
}

/// Chunk sizes Joplin uses: UTF-16 units for strings, bytes for files.
fn string_chunk(m: Method) -> usize {
    if m == Method::StringV1 {
        65_536
    } else {
        5_000
    }
}
fn file_chunk(m: Method) -> usize {
    if m == Method::FileV1 {
        131_072
    } else {
        5_000
    }
}

/// Encrypt a JS string (`encryptString`). `key` is the master key's 512-hex plaintext.
pub fn encrypt_string(
    method: Method,
    key_id: &str,
    key: &str,
    text: &str,
) -> Result<String, CipherError> {
    let units: Vec<u16> = text.encode_utf16().collect();
    let mut out = header(method, key_id);
    for chunk in units.chunks(string_chunk(method)) {
        push_block(&mut out, &cipher::encrypt(method, key, chunk)?);
    }
    Ok(out)
}

/// Encrypt file bytes (`encryptFile`): each chunk goes through base64 first, as in Joplin.
pub fn encrypt_bytes(
    method: Method,
    key_id: &str,
    key: &str,
    data: &[u8],
) -> Result<String, CipherError> {
    let mut out = header(method, key_id);
    for chunk in data.chunks(file_chunk(method)) {
        let b64: Vec<u16> = B64.encode(chunk).encode_utf16().collect();
        push_block(&mut out, &cipher::encrypt(method, key, &b64)?);
    }
    Ok(out)
}

/// [`encrypt_bytes`] from a reader to a writer, one chunk in memory at a time: the same output,
/// for blobs too large to hold (plain and encrypted) in memory.
pub fn encrypt_stream(
    method: Method,
    key_id: &str,
    key: &str,
    input: &mut dyn std::io::Read,
    output: &mut dyn std::io::Write,
) -> std::io::Result<u64> {
    let mut written = 0u64;
    let head = header(method, key_id);
    output.write_all(head.as_bytes())?;
    written += head.len() as u64;
    let mut chunk = vec![0u8; file_chunk(method)];
    let mut block = String::new();
    loop {
        // Fill the chunk fully (short reads happen) so blocks match `encrypt_bytes`.
        let mut n = 0;
        while n < chunk.len() {
            match input.read(&mut chunk[n..])? {
                0 => break,
                k => n += k,
            }
        }
        if n == 0 {
            return Ok(written);
        }
        let b64: Vec<u16> = B64.encode(&chunk[..n]).encode_utf16().collect();
        let enc = cipher::encrypt(method, key, &b64).map_err(std::io::Error::other)?;
        block.clear();
        push_block(&mut block, &enc);
        output.write_all(block.as_bytes())?;
        written += block.len() as u64;
        if n < chunk.len() {
            return Ok(written);
        }
    }
}

/// Decrypt a string container. `key_for` maps a master key id to its unlocked key.
pub fn decrypt_string<'k>(
    text: &str,
    key_for: impl Fn(&str) -> Option<&'k str>,
) -> Result<String, JedError> {
    let h = parse_header(text)?;
    let key =
        key_for(&h.master_key_id).ok_or_else(|| JedError::UnknownKey(h.master_key_id.clone()))?;
    let mut units = Vec::new();
    for (i, b) in blocks(text)?.into_iter().enumerate() {
        let u = cipher::decrypt(h.method, key, b)
            .map_err(|error| JedError::Block { block: i, error })?;
        units.extend(u);
    }
    // A chunk boundary may split a surrogate pair: join the units first, then decode.
    Ok(String::from_utf16_lossy(&units))
}

/// Decrypt a file container: each block is base64 of one chunk, decoded per block.
pub fn decrypt_bytes<'k>(
    data: &[u8],
    key_for: impl Fn(&str) -> Option<&'k str>,
) -> Result<Vec<u8>, JedError> {
    let text = std::str::from_utf8(data).map_err(|_| JedError::Header("not ASCII".into()))?;
    let h = parse_header(text)?;
    let key =
        key_for(&h.master_key_id).ok_or_else(|| JedError::UnknownKey(h.master_key_id.clone()))?;
    let mut out = Vec::new();
    for (i, b) in blocks(text)?.into_iter().enumerate() {
        let units = cipher::decrypt(h.method, key, b)
            .map_err(|error| JedError::Block { block: i, error })?;
        let b64 = String::from_utf16_lossy(&units);
        let bytes = B64.decode(b64.trim()).map_err(|e| JedError::Block {
            block: i,
            error: CipherError::Format(format!("decrypted chunk is not base64: {e}")),
        })?;
        out.extend(bytes);
    }
    Ok(out)
}

/// [`decrypt_bytes`] from a reader, handing each decrypted chunk to `sink`: one block in memory
/// at a time, for blobs too large to hold whole.
pub fn decrypt_stream<'k>(
    input: &mut dyn std::io::Read,
    key_for: impl Fn(&str) -> Option<&'k str>,
    sink: &mut dyn FnMut(&[u8]),
) -> Result<(), JedError> {
    let io = |e: std::io::Error| JedError::Header(format!("cannot read: {e}"));
    let mut head = vec![0u8; HEADER_LEN];
    input.read_exact(&mut head).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => JedError::Header("too short".into()),
        _ => io(e),
    })?;
    let head = String::from_utf8(head).map_err(|_| JedError::Header("not ASCII".into()))?;
    let h = parse_header(&head)?;
    let key =
        key_for(&h.master_key_id).ok_or_else(|| JedError::UnknownKey(h.master_key_id.clone()))?;
    let mut block = Vec::new();
    // Bounded by the input: every pass consumes a length and its block, or ends.
    for i in 0.. {
        let mut len = [0u8; 6];
        let mut got = 0;
        while got < len.len() {
            match input.read(&mut len[got..]).map_err(io)? {
                0 => break,
                k => got += k,
            }
        }
        if got == 0 {
            return Ok(());
        }
        if got < len.len() {
            return Err(JedError::Header("truncated block length".into()));
        }
        let n = std::str::from_utf8(&len)
            .ok()
            .and_then(|t| usize::from_str_radix(t, 16).ok())
            .ok_or_else(|| JedError::Header("block length is not hex".into()))?;
        block.resize(n, 0);
        input.read_exact(&mut block).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => JedError::Header("truncated block".into()),
            _ => io(e),
        })?;
        if n == 0 {
            continue;
        }
        let text = std::str::from_utf8(&block).map_err(|_| JedError::Header("not ASCII".into()))?;
        let units = cipher::decrypt(h.method, key, text)
            .map_err(|error| JedError::Block { block: i, error })?;
        let b64 = String::from_utf16_lossy(&units);
        let bytes = B64.decode(b64.trim()).map_err(|e| JedError::Block {
            block: i,
            error: CipherError::Format(format!("decrypted chunk is not base64: {e}")),
        })?;
        sink(&bytes);
    }
    Ok(())
}

/// Exact container size for `n` plaintext bytes with a native method (FileV1): salt, iv and tag
/// have fixed sizes, so the size tells whether the target already holds this blob's length.
pub fn native_file_len(n: u64) -> u64 {
    let chunk = file_chunk(Method::FileV1) as u64;
    let b64 = |x: u64| x.div_ceil(3) * 4;
    let block = |x: u64| 6 + r#"{"salt":"","iv":"","ct":""}"#.len() as u64 + 44 + 16 + b64(x + 16);
    let full = n / chunk;
    let rest = n % chunk;
    HEADER_LEN as u64 + full * block(chunk) + if rest > 0 { block(rest) } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_ID: &str = "0123456789abcdef0123456789abcdef";
    const KEY: &str = "kkkkkkkk0123abcd";

    fn keys(id: &str) -> Option<&'static str> {
        (id == KEY_ID).then_some(KEY)
    }

    #[test]
    fn decrypts_spec_containers() {
        let s = r#"JED010000220a0123456789abcdef0123456789abcdef000083{"salt":"fzS0kltjycyxeq0d4VPCv2fWmnapusEeZnqTP3Pctvg=","iv":"AWuwljC8z8dDjTGw","ct":"3GaDmi2PvasBgFq4hZUCqd3/xWf8h2F19aROI5dBwv8="}"#;
        assert_eq!(decrypt_string(s, keys).unwrap(), "héllo 😀");
        let a = r#"JED01000022050123456789abcdef0123456789abcdef0000b0{"iv":"v91XJcd0PGgOAxhjDv9Fpw==","v":1,"iter":101,"ks":128,"ts":64,"mode":"ccm","adata":"","cipher":"aes","salt":"An4tEQszl18=","ct":"yZSCAJnGbDJ+y+NDy1x5Bx9EXKsBpcHAGauSKHnC"}"#;
        assert_eq!(decrypt_string(a, keys).unwrap(), "héllo 😀");
        assert_eq!(
            decrypt_string(s, |_| None),
            Err(JedError::UnknownKey(KEY_ID.into()))
        );
    }

    #[test]
    fn round_trips_with_chunks_that_split_surrogate_pairs() {
        // 65 535 ASCII units then an emoji: its pair straddles the first StringV1 chunk.
        let text = format!("{}😀 end", "a".repeat(65_535));
        for m in [Method::StringV1, Method::Sjcl1a] {
            let c = encrypt_string(m, KEY_ID, KEY, &text).unwrap();
            assert!(c.starts_with(&format!("JED01000022{:02x}{KEY_ID}", m.id())));
            assert_eq!(decrypt_string(&c, keys).unwrap(), text, "{m:?}");
        }
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        for m in [Method::FileV1, Method::Sjcl1a] {
            let c = encrypt_bytes(m, KEY_ID, KEY, &data).unwrap();
            assert_eq!(decrypt_bytes(c.as_bytes(), keys).unwrap(), data, "{m:?}");
            if m == Method::FileV1 {
                // Spec §5: 300 000 B → 400 388 B with FileV1.
                assert_eq!(c.len() as u64, native_file_len(300_000));
                assert_eq!(c.len(), 400_388);
            }
        }
        let empty = encrypt_bytes(Method::FileV1, KEY_ID, KEY, b"").unwrap();
        assert_eq!(empty.len() as u64, native_file_len(0));
        assert!(decrypt_bytes(empty.as_bytes(), keys).unwrap().is_empty());
    }

    /// The streaming encryption writes what `encrypt_bytes` writes (same blocks and lengths),
    /// even when the reader hands out short reads.
    #[test]
    fn streaming_encryption_matches_the_buffered_form() {
        struct Dribble<'a>(&'a [u8]);
        impl std::io::Read for Dribble<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = buf.len().min(self.0.len()).min(7_777);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        for m in [Method::FileV1, Method::Sjcl1a] {
            for len in [0, 5_000, 131_072, 300_000] {
                let mut out = Vec::new();
                let n =
                    encrypt_stream(m, KEY_ID, KEY, &mut Dribble(&data[..len]), &mut out).unwrap();
                assert_eq!(n, out.len() as u64);
                let buffered = encrypt_bytes(m, KEY_ID, KEY, &data[..len]).unwrap();
                assert_eq!(out.len(), buffered.len(), "{m:?} {len}");
                assert_eq!(
                    blocks(std::str::from_utf8(&out).unwrap()).unwrap().len(),
                    blocks(&buffered).unwrap().len()
                );
                assert_eq!(
                    decrypt_bytes(&out, keys).unwrap(),
                    &data[..len],
                    "{m:?} {len}"
                );
                let mut plain = Vec::new();
                decrypt_stream(&mut Dribble(&out), keys, &mut |b| {
                    plain.extend_from_slice(b)
                })
                .unwrap();
                assert_eq!(plain, &data[..len], "stream-decrypted {m:?} {len}");
                let cut = &out[..out.len().saturating_sub(3).max(HEADER_LEN)];
                if len > 0 {
                    assert!(decrypt_stream(&mut Dribble(cut), keys, &mut |_| {}).is_err());
                }
            }
        }
    }

    #[test]
    fn rejects_damaged_headers() {
        assert_eq!(parse_header("hello"), Err(JedError::NotJed));
        assert!(matches!(
            parse_header("JED02000022"),
            Err(JedError::Header(_))
        ));
        assert!(is_jed(b"JED01"));
        assert!(!is_jed(b"\x89PNG"));
    }
}
