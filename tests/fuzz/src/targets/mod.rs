//! The targets. Each module documents how it reads its input, so a seed
//! can be written by hand or by [`crate::seeds`].

pub mod app;
pub mod capture;
pub mod decode;
pub mod engine;
pub mod rules;
pub mod stream;

/// Whether `inner` lies within `outer` (both borrowed from one buffer).
pub(crate) fn within(outer: &[u8], inner: &[u8]) -> bool {
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    inner.is_empty() || (i >= o && i + inner.len() <= o + outer.len())
}
