//! W3C trace context (`traceparent`, `tracestate`) and baggage from a request's headers,
//! handed to every command as OpenTelemetry's environment carriers `TRACEPARENT`,
//! `TRACESTATE` and `BAGGAGE`, so a command's own spans join the workflow's trace.
//!
//! Only well-formed values are passed on: a malformed `traceparent` is dropped (and its
//! `tracestate` with it, which means nothing without it), as the W3C Trace Context
//! recommendation requires of a vendor that cannot parse it.

/// The request headers read (W3C Trace Context and W3C Baggage).
pub(crate) const HEADER_TRACEPARENT: &str = "traceparent";
pub(crate) const HEADER_TRACESTATE: &str = "tracestate";
pub(crate) const HEADER_BAGGAGE: &str = "baggage";

/// Longest `tracestate` passed on: the size every vendor must propagate (W3C Trace Context,
/// "tracestate limits").
const MAX_TRACESTATE: usize = 512;

/// Longest `baggage` passed on: the W3C Baggage recommendation's total size limit.
const MAX_BAGGAGE: usize = 8192;

/// The trace context of one request, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceContext {
    /// `00-<trace id>-<parent id>-<flags>`.
    traceparent: Option<String>,
    tracestate: Option<String>,
    baggage: Option<String>,
}

impl TraceContext {
    /// Reads the context from every value of each header, in order (a list header may be
    /// split over several header lines; they are joined with commas, as HTTP specifies).
    /// Two `traceparent` headers are as malformed as one bad one.
    pub fn from_headers(traceparent: &[&[u8]], tracestate: &[&[u8]], baggage: &[&[u8]]) -> Self {
        let traceparent = match traceparent {
            [single] => parse_traceparent(single),
            _ => None,
        };
        let tracestate = traceparent
            .as_ref()
            .and_then(|_| list_header(tracestate, MAX_TRACESTATE));
        TraceContext {
            traceparent,
            tracestate,
            baggage: list_header(baggage, MAX_BAGGAGE),
        }
    }

    /// The 32-hex-digit trace id, for the runner's own log lines.
    pub fn trace_id(&self) -> Option<&str> {
        self.traceparent.as_deref().map(|parent| &parent[3..35])
    }

    /// The variables every command of the request gets; only those with a value.
    pub fn env(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("TRACEPARENT", &self.traceparent),
            ("TRACESTATE", &self.tracestate),
            ("BAGGAGE", &self.baggage),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.as_deref().map(|value| (name, value)))
    }
}

/// A valid `traceparent` in its version-00 form, else `None`.
///
/// `version-traceid-parentid-flags`, all lowercase hex: version is 2 digits and not `ff`;
/// trace id 32 digits, not all zero; parent id 16 digits, not all zero; flags 2 digits.
/// Version 00 has exactly these four fields. A later version may append fields after a `-`;
/// its first four are read the same way and passed on as version 00, the version understood
/// here (what the recommendation asks of a vendor meeting a newer version).
fn parse_traceparent(value: &[u8]) -> Option<String> {
    const LENGTH: usize = 55;
    let value = std::str::from_utf8(value).ok()?.trim_matches([' ', '\t']);
    let bytes = value.as_bytes();
    let base = bytes.get(..LENGTH)?;
    let version = &base[0..2];
    let (trace_id, parent_id, flags) = (&base[3..35], &base[36..52], &base[53..55]);
    let separated = [2, 35, 52].iter().all(|&i| base[i] == b'-');
    let hex = |field: &[u8]| field.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let nonzero = |field: &[u8]| field.iter().any(|&b| b != b'0');
    let length_fits = match version {
        b"00" => bytes.len() == LENGTH,
        _ => bytes.len() == LENGTH || bytes[LENGTH] == b'-',
    };
    let valid = separated
        && length_fits
        && version != b"ff"
        && [version, trace_id, parent_id, flags].into_iter().all(hex)
        && nonzero(trace_id)
        && nonzero(parent_id);
    valid.then(|| format!("00{}", &value[2..LENGTH]))
}

