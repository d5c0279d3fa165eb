//! The name Joplin gives a resource's blob in a JEX (`resources/<id>.<ext>`), which its import
//! looks for and nothing else: the resource's `file_extension`, else the extension Joplin
//! derives from the MIME type, else no extension.

/// MIME type → extension, as Joplin derives it when a resource has no `file_extension`: the
/// first three-letter extension its list (Apache httpd's `mime.types`, plus Markdown and AVIF)
/// gives the type, else its first. One `type ext` pair a line, sorted by type.
const JOPLIN_MIME_EXTENSIONS: &str = include_str!("joplin_mime_extensions.txt");

/// The extension Joplin derives from `mime` (case-insensitive), if its list knows the type.
pub fn extension_for_mime(mime: &str) -> Option<&'static str> {
    let mime = mime.trim().to_ascii_lowercase();
    JOPLIN_MIME_EXTENSIONS
        .lines()
        .filter_map(|l| l.split_once(' '))
        .find(|(t, _)| *t == mime)
        .map(|(_, e)| e)
}

/// `resources/<id>[.<ext>]` for a resource with these `file_extension` and `mime` fields.
pub fn jex_blob_name(id: &str, file_extension: &str, mime: &str) -> String {
    let ext = match file_extension {
        "" => extension_for_mime(mime).unwrap_or(""),
        e => e,
    };
    match ext {
        "" => format!("resources/{id}"),
        e => format!("resources/{id}.{e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_sorted_and_one_pair_a_line() {
        let types: Vec<&str> = JOPLIN_MIME_EXTENSIONS
            .lines()
            .map(|l| l.split_once(' ').expect(l).0)
            .collect();
        assert!(types.len() > 700, "{}", types.len());
        assert!(
            types.windows(2).all(|w| w[0] < w[1]),
            "not sorted or a type twice"
        );
    }

    #[test]
    fn the_extension_is_joplins_pick() {
        // Three-letter extensions first, whatever their place in the type's list.
        assert_eq!(extension_for_mime("application/octet-stream"), Some("bin"));
        assert_eq!(extension_for_mime("image/jpeg"), Some("jpg"));
        assert_eq!(extension_for_mime("text/html"), Some("htm"));
        assert_eq!(extension_for_mime("Image/PNG"), Some("png"));
        assert_eq!(extension_for_mime("image/webp"), Some("webp"));
        assert_eq!(extension_for_mime("text/markdown"), Some("md"));
        assert_eq!(extension_for_mime("application/x-unheard-of"), None);
    }

    #[test]
    fn the_resources_own_extension_wins_and_unknown_types_get_none() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            jex_blob_name(id, "PNG", "image/jpeg"),
            format!("resources/{id}.PNG")
        );
        assert_eq!(
            jex_blob_name(id, "", "application/octet-stream"),
            format!("resources/{id}.bin")
        );
        assert_eq!(jex_blob_name(id, "", ""), format!("resources/{id}"));
        assert_eq!(
            jex_blob_name(id, "", "application/x-unheard-of"),
            format!("resources/{id}")
        );
    }
}
