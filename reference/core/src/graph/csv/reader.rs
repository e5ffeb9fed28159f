//! The RFC 4180 record reader of the graph file: quoted fields, CRLF or LF line ends, a byte
//! order mark, empty lines; it yields records of raw fields with the line each starts on, and
//! leaves what the fields must hold to [`super::parse`].

use super::CsvError;

/// One field as read: its bytes (quotes removed, not yet trimmed) and where it starts.
pub(super) struct Field {
    pub(super) line: usize,
    pub(super) bytes: Vec<u8>,
}

/// A record: its fields, in order.
pub(super) struct Record {
    pub(super) line: usize,
    pub(super) fields: Vec<Field>,
}

/// The record reader. It works on bytes: every delimiter is ASCII, which never occurs inside
/// a multi-byte UTF-8 sequence, so UTF-8 is checked per field afterwards.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// 1-based line of `pos`.
    line: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        let buf = buf.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(buf);
        Self {
            buf,
            pos: 0,
            line: 1,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// Consumes a line end (LF or CRLF) at `pos`, if there is one.
    fn eat_newline(&mut self) -> bool {
        match (self.peek(), self.buf.get(self.pos + 1)) {
            (Some(b'\n'), _) => {
                self.pos += 1;
                self.line += 1;
                true
            }
            (Some(b'\r'), Some(b'\n')) => {
                self.pos += 2;
                self.line += 1;
                true
            }
            _ => false,
        }
    }

    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// The next record, skipping empty lines; `None` at the end of the input.
    pub(super) fn next_record(&mut self) -> Option<Result<Record, CsvError>> {
        while self.eat_newline() {}
        if self.pos >= self.buf.len() {
            return None;
        }
        Some(self.read_record())
    }

    fn read_record(&mut self) -> Result<Record, CsvError> {
        let line = self.line;
        let mut fields = Vec::new();
        loop {
            let column = fields.len() + 1;
            let field_line = self.line;
            self.skip_blanks();
            let bytes = if self.peek() == Some(b'"') {
                self.read_quoted(field_line, column)?
            } else {
                self.read_unquoted(column)?
            };
            fields.push(Field {
                line: field_line,
                bytes,
            });
            // After a field: a comma starts another, a line end or the end of input ends the
            // record. The field readers leave `pos` on one of these.
            match self.peek() {
                Some(b',') => self.pos += 1,
                None => break,
                Some(_) => {
                    if self.eat_newline() {
                        break;
                    }
                    // Only reachable through a lone CR, which the readers refuse first.
                    return Err(CsvError::at(self.line, column, "unexpected character"));
                }
            }
        }
        Ok(Record { line, fields })
    }

    fn read_unquoted(&mut self, column: usize) -> Result<Vec<u8>, CsvError> {
        let start = self.pos;
        while let Some(b) = self.peek() {
            match b {
                b',' | b'\n' => break,
                b'\r' if self.buf.get(self.pos + 1) == Some(&b'\n') => break,
                b'\r' => {
                    return Err(CsvError::at(
                        self.line,
                        column,
                        "carriage return not followed by a line feed",
                    ))
                }
                b'"' => return Err(CsvError::at(
                    self.line,
                    column,
                    "a quote inside an unquoted field; quote the whole field and double the quote",
                )),
                _ => self.pos += 1,
            }
        }
        Ok(self.buf[start..self.pos].to_vec())
    }

    fn read_quoted(&mut self, field_line: usize, column: usize) -> Result<Vec<u8>, CsvError> {
        self.pos += 1; // the opening quote
        let mut out = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                return Err(CsvError::at(
                    field_line,
                    column,
                    "unterminated quoted field",
                ));
            };
            self.pos += 1;
            match b {
                b'"' if self.peek() == Some(b'"') => {
                    out.push(b'"');
                    self.pos += 1;
                }
                b'"' => break,
                b'\n' => {
                    self.line += 1;
                    out.push(b);
                }
                _ => out.push(b),
            }
        }
        self.skip_blanks();
        match self.peek() {
            None | Some(b',' | b'\n') => Ok(out),
            Some(b'\r') if self.buf.get(self.pos + 1) == Some(&b'\n') => Ok(out),
            Some(_) => Err(CsvError::at(
                self.line,
                column,
                "unexpected text after a closing quote",
            )),
        }
    }
}
