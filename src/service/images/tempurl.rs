//! Swift-style temporary URLs: `HMAC-SHA256(key, "METHOD\nEXPIRES\nPATH")` in hex as
//! `temp_url_sig`, with `temp_url_expires` in Unix seconds. The conductor mints one per deploy so
//! the agent can fetch the image without credentials.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Path prefix of temp-URL downloads (`{PREFIX}/{image_id}`).
pub const PREFIX: &str = "/swift/v1/images";

/// Why a temp URL is refused (all map to 401, as Swift answers).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TempUrlError {
    /// `temp_url_sig` or `temp_url_expires` absent.
    #[error("temp_url_sig and temp_url_expires are required")]
    Missing,
    /// Parameters not in the expected form.
    #[error("malformed temp URL parameters")]
    Malformed,
    /// The URL's time is over.
    #[error("temp URL has expired")]
    Expired,
    /// The signature does not match.
    #[error("temp URL signature is invalid")]
    Invalid,
}

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8], method: &str, expires: u64, path: &str) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m =
        <HmacSha256 as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    m.update(format!("{method}\n{expires}\n{path}").as_bytes());
    m
}

/// Hex signature for `method` on `path` until `expires`.
pub fn sign(key: &[u8], method: &str, expires: u64, path: &str) -> String {
    hex(&mac(key, method, expires, path).finalize().into_bytes())
}

/// The path and query of a temp URL for an image (append to the store's base URL).
pub fn image_path_and_query(key: &[u8], image_id: &str, expires: u64) -> String {
    let path = format!("{PREFIX}/{image_id}");
    let sig = sign(key, "GET", expires, &path);
    format!("{path}?temp_url_sig={sig}&temp_url_expires={expires}")
}

/// Checks a request for `path` against its `temp_url_sig`/`temp_url_expires`. HEAD is allowed
/// with a GET signature, as in Swift.
pub fn verify(
    key: &[u8],
    method: &str,
    path: &str,
    sig: Option<&str>,
    expires: Option<&str>,
    now_unix: u64,
) -> Result<(), TempUrlError> {
    let (Some(sig), Some(expires)) = (sig, expires) else {
        return Err(TempUrlError::Missing);
    };
    let expires: u64 = expires.parse().map_err(|_| TempUrlError::Malformed)?;
    let raw = unhex(sig).ok_or(TempUrlError::Malformed)?;
    if raw.len() != 32 {
        return Err(TempUrlError::Malformed);
    }
    if now_unix >= expires {
        return Err(TempUrlError::Expired);
    }
    let method = if method == "HEAD" { "GET" } else { method };
    mac(key, method, expires, path).verify_slice(&raw).map_err(|_| TempUrlError::Invalid)
}

pub use ferric_disk::hex;

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let key = b"secret";
        let path = format!("{PREFIX}/abc");
        let sig = sign(key, "GET", 1000, &path);
        assert_eq!(verify(key, "GET", &path, Some(&sig), Some("1000"), 999), Ok(()));
        assert_eq!(verify(key, "HEAD", &path, Some(&sig), Some("1000"), 999), Ok(()));
        assert_eq!(verify(key, "GET", &path, Some(&sig), Some("1000"), 1000), Err(TempUrlError::Expired));
        assert_eq!(verify(key, "GET", &path, Some(&sig), Some("1001"), 999), Err(TempUrlError::Invalid));
        assert_eq!(verify(key, "PUT", &path, Some(&sig), Some("1000"), 999), Err(TempUrlError::Invalid));
        assert_eq!(verify(b"other", "GET", &path, Some(&sig), Some("1000"), 999), Err(TempUrlError::Invalid));
        assert_eq!(verify(key, "GET", &path, Some("zz"), Some("1000"), 999), Err(TempUrlError::Malformed));
        assert_eq!(verify(key, "GET", &path, None, Some("1000"), 999), Err(TempUrlError::Missing));
    }
}
