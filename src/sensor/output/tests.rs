use super::*;
use crate::eve::spool::fault::{event, ids, Disk};

fn output(disk: &mut Disk) -> (Output<&mut Disk>, Metrics) {
    let metrics = Metrics::new();
    (Output::new(disk, metrics.clone()), metrics)
}

fn sample(metrics: &Metrics, name: &str) -> f64 {
    let text = metrics.encode();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name}"))
}

#[test]
fn records_wait_for_a_full_disk_and_are_written_when_space_returns() {
    let mut disk = Disk::file(2000);
    let (mut out, metrics) = output(&mut disk);
    let t0 = Instant::now();
    (0..100).for_each(|n| out.push(&event(n)));
    out.write(t0);
    assert!(out.failing.is_some());
    let before = out.spool.get_mut().records().len() as u64;
    assert!(before > 0 && before < 100);
    (100..200).for_each(|n| out.push(&event(n)));
    assert!(!out.due(true, t0), "retried before the back-off");
    assert!(out.due(true, t0 + RETRY_FIRST));

    out.spool.get_mut().space = usize::MAX;
    out.write(t0 + RETRY_FIRST);
    assert!(out.failing.is_none());
    assert_eq!(out.finish(), Lost::default());
    assert_eq!(ids(&disk.records()), (0..200).collect::<Vec<_>>());
    assert_eq!(sample(&metrics, "egresswatch_eve_write_errors_total"), 1.0);
    assert_eq!(sample(&metrics, "egresswatch_eve_records_lost_total"), 0.0);
}

#[test]
fn retries_back_off_up_to_the_longest_wait() {
    let mut disk = Disk::file(0);
    let (mut out, metrics) = output(&mut disk);
    out.push(&event(0));
    let mut now = Instant::now();
    let mut waits = Vec::new();
    for _ in 0..10 {
        out.write(now);
        let next = out.failing.as_ref().unwrap().retry_at;
        waits.push(next - now);
        assert_eq!(out.wait(now), IDLE.min(next - now));
        now = next;
    }
    assert_eq!(waits[0], RETRY_FIRST);
    assert_eq!(waits[1], RETRY_FIRST * 2);
    assert_eq!(*waits.last().unwrap(), RETRY_MAX);
    assert_eq!(sample(&metrics, "egresswatch_eve_write_errors_total"), 10.0);
    assert_eq!(sample(&metrics, "egresswatch_eve_records_pending"), 1.0);
}

#[test]
fn records_beyond_the_limit_are_lost_and_counted() {
    let mut disk = Disk::file(0);
    let (mut out, metrics) = output(&mut disk);
    out.limit = 10_000;
    let t0 = Instant::now();
    (0..1000).for_each(|n| out.push(&event(n)));
    out.write(t0);
    let kept = out.spool.pending_records();
    assert!(kept > 0 && kept < 1000, "{kept}");
    assert_eq!(out.lost, 1000 - kept);

    out.spool.get_mut().space = usize::MAX;
    out.write(t0 + RETRY_FIRST);
    (1000..1010).for_each(|n| out.push(&event(n)));
    let lost = out.finish();
    assert_eq!(
        lost,
        Lost {
            total: 1000 - kept,
            at_shutdown: 0
        }
    );
    assert_eq!(
        sample(&metrics, "egresswatch_eve_records_lost_total"),
        lost.total as f64
    );
    // The oldest records waited; the newest beyond the limit were dropped.
    let want: Vec<u64> = (0..kept).chain(1000..1010).collect();
    assert_eq!(ids(&disk.records()), want);
}

#[test]
fn shutdown_on_a_full_disk_reports_what_was_not_written() {
    let mut disk = Disk::file(3000);
    let (mut out, metrics) = output(&mut disk);
    (0..600).for_each(|n| out.push(&event(n)));
    let lost = out.finish();
    let written = disk.records().len() as u64;
    assert_eq!(
        lost,
        Lost {
            total: 600 - written,
            at_shutdown: 600 - written
        }
    );
    assert_eq!(
        sample(&metrics, "egresswatch_eve_records_lost_total"),
        lost.total as f64
    );
    assert_eq!(sample(&metrics, "egresswatch_eve_records_pending"), 0.0);
}
