//! Unit tests of [`super`] (the chunked decoder and encoder), beside it so chunked.rs
//! stays readable. The request fixtures in workers/tests/fixtures/requests cover the
//! smuggling catalogue end to end.

use super::*;

fn decode_all(input: &[u8]) -> Result<(Vec<u8>, usize, DecodeProgress), ParseError> {
    let mut d = ChunkedDecoder::new();
    let mut out = Vec::new();
    let (n, p) = d.decode(input, &mut out)?;
    Ok((out, n, p))
}

fn decode_bytewise(input: &[u8]) -> Result<(Vec<u8>, usize, DecodeProgress), ParseError> {
    let mut d = ChunkedDecoder::new();
    let mut out = Vec::new();
    let mut consumed = 0;
    for b in input {
        let (n, p) = d.decode(std::slice::from_ref(b), &mut out)?;
        consumed += n;
        if p == DecodeProgress::Done {
            return Ok((out, consumed, p));
        }
        assert_eq!(n, 1, "a single byte before Done is always consumed");
    }
    Ok((out, consumed, DecodeProgress::NeedMore))
}

#[test]
fn simple_body() {
    let input = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let (out, n, p) = decode_all(input).unwrap();
    assert_eq!(out, b"hello world");
    assert_eq!(n, input.len());
    assert_eq!(p, DecodeProgress::Done);
}

#[test]
fn byte_at_a_time_matches_whole() {
    let input = b"5;a=b;c=\"x y\"\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n";
    let whole = decode_all(input).unwrap();
    let bytewise = decode_bytewise(input).unwrap();
    assert_eq!(whole, bytewise);
    assert_eq!(whole.0, b"hello0123456789");
    assert_eq!(whole.2, DecodeProgress::Done);
}

#[test]
fn pipelined_leftover_is_not_consumed() {
    let input = b"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
    let (out, n, p) = decode_all(input).unwrap();
    assert_eq!(out, b"abc");
    assert_eq!(p, DecodeProgress::Done);
    assert_eq!(&input[n..], b"GET / HTTP/1.1\r\n");
    // Once done, more input is left alone.
    let mut d = ChunkedDecoder::new();
    let mut out = Vec::new();
    d.decode(b"0\r\n\r\n", &mut out).unwrap();
    assert_eq!(
        d.decode(b"xyz", &mut out).unwrap(),
        (0, DecodeProgress::Done)
    );
}

#[test]
fn trailers_are_kept() {
    let mut d = ChunkedDecoder::new();
    let mut out = Vec::new();
    let (_, p) = d
        .decode(b"1\r\na\r\n0\r\nX-Sum: 9\r\nY: z\r\n\r\n", &mut out)
        .unwrap();
    assert_eq!(p, DecodeProgress::Done);
    assert_eq!(d.trailers().len(), 2);
    assert_eq!(d.trailers()[0].name, "X-Sum");
    assert_eq!(d.trailers()[0].value, b"9");
}

#[test]
fn output_cap_is_respected() {
    let input = b"a\r\n0123456789\r\n0\r\n\r\n";
    let mut d = ChunkedDecoder::new();
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        let (n, p) = d.decode_capped(&input[pos..], &mut out, 4).unwrap();
        pos += n;
        assert!(out.len() <= 12);
        if p == DecodeProgress::Done {
            break;
        }
        out.clear();
    }
    assert_eq!(pos, input.len());
}

