//! The URL Twilio signed: parsing a configured public URL, the port spellings Twilio may have
//! used, and rebuilding the URL of a request that arrived through a load balancer.
//!
//! Pure: no I/O and no HTTP types; callers hand in the raw request target and header values.
//! Forwarding headers count only when the caller says the peer is trusted.

use super::SignatureError;

/// `query` includes its leading `?` when present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedUrl<'a> {
    pub scheme: &'a str,
    pub host: &'a str,
    pub port: Option<&'a str>,
    pub path: &'a [u8],
    pub query: &'a [u8],
}

impl<'a> SignedUrl<'a> {
    /// Splits an absolute `http(s)://host[:port][/path][?query]` URL.
    pub fn parse(url: &'a str) -> Result<Self, String> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            format!("{url:?} is not an absolute URL (expected https://host/path)")
        })?;
        if !scheme.eq_ignore_ascii_case("https") && !scheme.eq_ignore_ascii_case("http") {
            return Err(format!("{url:?}: scheme must be http or https"));
        }
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path_and_query) = rest.split_at(authority_end);
        let path_and_query = path_and_query.split('#').next().unwrap_or("");
        let (host, port) = split_host_port(authority)?;
        let (path, query) = match path_and_query.find('?') {
            Some(i) => path_and_query.split_at(i),
            None => (path_and_query, ""),
        };
        Ok(SignedUrl {
            scheme,
            host,
            port,
            path: path.as_bytes(),
            query: query.as_bytes(),
        })
    }

    fn default_port(&self) -> &'static str {
        if self.scheme.eq_ignore_ascii_case("https") {
            "443"
        } else {
            "80"
        }
    }

    /// The ports to try: as given first, then the other spelling Twilio may have used
    /// (port removed when given, scheme default added when not).
    pub(super) fn port_candidates(&self) -> [Option<&'a str>; 2] {
        match self.port {
            Some(p) => [Some(p), None],
            None => [None, Some(self.default_port())],
        }
    }

    /// The signed string as slices, so no URL is assembled per request.
    pub(super) fn parts<'s>(&'s self, port: Option<&'s str>, params: &'s [u8]) -> [&'s [u8]; 8] {
        let (colon, port): (&[u8], &[u8]) = match port {
            Some(p) => (b":", p.as_bytes()),
            None => (b"", b""),
        };
        [
            self.scheme.as_bytes(),
            b"://",
            self.host.as_bytes(),
            colon,
            port,
            self.path,
            self.query,
            params,
        ]
    }

    /// The URL as one string (for `sign` output and messages).
    pub fn to_url_string(&self) -> String {
        let mut s = format!("{}://{}", self.scheme, self.host);
        if let Some(port) = self.port {
            s.push(':');
            s.push_str(port);
        }
        s.push_str(&String::from_utf8_lossy(self.path));
        s.push_str(&String::from_utf8_lossy(self.query));
        s
    }
}

/// `host` and `port` of an authority (`[v6]:port` kept whole), the port checked to be digits.
pub fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), String> {
    if authority.is_empty() {
        return Err("URL has no host".into());
    }
    // A bracketed IPv6 literal keeps its colons: split only after the closing bracket.
    let search_from = authority.find(']').map_or(0, |i| i + 1);
    match authority[search_from..].rfind(':') {
        Some(i) => {
            let (host, port) = authority.split_at(search_from + i);
            let port = &port[1..];
            if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) || port.len() > 5 {
                return Err(format!("URL port {port:?} is not a number"));
            }
            Ok((host, Some(port)))
        }
        None => Ok((authority, None)),
    }
}

/// What a request says about where it was sent: the raw target and the headers that name a
/// host, as received. `X-Forwarded-*` are used only when `trusted` (the peer is a configured
/// proxy); otherwise any client could choose the URL its signature is checked against.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestOrigin<'a> {
    /// Path and query exactly as received (`/path?query`).
    pub raw_target: &'a [u8],
    pub host: Option<&'a str>,
    pub forwarded_proto: Option<&'a str>,
    pub forwarded_host: Option<&'a str>,
    /// The request came over a TLS listener.
    pub tls: bool,
    /// The peer is one of `trusted_proxies`.
    pub trusted: bool,
}

