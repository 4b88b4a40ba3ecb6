//! `admin:` — the admin listener's address and who may use it.
//!
//! The admin listener can reload the config, so reaching it must not be
//! enough to use it. Bound to loopback only local users reach it, and a token
//! is optional; bound to anything else without a token, anyone on the network
//! could `POST /reload`. That is refused unless the file says so with
//! `insecure: true` (say, behind a firewall that already limits who connects).
//!
//! The token is read when the file is loaded, so `sluice -t` reports an
//! unreadable or empty token file, and the running process never reads the
//! file on a request.

use std::net::SocketAddr;

use serde_yaml::Value;

use super::model::{AdminSpec, AdminToken};
use super::node::{Errors, Node};

pub fn validate(node: &Node, errs: &mut Errors) -> Option<AdminSpec> {
    // Short form: `admin: 127.0.0.1:9901`.
    let (address_node, token_node, insecure) = match node.value {
        Value::String(_) => (node.clone(), None, false),
        _ => {
            let m = node.mapping(errs, &["address", "token_file", "insecure"])?;
            let Some(address) = node.field(m, "address") else {
                errs.push(node.key_path("address"), "required, e.g. 127.0.0.1:9901");
                return None;
            };
            let insecure = match node.field(m, "insecure") {
                Some(n) => n.bool(errs)?,
                None => false,
            };
            (address, node.field(m, "token_file"), insecure)
        }
    };
    let address = address_node.str(errs)?;
    let Ok(addr) = address.parse::<SocketAddr>() else {
        errs.push(
            address_node.path(),
            format!("`{address}` is not an address such as 127.0.0.1:9901"),
        );
        return None;
    };
    let token = match token_node {
        Some(n) => Some(read_token(&n, errs)?),
        None => None,
    };
    if token.is_none() && !addr.ip().is_loopback() && !insecure {
        errs.push(
            address_node.path(),
            format!(
                "`{address}` is reachable from other hosts, and without a token anyone who \
                 reaches it can reload the config: set `token_file`, bind to loopback \
                 (127.0.0.1), or say `insecure: true`"
            ),
        );
        return None;
    }
    Some(AdminSpec {
        address: address.to_string(),
        token,
    })
}

/// The token is the file's content without surrounding whitespace (a
/// trailing newline is what `echo secret > file` leaves).
fn read_token(node: &Node, errs: &mut Errors) -> Option<AdminToken> {
    let path = node.str(errs)?;
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => {
            errs.push(node.path(), format!("`{path}` is empty"));
            None
        }
        Ok(text) => Some(AdminToken(text.trim().to_string())),
        Err(e) => {
            errs.push(node.path(), format!("cannot read `{path}`: {e}"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::load;
    use crate::filters::Registry;

    const REST: &str = "listen: [127.0.0.1:8080]\nupstreams:\n  api:\n    backends: [127.0.0.1:9001]\nroutes:\n  - upstream: api\n";

    fn admin(yaml: &str) -> Result<Option<crate::config::AdminSpec>, Vec<String>> {
        load(&format!("{REST}{yaml}"), &Registry::builtin())
            .map(|l| l.gateway.admin)
            .map_err(|e| e.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn the_short_form_stays() {
        let a = admin("admin: 127.0.0.1:9901\n").unwrap().unwrap();
        assert_eq!(a.address, "127.0.0.1:9901");
        assert!(a.token.is_none());
    }

    #[test]
    fn the_token_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret\n").unwrap();
        let a = admin(&format!(
            "admin: {{ address: 0.0.0.0:9901, token_file: {} }}\n",
            file.display()
        ))
        .unwrap()
        .unwrap();
        assert_eq!(a.token.as_ref().map(|t| t.0.as_str()), Some("s3cret"));
        assert!(
            !format!("{a:?}").contains("s3cret"),
            "Debug shows the token"
        );
    }

    #[test]
    fn a_public_address_needs_a_token_or_insecure() {
        let errs = admin("admin: 0.0.0.0:9901\n").unwrap_err();
        assert!(errs[0].starts_with("admin: "), "{errs:?}");
        let errs = admin("admin: { address: '[::]:9901' }\n").unwrap_err();
        assert!(errs[0].starts_with("admin.address: "), "{errs:?}");
        assert!(admin("admin: { address: 0.0.0.0:9901, insecure: true }\n").is_ok());
        assert!(admin("admin: { address: '[::1]:9901' }\n").is_ok());
    }

    #[test]
    fn bad_token_files_are_reported_at_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, " \n").unwrap();
        let errs = admin(&format!(
            "admin: {{ address: 127.0.0.1:9901, token_file: {} }}\n",
            empty.display()
        ))
        .unwrap_err();
        assert!(errs[0].starts_with("admin.token_file: "), "{errs:?}");
        assert!(errs[0].contains("is empty"), "{errs:?}");
        let errs =
            admin("admin: { address: 127.0.0.1:9901, token_file: /nonexistent/t }\n").unwrap_err();
        assert!(errs[0].contains("cannot read"), "{errs:?}");
        let errs = admin("admin: { address: 127.0.0.1:9901, tokn_file: x }\n").unwrap_err();
        assert!(
            errs[0].starts_with("admin.tokn_file: unknown key"),
            "{errs:?}"
        );
    }
}
