//! Sigstore (cosign) signatures carried by the real clients: skopeo stores one as the
//! `sha256-<hex>.sig` tag when it pushes an image, podman and skopeo fetch it back on a pull.
//!
//! Debian builds skopeo 1.9.3 and podman 4.3.1 with sigstore signing and verifying cut out
//! ("Debian-local change: sigstore disabled"), but with attachments kept: skopeo still copies
//! signatures to and from `sha256-<hex>.sig` tags, and podman still fetches them for a policy.
//! So the signature itself is made here as cosign makes one (openssl signs the simple-signing
//! payload with an ECDSA P-256 key), handed to skopeo in its `dir:` layout, and skopeo writes
//! the attachment to the registry in its own shape.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

use super::run;

pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// What podman answers, under a policy requiring a signature, for an image with none.
pub const NO_SIGNATURE: &str = "A signature was required, but no signature exists";
/// What Debian's podman answers once it has a signature to verify.
pub const DEBIAN_SIGSTORE_DISABLED: &str = "Debian-local change: sigstore disabled";

/// An ECDSA P-256 key pair (openssl), the public key as `policy.json`'s `keyPath` reads it.
pub struct SigningKey {
    pub dir: tempfile::TempDir,
    pub private_key: PathBuf,
    pub public_key: PathBuf,
}

impl SigningKey {
    pub fn generate() -> SigningKey {
        let dir = tempfile::tempdir().unwrap();
        let private_key = dir.path().join("key.pem");
        let public_key = dir.path().join("pub.pem");
        run(Command::new("openssl").args(["ecparam", "-genkey", "-name", "prime256v1", "-noout", "-out"]).arg(&private_key));
        run(Command::new("openssl").args(["ec", "-pubout", "-in"]).arg(&private_key).arg("-out").arg(&public_key));
        SigningKey { dir, private_key, public_key }
    }

    /// cosign's simple-signing payload for `docker_reference` (`host/name:tag`) at `digest`,
    /// and its signature (ASN.1 DER, base64) as the `dev.cosignproject.cosign/signature`
    /// annotation carries it.
    pub fn sign(&self, docker_reference: &str, digest: &str) -> (Vec<u8>, String) {
        let payload = serde_json::to_vec(&json!({
            "critical": {
                "identity": {"docker-reference": docker_reference},
                "image": {"docker-manifest-digest": digest},
                "type": "cosign container image signature",
            },
            "optional": {"creator": "pulpish tests"},
        }))
        .unwrap();
        let payload_file = self.dir.path().join("payload");
        std::fs::write(&payload_file, &payload).unwrap();
        let out = Command::new("openssl").args(["dgst", "-sha256", "-sign"]).arg(&self.private_key).arg(&payload_file).output().unwrap();
        assert!(out.status.success(), "openssl dgst -sign: {}", String::from_utf8_lossy(&out.stderr));
        (payload, B64.encode(out.stdout))
    }

    /// Whether `signature` (base64) is this key's signature of `payload` (openssl's verdict).
    pub fn verifies(&self, payload: &[u8], signature: &str) -> bool {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("payload"), payload).unwrap();
        std::fs::write(dir.path().join("sig"), B64.decode(signature).unwrap()).unwrap();
        Command::new("openssl")
            .args(["dgst", "-sha256", "-verify"])
            .arg(&self.public_key)
            .arg("-signature")
            .arg(dir.path().join("sig"))
            .arg(dir.path().join("payload"))
            .output()
            .unwrap()
            .status
            .success()
    }

    /// Pushes `source` (a skopeo image reference) to `docker://{dest}` signed for `dest`, with
    /// skopeo storing the signature as the `sha256-<hex>.sig` tag; returns the manifest digest.
    pub fn push_signed(&self, source: &str, dest: &str) -> String {
        let image = tempfile::tempdir().unwrap();
        run(Command::new("skopeo").args(["copy", "--quiet"]).arg(source).arg(format!("dir:{}", image.path().display())));
        let digest = run(Command::new("skopeo").arg("manifest-digest").arg(image.path().join("manifest.json"))).trim().to_string();
        let (payload, signature) = self.sign(dest, &digest);
        std::fs::write(image.path().join("signature-1"), dir_signature(&payload, &signature)).unwrap();
        let registries_d = registries_d(image.path());
        run(Command::new("skopeo")
            .arg("--registries.d")
            .arg(&registries_d)
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("dir:{}", image.path().display()))
            .arg(format!("docker://{dest}")));
        digest
    }
}

