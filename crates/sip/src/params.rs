//! `;name=value` parameter lists of header values and of URIs.

use std::ops::Range;

use crate::grammar::{
    eq_lower, gen_value_len, is_token, is_ws, quoted_len, token_len, uri_param_len, ws_len,
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
    /// The first `branch` or `tag` parameter, noted while parsing: what a
    /// proxy reads on every message, answered without a second walk.
    known: Option<Known>,
}

#[derive(Clone, Copy, Debug)]
struct Known {
    branch: bool,
    /// The value's range in `raw`.
    value: Option<(u32, u32)>,
}

impl Known {
    fn name(&self) -> &'static [u8] {
        if self.branch {
            b"branch"
        } else {
            b"tag"
        }
    }
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
        Params {
            raw: b"",
            kind,
            known: None,
        }
    }

    /// Parses `*(SEMI param)` and returns the list and what follows it;
    /// `None` when a parameter is malformed. Inlined so that each caller's
    /// `kind` is a constant in the scan loop.
    #[inline(always)]
    pub(crate) fn parse(i: &'a [u8], kind: ParamKind) -> Option<(&'a [u8], Params<'a>)> {
        let mut end = 0;
        let mut known = None;
        while let Some(p) = scan(i, end, kind)? {
            end = p.end;
            if known.is_none() && kind == ParamKind::Header {
                known = Known::of(i, &p);
            }
        }
        Some((
            &i[end..],
            Params {
                raw: &i[..end],
                kind,
                known,
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
        if let Some(k) = self.known {
            // The first of either name is the first of its own name.
            if eq_lower(name, k.name()) {
                return Some(k.value.map(|(s, e)| &self.raw[s as usize..e as usize]));
            }
        }
        self.find(name).map(|p| p.value)
    }

    pub fn find(&self, name: &[u8]) -> Option<Param<'a>> {
        let i = self.raw;
        let mut at = 0;
        // The list was validated when it was parsed: every scan succeeds.
        while let Some(Some(p)) = scan(i, at, self.kind) {
            let n = &i[p.name.clone()];
            if n.len() == name.len() && n.eq_ignore_ascii_case(name) {
                return Some(p.param(i));
            }
            at = p.end;
        }
        None
    }

    pub fn contains(&self, name: &[u8]) -> bool {
        self.find(name).is_some()
    }
}

/// One parameter found by `scan`, as offsets into the scanned text.
struct Found {
    start: usize,
    /// `Some(true)` for a name known to be `branch`, `Some(false)` for
    /// `tag`, `None` when not known either way.
    common: Option<bool>,
    name: Range<usize>,
    value: Option<Range<usize>>,
    end: usize,
}

impl Known {
    fn of(i: &[u8], p: &Found) -> Option<Known> {
        let name = &i[p.name.clone()];
        let branch = if let Some(branch) = p.common {
            branch
        } else if eq_lower(name, b"branch") {
            true
        } else if eq_lower(name, b"tag") {
            false
        } else {
            return None;
        };
        let value = match p.value.clone() {
            Some(v) => Some((u32::try_from(v.start).ok()?, u32::try_from(v.end).ok()?)),
            None => None,
        };
        Some(Known { branch, value })
    }
}

impl Found {
    fn param<'a>(&self, i: &'a [u8]) -> Param<'a> {
        Param {
            name: &i[self.name.clone()],
            value: self.value.clone().map(|v| &i[v]),
            raw: &i[self.start..self.end],
        }
    }
}

/// The length of the name at the start of `s` when it is `branch=`,
/// `tag=` or `rport` (any case), which nearly every Via, From and To carries: what
/// `token_len` finds, in one compare instead of a byte loop.
#[inline(always)]
fn common_name_len(s: &[u8]) -> Option<usize> {
    // 0x20 at the letters only: `=` must match exactly.
    if let Some(w) = s.first_chunk::<8>() {
        let w = u64::from_le_bytes(*w) | 0x0000_2020_2020_2020;
        if w & 0x00ff_ffff_ffff_ffff == u64::from_le_bytes(*b"branch=\0") {
            return Some(6);
        }
    }
    let w = u32::from_le_bytes(*s.first_chunk::<4>()?);
    if w | 0x0020_2020 == u32::from_le_bytes(*b"tag=") {
        return Some(3);
    }
    // `rport`, most often last in a Via, ends where a token does.
    if w | 0x2020_2020 == u32::from_le_bytes(*b"rpor")
        && s.get(4).is_some_and(|&c| c | 0x20 == b't')
        && !s.get(5).is_some_and(|&c| is_token(c))
    {
        return Some(5);
    }
    None
}

