//! HTTP basic authentication against bcrypt hashes (`basic_auth_users` of
//! the web config file). A bcrypt costs tens of milliseconds by design, so
//! credentials once verified are remembered (as a salted SHA-1, never the
//! password; at most [`VERIFIED_CACHE`] of them) and a scrape every few
//! seconds costs a hash lookup. Failures are not remembered, so they cannot
//! push good credentials out; at most [`HASHING_AT_ONCE`] bcrypts run at
//! once, off the runtime's thread, so a flood of wrong passwords costs at
//! most that many cores. An unknown user is hashed too, so the time of a
//! refusal does not tell which users exist.

use axum::http::HeaderValue;
use base64::Engine as _;
use sha1::{Digest, Sha1};
use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;

/// Verified credentials remembered at most; beyond, one is forgotten.
pub const VERIFIED_CACHE: usize = 100;

/// bcrypt verifications running at once at most.
pub const HASHING_AT_ONCE: usize = 2;

/// The users of `basic_auth_users` and the credentials verified so far.
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    verified: Mutex<HashSet<[u8; 20]>>,
    salt: [u8; 16],
    hashing: tokio::sync::Semaphore,
}

impl BasicAuth {
    /// `Err` names the first user whose hash is not a bcrypt hash.
    pub fn new(users: BTreeMap<String, String>) -> Result<BasicAuth, String> {
        for (user, hash) in &users {
            if hash.parse::<bcrypt::HashParts>().is_err() {
                return Err(user.clone());
            }
        }
        let random = std::collections::hash_map::RandomState::new();
        let half = |n: u8| {
            let mut h = random.build_hasher();
            h.write_u8(n);
            h.finish().to_le_bytes()
        };
        let mut salt = [0; 16];
        salt[..8].copy_from_slice(&half(0));
        salt[8..].copy_from_slice(&half(1));
        Ok(BasicAuth {
            users,
            verified: Mutex::new(HashSet::new()),
            salt,
            hashing: tokio::sync::Semaphore::new(HASHING_AT_ONCE),
        })
    }

    pub fn users(&self) -> Vec<&str> {
        self.users.keys().map(String::as_str).collect()
    }

    /// Whether an `Authorization` header names a user with its password.
    pub async fn allows(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some((user, password)) = authorization.and_then(credentials) else {
            return false;
        };
        let key = self.key(&user, &password);
        if self.lock().contains(&key) {
            return true;
        }
        let known = self.users.get(&user);
        // An unknown user is checked against some user's hash (and refused),
        // so it takes as long as a wrong password.
        let Some(hash) = known.or_else(|| self.users.values().next()).cloned() else {
            return false;
        };
        let Ok(_permit) = self.hashing.acquire().await else {
            return false;
        };
        let matched = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .is_ok_and(|r| r.unwrap_or(false));
        let ok = matched && known.is_some();
        if ok {
            self.remember(key);
        }
        ok
    }

    fn key(&self, user: &str, password: &str) -> [u8; 20] {
        let mut h = Sha1::new();
        h.update(self.salt);
        h.update(user.as_bytes());
        h.update([0]);
        h.update(password.as_bytes());
        h.finalize().into()
    }

    fn remember(&self, key: [u8; 20]) {
        let mut verified = self.lock();
        if verified.len() >= VERIFIED_CACHE {
            if let Some(old) = verified.iter().next().copied() {
                verified.remove(&old);
            }
        }
        verified.insert(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 20]>> {
        self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// User and password of `Basic base64(user:password)`.
fn credentials(header: &HeaderValue) -> Option<(String, String)> {
    let text = header.to_str().ok()?;
    let (scheme, encoded) = text.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user_password: &str) -> HeaderValue {
        let b64 = base64::engine::general_purpose::STANDARD.encode(user_password);
        HeaderValue::from_str(&format!("Basic {b64}")).unwrap()
    }

    fn auth() -> BasicAuth {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let other = bcrypt::hash("other", 4).unwrap();
        BasicAuth::new(BTreeMap::from([
            ("prometheus".to_string(), hash),
            ("grafana".to_string(), other),
        ]))
        .unwrap()
    }

    fn allows(a: &BasicAuth, h: Option<&HeaderValue>) -> bool {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(a.allows(h))
    }

    #[test]
    fn only_a_user_with_its_password_gets_in() {
        let a = auth();
        assert!(allows(&a, Some(&header("prometheus:s3cret"))));
        assert!(allows(&a, Some(&header("grafana:other"))));
        for bad in [
            "prometheus:wrong",
            "prometheus:other",
            "nobody:s3cret",
            "prometheus",
            ":s3cret",
        ] {
            assert!(!allows(&a, Some(&header(bad))), "{bad}");
        }
        assert!(!allows(&a, None));
        for raw in ["Bearer abc", "Basic !!!", "Basic", ""] {
            assert!(!allows(&a, Some(&HeaderValue::from_static(raw))), "{raw}");
        }
        // Only the two successes are remembered.
        assert_eq!(a.lock().len(), 2);
    }

    #[test]
    fn remembered_credentials_skip_the_hash_and_stay_bounded() {
        let a = auth();
        assert!(allows(&a, Some(&header("prometheus:s3cret"))));
        // Take every hashing permit: a remembered credential still passes,
        // a new one would have to wait.
        let _all = a.hashing.try_acquire_many(HASHING_AT_ONCE as u32).unwrap();
        assert!(allows(&a, Some(&header("prometheus:s3cret"))));
        for i in 0..VERIFIED_CACHE as u32 * 3 {
            a.remember(a.key("u", &i.to_string()));
        }
        assert_eq!(a.lock().len(), VERIFIED_CACHE);
    }

    #[test]
    fn a_hash_that_is_not_bcrypt_is_refused() {
        let users = BTreeMap::from([("admin".to_string(), "plaintext".to_string())]);
        assert_eq!(BasicAuth::new(users).err().as_deref(), Some("admin"));
    }

    #[test]
    fn the_scheme_is_case_insensitive() {
        let b64 = base64::engine::general_purpose::STANDARD.encode("a:b:c");
        let h = HeaderValue::from_str(&format!("basic {b64}")).unwrap();
        assert_eq!(credentials(&h), Some(("a".into(), "b:c".into())));
    }
}
