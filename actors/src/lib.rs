//! The actors of a taskmesh node, the task model and the task store.

pub mod store;
pub mod task;