#[test]
fn strict_chunk_sizes() {
    let cases: &[(&[u8], ParseError)] = &[
        (b"0x5\r\nhello\r\n0\r\n\r\n", ParseError::InvalidChunkSize),
        (b" 5\r\nhello\r\n0\r\n\r\n", ParseError::InvalidChunkSize),
        // BWS only before a `;`: trailing whitespace alone is not an extension.
        (
            b"5 \r\nhello\r\n0\r\n\r\n",
            ParseError::InvalidChunkExtension,
        ),
        (b"5;a \r\nhello\r\n", ParseError::InvalidChunkExtension),
        (b"5 x\r\nhello\r\n", ParseError::InvalidChunkExtension),
        (b"+5\r\nhello\r\n0\r\n\r\n", ParseError::InvalidChunkSize),
        (b"-1\r\n", ParseError::InvalidChunkSize),
        (b"\r\n", ParseError::InvalidChunkSize),
        (b"10000000000000000\r\n", ParseError::ChunkSizeTooLong),
        (b"5\nhello\r\n0\r\n\r\n", ParseError::BareLineFeed),
        (b"5\rhello\r\n", ParseError::BareCarriageReturn),
        (
            b"5\r\nhelloX\r\n0\r\n\r\n",
            ParseError::InvalidChunkTerminator,
        ),
        (b"5\r\nhello\n0\r\n\r\n", ParseError::InvalidChunkTerminator),
        (b"5;a=\r\nhello\r\n", ParseError::InvalidChunkExtension),
        (b"5;a=\"x\r\nhello\r\n", ParseError::InvalidChunkExtension),
        (b"5;=b\r\nhello\r\n", ParseError::InvalidChunkExtension),
        (b"0\r\nbad trailer\r\n\r\n", ParseError::InvalidHeaderName),
        (b"0\r\nbad\r\n\r\n", ParseError::HeaderWithoutColon),
        (b"8000000000000000\r\n", ParseError::ChunkSizeTooLarge),
        (b"ffffffffffffffff\r\n", ParseError::ChunkSizeTooLarge),
        (b"0\r\n folded: x\r\n\r\n", ParseError::ObsoleteLineFolding),
        (b"0\r\nX: 1\n\r\n", ParseError::BareLineFeed),
    ];
    for (input, want) in cases {
        assert_eq!(
            decode_all(input).err(),
            Some(*want),
            "whole: {:?}",
            String::from_utf8_lossy(input)
        );
        assert_eq!(
            decode_bytewise(input).err(),
            Some(*want),
            "bytewise: {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn early_rejection_before_line_end() {
    let mut d = ChunkedDecoder::new();
    assert_eq!(
        d.decode(b"zz", &mut Vec::new()).err(),
        Some(ParseError::InvalidChunkSize)
    );
    // Padding past 16 digits is refused at the 17th, a size too large at the digit
    // that makes it so: f * 16 is past 2^63-1, and with a body limit of 64, `80` is.
    let mut d = ChunkedDecoder::new();
    assert_eq!(
        d.decode(&[b'0'; 17], &mut Vec::new()).err(),
        Some(ParseError::ChunkSizeTooLong)
    );
    let mut d = ChunkedDecoder::new();
    assert_eq!(
        d.decode(&[b'f'; 17], &mut Vec::new()).err(),
        Some(ParseError::ChunkSizeTooLarge)
    );
    let mut d = ChunkedDecoder::new().with_max_body(64);
    assert_eq!(
        d.decode(b"8000000000000000\r\n", &mut Vec::new()).err(),
        Some(ParseError::BodyTooLarge)
    );
}

#[test]
fn sizes_stop_at_a_file_offset() {
    // 2^63-1 is the largest body (nginx's off_t bound): accepted, and data may follow.
    let mut d = ChunkedDecoder::new();
    let (n, p) = d
        .decode(b"7fffffffffffffff\r\nab", &mut Vec::new())
        .unwrap();
    assert_eq!((n, p), (20, DecodeProgress::NeedMore));
    assert_eq!(d.declared(), i64::MAX as u64);
    // One byte more overflows it, refused before the size line ends; and so does a
    // total that overflows over several chunks.
    let mut d = ChunkedDecoder::new();
    assert_eq!(
        d.decode(b"ffffffffffffffff", &mut Vec::new()).err(),
        Some(ParseError::ChunkSizeTooLarge)
    );
    let mut d = ChunkedDecoder::new();
    d.decode(b"4000000000000000\r\n", &mut Vec::new()).unwrap();
    assert_eq!(d.declared(), 1 << 62);
}

#[test]
fn a_total_past_a_file_offset_is_refused() {
    // Two chunks of 2^62 each: the second takes the total past 2^63-1. Only the size
    // lines matter, so feed the decoder as if the data had been read.
    let mut d = ChunkedDecoder::new();
    d.decode(b"4000000000000000\r\n", &mut Vec::new()).unwrap();
    d.state = State::DataCr;
    assert_eq!(
        d.decode(b"\r\n4000000000000000\r\n", &mut Vec::new()).err(),
        Some(ParseError::ChunkSizeTooLarge)
    );
}

#[test]
fn declared_size_is_refused_against_the_body_limit_at_once() {
    let mut d = ChunkedDecoder::new().with_max_body(100);
    let mut out = Vec::new();
    d.decode(b"64\r\n", &mut out).unwrap();
    assert_eq!(d.declared(), 100);
    // 100 declared, one more chunk of 1 byte: refused at its size, before its data.
    let mut d = ChunkedDecoder::new().with_max_body(100);
    let input = b"64\r\n" as &[u8];
    let mut body = input.to_vec();
    body.extend(std::iter::repeat_n(b'x', 100));
    body.extend_from_slice(b"\r\n1\r\n");
    assert_eq!(
        d.decode(&body, &mut out).err(),
        Some(ParseError::BodyTooLarge)
    );
}

#[test]
fn extensions_allow_bws_as_rfc_9112_says() {
    for line in [
        &b"5;a=b"[..],
        b"5 ;a=b",
        b"5; a=b",
        b"5 ; a = b",
        b"5\t;\tname=\"quoted value\"",
        b"5;a;b=c ; d",
    ] {
        let mut input = line.to_vec();
        input.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
        let (out, n, p) = decode_all(&input).unwrap();
        assert_eq!(
            (out.as_slice(), n, p),
            (&b"hello"[..], input.len(), DecodeProgress::Done)
        );
        assert_eq!(decode_bytewise(&input).unwrap().0, b"hello");
    }
}

#[test]
fn data_is_handed_out_in_place() {
    let input = b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    let mut d = ChunkedDecoder::new();
    let first = d.next(input).unwrap();
    assert_eq!(
        (first.consumed, first.data, first.done),
        (6, &b"abc"[..], false)
    );
    let second = d.next(&input[6..]).unwrap();
    assert_eq!((second.data, second.done), (&b"de"[..], false));
    let last = d.next(&input[6 + second.consumed..]).unwrap();
    assert!(last.done && last.data.is_empty());
}

#[test]
fn encoding_round_trips() {
    let mut out = Vec::new();
    push_chunk(&mut out, b"");
    push_chunk(&mut out, b"hello");
    push_chunk(&mut out, &[b'x'; 300]);
    out.extend_from_slice(LAST_CHUNK);
    assert!(out.starts_with(b"5\r\nhello\r\n12c\r\n"));
    let (decoded, n, p) = decode_all(&out).unwrap();
    assert_eq!(
        (decoded.len(), n, p),
        (305, out.len(), DecodeProgress::Done)
    );
}

#[test]
fn bounded_lines() {
    let mut long_ext = b"1;a=".to_vec();
    long_ext.extend(std::iter::repeat_n(b'x', MAX_CHUNK_EXTENSION + 100));
    let mut d = ChunkedDecoder::new();
    assert_eq!(
        d.decode(&long_ext, &mut Vec::new()).err(),
        Some(ParseError::ChunkExtensionTooLong)
    );

    let limits = Limits {
        request_line: 100,
        fields: 2,
        field_size: 20,
    };
    let mut d = ChunkedDecoder::with_limits(&limits);
    let input = b"0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    assert_eq!(
        d.decode(input, &mut Vec::new()).err(),
        Some(ParseError::TooManyTrailerFields)
    );
    let mut d = ChunkedDecoder::with_limits(&limits);
    let input = b"0\r\nA: 123456789012345678901234567890\r\n\r\n";
    assert_eq!(
        d.decode(input, &mut Vec::new()).err(),
        Some(ParseError::TrailerFieldTooLong)
    );
}
