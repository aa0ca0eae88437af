//! A single `Range: bytes=...` request (multi-range requests are answered in full).

use actix_web::http::header::HeaderValue;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    /// Inclusive.
    pub end: u64,
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    /// `Ok(None)`: no usable range, send everything. `Err(size)`: unsatisfiable (416).
    pub fn parse(header: Option<&HeaderValue>, size: Option<u64>) -> Result<Option<ByteRange>, u64> {
        let (Some(value), Some(size)) = (header.and_then(|h| h.to_str().ok()), size) else { return Ok(None) };
        let Some(spec) = value.trim().strip_prefix("bytes=") else { return Ok(None) };
        if spec.contains(',') {
            return Ok(None);
        }
        let Some((a, b)) = spec.split_once('-') else { return Ok(None) };
        let (a, b) = (a.trim(), b.trim());
        let range = match (a.parse::<u64>().ok(), b.parse::<u64>().ok()) {
            (Some(start), Some(end)) if start <= end => ByteRange { start, end: end.min(size.saturating_sub(1)) },
            (Some(start), None) if b.is_empty() => ByteRange { start, end: size.saturating_sub(1) },
            (None, Some(suffix)) if a.is_empty() && suffix > 0 => ByteRange { start: size.saturating_sub(suffix), end: size.saturating_sub(1) },
            // A zero-length suffix selects nothing (RFC 9110 §14.1.3): unsatisfiable.
            (None, Some(0)) if a.is_empty() => return Err(size),
            _ => return Ok(None),
        };
        if size == 0 || range.start >= size {
            return Err(size);
        }
        Ok(Some(range))
    }
}

/// A chunk's `Content-Range: <start>-<end>` (inclusive; `bytes ` prefix tolerated) as
/// `(start, end)`; `None` when it is malformed or `end < start`.
pub fn parse_content_range(value: &str) -> Option<(u64, u64)> {
    let spec = value.trim();
    let spec = spec.strip_prefix("bytes ").or_else(|| spec.strip_prefix("bytes=")).unwrap_or(spec);
    let spec = spec.split('/').next()?;
    let (a, b) = spec.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 19 && s.bytes().all(|c| c.is_ascii_digit());
    if !digits(a) || !digits(b) {
        return None;
    }
    let (start, end) = (a.parse::<u64>().ok()?, b.parse::<u64>().ok()?);
    (start <= end).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("0-99"), Some((0, 99)));
        assert_eq!(parse_content_range("bytes 100-199/*"), Some((100, 199)));
        assert_eq!(parse_content_range("500-10"), None);
        assert_eq!(parse_content_range("-10"), None);
        assert_eq!(parse_content_range("a-b"), None);
        assert_eq!(parse_content_range("99999999999999999999-1"), None);
    }

    fn parse(v: &str, size: u64) -> Result<Option<ByteRange>, u64> {
        ByteRange::parse(Some(&HeaderValue::from_str(v).unwrap()), Some(size))
    }

    #[test]
    fn ranges() {
        assert_eq!(parse("bytes=1000-1999", 5000), Ok(Some(ByteRange { start: 1000, end: 1999 })));
        assert_eq!(parse("bytes=4000-", 5000), Ok(Some(ByteRange { start: 4000, end: 4999 })));
        assert_eq!(parse("bytes=-10", 5000), Ok(Some(ByteRange { start: 4990, end: 4999 })));
        assert_eq!(parse("bytes=100-99999", 5000), Ok(Some(ByteRange { start: 100, end: 4999 })));
        assert_eq!(parse("bytes=5000-", 5000), Err(5000));
        assert_eq!(parse("bytes=0-1,5-6", 5000), Ok(None));
        assert_eq!(parse("items=0-1", 5000), Ok(None));
        assert_eq!(parse("bytes=-0", 5000), Err(5000));
    }
}
