//! Two real `nestwork run` processes, each in its own network namespace
//! made by this test and joined by a veth pair, find each other by mDNS
//! alone (no address given to either) and then sync a group after
//! `group join`. Nothing multicasts on the host's own interfaces: mDNS runs
//! only inside the two namespaces.
//!
//! Where namespaces cannot be made (not root, no `ip`), the test prints why
//! and returns.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

struct Namespaces {
    names: [String; 2],
}

impl Namespaces {
    /// nsA(10.231.7.1) <-veth-> nsB(10.231.7.2)
    fn create() -> Result<Namespaces, String> {
        let tag = std::process::id();
        let names = [format!("nwA{tag}"), format!("nwB{tag}")];
        let ns = Namespaces {
            names: names.clone(),
        };
        let (va, vb) = (format!("nwa{tag}"), format!("nwb{tag}"));
        let steps: Vec<Vec<String>> = vec![
            vec!["netns".into(), "add".into(), names[0].clone()],
            vec!["netns".into(), "add".into(), names[1].clone()],
            vec![
                "link".into(),
                "add".into(),
                va.clone(),
                "type".into(),
                "veth".into(),
                "peer".into(),
                "name".into(),
                vb.clone(),
            ],
            vec![
                "link".into(),
                "set".into(),
                va.clone(),
                "netns".into(),
                names[0].clone(),
            ],
            vec![
                "link".into(),
                "set".into(),
                vb.clone(),
                "netns".into(),
                names[1].clone(),
            ],
        ];
        for step in steps {
            run_ip(&step)?;
        }
        for (name, dev, addr) in [
            (&names[0], &va, "10.231.7.1/24"),
            (&names[1], &vb, "10.231.7.2/24"),
        ] {
            for step in [
                vec!["addr", "add", addr, "dev", dev],
                vec!["link", "set", dev, "up"],
                vec!["link", "set", "lo", "up"],
                vec!["route", "add", "224.0.0.0/4", "dev", dev],
            ] {
                let mut full = vec!["-n", name.as_str()];
                full.extend(step);
                run_ip(&full.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
            }
        }
        Ok(ns)
    }

    fn exec(&self, i: usize) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.names[i]]);
        c
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn run_ip(args: &[String]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

struct Node<'a> {
    ns: &'a Namespaces,
    i: usize,
    dir: PathBuf,
    child: Child,
}

impl<'a> Node<'a> {
    fn start(ns: &'a Namespaces, i: usize, dir: &Path, ip: &str) -> Node<'a> {
        let child = ns
            .exec(i)
            .arg(common::bin())
            .arg("--data-dir")
            .arg(dir)
            .args(["run", "--listen", &format!("/ip4/{ip}/tcp/0")])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn node");
        let node = Node {
            ns,
            i,
            dir: dir.to_path_buf(),
            child,
        };
        common::wait_for("the node's API", Duration::from_secs(30), || {
            node.cli(&["status"]).status.success()
        });
        node
    }

    fn cli(&self, args: &[&str]) -> Output {
        self.ns
            .exec(self.i)
            .arg(common::bin())
            .arg("--data-dir")
            .arg(&self.dir)
            .args(args)
            .output()
            .expect("run cli")
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let out = self.cli(&full);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("json")
    }
}

impl Drop for Node<'_> {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn two_processes_in_separate_namespaces_find_each_other_by_mdns_and_sync_a_group() {
    let ns = match Namespaces::create() {
        Ok(ns) => ns,
        Err(why) => {
            eprintln!("SKIPPED mDNS namespace test: cannot create network namespaces here ({why})");
            return;
        }
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = Node::start(&ns, 0, &tmp.path().join("a"), "10.231.7.1");
    let b = Node::start(&ns, 1, &tmp.path().join("b"), "10.231.7.2");
    let b_id = b.json(&["id"])["member"].as_str().expect("id").to_string();

    // Nobody told either node about the other: mDNS alone.
    common::wait_for("A to find B by mDNS", Duration::from_secs(30), || {
        a.json(&["peers"]).as_array().is_some_and(|peers| {
            peers
                .iter()
                .any(|p| p["peer"] == b_id.as_str() && p["lan"] == true)
        })
    });

    a.json(&["group", "create", "Field camp"]);
    let ticket = a.json(&["group", "invite", "Field camp", "--expires", "10m"])["ticket"]
        .as_str()
        .expect("ticket")
        .to_string();
    let joined = b.json(&["group", "join", &ticket]);
    assert_eq!(joined["members"].as_array().map(Vec::len), Some(2));
    common::wait_for("A to see B on the roll", Duration::from_secs(30), || {
        a.json(&["group", "show", "Field camp"])["members"]
            .as_array()
            .map(Vec::len)
            == Some(2)
    });
    b.json(&[
        "group",
        "describe",
        "Field camp",
        "Water at the north spring",
    ]);
    common::wait_for("B's change to reach A", Duration::from_secs(30), || {
        a.json(&["group", "show", "Field camp"])["description"] == "Water at the north spring"
    });
}
