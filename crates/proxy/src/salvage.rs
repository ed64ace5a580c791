//! Answering a request that does not parse: if its start line is a request
//! line and a Via, From, To, Call-ID and CSeq can be found line by line,
//! they are copied into a 400 (or 505, 513) with the parser's reason.

use bytes::Bytes;
use trunkvip_sip::build::Builder;
use trunkvip_sip::{HeaderName, Via};

pub(crate) fn answer(data: &[u8], code: u16, reason: &str) -> Option<Bytes> {
    let data = &data[..data.len().min(64 * 1024)];
    let mut lines = data
        .split(|&c| c == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let start = lines.by_ref().find(|l| !l.is_empty())?;
    if start.len() < 4 || start[..4].eq_ignore_ascii_case(b"SIP/") {
        return None;
    }
    let mut via = None;
    let mut found: Vec<(HeaderName, &[u8])> = Vec::new();
    for line in lines.take(256) {
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            continue;
        };
        let name = HeaderName::classify(trim(&line[..colon]));
        let value = trim(&line[colon + 1..]);
        match name {
            HeaderName::Via if via.is_none() => via = Some(value),
            HeaderName::From | HeaderName::To | HeaderName::CallId | HeaderName::CSeq
                if !found.iter().any(|f| f.0 == name) =>
            {
                found.push((name, value))
            }
            _ => {}
        }
    }
    // Only answer when the Via makes sense: otherwise we may be reflecting
    // garbage at a forged source.
    let via = via?;
    let first = via.split(|&c| c == b',').next()?;
    Via::parse(first)?;
    let mut b = Builder::response(code, reason);
    b.push("Via", first);
    for (name, value) in found {
        b.push(name.as_str(), value);
    }
    Some(b.finish())
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &s[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salvages_a_request_with_bad_content_length() {
        let data = b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.2;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 999\r\n\r\nv=0";
        let r = answer(data, 400, "Bad Request (Content-Length exceeds data)").unwrap();
        let m = trunkvip_sip::Message::parse(r).unwrap();
        m.validate().unwrap();
        assert_eq!(m.status(), Some(400));
        assert_eq!(m.call_id().unwrap(), b"c1");
    }

    #[test]
    fn no_answer_without_a_usable_via() {
        assert!(answer(b"INVITE sip:a@b SIP/2.0\r\nFrom: x\r\n\r\n", 400, "x").is_none());
        assert!(answer(
            b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP\r\n\r\n",
            400,
            "x"
        )
        .is_none());
        assert!(answer(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\n\r\n", 400, "x").is_none());
        assert!(answer(b"\x00\x01garbage", 400, "x").is_none());
    }
}
