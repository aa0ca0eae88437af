//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz): one function per parser that
//! takes outside input. Each takes raw bytes, calls the parser and asserts what its result
//! promises; a panic is a crash. Not part of the API: it is here so the targets can reach
//! crate-private parsers.

use actix_web::http::header::HeaderValue;

use crate::registry::range::{parse_content_range, ByteRange};
use crate::sync::References;
use crate::upstream::auth::Challenge;

fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// `sha256:<64 hex>` / `sha512:<128 hex>`, lower case: accepted exactly when it is one of these.
pub fn fuzz_digest(data: &[u8]) {
    let s = text(data);
    let hex = |h: &str, n: usize| h.len() == n && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let want = match s.split_once(':') {
        Some(("sha256", h)) => hex(h, 64),
        Some(("sha512", h)) => hex(h, 128),
        _ => false,
    };
    assert_eq!(crate::registry::valid_digest(&s), want, "valid_digest({s:?})");
}

/// The OCI repository name grammar
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`, at most 255 bytes.
fn oci_grammar(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let component = |c: &str| {
        c.starts_with(alnum)
            && c.ends_with(alnum)
            && c.split(alnum).filter(|sep| !sep.is_empty()).all(|sep| matches!(sep, "." | "_" | "__") || sep.chars().all(|x| x == '-'))
    };
    !s.is_empty() && s.len() <= 255 && s.split('/').all(component)
}

/// Repository names (accepted exactly when they match the OCI grammar) and the other
/// free-text validators of the API.
pub fn fuzz_oci_name(data: &[u8]) {
    let s = text(data);
    assert_eq!(crate::api::validate::oci_name(&s).is_ok(), oci_grammar(&s), "oci_name({s:?})");
    if crate::api::validate::name(&s).is_ok() {
        assert!(!s.trim().is_empty() && s.len() <= 255, "name accepted {s:?}");
    }
    let _ = crate::api::validate::http_url(&s);
    let _ = crate::api::validate::policy(&s);
}

/// Input: the first line is the representation's size (decimal; anything else means unknown),
/// the rest is the `Range` header's value.
pub fn fuzz_range(data: &[u8]) {
    let (size_line, value) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };
    let size = std::str::from_utf8(size_line).ok().and_then(|s| s.trim().parse::<u64>().ok());
    let Ok(header) = HeaderValue::from_bytes(value) else { return };
    for (h, sz) in [(Some(&header), size), (None, size), (Some(&header), None)] {
        match ByteRange::parse(h, sz) {
            Ok(Some(r)) => {
                let sz = sz.expect("a range without a known size");
                assert!(r.start <= r.end && r.end < sz, "range {r:?} of a {sz}-byte body from {header:?}");
                assert!(r.len() >= 1 && r.len() <= sz, "range {r:?} of a {sz}-byte body from {header:?}");
            }
            Ok(None) => {}
            Err(unsatisfiable) => {
                assert_eq!(Some(unsatisfiable), sz, "416 with the wrong size for {header:?}");
            }
        }
    }
}

/// A chunk's `Content-Range`.
pub fn fuzz_content_range(data: &[u8]) {
    let s = text(data);
    if let Some((start, end)) = parse_content_range(&s) {
        assert!(start <= end, "content range {start}-{end} from {s:?}");
        assert_eq!(parse_content_range(&format!("{start}-{end}")), Some((start, end)));
    }
}

/// The first challenge of a `WWW-Authenticate` value.
pub fn fuzz_www_authenticate(data: &[u8]) {
    let s = text(data);
    let scheme = s.trim().split(' ').next().unwrap_or("").to_ascii_lowercase();
    match crate::upstream::auth::parse_challenge(&s) {
        Some(Challenge::Basic) => assert_eq!(scheme, "basic", "Basic challenge from {s:?}"),
        Some(Challenge::Bearer { realm, service, scope }) => {
            assert_eq!(scheme, "bearer", "Bearer challenge from {s:?}");
            // What was read comes back the same when written out again, quoted.
            let quote = |v: &str| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""));
            let mut again = format!("Bearer realm={}", quote(&realm));
            if let Some(v) = &service {
                again += &format!(",service={}", quote(v));
            }
            if let Some(v) = &scope {
                again += &format!(", scope={}", quote(v));
            }
            let want = Challenge::Bearer { realm, service, scope };
            assert_eq!(crate::upstream::auth::parse_challenge(&again), Some(want), "{again:?} (from {s:?})");
        }
        None => {}
    }
}

const MEDIA_TYPES: [&str; 4] = [
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
];

/// Manifests and indexes: the media type as sniffed (with each `Content-Type` an upstream may
/// send), then the references the sync reads from it.
pub fn fuzz_manifest(data: &[u8]) {
    let mut seen: Vec<String> = Vec::new();
    for content_type in [None, Some("application/octet-stream")].into_iter().chain(MEDIA_TYPES.map(Some)) {
        let Some(media_type) = crate::upstream::media_type_of(data, content_type) else { continue };
        assert!(MEDIA_TYPES.contains(&media_type.as_str()), "media type {media_type:?}");
        if seen.contains(&media_type) {
            continue;
        }
        match crate::sync::references(&media_type, data) {
            Ok(References::Image { config, layers }) => {
                assert!(!crate::upstream::is_list(&media_type));
                for b in std::iter::once(&config).chain(&layers) {
                    assert!(b.size >= 0, "blob {} with the negative size {}", b.digest, b.size);
                }
            }
            Ok(References::List(_)) => assert!(crate::upstream::is_list(&media_type)),
            Err(_) => {}
        }
        seen.push(media_type);
    }
    let facts = crate::models::referrer::ReferrerFacts::of(crate::upstream::OCI_MANIFEST, data);
    assert!(facts.subject.as_deref().is_none_or(crate::registry::valid_digest), "subject {:?}", facts.subject);
    assert!(facts.artifact_type.as_deref().is_none_or(|t| !t.is_empty() && !t.contains('\0')), "artifact type {:?}", facts.artifact_type);
    if let Some(a) = &facts.annotations {
        assert!(serde_json::from_str::<serde_json::Value>(a).is_ok_and(|v| v.is_object()), "annotations {a:?}");
    }
}

/// One `tags/list` page. (serde_json skips the fields it ignores without checking them as fully
/// as `serde_json::Value` would, e.g. invalid UTF-8 or `1e400` in `name`: accepted, not a bug.)
pub fn fuzz_tag_page(data: &[u8]) {
    if let Ok(tags) = crate::upstream::parse_tag_page(data) {
        // Each tag is a string literal of its own, at least `""`.
        assert!(tags.len() * 2 <= data.len(), "{} tags from {} bytes", tags.len(), data.len());
        // Only the tags are read: what else the page holds does not change them.
        let lossy = String::from_utf8_lossy(data);
        assert_eq!(crate::upstream::parse_tag_page(lossy.as_bytes()), Ok(tags), "from {lossy:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzz_entry_points_take_the_seeds() {
        let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        for s in [d, "sha256:", "sha512:00", "SHA256:x", "", "\u{fffd}:"] {
            fuzz_digest(s.as_bytes());
        }
        for s in ["library/busybox", "a__b/c-d.e", "A", "a//b", "a/", "", "x\u{0}y", "https://example.com"] {
            fuzz_oci_name(s.as_bytes());
        }
        for s in ["5000\nbytes=0-99", "5000\nbytes=-10", "0\nbytes=0-", "5000\nbytes=-0", "x\nbytes=1-2", "bytes=0-1", "18446744073709551615\nbytes=-18446744073709551615", "1\nbytes=0-1,2-3"] {
            fuzz_range(s.as_bytes());
        }
        for s in ["0-99", "bytes 100-199/*", "500-10", "-1", "99999999999999999999-1", "bytes=1-1/2"] {
            fuzz_content_range(s.as_bytes());
        }
        for s in [
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
            r#"Basic realm="x""#,
            r#"bearer realm="a,b", scope=c"#,
            r#"Bearer realm="unterminated"#,
            "Bearer ,,,=",
            "",
        ] {
            fuzz_www_authenticate(s.as_bytes());
        }
        let image = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","size":7},"layers":[]}"#;
        let index = br#"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","size":7,"platform":{"architecture":"amd64","os":"linux"}}]}"#;
        for s in [&image[..], &index[..], br#"{"schemaVersion":2,"layers":1}"#, b"{", b"[]", b""] {
            fuzz_manifest(s);
        }
        for s in [&br#"{"name":"a","tags":["1","latest"]}"#[..], br#"{"name":"a","tags":null}"#, b"{}", b"[[\"x\"]]", b"{\"name\":\"a\xffb\",\"tags\":[\"1\"]}", b"nope"] {
            fuzz_tag_page(s);
        }
    }
}
