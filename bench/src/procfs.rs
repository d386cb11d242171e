//! What the load generator reads about processes from /proc: resident memory,
//! open files and CPU time, of the server under test and of itself.

use std::{fs, time::Instant};

/// Clock ticks per second of /proc/PID/stat times (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// VmRSS of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// How many files (sockets, listeners, pipes...) a process has open: the
/// entries of /proc/PID/fd.
pub fn open_fds(pid: u32) -> Option<usize> {
    Some(fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// User plus system CPU time of a process, in seconds. `None` for ourselves
/// means `/proc/self`.
fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = pid.map_or_else(
        || "/proc/self/stat".to_owned(),
        |pid| format!("/proc/{pid}/stat"),
    );
    let stat = fs::read_to_string(path).ok()?;
    // The command name may contain spaces: fields are counted after its ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

/// Busy CPU time of the whole machine (every core), in seconds.
fn machine_busy_seconds() -> Option<f64> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    let fields: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: all but idle and iowait.
    let busy: f64 = fields
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    Some(busy / TICKS_PER_SECOND)
}

/// Percent of one core used over a window.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    pub server: Option<f64>,
    pub client: Option<f64>,
    /// Everything else on the machine (other processes, kernel threads): a
    /// benchmark that shares its cores with a build measures less.
    pub others: Option<f64>,
}

/// CPU use of the server, of the load generator and of everything else over
/// a window: if the generator is near 100% of its core while the server is
/// not, the run measured the generator. The server may be several processes
/// (the nodes of a cluster, their Redis): each is measured, and `server` is
/// their sum.
pub struct CpuWindow {
    servers: Vec<(u32, Option<f64>)>,
    /// Whether a server process was named that could not be measured.
    unmeasured: bool,
    started: Instant,
    client_start: Option<f64>,
    machine_start: Option<f64>,
}

impl CpuWindow {
    pub fn start(server: Option<u32>) -> Self {
        Self::start_all(&[server])
    }

    /// Measures every process of `servers` (`None`: one that cannot be
    /// measured, so that the sum is unknown).
    pub fn start_all(servers: &[Option<u32>]) -> Self {
        Self {
            servers: servers
                .iter()
                .flatten()
                .map(|&pid| (pid, cpu_seconds(Some(pid))))
                .collect(),
            unmeasured: servers.iter().any(Option::is_none),
            started: Instant::now(),
            client_start: cpu_seconds(None),
            machine_start: machine_busy_seconds(),
        }
    }

    pub fn finish(&self) -> CpuUse {
        self.finish_all().1
    }

    /// Each server process's percent of one core (in the order given to
    /// [`CpuWindow::start_all`], unmeasurable ones left out), and the
    /// window's totals.
    pub fn finish_all(&self) -> (Vec<Option<f64>>, CpuUse) {
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-9);
        let each: Vec<Option<f64>> = self
            .servers
            .iter()
            .map(|&(pid, start)| Some(cpu_seconds(Some(pid))? - start?))
            .collect();
        let server_seconds = (!self.unmeasured && !each.is_empty())
            .then(|| each.iter().copied().sum::<Option<f64>>())
            .flatten();
        let client_seconds = self
            .client_start
            .and_then(|start| cpu_seconds(None).map(|end| end - start));
        let machine_seconds = self
            .machine_start
            .and_then(|start| machine_busy_seconds().map(|end| end - start));
        let measured: f64 = each.iter().flatten().sum();
        let others = machine_seconds
            .map(|m| 100.0 * (m - measured - client_seconds.unwrap_or(0.0)).max(0.0) / elapsed);
        let pct = |seconds: f64| 100.0 * seconds / elapsed;
        let use_ = CpuUse {
            server: server_seconds.map(pct),
            client: client_seconds.map(pct),
            others,
        };
        (each.into_iter().map(|s| s.map(pct)).collect(), use_)
    }
}
