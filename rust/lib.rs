//! batchfiles native core: pure Rust modules, plus a thin PyO3 layer behind the `python` feature.

pub mod bulk;
pub mod checksum;
pub mod chunk;
pub mod fileid;
pub mod naming;
pub mod track;

#[cfg(test)]
mod testutil;

#[cfg(feature = "python")]
mod py;
