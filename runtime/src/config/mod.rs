//! Configuration: options from code, environment and flags ([`options`]) and the plugins they
//! name ([`plugins`]). Only the service (and tools that build their own plugins) read it.

pub mod options;
pub mod plugins;
