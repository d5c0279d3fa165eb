//! JavaScript's `escape()` / `unescape()` on UTF-16 code units: SJCL1a/1b apply them around
//! the cipher so the sjcl plaintext is pure ASCII (sjcl throws on lone surrogates).

const KEEP: &[u8] = b"@*_+-./";

pub fn escape(units: &[u16]) -> String {
    let mut out = String::with_capacity(units.len());
    for &u in units {
        if u < 0x80 && ((u as u8).is_ascii_alphanumeric() || KEEP.contains(&(u as u8))) {
            out.push(u as u8 as char);
        } else if u < 0x100 {
            out.push_str(&format!("%{u:02X}"));
        } else {
            out.push_str(&format!("%u{u:04X}"));
        }
    }
    out
}

pub fn unescape(s: &str) -> Vec<u16> {
    let units: Vec<u16> = s.encode_utf16().collect();
    let hex = |r: &[u16]| -> Option<u16> {
        let s = String::from_utf16(r).ok()?;
        if s.chars().all(|c| c.is_ascii_hexdigit()) {
            u16::from_str_radix(&s, 16).ok()
        } else {
            None
        }
    };
    let mut out = Vec::with_capacity(units.len());
    let mut i = 0;
    while i < units.len() {
        if units[i] == b'%' as u16 {
            if units.get(i + 1) == Some(&(b'u' as u16)) && i + 6 <= units.len() {
                if let Some(v) = hex(&units[i + 2..i + 6]) {
                    out.push(v);
                    i += 6;
                    continue;
                }
            }
            if i + 3 <= units.len() {
                if let Some(v) = hex(&units[i + 1..i + 3]) {
                    out.push(v);
                    i += 3;
                    continue;
                }
            }
        }
        out.push(units[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_javascript() {
        let s: Vec<u16> = "héllo 😀 = %".encode_utf16().collect();
        let e = escape(&s);
        assert_eq!(e, "h%E9llo%20%uD83D%uDE00%20%3D%20%25");
        assert_eq!(unescape(&e), s);
        assert_eq!(
            unescape("%zz%u12"),
            "%zz%u12".encode_utf16().collect::<Vec<_>>()
        );
    }
}
