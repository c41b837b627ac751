//! The `routes:` section: the list (unique paths and names), one validator per route kind and
//! per part of a route (public URL, schema, retry policy, exhaustion policy), and the
//! `twilio_errors:` section that the error-event routes use.
//!
//! Owns the rules a route must follow to be signable by Twilio and safe to retry: an https
//! public URL without query or underscore host, a deadline inside Twilio's 15 s, only 5xx
//! retried, a 2xx for buffered answers. Both kinds share the endpoint rules (path, public URL,
//! allowed hosts); rules that span sections are [`super::validate`]'s.

use std::num::{NonZeroU32, NonZeroUsize};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};

use super::model::{
    BodyKind, ErrorRoute, OnExhausted, PublicUrl, Route, TwilioErrorsConfig, UpstreamConfig,
};
use super::raw::{
    default_buffer_ttl, default_buffered_status, default_schema_mode, RawOnExhausted, RawRetry,
    RawRoute, RawTwilioErrors, RouteKind,
};
use super::source::read_json;
use super::values::{backoff, nonzero_duration};
use crate::policy::RetryPolicy;
use crate::schema::NotificationSchema;

/// Twilio gives up on a notification URL after this long.
const TWILIO_TIMEOUT: Duration = Duration::from_secs(15);

/// Every route of the file, split by kind: paths and names are unique across both (a path
/// serves one kind; a name labels one route's metrics).
pub(super) fn routes(
    raw: Vec<RawRoute>,
    upstreams: &[UpstreamConfig],
    base: &Path,
    warnings: &mut Vec<String>,
) -> Result<(Vec<Route>, Vec<ErrorRoute>)> {
    if !raw.iter().any(|r| r.kind == RouteKind::Notification) {
        bail!(
            "routes: at least one route is required (a notification route: path, upstream, body)"
        );
    }
    let mut routes: Vec<Route> = Vec::new();
    let mut error_routes: Vec<ErrorRoute> = Vec::new();
    let mut taken: Vec<(String, String)> = Vec::new();
    for (i, entry) in raw.into_iter().enumerate() {
        let key = format!("routes[{i}]");
        let (name, path) = match entry.kind {
            RouteKind::Notification => {
                let r = entry;
                let route = route(&key, r, upstreams, base, warnings)?;
                let id = (route.name.clone(), route.path.clone());
                routes.push(route);
                id
            }
            RouteKind::TwilioErrors => {
                let r = entry;
                if let Some(k) = r.handler_keys().first() {
                    bail!(
                        "{key}.{k}: a twilio_errors route answers Twilio's error events itself and \
                         forwards nothing, so it takes no {k}; remove it (it takes name, path, \
                         public_url or allowed_hosts)"
                    );
                }
                let endpoint = Endpoint::new(
                    &key,
                    r.path.as_deref(),
                    r.public_url.as_deref(),
                    &r.allowed_hosts,
                    warnings,
                )?;
                let route = ErrorRoute {
                    name: r.name.unwrap_or_else(|| endpoint.path.clone()),
                    path: endpoint.path,
                    public_url: endpoint.public_url,
                    allowed_hosts: endpoint.allowed_hosts,
                };
                let id = (route.name.clone(), route.path.clone());
                error_routes.push(route);
                id
            }
        };
        if let Some((other, _)) = taken.iter().find(|(_, p)| *p == path) {
            bail!(
                "{key}.path: {path:?} is already served by route {other:?}; paths must be unique"
            );
        }
        if taken.iter().any(|(n, _)| *n == name) {
            bail!("{key}.name: {name:?} is used twice; names label metrics and must be unique");
        }
        taken.push((name, path));
    }
    Ok((routes, error_routes))
}

/// `twilio_errors:`.
pub(super) fn twilio_errors(raw: &RawTwilioErrors) -> Result<TwilioErrorsConfig> {
    let remember = nonzero_duration("twilio_errors.remember", &raw.remember)?;
    if !(Duration::from_secs(60)..=Duration::from_secs(24 * 3600)).contains(&remember) {
        bail!(
            "twilio_errors.remember: {remember:?} must be between 1m and 24h (Twilio reports an \
             error within seconds to minutes of the call)"
        );
    }
    let max_calls = match raw.max_calls {
        n if n > 10_000_000 => {
            bail!("twilio_errors.max_calls: {n} is above 10,000,000 calls (~2 GiB)")
        }
        n => NonZeroUsize::new(n)
            .ok_or_else(|| anyhow!("twilio_errors.max_calls: must be at least 1"))?,
    };
    Ok(TwilioErrorsConfig {
        remember,
        max_calls,
    })
}

