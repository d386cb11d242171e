//! Real `redis-server` processes for the cluster link's tests: a
//! standalone server, or a Redis Cluster of masters created with
//! `redis-cli --cluster create`, each on free ports of 127.0.0.1, in its
//! own temporary directory, killed on drop.
//!
//! Redis cannot listen on port 0, so a free port is found by binding and
//! releasing one, and a server that then fails to start (the port was
//! taken in between) is retried on another.

#![allow(dead_code)] // each test binary uses its own subset of the helpers

use std::{
    collections::HashMap,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// How long a server may take to start answering, or a cluster to agree.
const STARTUP: Duration = Duration::from_secs(20);

/// How often the start-up and state polls look again.
const POLL: Duration = Duration::from_millis(20);

/// Tries before giving up on finding free ports.
const PORT_TRIES: usize = 20;

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| !value.is_empty() && value != "false" && value != "0")
}

/// Whether `redis-server` and `redis-cli` are installed. If not: under CI a
/// failure, elsewhere a loud note and `false` (the test returns early).
pub fn installed() -> bool {
    let works = |program: &str| {
        Command::new(program)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    if works("redis-server") && works("redis-cli") {
        return true;
    }
    let message =
        "redis-server or redis-cli is not installed: run tests/peers/install-redis.sh (as root)";
    assert!(!in_ci(), "{message}");
    // Straight to the process's stderr: libtest would swallow `eprintln!`
    // of a passing test.
    let _ = writeln!(
        std::io::stderr(),
        "\n**********\n** NOTE: skipping this test: {message}\n**********"
    );
    false
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One redis-server process.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    /// The ports picked for `{free:NAME}` arguments, by name.
    ports: HashMap<String, u16>,
    args: Vec<String>,
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl RedisServer {
    /// A standalone server without persistence.
    pub fn standalone() -> Self {
        Self::start(&[], None)
    }

    /// A standalone server with `extra` arguments: `{port}` stands for its
    /// client port, `{free:NAME}` for another free port (see
    /// [`RedisServer::extra_port`]).
    pub fn with_args(extra: &[&str]) -> Self {
        let extra: Vec<String> = extra.iter().map(|arg| (*arg).to_owned()).collect();
        Self::start(&extra, None)
    }

    /// The port picked for `{free:NAME}`.
    pub fn extra_port(&self, name: &str) -> u16 {
        self.ports[name]
    }

    fn start(extra: &[String], dir: Option<&Path>) -> Self {
        let temp = match dir {
            Some(_) => None,
            None => Some(tempfile::tempdir().unwrap()),
        };
        let dir = dir.map_or_else(|| temp.as_ref().unwrap().path().to_owned(), Path::to_owned);
        for _ in 0..PORT_TRIES {
            let port = free_port();
            let mut args = vec![
                "--port".to_owned(),
                port.to_string(),
                "--bind".to_owned(),
                "127.0.0.1".to_owned(),
                "--save".to_owned(),
                String::new(),
                "--appendonly".to_owned(),
                "no".to_owned(),
                "--dir".to_owned(),
                dir.display().to_string(),
                "--logfile".to_owned(),
                dir.join(format!("redis-{port}.log")).display().to_string(),
            ];
            args.extend(
                extra
                    .iter()
                    .map(|arg| arg.replace("{port}", &port.to_string())),
            );
            let mut ports = HashMap::new();
            for arg in &mut args {
                if let Some(name) = arg
                    .strip_prefix("{free:")
                    .and_then(|rest| rest.strip_suffix('}'))
                {
                    let extra_port = *ports.entry(name.to_owned()).or_insert_with(free_port);
                    *arg = extra_port.to_string();
                }
            }
            let mut server = Self {
                child: None,
                port,
                ports,
                args,
                dir: dir.clone(),
                _temp: None,
            };
            if server.spawn() {
                server._temp = temp;
                return server;
            }
        }
        panic!("no free port for redis-server after {PORT_TRIES} tries");
    }

    /// Starts the process with the recorded arguments; false when it
    /// exited (its port was taken) instead of answering.
    fn spawn(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + STARTUP;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.as_mut().unwrap().try_wait() {
                self.child = None;
                return false;
            }
            if self.ping() {
                return true;
            }
            std::thread::sleep(POLL);
        }
        panic!(
            "redis-server on port {} did not answer within {STARTUP:?}",
            self.port
        );
    }

    fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        // A server with a password answers -NOAUTH: up all the same.
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && (&reply == b"+PONG\r\n" || reply.starts_with(b"-NOAUTH"))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("redis-server is running").id()
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same port with the same arguments (and, for a
    /// cluster node, the same cluster configuration file).
    pub fn restart(&mut self) {
        self.kill();
        assert!(
            self.spawn(),
            "redis-server could not restart on port {}",
            self.port
        );
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal}");
    }

    /// SIGSTOP: the process keeps its sockets but stops answering.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Runs `redis-cli` against this server and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success(), "redis-cli {args:?}: {output:?}");
        String::from_utf8(output.stdout).unwrap()
    }

    /// A numeric line of `redis-cli` output (an integer reply).
    pub fn cli_number(&self, args: &[&str]) -> i64 {
        let out = self.cli(args);
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("redis-cli {args:?} answered {out:?}"))
    }

    /// `calls` of a command in `INFO commandstats` (0 if never called).
    pub fn command_calls(&self, command: &str) -> u64 {
        let stats = self.cli(&["INFO", "commandstats"]);
        let prefix = format!("cmdstat_{command}:calls=");
        stats
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A paused server would not die of SIGKILL until continued.
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
        }
        self.kill();
    }
}

