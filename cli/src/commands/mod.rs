//! One module per group of commands: each command's arguments and what it does.

pub mod deploy;
pub mod inspect;
pub mod score;
pub mod serving;
pub mod train;