/// Scans one `;name[=value]` of `i` from `at`: `Some(None)` when no `;`
/// comes next, `None` when the parameter is malformed.
#[inline(always)]
fn scan(i: &[u8], at: usize, kind: ParamKind) -> Option<Option<Found>> {
    let header = kind == ParamKind::Header;
    // Header parameters allow LWS around `;` and `=`; URI ones do not.
    let skip = |at: usize| {
        // Most often there is none: test one byte before scanning.
        if header && i.get(at).is_some_and(|&c| is_ws(c)) {
            at + ws_len(&i[at..])
        } else {
            at
        }
    };
    let start = skip(at);
    if i.get(start) != Some(&b';') {
        return Some(None);
    }
    let name_at = skip(start + 1);
    let (name_len, common) = if header {
        match common_name_len(&i[name_at..]) {
            Some(n) => (n, (n != 5).then_some(n == 6)),
            None => (token_len(&i[name_at..]), None),
        }
    } else {
        (uri_param_len(&i[name_at..]), None)
    };
    if name_len == 0 {
        return None;
    }
    let after_name = name_at + name_len;
    let eq = skip(after_name);
    let (end, value) = if i.get(eq) == Some(&b'=') {
        let v = skip(eq + 1);
        if header && i.get(v) == Some(&b'"') {
            let n = quoted_len(&i[v..])?;
            (v + n, Some(v..v + n))
        } else {
            let n = if header {
                gen_value_len(&i[v..])
            } else {
                uri_param_len(&i[v..])
            };
            // `rport` and friends may carry an empty value after `=`
            // only in broken stacks; RFC 3261 requires a value.
            if n == 0 {
                return None;
            }
            (v + n, Some(v..v + n))
        }
    } else {
        (after_name, None)
    };
    Some(Some(Found {
        start,
        common,
        name: name_at..after_name,
        value,
        end,
    }))
}

#[derive(Clone, Debug)]
pub struct ParamIter<'a> {
    rest: &'a [u8],
    kind: ParamKind,
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = Param<'a>;
    fn next(&mut self) -> Option<Param<'a>> {
        let p = scan(self.rest, 0, self.kind)??;
        let param = p.param(self.rest);
        self.rest = &self.rest[p.end..];
        Some(param)
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
    fn noted_tag_and_branch_answer_as_the_walk_does() {
        for list in [
            &b";tag=1;branch=2;tag=3"[..],
            b";branch=z9hG4bK1;TAG=x;Branch=y",
            b" ; Tag ;tag=2",
            b";lr;BRANCH = \"q\"",
            b";foo=bar",
        ] {
            let (_, p) = Params::parse(list, ParamKind::Header).unwrap();
            for name in [
                &b"tag"[..],
                b"TAG",
                b"branch",
                b"bRanch",
                b"lr",
                b"foo",
                b"ta",
            ] {
                let walked = p.iter().find(|q| q.name.eq_ignore_ascii_case(name));
                assert_eq!(p.get(name), walked.map(|q| q.value), "{list:?} {name:?}");
            }
        }
    }

    #[test]
    fn common_names_as_token_len_finds_them() {
        for name in [&b"branch="[..], b"tag=", b"rport", b"rport;", b"rport="] {
            for at in 0..name.len() {
                for c in 0..=255u8 {
                    let mut s = name.to_vec();
                    s[at] = c;
                    s.extend_from_slice(b"z9hG4bK");
                    for len in 0..=s.len() {
                        let s = &s[..len];
                        if let Some(n) = common_name_len(s) {
                            assert_eq!(n, token_len(s), "{s:?}");
                        }
                    }
                }
            }
        }
        assert_eq!(common_name_len(b"BrAnCh=1"), Some(6));
        assert_eq!(common_name_len(b"TAG=1"), Some(3));
        assert_eq!(common_name_len(b"branch"), None);
        assert_eq!(common_name_len(b"tags=1"), None);
        assert_eq!(common_name_len(b"RPort"), Some(5));
        assert_eq!(common_name_len(b"rport;x"), Some(5));
        assert_eq!(common_name_len(b"rports"), None);
    }

    #[test]
    fn empty_param_names_are_errors() {
        assert!(Params::parse(b";;,;,,", ParamKind::Header).is_none());
        assert!(Params::parse(b";branch=", ParamKind::Header).is_none());
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