/// A list header's lines joined with commas, when the result is printable ASCII no longer
/// than `max` (W3C list members are printable ASCII; baggage values are percent-encoded).
/// An over-long or otherwise unusable value is dropped whole rather than cut mid-member.
fn list_header(lines: &[&[u8]], max: usize) -> Option<String> {
    let mut joined = String::new();
    for line in lines {
        let line = std::str::from_utf8(line).ok()?.trim_matches([' ', '\t']);
        if line.is_empty() {
            continue;
        }
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(line);
        if joined.len() > max {
            return None;
        }
    }
    let printable = joined.bytes().all(|b| matches!(b, b' '..=b'~'));
    (printable && !joined.is_empty()).then_some(joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn context(parent: &[&str], state: &[&str], baggage: &[&str]) -> TraceContext {
        fn bytes<'a>(values: &[&'a str]) -> Vec<&'a [u8]> {
            values.iter().map(|v| v.as_bytes()).collect()
        }
        TraceContext::from_headers(&bytes(parent), &bytes(state), &bytes(baggage))
    }

    fn parent(value: &str) -> Option<String> {
        parse_traceparent(value.as_bytes())
    }

    #[test]
    fn a_valid_traceparent_is_passed_on_with_its_trace_id() {
        let trace = context(&[PARENT], &["congo=t61rcWkgMzE"], &["userId=alice"]);
        assert_eq!(trace.trace_id(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        let env: Vec<_> = trace.env().collect();
        assert_eq!(
            env,
            vec![
                ("TRACEPARENT", PARENT),
                ("TRACESTATE", "congo=t61rcWkgMzE"),
                ("BAGGAGE", "userId=alice"),
            ]
        );
        assert_eq!(parent(&format!(" {PARENT}\t")).as_deref(), Some(PARENT));
        assert_eq!(
            parent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").as_deref(),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
        );
    }

    #[test]
    fn malformed_traceparents_are_dropped() {
        let bad = [
            "",
            "garbage",
            // Upper-case hex.
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            // Version ff is forbidden.
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // All-zero trace id and parent id.
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // Wrong lengths.
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            // Version 00 has exactly four fields.
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            // Wrong separators, non-hex digits.
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0z",
        ];
        for value in bad {
            assert_eq!(parent(value), None, "{value:?}");
        }
        assert_eq!(parse_traceparent(b"00-\xff"), None);
    }

    #[test]
    fn later_versions_are_read_as_version_00() {
        let v1 = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(parent(v1).as_deref(), Some(PARENT));
        assert_eq!(
            parent(&format!("{v1}-future-field")).as_deref(),
            Some(PARENT)
        );
        assert_eq!(parent(&format!("{v1}x")), None);
    }

    #[test]
    fn tracestate_needs_a_valid_traceparent() {
        let dropped = context(&["bogus"], &["congo=t61rcWkgMzE"], &["k=v"]);
        assert_eq!(dropped.trace_id(), None);
        let env: Vec<_> = dropped.env().collect();
        assert_eq!(env, vec![("BAGGAGE", "k=v")], "baggage stands on its own");
        // Two traceparent headers: which one is meant cannot be told.
        assert_eq!(context(&[PARENT, PARENT], &[], &[]).trace_id(), None);
        assert_eq!(context(&[], &["a=b"], &[]), TraceContext::default());
    }

    #[test]
    fn list_headers_are_joined_and_bounded() {
        let trace = context(&[PARENT], &["a=1", " b=2 ", ""], &["x=1", "y=2"]);
        let env: Vec<_> = trace.env().collect();
        assert_eq!(env[1], ("TRACESTATE", "a=1,b=2"));
        assert_eq!(env[2], ("BAGGAGE", "x=1,y=2"));

        let state_at_limit = format!("k={}", "v".repeat(MAX_TRACESTATE - 2));
        let state_over = format!("k={}", "v".repeat(MAX_TRACESTATE - 1));
        assert!(context(&[PARENT], &[&state_at_limit], &[])
            .tracestate
            .is_some());
        assert!(context(&[PARENT], &[&state_over], &[]).tracestate.is_none());
        let baggage_over = format!("k={}", "v".repeat(MAX_BAGGAGE));
        assert!(context(&[], &[], &[&baggage_over]).baggage.is_none());

        // Control characters and non-ASCII never reach a command's environment.
        assert!(context(&[PARENT], &["a=1\u{1b}[2J"], &[])
            .tracestate
            .is_none());
        assert!(context(&[], &[], &["k=välue"]).baggage.is_none());
        assert!(context(&[], &[], &["  "]).baggage.is_none());
    }
}
