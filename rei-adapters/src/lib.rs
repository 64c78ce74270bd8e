//! Driven adapters of REI's ports: one module per technology. Today: the system clock and id generator.
//! Databases, queues and HTTP APIs arrive behind one cargo feature each.

pub mod system;
