//! Preopened directories as given on the command line: `HOST[::GUEST][:ro]`.

use std::path::PathBuf;
use std::str::FromStr;

/// A host directory made visible to the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirMount {
    pub host: PathBuf,
    pub guest: String,
    pub read_only: bool,
}

impl FromStr for DirMount {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (rest, read_only) = match s.strip_suffix(":ro") {
            Some(rest) => (rest, true),
            None => (s, false),
        };
        let (host, guest) = match rest.split_once("::") {
            Some((h, g)) => (h, g),
            None => (rest, rest),
        };
        if host.is_empty() || guest.is_empty() {
            return Err(format!(
                "invalid directory `{s}`: expected HOST[::GUEST][:ro], e.g. `./data::/data:ro`"
            ));
        }
        Ok(DirMount {
            host: PathBuf::from(host),
            guest: guest.to_string(),
            read_only,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let d: DirMount = "data".parse().unwrap();
        assert_eq!(
            (d.host.to_str().unwrap(), d.guest.as_str(), d.read_only),
            ("data", "data", false)
        );
        let d: DirMount = "./data::/srv:ro".parse().unwrap();
        assert_eq!(
            (d.host.to_str().unwrap(), d.guest.as_str(), d.read_only),
            ("./data", "/srv", true)
        );
        let d: DirMount = "/tmp::/".parse().unwrap();
        assert_eq!(
            (d.host.to_str().unwrap(), d.guest.as_str(), d.read_only),
            ("/tmp", "/", false)
        );
        assert!("::/x".parse::<DirMount>().is_err());
        assert!("a::".parse::<DirMount>().is_err());
    }
}