/// The URL Twilio signed: the route's configured public URL (`configured`, its query ignored)
/// with this request's raw query, or, without one, the URL rebuilt from `X-Forwarded-Proto` /
/// `X-Forwarded-Host` (trusted peers only) or `Host` and the listener's scheme, whose
/// authority must then be one of `allowed_hosts` (`host` or `host:port`, compared without
/// case). Without that list a signature captured for the same path on another host of the
/// account would verify here.
pub fn public_url<'a>(
    configured: Option<SignedUrl<'a>>,
    allowed_hosts: &[String],
    origin: &RequestOrigin<'a>,
) -> Result<SignedUrl<'a>, SignatureError> {
    let raw_target = origin.raw_target;
    let query_start = raw_target
        .iter()
        .position(|&b| b == b'?')
        .unwrap_or(raw_target.len());
    let (path, query) = raw_target.split_at(query_start);
    if let Some(public) = configured {
        return Ok(SignedUrl { query, ..public });
    }
    // A list (`a, b`) names the hop nearest the client first: that is what Twilio addressed.
    let first = |v: Option<&'a str>| {
        v.map(|v| v.split(',').next().unwrap_or("").trim())
            .filter(|v| !v.is_empty())
    };
    let forwarded = |v| if origin.trusted { first(v) } else { None };
    let scheme =
        forwarded(origin.forwarded_proto).unwrap_or(if origin.tls { "https" } else { "http" });
    let authority = forwarded(origin.forwarded_host)
        .or_else(|| first(origin.host))
        .ok_or(SignatureError::NoPublicUrl)?;
    if !allowed_hosts
        .iter()
        .any(|allowed| allowed.eq_ignore_ascii_case(authority))
    {
        return Err(SignatureError::HostNotAllowed(authority.to_owned()));
    }
    // An allowed host passed the same split when the config was loaded, so this cannot fail on
    // one; refusing is the fail-closed answer if it ever did.
    let (host, port) = split_host_port(authority)
        .map_err(|_| SignatureError::HostNotAllowed(authority.to_owned()))?;
    Ok(SignedUrl {
        scheme,
        host,
        port,
        path,
        query,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Vec<String> {
        vec!["internal:8080".into(), "Voice.Example.com".into()]
    }

    #[test]
    fn a_rebuilt_url_must_name_an_allowed_host() {
        let elsewhere = RequestOrigin {
            host: Some("other.example.com"),
            ..origin(false)
        };
        assert_eq!(
            public_url(None, &allowed(), &elsewhere),
            Err(SignatureError::HostNotAllowed("other.example.com".into()))
        );
        // The port is part of the authority: internal:8080 does not allow internal:9090.
        let other_port = RequestOrigin {
            host: Some("internal:9090"),
            ..origin(false)
        };
        assert!(public_url(None, &allowed(), &other_port).is_err());
        assert!(
            public_url(None, &[], &origin(false)).is_err(),
            "nothing allowed"
        );
    }

    #[test]
    fn a_rebuilt_authority_keeps_its_port_apart_so_both_spellings_are_tried() {
        let with_port = public_url(None, &allowed(), &origin(false)).unwrap();
        assert_eq!((with_port.host, with_port.port), ("internal", Some("8080")));
        assert_eq!(with_port.port_candidates(), [Some("8080"), None]);
        let v6 = |host| RequestOrigin {
            host: Some(host),
            ..origin(false)
        };
        let v6_allowed = vec!["[::1]".to_owned(), "[::1]:8443".to_owned()];
        let bare = public_url(None, &v6_allowed, &v6("[::1]")).unwrap();
        assert_eq!((bare.host, bare.port), ("[::1]", None));
        let ported = public_url(None, &v6_allowed, &v6("[::1]:8443")).unwrap();
        assert_eq!((ported.host, ported.port), ("[::1]", Some("8443")));
    }

    #[test]
    fn split_host_port_keeps_an_ipv6_literal_whole() {
        assert_eq!(split_host_port("[::]"), Ok(("[::]", None)));
        assert_eq!(split_host_port("[::1]:443"), Ok(("[::1]", Some("443"))));
        assert_eq!(split_host_port("]"), Ok(("]", None)));
        assert_eq!(split_host_port("host:443"), Ok(("host", Some("443"))));
        assert!(split_host_port("host:").is_err());
        assert!(split_host_port("host:123456").is_err());
        assert!(split_host_port("").is_err());
    }

    fn origin(trusted: bool) -> RequestOrigin<'static> {
        RequestOrigin {
            raw_target: b"/twilio/notify?bodySHA256=ab",
            host: Some("internal:8080"),
            forwarded_proto: Some("https"),
            forwarded_host: Some("voice.example.com, lb.internal"),
            tls: false,
            trusted,
        }
    }

    #[test]
    fn untrusted_peers_forwarding_headers_are_ignored() {
        let url = public_url(None, &allowed(), &origin(false)).unwrap();
        assert_eq!(
            url.to_url_string(),
            "http://internal:8080/twilio/notify?bodySHA256=ab"
        );
    }

    #[test]
    fn trusted_peers_forwarding_headers_name_the_signed_url() {
        let url = public_url(None, &allowed(), &origin(true)).unwrap();
        assert_eq!(
            url.to_url_string(),
            "https://voice.example.com/twilio/notify?bodySHA256=ab"
        );
    }

    #[test]
    fn configured_public_url_wins_and_keeps_the_raw_query() {
        let configured = SignedUrl::parse("https://voice.example.com:8443/public/path").unwrap();
        let url = public_url(Some(configured), &[], &origin(true)).unwrap();
        assert_eq!(
            url.to_url_string(),
            "https://voice.example.com:8443/public/path?bodySHA256=ab"
        );
    }

    #[test]
    fn tls_listener_without_forwarding_is_https_and_no_host_is_refused() {
        let tls = RequestOrigin {
            tls: true,
            forwarded_proto: None,
            forwarded_host: None,
            ..origin(true)
        };
        assert_eq!(
            public_url(None, &allowed(), &tls).unwrap().to_url_string(),
            "https://internal:8080/twilio/notify?bodySHA256=ab"
        );
        let hostless = RequestOrigin { host: None, ..tls };
        assert_eq!(
            public_url(None, &allowed(), &hostless),
            Err(SignatureError::NoPublicUrl)
        );
    }
}
