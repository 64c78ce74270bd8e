//! In-memory job store and queue, and their conformance suites.
