//! Content-Type by file extension: a fixed table for the media and text types that matter, then mime_guess.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use http::HeaderValue;

const OCTET_STREAM: &str = "application/octet-stream";

/// The Content-Type to send for the file at `path`.
pub(crate) fn content_type(path: &Path) -> HeaderValue {
    let Some(ext) = path.extension() else {
        return HeaderValue::from_static(OCTET_STREAM);
    };
    let ext = ext.as_bytes();
    let mut buf = [0u8; 8];
    if let Some(lower) = buf.get_mut(..ext.len()) {
        lower.copy_from_slice(ext);
        lower.make_ascii_lowercase();
        if let Some(known) = known(lower) {
            return HeaderValue::from_static(known);
        }
    }
    let Ok(ext) = std::str::from_utf8(ext) else {
        return HeaderValue::from_static(OCTET_STREAM);
    };
    match mime_guess::from_ext(ext).first_raw() {
        Some(text) if text.starts_with("text/") => {
            HeaderValue::try_from(format!("{text}; charset=utf-8")).unwrap_or(HeaderValue::from_static(OCTET_STREAM))
        }
        Some(other) => HeaderValue::from_static(other),
        None => HeaderValue::from_static(OCTET_STREAM),
    }
}

/// Types we pin down ourselves, by lower-case extension.
fn known(ext: &[u8]) -> Option<&'static str> {
    Some(match ext {
        // video
        b"mp4" => "video/mp4",
        b"m4v" => "video/x-m4v",
        b"mov" => "video/quicktime",
        b"mkv" => "video/x-matroska",
        b"webm" => "video/webm",
        b"avi" => "video/x-msvideo",
        b"ogv" => "video/ogg",
        b"mpg" | b"mpeg" => "video/mpeg",
        b"ts" | b"m2ts" => "video/mp2t",
        b"wmv" => "video/x-ms-wmv",
        b"3gp" => "video/3gpp",
        // audio
        b"mp3" => "audio/mpeg",
        b"m4a" => "audio/mp4",
        b"aac" => "audio/aac",
        b"flac" => "audio/flac",
        b"ogg" | b"oga" => "audio/ogg",
        b"opus" => "audio/opus",
        b"wav" => "audio/wav",
        // images
        b"jpg" | b"jpeg" => "image/jpeg",
        b"png" => "image/png",
        b"gif" => "image/gif",
        b"webp" => "image/webp",
        b"avif" => "image/avif",
        b"svg" => "image/svg+xml",
        // subtitles and playlists
        b"srt" => "application/x-subrip",
        b"vtt" => "text/vtt; charset=utf-8",
        b"m3u8" => "application/vnd.apple.mpegurl",
        b"m3u" => "audio/x-mpegurl",
        // text
        b"html" | b"htm" => "text/html; charset=utf-8",
        b"css" => "text/css; charset=utf-8",
        b"js" | b"mjs" => "text/javascript; charset=utf-8",
        b"json" => "application/json",
        b"txt" | b"log" | b"nfo" => "text/plain; charset=utf-8",
        b"md" => "text/markdown; charset=utf-8",
        b"csv" => "text/csv; charset=utf-8",
        b"xml" => "text/xml; charset=utf-8",
        b"pdf" => "application/pdf",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ct(name: &str) -> String {
        content_type(Path::new(name)).to_str().unwrap_or_default().to_owned()
    }

    #[test]
    fn media_types() {
        for (name, want) in [
            ("a.mp4", "video/mp4"),
            ("a.m4v", "video/x-m4v"),
            ("a.mov", "video/quicktime"),
            ("a.mkv", "video/x-matroska"),
            ("a.webm", "video/webm"),
            ("a.avi", "video/x-msvideo"),
            ("a.mp3", "audio/mpeg"),
            ("a.m4a", "audio/mp4"),
            ("a.flac", "audio/flac"),
            ("a.ogg", "audio/ogg"),
            ("a.wav", "audio/wav"),
            ("a.jpg", "image/jpeg"),
            ("a.jpeg", "image/jpeg"),
            ("a.png", "image/png"),
            ("a.gif", "image/gif"),
            ("a.webp", "image/webp"),
            ("a.srt", "application/x-subrip"),
            ("a.vtt", "text/vtt; charset=utf-8"),
            ("dir/Movie.MKV", "video/x-matroska"),
            ("x.JPG", "image/jpeg"),
        ] {
            assert_eq!(ct(name), want, "{name}");
        }
    }

    #[test]
    fn text_gets_charset_and_unknown_is_octet_stream() {
        assert_eq!(ct("notes.txt"), "text/plain; charset=utf-8");
        assert_eq!(ct("index.html"), "text/html; charset=utf-8");
        // From mime_guess, not the table: still gets a charset.
        assert_eq!(ct("a.rtx"), "text/richtext; charset=utf-8");
        assert_eq!(ct("a.zip"), "application/zip");
        assert_eq!(ct("noext"), OCTET_STREAM);
        assert_eq!(ct("a.unknownextension"), OCTET_STREAM);
        assert_eq!(ct(".hidden"), OCTET_STREAM);
    }

    #[test]
    fn non_utf8_extension() {
        use std::ffi::OsStr;
        let name = OsStr::from_bytes(b"a.\xff\xfe");
        assert_eq!(content_type(Path::new(name)), OCTET_STREAM);
    }
}
