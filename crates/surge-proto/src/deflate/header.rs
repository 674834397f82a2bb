//! `Sec-WebSocket-Extensions` values (RFC 6455 §9.1, with RFC 7230's list, token and
//! quoted-string rules), parsed without allocating, in one pass.
//!
//! ```text
//! extension-list = 1#extension                       ; across every header line
//! extension      = token *( OWS ";" OWS extension-param )
//! extension-param = token [ BWS "=" BWS ( token / quoted-string ) ]
//! ```
//!
//! [`elements`] walks every element of every header value in order. An element that breaks
//! the grammar is yielded as an [`ElementError`] and the walk goes on with the next one, so a
//! caller can decline that one offer and still consider the rest. Each byte is looked at a
//! bounded number of times: splitting the list is one scan, and each element's parameters are
//! a second scan of that element only.

/// Why an element or a parameter does not follow the grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum SyntaxError {
    /// The extension name is missing or is not a token.
    #[error("extension name is not a token")]
    Name,
    /// A parameter name is missing or is not a token.
    #[error("extension parameter name is not a token")]
    ParamName,
    /// A parameter has `=` but no token or quoted-string after it, or a quoted string is not
    /// closed.
    #[error("extension parameter value is not a token or quoted-string")]
    ParamValue,
    /// Something other than `;` follows a parameter or the name.
    #[error("unexpected character in extension element")]
    Separator,
}

/// An element whose name could not be read; see [`SyntaxError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("malformed extension element: {error}")]
pub struct ElementError {
    /// What is wrong.
    pub error: SyntaxError,
}

/// One element of an extension list: a name and its parameters, unparsed.
///
/// ```
/// use surge_proto::deflate::header::elements;
///
/// let values: [&[u8]; 2] = [b"foo, permessage-deflate; client_max_window_bits", b"bar"];
/// let names: Vec<_> = elements(values).map(|e| e.unwrap().name()).collect();
/// assert_eq!(names, ["foo", "permessage-deflate", "bar"]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Element<'a> {
    name: &'a str,
    params: &'a [u8],
}

impl<'a> Element<'a> {
    /// An element from a name and a raw parameter list (everything after the first `;`), as
    /// [`ExtensionOffer`](crate::handshake::ExtensionOffer) carries them. The name is not
    /// checked here; [`params`](Self::params) checks the parameters.
    pub fn new(name: &'a str, params: &'a str) -> Self {
        Self { name, params: params.as_bytes() }
    }

    /// The extension name, e.g. `permessage-deflate`.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// Whether this element names `name`, compared ASCII case-insensitively.
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    /// The parameters, in order. The iterator yields at most one error, then ends.
    pub fn params(&self) -> Params<'a> {
        Params { rest: self.params, failed: false }
    }
}

/// A parameter of an extension element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Param<'a> {
    /// The parameter name, a token.
    pub name: &'a str,
    /// The value after `=`, if there is one.
    pub value: Option<Value<'a>>,
}

/// A parameter value: a token, or a quoted string as written (quotes and escapes included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Value<'a> {
    raw: &'a [u8],
}

impl<'a> Value<'a> {
    /// The value as written, with quotes and backslashes if it was a quoted string.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// Whether it was written as a quoted string.
    pub fn is_quoted(&self) -> bool {
        self.raw.first() == Some(&b'"')
    }

    /// The value's bytes after removing quotes and backslash escapes (RFC 7230 §3.2.6).
    ///
    /// ```
    /// use surge_proto::deflate::header::elements;
    ///
    /// let values: [&[u8]; 1] = [br#"x; a="1\0""#];
    /// let element = elements(values).next().unwrap().unwrap();
    /// let param = element.params().next().unwrap().unwrap();
    /// assert!(param.value.unwrap().unescaped().eq(*b"10"));
    /// ```
    pub fn unescaped(&self) -> impl Iterator<Item = u8> + 'a {
        let inner = if self.is_quoted() {
            self.raw.get(1..self.raw.len().saturating_sub(1)).unwrap_or_default()
        } else {
            self.raw
        };
        let mut escaped = false;
        inner.iter().copied().filter(move |&b| {
            let keep = escaped || b != b'\\';
            escaped = !escaped && b == b'\\';
            keep
        })
    }

    /// The value as a decimal number of at most three digits without a leading zero, as
    /// RFC 7692's window-bits values are written, or `None`.
    pub fn small_decimal(&self) -> Option<u16> {
        let mut n: u16 = 0;
        let mut digits = 0;
        for b in self.unescaped() {
            if !b.is_ascii_digit() || digits == 3 || (digits == 1 && n == 0) {
                return None;
            }
            n = n * 10 + u16::from(b - b'0');
            digits += 1;
        }
        (digits > 0).then_some(n)
    }
}