/// Where a route is reached and what URL its signatures are checked against: the same rules
/// for both kinds.
struct Endpoint {
    path: String,
    public_url: Option<PublicUrl>,
    allowed_hosts: Vec<String>,
}

impl Endpoint {
    fn new(
        key: &str,
        path: Option<&str>,
        public_url_text: Option<&str>,
        allowed: &[String],
        warnings: &mut Vec<String>,
    ) -> Result<Endpoint> {
        let public_url = match public_url_text {
            Some(u) => Some(public_url(&format!("{key}.public_url"), u)?),
            None => None,
        };
        let path = match (path, &public_url) {
            (Some(p), _) => p.to_owned(),
            (None, Some(u)) => u.path.clone(),
            (None, None) => {
                bail!("{key}: set path (and public_url, the URL Twilio is configured with)")
            }
        };
        if !path.starts_with('/') || path.contains('?') {
            bail!("{key}.path: {path:?} must start with / and hold no query");
        }
        match &public_url {
            Some(u) if u.scheme != "https" => warnings.push(format!(
                "{key}.public_url: {}://… is not https; Twilio requires https for client notifications in production",
                u.scheme
            )),
            Some(_) => {}
            None => warnings.push(format!(
                "{key}: no public_url; the signed URL is rebuilt from Host (or X-Forwarded-* from trusted_proxies), for the hosts in allowed_hosts"
            )),
        }
        let allowed_hosts = allowed_hosts(key, allowed, public_url.is_some())?;
        Ok(Endpoint {
            path,
            public_url,
            allowed_hosts,
        })
    }
}

fn route(
    key: &str,
    r: RawRoute,
    upstreams: &[UpstreamConfig],
    base: &Path,
    warnings: &mut Vec<String>,
) -> Result<Route> {
    let Endpoint {
        path,
        public_url,
        allowed_hosts,
    } = Endpoint::new(
        key,
        r.path.as_deref(),
        r.public_url.as_deref(),
        &r.allowed_hosts,
        warnings,
    )?;
    let known: Vec<&str> = upstreams.iter().map(|u| u.name.as_str()).collect();
    let Some(upstream_name) = &r.upstream else {
        bail!("{key}.upstream: required: the upstreams group to forward to (known: {known:?})");
    };
    let upstream = upstreams
        .iter()
        .position(|u| u.name == *upstream_name)
        .ok_or_else(|| {
            anyhow!(
                "{key}.upstream: {upstream_name:?} is not defined under upstreams (known: {known:?})"
            )
        })?;
    let Some(body) = r.body else {
        bail!("{key}.body: required: json (client call notifications) or form (other Twilio webhooks)");
    };
    let schema = schema(&format!("{key}.schema"), r.schema.as_deref(), body, base)?;
    let retry = retry(
        &format!("{key}.retry"),
        r.retry.as_ref().unwrap_or(&RawRetry::default()),
        warnings,
    )?;
    let on_exhausted = on_exhausted(key, &r, body, warnings)?;
    Ok(Route {
        name: r.name.unwrap_or_else(|| path.clone()),
        path,
        public_url,
        allowed_hosts,
        upstream,
        body,
        schema,
        schema_mode: r.schema_mode.unwrap_or_else(default_schema_mode),
        retry,
        on_exhausted,
    })
}

/// A route's signed URL is pinned: by `public_url`, or, when it is rebuilt from each request,
/// to the hosts in `allowed_hosts`. Otherwise a signature Twilio made for the same path on
/// another host of the account would verify here.
fn allowed_hosts(key: &str, raw: &[String], has_public_url: bool) -> Result<Vec<String>> {
    match (has_public_url, raw.is_empty()) {
        (true, false) => bail!(
            "{key}.allowed_hosts: only for a route without public_url (public_url already fixes \
             the host the signature is checked for); remove one of them"
        ),
        (true, true) => return Ok(Vec::new()),
        (false, true) => bail!(
            "{key}: set public_url (the URL configured in Twilio, e.g. \
             https://voice.example.com/twilio/client-notify), or allowed_hosts (the hosts Twilio \
             calls this path on, e.g. [voice.example.com]) to rebuild it from each request's Host"
        ),
        (false, false) => {}
    }
    raw.iter()
        .enumerate()
        .map(|(i, host)| {
            // Split as a request's Host is split, so an entry that could never match (`host:`,
            // `a:b:c`, a port above 65535) is refused here rather than ignored at run time.
            let valid = crate::signature::split_host_port(host).is_ok_and(|(name, port)| {
                !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
                    && (!name.contains(':') || name.starts_with('['))
                    && port.is_none_or(|p| p.parse::<u16>().is_ok())
            });
            if !valid {
                bail!(
                    "{key}.allowed_hosts[{i}]: {host:?} is not a host or host:port (e.g. \
                     voice.example.com or voice.example.com:8443)"
                );
            }
            Ok(host.to_ascii_lowercase())
        })
        .collect()
}

