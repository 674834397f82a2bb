//! What `GET /readyz` waits for besides the server accepting (and, in a cluster, its broker):
//! conditions other parts of the program own, each a flag its owner sets.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A condition `GET /readyz` requires, set by whoever knows (for example a database client,
/// on connecting and on losing the connection). Cheap to clone; every clone is the same flag.
///
/// ```
/// use surge::{Config, ReadyFlag};
///
/// let db = ReadyFlag::new(false);
/// let config = Config::builder()
///     .listen("127.0.0.1:0".parse().unwrap())
///     .ready_when("db", db.clone())
///     .build()
///     .unwrap();
/// // /readyz answers 503 ("not ready: db") until the database is there:
/// db.set(true);
/// assert!(config.readiness()[0].1.get());
/// ```
#[derive(Debug, Clone, Default)]
pub struct ReadyFlag(Arc<AtomicBool>);

impl ReadyFlag {
    /// A flag, set or not.
    pub fn new(ready: bool) -> Self {
        ReadyFlag(Arc::new(AtomicBool::new(ready)))
    }

    /// Sets whether the condition holds.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    /// Whether the condition holds.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}
