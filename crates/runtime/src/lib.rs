//! wedge-runtime: the engine, AOT cache, limits and execution statistics shared by every wedge command.
//!
//! A program goes [`load::Source::read`] → [`load::Source::load`] (through the
//! [`cache`]) → [`command::run`], which applies the [`limits`] and reports an
//! [`outcome::Outcome`] with [`stats::Stats`].

pub mod artifact;
pub mod cache;
pub mod command;
pub mod cpu;
pub mod dirs;
pub mod engine;
pub mod generation;
pub mod limits;
pub mod load;
pub mod outcome;
pub mod stats;
pub mod ticker;
pub mod units;
