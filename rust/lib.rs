//! batchfiles native core: pure Rust modules, plus a thin PyO3 layer behind the `python` feature.

pub mod naming;

#[cfg(feature = "python")]
mod py;
