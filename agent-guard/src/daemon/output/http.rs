//! HTTP output: a generic webhook, Splunk HEC or Elasticsearch bulk, batched, retried with
//! backoff, through a disk spool (spool.rs) so a receiver that is down or slow loses nothing.
//!
//! Two tasks: the intake renders each event and appends it to the spool (fast, never waits on
//! the network); the sender reads sealed segments, posts them in batches and removes a segment
//! once every batch in it was accepted. Delivery is at-least-once: a batch that timed out may
//! have arrived and is sent again; events carry `event_id` (Elasticsearch: the document `_id`,
//! so a resent event is not duplicated).

use std::{sync::Arc, time::Duration};

use reqwest::StatusCode;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::daemon::config::{HttpConfig, HttpFlavor};

use super::{
    OutputError, Rendered,
    metrics::{Metrics, OutputLabels},
    spool::{self, Record, SpoolState, SpoolWriter},
};

/// How long the sender keeps trying at shutdown before leaving the rest in the spool.
const DRAIN: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// An HTTP output with its client and spool.
pub struct HttpOutput {
    name: String,
    config: HttpConfig,
    url: reqwest::Url,
    auth: Auth,
    client: reqwest::Client,
    metrics: Metrics,
}

/// How requests authenticate (one way at most: `ConfigFile::validate`).
enum Auth {
    None,
    /// `tokenFile`: Splunk HEC's token, or a bearer token.
    Token(String),
    /// `apiKeyFile`: an Elasticsearch API key.
    ApiKey(String),
    /// `username` and `passwordFile`.
    Basic {
        username: String,
        password: String,
    },
}

impl Auth {
    /// The secrets, read once at start.
    fn read(config: &HttpConfig) -> Result<Auth, String> {
        let secret = |what: &str, path: &std::path::Path| {
            std::fs::read_to_string(path)
                .map(|text| text.trim().to_string())
                .map_err(|err| format!("{what} {}: {err}", path.display()))
        };
        Ok(match (&config.token_file, &config.api_key_file, &config.username, &config.password_file) {
            (Some(path), _, _, _) => Auth::Token(secret("token file", path)?),
            (_, Some(path), _, _) => Auth::ApiKey(secret("API key file", path)?),
            (_, _, Some(username), Some(path)) => {
                Auth::Basic { username: username.clone(), password: secret("password file", path)? }
            }
            _ => Auth::None,
        })
    }
}

