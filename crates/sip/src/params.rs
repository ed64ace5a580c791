//! `;name=value` parameter lists of header values and of URIs.

use crate::grammar::{
    fail, is_gen_value_char, is_token, is_uri_param_char, lws, quoted_string, PResult,
};
use nom::bytes::complete::take_while1;

/// Which grammar a parameter list follows: header parameters allow LWS
/// around `;` and `=` and quoted values, URI parameters allow neither.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ParamKind {
    Header,
    Uri,
}

/// A validated parameter list, kept as the raw text (starting at the first
/// `;`) and walked on demand.
#[derive(Clone, Copy, Debug)]
pub struct Params<'a> {
    raw: &'a [u8],
    kind: ParamKind,
}

/// One parameter: the name and the value as written (quotes kept).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Param<'a> {
    pub name: &'a [u8],
    pub value: Option<&'a [u8]>,
    /// From the `;` to the end of the value: what an editor replaces.
    pub raw: &'a [u8],
}

impl<'a> Params<'a> {
    pub(crate) const fn empty(kind: ParamKind) -> Self {
        Params { raw: b"", kind }
    }

    /// Parses `*(SEMI param)` and returns the list and what follows it.
    pub(crate) fn parse(i: &'a [u8], kind: ParamKind) -> PResult<'a, Params<'a>> {
        let mut rest = i;
        let mut end = i;
        loop {
            match one_param(rest, kind) {
                Ok((r, Some(_))) => {
                    rest = r;
                    end = r;
                }
                Ok((_, None)) => break,
                Err(e) => return Err(e),
            }
        }
        let used = i.len() - end.len();
        Ok((
            end,
            Params {
                raw: &i[..used],
                kind,
            },
        ))
    }

    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    pub fn iter(&self) -> ParamIter<'a> {
        ParamIter {
            rest: self.raw,
            kind: self.kind,
        }
    }

    /// `Some(None)` for a parameter present without a value.
    pub fn get(&self, name: &[u8]) -> Option<Option<&'a [u8]>> {
        self.find(name).map(|p| p.value)
    }

    pub fn find(&self, name: &[u8]) -> Option<Param<'a>> {
        self.iter().find(|p| p.name.eq_ignore_ascii_case(name))
    }

    pub fn contains(&self, name: &[u8]) -> bool {
        self.find(name).is_some()
    }
}

/// Parses one `;name[=value]`, or returns `None` (consuming nothing) when
/// no `;` comes next.
fn one_param(i: &[u8], kind: ParamKind) -> PResult<'_, Option<Param<'_>>> {
    let (r, _) = match kind {
        ParamKind::Header => lws(i)?,
        ParamKind::Uri => (i, &i[..0]),
    };
    let Some(b';') = r.first() else {
        return Ok((i, None));
    };
    let start = r;
    let r = &r[1..];
    let name_pred = match kind {
        ParamKind::Header => is_token,
        ParamKind::Uri => is_uri_param_char,
    };
    let (r, name) = match kind {
        ParamKind::Header => {
            let (r, _) = lws(r)?;
            take_while1(name_pred)(r)?
        }
        ParamKind::Uri => take_while1(name_pred)(r)?,
    };
    let after_name = r;
    let (r2, _) = match kind {
        ParamKind::Header => lws(r)?,
        ParamKind::Uri => (r, &r[..0]),
    };
    let (rest, value) = if r2.first() == Some(&b'=') {
        let r = &r2[1..];
        let (r, _) = match kind {
            ParamKind::Header => lws(r)?,
            ParamKind::Uri => (r, &r[..0]),
        };
        if r.first() == Some(&b'"') && kind == ParamKind::Header {
            let (r, v) = quoted_string(r)?;
            (r, Some(v))
        } else {
            let pred = match kind {
                ParamKind::Header => is_gen_value_char,
                ParamKind::Uri => is_uri_param_char,
            };
            match take_while1::<_, _, nom::error::Error<&[u8]>>(pred)(r) {
                Ok((r, v)) => (r, Some(v)),
                // `rport` and friends may carry an empty value after `=`
                // only in broken stacks; RFC 3261 requires a value.
                Err(_) => return fail(r),
            }
        }
    } else {
        (after_name, None)
    };
    let used = start.len() - rest.len();
    Ok((
        rest,
        Some(Param {
            name,
            value,
            raw: &start[..used],
        }),
    ))
}

#[derive(Clone, Debug)]
pub struct ParamIter<'a> {
    rest: &'a [u8],
    kind: ParamKind,
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = Param<'a>;
    fn next(&mut self) -> Option<Param<'a>> {
        match one_param(self.rest, self.kind) {
            Ok((r, Some(p))) => {
                self.rest = r;
                Some(p)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_params_with_lws_and_quotes() {
        let (rest, p) = Params::parse(
            b" ;   tag    = 1918181833n ; x=\"a;b\";lr rest",
            ParamKind::Header,
        )
        .unwrap();
        assert_eq!(rest, b" rest");
        assert_eq!(p.get(b"TAG"), Some(Some(&b"1918181833n"[..])));
        assert_eq!(p.get(b"x"), Some(Some(&b"\"a;b\""[..])));
        assert_eq!(p.get(b"lr"), Some(None));
        assert_eq!(p.get(b"nope"), None);
        assert_eq!(p.iter().count(), 3);
    }

    #[test]
    fn empty_param_names_are_errors() {
        assert!(Params::parse(b";;,;,,", ParamKind::Header).is_err());
        assert!(Params::parse(b";branch=", ParamKind::Header).is_err());
    }

    #[test]
    fn uri_params_take_no_lws() {
        let (rest, p) = Params::parse(b";lr;transport=tcp ;x", ParamKind::Uri).unwrap();
        assert_eq!(rest, b" ;x");
        assert_eq!(p.get(b"transport"), Some(Some(&b"tcp"[..])));
    }

    #[test]
    fn ipv6_received_value() {
        let (_, p) =
            Params::parse(b";received=[2001:db8::1];rport=5060", ParamKind::Header).unwrap();
        assert_eq!(p.get(b"received"), Some(Some(&b"[2001:db8::1]"[..])));
    }
}
