//! The one table of request size limits, shared by the workers and the front: gunicorn's
//! three settings with gunicorn's meaning, their maxima, what 0 means, and whether the
//! line's CRLF counts. Configuration (src/config for the workers, the `[front]` table for
//! the front) validates values with [`Limit::value`]; the parsers read [`Limits`].
//!
//! | setting | default | range | 0 means | counts CRLF |
//! | --- | --- | --- | --- | --- |
//! | limit_request_line | 4094 | 0..=8190 | 8190 | no (gunicorn: `idx > limit`) |
//! | limit_request_fields | 100 | 0..=32768 | 32768 | - |
//! | limit_request_field_size | 8190 | 0..=65536 | no limit per field | yes (gunicorn: `len + 2 > limit`) |
//!
//! gunicorn clamps a larger line or field count to its maximum without a word; we refuse
//! it when the configuration is read. gunicorn has no maximum field size: ours, 65536,
//! only exists so a typo cannot make a worker buffer gigabytes per connection. As in
//! gunicorn, the header block as a whole is bounded by `fields * (field_size + 2)` bytes
//! (8190 standing in for a field size of 0), so memory per connection stays bounded
//! whatever the settings.

/// gunicorn's MAX_REQUEST_LINE.
pub const MAX_REQUEST_LINE: usize = 8190;
/// gunicorn's MAX_HEADERS.
pub const MAX_FIELDS: usize = 32768;
/// Our bound for limit_request_field_size (gunicorn has none).
pub const MAX_FIELD_SIZE: usize = 65536;
/// gunicorn's DEFAULT_MAX_HEADERFIELD_SIZE: the default, and the size each field is
/// assumed to take in the header block's bound when limit_request_field_size is 0.
pub const DEFAULT_FIELD_SIZE: usize = 8190;

/// The size limits a request head is parsed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// limit_request_line: longest request line in bytes, CRLF not counted (414 beyond).
    pub request_line: usize,
    /// limit_request_fields: most header fields (431 beyond); also bounds trailers.
    pub fields: usize,
    /// limit_request_field_size: longest header field line, CRLF counted (431 beyond);
    /// 0 = no limit per field. Also bounds trailer lines.
    pub field_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_line: Limit::RequestLine.default_value(),
            fields: Limit::Fields.default_value(),
            field_size: Limit::FieldSize.default_value(),
        }
    }
}

/// One of the three settings, for validating configuration in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    RequestLine,
    Fields,
    FieldSize,
}

impl Limit {
    pub const ALL: [Limit; 3] = [Limit::RequestLine, Limit::Fields, Limit::FieldSize];

    /// The setting's name, as gunicorn spells it.
    pub fn name(self) -> &'static str {
        match self {
            Limit::RequestLine => "limit_request_line",
            Limit::Fields => "limit_request_fields",
            Limit::FieldSize => "limit_request_field_size",
        }
    }

    pub fn max(self) -> usize {
        match self {
            Limit::RequestLine => MAX_REQUEST_LINE,
            Limit::Fields => MAX_FIELDS,
            Limit::FieldSize => MAX_FIELD_SIZE,
        }
    }

    pub fn default_value(self) -> usize {
        match self {
            Limit::RequestLine => 4094,
            Limit::Fields => 100,
            Limit::FieldSize => DEFAULT_FIELD_SIZE,
        }
    }

    /// What a valid value looks like, for the one-line configuration error.
    pub fn expected(self) -> &'static str {
        match self {
            Limit::RequestLine => "a whole number from 0 to 8190 (0 means 8190)",
            Limit::Fields => "a whole number from 0 to 32768 (0 means 32768)",
            Limit::FieldSize => {
                "a whole number from 0 to 65536, CRLF included (0 means no limit per field)"
            }
        }
    }

    /// The value to store for a configured `n`, or `None` when `n` is out of range
    /// (the caller reports [`expected`](Self::expected) with the setting's name).
    pub fn value(self, n: u64) -> Option<usize> {
        let n = usize::try_from(n).ok().filter(|&n| n <= self.max())?;
        Some(match self {
            Limit::RequestLine | Limit::Fields if n == 0 => self.max(),
            _ => n,
        })
    }
}