/// A sigstore signature as c/image keeps it in a `dir:` image (`signature-N`).
pub fn dir_signature(payload: &[u8], signature: &str) -> Vec<u8> {
    let body = json!({"mimeType": SIMPLE_SIGNING, "payload": B64.encode(payload), "annotations": {SIGNATURE_ANNOTATION: signature}});
    let mut out = b"\0sigstore-json\n".to_vec();
    out.extend(serde_json::to_vec(&body).unwrap());
    out
}

pub fn base64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// The cosign tag of the signatures of `digest` (`sha256:<hex>` → `sha256-<hex>.sig`).
pub fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replace(':', "-"))
}

/// A registries.d directory (in `parent`) telling skopeo and podman to write and read sigstore
/// signatures as attachments on every registry.
pub fn registries_d(parent: &Path) -> PathBuf {
    let dir = parent.join("registries.d");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("sigstore.yaml"), "default-docker:\n  use-sigstore-attachments: true\n").unwrap();
    dir
}

/// A `policy.json` rejecting everything but images under `scope` (`host:port/path`) carrying a
/// signature by `public_key` for the same name under `signed_prefix` (where it was signed).
pub fn policy(public_key: &Path, scope: &str, signed_prefix: &str) -> Value {
    json!({
        "default": [{"type": "reject"}],
        "transports": {"docker": {scope: [{
            "type": "sigstoreSigned",
            "keyPath": public_key,
            "signedIdentity": {"type": "remapIdentity", "prefix": scope, "signedPrefix": signed_prefix},
        }]}},
    })
}

/// podman as root with its own storage, policy and registries.d (podman has no flag for the
/// latter: it reads `$HOME/.config/containers/registries.d`).
pub struct Podman {
    pub home: tempfile::TempDir,
    policy: PathBuf,
}

impl Podman {
    pub fn new(policy: &Value) -> Podman {
        let home = tempfile::tempdir().unwrap();
        registries_d(&home.path().join(".config/containers"));
        let policy_file = home.path().join("policy.json");
        std::fs::write(&policy_file, serde_json::to_vec(policy).unwrap()).unwrap();
        Podman { home, policy: policy_file }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("podman");
        cmd.env("HOME", self.home.path())
            .arg("--root")
            .arg(self.home.path().join("root"))
            .arg("--runroot")
            .arg(self.home.path().join("run"))
            .args(["--storage-driver", "vfs"]);
        cmd
    }

    /// `podman pull` under the policy: Ok(stdout) or Err(stderr).
    pub fn pull(&self, reference: &str) -> Result<String, String> {
        let out = self.command().args(["pull", "--quiet", "--tls-verify=false", "--signature-policy"]).arg(&self.policy).arg(reference).output().unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// The manifest digest podman recorded for a pulled image.
    pub fn digest(&self, reference: &str) -> String {
        run(self.command().args(["image", "inspect", "--format", "{{.Digest}}"]).arg(reference)).trim().to_string()
    }
}

/// A signed pull's outcome: podman found the signature and accepted it, or (Debian's build)
/// found it and stopped at the verification Debian cut out. Never "no signature".
pub fn assert_signature_found(outcome: &Result<String, String>) {
    match outcome {
        Ok(_) => {}
        Err(e) => assert!(e.contains(DEBIAN_SIGSTORE_DISABLED), "podman did not find the signature: {e}"),
    }
}