/// A Redis Cluster: masters, and replicas if asked for.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// `masters` masters, every slot assigned, agreeing that the cluster is
    /// ok. `cluster-require-full-coverage no`: a lost master takes only its
    /// own slots away, as a pub/sub deployment would configure it.
    pub fn start(masters: usize) -> Self {
        Self::with_replicas(masters, 0)
    }

    /// `masters` masters with `replicas` replicas each (`redis-cli` assigns
    /// them; the first `masters` nodes become the masters).
    pub fn with_replicas(masters: usize, replicas: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let extra: Vec<String> = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes-{port}.conf",
            "--cluster-port",
            "{free:cluster}",
            "--cluster-node-timeout",
            "1000",
            "--cluster-require-full-coverage",
            "no",
            // Replicas sync at once (the default waits 5 s to batch them),
            // and may take over however long their master was gone.
            "--repl-diskless-sync-delay",
            "0",
            "--cluster-replica-validity-factor",
            "0",
        ]
        .iter()
        .map(|arg| (*arg).to_owned())
        .collect();
        let nodes: Vec<RedisServer> = (0..masters * (1 + replicas))
            .map(|_| RedisServer::start(&extra, Some(dir.path())))
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        let output = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "redis-cli --cluster create: {output:?}"
        );
        let cluster = Self { nodes, _dir: dir };
        cluster.wait_ok();
        cluster
    }

    /// Waits until every running node reports `cluster_state:ok` and knows
    /// every slot, and every running replica is in sync with its master.
    pub fn wait_ok(&self) {
        let deadline = Instant::now() + STARTUP;
        loop {
            let ok = self
                .nodes
                .iter()
                .filter(|node| node.child.is_some())
                .all(|node| {
                    let info = node.cli(&["CLUSTER", "INFO"]);
                    let replication = node.cli(&["INFO", "replication"]);
                    info.contains("cluster_state:ok")
                        && info.contains("cluster_slots_ok:16384")
                        && (replication.contains("role:master")
                            || replication.contains("master_link_status:up"))
                });
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not become ok within {STARTUP:?}"
            );
            std::thread::sleep(POLL);
        }
    }

    pub fn url(&self) -> String {
        self.nodes[0].url()
    }

    /// The running node owning `key`'s slot.
    pub fn owner(&self, key: &str) -> usize {
        let running = |node: &&RedisServer| node.child.is_some();
        let any = self.nodes.iter().find(running).expect("a running node");
        let slot = any.cli_number(&["CLUSTER", "KEYSLOT", key]);
        let myself = |node: &RedisServer| {
            node.cli(&["CLUSTER", "NODES"])
                .lines()
                .find(|line| line.contains("myself"))
                .unwrap()
                .to_owned()
        };
        self.nodes
            .iter()
            .position(|node| {
                running(&node)
                    && myself(node).split_whitespace().skip(8).any(|range| {
                        let (start, end) = range.split_once('-').unwrap_or((range, range));
                        let (start, end): (i64, i64) =
                            (start.parse().unwrap(), end.parse().unwrap());
                        (start..=end).contains(&slot)
                    })
            })
            .expect("a node owns every slot")
    }
}
