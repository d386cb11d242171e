//! Connect burst: `total` connections opened in waves of `wave`, every
//! connection of a wave started at the same instant (a reconnect storm),
//! each wave once the previous one is open; the connections stay open
//! until the end, then every one must echo.
//!
//! A listener whose accept queue (its listen backlog) is shorter than the
//! wave drops SYNs, and the client retransmits its SYN after a second: the
//! tail of the connect time shows it. Each connection's time is measured
//! from the moment its connect starts to the end of the upgrade (TCP
//! connect, TLS if any, HTTP upgrade); the TCP connect alone is reported
//! beside it.

use super::*;

/// A TCP connect this slow waited for a SYN retransmission (the first one
/// goes after about a second; nothing else on loopback takes that long).
const SYN_RETRANSMIT: Duration = Duration::from_millis(900);
/// Bound on one connection's set-up.
const CONNECT_LIMIT: Duration = Duration::from_secs(10);

/// Opens `total` connections on `/echo`, `wave` at a time.
pub async fn burst(ctx: &Context, total: usize, wave: usize) -> Record {
    let id = format!("burst {} c={total} wave={wave}", ctx.transport());
    let mut record = Record::new(&ctx.server, "burst", id, "p99_ms", false);
    record
        .param("connections", total)
        .param("wave", wave)
        .param("transport", ctx.transport());
    let open_hist = Rc::new(RefCell::new(histogram()));
    let tcp_hist = Rc::new(RefCell::new(histogram()));
    let errors = Rc::new(RefCell::new(Vec::new()));
    let mut conns: Vec<(usize, Conn)> = Vec::with_capacity(total);
    let mut slowest_wave = Duration::ZERO;
    let started = Instant::now();
    let cpu = CpuWindow::start(ctx.pid);
    let mut next = 0;
    while next < total {
        let size = wave.min(total - next);
        let wave_started = Instant::now();
        let tasks: Vec<JoinHandle<Option<Conn>>> = (0..size)
            .map(|_| {
                let (open_hist, tcp_hist, errors, target) = (
                    open_hist.clone(),
                    tcp_hist.clone(),
                    errors.clone(),
                    ctx.target.clone(),
                );
                tokio::task::spawn_local(async move {
                    let began = Instant::now();
                    match tokio::time::timeout(CONNECT_LIMIT, client::connect(&target, "/echo"))
                        .await
                    {
                        Ok(Ok(conn)) => {
                            let nanos = began.elapsed().as_nanos() as u64;
                            open_hist.borrow_mut().record(nanos.max(1)).ok();
                            let tcp = conn.tcp_connect.as_nanos() as u64;
                            tcp_hist.borrow_mut().record(tcp.max(1)).ok();
                            Some(conn)
                        }
                        Ok(Err(error)) => {
                            errors.borrow_mut().push(format!("{error:#}"));
                            None
                        }
                        Err(_) => {
                            errors
                                .borrow_mut()
                                .push(format!("connect timed out after {CONNECT_LIMIT:?}"));
                            None
                        }
                    }
                })
            })
            .collect();
        for (offset, task) in tasks.into_iter().enumerate() {
            if let Ok(Some(conn)) = task.await {
                conns.push((next + offset, conn));
            }
        }
        slowest_wave = slowest_wave.max(wave_started.elapsed());
        next += size;
    }
    let elapsed = started.elapsed();
    record.cpu(cpu.finish());
    let failures = errors.borrow().len();
    connect_notes(
        &mut record,
        total,
        conns.len(),
        failures,
        errors.borrow().first().cloned(),
    );
    record
        .metric("wall_ms", elapsed.as_secs_f64() * 1e3)
        .metric("slowest_wave_ms", slowest_wave.as_secs_f64() * 1e3)
        .metric("connect_per_s", conns.len() as f64 / elapsed.as_secs_f64());
    record.cpu_per_op("connect_per_s");
    latency_metrics(&mut record, &open_hist.borrow(), 1e6, "ms", &[0.5, 0.99]);
    {
        let tcp = tcp_hist.borrow();
        if !tcp.is_empty() {
            record
                .metric("tcp_p50_ms", tcp.value_at_quantile(0.5) as f64 / 1e6)
                .metric("tcp_p99_ms", tcp.value_at_quantile(0.99) as f64 / 1e6)
                .metric("tcp_max_ms", tcp.max() as f64 / 1e6);
            let retransmitted = tcp.count_between(SYN_RETRANSMIT.as_nanos() as u64, tcp.high());
            record.metric("syn_retransmits", retransmitted as f64);
            if retransmitted > 0 {
                record.notes.push(format!(
                    "{retransmitted} TCP connects took over {SYN_RETRANSMIT:?}: their first SYN was dropped"
                ));
            }
        }
    }
    let alive = echo_alive(&mut conns).await;
    record.metric("all_open", alive as f64);
    if alive < total {
        record.notes.push(format!(
            "{alive} of {total} connections open and echoing after the last wave"
        ));
    }
    drop(conns);
    record
}
