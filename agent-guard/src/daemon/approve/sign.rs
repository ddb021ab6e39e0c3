//! The signatures the channels put on their callbacks, checked in constant time
//! (`ring::hmac::verify`), and the ones the daemon puts on what it sends a webhook.
//!
//! - Slack: `X-Slack-Signature: v0=HEX(HMAC-SHA256(signing secret, "v0:" + timestamp + ":" +
//!   body))`, with `X-Slack-Request-Timestamp` within five minutes
//!   (<https://api.slack.com/authentication/verifying-requests-from-slack>).
//! - Teams Outgoing Webhook: `Authorization: HMAC BASE64(HMAC-SHA256(BASE64-DECODE(security
//!   token), body))` (<https://learn.microsoft.com/microsoftteams/platform/webhooks-and-connectors/how-to/add-outgoing-webhook>);
//!   Teams signs no timestamp header, so the signed activity's own `timestamp` is checked.
//! - The generic webhook, both ways: `X-Agent-Guard-Signature: v1=HEX(HMAC-SHA256(secret,
//!   "v1:" + timestamp + ":" + body))` with `X-Agent-Guard-Timestamp` (Unix seconds) within
//!   five minutes.

use base64::Engine;
use ring::hmac;

/// How far a signed timestamp may be from now, either way.
pub const MAX_SKEW_SECS: u64 = 300;

/// Why a callback is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("no signature")]
    Unsigned,
    #[error("bad signature")]
    BadSignature,
    #[error("timestamp missing or more than five minutes from now")]
    Stale,
}

/// Unix seconds now.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn fresh(timestamp: Option<&str>, now: u64) -> Result<(), Refused> {
    let ts: u64 = timestamp.and_then(|t| t.trim().parse().ok()).ok_or(Refused::Stale)?;
    if ts.abs_diff(now) > MAX_SKEW_SECS {
        return Err(Refused::Stale);
    }
    Ok(())
}

/// What a `v{version}` signature covers: `"v{version}:" + timestamp + ":" + body`, for checking
/// and for signing alike.
fn signed_message(version: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut message = format!("v{version}:{}:", timestamp.trim()).into_bytes();
    message.extend_from_slice(body);
    message
}

/// Checks `v{version}=HEX` over `"v{version}:" + timestamp + ":" + body` (Slack: "0"; the
/// webhook: "1").
fn versioned(
    version: &str,
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: u64,
) -> Result<(), Refused> {
    let signature = signature.ok_or(Refused::Unsigned)?;
    fresh(timestamp, now)?;
    let hex_sig = signature.strip_prefix(&format!("v{version}=")).ok_or(Refused::BadSignature)?;
    let tag = hex::decode(hex_sig).map_err(|_| Refused::BadSignature)?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let message = signed_message(version, timestamp.unwrap_or_default(), body);
    hmac::verify(&key, &message, &tag).map_err(|_| Refused::BadSignature)
}

/// A Slack request's signature.
pub fn slack(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: u64,
) -> Result<(), Refused> {
    versioned("0", secret, timestamp, signature, body, now)
}

/// A webhook callback's signature.
pub fn webhook(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: u64,
) -> Result<(), Refused> {
    versioned("1", secret, timestamp, signature, body, now)
}

/// The signature the daemon sends a webhook: (timestamp, `v1=HEX`).
pub fn sign_webhook(secret: &[u8], body: &[u8], now: u64) -> (String, String) {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let timestamp = now.to_string();
    let tag = hmac::sign(&key, &signed_message("1", &timestamp, body));
    (timestamp, format!("v1={}", hex::encode(tag.as_ref())))
}

/// A Teams Outgoing Webhook's `Authorization` header; `token` is the security token as Teams
/// shows it (base64).
pub fn teams(token: &str, authorization: Option<&str>, body: &[u8]) -> Result<(), Refused> {
    let engine = base64::engine::general_purpose::STANDARD;
    let authorization = authorization.ok_or(Refused::Unsigned)?;
    let given = authorization.strip_prefix("HMAC ").ok_or(Refused::BadSignature)?;
    let tag = engine.decode(given.trim()).map_err(|_| Refused::BadSignature)?;
    let key_bytes = engine.decode(token.trim()).map_err(|_| Refused::BadSignature)?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, &key_bytes);
    hmac::verify(&key, body, &tag).map_err(|_| Refused::BadSignature)
}

/// Signs `body` as Teams would.
#[cfg(test)]
pub fn sign_teams(token: &str, body: &[u8]) -> Option<String> {
    let engine = base64::engine::general_purpose::STANDARD;
    let key = hmac::Key::new(hmac::HMAC_SHA256, &engine.decode(token.trim()).ok()?);
    Some(format!("HMAC {}", engine.encode(hmac::sign(&key, body).as_ref())))
}

/// An RFC 3339 time (a Teams activity's `timestamp`) within five minutes of `now`.
pub fn fresh_rfc3339(time: Option<&str>, now: u64) -> Result<(), Refused> {
    // Teams writes UTC ("2017-11-03T21:49:03.4290285Z"); an explicit zero offset reads too.
    let at = time.and_then(|t| humantime::parse_rfc3339_weak(t.strip_suffix("+00:00").unwrap_or(t)).ok());
    let secs =
        at.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_secs()).ok_or(Refused::Stale)?;
    if secs.abs_diff(now) > MAX_SKEW_SECS {
        return Err(Refused::Stale);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of Slack's documentation: this secret, timestamp and body give this
    /// signature.
    #[test]
    fn slack_s_documented_example_verifies() {
        let secret = b"8f742231b10e8888abcd99yyyzzz85a5";
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let sig = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        assert_eq!(slack(secret, Some("1531420618"), Some(sig), body, 1_531_420_618), Ok(()));
        assert_eq!(slack(secret, Some("1531420618"), Some(sig), body, 1_531_420_618 + 301), Err(Refused::Stale));
        assert_eq!(
            slack(b"another secret", Some("1531420618"), Some(sig), body, 1_531_420_618),
            Err(Refused::BadSignature)
        );
        let mut tampered = body.to_vec();
        tampered[0] = b'T';
        assert_eq!(slack(secret, Some("1531420618"), Some(sig), &tampered, 1_531_420_618), Err(Refused::BadSignature));
        assert_eq!(slack(secret, Some("1531420618"), None, body, 1_531_420_618), Err(Refused::Unsigned));
    }

    #[test]
    fn a_webhook_signature_round_trips_and_binds_its_timestamp() {
        let (ts, sig) = sign_webhook(b"s3cret", b"{}", 1000);
        assert_eq!(webhook(b"s3cret", Some(&ts), Some(&sig), b"{}", 1100), Ok(()));
        assert_eq!(webhook(b"s3cret", Some("1001"), Some(&sig), b"{}", 1100), Err(Refused::BadSignature));
        assert_eq!(webhook(b"s3cret", Some(&ts), Some(&sig), b"{}", 2000), Err(Refused::Stale));
    }

    #[test]
    fn a_teams_signature_round_trips() {
        let token = base64::engine::general_purpose::STANDARD.encode(b"0123456789abcdef0123456789abcdef");
        let auth = sign_teams(&token, b"{\"text\":\"approve 1\"}").unwrap();
        assert_eq!(teams(&token, Some(&auth), b"{\"text\":\"approve 1\"}"), Ok(()));
        assert_eq!(teams(&token, Some(&auth), b"{\"text\":\"approve 2\"}"), Err(Refused::BadSignature));
        assert_eq!(teams(&token, None, b"{}"), Err(Refused::Unsigned));
    }
}
