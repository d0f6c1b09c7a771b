//! Seeded fault runs (placeholder until the runner lands).
fn main() {}