/// The output's HTTP client: its timeout, the CA it trusts beside the web roots, and its
/// client certificate.
fn client(config: &HttpConfig) -> Result<reqwest::Client, String> {
    let read = |what: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|err| format!("{what} {}: {err}", path.display()))
    };
    let mut builder = reqwest::Client::builder().timeout(config.timeout).redirect(reqwest::redirect::Policy::none());
    if let Some(path) = &config.ca_file {
        let certs = reqwest::Certificate::from_pem_bundle(&read("CA file", path)?)
            .map_err(|err| format!("CA file {}: {err}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("CA file {}: no PEM certificate in it", path.display()));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    if let (Some(cert), Some(key)) = (&config.client_cert, &config.client_key) {
        let mut pem = read("client certificate", cert)?;
        pem.push(b'\n');
        pem.extend(read("client key", key)?);
        let identity = reqwest::Identity::from_pem(&pem)
            .map_err(|err| format!("client certificate {} with key {}: {err}", cert.display(), key.display()))?;
        builder = builder.identity(identity);
    }
    builder.build().map_err(|err| format!("HTTP client: {err}"))
}

/// What `start` reads (secrets, CA, client certificate), checked without starting anything.
pub fn check(name: &str, config: &HttpConfig) -> Result<(), OutputError> {
    let output_error = |message: String| OutputError::Config { output: name.to_string(), message };
    Auth::read(config).map_err(output_error)?;
    client(config).map_err(output_error)?;
    Ok(())
}

/// Opens the spool and starts both tasks; they end after `events` closes and the spool was
/// drained (or `DRAIN` passed).
pub fn start(
    name: &str,
    config: HttpConfig,
    spool_dir: &std::path::Path,
    metrics: Metrics,
    events: mpsc::Receiver<Arc<Rendered>>,
) -> Result<tokio::task::JoinHandle<()>, OutputError> {
    let output_error = |message: String| OutputError::Config { output: name.to_string(), message };
    let auth = Auth::read(&config).map_err(output_error)?;
    let base = reqwest::Url::parse(&config.url).map_err(|err| output_error(format!("url {}: {err}", config.url)))?;
    let url = match config.flavor {
        HttpFlavor::Webhook => Ok(base),
        HttpFlavor::SplunkHec => base.join("services/collector/event"),
        HttpFlavor::Elasticsearch => base.join("_bulk"),
    }
    .map_err(|err| output_error(format!("url {}: {err}", config.url)))?;
    let client = client(&config).map_err(output_error)?;
    let writer =
        SpoolWriter::open(spool_dir, config.spool_max.as_u64()).map_err(|err| output_error(err.to_string()))?;
    let state = writer.state();
    let output = HttpOutput { name: name.to_string(), config, url, auth, client, metrics };
    let closing = CancellationToken::new();
    let intake = tokio::spawn(intake(writer, events, output.config.flush, output.metrics.clone(), name.to_string()));
    let sender = tokio::spawn(output.send_spooled(state, closing.clone()));
    Ok(tokio::spawn(async move {
        let _ = intake.await;
        closing.cancel();
        let _ = sender.await;
    }))
}

async fn intake(
    mut writer: SpoolWriter,
    mut events: mpsc::Receiver<Arc<Rendered>>,
    flush: Duration,
    metrics: Metrics,
    name: String,
) {
    let labels = Metrics::output(&name);
    let mut tick = tokio::time::interval(flush);
    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { break };
                let record = Record { id: event.id().to_string(), epoch_ms: event.epoch_ms, body: event.line.clone() };
                // Disk writes are short; block_in_place keeps them off the other tasks' threads.
                if let Err(err) = tokio::task::block_in_place(|| writer.append(&record)) {
                    metrics.output_dropped.get_or_create(&labels).inc();
                    tracing::error!(output = name, %err, "event {} not spooled", event.id());
                }
            }
            _ = tick.tick() => {
                if let Err(err) = tokio::task::block_in_place(|| writer.seal()) {
                    tracing::error!(output = name, %err, "cannot seal the spool");
                }
            }
        }
        metrics
            .spool_bytes
            .get_or_create(&labels)
            .set(writer.state().bytes.load(std::sync::atomic::Ordering::Relaxed) as i64);
    }
    if let Err(err) = writer.seal() {
        tracing::error!(output = name, %err, "cannot seal the spool");
    }
}

/// What a delivery attempt came to.
enum Attempt {
    Accepted,
    /// Worth trying again (network error, timeout, 408, 429, 5xx).
    Retry(String),
    /// The receiver refuses this batch for good (another 4xx): counted as dropped and logged
    /// (the events stay in the local outputs).
    Refused(String),
}

/// The shutdown drain: once `closing` is cancelled the sender has `DRAIN` more, at most.
struct Drain {
    closing: CancellationToken,
    until: Option<tokio::time::Instant>,
}

impl Drain {
    fn deadline(&mut self) -> tokio::time::Instant {
        *self.until.get_or_insert_with(|| tokio::time::Instant::now() + DRAIN)
    }

    /// Whether the daemon is shutting down and the drain time is spent.
    fn over(&mut self) -> bool {
        self.closing.is_cancelled() && tokio::time::Instant::now() >= self.deadline()
    }

    /// Completes when the drain time is spent (never while the daemon runs).
    async fn ended(&mut self) {
        self.closing.cancelled().await;
        tokio::time::sleep_until(self.deadline()).await;
    }
}

