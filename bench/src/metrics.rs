//! Reads a server's Prometheus/OpenMetrics text from wsedge's admin
//! `/metrics` (plain HTTP on loopback), so that a scenario can report what
//! the server counted over its window: compression input and output bytes,
//! bytes written, messages sent.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use anyhow::Context as _;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Every sample, keyed by its series (`name{labels}` as written).
pub type Samples = BTreeMap<String, f64>;

/// `GET /metrics` with `Connection: close`, parsed.
pub async fn scrape(addr: SocketAddr) -> anyhow::Result<Samples> {
    anyhow::ensure!(
        addr.ip().is_loopback(),
        "{addr}: only loopback metrics are read"
    );
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream
            .write_all(
                format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .context("metrics scrape timed out")?
        .with_context(|| format!("reading http://{addr}/metrics"))?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("metrics answer without a header end")?;
    anyhow::ensure!(
        head.starts_with("HTTP/1.1 200"),
        "metrics answered {}",
        head.lines().next().unwrap_or_default()
    );
    Ok(parse(body))
}

/// Parses `series value` lines, skipping comments.
pub fn parse(body: &str) -> Samples {
    body.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The sum of every series of metric `name`, whatever its labels.
pub fn sum(samples: &Samples, name: &str) -> f64 {
    samples
        .iter()
        .filter(|(series, _)| {
            series
                .strip_prefix(name)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('{'))
        })
        .map(|(_, value)| value)
        .sum()
}

/// `after - before` for one series (0 when missing).
pub fn delta(before: &Samples, after: &Samples, series: &str) -> f64 {
    let get = |samples: &Samples| samples.get(series).copied().unwrap_or(0.0);
    get(after) - get(before)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_openmetrics_samples() {
        let body = "# HELP wsedge_compressions Outbound compressions.\n# TYPE wsedge_compressions counter\nwsedge_compressions_total 12\nwsedge_messages_sent_total{channel_kind=\"echo\"} 40\n# EOF\n";
        let samples = parse(body);
        assert_eq!(samples["wsedge_compressions_total"], 12.0);
        assert_eq!(
            samples["wsedge_messages_sent_total{channel_kind=\"echo\"}"],
            40.0
        );
        assert_eq!(samples.len(), 2);
        let mut later = samples.clone();
        later.insert("wsedge_compressions_total".to_owned(), 20.0);
        assert_eq!(delta(&samples, &later, "wsedge_compressions_total"), 8.0);
        assert_eq!(delta(&samples, &later, "missing"), 0.0);
    }

    #[test]
    fn sums_a_metric_over_its_labels() {
        let samples = parse(
            "wsedge_disconnects_total{code=\"1000\",initiator=\"client\"} 3\nwsedge_disconnects_total{code=\"1006\",initiator=\"client\"} 4\nwsedge_disconnects_total_other 100\n",
        );
        assert_eq!(sum(&samples, "wsedge_disconnects_total"), 7.0);
        assert_eq!(sum(&samples, "wsedge_missing_total"), 0.0);
    }
}
