//! A test value that counts how many of its kind are alive, shared by the
//! ring's unit tests and the hub's loom models.
//!
//! The counter is a plain std atomic even under loom: the models read it
//! only once every thread has joined.

use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};

/// The value `.0`, counted in `live` from creation or clone to drop.
#[derive(Debug)]
pub(super) struct Counted(pub(super) u64, Arc<AtomicIsize>);

impl Counted {
    /// Value `v`, counted in `live`.
    pub(super) fn new(v: u64, live: &Arc<AtomicIsize>) -> Self {
        live.fetch_add(1, Ordering::Relaxed);
        Counted(v, live.clone())
    }
}

impl Clone for Counted {
    fn clone(&self) -> Self {
        Counted::new(self.0, &self.1)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.1.fetch_sub(1, Ordering::Relaxed);
    }
}
