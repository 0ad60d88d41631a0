//! Node configuration: embedded defaults, overridden by the TOML file, then
//! by environment variables, then by command-line flags (applied by the
//! CLI). The commented example is `config/nestwork.toml`.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// Everything a node can be configured with.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The local HTTP API.
    pub api: ApiConfig,
    /// The peer-to-peer network.
    pub network: nestwork_net::NetConfig,
}

/// The local HTTP API.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Port on 127.0.0.1; 0 lets the system choose (the chosen port is
    /// written to `api.json` in the data directory for client commands).
    pub port: u16,
}

/// A config that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {0}: {1}")]
    Read(String, std::io::Error),
    /// The file is not valid.
    #[error("config file {0} is not valid: {1}")]
    Parse(String, String),
    /// An environment variable is not valid.
    #[error("environment variable {0}={1:?} is not valid: {2}")]
    Env(&'static str, String, String),
}

impl Config {
    /// Defaults, then `file` if given (it must exist) or else `fallback` if
    /// it exists, then the environment.
    pub fn load(file: Option<&Path>, fallback: &Path) -> Result<Config, ConfigError> {
        let path = file.or(fallback.exists().then_some(fallback));
        let mut config = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| ConfigError::Read(p.display().to_string(), e))?;
                Config::from_toml(&text)
                    .map_err(|e| ConfigError::Parse(p.display().to_string(), e))?
            }
            None => Config::default(),
        };
        config.apply_env(|name| std::env::var(name).ok())?;
        Ok(config)
    }

    /// Parse TOML text.
    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Apply `NESTWORK_API_PORT`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        const PORT: &str = "NESTWORK_API_PORT";
        if let Some(v) = get(PORT) {
            self.api.port = v.parse().map_err(|e: std::num::ParseIntError| {
                ConfigError::Env(PORT, v.clone(), e.to_string())
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_parses_and_env_overrides_file() {
        let example = include_str!("../../../config/nestwork.toml");
        let mut config = Config::from_toml(example).expect("example parses");
        config
            .apply_env(|n| (n == "NESTWORK_API_PORT").then(|| "7001".to_string()))
            .expect("env");
        assert_eq!(config.api.port, 7001);
        assert_eq!(
            config.network,
            nestwork_net::NetConfig::default(),
            "the example shows the defaults"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        assert!(Config::from_toml("[api]\nprot = 1\n").is_err());
        assert!(Config::from_toml("[api]\nport = \"x\"\n").is_err());
        let mut c = Config::default();
        assert!(c.apply_env(|_| Some("abc".into())).is_err());
    }
}
