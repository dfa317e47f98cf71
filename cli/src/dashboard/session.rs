//! The dashboard's sessions: a cookie naming the browser's session, the session's CSRF token,
//! and, when the dashboard has a token of its own (`--web_token`), whether the session logged in.
//!
//! Nothing is stored: the cookie is `<id>.<a|n>.<mac>`, where the MAC (HMAC-SHA-256 with a key
//! made at start-up) covers the id and the login flag, and the CSRF token is the MAC of the id
//! under another label. A stranger cannot forge either, and a flood of new sessions costs no
//! memory. Cookies are `HttpOnly`, `SameSite=Lax`, `Path=/` (and `Secure` over TLS); they end
//! when the dashboard restarts.
//!
//! The CSRF token is written into every page (`<meta name="csrf-token">`) and must come back in
//! `X-CSRF-Token` on every state-changing request; a page of another origin can neither read it
//! nor send that header without a preflight the dashboard refuses.

use http::{HeaderMap, HeaderValue};
use micro::secret::Secret;
use micro::Error;
use ring::hmac;

use crate::gateway::ID;

/// The cookie's name.
pub(crate) const COOKIE: &str = "micro_web_session";

/// The header the CSRF token comes back in.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

/// What makes and checks sessions.
pub(crate) struct Sessions {
    key: hmac::Key,
    token: Option<Secret>,
    secure: bool,
}

/// One browser's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Session {
    id: String,
    /// Whether it logged in with the dashboard's token.
    pub(crate) authenticated: bool,
    /// Whether the browser must be sent the cookie (new, or changed).
    pub(crate) changed: bool,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Sessions {
    /// Sessions for a dashboard that needs `token` to log in (none: every session may do
    /// everything), served over TLS when `secure`.
    pub(crate) fn new(token: Option<Secret>, secure: bool) -> Result<Sessions, Error> {
        let rng = ring::rand::SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng)
            .map_err(|_| Error::internal_server_error(ID, "no randomness for the session key"))?;
        Ok(Sessions { key, token, secure })
    }

    /// Whether sessions must log in.
    pub(crate) fn login_required(&self) -> bool {
        self.token.is_some()
    }

    fn mac(&self, label: &str, id: &str, flag: &str) -> String {
        hex(hmac::sign(&self.key, format!("{label}\n{id}\n{flag}").as_bytes()).as_ref())
    }

    /// The session the request's cookie names, or a new one.
    pub(crate) fn read(&self, headers: &HeaderMap) -> Session {
        let cookie = headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)
            .map(|(_, value)| value.to_string());
        if let Some(value) = cookie {
            let mut parts = value.split('.');
            if let (Some(id), Some(flag), Some(mac), None) = (parts.next(), parts.next(), parts.next(), parts.next()) {
                let valid = matches!(flag, "a" | "n") && same(mac.as_bytes(), self.mac("session", id, flag).as_bytes());
                if valid {
                    return Session { id: id.to_string(), authenticated: flag == "a", changed: false };
                }
            }
        }
        Session { id: uuid::Uuid::new_v4().simple().to_string(), authenticated: false, changed: true }
    }

    /// The CSRF token of a session.
    pub(crate) fn csrf(&self, session: &Session) -> String {
        self.mac("csrf", &session.id, "")
    }

    /// Refuses a state-changing request without the session's CSRF token.
    pub(crate) fn check_csrf(&self, session: &Session, headers: &HeaderMap) -> Result<(), Error> {
        let given = headers.get(CSRF_HEADER).map(HeaderValue::as_bytes).unwrap_or_default();
        if same(given, self.csrf(session).as_bytes()) {
            Ok(())
        } else {
            Err(Error::forbidden(ID, format!("this request needs the page's CSRF token in {CSRF_HEADER}")))
        }
    }

    /// Logs a session in with `given`; the same session, authenticated, on success.
    pub(crate) fn login(&self, session: &Session, given: &str) -> Result<Session, Error> {
        match &self.token {
            Some(t) if same(given.as_bytes(), t.expose().as_bytes()) => {
                Ok(Session { id: session.id.clone(), authenticated: true, changed: true })
            }
            Some(_) => Err(Error::unauthorized(ID, "that is not the dashboard's token")),
            None => Ok(session.clone()),
        }
    }

    /// The `Set-Cookie` value for a session.
    pub(crate) fn cookie(&self, session: &Session) -> Option<HeaderValue> {
        let flag = if session.authenticated { "a" } else { "n" };
        let secure = if self.secure { "; Secure" } else { "" };
        let value = format!(
            "{COOKIE}={}.{flag}.{}; Path=/; HttpOnly; SameSite=Lax{secure}",
            session.id,
            self.mac("session", &session.id, flag)
        );
        HeaderValue::from_str(&value).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(value: &HeaderValue) -> HeaderMap {
        let cookie = value.to_str().unwrap().split(';').next().unwrap().to_string();
        let mut h = HeaderMap::new();
        h.insert(http::header::COOKIE, HeaderValue::from_str(&format!("other=1; {cookie}")).unwrap());
        h
    }

    #[test]
    fn sessions_cannot_be_forged_and_carry_their_login() {
        let sessions = Sessions::new(Some(Secret::new("open sesame")), false).unwrap();
        let fresh = sessions.read(&HeaderMap::new());
        assert!(fresh.changed && !fresh.authenticated);
        let cookie = sessions.cookie(&fresh).unwrap();
        let again = sessions.read(&with_cookie(&cookie));
        assert_eq!((again.id.as_str(), again.changed), (fresh.id.as_str(), false));

        let forged = HeaderValue::from_str(&cookie.to_str().unwrap().replacen(".n.", ".a.", 1)).unwrap();
        let read = sessions.read(&with_cookie(&forged));
        assert!(!read.authenticated && read.id != fresh.id, "a flipped flag is a new session");

        assert_eq!(sessions.login(&again, "guess").unwrap_err().code, 401);
        let logged = sessions.login(&again, "open sesame").unwrap();
        let back = sessions.read(&with_cookie(&sessions.cookie(&logged).unwrap()));
        assert!(back.authenticated);

        let mut h = HeaderMap::new();
        assert_eq!(sessions.check_csrf(&back, &h).unwrap_err().code, 403);
        h.insert(CSRF_HEADER, HeaderValue::from_str(&sessions.csrf(&back)).unwrap());
        assert!(sessions.check_csrf(&back, &h).is_ok());
        let other = Sessions::new(None, false).unwrap();
        assert!(other.check_csrf(&back, &h).is_err(), "another key, another token");
    }
}