/// Every element of every header value, in order; see the [module docs](self).
pub fn elements<'a, I>(values: I) -> Elements<'a, I::IntoIter>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    Elements { values: values.into_iter(), rest: &[] }
}

/// Iterator over extension elements; see [`elements`].
#[derive(Debug, Clone)]
pub struct Elements<'a, I> {
    values: I,
    rest: &'a [u8],
}

impl<'a, I: Iterator<Item = &'a [u8]>> Iterator for Elements<'a, I> {
    type Item = Result<Element<'a>, ElementError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            while !self.rest.is_empty() {
                let (element, rest) = split_element(self.rest);
                self.rest = rest;
                let element = trim_ows(element);
                if !element.is_empty() {
                    return Some(parse_element(element));
                }
            }
            self.rest = self.values.next()?;
        }
    }
}

fn parse_element(element: &[u8]) -> Result<Element<'_>, ElementError> {
    let name_len = element.iter().take_while(|&&b| is_tchar(b)).count();
    let (name, after) = element.split_at(name_len);
    let name = match core::str::from_utf8(name) {
        Ok(name) if !name.is_empty() => name,
        _ => return Err(ElementError { error: SyntaxError::Name }),
    };
    let after = trim_ows(after);
    match after.split_first() {
        None => Ok(Element { name, params: &[] }),
        Some((b';', params)) => Ok(Element { name, params }),
        Some(_) => Err(ElementError { error: SyntaxError::Separator }),
    }
}

/// Iterator over an element's parameters; see [`Element::params`].
#[derive(Debug, Clone)]
pub struct Params<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Iterator for Params<'a> {
    type Item = Result<Param<'a>, SyntaxError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let rest = trim_ows(self.rest);
        if rest.is_empty() {
            self.rest = rest;
            return None;
        }
        match parse_param(rest) {
            Ok((param, rest)) => {
                self.rest = rest;
                Some(Ok(param))
            }
            Err(error) => {
                self.failed = true;
                Some(Err(error))
            }
        }
    }
}

impl core::iter::FusedIterator for Params<'_> {}

/// One parameter from the start of `input` (no leading whitespace); returns it and what
/// follows its `;` (or nothing at the end).
fn parse_param(input: &[u8]) -> Result<(Param<'_>, &[u8]), SyntaxError> {
    let name_len = input.iter().take_while(|&&b| is_tchar(b)).count();
    let (name, rest) = input.split_at(name_len);
    let name = match core::str::from_utf8(name) {
        Ok(name) if !name.is_empty() => name,
        _ => return Err(SyntaxError::ParamName),
    };
    let rest = trim_ows(rest);
    let (value, rest) = match rest.split_first() {
        Some((b'=', after)) => {
            let after = trim_ows(after);
            let len = value_len(after).ok_or(SyntaxError::ParamValue)?;
            let (raw, rest) = after.split_at(len);
            (Some(Value { raw }), trim_ows(rest))
        }
        _ => (None, rest),
    };
    match rest.split_first() {
        None => Ok((Param { name, value }, &[])),
        Some((b';', rest)) => Ok((Param { name, value }, rest)),
        Some(_) => Err(SyntaxError::Separator),
    }
}

/// The length of the token or quoted-string at the start of `input`, or `None`.
fn value_len(input: &[u8]) -> Option<usize> {
    match input.first() {
        Some(b'"') => {
            let mut escaped = false;
            for (at, &b) in input.iter().enumerate().skip(1) {
                if escaped {
                    if !is_qpair_char(b) {
                        return None;
                    }
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    return Some(at + 1);
                } else if !is_qdtext(b) {
                    return None;
                }
            }
            None
        }
        _ => {
            let len = input.iter().take_while(|&&b| is_tchar(b)).count();
            (len > 0).then_some(len)
        }
    }
}

/// Splits at the first comma outside a quoted string: (before, after).
fn split_element(list: &[u8]) -> (&[u8], &[u8]) {
    let (mut inside, mut escaped) = (false, false);
    for (at, &b) in list.iter().enumerate() {
        if inside {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                inside = false;
            }
        } else if b == b'"' {
            inside = true;
        } else if b == b',' {
            let (before, after) = list.split_at(at);
            return (before, after.get(1..).unwrap_or_default());
        }
    }
    (list, &[])
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// RFC 7230 `tchar`.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 7230 `qdtext`: HTAB, SP, visible ASCII but `"` and `\`, obs-text.
fn is_qdtext(b: u8) -> bool {
    b == b'\t'
        || b == b' '
        || b == 0x21
        || (0x23..=0x5b).contains(&b)
        || (0x5d..=0x7e).contains(&b)
        || b >= 0x80
}

/// What may follow a backslash in a quoted string: HTAB, SP, VCHAR, obs-text.
fn is_qpair_char(b: u8) -> bool {
    b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80
}
