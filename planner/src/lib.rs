//! Brook's planner: the catalog, semantic checks and planning onto DataFusion.
//!
//! Today it holds the mapping from ksqlDB's SQL types to Arrow's, which every later stage
//! (formats, operators, the catalog's schemas) shares.

pub mod aggregate;
pub mod catalog;
mod error;
pub mod expr;
pub mod format;
pub mod functions;
pub mod join;
pub mod limits;
pub mod pull;
pub mod query;
pub mod schema;
pub mod types;
pub mod udaf;

pub use error::PlanError;