impl HttpOutput {
    async fn send_spooled(self, state: Arc<SpoolState>, closing: CancellationToken) {
        let labels = Metrics::output(&self.name);
        let mut drain = Drain { closing: closing.clone(), until: None };
        loop {
            let segments = spool::sealed_segments(&state).unwrap_or_else(|err| {
                tracing::error!(output = self.name, %err, "cannot list the spool");
                Vec::new()
            });
            if segments.is_empty() {
                if closing.is_cancelled() {
                    return;
                }
                tokio::select! {
                    () = state.sealed.notified() => {}
                    () = closing.cancelled() => {}
                }
                continue;
            }
            for segment in segments {
                for batch in self.records_of(&segment, &labels).chunks(self.config.batch) {
                    // At shutdown the drain is bounded, however many events are spooled.
                    if drain.over() || !self.deliver(batch, &labels, &mut drain).await {
                        tracing::warn!(
                            output = self.name,
                            "shutting down: undelivered events stay in {}",
                            state.dir.display()
                        );
                        return;
                    }
                }
                if let Err(err) = spool::remove_segment(&state, &segment) {
                    tracing::error!(output = self.name, segment = %segment.display(), %err, "cannot remove a delivered segment");
                    return;
                }
                let bytes = state.bytes.load(std::sync::atomic::Ordering::Relaxed);
                self.metrics.spool_bytes.get_or_create(&labels).set(bytes as i64);
            }
        }
    }

    /// A sealed segment's records; damaged lines and unreadable segments are counted.
    fn records_of(&self, segment: &std::path::Path, labels: &OutputLabels) -> Vec<Record> {
        match spool::read_segment(segment) {
            Ok((records, damaged)) => {
                if damaged > 0 {
                    self.metrics.output_dropped.get_or_create(labels).inc_by(damaged);
                    tracing::error!(output = self.name, segment = %segment.display(), "{damaged} damaged spool records skipped");
                }
                records
            }
            Err(err) => {
                tracing::error!(output = self.name, segment = %segment.display(), %err, "unreadable spool segment: skipped");
                self.metrics.output_failures.get_or_create(labels).inc();
                Vec::new()
            }
        }
    }

