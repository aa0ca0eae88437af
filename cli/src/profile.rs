//! `~/.config/pulpish/cli.toml`: a saved server and credentials, written by `pulpish config create`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Profile {
    pub server: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    #[serde(default)]
    default: Profile,
}

pub fn path() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("pulpish").join("cli.toml")
}

pub fn load() -> Result<Profile, String> {
    let p = path();
    match std::fs::read_to_string(&p) {
        Ok(text) => toml::from_str::<File>(&text).map(|f| f.default).map_err(|e| format!("{}: {e}", p.display())),
        Err(_) => Ok(Profile::default()),
    }
}

pub fn save(profile: &Profile) -> Result<PathBuf, String> {
    let p = path();
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let text = toml::to_string(&File { default: profile.clone() }).map_err(|e| e.to_string())?;
    std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600));
    }
    Ok(p)
}
