//! Incremental UTF-8 decoding of one byte stream, for asciicast events (JSON strings).
//!
//! A read can end in the middle of a multibyte character; those bytes (at most 3) are carried
//! over and decoded with the next read, so the character appears whole in the later event
//! instead of as two U+FFFD. Bytes that can never be UTF-8 become U+FFFD, and the exact bytes
//! of the chunk are handed back so the caller can keep them (see the module docs of
//! `recording`).

/// One decoded piece of the stream.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Decoded {
    /// The text of every complete character up to here (may be empty).
    pub text: String,
    /// When `text` is not a lossless rendering (invalid bytes were replaced), the exact bytes
    /// it stands for, including bytes carried over from the previous read.
    pub raw: Option<Vec<u8>>,
}

/// Decoder state of one stream: the incomplete character at the end of the last read.
#[derive(Debug, Default)]
pub(crate) struct Utf8Stream {
    carry: Vec<u8>,
}

impl Utf8Stream {
    /// Decodes the next read of the stream.
    pub fn decode(&mut self, data: &[u8]) -> Decoded {
        let joined;
        let bytes: &[u8] = if self.carry.is_empty() {
            data
        } else {
            let mut owned = std::mem::take(&mut self.carry);
            owned.extend_from_slice(data);
            joined = owned;
            &joined
        };
        let mut text = String::with_capacity(bytes.len());
        let mut lossy = false;
        let mut rest = bytes;
        loop {
            match std::str::from_utf8(rest) {
                Ok(valid) => {
                    text.push_str(valid);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    // `valid` is valid UTF-8 by construction; the lossy conversion is a
                    // no-op that avoids an unchecked call.
                    text.push_str(&String::from_utf8_lossy(valid));
                    match e.error_len() {
                        Some(bad) => {
                            text.push(char::REPLACEMENT_CHARACTER);
                            lossy = true;
                            rest = &after[bad..];
                        }
                        None => {
                            // An incomplete character at the end: wait for the rest.
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        let used = bytes.len() - rest.len();
        self.carry = rest.to_vec();
        Decoded {
            text,
            raw: lossy.then(|| bytes[..used].to_vec()),
        }
    }

    /// Ends the stream: an incomplete character left over is invalid and comes back as
    /// U+FFFD with its bytes; `None` if nothing was left.
    pub fn finish(&mut self) -> Option<Decoded> {
        if self.carry.is_empty() {
            return None;
        }
        let raw = std::mem::take(&mut self.carry);
        Some(Decoded {
            text: char::REPLACEMENT_CHARACTER.to_string(),
            raw: Some(raw),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(text: &str) -> Decoded {
        Decoded {
            text: text.into(),
            raw: None,
        }
    }

    #[test]
    fn two_byte_character_split_between_reads_arrives_whole() {
        let mut s = Utf8Stream::default();
        let e = "é".as_bytes();
        assert_eq!(s.decode(&[b'a', e[0]]), clean("a"));
        assert_eq!(s.decode(&[e[1], b'b']), clean("éb"));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn four_byte_emoji_split_one_and_three_and_byte_by_byte() {
        let crab = "🦀".as_bytes();
        let mut s = Utf8Stream::default();
        assert_eq!(s.decode(&crab[..1]), clean(""));
        assert_eq!(s.decode(&crab[1..]), clean("🦀"));
        for (i, b) in crab.iter().enumerate() {
            let want = if i == 3 { "🦀" } else { "" };
            assert_eq!(s.decode(&[*b]), clean(want));
        }
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn invalid_bytes_are_replaced_and_kept_exactly() {
        let mut s = Utf8Stream::default();
        let input = b"ok\xff\xfeend";
        let d = s.decode(input);
        assert_eq!(d.text, "ok\u{fffd}\u{fffd}end");
        assert_eq!(d.raw.as_deref(), Some(&input[..]));
        // A genuine U+FFFD in the stream is valid UTF-8 and needs no raw copy.
        assert_eq!(s.decode("\u{fffd}".as_bytes()), clean("\u{fffd}"));
    }

    #[test]
    fn carried_bytes_that_turn_out_invalid_are_kept_with_the_next_read() {
        let mut s = Utf8Stream::default();
        assert_eq!(s.decode(b"x\xe2\x82"), clean("x"));
        let d = s.decode(b"y");
        assert_eq!(d.text, "\u{fffd}y");
        assert_eq!(d.raw.as_deref(), Some(&b"\xe2\x82y"[..]));
    }

    #[test]
    fn incomplete_character_at_end_of_stream_is_reported() {
        let mut s = Utf8Stream::default();
        assert_eq!(s.decode(b"z\xf0\x9f"), clean("z"));
        let d = s.finish().unwrap();
        assert_eq!(d.text, "\u{fffd}");
        assert_eq!(d.raw.as_deref(), Some(&b"\xf0\x9f"[..]));
        assert_eq!(s.finish(), None);
    }
}
