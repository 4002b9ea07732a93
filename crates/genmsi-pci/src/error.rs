//! How the errors of this crate meet the core's.
//!
//! Each module has its own error enum carrying the bad value ([`MsiError`](crate::MsiError),
//! [`MsixError`](crate::MsixError), [`ImsError`](crate::ImsError), ...). A store's
//! [`MsgStore`](genmsi::MsgStore) methods must return the core's [`genmsi::Error`], whose
//! `Store` variant carries only a static reason; so each store also keeps the full error of
//! its last refusal (`last_error()`), for reports and tests.

/// A module error that can be reported through the core's `Error::Store { reason }`.
pub(crate) trait Reason: Copy {
    /// A one-line static description of the kind of error.
    fn reason(&self) -> &'static str;
}

/// Records `e` as the store's last error and turns it into the core's error for `index`.
pub(crate) fn to_core<E: Reason>(last: &mut Option<E>, index: u32, e: E) -> genmsi::Error {
    *last = Some(e);
    genmsi::Error::Store {
        index,
        reason: e.reason(),
    }
}
