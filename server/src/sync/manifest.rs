//! Reading a manifest's references with oci-spec: config and layers of an image manifest,
//! the listed manifests (with platform) of a list or index.

use oci_spec::image::{ImageIndex, ImageManifest};

use crate::upstream::is_list;

#[derive(Debug, Clone)]
pub struct BlobRef {
    pub digest: String,
    pub size: i64,
}

#[derive(Debug, Clone)]
pub struct ListedRef {
    pub digest: String,
    pub architecture: Option<String>,
    pub os: Option<String>,
}

#[derive(Debug, Clone)]
pub enum References {
    Image { config: BlobRef, layers: Vec<BlobRef> },
    List(Vec<ListedRef>),
}

pub fn references(media_type: &str, bytes: &[u8]) -> Result<References, String> {
    if is_list(media_type) {
        let index: ImageIndex = serde_json::from_slice(bytes).map_err(|e| format!("unreadable manifest list: {e}"))?;
        Ok(References::List(
            index
                .manifests()
                .iter()
                .map(|d| ListedRef {
                    digest: d.digest().to_string(),
                    architecture: d.platform().as_ref().map(|p| p.architecture().to_string()),
                    os: d.platform().as_ref().map(|p| p.os().to_string()),
                })
                .collect(),
        ))
    } else {
        let m: ImageManifest = serde_json::from_slice(bytes).map_err(|e| format!("unreadable image manifest: {e}"))?;
        let blob = |d: &oci_spec::image::Descriptor| {
            let size = i64::try_from(d.size()).map_err(|_| format!("blob {} declares an impossible size of {} bytes", d.digest(), d.size()))?;
            Ok::<_, String>(BlobRef { digest: d.digest().to_string(), size })
        };
        Ok(References::Image { config: blob(m.config())?, layers: m.layers().iter().map(blob).collect::<Result<_, _>>()? })
    }
}
