//! The HTTP version of a request or response line: HTTP/1.0 or HTTP/1.1, the only two
//! this server speaks; anything else well-formed is 505.

use crate::ParseError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    /// As written on the wire and in SERVER_PROTOCOL.
    pub fn as_str(&self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }

    /// The version httparse read, by its minor number (it reads HTTP/1.0 and 1.1 only).
    pub(crate) fn from_minor(minor: u8) -> Version {
        if minor == 0 {
            Version::Http10
        } else {
            Version::Http11
        }
    }

    /// `HTTP/1.0` or `HTTP/1.1`; another `HTTP/x.y` is [`ParseError::UnsupportedVersion`].
    pub fn parse(v: &[u8]) -> Result<Version, ParseError> {
        match v {
            b"HTTP/1.1" => Ok(Version::Http11),
            b"HTTP/1.0" => Ok(Version::Http10),
            [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
                if major.is_ascii_digit() && minor.is_ascii_digit() =>
            {
                Err(ParseError::UnsupportedVersion)
            }
            _ => Err(ParseError::InvalidVersion),
        }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