/// A configured value out of a limit's range; displays as one line naming the setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}: expected {}, got {value}", .limit.name(), .limit.expected())]
pub struct LimitError {
    pub limit: Limit,
    pub value: u64,
}

impl Limits {
    pub fn get(&self, limit: Limit) -> usize {
        match limit {
            Limit::RequestLine => self.request_line,
            Limit::Fields => self.fields,
            Limit::FieldSize => self.field_size,
        }
    }

    /// Sets `limit` from a configured value, refusing one out of range.
    pub fn set(&mut self, limit: Limit, n: u64) -> Result<(), LimitError> {
        let value = limit.value(n).ok_or(LimitError { limit, value: n })?;
        match limit {
            Limit::RequestLine => self.request_line = value,
            Limit::Fields => self.fields = value,
            Limit::FieldSize => self.field_size = value,
        }
        Ok(())
    }

    /// The limits as enforced. Configuration refuses out-of-range values before they get
    /// here; a `Limits` built in code with one is taken at the maximum, and 0 line or
    /// field limits mean the maximum, as configured values do.
    pub fn normalized(&self) -> Limits {
        let clamp = |v: usize, max: usize| if v == 0 || v > max { max } else { v };
        Limits {
            request_line: clamp(self.request_line, MAX_REQUEST_LINE),
            fields: clamp(self.fields, MAX_FIELDS),
            field_size: self.field_size.min(MAX_FIELD_SIZE),
        }
    }

    /// Longest field line content (CRLF excluded) a field may have; `None`: no limit
    /// per field (the head bound still applies).
    pub(crate) fn field_content_max(&self) -> Option<usize> {
        match self.field_size {
            0 => None,
            n => Some(n.saturating_sub(2)),
        }
    }

    /// Most bytes a head may take, request line and leading empty lines included
    /// (gunicorn's max_buffer_headers plus the request line): past this an incomplete
    /// head is refused, so a connection's buffer stays bounded.
    pub fn max_head_len(&self) -> usize {
        let l = self.normalized();
        let per_field = match l.field_size {
            0 => DEFAULT_FIELD_SIZE + 2,
            n => n,
        };
        (l.request_line + 2)
            .saturating_add(l.fields.saturating_mul(per_field))
            .saturating_add(2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_follow_gunicorn() {
        assert_eq!(Limit::RequestLine.value(0), Some(8190));
        assert_eq!(Limit::RequestLine.value(8190), Some(8190));
        assert_eq!(Limit::RequestLine.value(8191), None);
        assert_eq!(Limit::Fields.value(0), Some(32768));
        assert_eq!(Limit::Fields.value(32769), None);
        assert_eq!(Limit::FieldSize.value(0), Some(0));
        assert_eq!(Limit::FieldSize.value(65536), Some(65536));
        assert_eq!(Limit::FieldSize.value(65537), None);
        for limit in Limit::ALL {
            assert_eq!(Limits::default().get(limit), limit.default_value());
            assert!(limit.value(limit.default_value() as u64).is_some());
        }
    }

    #[test]
    fn set_names_the_setting() {
        let mut limits = Limits::default();
        limits.set(Limit::FieldSize, 16384).unwrap();
        assert_eq!(limits.field_size, 16384);
        let err = limits
            .set(Limit::RequestLine, 65536)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("limit_request_line: expected"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn head_bound_covers_every_field_at_its_limit() {
        let l = Limits::default();
        assert_eq!(l.max_head_len(), 4096 + 100 * 8190 + 2);
        let unlimited = Limits {
            field_size: 0,
            ..Limits::default()
        };
        assert_eq!(unlimited.max_head_len(), 4096 + 100 * 8192 + 2);
        assert_eq!(unlimited.field_content_max(), None);
        assert_eq!(l.field_content_max(), Some(8188));
    }
}
