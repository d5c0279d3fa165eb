//! A forgiving parser for PROPFIND `207 Multi-Status` answers.
//!
//! Servers agree on the DAV: namespace and little else: Apache writes `D:` with live properties
//! under `lp1:` and a second `404` propstat for `getcontentlength` on collections, WsgiDAV writes
//! `ns0:` on one line, rclone redeclares `xmlns:D` inside `resourcetype`, Nextcloud uses `d:`
//! next to `oc:`/`nc:` properties. So elements are matched by namespace URI + local name, never
//! by prefix; unprefixed elements with no namespace are accepted too (some embedded servers).

use std::time::SystemTime;

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::Event;
use quick_xml::name::{Namespace, ResolveResult};
use quick_xml::NsReader;

const DAV_NS: &[u8] = b"DAV:";

/// One `<response>` of a multistatus, with its `href` decoded to a plain path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DavResponse {
    /// The percent-decoded URL path, without a trailing slash (`/dav/Joplin/a b.md`).
    pub path: String,
    pub is_dir: bool,
    pub size: u64,
    pub modified: Option<SystemTime>,
}

impl DavResponse {
    /// The last path segment.
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// Properties of one `<propstat>` while it is being read; applied only if its status is 2xx.
#[derive(Default)]
struct PropStat {
    status: Option<u16>,
    is_dir: bool,
    size: Option<u64>,
    modified: Option<SystemTime>,
}

#[derive(Default)]
struct Response {
    href: String,
    status: Option<u16>,
    is_dir: bool,
    size: u64,
    modified: Option<SystemTime>,
}

/// Parse a multistatus body. Responses whose own `<status>` is not 2xx are dropped.
pub fn parse(xml: &[u8]) -> Result<Vec<DavResponse>, String> {
    let mut out = Vec::new();
    parse_each(xml, &mut |r| out.push(r))?;
    Ok(out)
}

/// [`parse`] from a reader, handing each `<response>` to `on` as soon as it is read: a large
/// listing is never held whole.
pub fn parse_each(
    xml: impl std::io::BufRead,
    on: &mut dyn FnMut(DavResponse),
) -> Result<(), String> {
    let mut reader = NsReader::from_reader(xml);
    // Element names (DAV: or no namespace), "" for any other namespace.
    let mut stack: Vec<String> = Vec::new();
    let mut resp: Option<Response> = None;
    let mut ps: Option<PropStat> = None;
    let mut buf = String::new();
    let mut seen_multistatus = false;
    let mut event = Vec::new();

    loop {
        event.clear();
        let (ns, ev) = reader
            .read_resolved_event_into(&mut event)
            .map_err(|e| format!("malformed XML: {e}"))?;
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(ev, Event::Empty(_));
                let name = dav_name(&ns, e.local_name().as_ref());
                match name.as_str() {
                    "multistatus" => seen_multistatus = true,
                    "response" => resp = Some(Response::default()),
                    "propstat" if resp.is_some() => ps = Some(PropStat::default()),
                    "collection" if parent_is(&stack, "resourcetype") => {
                        if let Some(p) = ps.as_mut() {
                            p.is_dir = true;
                        }
                    }
                    _ => {}
                }
                buf.clear();
                if !empty {
                    stack.push(name);
                } else {
                    end_element(&name, &stack, &mut resp, &mut ps, on, "");
                }
            }
            Event::End(_) => {
                let name = stack.pop().unwrap_or_default();
                let text = std::mem::take(&mut buf);
                end_element(&name, &stack, &mut resp, &mut ps, on, text.trim());
            }
            Event::Text(t) => {
                buf.push_str(&t.decode().map_err(|e| format!("bad text: {e}"))?);
            }
            Event::CData(t) => {
                buf.push_str(&t.decode().map_err(|e| format!("bad CDATA: {e}"))?);
            }
            Event::GeneralRef(r) => {
                if let Some(c) = r
                    .resolve_char_ref()
                    .map_err(|e| format!("bad reference: {e}"))?
                {
                    buf.push(c);
                } else {
                    let name = r.decode().map_err(|e| format!("bad reference: {e}"))?;
                    let v = resolve_predefined_entity(&name)
                        .ok_or_else(|| format!("unknown entity &{name};"))?;
                    buf.push_str(v);
                }
            }
            Event::Eof if !stack.is_empty() => {
                return Err(format!("the answer ends inside <{}>", stack.join("><")));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !seen_multistatus {
        return Err("the answer is not a WebDAV multistatus".into());
    }
    Ok(())
}

/// The element's name if it is in the DAV: namespace (or none at all), else "".
fn dav_name(ns: &ResolveResult, local: &[u8]) -> String {
    match ns {
        ResolveResult::Bound(Namespace(uri)) if *uri != DAV_NS => String::new(),
        ResolveResult::Unknown(_) => String::new(),
        _ => String::from_utf8_lossy(local).into_owned(),
    }
}

fn parent_is(stack: &[String], name: &str) -> bool {
    stack.last().map(|s| s == name).unwrap_or(false)
}

/// `HTTP/1.1 200 OK` → 200.
fn status_code(line: &str) -> Option<u16> {
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Handle the end of element `name`; `stack` holds its ancestors.
fn end_element(
    name: &str,
    stack: &[String],
    resp: &mut Option<Response>,
    ps: &mut Option<PropStat>,
    out: &mut dyn FnMut(DavResponse),
    text: &str,
) {
    match name {
        "href" if parent_is(stack, "response") => {
            if let Some(r) = resp.as_mut() {
                r.href = text.to_string();
            }
        }
        "status" if parent_is(stack, "propstat") => {
            if let Some(p) = ps.as_mut() {
                p.status = status_code(text);
            }
        }
        "status" if parent_is(stack, "response") => {
            if let Some(r) = resp.as_mut() {
                r.status = status_code(text);
            }
        }
        "getcontentlength" if parent_is(stack, "prop") => {
            if let Some(p) = ps.as_mut() {
                p.size = text.parse().ok();
            }
        }
        "getlastmodified" if parent_is(stack, "prop") => {
            if let Some(p) = ps.as_mut() {
                p.modified = parse_http_date(text);
            }
        }
        "propstat" => {
            if let (Some(p), Some(r)) = (ps.take(), resp.as_mut()) {
                if p.status.map(|s| (200..300).contains(&s)).unwrap_or(true) {
                    r.is_dir |= p.is_dir;
                    if let Some(s) = p.size {
                        r.size = s;
                    }
                    if p.modified.is_some() {
                        r.modified = p.modified;
                    }
                }
            }
        }
        "response" => {
            if let Some(r) = resp.take() {
                let ok = r.status.map(|s| (200..300).contains(&s)).unwrap_or(true);
                if ok && !r.href.is_empty() {
                    let is_dir = r.is_dir || r.href.ends_with('/');
                    out(DavResponse {
                        path: href_path(&r.href),
                        is_dir,
                        size: if is_dir { 0 } else { r.size },
                        modified: r.modified,
                    });
                }
            }
        }
        _ => {}
    }
}

/// `getlastmodified` is RFC 1123; tolerate `+0000`/`UTC` instead of `GMT`.
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    if let Ok(t) = httpdate::parse_http_date(s) {
        return Some(t);
    }
    for suffix in ["+0000", "UTC", "Z"] {
        if let Some(head) = s.strip_suffix(suffix) {
            if let Ok(t) = httpdate::parse_http_date(&format!("{} GMT", head.trim_end())) {
                return Some(t);
            }
        }
    }
    None
}

/// An href (absolute URL, absolute path, or — rarely — a bare path) → decoded path without a
/// trailing slash.
pub fn href_path(href: &str) -> String {
    let raw_path = if let Some(rest) = href
        .strip_prefix("http://")
        .or_else(|| href.strip_prefix("https://"))
    {
        // Drop the authority; keep the path.
        match rest.find('/') {
            Some(i) => &rest[i..],
            None => "/",
        }
    } else {
        href
    };
    // A query or fragment is never part of a WebDAV resource name.
    let raw_path = raw_path.split(['?', '#']).next().unwrap_or("");
    let decoded = percent_encoding::percent_decode_str(raw_path)
        .decode_utf8_lossy()
        .into_owned();
    let mut p = decoded.trim_end_matches('/').to_string();
    if !p.starts_with('/') {
        p.insert(0, '/');
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn sample(name: &str) -> Vec<u8> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/samples")
            .join(name);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn find<'a>(v: &'a [DavResponse], path: &str) -> &'a DavResponse {
        v.iter()
            .find(|r| r.path == path)
            .unwrap_or_else(|| panic!("{path} not in {v:#?}"))
    }

    /// Read through a reader a few bytes at a time (element names, entities and texts cut at
    /// every place), every sample gives the responses of the whole-buffer parse, in order.
    #[test]
    fn a_reader_cut_anywhere_gives_the_same_responses() {
        for name in ["apache.xml", "rclone.xml", "nextcloud.xml", "wsgidav.xml"] {
            let xml = sample(name);
            let whole = parse(&xml).unwrap();
            for cap in [1, 7, 64] {
                let mut streamed = Vec::new();
                let reader = std::io::BufReader::with_capacity(cap, &xml[..]);
                parse_each(reader, &mut |r| streamed.push(r)).unwrap();
                assert_eq!(streamed, whole, "{name}, {cap}-byte reads");
            }
        }
    }

    /// Captured from Apache 2.4.71 mod_dav_fs (Debian 12), `curl -X PROPFIND -H 'Depth: 1'`.
    #[test]
    fn apache() {
        let v = parse(&sample("apache.xml")).unwrap();
        assert_eq!(v.len(), 6);
        let root = &v[0];
        assert_eq!(root.path, "/dav/Joplin");
        assert!(root.is_dir);
        let res = find(&v, "/dav/Joplin/.resource");
        assert!(res.is_dir);
        assert_eq!(res.size, 0);
        let f = find(&v, "/dav/Joplin/with space.md");
        assert!(!f.is_dir);
        assert_eq!(f.size, 3);
        assert_eq!(
            f.modified,
            Some(UNIX_EPOCH + Duration::from_secs(1_795_597_224))
        );
        find(&v, "/dav/Joplin/ün\u{ef} 日.md");
        // `%2520` is a literal `%20` in the name.
        find(&v, "/dav/Joplin/percent%20sign.md");
        find(&v, "/dav/Joplin/0123456789abcdef0123456789abcdef.md");
    }

    /// Captured from `rclone serve webdav` 1.60.1: one line, `xmlns:D` redeclared inside
    /// `resourcetype`, `&amp;` in an href, uppercase percent-escapes.
    #[test]
    fn rclone() {
        let v = parse(&sample("rclone.xml")).unwrap();
        assert_eq!(v.len(), 7);
        assert!(find(&v, "/Joplin").is_dir);
        assert!(find(&v, "/Joplin/.resource").is_dir);
        assert_eq!(find(&v, "/Joplin/plus+amp&.md").size, 3);
        find(&v, "/Joplin/ün\u{ef} 日.md");
        find(&v, "/Joplin/percent%20sign.md");
        assert!(!find(&v, "/Joplin/with space.md").is_dir);
    }

    /// WsgiDAV 4.4 style (real-servers.md §6): `ns0:` prefix, `<ns0:collection />`.
    #[test]
    fn wsgidav() {
        let v = parse(&sample("wsgidav.xml")).unwrap();
        assert_eq!(v.len(), 3);
        assert!(find(&v, "/dav/Joplin").is_dir);
        let f = find(&v, "/dav/Joplin/0123456789abcdef0123456789abcdef.md");
        assert_eq!(f.size, 1234);
        assert!(f.modified.is_some());
        assert!(find(&v, "/dav/Joplin/.resource").is_dir);
    }

    /// Nextcloud style: `d:` + `oc:`/`nc:`/`s:` namespaces, a 404 propstat for unknown props,
    /// a `%40` (`@`) in the user name.
    #[test]
    fn nextcloud() {
        let v = parse(&sample("nextcloud.xml")).unwrap();
        assert_eq!(v.len(), 3);
        assert!(find(&v, "/remote.php/dav/files/me@example.org/Joplin").is_dir);
        let f = find(&v, "/remote.php/dav/files/me@example.org/Joplin/info.json");
        assert_eq!(f.size, 301);
        assert!(f.modified.is_some());
        assert!(find(&v, "/remote.php/dav/files/me@example.org/Joplin/locks").is_dir);
    }

    /// Absolute-URL hrefs (IIS, some hosted services), default namespace without prefix,
    /// a per-response 404 status that must be dropped.
    #[test]
    fn absolute_hrefs_and_default_namespace() {
        let v = parse(&sample("absolute-hrefs.xml")).unwrap();
        let paths: Vec<&str> = v.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "/webdav/Joplin",
                "/webdav/Joplin/a b.md",
                "/webdav/Joplin/sub"
            ]
        );
        assert!(v[2].is_dir);
        assert_eq!(v[1].size, 5);
    }

    #[test]
    fn not_a_multistatus() {
        assert!(parse(b"<html><body>Login</body></html>").is_err());
        assert!(parse(b"<D:multistatus xmlns:D=\"DAV:\"><D:response>").is_err());
    }

    #[test]
    fn hrefs() {
        assert_eq!(href_path("/dav/Joplin/"), "/dav/Joplin");
        assert_eq!(href_path("https://h:8443/dav/a%20b.md"), "/dav/a b.md");
        assert_eq!(href_path("http://h"), "/");
        assert_eq!(href_path("a.md"), "/a.md");
    }

    #[test]
    fn dates() {
        let want = Some(UNIX_EPOCH + Duration::from_secs(784_111_777));
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), want);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 +0000"), want);
        assert_eq!(parse_http_date("garbage"), None);
    }
}
