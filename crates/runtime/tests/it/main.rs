//! Process supervisor tests with real child processes.

mod process;
