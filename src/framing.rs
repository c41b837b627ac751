//! How an HTTP/1 body is delimited: one rule for the requests the edge reads and the answers
//! delivery reads back (RFC 9112 §6.3).
//!
//! Owns the [`Framing`] of a request, and the `Content-Length` rule both sides share: one value,
//! or a list or repeated lines whose members are all the same number (`5, 5` is 5; `5, 6` is no
//! length at all). Pure, over header values already split out by the caller; the chunked coding
//! itself is [`crate::chunked`]'s, and what a body must be for a route is the checks'.

/// How a request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No `Transfer-Encoding` and no `Content-Length`: no body.
    None,
    Length(u64),
    /// `Transfer-Encoding: chunked` (alone).
    Chunked,
    /// A `Transfer-Encoding` other than plain chunked: the body cannot be delimited.
    Unframeable,
}

/// Why a request's framing cannot be trusted. Either ends the connection: where the next
/// request starts is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("both Content-Length and Transfer-Encoding are present")]
    LengthAndChunked,
    #[error("Content-Length is not one valid length")]
    BadContentLength,
}

/// The value of every `Content-Length` line together: `Ok(None)` when there is none, an error
/// when a member is not a length or the members disagree.
pub fn content_length<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Option<u64>, FramingError> {
    let mut length = None;
    for member in values
        .into_iter()
        .flat_map(|v| v.split(|&b| b == b',').map(<[u8]>::trim_ascii))
    {
        let n = parse_length(member).ok_or(FramingError::BadContentLength)?;
        if length.is_some_and(|l| l != n) {
            return Err(FramingError::BadContentLength);
        }
        length = Some(n);
    }
    Ok(length)
}

/// A request's framing from its `Transfer-Encoding` and `Content-Length` values.
/// Transfer-Encoding wins only when it is alone: with Content-Length too the request is refused
/// (a request smuggling vector, and Twilio never sends both).
pub fn request_framing<'a>(
    transfer_encoding: impl IntoIterator<Item = &'a [u8]>,
    content_lengths: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Framing, FramingError> {
    let mut te = transfer_encoding.into_iter().peekable();
    let mut lengths = content_lengths.into_iter().peekable();
    if te.peek().is_some() {
        if lengths.peek().is_some() {
            return Err(FramingError::LengthAndChunked);
        }
        let mut codings = te.flat_map(|v| v.split(|&b| b == b',').map(<[u8]>::trim_ascii));
        let chunked_alone = codings
            .next()
            .is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"))
            && codings.next().is_none();
        return Ok(if chunked_alone {
            Framing::Chunked
        } else {
            Framing::Unframeable
        });
    }
    Ok(content_length(lengths)?.map_or(Framing::None, Framing::Length))
}

/// `1*DIGIT`, no sign, no spaces inside, and small enough to mean something.
fn parse_length(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 15 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cl(values: &[&str]) -> Result<Option<u64>, FramingError> {
        content_length(values.iter().map(|v| v.as_bytes()))
    }

    #[test]
    fn a_list_or_repeated_lines_of_one_number_are_that_length() {
        assert_eq!(cl(&[]), Ok(None));
        assert_eq!(cl(&["5"]), Ok(Some(5)));
        assert_eq!(cl(&["5, 5"]), Ok(Some(5)));
        assert_eq!(cl(&["5,5"]), Ok(Some(5)));
        assert_eq!(cl(&["5", "5"]), Ok(Some(5)));
        assert_eq!(cl(&[" 0 "]), Ok(Some(0)));
        assert_eq!(cl(&["999999999999999"]), Ok(Some(999_999_999_999_999)));
    }

    #[test]
    fn disagreeing_or_malformed_lengths_are_no_length() {
        for bad in [
            &["5, 6"][..],
            &["5", "6"],
            &["+5"],
            &["-1"],
            &["5 5"],
            &[""],
            &["5,"],
            &["0x10"],
            &["1000000000000000"],
        ] {
            assert_eq!(cl(bad), Err(FramingError::BadContentLength), "{bad:?}");
        }
    }

    #[test]
    fn transfer_encoding_wins_only_alone() {
        let none: [&[u8]; 0] = [];
        assert_eq!(request_framing(none, none), Ok(Framing::None));
        assert_eq!(request_framing(none, [&b"7"[..]]), Ok(Framing::Length(7)));
        assert_eq!(
            request_framing([&b"chunked"[..]], none),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            request_framing([&b"Chunked"[..]], none),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            request_framing([&b"gzip, chunked"[..]], none),
            Ok(Framing::Unframeable)
        );
        assert_eq!(
            request_framing([&b"chunked"[..]], [&b"5"[..]]),
            Err(FramingError::LengthAndChunked)
        );
    }
}
