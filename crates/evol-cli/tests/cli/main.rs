//! The `evol` binary end to end: one test binary (one link of the whole
//! dependency tree), a module per command family. What only a process can
//! show lives here: exit codes, signals, kill and resume, pipes, real
//! servers and clients. Pure logic is tested in its crate.

mod util;

mod batch;
mod dedup;
mod embedded;
mod eval;
mod fleet;
mod formats;
mod kubernetes;
mod operators;
mod report;
mod run;
mod safety;
mod score;
mod select;
mod serve;
mod slurm;
mod store;
mod upgrade;
