//! trun: a GitHub Actions-style YAML workflow runner and build tool.
//!
//! Data flows one way: [`workflow`] (parse into typed structs with spans) →
//! [`validate`] → [`template`] (expressions) → [`plan`] (DAG, matrix legs,
//! up-to-date decisions) → [`exec`] (runs steps, emits [`event::Event`]s) →
//! [`report`] (renders events). [`state`] is the one place that persists.

pub mod actions;
pub mod cache;
pub mod cli;
pub mod composite;
pub mod diag;
pub mod docker;
pub mod duration;
pub mod event;
pub mod exec;
pub mod explain;
pub mod fanout;
pub mod fsutil;
pub mod git_source;
pub mod github;
pub mod grade;
pub mod graph;
pub mod history;
pub mod lock;
pub mod plan;
pub mod report;
pub mod reusable;
pub mod rubric;
pub mod secrets;
pub mod server;
pub mod session;
pub mod shell;
pub mod signals;
pub mod size;
pub mod spanned;
pub mod state;
pub mod template;
pub mod uptodate;
pub mod uptodate_hooks;
pub mod validate;
pub mod watch;
pub mod worker;
pub mod workflow;
