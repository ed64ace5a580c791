//! `;name=value` parameter lists of header values and of URIs.

use crate::grammar::{
    fail, gen_value_len, quoted_string, token_len, uri_param_len, ws_len, PResult,
};

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
    let header = kind == ParamKind::Header;
    // Header parameters allow LWS around `;` and `=`; URI ones do not.
    let skip = |at: usize| if header { at + ws_len(&i[at..]) } else { at };
    let start = skip(0);
    if i.get(start) != Some(&b';') {
        return Ok((i, None));
    }
    let name_at = skip(start + 1);
    let name_len = if header {
        token_len(&i[name_at..])
    } else {
        uri_param_len(&i[name_at..])
    };
    if name_len == 0 {
        return fail(&i[name_at..]);
    }
    let after_name = name_at + name_len;
    let eq = skip(after_name);
    let (end, value) = if i.get(eq) == Some(&b'=') {
        let v = skip(eq + 1);
        if header && i.get(v) == Some(&b'"') {
            let (rest, q) = quoted_string(&i[v..])?;
            (i.len() - rest.len(), Some(q))
        } else {
            let n = if header {
                gen_value_len(&i[v..])
            } else {
                uri_param_len(&i[v..])
            };
            // `rport` and friends may carry an empty value after `=`
            // only in broken stacks; RFC 3261 requires a value.
            if n == 0 {
                return fail(&i[v..]);
            }
            (v + n, Some(&i[v..v + n]))
        }
    } else {
        (after_name, None)
    };
    Ok((
        &i[end..],
        Some(Param {
            name: &i[name_at..after_name],
            value,
            raw: &i[start..end],
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
