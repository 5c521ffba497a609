//! The errors of a run: the first few kept for the report, the rest
//! counted.

/// Keeps the first errors of a run, and counts the rest.
#[derive(Debug, Default)]
pub(crate) struct Errors {
    list: std::sync::Mutex<(Vec<String>, u64)>,
}

impl Errors {
    /// The most distinct error lines kept.
    const KEEP: usize = 10;

    /// Records one error.
    pub(crate) fn push(&self, e: String) {
        // Held for a push, never across an await.
        let mut g = self.list.lock().unwrap_or_else(|p| p.into_inner());
        if g.0.len() < Self::KEEP && !g.0.contains(&e) {
            g.0.push(e);
        } else {
            g.1 += 1;
        }
    }

    /// The errors kept, and a line for those that were not.
    pub(crate) fn take(&self) -> Vec<String> {
        let mut g = self.list.lock().unwrap_or_else(|p| p.into_inner());
        let mut v = std::mem::take(&mut g.0);
        if g.1 > 0 {
            v.push(format!("... and {} more (or repeated)", g.1));
        }
        v
    }
}