    /// Posts `batch` until the receiver takes or refuses it (true), retrying with backoff;
    /// false when the shutdown drain ended first.
    async fn deliver(&self, batch: &[Record], labels: &OutputLabels, drain: &mut Drain) -> bool {
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.post(batch).await {
                Attempt::Accepted => {
                    self.metrics.output_sent.get_or_create(labels).inc_by(batch.len() as u64);
                    return true;
                }
                Attempt::Refused(why) => {
                    self.metrics.output_failures.get_or_create(labels).inc();
                    self.metrics.output_dropped.get_or_create(labels).inc_by(batch.len() as u64);
                    tracing::error!(output = self.name, "receiver refused {} events: {why}", batch.len());
                    return true;
                }
                Attempt::Retry(why) => {
                    self.metrics.output_failures.get_or_create(labels).inc();
                    tracing::warn!(output = self.name, "delivery failed, retrying in {backoff:?}: {why}");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = drain.ended() => return false,
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// The request body for `batch` in this output's flavor.
    fn body(&self, batch: &[Record]) -> (String, &'static str) {
        match self.config.flavor {
            HttpFlavor::Webhook => {
                let items: Vec<&str> = batch.iter().map(|r| r.body.as_str()).collect();
                (format!("[{}]", items.join(",")), "application/json")
            }
            HttpFlavor::SplunkHec => {
                let index = self
                    .config
                    .index
                    .as_ref()
                    .map(|i| format!(",\"index\":{}", serde_json::json!(i)))
                    .unwrap_or_default();
                let body = batch
                    .iter()
                    .map(|r| {
                        format!(
                            "{{\"time\":{}.{:03},\"source\":\"agent-guard\",\"sourcetype\":\"agent-guard:event\"{index},\"event\":{}}}",
                            r.epoch_ms / 1000,
                            r.epoch_ms % 1000,
                            r.body
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                (body, "application/json")
            }
            HttpFlavor::Elasticsearch => {
                let index = self.config.index.as_deref().unwrap_or("agent-guard-events");
                let mut body = String::new();
                for r in batch {
                    // `create` with the event id: a resent event is refused as a duplicate (409), not stored twice.
                    body.push_str(&serde_json::json!({"create": {"_index": index, "_id": r.id}}).to_string());
                    body.push('\n');
                    body.push_str(&r.body);
                    body.push('\n');
                }
                (body, "application/x-ndjson")
            }
        }
    }

    async fn post(&self, batch: &[Record]) -> Attempt {
        let (body, content_type) = self.body(batch);
        let mut request =
            self.client.post(self.url.clone()).header(reqwest::header::CONTENT_TYPE, content_type).body(body);
        request = match &self.auth {
            Auth::None => request,
            Auth::Token(token) => {
                let scheme = if self.config.flavor == HttpFlavor::SplunkHec { "Splunk" } else { "Bearer" };
                request.header(reqwest::header::AUTHORIZATION, format!("{scheme} {token}"))
            }
            Auth::ApiKey(key) => request.header(reqwest::header::AUTHORIZATION, format!("ApiKey {key}")),
            Auth::Basic { username, password } => request.basic_auth(username, Some(password)),
        };
        let response = match request.send().await {
            Ok(response) => response,
            Err(err) => return Attempt::Retry(err.to_string()),
        };
        let status = response.status();
        if status.is_success() {
            if self.config.flavor == HttpFlavor::Elasticsearch {
                return bulk_outcome(response.json::<serde_json::Value>().await.ok());
            }
            return Attempt::Accepted;
        }
        let text = response.text().await.unwrap_or_default();
        let why = format!("{status}: {}", text.chars().take(200).collect::<String>());
        // Retried, not dropped: overload and outages, and what a fix on the receiver's side
        // ends (a rotated credential: 401, 403; a moved endpoint: redirects are not followed,
        // so a login page never counts as delivery).
        if status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::UNAUTHORIZED
            || status == StatusCode::FORBIDDEN
            || status.is_redirection()
            || status.is_server_error()
        {
            Attempt::Retry(why)
        } else {
            Attempt::Refused(why)
        }
    }
}

/// Elasticsearch answers 200 with per-item results: a duplicate (409) was already stored;
/// 429 or 5xx items are retried (the whole batch: the others are then duplicates).
fn bulk_outcome(answer: Option<serde_json::Value>) -> Attempt {
    let Some(answer) = answer else { return Attempt::Retry("unreadable _bulk answer".into()) };
    if answer.get("errors").and_then(serde_json::Value::as_bool) != Some(true) {
        return Attempt::Accepted;
    }
    let statuses: Vec<u64> = answer
        .get("items")
        .and_then(|i| i.as_array())
        .map(|items| items.iter().filter_map(|item| item.get("create")?.get("status")?.as_u64()).collect())
        .unwrap_or_default();
    if statuses.iter().any(|&s| s == 429 || s >= 500) {
        return Attempt::Retry(format!("_bulk item statuses {statuses:?}"));
    }
    if statuses.iter().any(|&s| s >= 400 && s != 409) {
        return Attempt::Refused(format!("_bulk item statuses {statuses:?}"));
    }
    Attempt::Accepted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_answers_are_read_item_by_item() {
        let ok = serde_json::json!({"errors": false, "items": []});
        assert!(matches!(bulk_outcome(Some(ok)), Attempt::Accepted));
        let dup =
            serde_json::json!({"errors": true, "items": [{"create": {"status": 201}}, {"create": {"status": 409}}]});
        assert!(matches!(bulk_outcome(Some(dup)), Attempt::Accepted));
        let busy = serde_json::json!({"errors": true, "items": [{"create": {"status": 429}}]});
        assert!(matches!(bulk_outcome(Some(busy)), Attempt::Retry(_)));
        let bad = serde_json::json!({"errors": true, "items": [{"create": {"status": 400}}]});
        assert!(matches!(bulk_outcome(Some(bad)), Attempt::Refused(_)));
    }
}