fn public_url(key: &str, value: &str) -> Result<PublicUrl> {
    let url = crate::signature::SignedUrl::parse(value).map_err(|e| anyhow!("{key}: {e}"))?;
    if !url.query.is_empty() || value.contains('#') {
        bail!("{key}: {value:?} must not contain a query or fragment (each request's own query is what Twilio signs)");
    }
    if url.host.contains('_') {
        // Twilio rejects hostnames with underscores (13807 "invalid hostname").
        bail!(
            "{key}: host {:?} contains an underscore, which Twilio cannot call",
            url.host
        );
    }
    // The path is a slice of `value`, a str, cut at ASCII delimiters: always UTF-8.
    let path = String::from_utf8_lossy(url.path);
    Ok(PublicUrl {
        scheme: url.scheme.to_ascii_lowercase(),
        host: url.host.to_string(),
        port: url.port.map(str::to_string),
        path: if path.is_empty() {
            "/".into()
        } else {
            path.into_owned()
        },
    })
}

fn schema(
    key: &str,
    file: Option<&str>,
    body: BodyKind,
    base: &Path,
) -> Result<Option<Arc<NotificationSchema>>> {
    match (file, body) {
        (None, _) => Ok(None),
        (Some(_), BodyKind::Form) => {
            bail!("{key}: schemas apply to json routes only; remove it or set body: json")
        }
        (Some(file), BodyKind::Json) => {
            let (path, value) = read_json(key, base, file)?;
            let schema = NotificationSchema::compile(&value).map_err(|e| {
                anyhow!("{key}: {} is not a valid JSON Schema: {e}", path.display())
            })?;
            Ok(Some(Arc::new(schema)))
        }
    }
}

fn retry(key: &str, r: &RawRetry, warnings: &mut Vec<String>) -> Result<RetryPolicy> {
    let deadline = nonzero_duration(&format!("{key}.deadline"), &r.deadline)?;
    if deadline >= TWILIO_TIMEOUT {
        bail!("{key}.deadline: {deadline:?} is not below Twilio's 15 s timeout; keep it at 10 s or less");
    }
    if deadline > Duration::from_secs(10) {
        warnings.push(format!(
            "{key}.deadline: {deadline:?} leaves little of Twilio's 15 s for its own connect and the buffer write"
        ));
    }
    for (i, status) in r.on_status.iter().enumerate() {
        if !(500..=599).contains(status) {
            bail!("{key}.on_status[{i}]: {status} is not a 5xx status (4xx answers are never retried)");
        }
    }
    Ok(RetryPolicy {
        max_attempts: NonZeroU32::new(r.max_attempts)
            .ok_or_else(|| anyhow!("{key}.max_attempts: must be at least 1"))?,
        deadline,
        backoff: backoff(&format!("{key}.backoff"), &r.backoff)?,
        retry_statuses: r.on_status.clone(),
    })
}

fn on_exhausted(
    key: &str,
    r: &RawRoute,
    body: BodyKind,
    warnings: &mut Vec<String>,
) -> Result<OnExhausted> {
    match r.on_exhausted.unwrap_or_default() {
        RawOnExhausted::Fail => Ok(OnExhausted::Fail),
        RawOnExhausted::Buffer => {
            if body == BodyKind::Form {
                warnings.push(format!("{key}: buffering a form webhook answers Twilio before the handler has; its TwiML answer is lost"));
            }
            let ttl = nonzero_duration(
                &format!("{key}.buffer_ttl"),
                r.buffer_ttl.as_deref().unwrap_or(default_buffer_ttl()),
            )?;
            let buffered_status = r.buffered_status.unwrap_or_else(default_buffered_status);
            let status = match http::StatusCode::from_u16(buffered_status) {
                Ok(s) if s.is_success() => s,
                _ => bail!("{key}.buffered_status: {buffered_status} must be a 2xx status (Twilio treats anything else as 13807)"),
            };
            Ok(OnExhausted::Buffer { ttl, status })
        }
    }
}
