//! Decoding of `Transfer-Encoding: chunked` request bodies.
//!
//! IMPLEMENTATION IN PROGRESS (parser helper): the types below are the agreed interface.

use super::ParseError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeProgress {
    NeedMore,
    Done,
}

#[derive(Debug, Default)]
pub struct ChunkedDecoder {}

impl ChunkedDecoder {
    pub fn new() -> ChunkedDecoder {
        ChunkedDecoder {}
    }

    pub fn decode(&mut self, _input: &[u8], _out: &mut Vec<u8>) -> Result<(usize, DecodeProgress), ParseError> {
        Ok((0, DecodeProgress::NeedMore))
    }
}
