//! The target URL: accepted forms, and how a target-relative path becomes a request path.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use url::Url;

/// Everything but RFC 3986 unreserved characters is escaped in a path segment, so names with
/// `%`, `#`, `?`, `+`, `&` or spaces reach the server as themselves.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Whether `--target` names a WebDAV server.
pub fn is_webdav_url(s: &str) -> bool {
    let lower = s.trim().to_ascii_lowercase();
    ["http://", "https://", "webdav://", "webdavs://"]
        .iter()
        .any(|p| lower.starts_with(p))
}

/// Parse `https://…`, `http://…`, `webdav://…` (→ http) or `webdavs://…` (→ https) into the base
/// URL of the collection, with a trailing slash and no credentials. A username in the URL is
/// returned separately; a password in the URL is refused (it would sit in shell history and
/// `ps` output).
pub fn parse_target(s: &str) -> Result<(Url, Option<String>), String> {
    let s = s.trim();
    let lower = s.to_ascii_lowercase();
    let normalized = if lower.starts_with("webdavs://") {
        format!("https://{}", &s["webdavs://".len()..])
    } else if lower.starts_with("webdav://") {
        format!("http://{}", &s["webdav://".len()..])
    } else {
        s.to_string()
    };
    let mut url = Url::parse(&normalized).map_err(|e| format!("{s}: not a valid URL: {e}"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!(
            "{s}: a WebDAV target must be an http(s):// or webdav(s):// URL"
        ));
    }
    if url.host_str().unwrap_or("").is_empty() {
        return Err(format!("{s}: the URL has no server name"));
    }
    if url.password().is_some() {
        return Err(
            "the target URL contains a password: remove it, and give the password through \
             JOPLIN_RESTORE_PASSWORD, --password-file or the prompt instead"
                .into(),
        );
    }
    let user = (!url.username().is_empty()).then(|| {
        percent_decode_str(url.username())
            .decode_utf8_lossy()
            .into_owned()
    });
    let _ = url.set_username("");
    url.set_query(None);
    url.set_fragment(None);
    if !url.path().ends_with('/') {
        let p = format!("{}/", url.path());
        url.set_path(&p);
    }
    Ok((url, user))
}

/// Percent-encode a target-relative path (`.resource/a b`) segment by segment.
pub fn encode_path(path: &str) -> String {
    path.split('/')
        .map(|seg| utf8_percent_encode(seg, SEGMENT).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// The decoded path of the base URL, without a trailing slash (`/dav/Joplin`).
pub fn decoded_base_path(base: &Url) -> String {
    let p = percent_decode_str(base.path())
        .decode_utf8_lossy()
        .trim_end_matches('/')
        .to_string();
    if p.is_empty() {
        String::new()
    } else {
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let (u, user) =
            parse_target("https://cloud.example.org/remote.php/dav/files/me/Joplin").unwrap();
        assert_eq!(
            u.as_str(),
            "https://cloud.example.org/remote.php/dav/files/me/Joplin/"
        );
        assert_eq!(user, None);
        let (u, _) = parse_target("webdav://127.0.0.1:8080/dav/J").unwrap();
        assert_eq!(u.as_str(), "http://127.0.0.1:8080/dav/J/");
        let (u, _) = parse_target("WebDAVs://h/dav/").unwrap();
        assert_eq!(u.as_str(), "https://h/dav/");
        let (u, user) = parse_target("http://me%40x.org@h/dav").unwrap();
        assert_eq!(u.as_str(), "http://h/dav/");
        assert_eq!(user.as_deref(), Some("me@x.org"));
    }

    #[test]
    fn refuses_passwords_and_odd_schemes() {
        let e = parse_target("https://me:secret@h/dav").unwrap_err();
        assert!(!e.contains("secret"), "{e}");
        assert!(parse_target("ftp://h/dav").is_err());
        assert!(parse_target("https://").is_err());
    }

    #[test]
    fn encoding() {
        assert_eq!(encode_path(".resource/abc"), ".resource/abc");
        assert_eq!(encode_path("a b%20+&#?.md"), "a%20b%2520%2B%26%23%3F.md");
        assert_eq!(encode_path("ü.md"), "%C3%BC.md");
    }

    #[test]
    fn base_path() {
        let (u, _) = parse_target("http://h/dav/My%20Notes").unwrap();
        assert_eq!(decoded_base_path(&u), "/dav/My Notes");
        let (u, _) = parse_target("http://h/").unwrap();
        assert_eq!(decoded_base_path(&u), "");
    }
}
