//! TLS for ferric's own servers: the reloadable certificate ([`ReloadingCert`], shared with the
//! agent from `ferric_types::tls`) and how a server's settings name one.

use std::path::Path;
use std::sync::Arc;

pub use ferric_types::tls::{ReloadingCert, TlsError};

/// A server's optional certificate/key pair from its settings: `None` when neither is set, an
/// error when only one is.
pub fn from_settings(
    what: &'static str,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Option<Arc<ReloadingCert>>, TlsError> {
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(c), Some(k)) => ReloadingCert::load(c, k).map(Some),
        _ => Err(TlsError::Half { what }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_a_pair_is_an_error() {
        assert!(from_settings("[api]", None, None).unwrap().is_none());
        assert!(matches!(from_settings("[api]", Some(Path::new("/x")), None), Err(TlsError::Half { .. })));
    }
}
